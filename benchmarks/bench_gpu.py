"""The same audit on the CPU and on a GPU (``engine.device``, issue 17).

Full size: Purchase-like records (10,000 × 600 features, 100 classes), MLP 600-256-256-100,
Adam, batch 128, 20 epochs, 16 models (k = 7 reference pairs + the target pair) in one unit.
The CPU run uses the engine's default workers (one per core, one thread each) with the models
spread over them; the GPU run one worker on ``cuda`` (one per GPU, docs/scale.md "GPU") training
the 16 models as one stacked unit. Each run is a fresh ``miaudit.audit.audit``
into its own folder: models per second = models / wall time of the audit (training dominates;
the attacks are the same on both). The GPU's models start from the same weights and draw the
same batches, dropout and augmentations as the CPU's (the draws are made on the CPU), so the
two audits differ only by floating-point rounding: their AUCs must agree.

On a machine without a CUDA GPU nothing is claimed: the result says "no GPU present" with
``passed = None`` (the small size still runs the CPU audit, so that CI keeps this code running).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._schema import BenchResult

#: The largest AUC difference between the two audits put down to rounding: the models differ in
#: the last bits of their weights, which moves scores far less than the AUC's own bootstrap
#: interval (about ±0.03 at the small size).
AUC_TOL = 0.03

CLAIM = (
    "The same audit (16 MLPs 600-256-256-100 on 10,000 Purchase-like records, 20 epochs) with "
    'engine.device = "cuda": models per second on the CPU and on the GPU and their ratio '
    f"(reported); every attack's AUC within {AUC_TOL} of the CPU audit's "
    '(no claim, "no GPU present", where torch sees no CUDA GPU)'
)

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "data": {
            "dataset": "purchase",
            "purchase": {"n_records": 10_000, "n_features": 600, "n_classes": 100},
        },
        "hidden": [256, 256],
        "epochs": 20,
        "references": 7,
        "cpu_workers": None,
    },
    "small": {
        "data": {"dataset": "digits"},
        "hidden": [32],
        "epochs": 3,
        "references": 2,
        "cpu_workers": 0,
    },
}
ATTACKS = ["loss", "lira_online", "lira_offline", "rmia_online", "rmia_offline"]
SEED = 20261206
NO_GPU = "no GPU present"


def _config(p: dict[str, Any], device: str) -> dict[str, Any]:
    models = 2 * p["references"] + 2
    workers = 1 if device != "cpu" else p["cpu_workers"]
    # Each device's best layout: one stacked unit on the GPU; on the CPU the models spread
    # over the workers (layouts round differently; the AUC tolerance covers it).
    unit = models if device != "cpu" or workers == 0 else -(-models // (os.cpu_count() or 1))
    return {
        "seed": SEED,
        "data": p["data"],
        "model": {
            "kind": "torch-mlp",
            "hidden": p["hidden"],
            "epochs": p["epochs"],
            "batch_size": 128,
        },
        "plan": {"unit_size": unit},
        "engine": {
            "device": device,
            "progress": False,
            **({} if workers is None else {"workers": workers}),
        },
        "audit": {"references": p["references"], "resamples": 200, "attacks": ATTACKS},
    }


def audit_on(p: dict[str, Any], device: str, folder: Path) -> tuple[float, dict[str, float]]:
    """(wall seconds, AUC per attack) of a fresh audit on ``device``."""
    from miaudit.audit import audit, parse_audit_config

    cfg = parse_audit_config(_config(p, device))
    t0 = time.perf_counter()
    result = audit(cfg, folder / device.replace(":", "-"), quiet=True)
    wall = time.perf_counter() - t0
    return wall, {a.name: float(a.auc.point or 0.0) for a in result.attacks}


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def run(size: str) -> BenchResult:
    p = SIZES[size]
    models = 2 * p["references"] + 2
    gpu = gpu_name()
    if gpu is None and size == "full":
        return _no_gpu(models, None, {})
    with tempfile.TemporaryDirectory(prefix="miaudit-gpu-") as tmp:
        cpu_wall, cpu_auc = audit_on(p, "cpu", Path(tmp))
        if gpu is None:
            return _no_gpu(models, cpu_wall, cpu_auc)
        gpu_wall, gpu_auc = audit_on(p, "cuda", Path(tmp))
    diff = max(abs(gpu_auc[a] - cpu_auc[a]) for a in ATTACKS)
    cpu_rate, gpu_rate = models / cpu_wall, models / gpu_wall
    rows = [
        "| device | models | wall time | models/s | " + " | ".join(ATTACKS) + " |",
        "|---|---:|---:|---:|" + "---:|" * len(ATTACKS),
        _row("CPU", models, cpu_wall, cpu_auc),
        _row(gpu, models, gpu_wall, gpu_auc),
        "",
        f"GPU/CPU ratio (models per second): **{gpu_rate / cpu_rate:.2f}×**; "
        f"largest AUC difference {diff:.4f} (tolerance {AUC_TOL}).",
    ]
    return BenchResult(
        name="gpu",
        claim=CLAIM,
        figures={
            "gpu": gpu,
            "models": models,
            "cpu_wall_s": round(cpu_wall, 2),
            "gpu_wall_s": round(gpu_wall, 2),
            "cpu_models_per_s": round(cpu_rate, 3),
            "gpu_models_per_s": round(gpu_rate, 3),
            "gpu_cpu_ratio": round(gpu_rate / cpu_rate, 3),
            "auc_cpu": cpu_auc,
            "auc_gpu": gpu_auc,
            "max_auc_diff": round(diff, 5),
        },
        table="\n".join(rows),
        passed=diff <= AUC_TOL,
    )


def _row(device: str, models: int, wall: float, auc: dict[str, float]) -> str:
    aucs = " | ".join(f"{auc[a]:.3f}" for a in ATTACKS)
    return f"| {device} | {models} | {wall:.1f} s | {models / wall:.2f} | {aucs} |"


def _no_gpu(models: int, cpu_wall: float | None, cpu_auc: dict[str, float]) -> BenchResult:
    rows = [f"{NO_GPU}: torch sees no CUDA GPU on this machine; nothing is claimed."]
    if cpu_wall is not None:
        rows += [
            "",
            "| device | models | wall time | models/s | " + " | ".join(ATTACKS) + " |",
            "|---|---:|---:|---:|" + "---:|" * len(ATTACKS),
            _row("CPU", models, cpu_wall, cpu_auc),
        ]
    return BenchResult(
        name="gpu",
        claim=CLAIM,
        figures={
            "gpu": NO_GPU,
            "models": models,
            "cpu_wall_s": None if cpu_wall is None else round(cpu_wall, 2),
            "cpu_models_per_s": None if cpu_wall is None else round(models / cpu_wall, 3),
            "gpu_models_per_s": None,
            "gpu_cpu_ratio": None,
            "auc_cpu": cpu_auc,
        },
        table="\n".join(rows),
        passed=None,
        notes=[f"{NO_GPU}: run it where torch.cuda.is_available() is True for the figures."],
    )
