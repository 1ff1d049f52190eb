"""One training unit: the job description that crosses process boundaries, and the function
a worker runs on it (train, write the files, publish them to the cache)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from miaudit._io import dumps_json
from miaudit.datasets import Affine, Dataset
from miaudit.engine import _cache
from miaudit.errors import InputError
from miaudit.models import (
    AnyRecipe,
    CNNRecipe,
    MLPRecipe,
    ModelStreams,
    PythonRecipe,
    SigmaTable,
    SklearnRecipe,
    TorchModuleRecipe,
    check_code_trust,
    code_folder,
    fit_preprocessing,
    load_function,
    remember_sigmas,
    save_sklearn,
    save_torch_state,
    torch_threads,
    train_python_model,
    train_sklearn,
    train_unit,
)

Event = tuple[str, int, int, int]  # (kind, unit, done, total)
Emit = Callable[[Event], None]


@dataclass(frozen=True, eq=False)
class UnitJob:
    """Everything needed to train unit ``unit`` (models ``models``) and publish it under ``key``."""

    unit: int
    models: tuple[int, ...]
    keep_rows: np.ndarray
    recipe: AnyRecipe
    data: Dataset
    seed: int
    threads: int
    parts: _cache.KeyParts
    cache: Path
    logits_shape: tuple[int, ...]
    #: (records,) bool: the records outside the plan's pool (what population preprocessing is fitted on)
    population: np.ndarray
    #: The config opted in to running code it names (not part of the key: it changes no bits).
    trust_code: bool = False
    #: The torch device the unit trains on (engine.device; in the key through ``parts``).
    device: str = "cpu"
    #: The σ the coordinator found for the recipe's target ε (a function of the recipe and the
    #: training-set sizes, so not part of the key): a worker takes them, not searching again.
    sigmas: SigmaTable = ()

    @property
    def key(self) -> str:
        return self.parts.key()


@dataclass(frozen=True)
class UnitOutcome:
    unit: int
    key: str
    path: Path
    seconds: float


def run_unit(job: UnitJob, emit: Emit | None = None) -> UnitOutcome:
    """Train ``job``'s models, write their logits and weights, publish the unit atomically."""
    start, cpu_start = time.perf_counter(), time.process_time()
    emit = emit or (lambda _e: None)
    _check_versions(job)
    remember_sigmas(job.sigmas)
    staging = _cache.staging_dir(job.cache, job.key)
    train_sets = [np.flatnonzero(row) for row in job.keep_rows]
    streams = [ModelStreams.of(job.seed, k) for k in job.models]
    privacy: list[dict[str, Any]] | None = None
    seen: list[dict[str, Any]] = []
    if isinstance(job.recipe, PythonRecipe):  # the user's code owns its preprocessing
        logits = _train_python_models(job, job.recipe, train_sets, streams, emit)
    else:
        affines, seen = fit_preprocessing(job.recipe, job.data, train_sets, job.population)
        logits, privacy = _train_models(job, staging, train_sets, affines, streams, emit)
    logits = np.ascontiguousarray(logits, dtype=np.float32)
    _refuse_divergence(job, staging, logits)
    path = staging / _cache.LOGITS
    np.save(path, logits)
    os.chmod(path, 0o600)
    info: dict[str, Any] = {
        "unit": job.unit,
        "models": list(job.models),
        "recipe": job.recipe.model_dump(mode="json"),
        "seconds": round(time.perf_counter() - start, 3),
        # CPU time of this process (all its threads): on a shared machine, a steadier measure
        # of the work than wall time.
        "cpu_seconds": round(time.process_time() - cpu_start, 3),
    }
    if seen:  # what each model's preprocessing was fitted on (models/_preprocessing.py)
        info["preprocessing"] = seen
    if getattr(job.recipe, "dp", None) is not None:
        info["privacy"] = privacy
    final = _cache.publish(staging, job.cache, job.key, job.parts, info)
    emit(("done", job.unit, 1, 1))
    return UnitOutcome(job.unit, job.key, final, time.perf_counter() - start)


def _check_versions(job: UnitJob) -> None:
    """Refuse to train where the libraries are not those the run's keys were computed with (a
    Ray node with another torch build): its unit would be published under a key, and a
    manifest, naming the coordinator's versions, and reused by later runs as theirs."""
    differ = _cache.versions_differ(_cache.key_versions(job.recipe), job.parts.versions)
    if differ:
        import socket

        raise InputError(
            "library versions",
            f"the training worker on {socket.gethostname()} differs from the machine that started the run ({differ}): install the same versions on every machine of the cluster; unit {job.unit} was not trained",
        )


def _train_models(
    job: UnitJob,
    staging: Path,
    train_sets: list[np.ndarray],
    affines: list[Affine],
    streams: list[ModelStreams],
    emit: Emit,
) -> tuple[np.ndarray, list[dict[str, Any]] | None]:
    """The unit's logits (and DP-SGD privacy records) from the trainer of its recipe's kind;
    its weights written to ``staging``."""
    recipe = job.recipe
    if isinstance(recipe, SklearnRecipe):
        return _train_sklearn_models(job, recipe, staging, train_sets, affines, streams, emit), None
    if isinstance(recipe, TorchModuleRecipe):
        logits = _train_module_models(job, recipe, staging, train_sets, affines, streams, emit)
        return logits, None
    assert isinstance(recipe, MLPRecipe | CNNRecipe)
    return _train_torch_models(job, recipe, staging, train_sets, affines, streams, emit)


def _train_sklearn_models(
    job: UnitJob,
    recipe: SklearnRecipe,
    staging: Path,
    train_sets: list[np.ndarray],
    affines: list[Affine],
    streams: list[ModelStreams],
    emit: Emit,
) -> np.ndarray:
    """Train the unit's estimators one by one, save each and the preprocessing; their logits."""
    outs = []
    for i, (k, t, a, s) in enumerate(zip(job.models, train_sets, affines, streams, strict=True)):
        est, logits = train_sklearn(
            recipe, job.data, t, a, s.sklearn_seed, trust_code=job.trust_code
        )
        save_sklearn(staging / f"model_{k}.skops", est)
        outs.append(logits)
        emit(("step", job.unit, i + 1, len(job.models)))
    save_torch_state(staging / "preprocess.safetensors", _preprocess_state(affines))
    return np.stack(outs)


def _train_torch_models(
    job: UnitJob,
    recipe: MLPRecipe | CNNRecipe,
    staging: Path,
    train_sets: list[np.ndarray],
    affines: list[Affine],
    streams: list[ModelStreams],
    emit: Emit,
) -> tuple[np.ndarray, list[dict[str, Any]] | None]:
    """Train the unit's torch models, save their stacked weights (and, under DP-SGD, each
    model's privacy record in the file's metadata); (logits, privacy records or None)."""
    epochs = recipe.epochs
    result = train_unit(
        recipe,
        job.data,
        train_sets,
        affines,
        streams,
        on_epoch=lambda e: emit(("step", job.unit, e + 1, epochs)),
        threads=job.threads,
        device=job.device,
    )
    state = {**result.state, **_preprocess_state(affines)}
    meta = {
        "models": json.dumps(list(job.models)),
        "recipe": recipe.model_dump_json(),
        "kept_epoch": json.dumps(result.kept_epoch),
    }
    if result.privacy is not None:  # per model: ε spent, δ, accountant (DP-SGD)
        meta["privacy"] = dumps_json(result.privacy)
    save_torch_state(staging / "weights.safetensors", state, meta)
    return result.logits, result.privacy


def _train_python_models(
    job: UnitJob,
    recipe: PythonRecipe,
    train_sets: list[np.ndarray],
    streams: list[ModelStreams],
    emit: Emit,
) -> np.ndarray:
    """The user's ``train`` on each model's records, one by one: their logits (nothing else is
    kept: no safe format holds every framework's fitted objects). ``engine.threads`` caps the
    native thread pools (OpenMP, BLAS) the code uses, as it caps torch's for the built-in kinds."""
    from threadpoolctl import threadpool_limits

    check_code_trust(recipe, job.trust_code)
    expected = _cache.recorded_code(job.parts)
    train = load_function(recipe, "model.train", expected.get("model.train"))
    outs = []
    with code_folder(recipe.path), threadpool_limits(limits=job.threads):
        for i, (t, s) in enumerate(zip(train_sets, streams, strict=True)):
            outs.append(train_python_model(train, recipe.params, job.data, t, s.sklearn_seed))
            emit(("step", job.unit, i + 1, len(job.models)))
    return np.stack(outs)


def _train_module_models(
    job: UnitJob,
    recipe: TorchModuleRecipe,
    staging: Path,
    train_sets: list[np.ndarray],
    affines: list[Affine],
    streams: list[ModelStreams],
    emit: Emit,
) -> np.ndarray:
    """The user's modules, trained one by one by the generic trainer; their stacked weights
    (and preprocessing) saved as the built-in kinds' are; their logits."""
    from miaudit.models import ModuleCode, train_modules

    check_code_trust(recipe, job.trust_code)
    expected = _cache.recorded_code(job.parts)
    code = ModuleCode(
        load_function(recipe, "model.factory", expected.get("model.factory")),
        load_function(recipe, "model.train_step", expected.get("model.train_step"))
        if recipe.train_step
        else None,
    )
    epochs, n = recipe.epochs, len(job.models)
    with code_folder(recipe.path), torch_threads(job.threads):
        result = train_modules(
            recipe,
            code,
            job.data,
            train_sets,
            affines,
            streams,
            on_epoch=lambda i, e: emit(("step", job.unit, i * epochs + e + 1, n * epochs)),
        )
    state = {**result.state, **_preprocess_state(affines)}
    meta = {
        "models": json.dumps(list(job.models)),
        "recipe": recipe.model_dump_json(),
        "code": json.dumps(expected),
        "kept_epoch": json.dumps(result.kept_epoch),
    }
    save_torch_state(staging / "weights.safetensors", state, meta)
    return result.logits


def _refuse_divergence(job: UnitJob, staging: Path, logits: np.ndarray) -> None:
    """A unit whose logits are not all finite (a huge lr, say) is never published as verified."""
    if np.isfinite(logits).all():
        return
    shutil.rmtree(staging, ignore_errors=True)
    per_model = np.isfinite(logits).reshape(len(job.models), -1).all(axis=1)
    bad = sorted({int(job.models[i]) for i in np.flatnonzero(~per_model)})
    dp = getattr(job.recipe, "dp", None)
    noise = (
        "; with DP-SGD the noise may be too large: lower model.dp.noise_multiplier (or raise model.dp.epsilon)"
        if dp is not None
        else ""
    )
    raise InputError(
        "model",
        f"training diverged: models {bad[:5]} of unit {job.unit} give non-finite logits; "
        + _divergence_advice(job.recipe)
        + noise,
    )


def _divergence_advice(recipe: object) -> str:
    """What to check when a unit's logits are not finite: the user's own functions where the
    recipe runs them (a ``python`` recipe has no lr), the learning rate otherwise."""
    if isinstance(recipe, PythonRecipe):
        return (
            f"check what model.train ({recipe.train!r}) fits and returns on these records "
            "(a model's predict_proba, or a callable's logits), and the data"
        )
    if isinstance(recipe, TorchModuleRecipe):
        step = (
            f"model.train_step ({recipe.train_step!r})"
            if recipe.train_step
            else "the built-in training step"
        )
        return f"check model.factory ({recipe.factory!r}) and {step}, lower model.lr, or check the data"
    return "lower model.lr or check the data"


def _preprocess_state(affines: list[Affine]) -> dict[str, np.ndarray]:
    return {
        "preprocess.scale": np.stack([a.scale for a in affines]),
        "preprocess.shift": np.stack([a.shift for a in affines]),
    }
