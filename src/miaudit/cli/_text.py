"""``miaudit exposure CONFIG --out DIR`` and ``miaudit demo --text``: secrets in a fine-tuned LM.

Register with ``app.command("exposure")(exposure)``. Bad input raises InputError (exit 2 in
main) before any training; a failed run leaves nothing in ``--out``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from miaudit.cli._console import console, progress

if TYPE_CHECKING:
    from miaudit.audit import ExposureConfig, ExposureRun

out = console()


def print_exposure(run: ExposureRun) -> None:
    """The per-level table (aggregates only: no canary text, no secret)."""
    s = run.summary
    out.print(
        f"exposure ({s['method']}, candidate space {s['space']:,}; max {s['levels'][0]['max_possible']:.1f} bits)",
        highlight=False,
    )
    for lv in s["levels"]:
        label = "never inserted" if lv["repetitions"] == 0 else f"inserted {lv['repetitions']}×"
        out.print(
            f"  {label:>15}: mean {lv['mean_exposure']:5.2f} bits, max {lv['max_exposure']:5.2f}, "
            f"extracted by greedy decoding {lv['extracted']}/{lv['canaries']}",
            highlight=False,
        )
    if s["dp"] is not None:
        out.print(
            f"DP fine-tuning: ε = {s['dp']['epsilon']:.2f}, δ = {s['dp']['delta']:g}",
            highlight=False,
        )
        for g in s["dp"]["group_privacy"]:
            out.print(f"  {g['statement']}", highlight=False)
        if s["dp"].get("scope"):
            out.print(f"  {s['dp']['scope']}", highlight=False)
    if s["dedup"] is not None:
        d = s["dedup"]
        out.print(
            f"dedup: {d['before']} → {d['after']} texts ({d['exact_removed']} exact, {d['near_removed']} near duplicates)",
            highlight=False,
        )
    print_membership(s["membership"], s["heldout"])
    out.print(
        f"results: {run.out / 'exposure.json'} (restricted, 0600: canary secrets); "
        f"{run.out / 'exposure-summary.json'} (aggregates only); membership audit: "
        f"{run.out / 'audit'} (results.json, report.html; check-record reads it)",
        highlight=False,
    )


def _est(e: dict[str, Any]) -> str:
    if e.get("point") is None:
        return "n/m"
    if e.get("lower") is None or e.get("upper") is None:
        return f"{e['point']:.3f}"
    return f"{e['point']:.3f} [{e['lower']:.3f}, {e['upper']:.3f}]"


def print_membership(m: dict[str, Any], heldout: dict[str, Any]) -> None:
    """Each text attack's AUC and TPR at 1 % FPR (95 % intervals), the blind baseline last."""
    out.print(
        f"membership of the target's {m['members']} members among {m['pool']} pool records "
        f"(held-out loss {heldout['loss']:.3f} nats/token, perplexity {heldout['perplexity']:.2f}):",
        highlight=False,
    )
    for name, fig in m["attacks"].items():
        mark = " (strongest)" if name == m["strongest"] else ""
        out.print(
            f"  {name:>18}: AUC {_est(fig['auc'])}, TPR@1%FPR {_est(fig['tpr@1%fpr'])}{mark}",
            highlight=False,
        )
    if m["split_note"]:
        out.print(f"  {m['split_note']}", highlight=False, soft_wrap=True)


def run_and_print(cfg: ExposureConfig, out_dir: Path, overwrite: bool) -> None:
    from miaudit.audit import run_exposure

    with progress(out, "starting") as say:
        run = run_exposure(cfg, out_dir, overwrite=overwrite, progress=say)
    print_exposure(run)


def exposure(
    config: Annotated[
        Path,
        typer.Argument(
            help="Text config (.toml, .yaml or .yml): [data], [model] (causal-lm), [canaries], [dedup], references, resamples, seed."
        ),
    ],
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Folder for exposure.json, audit/ (the membership audit: results.json, report.html), models/ and the sequence signals.",
        ),
    ],
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace results already in --out.")
    ] = False,
) -> None:
    """Fine-tune miaudit's small LM with secret canaries: their exposure, and a membership audit by the text attacks."""
    from miaudit.audit import load_exposure_config

    cfg = load_exposure_config(config)
    run_and_print(cfg, out_dir, overwrite)


def text_demo(out_dir: Path) -> None:
    """``miaudit demo --text``: :func:`miaudit.audit.text_demo_config` run into ``out_dir``."""
    from miaudit.audit import text_demo_config

    out.print(
        "miaudit demo --text: a ≈ 2 M-parameter LM pre-trained on public synthetic records "
        "(cached), fine-tuned on 750 private ones with 40 canaries (30 inserted, 10 never); "
        "2 reference fine-tunes; membership audited by the text attacks"
    )
    run_and_print(text_demo_config(), out_dir, overwrite=True)
