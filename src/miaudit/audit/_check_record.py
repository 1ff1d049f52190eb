""""Was this record in the training data?" — calibrated evidence for one record and one model.

LiRA's offline test (Carlini et al., S&P 2022): fit a Gaussian to the record's scaled logit φ
under the reference models that did *not* train on it; the one-sided p-value is the chance that
a model which never saw the record gives it a φ at least as high as the audited model does.
Where references that trained on the record exist, the online likelihood ratio is given too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import norm

from miaudit.attacks import complementary_pairs, lira_offline, lira_online
from miaudit.data import SignalsStore, load_signals
from miaudit.errors import InputError
from miaudit.signals import compute_signals

SIGNALS_PATH = Path("signals") / "signals.npz"


@dataclass(frozen=True)
class RecordEvidence:
    record_id: str
    target: int
    phi: float
    z: float
    p_value: float
    log_likelihood_ratio: float | None
    n_out_references: int
    n_in_references: int
    member_in_plan: bool
    verdict: str


def verdict(p: float) -> str:
    if p < 0.001:
        return "strong evidence that this record was in the model's training data"
    if p < 0.01:
        return "evidence that this record was in the model's training data"
    if p < 0.05:
        return "weak evidence that this record was in the model's training data"
    return "no evidence from this model's outputs that the record was in its training data (not proof that it was not: a model that generalises well reveals little about its members)"


def check_records(store: SignalsStore, ids: Sequence[str], *, target: int | None = None) -> list[RecordEvidence]:
    """Evidence for each id against the audited model (``target``, default the store's or 0).

    References are every model except the target and its complementary partner.
    """
    t = target if target is not None else (store.target if store.target is not None else 0)
    if not 0 <= t < store.n_models:
        raise InputError("--target", f"model {t} is outside [0, {store.n_models})")
    partner = {a: b for p in complementary_pairs(store) for a, b in (p, p[::-1])}.get(t)
    refs = [m for m in range(store.n_models) if m not in (t, partner)]
    if not refs:
        raise InputError("signals", "no reference models besides the target")
    index = {str(r): i for i, r in enumerate(store.record_id.tolist())}
    out = []
    for rid in ids:
        if str(rid) not in index:
            raise InputError("--id", f"record {rid!r} is not among the audited records")
        i = index[str(rid)]
        if store.population[i]:
            raise InputError("--id", f"record {rid!r} is a population record: no model trained on it, so the audit has no IN/OUT references for it")
        lg = store.logits[:, i : i + 1]
        phi = compute_signals(lg, np.broadcast_to(store.label[i : i + 1], lg.shape[:-1]), which=("scaled_logit",))["scaled_logit"]  # (K, 1[, A])
        keep = store.keep[refs][:, i : i + 1]
        n_out, n_in = int((~keep).sum()), int(keep.sum())
        if n_out < 2:
            raise InputError("--id", f"record {rid!r} has {n_out} OUT reference(s); at least 2 are needed for a p-value")
        z = float(lira_offline(phi[t], phi[refs], keep, variance="per_record")[0])
        llr = float(lira_online(phi[t], phi[refs], keep, variance="per_record")[0]) if n_in >= 2 else None
        p = float(norm.sf(z))
        out.append(RecordEvidence(str(rid), t, float(np.mean(phi[t])), z, p, llr, n_out, n_in, bool(store.keep[t, i]), verdict(p)))
    return out


def check_record(results_dir: str | Path, ids: Sequence[str], *, target: int | None = None) -> list[RecordEvidence]:
    """:func:`check_records` on an audit folder (its restricted ``signals/signals.npz``)."""
    path = Path(results_dir) / SIGNALS_PATH
    if not path.is_file():
        raise InputError("results", f"{str(path)!r} not found: check-record needs the folder of a `miaudit audit` run")
    return check_records(load_signals(path), ids, target=target)
