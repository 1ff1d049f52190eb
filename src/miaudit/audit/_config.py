"""The audit config: what to train (data, recipe, plan, engine) and how to attack it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from miaudit.attacks import AttackSpec, Need, SignalKind, registered_attacks
from miaudit.datasets import DataConfig
from miaudit.engine import (
    EngineConfig,
    PlanConfig,
    TrainConfig,
    check_device_for,
    check_finite,
    read_config_file,
    with_trust,
)
from miaudit.errors import InputError
from miaudit.metrics import DEFAULT_FPRS
from miaudit.models import (
    MLPRecipe,
    Recipe,
    check_code_trust,
    resolve_code_folder,
    validation_error,
)


def runs_on_target_outputs(spec: AttackSpec) -> bool:
    """Whether a reference audit runs ``spec`` on each target's own outputs (no references).

    Attacks that calibrate on records of known membership do not: the audit has no
    membership to spare besides the target's own.
    """
    return spec.signal_kind is SignalKind.MODEL_OUTPUTS and Need.KNOWN_MEMBERS not in spec.needs


def audit_attacks() -> tuple[str, ...]:
    """The registered attacks a reference audit can run, in registry order."""
    return tuple(
        s.name
        for s in registered_attacks()
        if runs_on_target_outputs(s) or s.signal_kind is SignalKind.REFERENCE_OUTPUTS
    )


#: The built-in audit attacks at import (:func:`audit_attacks` also lists later registrations).
AUDIT_ATTACKS = audit_attacks()
DEFAULT_AUDIT_ATTACKS = ("loss", "lira_online", "lira_offline", "rmia_online", "rmia_offline")


#: Most bootstrap replicates of an interval: 10,000 put its Monte Carlo error far below its
#: width; 10¹² was accepted and failed "out of memory" after every model had trained.
MAX_RESAMPLES = 10_000


class AttackSection(BaseModel):
    """``[audit]``: how many references, which attacks, how to evaluate.

    ``references`` = k: every record gets exactly k OUT references (offline attacks) and k IN
    ones (online attacks use all 2k models), from k complementary pairs. The plan therefore
    trains 2k + 2 models: the target, its complementary partner (never its reference: its
    membership mirrors the target's), and k pairs. ``targets``: how many models take a turn as
    the audited model (leave-one-model-out; default all), pooled for evaluation.
    ``resamples``: bootstrap replicates of every interval; the report's verdict and
    ``--fail-on``'s bounds need at least 39 (with fewer, or 0 for points only, the verdict is
    "not assessed" and a rule on a bound is refused).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    references: int = Field(4, ge=1, le=512)
    attacks: list[str] = Field(default_factory=lambda: list(DEFAULT_AUDIT_ATTACKS))
    targets: int | None = Field(None, ge=1)
    resamples: int = Field(200, ge=0, le=MAX_RESAMPLES)
    prior: float = Field(0.5, gt=0.0, lt=1.0)
    fprs: list[float] = Field(default_factory=lambda: list(DEFAULT_FPRS))
    lira_variance: Literal["global", "per_record"] = "global"
    rmia_gamma: float = Field(1.0, gt=0.0)
    rmia_a: float | None = Field(None, ge=0.0, le=1.0)

    @field_validator("attacks")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one attack")
        known = audit_attacks()
        for a in v:
            if a not in known:
                raise ValueError(f"unknown attack {a!r}; known: {', '.join(known)}")
        return list(dict.fromkeys(v))

    @field_validator("fprs")
    @classmethod
    def _rates(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < f < 1 for f in v):
            raise ValueError("FPRs must lie in (0, 1)")
        return sorted(set(v), reverse=True)


class AuditConfig(BaseModel):
    """Everything ``miaudit audit`` needs. ``[plan].models`` follows from ``[audit].references``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: DataConfig
    model: Recipe = Field(default_factory=MLPRecipe)
    plan: PlanConfig = PlanConfig(models=10)
    engine: EngineConfig = EngineConfig()
    audit: AttackSection = AttackSection()
    seed: int = Field(0, ge=0)
    #: The config may name code to import and run (docs/security.md); ``--trust-code`` sets it.
    trust_code: bool = False

    @model_validator(mode="after")
    def _targets_among_the_models(self) -> AuditConfig:
        """More targets than the plan has models was clamped silently (1e9 became 6)."""
        if self.audit.targets is not None and self.audit.targets > self.n_models():
            raise ValueError(
                f"audit.targets: at most the plan's {self.n_models()} models (2 x references + 2), got {self.audit.targets}"
            )
        return self

    def n_models(self) -> int:
        return 2 * self.audit.references + 2

    def train_config(self) -> TrainConfig:
        if self.plan.kind != "complementary":
            raise InputError(
                "plan.kind",
                "an audit trains complementary pairs (k references need them); remove 'kind' or set it to \"complementary\"",
            )
        plan = self.plan.model_copy(update={"models": self.n_models()})
        return TrainConfig(
            data=self.data,
            model=self.model,
            plan=plan,
            engine=self.engine,
            seed=self.seed,
            trust_code=self.trust_code,
        )


def parse_audit_config(raw: dict[str, Any], *, trust_code: bool = False) -> AuditConfig:
    """Validate an audit config mapping; a config naming code is refused unless it or
    ``trust_code`` (``--trust-code``) opts in."""
    check_finite(raw)
    plan = raw.get("plan")
    if isinstance(plan, dict) and "models" in plan:
        raise InputError("plan.models", "is set by [audit].references (2k + 2 models); remove it")
    try:
        cfg = AuditConfig.model_validate(with_trust(raw, trust_code))
    except ValidationError as exc:
        raise validation_error(exc, "") from None
    check_code_trust(cfg.model, cfg.trust_code)
    check_device_for(cfg.model, cfg.engine)
    return cfg


class SignalsAuditConfig(BaseModel):
    """The config of an audit of signals trained elsewhere (``miaudit audit --signals``): only
    ``[audit]`` (attacks, resamples, FPRs…) and ``seed``; there is nothing to train.

    ``[audit].references`` = k, when set, picks k complementary pairs per target (the store must
    be made of them); unset, a target's references are every other model except its
    complementary partner(s) (docs/signals-elsewhere.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    audit: AttackSection = AttackSection()
    seed: int = Field(0, ge=0)


#: Sections of an audit config that say what to train: an audit of signals has no use for them.
_TRAINING_SECTIONS = ("data", "model", "plan", "engine", "trust_code")


def parse_signals_config(raw: dict[str, Any]) -> SignalsAuditConfig:
    """Validate a signals audit config mapping (``[audit]`` and ``seed`` only)."""
    check_finite(raw)
    extra = [s for s in _TRAINING_SECTIONS if s in raw]
    if extra:
        raise InputError(
            extra[0],
            "an audit of signals trained elsewhere (--signals) trains nothing: remove this section (only [audit] and seed apply)",
        )
    try:
        return SignalsAuditConfig.model_validate(raw)
    except ValidationError as exc:
        raise validation_error(exc, "") from None


def load_signals_config(path: str | Path) -> SignalsAuditConfig:
    """Read the TOML or YAML config of an audit of signals (:class:`SignalsAuditConfig`)."""
    return parse_signals_config(read_config_file(Path(path)))


def load_audit_config(path: str | Path, *, trust_code: bool = False) -> AuditConfig:
    """Read a TOML or YAML audit config; relative paths are taken from the file's folder."""
    path = Path(path)
    cfg = parse_audit_config(read_config_file(path), trust_code=trust_code)
    base = path.parent

    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else base / p

    return cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"path": fix(cfg.data.path)}),
            "engine": cfg.engine.model_copy(update={"cache": fix(cfg.engine.cache)}),
            "model": resolve_code_folder(cfg.model, base),
        }
    )


def signals_audit_config(
    path: str | Path | None = None,
    *,
    attacks: list[str] | None = None,
    resamples: int | None = None,
    seed: int | None = None,
) -> SignalsAuditConfig:
    """A signals audit's settings: the config file's (if any), then the options given here
    (``miaudit audit --signals … --attacks … --resamples … --seed …``) over them."""
    base = load_signals_config(path) if path is not None else SignalsAuditConfig()
    section = base.audit.model_dump(exclude_unset=True)
    if attacks is not None:
        section["attacks"] = attacks
    if resamples is not None:
        section["resamples"] = resamples
    raw: dict[str, Any] = {"audit": section, "seed": base.seed if seed is None else seed}
    return parse_signals_config(raw)
