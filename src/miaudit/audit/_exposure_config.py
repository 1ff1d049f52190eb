"""The config of ``miaudit exposure`` (and ``miaudit demo --text``): TOML or YAML.

```toml
seed = 0
references = 2            # reference fine-tunes on other random halves (membership audit)
resamples = 200           # bootstrap replicates of the membership audit's intervals

[data]                    # the private pool: synthetic personal records
records = 2000            # members: a random half of them
population = 200          # texts no model trains on (RMIA's comparison records)
# families = ["clinical_note", "discharge_summary"]

[model]
kind = "causal-lm"        # miaudit's own small LM (models.CausalLMRecipe)
[model.finetune]
method = "full"           # or "lora"; [model.finetune.dp] for DP fine-tuning of LoRA
epochs = 8

[canaries]                # secret-sharer canaries (Carlini et al. 2019)
prefix = "{name}'s account number is "
digits = 5                # candidate space 10^5: exact rank by enumeration
repetitions = [1, 4, 16]
per_level = 10
never_inserted = 10

[dedup]                   # optional: deduplicate the fine-tuning set first
threshold = 0.8
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from miaudit.data import FAMILIES
from miaudit.engine import check_finite
from miaudit.errors import InputError
from miaudit.models import CausalLMRecipe, validation_error

#: The largest candidate space whose every candidate is scored (exact rank).
EXACT_MAX_SPACE = 10**6
#: The candidate space must hold at least this many candidates per canary. A canary's exposure
#: is computed over the space less the other inserted secrets (they compete with it only
#: because miaudit inserts several at once), so the canaries may take at most 1 % of it: then
#: log2 of the space the exposure is read against is within 0.015 bits of log2 10^digits, the
#: maximum printed. With 10 canaries in a space of 10 (red team) a canary ranked first scored
#: 1.0 bit against a printed maximum of 3.3; with more canaries than candidates the secrets
#: could not be drawn distinct at all (the run hung).
SPACE_PER_CANARY = 100


class TextDataSection(BaseModel):
    """``[data]``: the private pool of synthetic personal records (members: a random half), and
    ``population`` more records of the same kind that no model trains on (the comparison texts
    of sequence-level RMIA; 0: RMIA does not run)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: At least 10: the blind baseline's 5 folds stratified by membership need 5 members and 5
    #: non-members (4 records were accepted and failed after fine-tuning).
    records: int = Field(2000, ge=10, le=100_000)
    population: int = Field(0, ge=0, le=100_000)
    families: list[str] | None = None

    @field_validator("families")
    @classmethod
    def _known(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("at least one family")
            bad = [f for f in v if f not in FAMILIES]
            if bad:
                raise ValueError(f"unknown family {bad[0]!r}; known: {', '.join(FAMILIES)}")
        return v


class CanarySection(BaseModel):
    """``[canaries]``: ``per_level`` canaries inserted r times for each r in ``repetitions``,
    and ``never_inserted`` more of the same format that the model never sees (the baseline).
    A canary is ``prefix`` (``{name}`` filled with a made-up name) followed by a secret of
    ``digits`` random digits; its candidate space is every ``digits``-digit string."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = "{name}'s account number is "
    digits: int = Field(5, ge=1, le=12)
    repetitions: list[int] = Field(default_factory=lambda: [1, 4, 16])
    per_level: int = Field(10, ge=1, le=1000)
    never_inserted: int = Field(10, ge=0, le=1000)
    method: Literal["auto", "exact", "estimate"] = "auto"
    #: Candidates drawn for the distribution-fit estimate (spaces above 10^6, or "estimate").
    estimate_samples: int = Field(4000, ge=100, le=1_000_000)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        try:
            filled = v.format(name="Ann Lee")
        except (KeyError, IndexError, ValueError):
            raise ValueError("may hold only the field {name}") from None
        if not filled.strip() or any(c.isdigit() for c in filled):
            raise ValueError("must hold words and no digits (the secret is the digits after it)")
        return v

    @field_validator("repetitions")
    @classmethod
    def _reps(cls, v: list[int]) -> list[int]:
        if not v or any(r < 1 or r > 1000 for r in v):
            raise ValueError("each repetition count must lie in [1, 1000]")
        return sorted(set(v))

    def space(self) -> int:
        return int(10**self.digits)

    def count(self) -> int:
        """Canaries in all: ``per_level`` per repetition count, and the never-inserted ones."""
        return self.per_level * len(self.repetitions) + self.never_inserted

    def exact(self) -> bool:
        """Whether ranks are counted over every candidate (else the skew-normal estimate)."""
        return self.method == "exact" or (self.method == "auto" and self.space() <= EXACT_MAX_SPACE)


class DedupSection(BaseModel):
    """``[dedup]``: deduplicate the fine-tuning set (canaries included) before fine-tuning."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float = Field(0.8, gt=0.0, le=1.0)
    ngram: int = Field(3, ge=1, le=20)


class ExposureConfig(BaseModel):
    """Everything ``miaudit exposure`` needs: data, the LM recipe, canaries, optional dedup."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: TextDataSection = TextDataSection()
    model: CausalLMRecipe = CausalLMRecipe()
    canaries: CanarySection = CanarySection()
    dedup: DedupSection | None = None
    references: int = Field(0, ge=0, le=64)
    #: Bootstrap replicates of the membership audit's intervals.
    resamples: int = Field(200, ge=0, le=10_000)
    #: Where the pre-trained base is cached (default: ``~/.cache/miaudit/lm``).
    cache: Path | None = None
    seed: int = Field(0, ge=0)


def parse_exposure_config(raw: dict[str, Any]) -> ExposureConfig:
    """Validate an exposure config mapping; a bad field raises InputError naming it."""
    check_finite(raw)
    try:
        cfg = ExposureConfig.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, "") from None
    c = cfg.canaries
    _check_space(c)
    if c.method == "exact" and c.space() > EXACT_MAX_SPACE:
        raise InputError(
            "canaries.method",
            f'"exact" enumerates at most 10^6 candidates; 10^{c.digits} is too many (use "auto")',
        )
    return cfg


def _check_space(c: CanarySection) -> None:
    """Distinct secrets for every canary, and at most 1 % of the space taken by them
    (:data:`SPACE_PER_CANARY`)."""
    n, space = c.count(), c.space()
    if n > space:
        raise InputError(
            "canaries",
            f"{n} canaries need {n} distinct secrets; 10^{c.digits} holds {space:,}",
        )
    if space < SPACE_PER_CANARY * n:
        raise InputError(
            "canaries",
            f"{n} canaries in a space of 10^{c.digits}: exposure needs a space of at least "
            f"{SPACE_PER_CANARY} candidates per canary ({SPACE_PER_CANARY * n:,}; the other "
            "canaries' secrets are left out of each one's ranking): more digits or fewer canaries",
        )


def load_exposure_config(path: str | Path) -> ExposureConfig:
    """Read a TOML or YAML exposure config; a relative ``cache`` is taken from its folder."""
    from miaudit.engine import read_config_file

    path = Path(path)
    cfg = parse_exposure_config(read_config_file(path))
    if cfg.cache is not None and not cfg.cache.is_absolute():
        cfg = cfg.model_copy(update={"cache": path.parent / cfg.cache})
    return cfg


def text_demo_config(seed: int = 20261206) -> ExposureConfig:
    """``miaudit demo --text``: the default ≈ 2 M-parameter LM pre-trained on 3,000 public
    records (cached), 1,500 private records (750 members) and 250 population records, 40
    canaries of a 10^4 space, 2 reference fine-tunes, the membership audit through the sequence
    signals; sized for ≤ 10 minutes on the 2-core reference machine."""
    return parse_exposure_config(
        {
            "seed": seed,
            "references": 2,
            "data": {"records": 1500, "population": 250},
            "model": {
                "kind": "causal-lm",
                "pretrain": {"records": 3000, "epochs": 1},
                "finetune": {"method": "full", "epochs": 4, "learning_rate": 1e-3},
                "threads": 2,
            },
            "canaries": {"digits": 4, "per_level": 10, "never_inserted": 10},
        }
    )
