"""miaudit's own small causal LM: build, pre-train once (cached), fine-tune, save, score.

The two-stage scenario of a fine-tuned language model: a GPT-2-style decoder
(``transformers.GPT2LMHeadModel`` from a ``GPT2Config``, no downloaded weights) is pre-trained
on public text, cached by the content hash of its recipe and text, and then fine-tuned on the
private records (the members), fully or through LoRA adapters (``peft``), plainly or under DP
(:mod:`miaudit.models._lm_dp`). Every model is saved as an ordinary Hugging Face folder
(``config.json``, ``model.safetensors``, ``tokenizer.json``; LoRA adapters merged), so anything
that reads such folders can audit it.

Training is plain torch loops on the CPU with dropout off, initial weights from
``torch.manual_seed(seed)`` in a forked RNG and batch orders from ``numpy``'s generator: a seed
gives the same weights bit for bit for a number of torch threads (``recipe.threads``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from miaudit._io import sha256_file
from miaudit.errors import InputError
from miaudit.models._hf import (
    BATCH_TEXTS,
    HfCausalLM,
    TokenStats,
    check_hf_folder,
    check_vocabulary,
    load_checked_weights,
)
from miaudit.models._hf import _check_texts as check_texts
from miaudit.models._lm_recipe import CausalLMRecipe, LMArchitecture, LMFinetune
from miaudit.models._lm_tokenizer import (
    BOS,
    PAD,
    encode_records,
    fast_tokenizer,
    load_tokenizer,
    train_tokenizer,
)
from miaudit.models._train import torch_threads

#: The modules LoRA adapts in a GPT-2 block (attention in/out, MLP in/out).
LORA_TARGETS = ("c_attn", "c_proj", "c_fc")


def build_lm(arch: LMArchitecture, seed: int) -> Any:
    """A freshly initialised GPT-2-style model (dropout off), its weights a function of ``seed``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=arch.vocab_size,
        n_positions=arch.context,
        n_embd=arch.width,
        n_layer=arch.layers,
        n_head=arch.heads,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: Any = GPT2LMHeadModel(config)
    model.eval()
    return model


def n_parameters(model: Any) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, ...]:
    """``(input_ids, attention_mask, labels)``: padded on the right, pads masked out of the loss."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return ids, mask, labels


def token_loss(model: Any, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-sequence mean next-token cross-entropy (shape: batch), pads excluded."""
    logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
    target = ids[:, 1:]
    keep = mask[:, 1:].to(logits.dtype)
    nll = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none"
    ).view(target.shape)
    per_seq: torch.Tensor = (nll * keep).sum(1) / keep.sum(1).clamp(min=1.0)
    return per_seq


def _epoch_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start : start + batch_size]


def train_steps(
    model: Any,
    seqs: Sequence[Sequence[int]],
    *,
    pad_id: int,
    epochs: int,
    learning_rate: float,
    batch_size: int,
    seed: int,
) -> list[float]:
    """Plain AdamW on the trainable parameters; returns the mean loss of each epoch."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=learning_rate, weight_decay=0.0)
    rng = np.random.default_rng([seed, 7])
    model.train()
    losses = []
    for _ in range(epochs):
        total, count = 0.0, 0
        for rows in _epoch_batches(len(seqs), batch_size, rng):
            ids, mask, _ = pad_batch([seqs[i] for i in rows], pad_id)
            loss: Any = token_loss(model, ids, mask).mean()  # Tensor.backward is untyped
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, count = total + float(loss.detach()) * len(rows), count + len(rows)
        losses.append(total / max(count, 1))
    model.eval()
    return losses


def save_lm(model: Any, tok: Any, folder: Path) -> Path:
    """Write an ordinary Hugging Face folder (safetensors weights, ``tokenizer.json``)."""
    _quiet_transformers()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    fast_tokenizer(tok).save_pretrained(folder)
    return folder


def _quiet_transformers() -> None:
    """No progress bars on stderr for loading and saving a 2 MB model."""
    from transformers.utils import logging

    hf_logging: Any = logging  # its functions are untyped
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def load_lm(folder: Path, field: str = "model folder") -> tuple[Any, Any]:
    """(model, tokenizer) of a folder miaudit wrote: safetensors only, no remote code, and the
    checks of any Hugging Face folder first (:func:`miaudit.models._hf.check_hf_folder`, the
    declared size, a tokenizer within the model's vocabulary): a cached base is a file too."""
    from transformers import AutoModelForCausalLM

    config = check_hf_folder(folder, field)
    if config.get("model_type") != "gpt2":
        raise InputError(
            field,
            f"config.json's model_type is {config.get('model_type')!r}; miaudit's LMs are gpt2",
        )
    _quiet_transformers()
    # model_type is gpt2 (checked above): the auto class builds GPT2LMHeadModel, and it is the
    # one whose from_config the declared-size check needs
    model = load_checked_weights(folder, AutoModelForCausalLM, field, "miaudit's LM")
    tok = load_tokenizer(folder, field)
    check_vocabulary(model, tok, field)
    return model, tok


#: Raise it whenever a change to pre-training or saving makes the same recipe give another
#: base: a cached base is reused only under the revision that made it.
LM_BASE_REVISION = 1


def _digest(recipe: CausalLMRecipe, public: Sequence[str]) -> str:
    import tokenizers
    import transformers

    h = hashlib.sha256()
    parts = {
        "architecture": recipe.architecture.model_dump(),
        "pretrain": recipe.pretrain.model_dump(),
        "threads": recipe.threads,
        "revision": LM_BASE_REVISION,
        "numpy": np.__version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }
    h.update(json.dumps(parts, sort_keys=True).encode())
    for text in public:
        h.update(hashlib.sha256(text.encode()).digest())
    return h.hexdigest()[:20]


#: The manifest a published base carries: each file's size and SHA-256.
BASE_MANIFEST = "miaudit-base.json"
#: Largest base reused (miaudit's LMs are megabytes): a manifest claiming more is not read.
MAX_BASE_BYTES = 8 * 2**30


def _write_base_manifest(folder: Path) -> None:
    files = {
        p.name: {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.is_file()
    }
    (folder / BASE_MANIFEST).write_text(json.dumps(files, indent=1), encoding="utf-8")


def _base_verified(folder: Path) -> bool:
    """Whether ``folder`` is a base as published: a real folder whose regular files are exactly
    those of its manifest, each of the size and digest listed (links, FIFOs, extra or missing
    files, or a manifest past reason: not verified)."""
    import stat

    manifest = folder / BASE_MANIFEST
    try:
        found = manifest.lstat()
        if folder.is_symlink() or not stat.S_ISREG(found.st_mode) or found.st_size > 1 << 20:
            return False
        listed = json.loads(manifest.read_text(encoding="utf-8"))
        entries = {p.name: p.lstat() for p in folder.iterdir() if p.name != BASE_MANIFEST}
        if not isinstance(listed, dict) or set(listed) != set(entries):
            return False
        total = 0
        for name, st in entries.items():
            want = listed[name]
            if not (stat.S_ISREG(st.st_mode) and isinstance(want, dict)):
                return False
            if want.get("size") != st.st_size:
                return False
            total += st.st_size
        if total > MAX_BASE_BYTES:
            return False
        return all(sha256_file(folder / n) == listed[n].get("sha256") for n in entries)
    except (OSError, ValueError, RecursionError):
        return False


def _discard_unverified(folder: Path) -> None:
    """Remove a base that did not verify, so it is rebuilt: a link itself, never its target."""
    if folder.is_symlink():
        folder.unlink()
    elif folder.exists():
        warnings.warn(
            f"{folder}: the cached base model does not match its manifest; rebuilding it",
            stacklevel=3,
        )
        shutil.rmtree(folder)


def _cap_tokens(seqs: list[list[int]], max_tokens: int) -> list[list[int]]:
    out, total = [], 0
    for s in seqs:
        if total + len(s) > max_tokens:
            break
        out.append(s)
        total += len(s)
    return out


def pretrained_base(
    recipe: CausalLMRecipe,
    public: Sequence[str],
    cache: Path,
    *,
    seed: int = 0,
    say: Callable[[str], None] | None = None,
) -> Path:
    """The base model's folder in ``cache``, pre-trained on ``public`` once per content hash.

    The tokenizer is trained on the public text only (a tokenizer trained on private records
    would itself carry them). A finished base is published by an atomic rename with a manifest
    of its files' sizes and SHA-256; a folder of that name (the hash of everything that made it)
    is reused only if its files match the manifest, and rebuilt otherwise (red team: a base whose
    config.json was edited was reused with layers initialised at random; a truncated one failed
    every later run).
    """
    final = cache / f"lm-base-{_digest(recipe, public)}-s{seed}"
    tell = say or (lambda _m: None)  # ``say``: which of the two it is doing (minutes apart)
    if _base_verified(final):
        tell(f"reusing the pre-trained base model from the cache ({final})")
        return final
    _discard_unverified(final)
    tell(
        f"pre-training the base model on {len(public)} public records "
        f"(the first time only: minutes; cached in {cache})"
    )
    arch, pre = recipe.architecture, recipe.pretrain
    with torch_threads(recipe.threads):
        tok = train_tokenizer(public, arch.vocab_size)
        seqs = _cap_tokens(encode_records(tok, public, arch.context), pre.max_tokens)
        model = build_lm(arch, seed)
        train_steps(
            model,
            seqs,
            pad_id=int(tok.token_to_id(PAD)),
            epochs=pre.epochs,
            learning_rate=pre.learning_rate,
            batch_size=pre.batch_size,
            seed=seed,
        )
    staging = cache / f".staging-{final.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    save_lm(model, tok, staging)
    _write_base_manifest(staging)
    try:
        staging.rename(final)
    except OSError:  # another process published the same base first: theirs is identical
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _with_lora(model: Any, ft: LMFinetune) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=ft.lora_rank,
        lora_alpha=ft.lora_alpha,
        lora_dropout=0.0,
        target_modules=list(LORA_TARGETS),
        fan_in_fan_out=True,  # GPT-2's Conv1D stores weights transposed
        bias="none",
    )
    return get_peft_model(model, config)


def finetune_lm(
    base: Path,
    ft: LMFinetune,
    texts: Sequence[str],
    out: Path,
    *,
    seed: int,
    threads: int = 1,
) -> dict[str, Any]:
    """Fine-tune the base in ``base`` on ``texts`` (the members) and save it to ``out``.

    LoRA adapters are merged into the weights before saving: ``out`` is a plain GPT-2 folder.
    Returns what was done (losses; for DP, the privacy spent from Opacus's accountant).
    """
    model, tok = load_lm(base)
    seqs = encode_records(tok, texts, model.config.n_positions)
    pad_id = int(tok.token_to_id(PAD))
    info: dict[str, Any] = {"method": ft.method, "records": len(seqs), "seed": seed}
    with torch_threads(threads), torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        # peft reads attributes that transformers 5 deprecates: their business, not the user's.
        warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
        torch.manual_seed(seed)
        if ft.method == "lora":
            model = _with_lora(model, ft)
        if ft.dp is not None:
            from miaudit.models._lm_dp import dp_finetune

            info.update(dp_finetune(model, seqs, ft, pad_id=pad_id, seed=seed))
        else:
            info["losses"] = train_steps(
                model,
                seqs,
                pad_id=pad_id,
                epochs=ft.epochs,
                learning_rate=ft.learning_rate,
                batch_size=ft.batch_size,
                seed=seed,
            )
        if ft.method == "lora":
            model = model.merge_and_unload()
    save_lm(model, tok, out)
    return info


@torch.no_grad()
def record_log_likelihoods(
    model: Any, tok: Any, texts: Sequence[str], *, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Per text: the summed next-token log-probability and the number of tokens scored.

    The text is scored as it was trained (``[BOS] + tokens + [BOS]``, cut to the context).
    """
    seqs = encode_records(tok, texts, model.config.n_positions)
    pad_id = int(tok.token_to_id(PAD))
    total = np.empty(len(seqs))
    count = np.empty(len(seqs), dtype=np.int64)
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        ids, mask, _ = pad_batch(chunk, pad_id)
        mean_nll = token_loss(model, ids, mask).double().numpy()
        n = np.array([len(s) - 1 for s in chunk])
        total[start : start + len(chunk)] = -mean_nll * n
        count[start : start + len(chunk)] = n
    return total, count


@dataclass(frozen=True)
class OwnCausalLM(HfCausalLM):
    """A folder miaudit's own LM training wrote, read for the sequence signals.

    It is scored as it was trained: ``[BOS] + tokens + [BOS]`` cut to the context, so the
    closing BOS (the end of the text, which fine-tuning taught) is a scored token too. A generic
    Hugging Face causal LM (:class:`HfCausalLM`) reads ``[BOS] + tokens`` only.
    """

    def encode(self, text: str) -> list[int]:
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        bos = int(self.tokenizer.convert_tokens_to_ids(BOS))
        return [bos, *ids, bos][: self.context]

    def _kept_text_tokens(self) -> int:
        """The context less the opening BOS: the closing BOS follows the text's tokens, so it is
        the first cut and never shortens the text scored."""
        return self.context - 1

    def token_stats(self, texts: Sequence[str], batch_size: int = BATCH_TEXTS) -> list[TokenStats]:
        """As :meth:`HfCausalLM.token_stats`, in batches of texts of similar length (less
        padding to compute; right padding never changes a text's own statistics)."""
        encoded = [self.encode(t) for t in check_texts(texts)]
        order = np.argsort([len(e) for e in encoded], kind="stable")
        out: list[TokenStats | None] = [None] * len(encoded)
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                rows = order[start : start + batch_size]
                stats = self._batch_stats([encoded[i] for i in rows], torch)
                for i, st in zip(rows, stats, strict=True):
                    out[i] = st
        return [st for st in out if st is not None]

    def __repr__(self) -> str:
        return f"OwnCausalLM({str(self.folder)!r}, context={self.context})"


def load_own_lm(folder: str | Path) -> OwnCausalLM:
    """miaudit's own LM from the folder :func:`save_lm` wrote, for
    :func:`miaudit.signals.sequence_signals` (safetensors only, no remote code)."""
    path = Path(folder)
    model, tok = load_lm(path)
    return OwnCausalLM(path, model, fast_tokenizer(tok))
