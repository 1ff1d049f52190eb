"""What the service asks for predictions: a :class:`Predictor`, with three adapters.

- :class:`EstimatorPredictor`: any in-process object with ``predict_proba`` (an sklearn
  estimator, for tests and embedding);
- :func:`load_predictor`: a model saved by miaudit, from its safe format only (skops for
  scikit-learn, safetensors for torch MLPs; never pickle, never ``torch.load``), an ONNX file
  (checked as data, run by onnxruntime), or the user's torch module rebuilt by their factory
  (trusted code) from safetensors weights (:class:`TorchModulePredictor`);
- :class:`UpstreamPredictor`: an upstream HTTP prediction endpoint, proxied with httpx.

Records reach a predictor as an (n, d) float64 array; the service converts records given as
objects (``{"age": 39, ...}``) through ``feature_names`` before that.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from miaudit.errors import InputError


@runtime_checkable
class Predictor(Protocol):
    """A model as the service sees it: (n, d) records → (n, C) class probabilities."""

    @property
    def n_features(self) -> int | None:
        """Numbers per record, or None when the predictor does not know (an upstream)."""
        ...

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        """Names of the record's fields, in order, when records may be sent as objects."""
        ...

    def predict_proba(self, records: np.ndarray) -> np.ndarray: ...


class EstimatorPredictor:
    """An in-process estimator with ``predict_proba`` (scikit-learn or alike).

    ``affine`` (scale, shift), when given, is applied first (``x * scale + shift``), as miaudit's
    engine preprocesses the records of the model it trained.
    """

    def __init__(
        self,
        estimator: Any,
        *,
        n_features: int | None = None,
        feature_names: Sequence[str] | None = None,
        affine: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if not callable(getattr(estimator, "predict_proba", None)):
            raise InputError("model", "the estimator has no predict_proba")
        self._est = estimator
        if n_features is None:
            n_features = getattr(estimator, "n_features_in_", None)
        self._n = None if n_features is None else int(n_features)
        self._names = tuple(feature_names) if feature_names is not None else None
        if self._names is not None and self._n is not None and len(self._names) != self._n:
            raise InputError(
                "feature_names", f"has {len(self._names)} names for {self._n} features"
            )
        self._affine = affine

    @property
    def n_features(self) -> int | None:
        return self._n

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        return self._names

    def predict_proba(self, records: np.ndarray) -> np.ndarray:
        x = np.asarray(records, dtype=np.float64)
        if self._affine is not None:
            x = x * self._affine[0] + self._affine[1]
        return np.asarray(self._est.predict_proba(x), dtype=np.float64)


class TorchMLPPredictor:
    """One model of a stacked torch MLP saved by miaudit's engine (``weights.safetensors``).

    The forward pass is done in numpy from the saved tensors (ReLU MLP, softmax output), so
    serving needs neither the training code nor pickle.
    """

    def __init__(
        self,
        layers: list[tuple[np.ndarray, np.ndarray]],
        affine: tuple[np.ndarray, np.ndarray],
        warnings: tuple[str, ...] = (),
    ) -> None:
        self._layers = layers
        self._affine = affine
        #: What the command line says before serving (a DP model whose noise can be replayed).
        self.warnings = warnings

    @property
    def n_features(self) -> int | None:
        return int(self._layers[0][0].shape[0])

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        return None

    def predict_proba(self, records: np.ndarray) -> np.ndarray:
        """Probabilities; NaN rows where float32 overflows inside the network (the service answers
        those with a 500, never a label)."""
        with np.errstate(over="ignore", invalid="ignore"):
            h = np.asarray(records, dtype=np.float32) * self._affine[0] + self._affine[1]
            for i, (w, b) in enumerate(self._layers):
                h = h @ w + b
                if i < len(self._layers) - 1:
                    h = np.maximum(h, 0.0)
            h = h.astype(np.float64)
            h -= h.max(axis=1, keepdims=True)
            e = np.exp(h)
            probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
            return probs


class TorchModulePredictor:
    """The user's torch module (built by their factory, weights from safetensors): softmax of
    its logits, computed on one thread without gradients."""

    def __init__(self, module: Any, n_features: int) -> None:
        self._module = module
        self._n = n_features

    @property
    def n_features(self) -> int | None:
        return self._n

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        return None

    def predict_proba(self, records: np.ndarray) -> np.ndarray:
        import torch

        from miaudit.models import torch_threads

        with torch_threads(1), torch.no_grad():
            logits = self._module(torch.as_tensor(np.asarray(records, dtype=np.float32)))
            probs: np.ndarray = torch.softmax(logits.double(), dim=1).numpy()
        return probs


#: Records read by :func:`check_served_outputs`: enough to tell sigmoid values from logits.
CHECKED_ROWS = 1_000


def check_served_outputs(predictor: Predictor, records: np.ndarray, field: str = "--model") -> None:
    """:class:`InputError` naming ``field`` when a model served as giving logits gives per-class
    sigmoid values or probabilities on ``records`` (benign records, e.g. the detectors'
    calibration): the service would answer a softmax of them, every probability wrong without
    a word. An ONNX model's load sees two zero records, too few to tell; a torch module's
    factory is run only when served. Other predictors give probabilities and pass."""
    from miaudit.data import looks_like_probabilities
    from miaudit.models import OnnxModel, looks_like_sigmoids, sigmoid_problem

    x = np.asarray(records, dtype=np.float64)[:CHECKED_ROWS]
    if isinstance(predictor, EstimatorPredictor) and isinstance(predictor._est, OnnxModel):
        if predictor._est.kind == "logits":
            predictor._est.record_outputs(x, field)
        return
    if not isinstance(predictor, TorchModulePredictor):
        return
    import torch

    from miaudit.models import torch_threads

    with torch_threads(1), torch.no_grad():
        logits = predictor._module(torch.as_tensor(x, dtype=torch.float32)).double().numpy()
    if looks_like_probabilities(logits):
        raise InputError(
            field,
            "the module's outputs are probabilities (every row sums to 1): served as logits they "
            "would go through a softmax twice; return logits from its forward",
        )
    if looks_like_sigmoids(logits):
        raise InputError(field, sigmoid_problem("the module", logits))


@dataclass(frozen=True)
class ModuleSource:
    """The user's code that builds a torch module for ``--model weights.safetensors``: run only
    with ``trust_code`` (docs/security.md)."""

    factory: str
    params: dict[str, Any] = field(default_factory=dict)
    n_features: int | None = None
    n_classes: int | None = None
    trust_code: bool = False
    code_dir: str | None = None


def load_predictor(
    path: Path | str,
    *,
    index: int = 0,
    feature_names: Sequence[str] | None = None,
    module: ModuleSource | None = None,
    onnx_output: Literal["logits", "probs"] | None = None,
) -> Predictor:
    """Load a model from a safe format only.

    Parameters
    ----------
    path : path
        A ``.skops`` file (a scikit-learn estimator), an ``.onnx`` file (checked as data, run by
        onnxruntime: :func:`miaudit.models.load_onnx`), a ``.safetensors`` file of the user's
        torch module (with ``module``), or a trained unit folder of miaudit's engine cache
        (``model_<k>.skops`` + ``preprocess.safetensors``, or a torch MLP's
        ``weights.safetensors``).
    index : int
        Which model of the unit to serve (``k`` for sklearn units; the position in the stack
        for torch units).
    feature_names : sequence of str, optional
        Field names, so that records may be sent as objects.
    module : ModuleSource, optional
        The factory that builds the torch module whose weights ``path`` holds.
    onnx_output : "logits" or "probs", optional
        What an ``.onnx`` model's output holds, when its name does not say.

    Raises
    ------
    InputError
        Naming ``--model`` when the path holds no loadable model.
    """
    p = Path(path)
    if module is not None or (p.is_file() and p.suffix == ".safetensors"):
        return _torch_module(p, module, feature_names)
    if p.is_file() and p.suffix == ".skops":
        return EstimatorPredictor(_load_skops(p), feature_names=feature_names)
    if p.is_file() and p.suffix == ".onnx":
        from miaudit.models import load_onnx

        onnx = load_onnx(p, field="--model", kind=onnx_output)
        return EstimatorPredictor(onnx, n_features=onnx.n_features, feature_names=feature_names)
    if not p.is_dir():
        raise InputError(
            "--model",
            f"{str(p)!r} is neither a .skops, .onnx or .safetensors file nor a model folder",
        )
    if (p / f"model_{index}.skops").is_file():
        return _sklearn_unit_model(p, index, feature_names)
    weights = p / "weights.safetensors"
    if weights.is_file():
        return _torch_mlp(weights, index)
    raise InputError(
        "--model", f"{str(p)!r} holds no model_{index}.skops and no weights.safetensors"
    )


def _torch_module(
    weights: Path, module: ModuleSource | None, feature_names: Sequence[str] | None
) -> EstimatorPredictor:
    from miaudit.models import load_torch_module, module_sizes

    if module is None:
        raise InputError(
            "--factory",
            f"{weights.name} holds weights only: give --factory package.module:function (and "
            "--trust-code) to build the module they fill",
        )
    if not module.trust_code:  # before the weights are read: the refusal names the option only
        raise InputError(
            "--factory",
            f"{module.factory!r} names code, which is imported and run: pass --trust-code if you trust it",
        )
    width, classes = module_sizes(weights, "--model", module.n_features, module.n_classes)
    built = load_torch_module(
        weights,
        module.factory,
        params=module.params,
        n_features=width,
        n_classes=classes,
        trust_code=module.trust_code,
        code_dir=module.code_dir,
        field="--model",
        factory_field="--factory",
    )
    return EstimatorPredictor(
        TorchModulePredictor(built, width), n_features=width, feature_names=feature_names
    )


def _load_skops(file: Path) -> Any:
    from miaudit.models import load_sklearn

    try:
        return load_sklearn(file)
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a malformed or hostile file: one line naming it
        raise InputError(
            "--model", f"cannot load {str(file)!r} ({type(exc).__name__}: {str(exc)[:120]})"
        ) from None


def _sklearn_unit_model(
    unit: Path, index: int, feature_names: Sequence[str] | None
) -> EstimatorPredictor:
    """Model ``index`` of an sklearn unit folder, with its own standardisation when the unit
    stored one (``preprocess.safetensors`` holds one row per model, in model order)."""
    from miaudit.models import load_torch_state

    est = _load_skops(unit / f"model_{index}.skops")
    affine = None
    pre_file = unit / "preprocess.safetensors"
    if pre_file.is_file():
        models = sorted(
            int(m.group(1))
            for f in unit.glob("model_*.skops")
            if (m := re.fullmatch(r"model_(\d{1,9})", f.stem))
        )
        width = getattr(est, "n_features_in_", None)
        try:
            pre = load_torch_state(pre_file)
            scale, shift = pre["preprocess.scale"].numpy(), pre["preprocess.shift"].numpy()
        except Exception as exc:  # noqa: BLE001 - a malformed or hostile file: one line naming it
            raise InputError(
                "--model",
                f"{str(pre_file)!r} is not a readable standardisation ({type(exc).__name__}: {str(exc)[:120]})",
            ) from None
        # One (scale, shift) row per model of the unit, as wide as the model's input.
        shape = (len(models), width)
        if (
            index not in models
            or scale.shape != shape
            or shift.shape != shape
            or not (np.isfinite(scale).all() and np.isfinite(shift).all())
        ):
            raise InputError(
                "--model",
                f"{str(pre_file)!r} holds standardisations of shape {scale.shape}/{shift.shape}, not one finite row per model of the unit of the model's width {shape}",
            )
        pos = models.index(index)
        affine = (scale[pos].astype(np.float64), shift[pos].astype(np.float64))
    return EstimatorPredictor(est, feature_names=feature_names, affine=affine)


def _meta_list(meta: dict[str, str], key: str, default: str) -> Any:
    try:
        return json.loads(meta.get(key, default))
    except (TypeError, ValueError):
        raise InputError("--model", f"weights.safetensors: metadata {key!r} is not JSON") from None


def _torch_mlp(weights: Path, index: int) -> TorchMLPPredictor:
    """A torch MLP unit's model ``index`` from its safetensors file (every field checked: the file
    is untrusted)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="np") as fh:
            meta = fh.metadata() or {}
            recipe = _meta_list(meta, "recipe", "{}")
            kind = recipe.get("kind") if isinstance(recipe, dict) else "?"
            if kind not in (None, "torch-mlp", "mlp"):
                raise InputError(
                    "--model",
                    f"serving a {str(kind)[:40]!r} model is not supported (torch MLPs and sklearn only)",
                )
            models = _meta_list(meta, "models", "[0]")
            if not isinstance(models, list) or not all(isinstance(m, int) for m in models):
                raise InputError(
                    "--model",
                    "weights.safetensors: metadata 'models' must be a list of model indices",
                )
            if index not in models:
                raise InputError(
                    "--model-index", f"model {index} is not in this unit (it holds {models[:20]})"
                )
            pos = models.index(index)
            told = _replayable_dp(meta, pos)
            n_layers = sum(1 for k in fh.keys() if k.startswith("layer") and k.endswith(".weight"))  # noqa: SIM118 - safe_open has no __iter__
            layers = []
            for i in range(n_layers):
                w = fh.get_tensor(f"layer{i}.weight")[pos]
                b = fh.get_tensor(f"layer{i}.bias")[pos].reshape(-1)
                layers.append((w.astype(np.float32), b.astype(np.float32)))
            affine = (
                fh.get_tensor("preprocess.scale")[pos].astype(np.float32),
                fh.get_tensor("preprocess.shift")[pos].astype(np.float32),
            )
    except InputError:
        raise
    # A malformed file fails as safetensors' own errors, missing tensors or bad shapes.
    except Exception as exc:  # noqa: BLE001
        raise InputError(
            "--model",
            f"{str(weights)!r} is not a readable torch MLP unit ({type(exc).__name__}: {str(exc)[:120]})",
        ) from None
    if not layers:
        raise InputError("--model", f"{weights.name} holds no MLP layers")
    widths = [layers[0][0].shape[0]] + [w.shape[1] for w, _ in layers]
    shapes_ok = (
        all(w.ndim == 2 and b.shape == (w.shape[1],) for w, b in layers)
        and all(layers[i][0].shape[1] == layers[i + 1][0].shape[0] for i in range(len(layers) - 1))
        and affine[0].shape == affine[1].shape == (widths[0],)
    )
    if not shapes_ok:
        raise InputError("--model", f"{weights.name}: layer shapes do not chain into one MLP")
    return TorchMLPPredictor(layers, affine, told)


def _replayable_dp(meta: dict[str, str], pos: int) -> tuple[str, ...]:
    """A warning when the unit's model ``pos`` was DP-trained with noise drawn from its config's
    seed: whoever knows the seed (every results file states it) and the other records replays
    the training with and without a record and matches these weights exactly, so its ε does
    not hold for a model served to others (red team: difference 0.0 against 0.0077)."""
    privacy = _meta_list(meta, "privacy", "[]")
    if not isinstance(privacy, list) or not privacy:
        return ()
    entry = privacy[pos] if pos < len(privacy) else privacy[0]
    if not isinstance(entry, dict):
        return ()
    told = []
    fault = entry.get("fault_injection", "none")
    if fault != "none":  # red team: a zero-noise model was served without a word
        told.append(
            f"this model was trained with DP fault injection ({str(fault)[:40]}): its recorded ε is void, "
            "it is a test of the auditor, never a model to serve"
        )
    if entry.get("randomness") != "secret":
        told.append(
            "this model was DP-trained with noise drawn from its config's seed (for reproducible audits): "
            "whoever knows the seed and the other records can replay its training, so its ε does not hold "
            'for a model you serve; retrain it with model.dp.randomness = "secret" (docs/dp.md)'
        )
    return tuple(told)


class UpstreamError(RuntimeError):
    """The upstream prediction endpoint failed (the caller sees a 502 without details).

    ``sent``: whether the records may have reached it. Only a connection never made (refused,
    timed out while connecting, or no free connection) sent nothing; an upstream that errs,
    times out while answering or answers nonsense has read the records."""

    def __init__(self, why: str, *, sent: bool = True) -> None:
        super().__init__(why)
        self.sent = sent


class UpstreamPredictor:
    """Proxy an upstream HTTP prediction endpoint.

    The upstream receives ``{"records": [[...], ...]}`` by POST and answers
    ``{"probabilities": [[...], ...]}`` (the unguarded shape that ``create_app(..., guard=False)``
    also serves, so that miaudit can sit in front of any such service).
    """

    def __init__(
        self,
        url: str,
        *,
        n_features: int | None = None,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        import httpx

        self._url = url
        self._n = n_features
        self._client = httpx.Client(timeout=timeout, headers=headers or {})

    @property
    def n_features(self) -> int | None:
        return self._n

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        return None

    def predict_proba(self, records: np.ndarray) -> np.ndarray:
        import httpx

        try:
            resp = self._client.post(
                self._url, json={"records": np.asarray(records, dtype=np.float64).tolist()}
            )
            resp.raise_for_status()
            probs = np.asarray(resp.json()["probabilities"], dtype=np.float64)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise UpstreamError(type(exc).__name__, sent=False) from None
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            raise UpstreamError(type(exc).__name__) from None
        if probs.ndim != 2 or probs.shape[0] != len(records):
            raise UpstreamError("upstream answered with the wrong shape")
        return probs

    def close(self) -> None:
        self._client.close()
