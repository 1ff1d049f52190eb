"""Confirmatory run of issue 21's membership line on fresh randomness, with the attack named
before it ran: sequence RMIA (online) over the 8 reference fine-tunes.

Why a second run. The issue's line reads "fine-tuned small LM, 8 reference fine-tunes:
the reference-calibrated attack's TPR at 1 % FPR ≥ 3× the loss attack's". bench_text_audit (seed
0) had named ``reference_ratio`` — the ratio to the *base* model, which uses none of the eight
reference fine-tunes — as that attack before it ran; it reached 1.3× (NOT MET), while the attacks
calibrated on the reference fine-tunes reached 4.7–6.5×. Choosing the winner after seeing seed 0
would be a forking path, so this benchmark names ``text_rmia_online`` (miaudit's strongest
attack with references on tabular data too) and reruns everything that is random on seed 1: the
public pre-training texts and the base model, the private pool and its member split, the
population, the reference halves, every fine-tune's seed and the bootstrap. The recipe,
architecture and sizes are bench_text_audit's, unchanged (fixed before any comparison). Both
records stay in docs/benchmarks.md: seed 0's NOT MET for ``reference_ratio`` is not replaced.
"""

from __future__ import annotations

from benchmarks._schema import BenchResult
from benchmarks.bench_text_audit import run_design

SEED = 1
PRIMARY = "text_rmia_online"
CLAIM = (
    "confirmatory (seed 1, attack named before the run): fine-tuned small LM, 8 reference "
    "fine-tunes, ≥ 2,000 non-members: sequence RMIA's (online) TPR at 1 % FPR ≥ 3× the loss "
    "attack's, paired interval of the difference above 0; the blind baseline at chance"
)


def run(size: str) -> BenchResult:
    return run_design(size, seed=SEED, primary=PRIMARY, claim=CLAIM, name="text_audit_confirm")
