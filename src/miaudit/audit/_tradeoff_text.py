"""``miaudit tradeoff`` on a text config: plain fine-tuning, DP on LoRA adapters at each budget ε,
and deduplication, measured side by side on the same members and canaries.

Each variant is one :func:`~miaudit.audit.run_exposure` run of the same config (same seed:
the same pool, the same members, the same reference halves, the same canaries) that differs
only in ``[model.finetune]`` (DP) or ``[dedup]``. Per variant: utility (held-out loss and
perplexity of the target on the pool records it did not fine-tune on), membership (the
strongest text attack's AUC and TPR at 1 % FPR with record-resampling intervals, the blind
baseline beside it), the canaries' mean exposure per repetition level, and for DP the
accountant's ε with the group-privacy bound n·ε for a canary inserted n times. Against the
plain variant, paired: AUC reduction (same pool records), held-out loss increase (same
held-out records), exposure reduction per level (same canaries).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import ConfigDict, Field

from miaudit._io import ensure_private_dir, write_text_atomic
from miaudit.audit._exposure import ExposureRun, check_exposure_dp, run_exposure
from miaudit.audit._exposure_config import ExposureConfig, parse_exposure_config
from miaudit.audit._exposure_membership import heldout_nll, strongest_model_attack
from miaudit.audit._results import _Record, dump_record, parse_record, read_record
from miaudit.audit._tradeoff_result import TPR1, TRADEOFF_FILE
from miaudit.audit._writer import refuse_another_run
from miaudit.errors import InputError
from miaudit.metrics import Estimate, evaluate

TEXT_TRADEOFF_SCHEMA: Literal["miaudit.text-tradeoff/1"] = "miaudit.text-tradeoff/1"
#: Where each variant's exposure run goes, under the trade-off's folder.
VARIANTS = "variants"
PLAIN = "plain"


class LevelExposure(_Record):
    """The canaries inserted ``repetitions`` times (0: never): mean exposure in bits, how many
    greedy decoding extracted, and (against the plain variant, paired over the same canaries)
    the exposure reduction plain − this."""

    repetitions: int
    canaries: int
    mean_exposure: float
    extracted: int
    reduction: Estimate | None = None


class GroupPrivacy(_Record):
    """A DP variant's guarantee for a canary inserted ``repetitions`` times: (n·ε, n·e^{(n−1)ε}·δ)."""

    repetitions: int
    epsilon: float
    delta: float
    statement: str


class TextVariantOutcome(_Record):
    """One variant: utility, membership, exposure, privacy spent."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True
    )

    name: str
    description: str
    folder: str
    heldout_loss: float
    heldout_perplexity: float
    strongest_attack: str
    auc: Estimate
    tpr_at_1pct_fpr: Estimate = Field(alias=TPR1)
    blind_auc: Estimate | None
    exposure: list[LevelExposure]
    epsilon: float | None = None
    delta: float | None = None
    group_privacy: list[GroupPrivacy] = Field(default_factory=list)
    finetune_texts: int | None = None
    baseline: bool = False
    #: Paired AUC(plain's strongest) − AUC(this variant's strongest), same pool records.
    risk_reduction: Estimate | None = None
    #: Paired held-out loss (nats/token, per record) of this variant − plain's.
    loss_increase: Estimate | None = None


class TextTradeoffResult(_Record):
    """Every text control measured by the same audit, plain first (``tradeoff.json``)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True
    )

    schema_version: Literal["miaudit.text-tradeoff/1"] = Field(TEXT_TRADEOFF_SCHEMA, alias="schema")
    dataset: str
    seed: int
    variants: list[TextVariantOutcome]
    notes: list[str]

    def variant(self, name: str) -> TextVariantOutcome:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def to_json(self) -> str:
        return dump_record(self)

    @classmethod
    def from_json(cls, text: str, source: str = TRADEOFF_FILE) -> TextTradeoffResult:
        return parse_record(cls, text, TEXT_TRADEOFF_SCHEMA, source=source)

    @classmethod
    def read(cls, path: str | Path, *, field: str | None = None) -> TextTradeoffResult:
        return read_record(cls, Path(path), TEXT_TRADEOFF_SCHEMA, field=field)


@dataclass(frozen=True)
class TextVariant:
    """One variant: its name, what it changes, and its whole config."""

    name: str
    description: str
    config: ExposureConfig


def text_variants(
    cfg: ExposureConfig,
    epsilons: Sequence[float] = (8.0,),
    *,
    delta: float = 1e-5,
    accountant: Literal["rdp", "prv"] = "rdp",
    dedup: bool = True,
) -> list[TextVariant]:
    """Plain (the config without ``[dedup]``), DP on LoRA at each ε, deduplication (the config's
    ``[dedup]``, else the defaults); InputError naming the option before any training."""
    for e in epsilons:
        if not (np.isfinite(e) and e > 0):
            raise InputError("--epsilons", f"each ε must be a finite number > 0, got {e!r}")
    if not 0 < delta < 1:
        raise InputError("--delta", f"must lie in (0, 1), got {delta!r}")
    raw = cfg.model_dump(mode="python")
    plain = _with(raw, dedup=None)
    ft = cfg.model.finetune
    out = [TextVariant(PLAIN, f"the recipe as given ({ft.method} fine-tuning, no DP)", plain)]
    for e in epsilons:
        finetune = {**raw["model"]["finetune"], "method": "lora"}
        finetune["dp"] = {"epsilon": float(e), "delta": delta, "accountant": accountant}
        note = "" if ft.method == "lora" else "; plain fine-tunes every weight"
        out.append(
            TextVariant(
                f"dp-eps{e:g}",
                f"DP-SGD on LoRA adapters (rank {ft.lora_rank}), target ε = {e:g}, δ = {delta:g} ({accountant}){note}",
                _with(raw, dedup=None, model={**raw["model"], "finetune": finetune}),
            )
        )
    if dedup:
        section = raw["dedup"] or {"threshold": 0.8, "ngram": 3}
        out.append(
            TextVariant(
                "dedup",
                f"deduplicated fine-tuning set (exact after normalisation, then MinHash ≥ {section['threshold']:g})",
                _with(raw, dedup=section),
            )
        )
    return out


def _with(raw: dict[str, Any], **changes: Any) -> ExposureConfig:
    merged = {**raw, **changes}
    if merged.get("cache") is None:
        merged.pop("cache", None)
    return parse_exposure_config(merged)


def _bootstrap_mean(d: np.ndarray, n_resamples: int, rng: np.random.Generator) -> Estimate:
    """mean(d) with a percentile interval resampling its entries (95 %)."""
    if d.size == 0:
        return Estimate(point=None, status="not_measurable")
    point = float(d.mean())
    if n_resamples == 0 or d.size < 2:
        return Estimate(point=point)
    reps = d[rng.integers(0, d.size, (n_resamples, d.size))].mean(1)
    lo, hi = np.quantile(reps, [0.025, 0.975])
    return Estimate(point=point, lower=float(lo), upper=float(hi))


def _canary_exposures(run: ExposureRun) -> dict[tuple[str, str], tuple[int, float]]:
    return {
        (c["prefix"], c["secret"]): (c["repetitions"], c["exposure"])
        for c in run.record["canaries"]
    }


def _levels(
    run: ExposureRun, plain: ExposureRun | None, n_resamples: int, rng: np.random.Generator
) -> list[LevelExposure]:
    mine = _canary_exposures(run)
    theirs = _canary_exposures(plain) if plain is not None else {}
    out = []
    for lv in run.summary["levels"]:
        reps = lv["repetitions"]
        keys = [k for k, (r, _) in mine.items() if r == reps]
        reduction = None
        if plain is not None:
            d = np.array([theirs[k][1] - mine[k][1] for k in keys if k in theirs])
            reduction = _bootstrap_mean(d, n_resamples, rng)
        out.append(
            LevelExposure(
                repetitions=reps,
                canaries=lv["canaries"],
                mean_exposure=lv["mean_exposure"],
                extracted=lv["extracted"],
                reduction=reduction,
            )
        )
    return out


def _paired_auc(
    plain: ExposureRun, run: ExposureRun, n_resamples: int, rng: np.random.Generator
) -> Estimate:
    """AUC(plain's strongest) − AUC(this run's strongest) over the same pool records."""
    a, b = plain.membership, run.membership
    assert a is not None and b is not None
    if not np.array_equal(a.member, b.member) or not np.array_equal(a.record_id, b.record_id):
        raise RuntimeError("the variants' pools differ: a paired comparison needs the same records")
    sa, sb = strongest_model_attack(a.result), strongest_model_attack(b.result)
    ev = evaluate(
        a.member,
        {"plain": a.scores[sa], "variant": b.scores[sb]},
        n_resamples=n_resamples,
        rng=rng,
    )
    return ev.difference("plain", "variant", "auc")


def _outcome(
    v: TextVariant,
    run: ExposureRun,
    plain: ExposureRun | None,
    n_resamples: int,
    rng: np.random.Generator,
) -> TextVariantOutcome:
    m, s = run.summary["membership"], run.summary
    dp = s["dp"]
    loss_increase = risk = None
    if plain is not None:
        assert run.signals is not None and plain.signals is not None
        d = heldout_nll(run.signals) - heldout_nll(plain.signals)
        loss_increase = _bootstrap_mean(d, n_resamples, rng)
        risk = _paired_auc(plain, run, n_resamples, rng)
    strongest = m["attacks"][m["strongest"]]
    blind = m["blind_baseline"]
    return TextVariantOutcome(
        name=v.name,
        description=v.description,
        folder=f"variants/{v.name}",
        heldout_loss=s["heldout"]["loss"],
        heldout_perplexity=s["heldout"]["perplexity"],
        strongest_attack=m["strongest"],
        auc=Estimate.model_validate(strongest["auc"]),
        tpr_at_1pct_fpr=Estimate.model_validate(strongest["tpr@1%fpr"]),
        blind_auc=None if blind is None else Estimate.model_validate(blind["auc"]),
        exposure=_levels(run, plain, n_resamples, rng),
        epsilon=None if dp is None else dp["epsilon"],
        delta=None if dp is None else dp["delta"],
        group_privacy=[]
        if dp is None
        else [
            GroupPrivacy(**{k: g[k] for k in ("repetitions", "epsilon", "delta", "statement")})
            for g in dp["group_privacy"]
        ],
        finetune_texts=None if s["dedup"] is None else s["dedup"]["after"],
        baseline=plain is None,
        risk_reduction=risk,
        loss_increase=loss_increase,
    )


def text_tradeoff(
    cfg: ExposureConfig,
    out: Path,
    *,
    variants: Sequence[TextVariant] | None = None,
    say: Callable[[str], None] | None = None,
    overwrite: bool = False,
) -> TextTradeoffResult:
    """Run every variant into ``out/variants/NAME`` (restricted, as ``miaudit exposure``
    writes) and write ``out/tradeoff.json`` (aggregates only: shareable). Before anything
    trains, a folder holding another command's run is refused, and one holding a trade-off
    (``tradeoff.json`` or ``variants/``) unless ``overwrite``; ``out`` and ``out/variants`` are
    made 0700 whatever the umask (red team: ``variants/`` was 0777 under umask 000, and a
    second run replaced the first's trade-off without asking)."""
    chosen = list(variants) if variants is not None else text_variants(cfg)
    if not chosen or chosen[0].name != PLAIN:
        raise InputError("variants", "the first variant must be the plain one")
    for v in chosen:  # every DP variant's claim before anything trains
        given = v.name.startswith("dp-")
        try:
            check_exposure_dp(
                v.config,
                epsilon_field="--epsilons" if given else "model.finetune.dp.epsilon",
                delta_field="--delta" if given else "model.finetune.dp.delta",
            )
        except InputError as exc:
            raise InputError(exc.field, f"variant {v.name}: {exc.problem}") from None
    _check_out(out, overwrite)
    tell = say or (lambda _m: None)
    rng = np.random.default_rng([cfg.seed, 31])
    runs: list[ExposureRun] = []
    for v in chosen:
        tell(f"variant {v.name}: {v.description}")
        runs.append(run_exposure(v.config, out / VARIANTS / v.name, overwrite=True, progress=tell))
    outcomes = [
        _outcome(v, r, None if i == 0 else runs[0], cfg.resamples, rng)
        for i, (v, r) in enumerate(zip(chosen, runs, strict=True))
    ]
    result = TextTradeoffResult(
        dataset=f"synthetic personal records ({cfg.data.records} pool, seed {cfg.seed})",
        seed=cfg.seed,
        variants=outcomes,
        notes=[
            "Same seed in every variant: the same pool, members, references and canaries, so the comparisons are paired.",
            "Membership: the strongest text attack per variant (the blind baseline beside it); intervals resample records, exposure reductions resample canaries (95 %).",
            "ε is per record: a canary inserted n times is n records to the accountant (group privacy n·ε).",
        ],
    )
    write_text_atomic(out / TRADEOFF_FILE, result.to_json())
    return result


def _check_out(out: Path, overwrite: bool) -> None:
    ensure_private_dir(out)
    refuse_another_run(out, own="tradeoff", advice="choose another folder")
    held = [n for n in (TRADEOFF_FILE, VARIANTS) if (out / n).exists()]
    if held and not overwrite:
        raise InputError(
            "--out",
            f"{str(out)!r} already holds a trade-off ({held[0]}): choose another folder, or replace it with overwrite (--overwrite)",
        )
    ensure_private_dir(out / VARIANTS)


def is_text_config(path: str | Path) -> bool:
    """Whether a config file is a text config (``[model] kind = "causal-lm"``, or a
    ``[canaries]`` table), run by :func:`text_tradeoff` rather than the tabular
    :func:`~miaudit.audit.tradeoff`."""
    from miaudit.engine import read_config_file

    raw = read_config_file(Path(path))
    model = raw.get("model")
    return "canaries" in raw or (isinstance(model, dict) and model.get("kind") == "causal-lm")
