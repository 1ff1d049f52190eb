"""``miaudit tradeoff CONFIG --out DIR`` and ``miaudit dp-audit CONFIG``.

Register with ``app.command("tradeoff")(tradeoff)`` and ``app.command("dp-audit")(dp_audit)``.
Bad input raises InputError (exit 2 in main); ``dp-audit`` exits 1 on FAILED.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from miaudit.cli._console import console
from miaudit.cli._options import TrustCode
from miaudit.errors import InputError

if TYPE_CHECKING:
    from miaudit.audit import DpAuditResult, TextTradeoffResult, TradeoffResult
    from miaudit.metrics import Estimate
    from miaudit.report import DpAuditSummary, TradeoffVariant


def _items(value: str, field: str) -> list[str]:
    """The comma-separated items of an option; '' is none, an empty item is refused (red team:
    '1,,2' and ' ' were read silently)."""
    if value == "":
        return []
    items = [v.strip() for v in value.split(",")]
    if any(not v for v in items):
        raise InputError(field, f"has an empty item in {value!r} (give '' for none)")
    return items


def _floats(value: str, field: str) -> list[float]:
    items = _items(value, field)
    try:
        out = [float(v) for v in items]
    except ValueError:
        raise InputError(field, f"must be comma-separated numbers, got {value!r}") from None
    bad = [v for v in out if not math.isfinite(v)]
    if bad:
        raise InputError(field, f"must be finite numbers, got {bad[0]!r}")
    # variants are named by f"{v:g}": values that name alike are the same variant twice
    names = [f"{v:g}" for v in out]
    twice = next((v for v in names if names.count(v) > 1), None)
    if twice is not None:
        raise InputError(field, f"lists {twice} twice (to 6 significant digits): one variant each")
    return out


def _strings(value: str, field: str) -> list[str]:
    out = _items(value, field)
    # policies are case-insensitive ('top-1' and 'TOP-1' are one policy)
    folded = [v.lower() for v in out]
    twice = next((v for v in folded if folded.count(v) > 1), None)
    if twice is not None:
        raise InputError(field, f"lists {twice!r} twice: one variant each")
    return out


def _console() -> Console:
    return console()


def tradeoff_variants_for_report(result: TradeoffResult) -> list[TradeoffVariant]:
    """A trade-off's variants as the report's :class:`~miaudit.report.TradeoffVariant` records."""
    from miaudit.report import variants_from_tradeoff

    return variants_from_tradeoff(result)


def dp_summary_for_report(result: DpAuditResult) -> DpAuditSummary | None:
    """A DP audit as the report's :class:`~miaudit.report.DpAuditSummary` (None when the recipe
    claimed no ε: nothing to check)."""
    from miaudit.report import dp_summary_from_audit

    return dp_summary_from_audit(result)


def _check_tradeoff_options(
    accountant: str, policy_targets: int, accuracy_tolerance: float, noise_sigma: float
) -> None:
    if accountant not in ("prv", "rdp"):
        raise InputError("--accountant", f"must be 'prv' or 'rdp', got {accountant!r}")
    if policy_targets < 1:
        raise InputError("--policy-targets", f"must be at least 1, got {policy_targets}")
    if not 0 <= accuracy_tolerance < 100:
        raise InputError(
            "--accuracy-tolerance",
            f"must be points of accuracy in [0, 100), got {accuracy_tolerance}",
        )
    if not (math.isfinite(noise_sigma) and noise_sigma > 0):
        raise InputError("--noise-sigma", f"must be a finite number > 0, got {noise_sigma!r}")


# Long: over 60 lines through its typer option declarations; the work is in audit.tradeoff.
def tradeoff(
    config: Annotated[
        Path,
        typer.Argument(
            help='Audit config (.toml/.yaml) of the baseline recipe, or a text config ([model] kind = "causal-lm"): plain, DP on LoRA at each --epsilons, dedup.'
        ),
    ],
    out_dir: Annotated[
        Path,
        typer.Option("--out", help="Folder for tradeoff.json, report.html, variants/ and models/."),
    ],
    epsilons: Annotated[
        str, typer.Option(help="DP-SGD target budgets ε (comma-separated; empty: none).")
    ] = "8,4,1",
    weight_decays: Annotated[
        str,
        typer.Option("--weight-decays", help="L2 weight decays (comma-separated; empty: none)."),
    ] = "0.001,0.01",
    early_stopping: Annotated[
        bool,
        typer.Option(
            "--early-stopping/--no-early-stopping", help="Include an early-stopping variant."
        ),
    ] = True,
    policies: Annotated[
        str, typer.Option(help="Output policies on the baseline's models (comma-separated).")
    ] = "top-1,round:1,label-only",
    delta: Annotated[float, typer.Option(help="δ of the DP variants.")] = 1e-5,
    accountant: Annotated[
        str, typer.Option(help="Accountant of the DP variants: prv or rdp.")
    ] = "prv",
    ghost_clipping: Annotated[
        bool,
        typer.Option(
            "--ghost-clipping/--no-ghost-clipping",
            help="Opacus fast gradient clipping for DP variants.",
        ),
    ] = True,
    policy_targets: Annotated[
        int, typer.Option(help="Baseline models attacked through the oracle per policy.")
    ] = 4,
    noise_sigma: Annotated[
        float, typer.Option(help="Noise-robustness σ, in per-column standard deviations.")
    ] = 0.5,
    dp_audit_json: Annotated[
        Path | None,
        typer.Option("--dp-audit", help="A dp_audit.json to show in the report's DP section."),
    ] = None,
    accuracy_tolerance: Annotated[
        float,
        typer.Option(
            "--accuracy-tolerance",
            help="Largest accuracy loss, in points, a recommended control may cost (upper end of its interval).",
        ),
    ] = 1.0,
    trust_code: TrustCode = False,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Text configs: replace an earlier trade-off in --out."),
    ] = False,
) -> None:
    """Measure each control side by side: DP-SGD budgets, regularisation, output policies (same audit for all); for a text config, DP fine-tuning and deduplication."""
    from miaudit.audit import default_variants
    from miaudit.audit import tradeoff as run_tradeoff
    from miaudit.report import write_report

    _check_tradeoff_options(accountant, policy_targets, accuracy_tolerance, noise_sigma)
    audited = _dp_audit_file(dp_audit_json)  # read and checked before any training
    err = console(stderr=True)
    from miaudit.audit import is_text_config

    if is_text_config(config):
        _refuse_tabular_options(
            weight_decays=weight_decays not in ("0.001,0.01", ""),
            policies=policies not in ("top-1,round:1,label-only", ""),
            ghost_clipping=not ghost_clipping,
            policy_targets=policy_targets != 4,
            noise_sigma=noise_sigma != 0.5,
            dp_audit=dp_audit_json is not None,
            accuracy_tolerance=accuracy_tolerance != 1.0,
        )
        _text_tradeoff(
            config, out_dir, _floats(epsilons, "--epsilons"), delta, accountant, overwrite
        )
        return
    variants = default_variants(
        _floats(epsilons, "--epsilons"),
        _floats(weight_decays, "--weight-decays"),
        early_stopping,
        _strings(policies, "--policies"),
        delta=delta,
        accountant=accountant,
        ghost_clipping=ghost_clipping,
    )
    from miaudit.cli._train import load_audit

    cfg = load_audit(config, trust_code)
    from miaudit.audit import dp_audit_variant

    # the audited recipe matched to a variant before any training: another recipe is refused
    matched = dp_audit_variant(cfg, variants, audited) if audited is not None else None
    result = run_tradeoff(
        cfg,
        out_dir,
        variants=variants,
        policy_targets=policy_targets,
        noise_sigma=noise_sigma,
        accuracy_tolerance=accuracy_tolerance / 100,
        say=lambda s: err.print(s, highlight=False, soft_wrap=True),
    )
    out = _console()
    _print_tradeoff(out, result)
    for note in result.notes:  # a void ε (fault injection) said on stderr too, not only in files
        if note.startswith("WARNING: "):
            err.print(f"warning: {note.removeprefix('WARNING: ')}", highlight=False, soft_wrap=True)
    path = write_report(
        out_dir / result.variants[0].folder,
        out_dir / "report.html",
        tradeoff=tradeoff_variants_for_report(result),
        dp=_dp_beside(audited, matched, result),
    )
    out.print(
        f"results: {out_dir / 'tradeoff.json'} (shareable); report: {path}; variants/, models/: restricted"
    )


def _refuse_tabular_options(**given: bool) -> None:
    """A text trade-off has no such control: an option given for it is refused, not ignored
    (red team: --weight-decays, --policies, --noise-sigma, --dp-audit ... ran and were dropped)."""
    for name, was_given in given.items():
        if was_given:
            option = (
                "--no-ghost-clipping" if name == "ghost_clipping" else "--" + name.replace("_", "-")
            )
            raise InputError(
                option,
                "does not apply to a text config (its trade-off is plain, DP on LoRA at each --epsilons, dedup: only --epsilons, --delta and --accountant apply)",
            )


def _text_tradeoff(
    config: Path,
    out_dir: Path,
    epsilons: list[float],
    delta: float,
    accountant: str,
    overwrite: bool = False,
) -> None:
    """A text config: plain, DP on LoRA at each ε, dedup (only --epsilons, --delta and
    --accountant apply; the tabular controls do not)."""
    from miaudit.audit import load_exposure_config, text_tradeoff, text_variants

    cfg = load_exposure_config(config)
    variants = text_variants(
        cfg, epsilons, delta=delta, accountant="rdp" if accountant == "rdp" else "prv"
    )
    err = console(stderr=True)
    result = text_tradeoff(
        cfg,
        out_dir,
        variants=variants,
        say=lambda s: err.print(s, highlight=False, soft_wrap=True),
        overwrite=overwrite,
    )
    out = _console()
    _print_text_tradeoff(out, result)
    out.print(
        f"results: {out_dir / 'tradeoff.json'} (shareable); each variant's exposure and membership "
        f"audit: {out_dir / 'variants'} (restricted)"
    )


def _print_text_tradeoff(out: Console, result: TextTradeoffResult) -> None:
    """Utility, membership and exposure per variant, then the paired comparisons and DP bounds."""
    table = Table(title="Text trade-off (strongest text attack per variant; 95 % intervals)")
    levels = [lv.repetitions for lv in result.variants[0].exposure]
    for col in ("variant", "ε", "held-out loss", "strongest", "AUC", "TPR@1%FPR", "blind AUC"):
        table.add_column(col)
    for r in levels:
        table.add_column("never" if r == 0 else f"exp. {r}×")
    for v in result.variants:
        table.add_row(
            v.name,
            "∞" if v.epsilon is None else f"{v.epsilon:.2f}",
            f"{v.heldout_loss:.3f}",
            v.strongest_attack,
            _est(v.auc),
            _est(v.tpr_at_1pct_fpr),
            "—" if v.blind_auc is None else _est(v.blind_auc),
            *(f"{lv.mean_exposure:.2f}" for lv in v.exposure),
        )
    out.print(table)
    for v in result.variants[1:]:
        parts = [f"{v.name}: AUC reduction {_est(v.risk_reduction, signed=True)}"]
        if v.loss_increase is not None:
            parts.append(f"held-out loss increase {_est(v.loss_increase, signed=True)} nats/token")
        parts += [
            f"exposure reduction at {lv.repetitions}× {_est(lv.reduction, signed=True)}"
            for lv in v.exposure
            if lv.reduction is not None and lv.repetitions > 0
        ]
        out.print("; ".join(parts), highlight=False, soft_wrap=True)
        for g in v.group_privacy:
            out.print(f"  {g.statement}", highlight=False, soft_wrap=True)


def _print_tradeoff(out: Console, result: TradeoffResult) -> None:
    """The variants side by side, each verdict's reason and the paired comparisons."""
    table = Table(title="Privacy–utility trade-off (strongest attack per variant; 95 % intervals)")
    for col in (
        "variant",
        "ε (δ)",
        "test acc",
        "gap",
        "strongest",
        "AUC",
        "TPR@1%FPR",
        "risk reduction",
        "accuracy loss",
        "verdict",
    ):
        table.add_column(col)
    for v in result.variants:
        eps = v.epsilon_text()
        reduction = _est(v.risk_reduction, signed=True) if v.risk_reduction is not None else "—"
        loss = _est(v.accuracy_loss, signed=True) if v.accuracy_loss is not None else "—"
        table.add_row(
            v.name,
            eps,
            _est(v.test_accuracy_interval)
            if v.test_accuracy_interval is not None
            else f"{v.test_accuracy:.3f}",
            f"{v.generalization_gap:+.3f}",
            v.strongest_attack,
            _est(v.auc),
            _est(v.tpr_at_1pct_fpr),
            reduction,
            loss,
            v.recommendation,
        )
    out.print(table)
    for v in result.variants[1:]:
        # The report's wording: a risk reduction means nothing without what it is measured
        # against (a policy's comparator is the same attacks on full outputs, not the baseline's).
        against = f"; against {v.compared_with}" if v.compared_with else ""
        out.print(
            f"{v.name}: {v.recommendation}: {v.reason}{against}", highlight=False, soft_wrap=True
        )
    for c in result.comparisons:
        out.print(
            f"{c.a} − {c.b} AUC ({c.variant}): {_est(c.difference, signed=True)}", highlight=False
        )


def _dp_audit_file(path: Path | None) -> DpAuditResult | None:
    """A ``dp_audit.json`` (None without one); InputError names it."""
    from miaudit.audit import DpAuditResult

    if path is None:
        return None
    return DpAuditResult.read(path, field="--dp-audit")


def _dp_beside(
    audited: DpAuditResult | None, variant: str | None, result: TradeoffResult
) -> DpAuditSummary | None:
    """The report's DP section: the audit, which variant's recipe it is of (only the baseline's
    goes in the verdict) and, when they differ, that its σ, q and steps are those of its own
    runs' training-set size, not of the trade-off's models (red team: "σ = 1.12, q = 0.0526,
    38 steps" beside models that ran q = 0.1 and 20 steps)."""
    summary = dp_summary_for_report(audited) if audited is not None else None
    if summary is None or audited is None:
        return None
    base = result.variants[0]
    if variant is None:
        said = (
            "This DP audit is of this trade-off's recipe and data with DP settings none of its "
            "variants has: its verdict is about that recipe, not about any model in this report."
        )
    else:
        said = (
            f"This DP audit is of variant {variant}'s recipe (the same data, recipe and DP settings)"
            + (
                "."
                if variant == base.name
                else ", not of the baseline: its verdict is not the baseline's."
            )
        )
    notes = [said, *_mechanism_note(audited, result, variant)]
    return summary.model_copy(
        update={
            "variant": variant,
            "of_baseline": variant == base.name,
            "notes": [*notes, *summary.notes],
        }
    )


def _mechanism_note(
    audited: DpAuditResult, result: TradeoffResult, variant: str | None
) -> list[str]:
    if not audited.privacy or variant is None:
        return []
    p = max(audited.privacy, key=lambda q: q.epsilon)
    v = result.variant(variant)
    if v.noise_multiplier is None or v.sample_rate is None or v.steps is None:
        return []
    theirs = (v.noise_multiplier, v.sample_rate, v.steps)
    if math.isclose(p.noise_multiplier, theirs[0], rel_tol=1e-9) and (
        math.isclose(p.sample_rate, theirs[1], rel_tol=1e-9) and p.steps == theirs[2]
    ):
        return []
    return [
        f"dp-audit trains on its own split of the records: its runs' mechanism (σ = {p.noise_multiplier:.3g}, "
        f"q = {p.sample_rate:.3g}, {p.steps} steps) is that of its training-set size, not of {variant}'s models in "
        f"this trade-off (σ = {theirs[0]:.3g}, q = {theirs[1]:.3g}, {theirs[2]} steps): it tests the recipe's DP-SGD "
        "and accounting at another size, not these models' ε."
    ]


def _est(e: Estimate | None, signed: bool = False) -> str:
    if e is None or e.point is None:
        return "n/m"
    if signed:  # a difference: as many decimals as show on which side of 0 each end lies
        from miaudit.audit import signed_difference

        return signed_difference(e)
    f = "{:+.3f}" if signed else "{:.3f}"
    s = f.format(e.point)
    if e.lower is not None and e.upper is not None:
        s += f" [{f.format(e.lower)}, {f.format(e.upper)}]"
    return s


# Long: over 60 lines through its typer option declarations; the work is in audit.dp_audit.
def dp_audit(
    config: Annotated[
        Path, typer.Argument(help="Audit config (.toml/.yaml); [model].dp makes the claim.")
    ],
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for dp_audit.json (shareable).")
    ] = None,
    canaries: Annotated[
        int | None,
        typer.Option(
            help="Canaries per run, each included by a fair coin flip (default: 5,000 gradient canaries, at most the model's coordinates; 1,000 input canaries)."
        ),
    ] = None,
    k_plus: Annotated[
        int | None,
        typer.Option(
            "--k-plus",
            help="IN guesses per run (top scores), fixed before scoring (default: the guess rule, from the claim alone).",
        ),
    ] = None,
    k_minus: Annotated[
        int | None,
        typer.Option(
            "--k-minus",
            help="OUT guesses per run (bottom scores), fixed before scoring (default: the guess rule).",
        ),
    ] = None,
    runs: Annotated[
        int,
        typer.Option(
            help="Independent training runs: fresh canaries each, pooled; with --multi-run, R runs of one gradient canary each."
        ),
    ] = 1,
    multi_run: Annotated[
        bool,
        typer.Option(
            "--multi-run",
            help="Multi-run mode for small DP 'torch-mlp' recipes: --runs R runs trained many at once, one Dirac gradient canary each (included in half the runs by a seeded coin), Clopper–Pearson over runs with its ceiling.",
        ),
    ] = False,
    curve: Annotated[
        bool,
        typer.Option(
            "--curve",
            help="Test the accountant's whole ε(δ) curve (a fixed δ grid, Bonferroni) instead of the claimed point: the verdict is that one test.",
        ),
    ] = False,
    reference_runs: Annotated[
        int,
        typer.Option(
            "--reference-runs",
            help="Calibrate black-box canaries (input, ood) on R reference runs per audited run: the same canaries with fresh coins, each score centred by its reference mean; ood canaries' input scale is chosen on them too (0: off).",
        ),
    ] = 0,
    significance: Annotated[
        float, typer.Option(help="Significance of the one-sided test of the claim.")
    ] = 0.05,
    seed: Annotated[
        int | None,
        typer.Option(help="Seed of canaries, coin flips and training (default: the config's)."),
    ] = None,
    canary_kind: Annotated[
        str,
        typer.Option(
            "--canary-kind",
            help="auto (the strongest the recipe allows: gradient for a DP recipe, else input), input (records with a wrong label, black-box), rare-category (records with a category no other record has, black-box: catches preprocessing that sees the training records), ood (out-of-distribution inputs with wrong labels, black-box) or gradient (Dirac gradients in the DP-SGD step, white-box).",
        ),
    ] = "auto",
    trust_code: TrustCode = False,
) -> None:
    """Empirical ε lower bound for a DP recipe against its accountant's claim: PASSED, FAILED or not testable."""
    from miaudit.audit import CANARY_KINDS, DpAuditDesign
    from miaudit.audit import dp_audit as run_dp_audit

    kind = next((k for k in CANARY_KINDS if k == canary_kind), None)
    if kind is None and canary_kind != "auto":
        raise InputError(
            "--canary-kind",
            f"must be 'auto', 'input', 'ood', 'rare-category' or 'gradient', got {canary_kind!r}",
        )
    if (k_plus is None) != (k_minus is None):  # one given: the design guesses one side only
        k_plus, k_minus = k_plus or 0, k_minus or 0
    out = _console()
    design = DpAuditDesign(
        canaries=canaries,
        k_plus=k_plus,
        k_minus=k_minus,
        runs=runs,
        significance=significance,
        canary_kind=kind,
        multi_run=multi_run,
        curve=curve,
        reference_runs=reference_runs,
    )
    from miaudit.cli._train import load_audit

    cfg = load_audit(config, trust_code)
    result = run_dp_audit(
        cfg,
        out_dir,
        design=design,
        seed=seed,
        say=lambda s: out.print(s, highlight=False, soft_wrap=True),
    )
    if out_dir is not None:
        out.print(f"results: {out_dir / 'dp_audit.json'} (shareable)")
    if result.verdict == "FAILED" and not math.isinf(result.claimed_epsilon):
        raise SystemExit(1)
