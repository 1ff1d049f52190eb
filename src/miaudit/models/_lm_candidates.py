"""Log-likelihoods of digit secrets after a prefix: every candidate at once, or a few.

A canary's candidate space is every n-digit string after its prefix. Each digit is one token
(the tokenizer splits digits), so log P(d₁…dₙ | prefix) = Σᵢ log P(dᵢ | prefix, d₁…dᵢ₋₁), and the
whole space is a 10-ary tree: :func:`all_digit_log_likelihoods` walks it level by level with the
model's key/value cache, feeding one token per node, so the cost is about 10^{n−1}·(1 + 1/9)
single-token steps instead of 10^{n−1} full sequences; chunks of at most ``max_batch`` rows bound
the memory. :func:`digit_log_likelihoods` scores given candidates as full sequences (the slow,
obviously correct reference the tests compare the tree against, and the sampler of the
distribution-fit estimate).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from miaudit.errors import InputError
from miaudit.models._lm_tokenizer import BOS, digit_ids


def _prefix_ids(tok: Any, prefix: str, model: Any = None, n_more: int = 0) -> list[int]:
    """[BOS] + the prefix's tokens; with ``model``, refused in one line unless ``n_more`` more
    tokens fit in its context (a context of 16 was an IndexError inside the model: red team)."""
    ids = [int(tok.token_to_id(BOS)), *tok.encode(prefix, add_special_tokens=False).ids]
    context = getattr(getattr(model, "config", None), "n_positions", None)
    if context is not None and len(ids) + n_more > int(context):
        raise InputError(
            "model.architecture.context",
            f"a canary takes {len(ids) + n_more} tokens with its digits; the model's context is {context}",
        )
    return ids


def _select(cache: Any, rows: torch.Tensor) -> Any:
    """A new cache holding only ``rows`` of ``cache`` (the rest is not copied)."""
    from transformers import DynamicCache

    out = DynamicCache()
    for i, layer in enumerate(cache.layers):
        out.update(layer.keys[rows], layer.values[rows], i)
    return out


def _step(model: Any, ids: torch.Tensor, cache: Any) -> tuple[torch.Tensor, Any]:
    """(logits, cache) of one forward pass that extends ``cache`` (None: a fresh one).

    transformers 5 names the cache ``cache`` and deprecates ``past_key_values``; older
    releases know only the latter.
    """
    params = inspect.signature(type(model).forward).parameters
    kw = "cache" if "cache" in params else "past_key_values"
    out = model(input_ids=ids, use_cache=True, **{kw: cache})
    new = out.get("cache")
    return out.logits, out.get("past_key_values") if new is None else new


def _next_digit_ll(model: Any, ids: torch.Tensor, cache: Any, digits: torch.Tensor) -> Any:
    logits, cache = _step(model, ids, cache)
    logp = torch.log_softmax(logits[:, -1].double(), dim=-1)
    return logp[:, digits], cache


def _expand(
    model: Any, cache: Any, scores: torch.Tensor, remaining: int, digits: torch.Tensor, cap: int
) -> torch.Tensor:
    """``scores`` (B, 10): log-likelihood of each fed row's string extended by each digit.
    Returns the log-likelihoods of every completion, in the order of their integer values."""
    if remaining == 0:
        return scores.reshape(-1)
    rows = scores.shape[0]
    per_chunk = max(cap // 10, 1)
    if rows > per_chunk:
        parts = []
        for start in range(0, rows, per_chunk):
            sel = torch.arange(start, min(start + per_chunk, rows))
            parts.append(_expand(model, _select(cache, sel), scores[sel], remaining, digits, cap))
        return torch.cat(parts)
    cache.batch_repeat_interleave(10)  # row b·10 + d continues row b with digit d
    fed = digits.repeat(rows).unsqueeze(1)
    ll, cache = _next_digit_ll(model, fed, cache, digits)
    return _expand(model, cache, scores.reshape(-1, 1) + ll, remaining - 1, digits, cap)


@torch.no_grad()
def all_digit_log_likelihoods(
    model: Any, tok: Any, prefix: str, n_digits: int, *, max_batch: int = 2048
) -> np.ndarray:
    """log P(s | [BOS] + prefix) for every ``n_digits``-digit string s, at index int(s)."""
    digits = torch.tensor(digit_ids(tok))
    # the last digit is scored, never fed: n_digits - 1 positions past the prefix
    ids = torch.tensor([_prefix_ids(tok, prefix, model, n_digits - 1)])
    first, cache = _next_digit_ll(model, ids, None, digits)
    out = _expand(model, cache, first, n_digits - 1, digits, max_batch)
    return out.numpy()


@torch.no_grad()
def digit_log_likelihoods(
    model: Any, tok: Any, prefix: str, candidates: Sequence[str], *, batch_size: int = 256
) -> np.ndarray:
    """log P(candidate | [BOS] + prefix) for each digit string, each scored as a full sequence."""
    lut = np.array(digit_ids(tok))
    head = _prefix_ids(tok, prefix, model, max((len(c) for c in candidates), default=0))
    out = np.empty(len(candidates))
    for start in range(0, len(candidates), batch_size):
        chunk = candidates[start : start + batch_size]
        tail = torch.tensor(np.array([[lut[int(c)] for c in s] for s in chunk]))
        ids = torch.cat([torch.tensor(head).expand(len(chunk), -1), tail], dim=1)
        logp = torch.log_softmax(model(input_ids=ids).logits.double(), dim=-1)
        n = tail.shape[1]
        picked = logp[:, -n - 1 : -1].gather(2, tail.unsqueeze(2)).squeeze(2)
        out[start : start + len(chunk)] = picked.sum(1).numpy()
    return out


@torch.no_grad()
def greedy_digits(model: Any, tok: Any, prefix: str, n_tokens: int) -> str:
    """The text greedy decoding (over the whole vocabulary) writes after the prefix."""
    ids = torch.tensor([_prefix_ids(tok, prefix, model, n_tokens - 1)])  # the last is not fed
    made: list[int] = []
    cache = None
    for _ in range(n_tokens):
        logits, cache = _step(model, ids, cache)
        nxt = int(logits[0, -1].argmax())
        made.append(nxt)
        ids = torch.tensor([[nxt]])
    return str(tok.decode(made))
