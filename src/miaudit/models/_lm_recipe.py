"""The typed recipe of miaudit's own small causal language model (``[model] kind = "causal-lm"``).

Everything that decides what the model learns is here, fixed before any attack or exposure is
computed: the architecture (a GPT-2-style decoder, about 2 M parameters at the defaults), the
public pre-training (tokens, epochs, learning rate) and the private fine-tuning (full or LoRA,
epochs, learning rate, LoRA rank), and optionally DP fine-tuning of the LoRA adapters. Changing
any of these changes the models' cache keys; none is tuned by miaudit after the fact.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LMArchitecture(BaseModel):
    """A GPT-2-style decoder: ``vocab_size`` BPE tokens, ``context`` positions, ``layers``
    blocks of ``width`` with ``heads`` attention heads (defaults: ≈ 2.0 M parameters)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: At least the byte-level alphabet and the two special tokens (256 + 2): a smaller
    #: vocabulary was accepted and its tokens ran past the embedding (an IndexError).
    vocab_size: int = Field(1024, ge=258, le=65_536)
    context: int = Field(64, ge=16, le=1024)
    width: int = Field(192, ge=8, le=4096)
    layers: int = Field(4, ge=1, le=48)
    heads: int = Field(4, ge=1, le=64)

    @model_validator(mode="after")
    def _heads_divide_width(self) -> LMArchitecture:
        if self.width % self.heads:
            raise ValueError(f"width ({self.width}) must be a multiple of heads ({self.heads})")
        return self


class LMPretrain(BaseModel):
    """Pre-training on public text, done once per recipe and cached by content hash.

    ``records`` public synthetic records (a seed stream apart from every private record) are
    cut to at most ``max_tokens`` tokens; the tokenizer is trained on the same public text only,
    never on private records.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    records: int = Field(8000, ge=10, le=100_000)
    max_tokens: int = Field(1_000_000, ge=1000, le=1_000_000)
    epochs: int = Field(2, ge=1, le=50)
    learning_rate: float = Field(2e-3, gt=0.0, le=1.0)
    batch_size: int = Field(32, ge=1, le=4096)


class LMDP(BaseModel):
    """DP fine-tuning of the LoRA adapters through Opacus (Poisson sampling, per-sample
    clipping at ``max_grad_norm``, noise calibrated by Opacus's accountant to (ε, δ) over the
    fine-tuning's epochs). ε is per record: a text inserted n times is n records, so the
    guarantee for it is the group-privacy bound n·ε (with δ growing too). ``randomness``: as
    :class:`~miaudit.models.DPConfig`'s ("seeded" from the config's seed, replayable by whoever
    knows it; "secret" from the OS's entropy, for a model you release)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float = Field(8.0, gt=0.0, le=1000.0)
    delta: float = Field(1e-5, gt=0.0, lt=1.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    accountant: Literal["rdp", "prv"] = "rdp"
    randomness: Literal["seeded", "secret"] = "seeded"


class LMFinetune(BaseModel):
    """Fine-tuning on the private records (the members): ``method`` full (every weight) or
    ``lora`` (rank-``lora_rank`` adapters on the attention and MLP projections, ``peft``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Literal["full", "lora"] = "full"
    epochs: int = Field(8, ge=1, le=200)
    learning_rate: float = Field(1e-3, gt=0.0, le=1.0)
    batch_size: int = Field(16, ge=1, le=4096)
    lora_rank: int = Field(8, ge=1, le=256)
    lora_alpha: int = Field(16, ge=1)
    dp: LMDP | None = None

    @model_validator(mode="after")
    def _dp_needs_lora(self) -> LMFinetune:
        if self.dp is not None and self.method != "lora":
            raise ValueError('dp fine-tuning trains LoRA adapters: set method = "lora"')
        return self


class CausalLMRecipe(BaseModel):
    """``[model] kind = "causal-lm"``: miaudit's own small causal LM, pre-trained on public text
    and fine-tuned on the private records (docs/text.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["causal-lm"] = "causal-lm"
    architecture: LMArchitecture = LMArchitecture()
    pretrain: LMPretrain = LMPretrain()
    finetune: LMFinetune = LMFinetune()
    #: Torch threads while training (part of what makes a run reproducible bit for bit).
    threads: int = Field(1, ge=1, le=256)
