"""The whole-curve test of ``miaudit dp-audit --curve`` (docs/dp.md, "Testing the whole curve";
docs/method.md §18).

A DP-SGD run is (ε(δ), δ)-DP for every δ on the accountant's privacy curve, not only at the
claimed δ. The curve test asks Opacus's accountant (never miaudit's maths) for ε(δ) on a grid
of δ fixed before training — ``CURVE_POINTS`` points from ``CURVE_DELTAS`` — computes the
one-run p-value of each point from the same guesses, and rejects the curve when the smallest
p-value is below significance / K (Bonferroni over the K points: valid whatever the
dependence between them, so a correct implementation is accused at most with probability =
significance). With ``--curve`` this is the verdict, in place of the single-point test: one
test, chosen before training, never the better of two.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

from pydantic import Field, field_validator, model_validator

from miaudit.audit._results import PrivacySpent, _Record
from miaudit.metrics import one_run_p_value

#: δ grid of the curve test (the claimed δ is added when it is not on it). Fixed here.
CURVE_DELTAS: tuple[float, ...] = (1e-10, 1e-8, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2)


class CurvePoint(_Record):
    delta: float
    #: ∞ where the accountant gives no finite ε at this δ (written as null, read back as ∞).
    epsilon: float
    p_value: float

    @field_validator("epsilon", mode="before")
    @classmethod
    def _null_is_infinite(cls, v: object) -> object:
        return math.inf if v is None else v


class CurveTest(_Record):
    """The Bonferroni test of the accountant's curve: the points, the smallest p-value, its
    adjusted value (K × smallest, at most 1) and whether the curve is rejected."""

    points: list[CurvePoint] = Field(min_length=1)
    smallest_p_value: float
    adjusted_p_value: float
    rejected: bool

    @model_validator(mode="after")
    def _adjusted_as_defined(self) -> CurveTest:
        """A file's adjusted p-value is K × the smallest of its points' (at most 1): a crafted
        one could print 'p = 0.9 < 0.05' (red team)."""
        ps = [p.p_value for p in self.points]
        if not all(0.0 <= p <= 1.0 for p in ps):
            raise ValueError("curve: every point's p-value must lie in [0, 1]")
        smallest = min(ps)
        adjusted = min(1.0, smallest * len(ps))
        if not (
            math.isclose(self.smallest_p_value, smallest, rel_tol=1e-9, abs_tol=1e-300)
            and math.isclose(self.adjusted_p_value, adjusted, rel_tol=1e-9, abs_tol=1e-300)
        ):
            raise ValueError(
                "curve: smallest_p_value and adjusted_p_value do not follow from its points"
            )
        return self

    def line(self) -> str:
        worst = min(self.points, key=lambda p: p.p_value)
        return (
            f"whole-curve test ({len(self.points)} points of the accountant's ε(δ), δ = "
            f"{self.points[0].delta:g}…{self.points[-1].delta:g}, Bonferroni): smallest p = {worst.p_value:.2g} at "
            f"(ε = {worst.epsilon:.3f}, δ = {worst.delta:g}); adjusted p = {self.adjusted_p_value:.2g}"
            + (
                ": the curve is REJECTED"
                if self.rejected
                else ": no point of the curve is contradicted"
            )
        )


def curve_deltas(claimed_delta: float) -> list[float]:
    return sorted({*CURVE_DELTAS, float(claimed_delta)})


def accountant_curve(privacy: PrivacySpent, deltas: list[float]) -> list[tuple[float, float]]:
    """(δ, ε(δ)) from Opacus's accountant for the recorded σ, q and steps (∞ where it gives none)."""
    from opacus.accountants import create_accountant

    out = []
    for d in deltas:
        acc = create_accountant(privacy.accountant)
        acc.history = [(privacy.noise_multiplier, privacy.sample_rate, privacy.steps)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            try:
                eps = float(acc.get_epsilon(d))
            except (ValueError, ZeroDivisionError, OverflowError, RuntimeError):
                eps = math.inf
        out.append((d, eps if math.isfinite(eps) else math.inf))
    return out


def curve_test(
    m: int,
    r: int,
    v: int,
    privacy: PrivacySpent | Sequence[PrivacySpent],
    significance: float,
) -> CurveTest:
    """The Bonferroni test of every point of the accountant's curve from the guesses (m, r, v).

    With several runs (each its own record: q and steps differ slightly between them), each
    point's ε is the largest of the runs' at that δ — the claim for the pooled runs, as the
    one-run test takes the largest ε at the claimed δ (red team: the curve of the run largest
    at the claimed δ was used at every δ, smaller than another run's at some)."""
    records = [privacy] if isinstance(privacy, PrivacySpent) else list(privacy)
    deltas = curve_deltas(records[0].delta)
    distinct = {
        (p.accountant, p.noise_multiplier, p.sample_rate, p.steps): p for p in records
    }.values()
    curves = [accountant_curve(p, deltas) for p in distinct]
    points = []
    for i, d in enumerate(deltas):
        e = max(c[i][1] for c in curves)
        p_value = 1.0 if math.isinf(e) else float(one_run_p_value(m, r, v, e, delta=d))
        points.append(CurvePoint(delta=d, epsilon=e, p_value=p_value))
    smallest = min(p.p_value for p in points)
    adjusted = min(1.0, smallest * len(points))
    return CurveTest(
        points=points,
        smallest_p_value=smallest,
        adjusted_p_value=adjusted,
        rejected=adjusted < significance,
    )
