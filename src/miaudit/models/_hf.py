"""Hugging Face models from a local folder, read as data (docs/security.md's rules for files).

A folder written by ``save_pretrained`` is checked before transformers sees it, and refused with
one line naming the folder or the file when it

- holds a pickle-based weights file (``pytorch_model.bin``, ``*.pt``, ``*.pth``, ``*.ckpt``,
  ``*.pkl``…): unpickling runs code; only safetensors weights are read;
- has no ``model.safetensors`` (or sharded ``model-*.safetensors`` with their index);
- names custom code (``auto_map`` in ``config.json`` or ``tokenizer_config.json``) or a model
  type transformers does not know: such a model needs the folder's Python to run;
- names an attention implementation other than ``eager`` or ``sdpa`` (``attn_implementation``
  or ``_attn_implementation``, in ``config.json`` or any of its sub-configs) or holds a
  ``quantization_config``: transformers 5 with the ``kernels`` package fetches a Hub kernel
  repo named there (``kernels-community/flash-attn2``, or the fallback of
  ``flash_attention_2``) and imports its compiled code, whatever ``local_files_only`` says, and
  a quantization method needs packages miaudit does not use;
- has no ``tokenizer.json``: only fast tokenizers (the ``tokenizers`` library's JSON format) are
  read, never a sentencepiece or pickled vocabulary;
- exceeds the size caps (:data:`MAX_HF_WEIGHT_BYTES` of weights, :data:`MAX_HF_JSON_BYTES` per
  JSON file).

Loading then passes ``local_files_only=True``, ``trust_remote_code=False``,
``use_safetensors=True`` and an explicit ``attn_implementation`` (``sdpa`` where the model
class has it, else ``eager``), with the Hugging Face Hub in offline mode
(:func:`hub_offline`, around loading and scoring): nothing is downloaded and no code from the
folder runs. The models run on the CPU in evaluation mode, batch by batch, without gradients.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from miaudit.errors import InputError, first_line

#: Largest total size of a folder's safetensors weights (bytes): CPU audits of models that fit
#: in a workstation's memory twice over.
MAX_HF_WEIGHT_BYTES = 8 * 1024**3
#: Largest JSON file read from the folder (config, tokenizer, index).
MAX_HF_JSON_BYTES = 64 * 1024**2
#: File endings of pickle-based checkpoints (loading one can run arbitrary code).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib")
#: Texts per forward pass by default.
BATCH_TEXTS = 16

HfTask = Literal["causal-lm", "sequence-classification"]

#: Attention implementations a folder's config may name: built into torch and transformers.
SAFE_ATTENTION = (None, "eager", "sdpa")
#: The config keys transformers reads an attention implementation from.
_ATTENTION_KEYS = ("attn_implementation", "_attn_implementation", "_attn_implementation_internal")
#: What :func:`hub_offline` sets while a folder is loaded or scored.
_OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "USE_HUB_KERNELS": "NO"}


@contextmanager
def hub_offline() -> Iterator[None]:
    """The Hugging Face Hub unreachable for the block, then as before: ``HF_HUB_OFFLINE``,
    ``TRANSFORMERS_OFFLINE`` and ``USE_HUB_KERNELS=NO`` in the environment, and
    ``huggingface_hub.constants.HF_HUB_OFFLINE`` (read from the environment once, when
    huggingface_hub is first imported; the ``kernels`` package and every Hub request check it
    at call time). A second line of defence behind :func:`check_hf_folder`'s refusals."""
    from huggingface_hub import constants

    saved_env = {k: os.environ.get(k) for k in _OFFLINE_ENV}
    saved_flag = constants.HF_HUB_OFFLINE
    os.environ.update(_OFFLINE_ENV)
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved_flag
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _read_json(path: Path, field: str) -> dict[str, Any]:
    size = path.stat().st_size
    if size > MAX_HF_JSON_BYTES:
        raise InputError(field, f"{path.name} is {size} bytes, over the {MAX_HF_JSON_BYTES} cap")
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(field, f"{path.name} is not valid JSON ({err})") from None
    except RecursionError:  # nested past reason: not a configuration
        raise InputError(field, f"{path.name} is nested too deeply to be a configuration") from None
    if not isinstance(value, dict):
        raise InputError(field, f"{path.name} must hold a JSON object")
    return value


def _weight_files(folder: Path, field: str) -> list[Path]:
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        weight_map = _read_json(index, field).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise InputError(field, f"{index.name} has no weight_map")
        names = sorted({str(v) for v in weight_map.values()})
        bad = [n for n in names if "/" in n or "\\" in n or not n.endswith(".safetensors")]
        if bad:
            raise InputError(
                field,
                f"{index.name} names {bad[0]!r}: shards must be safetensors files in the folder",
            )
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise InputError(field, f"shard {missing[0]} named in {index.name} is missing")
        return [folder / n for n in names]
    raise InputError(
        field,
        f"{folder} has no model.safetensors: save the model with safetensors (save_pretrained's default)",
    )


def check_hf_folder(folder: str | Path, field: str = "model folder") -> dict[str, Any]:
    """Check a ``save_pretrained`` folder against the rules above; return its ``config.json``."""
    path = Path(folder)
    if not path.is_dir():
        raise InputError(
            field, f"{path} is not a folder (a Hugging Face model is read from a local folder only)"
        )
    pickles = sorted(p.name for p in path.rglob("*") if p.suffix.lower() in PICKLE_SUFFIXES)
    if pickles:
        raise InputError(
            field,
            f"{pickles[0]} is a pickle-based weights file, which can run code when loaded: keep only safetensors weights in the folder",
        )
    config_file = path / "config.json"
    if not config_file.is_file():
        raise InputError(field, f"{path} has no config.json")
    config = _read_json(config_file, field)
    for name, values in (
        ("config.json", config),
        ("tokenizer_config.json", _tokenizer_config(path, field)),
    ):
        if "auto_map" in values:
            raise InputError(
                field,
                f"{name} names custom code (auto_map): miaudit never runs a model folder's code",
            )
    _check_model_type(config, field)
    _check_loading_fields(config, field)
    _check_config_counts(config, field)
    weights = _weight_files(path, field)
    total = sum(w.stat().st_size for w in weights)
    if total > MAX_HF_WEIGHT_BYTES:
        raise InputError(field, f"weights are {total} bytes, over the {MAX_HF_WEIGHT_BYTES} cap")
    tokenizer = path / "tokenizer.json"
    if not tokenizer.is_file():
        raise InputError(
            field,
            f"{path} has no tokenizer.json: only fast tokenizers (the tokenizers library's JSON) are read",
        )
    if tokenizer.stat().st_size > MAX_HF_JSON_BYTES:
        raise InputError(field, f"tokenizer.json is over the {MAX_HF_JSON_BYTES}-byte cap")
    return config


def _tokenizer_config(folder: Path, field: str) -> dict[str, Any]:
    path = folder / "tokenizer_config.json"
    return _read_json(path, field) if path.is_file() else {}


def _check_model_type(config: dict[str, Any], field: str) -> None:
    from transformers import CONFIG_MAPPING

    model_type = config.get("model_type")
    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING:
        raise InputError(
            field, f"config.json's model_type {model_type!r} is not a model type transformers knows"
        )


def _check_loading_fields(config: dict[str, Any], field: str, where: str = "") -> None:
    """Refuse the fields that make transformers fetch or import code when it builds the model:
    an attention implementation other than eager/sdpa, a quantization_config; in config.json
    and its sub-configs (a multimodal model's ``text_config``…), at any depth up to 32."""
    if where.count(".") >= 32:
        raise InputError(field, f"config.json's {where[:-1][:80]} is nested too deeply")
    for key, value in config.items():
        name = f"{where}{key}"
        if key in _ATTENTION_KEYS and value not in SAFE_ATTENTION:
            raise InputError(
                field,
                f"config.json's {name} is {_short(value)}: miaudit loads models with eager or sdpa attention only (another value can fetch kernel code from the Hugging Face Hub)",
            )
        if key == "quantization_config" and value is not None:
            raise InputError(
                field,
                f"config.json's {name} is set: quantized models are not read (save the model unquantized)",
            )
        if isinstance(value, dict):
            _check_loading_fields(value, field, f"{name}.")


def _short(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _load(folder: Path, task: HfTask, field: str) -> tuple[Any, Any]:
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        PreTrainedTokenizerFast,
    )

    auto = AutoModelForCausalLM if task == "causal-lm" else AutoModelForSequenceClassification
    model = load_checked_weights(folder, auto, field, f"a {task} model")
    try:
        with hub_offline():
            tokenizer = PreTrainedTokenizerFast.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=False
            )
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        first = first_line(err)
        raise InputError(field, f"cannot load its tokenizer: {first}") from None
    check_vocabulary(model, tokenizer, field)
    return model, tokenizer


def load_checked_weights(folder: Path, model_cls: Any, field: str, what: str) -> Any:
    """``model_cls.from_pretrained`` of a checked folder, in eval mode: its declared size first
    (:func:`_check_declared_size`), safetensors only, no remote code, no progress bars, and
    refused in one line when it fails or when its weights lack tensors the model needs
    (transformers fills them at random with a warning: a classifier's folder read as a causal
    LM, or a config declaring more layers than were saved, gave random numbers)."""
    from transformers.utils import logging as hf_logging

    attention = _check_declared_size(folder, model_cls, field)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # a per-file bar on stderr would interleave with miaudit's
    try:
        with hub_offline():
            loaded: Any = model_cls.from_pretrained(
                str(folder),
                local_files_only=True,
                trust_remote_code=False,
                use_safetensors=True,
                output_loading_info=True,
                attn_implementation=attention,
            )
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as err:
        first = first_line(err)
        raise InputError(field, f"cannot load it as {what}: {first[:200]}") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]  # transformers is untyped here
    model, info = loaded
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise InputError(
            field,
            f"its weights lack {len(missing)} tensor(s) {what} needs ({missing[0]}): it was not saved as one",
        )
    model.eval()
    return model


def check_vocabulary(model: Any, tokenizer: Any, field: str) -> None:
    """Refuse a tokenizer whose token ids reach past the model's embedding rows: the first text
    holding such a token raised a bare IndexError in the middle of scoring (a red team)."""
    vocab = tokenizer.get_vocab()  # added and special tokens included, for both tokenizer kinds
    largest = max(vocab.values(), default=-1)
    rows = int(model.get_input_embeddings().weight.shape[0])
    if largest >= rows:
        raise InputError(
            field,
            f"tokenizer.json has token ids up to {largest:,}; the model's vocabulary has {rows:,} (vocab_size): the tokenizer is not the model's",
        )


def _check_declared_size(folder: Path, auto: Any, field: str) -> str:
    """Refuse a config.json that declares a model much larger than its weights before anything
    is allocated: transformers builds (and randomly initialises) the whole declared model
    before it finds the weights missing, so a 60 KB folder declaring a 2,048-wide GPT-2 took
    2.7 GB first (a red team). The declared model is built on the meta device (no memory),
    with eager attention, and its parameters counted (tied ones once) against the tensors in
    the safetensors headers. Returns the attention implementation to load it with: ``sdpa``
    where its class has it, else ``eager``."""
    import math

    import torch
    from safetensors import safe_open
    from transformers import AutoConfig

    try:
        with hub_offline():
            config = AutoConfig.from_pretrained(
                str(folder), local_files_only=True, trust_remote_code=False
            )
            with torch.device("meta"):
                skeleton = auto.from_config(config, attn_implementation="eager")
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, ImportError) as err:
        first = first_line(err)
        raise InputError(field, f"config.json does not describe a model: {first[:200]}") from None
    # Buffers too (a causal mask is positions × positions): built for real by from_pretrained.
    declared = sum(p.numel() for p in skeleton.parameters())
    buffers = sum(b.numel() for b in skeleton.buffers())
    stored = 0
    for weights in _weight_files(folder, field):
        try:
            with safe_open(str(weights), framework="pt") as fh:
                stored += sum(math.prod(fh.get_slice(k).get_shape()) for k in fh.keys())  # noqa: SIM118 - safe_open has no __iter__
        except Exception as exc:  # noqa: BLE001 - safetensors' errors for a malformed header vary
            raise InputError(
                field, f"{weights.name} is not a readable safetensors file ({type(exc).__name__})"
            ) from None
    if declared > stored * 1.01 + 1024:
        raise InputError(
            field,
            f"config.json declares a model of {declared:,} parameters; its weights hold {stored:,} values",
        )
    if buffers > 4 * stored + 2**24:
        raise InputError(
            field,
            f"config.json declares {buffers:,} values of buffers (masks, tables) for {stored:,} stored weights",
        )
    return "sdpa" if getattr(type(skeleton), "_supports_sdpa", False) else "eager"


#: Counts in a config.json that size what transformers builds before any weight is read; bounded
#: from the raw file, since building even on the meta device costs per layer and per label
#: (20,000 layers took 36 s and 1.5 GB; 2 million labels 1.6 GB).
_CONFIG_BOUNDS = {
    "num_hidden_layers": 1024,
    "n_layer": 1024,
    "num_layers": 1024,
    "num_labels": 100_000,
}


def _check_config_counts(config: dict[str, Any], field: str) -> None:
    labels = config.get("id2label")
    counts = {
        **config,
        "num_labels": len(labels) if isinstance(labels, dict) else config.get("num_labels"),
    }
    for key, bound in _CONFIG_BOUNDS.items():
        value = counts.get(key)
        if isinstance(value, int) and not 0 <= value <= bound:
            raise InputError(
                field, f"config.json's {key} is {value:,}; miaudit reads at most {bound:,}"
            )


def _max_tokens(model: Any) -> int:
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 512


def _batches(texts: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(texts), size):
        yield list(texts[start : start + size])


def _check_texts(texts: Sequence[str], field: str = "texts") -> list[str]:
    values = list(texts)
    if not values:
        raise InputError(field, "is empty")
    bad = next((i for i, t in enumerate(values) if not isinstance(t, str)), None)
    if bad is not None:
        raise InputError(field, f"item {bad} is not a string")
    for i, t in enumerate(values):
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: the tokenizer's bare TypeError before
            raise InputError(field, f"item {i} is not valid Unicode (a lone surrogate)") from None
    return values


@contextmanager
def _tokenizing(folder: Path) -> Iterator[None]:
    """The folder's tokenizer is data too: a crafted tokenizer.json whose regex gives up
    (Oniguruma's retry limit) raised pyo3's PanicException, a BaseException that no
    ``except Exception`` catches (red team): one line naming the folder instead."""
    try:
        yield
    except Exception:
        raise
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise  # KeyboardInterrupt, SystemExit: not the folder's doing
        raise InputError(
            "model folder", f"{str(folder)!r}: its tokenizer failed on a text ({first_line(exc)})"
        ) from None


@dataclass(frozen=True)
class HfClassifier:
    """A sequence classifier from a local folder: :meth:`logits` on texts."""

    folder: Path
    model: Any
    tokenizer: Any

    @property
    def n_classes(self) -> int:
        return int(self.model.config.num_labels)

    def logits(self, texts: Sequence[str], batch_size: int = BATCH_TEXTS) -> np.ndarray:
        """Logits (texts × classes, float64), truncated to the model's context."""
        import torch

        rows = []
        limit = _max_tokens(self.model)
        # Without a pad token (GPT-2's tokenizer) texts of different lengths cannot share a batch.
        size = batch_size if self.tokenizer.pad_token is not None else 1
        with torch.no_grad(), hub_offline():
            for batch in _batches(_check_texts(texts), size):
                with _tokenizing(self.folder):
                    encoded = self.tokenizer(
                        batch, padding=True, truncation=True, max_length=limit, return_tensors="pt"
                    )
                if "token_type_ids" not in _inputs(self.model):
                    encoded.pop("token_type_ids", None)
                rows.append(self.model(**encoded).logits.double().numpy())
        return np.concatenate(rows)

    def __repr__(self) -> str:
        return f"HfClassifier({str(self.folder)!r}, n_classes={self.n_classes})"


def _inputs(model: Any) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


@dataclass(frozen=True)
class TokenStats:
    """One text's next-token statistics under a causal LM, one row per predicted token:
    ``log_prob`` of the actual token, and the ``mean`` and ``var`` of log p(z) for z drawn from
    the model's predicted distribution at that position (what min-k %++ standardises by)."""

    token_ids: np.ndarray
    log_prob: np.ndarray
    mean: np.ndarray
    var: np.ndarray


@dataclass(frozen=True)
class HfCausalLM:
    """A causal language model from a local folder: :meth:`token_stats` on texts."""

    folder: Path
    model: Any
    tokenizer: Any

    @property
    def context(self) -> int:
        return _max_tokens(self.model)

    def encode(self, text: str) -> list[int]:
        """The text's token ids as the model reads them: the BOS token first when the tokenizer
        has one (so the first word is predicted too), truncated to the context."""
        with _tokenizing(self.folder):
            ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        bos = self.tokenizer.bos_token_id
        if bos is not None:
            ids = [int(bos), *ids]
        return ids[: self.context]

    def _kept_text_tokens(self) -> int:
        """How many of a text's own tokens :meth:`encode` keeps at most: the context less the
        BOS token put before them."""
        return self.context - (0 if self.tokenizer.bos_token_id is None else 1)

    def scored_chars(self, texts: Sequence[str]) -> list[int]:
        """Per text, the length in characters of its prefix that the tokens :meth:`encode`
        keeps cover: ``len(text)`` when every token fits in the context, else the end of the
        last kept token in the tokenizer's offsets mapping (a character split into several
        byte-level tokens counts whole once any of them is kept). zlib's c(x) is computed on
        this prefix, so that it describes the text the log-probabilities do (docs/method.md
        §13.1).

        A tokenizer without an offsets mapping (not a fast tokenizer) is refused in one line for
        a text longer than the context: decoding the kept tokens would give another string
        than the text's (unknown words, normalised spaces, a split character), and its zlib
        length another number."""
        kept = self._kept_text_tokens()
        out = []
        for i, text in enumerate(_check_texts(texts)):
            with _tokenizing(self.folder):
                n = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
                if n <= kept:
                    out.append(len(text))
                    continue
                spans = self._offsets(text)
            if spans is None:
                raise InputError(
                    "model folder",
                    f"{str(self.folder)!r}: its tokenizer has no offsets mapping (not a fast tokenizer), so the part of text {i} the model scored ({kept} of {n} tokens) cannot be found for zlib",
                )
            out.append(max((int(end) for _, end in spans[:kept]), default=0))
        return out

    def _offsets(self, text: str) -> list[tuple[int, int]] | None:
        try:
            encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        except NotImplementedError:  # transformers 4's Python tokenizers; 5's omit the key
            return None
        spans: list[tuple[int, int]] | None = encoded.get("offset_mapping")
        return spans

    def token_stats(self, texts: Sequence[str], batch_size: int = BATCH_TEXTS) -> list[TokenStats]:
        """Per text, the statistics of every token after the first (docs/formats.md)."""
        import torch

        out: list[TokenStats] = []
        with torch.no_grad(), hub_offline():
            for batch in _batches(_check_texts(texts), batch_size):
                encoded = [self.encode(t) for t in batch]
                out.extend(self._batch_stats(encoded, torch))
        return out

    def _batch_stats(self, encoded: list[list[int]], torch: Any) -> list[TokenStats]:
        width = max(max(len(e) for e in encoded), 1)
        pad = self.tokenizer.pad_token_id
        pad = 0 if pad is None else int(pad)
        ids = torch.full((len(encoded), width), pad, dtype=torch.long)
        mask = torch.zeros((len(encoded), width), dtype=torch.long)
        for row, tokens in enumerate(encoded):
            ids[row, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
            mask[row, : len(tokens)] = 1
        logits = self.model(input_ids=ids, attention_mask=mask).logits[:, :-1].double()
        log_p = torch.log_softmax(logits, dim=-1)
        p = log_p.exp()
        mean = (p * log_p).sum(-1)
        var = (p * log_p.square()).sum(-1) - mean.square()
        actual = log_p.gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        stats = []
        for row, tokens in enumerate(encoded):
            n = max(len(tokens) - 1, 0)
            stats.append(
                TokenStats(
                    token_ids=np.asarray(tokens[1:], dtype=np.int64),
                    log_prob=actual[row, :n].numpy(),
                    mean=mean[row, :n].numpy(),
                    var=np.maximum(var[row, :n].numpy(), 0.0),
                )
            )
        return stats

    def __repr__(self) -> str:
        return f"HfCausalLM({str(self.folder)!r}, context={self.context})"


def load_hf_classifier(folder: str | Path) -> HfClassifier:
    """A sequence classifier saved with ``save_pretrained`` (safetensors, ``tokenizer.json``)."""
    path = Path(folder)
    check_hf_folder(path)
    model, tokenizer = _load(path, "sequence-classification", "model folder")
    return HfClassifier(path, model, tokenizer)


def load_hf_causal_lm(folder: str | Path) -> HfCausalLM:
    """A causal LM saved with ``save_pretrained`` (safetensors, ``tokenizer.json``)."""
    path = Path(folder)
    check_hf_folder(path)
    model, tokenizer = _load(path, "causal-lm", "model folder")
    return HfCausalLM(path, model, tokenizer)
