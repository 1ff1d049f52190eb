"""miaudit next to IBM ART 1.20.1's membership-inference attacks, on the same target models.

ART is a benchmark-only dependency: it lives in its own venv outside the repository
(``benchmarks/peer/setup.sh``, default ``/tmp/miaudit-peer-venv``, every pip call under
``-c constraints.txt``), never in miaudit's environment. This benchmark creates that venv when
it is missing, runs ``benchmarks/peer/art_compare.py`` with its python, and returns the
measured side-by-side table. When the venv cannot be made (no package registry), it reports
that and measures nothing.

miaudit's rows include issue 18's attacks on the same target, references and evaluation
records: QMIA (k = 0), the shrunk LiRA (online, offline) and the combined stacker; each is
also compared, paired, with the strongest ART row and the strongest plain LiRA/RMIA row.

Privacy Meter is not compared: its v2 (RMIA and LiRA, the version the issue's figures came from)
has no release on PyPI; PyPI's ``privacy-meter`` is 1.0.1 (July 2023, the v1 API), which declares
no dependencies yet imports TensorFlow, opacus and torch at module level
(``import privacy_meter.metric`` fails in the peer venv: no module named 'tensorflow'), and whose
attacks are v1's population/reference/shadow threshold metrics rather than RMIA
(benchmarks/peer/art_compare.py says more).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._schema import BenchResult

CLAIM = (
    "IBM ART 1.20.1's black-box (rf, gb, nn on predictions; nn on the loss) and rule-based membership attacks and "
    "miaudit's attacks (with issue 18's QMIA at k = 0, shrunk LiRA and the combined stacker) on the same target MLPs (digits, Adult, Purchase-like) and the same evaluation records: "
    "AUC and TPR at 1 % FPR side by side, one metric code, paired record-resampling intervals"
)
ROOT = Path(__file__).resolve().parent
PEER = ROOT / "peer"
VENV = Path(os.environ.get("MIAUDIT_PEER_VENV", "/tmp/miaudit-peer-venv"))
TIME_LIMIT_S = 600
SETUP_TIMEOUT_S = 900


def _fmt(e: dict) -> str:
    if e["point"] is None:
        return "n/m"
    if e["lower"] is None:
        return f"{e['point']:+.3f} (no CI)"
    return f"{e['point']:+.3f} [{e['lower']:+.3f}, {e['upper']:+.3f}]"


def _not_measured(why: str) -> BenchResult:
    return BenchResult(
        name="peer_art",
        claim=CLAIM,
        figures={},
        table="(not measured: the peer venv with ART 1.20.1 could not be made)",
        passed=None,
        notes=[
            why,
            f"Make it by hand with `bash benchmarks/peer/setup.sh` (venv at {VENV}), then rerun.",
        ],
    )


def run(size: str) -> BenchResult:
    env = {
        **os.environ,
        "MIAUDIT_PEER_VENV": str(VENV),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }
    try:
        setup = subprocess.run(
            ["bash", str(PEER / "setup.sh")],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            cwd=ROOT.parent,
            timeout=SETUP_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return _not_measured(
            f"benchmarks/peer/setup.sh did not finish in {SETUP_TIMEOUT_S} s (package registry unreachable or slow?)"
        )
    if setup.returncode != 0:
        tail = [
            line
            for line in (setup.stderr + setup.stdout).splitlines()
            if line.strip() and not line.startswith("WARNING: Location")
        ][-3:]
        return _not_measured("benchmarks/peer/setup.sh failed: " + " | ".join(tail))
    with tempfile.TemporaryDirectory(prefix="miaudit-peer-") as tmp:
        out = Path(tmp) / "peer.json"
        cmd = [
            str(VENV / "bin" / "python"),
            str(PEER / "art_compare.py"),
            "--size",
            size,
            "--json",
            str(out),
            "--workdir",
            str(Path(tmp) / "work"),
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            check=False,
            env=env,
            cwd=ROOT.parent,
            timeout=3 * TIME_LIMIT_S,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(
                f"art_compare.py failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}"
            )
        rec = json.loads(out.read_text(encoding="utf-8"))

    figures: dict = {
        "wall_s": round(wall, 1),
        "peer_versions": rec["versions"],
        "seed": rec["seed"],
    }
    lines = [rec["table"], ""]
    for d in rec["datasets"]:
        c = d["comparison"]
        figures[d["dataset"]] = {
            k: d[k]
            for k in (
                "models",
                "references",
                "records",
                "classes",
                "pool_records",
                "target_train_accuracy",
                "target_test_accuracy",
                "art_fit_members",
                "art_fit_nonmembers",
                "eval_members",
                "eval_nonmembers",
                "rebuilt_target_max_abs_logit_diff",
                "art_rule_equals_miaudit_gap",
                "timings_s",
            )
        } | {"rows": d["rows"], "comparison": c}
        lines.append(
            f"- {d['dataset']}: strongest by TPR@1 %FPR, miaudit `{c['best_miaudit'].split(' ', 1)[1]}` − ART `{c['best_art'].split(' ', 1)[1]}` "
            f"(paired; chosen on these records): ΔTPR@1 %FPR {_fmt(c['tpr@1%fpr_difference'])}, ΔAUC {_fmt(c['auc_difference'])}"
        )
        for a, sides in c["new_attacks"].items():
            lines.append(
                f"  - `{a}` − ART `{c['best_art'].split(' ', 1)[1]}`: ΔTPR@1 %FPR {_fmt(sides['minus_best_art']['tpr@1%fpr'])}; "
                f"− `{c['best_prior_reference'].split(' ', 1)[1]}`: ΔTPR@1 %FPR {_fmt(sides['minus_best_prior_reference']['tpr@1%fpr'])}, "
                f"ΔAUC {_fmt(sides['minus_best_prior_reference']['auc'])}"
            )
    art_notes = sorted({n for d in rec["datasets"] for n in d["notes"]})
    checks_ok = all(
        d["rebuilt_target_max_abs_logit_diff"] < 1e-3 and d["art_rule_equals_miaudit_gap"]
        for d in rec["datasets"]
    )
    notes = [
        f"Peer venv: ART {rec['versions']['art']}, torch {rec['versions']['torch']}, scikit-learn {rec['versions']['sklearn']}, numpy {rec['versions']['numpy']} "
        f"(python {rec['versions']['python']}); made by benchmarks/peer/setup.sh; rerun by hand: "
        f"`{VENV}/bin/python benchmarks/peer/art_compare.py --size {size}`.",
        "Targets: model 0 of a complementary plan trained by miaudit's engine with the data, recipe and seed of bench_attack_power (its first models). "
        "ART attacks that very model: its cached weights and preprocessing rebuilt as a torch module, wrapped in art PyTorchClassifier "
        f"(logits reproduced within {max(d['rebuilt_target_max_abs_logit_diff'] for d in rec['datasets']):.1e}).",
        "Records: the target's pool records split in halves stratified by membership; ART's attack models train on the first half "
        "(known members and non-members), every row is measured on the second half.",
        "ART configs: MembershipInferenceBlackBox(input_type='prediction', attack_model_type='rf' | 'gb' | 'nn') and (input_type='loss', 'nn'), "
        "ART's defaults otherwise, fitted with true labels; score = infer(..., probabilities=True). MembershipInferenceBlackBoxRuleBased: score = its 0/1 prediction.",
        "miaudit: threshold attacks (loss, confidence, modified entropy, gap) on the target's outputs; LiRA and RMIA online/offline with k complementary "
        "reference pairs from the same plan (the target's partner excluded). Different threat models: ART's attacks learn from known members of the target, "
        "LiRA/RMIA from reference models trained on the pool by the same recipe.",
        "miaudit's issue 18 attacks in the same rows: QMIA (k = 0, gradient boosting fitted per target on the plan's population records, "
        "outside the pool, with their features), lira_shrunk_online/offline (docs/method.md §12) and combined (stacker fitted on the "
        "reference models' membership only), on the same target, references and evaluation records.",
        "Privacy Meter not added: its v2 (RMIA/LiRA) has no PyPI release; PyPI's privacy-meter is 1.0.1 (v1 API, 2023-07), which declares "
        "no dependencies but imports tensorflow, opacus and torch at module level (`import privacy_meter.metric` fails: no module "
        "'tensorflow'), and whose attacks are v1's threshold metrics, not the RMIA the issue compares against.",
        f"All scores of both tools go through one miaudit.metrics.evaluate call: the same records and the same bootstrap replicates ({rec['resamples']}), so any two rows compare pairwise.",
        f"Consistency checks {'passed' if checks_ok else 'FAILED'}: rebuilt target reproduces the engine's logits; ART's rule-based predictions equal miaudit's gap rule.",
        *art_notes,
    ]
    if wall > TIME_LIMIT_S:
        notes.append(f"Took {wall:.0f} s, over the {TIME_LIMIT_S} s budget.")
    return BenchResult(
        name="peer_art",
        claim=CLAIM,
        figures=figures,
        table="\n".join(lines),
        passed=None,
        notes=notes,
    )


if __name__ == "__main__":  # pragma: no cover - convenience
    r = run(sys.argv[1] if len(sys.argv) > 1 else "small")
    print(r.table)
