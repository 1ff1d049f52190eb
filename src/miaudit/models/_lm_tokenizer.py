"""A small byte-level BPE tokenizer trained locally with ``tokenizers`` (no download).

Digits are split one by one before BPE (``Digits(individual_digits=True)``), so that a number
is always the same digit tokens whatever surrounds it: a canary's secret is then a fixed
sequence of digit tokens after its prefix, and every candidate of its space is one path through
ten digit tokens per position (what exposure's enumeration relies on).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from miaudit.errors import InputError, first_line

BOS = "<|endoftext|>"
PAD = "<pad>"
DIGITS = "0123456789"


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """A ``tokenizers.Tokenizer`` (byte-level BPE, digits split) trained on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = _pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[BOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok


def _pre_tokenizer() -> Any:
    from tokenizers import pre_tokenizers

    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )


def token_bounds(text: str) -> tuple[int, int]:
    """(fewest, most) tokens any tokenizer :func:`train_tokenizer` makes can encode ``text`` to,
    before one is trained: BPE merges only within a pre-token (digits one by one, then the
    byte-level split), so at least one token per pre-token; every byte-level token is at least
    one byte of UTF-8, so at most one per byte (the special tokens are longer still)."""
    return len(_pre_tokenizer().pre_tokenize_str(text)), len(text.encode("utf-8"))


def fast_tokenizer(tok: Any) -> Any:
    """The ``transformers`` wrapper saved beside the model (``tokenizer.json``)."""
    from transformers import PreTrainedTokenizerFast

    fast: Any = PreTrainedTokenizerFast  # untyped in transformers 5
    return fast(tokenizer_object=tok, bos_token=BOS, eos_token=BOS, pad_token=PAD, unk_token=None)


def load_tokenizer(folder: Path, field: str = "model folder") -> Any:
    """The ``tokenizers.Tokenizer`` of a saved model folder (``tokenizer.json``: data, no code)."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as err:  # noqa: BLE001 - tokenizers raises a bare Exception for a bad file
        first = first_line(err)
        raise InputError(field, f"tokenizer.json cannot be read: {first[:200]}") from None


def digit_ids(tok: Any) -> list[int]:
    """The token ids of ``0``…``9`` (each digit is one token by construction)."""
    ids = [tok.token_to_id(d) for d in DIGITS]
    if any(i is None for i in ids):
        raise ValueError("the tokenizer lacks a digit token (train it on text with digits)")
    return [int(i) for i in ids]


def encode_records(tok: Any, texts: Sequence[str], context: int) -> list[list[int]]:
    """Each text as ``[BOS] + tokens + [BOS]`` cut to ``context`` tokens (BOS also ends a text)."""
    bos = int(tok.token_to_id(BOS))
    out = []
    for enc in tok.encode_batch(list(texts), add_special_tokens=False):
        out.append(([bos, *enc.ids, bos])[:context])
    return out
