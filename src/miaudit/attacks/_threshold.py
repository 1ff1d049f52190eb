"""Attacks without reference models (docs/method.md §2): one signal, one threshold.

Each score is higher for records more likely to be members.

- loss: −ℓ (Yeom et al., "Privacy Risk in Machine Learning", CSF 2018)
- confidence: p_y; entropy: −H; modified_entropy: −Mentr (Song & Mittal, "Systematic
  Evaluation of Privacy Risks of Machine Learning Models", USENIX Security 2021)
- gap: 1[argmax p = y], the member-iff-correct rule (Yeom et al. 2018), whose accuracy on a
  balanced set is exactly ½(1 + acc_train − acc_test)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

ThresholdAttack = Literal["loss", "confidence", "entropy", "modified_entropy", "gap"]
THRESHOLD_ATTACKS: tuple[ThresholdAttack, ...] = (
    "loss",
    "confidence",
    "entropy",
    "modified_entropy",
    "gap",
)


@dataclass(frozen=True)
class ThresholdSpec:
    signal: str
    sign: float
    description: str
    paper: str


SPECS: dict[str, ThresholdSpec] = {
    "loss": ThresholdSpec("loss", -1.0, "low cross-entropy loss ⇒ member", "Yeom et al., CSF 2018"),
    "confidence": ThresholdSpec(
        "confidence",
        1.0,
        "high confidence in the true class ⇒ member",
        "Song & Mittal, USENIX Security 2021",
    ),
    "entropy": ThresholdSpec(
        "entropy", -1.0, "low prediction entropy ⇒ member", "Song & Mittal, USENIX Security 2021"
    ),
    "modified_entropy": ThresholdSpec(
        "modified_entropy",
        -1.0,
        "low modified entropy ⇒ member",
        "Song & Mittal, USENIX Security 2021",
    ),
    "gap": ThresholdSpec(
        "correctness", 1.0, "correctly classified ⇒ member", "Yeom et al., CSF 2018"
    ),
}


def threshold_score(attack: ThresholdAttack, signals: dict[str, np.ndarray]) -> np.ndarray:
    """Score of a threshold attack from precomputed signals (see :func:`miaudit.signals.compute_signals`)."""
    spec = SPECS[attack]
    return spec.sign * signals[spec.signal] + 0.0  # + 0.0 turns −0.0 into 0.0: one tie group


def loss_attack(loss: np.ndarray) -> np.ndarray:
    return -np.asarray(loss, dtype=np.float64) + 0.0


def gap_attack(correct: np.ndarray) -> np.ndarray:
    return np.asarray(correct, dtype=np.float64)
