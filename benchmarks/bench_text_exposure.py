"""Secrets in a fine-tuned LM: exposure rises with repetitions; DP (ε = 8) and deduplication
lower the exposure of canaries inserted 16 times; never-inserted canaries beside them.

Three fine-tunes of one cached base on the same members and the same canaries, with one recipe
fixed before anything was measured (LoRA, rank 8): plain, DP on the adapters through Opacus
(ε = 8, δ = 1e-5, per record), and plain after deduplicating the fine-tuning set. Intervals are
percentile bootstraps over canaries (2,000 resamples, seed 0): paired (the same canary under
two models) for DP and dedup; two-sample for the repetition levels within one model, whose
canaries differ. The repetition effect is also measured paired: deduplication leaves every
canary exactly once (the pool has no duplicates), so plain − dedup on the canaries inserted r
times is the same canaries at r× against 1×.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._schema import BenchResult

CLAIM = (
    "exposure rises with repetitions (16× above 1× in the plain model, interval above 0; 4× and "
    "1× against never-inserted reported, not claimed); at DP ε = 8 the 16× canaries' mean "
    "exposure is below the plain model's (paired interval above 0); deduplication's effect "
    "measured the same way"
)


def _config(size: str, seed: int, *, dp: bool, dedup: bool) -> dict[str, Any]:
    full = size == "full"
    finetune: dict[str, Any] = {
        "method": "lora",
        "epochs": 8 if full else 6,
        "learning_rate": 3e-3,
        "batch_size": 16,
        "lora_rank": 8,
    }
    if dp:
        finetune["dp"] = {"epsilon": 8.0, "delta": 1e-5}
    arch = {} if full else {"vocab_size": 512, "width": 64, "layers": 2, "heads": 2}
    cfg: dict[str, Any] = {
        "seed": seed,
        "references": 0,
        "data": {"records": 2000 if full else 300},
        "model": {
            "architecture": arch,
            "pretrain": {"records": 4000 if full else 600, "epochs": 1},
            "finetune": finetune,
            "threads": 2,
        },
        "canaries": {
            "digits": 4,
            "per_level": 20 if full else 10,
            "never_inserted": 20 if full else 10,
        },
    }
    if dedup:
        cfg["dedup"] = {"threshold": 0.8}
    return cfg


def _exposures(
    raw: dict[str, Any], out: Path, cache: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from miaudit.audit import parse_exposure_config, run_exposure

    cfg = parse_exposure_config({**raw, "cache": str(cache)})
    run = run_exposure(cfg, out)
    return run.record["canaries"], run.summary


def _boot(
    values: np.ndarray, rng: np.random.Generator, n: int = 2000
) -> tuple[float, float, float]:
    means = values[rng.integers(len(values), size=(n, len(values)))].mean(1)
    return float(values.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def _two_sample(
    a: np.ndarray, b: np.ndarray, rng: np.random.Generator, n: int = 2000
) -> tuple[float, float, float]:
    ma = a[rng.integers(len(a), size=(n, len(a)))].mean(1)
    mb = b[rng.integers(len(b), size=(n, len(b)))].mean(1)
    d = ma - mb
    return float(a.mean() - b.mean()), float(np.quantile(d, 0.025)), float(np.quantile(d, 0.975))


def _by_level(rows: list[dict[str, Any]]) -> dict[int, np.ndarray]:
    levels = sorted({r["repetitions"] for r in rows})
    return {lv: np.array([r["exposure"] for r in rows if r["repetitions"] == lv]) for lv in levels}


def run(size: str) -> BenchResult:
    seed = 0
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        plain, _ = _exposures(
            _config(size, seed, dp=False, dedup=False), root / "plain", root / "cache"
        )
        dp_rows, dp_summary = _exposures(
            _config(size, seed, dp=True, dedup=False), root / "dp", root / "cache"
        )
        dd_rows, dd_summary = _exposures(
            _config(size, seed, dp=False, dedup=True), root / "dedup", root / "cache"
        )
    lv_plain, lv_dp, lv_dd = _by_level(plain), _by_level(dp_rows), _by_level(dd_rows)
    rise_16_1 = _two_sample(lv_plain[16], lv_plain[1], rng)
    rise_1_0 = _two_sample(lv_plain[1], lv_plain[0], rng)
    dp_drop = _boot(lv_plain[16] - lv_dp[16], rng)  # same canaries: paired
    dd_drop = _boot(lv_plain[16] - lv_dd[16], rng)
    paired_rise_4 = _boot(lv_plain[4] - lv_dd[4], rng)  # the same canaries at 4× and at 1×
    eps = float(dp_summary["dp"]["epsilon"])
    lines = [
        "| canaries | plain | DP ε = 8 | dedup |",
        "| --- | --- | --- | --- |",
    ]
    for lv in lv_plain:
        name = "never inserted" if lv == 0 else f"inserted {lv}×"
        lines.append(
            f"| {name} | {lv_plain[lv].mean():.2f} | {lv_dp[lv].mean():.2f} | {lv_dd[lv].mean():.2f} |"
        )
    lines += [
        "",
        f"Mean exposure in bits (max {np.log2(10**4):.1f}: candidate space 10^4, exact rank).",
        f"16× − 1× (plain): {rise_16_1[0]:.2f} [{rise_16_1[1]:.2f}, {rise_16_1[2]:.2f}]; "
        f"1× − never: {rise_1_0[0]:.2f} [{rise_1_0[1]:.2f}, {rise_1_0[2]:.2f}] (two-sample).",
        f"plain − DP on 16× canaries (paired): {dp_drop[0]:.2f} [{dp_drop[1]:.2f}, {dp_drop[2]:.2f}]; "
        f"plain − dedup (paired): {dd_drop[0]:.2f} [{dd_drop[1]:.2f}, {dd_drop[2]:.2f}]; "
        "dedup leaves each canary once, so this is also the same canaries at 16× against 1×; "
        f"at 4× against 1×: {paired_rise_4[0]:.2f} [{paired_rise_4[1]:.2f}, {paired_rise_4[2]:.2f}].",
        f"DP spent ε = {eps:.2f} per record; "
        + "; ".join(g["statement"] for g in dp_summary["dp"]["group_privacy"])
        + ".",
        f"dedup: {json.dumps(dd_summary['dedup'])}.",
    ]
    passed = bool(rise_16_1[1] > 0 and dp_drop[1] > 0)
    figures = {
        "mean_exposure": {
            model: {str(lv): float(v.mean()) for lv, v in levels.items()}
            for model, levels in (("plain", lv_plain), ("dp", lv_dp), ("dedup", lv_dd))
        },
        "rise_16_minus_1": rise_16_1,
        "rise_1_minus_never": rise_1_0,
        "dp_reduction_16x_paired": dp_drop,
        "dedup_reduction_16x_paired": dd_drop,
        "paired_rise_4x_vs_1x_same_canaries": paired_rise_4,
        "exposures": {
            model: {str(lv): v.tolist() for lv, v in levels.items()}
            for model, levels in (("plain", lv_plain), ("dp", lv_dp), ("dedup", lv_dd))
        },
        "dp_epsilon": eps,
        "group_privacy": dp_summary["dp"]["group_privacy"],
        "dedup": dd_summary["dedup"],
    }
    return BenchResult(
        name="text_exposure",
        claim=CLAIM,
        figures=figures,
        table="\n".join(lines),
        passed=passed,
        notes=[f"size {size}; pass: 16× − 1× and plain − DP intervals above 0"],
    )
