""""Was this record in the training data?" — calibrated evidence for one record and one model.

LiRA's offline test (Carlini et al., S&P 2022), made a calibrated prediction test: fit a
Gaussian to the record's scaled logit φ under the reference models that did *not* train on it;
the one-sided p-value is the chance that a model which never saw the record gives it a φ at
least as high as the audited model does (Student's t, accounting for the estimated mean).
Where references that trained on the record exist, the online likelihood ratio is given too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.stats import t as student_t

from miaudit.attacks import complementary_pairs, lira_online
from miaudit.data import SignalsStore, load_signals
from miaudit.errors import InputError
from miaudit.signals import compute_signals

SIGNALS_PATH = Path("signals") / "signals.npz"
#: With at least this many OUT references a record's own variance is used, else the pooled one.
PER_RECORD_MIN = 16


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


def _phi(store: SignalsStore) -> np.ndarray:
    """φ of every model on every record, (K, n); augmentation queries averaged."""
    lg = store.logits
    labels = np.broadcast_to(store.label[:, None] if lg.ndim == 4 else store.label, lg.shape[1:-1])
    phi = compute_signals(lg, np.broadcast_to(labels, lg.shape[:-1]), which=("scaled_logit",))["scaled_logit"]
    return phi.mean(axis=2) if lg.ndim == 4 else phi


def check_records(store: SignalsStore, ids: Sequence[str], *, target: int | None = None, min_per_record: int = PER_RECORD_MIN) -> list[RecordEvidence]:
    """Evidence for each id against the audited model (``target``, default the store's or 0).

    References are every model except the target and its complementary partner. The p-value
    is a calibrated prediction test: under "the record was not in the training data" the
    target's φ is one more draw from the record's OUT distribution, so
    (φ − mean_OUT) / (s·√(1 + 1/n_OUT)) follows Student's t. ``s`` is pooled over all records
    (LiRA's fixed variance, better with few references) unless the record has at least
    ``min_per_record`` OUT references, when its own standard deviation is used.
    """
    t = target if target is not None else (store.target if store.target is not None else 0)
    if not 0 <= t < store.n_models:
        raise InputError("--target", f"model {t} is outside [0, {store.n_models})")
    partner = {a: b for p in complementary_pairs(store) for a, b in (p, p[::-1])}.get(t)
    refs = [m for m in range(store.n_models) if m not in (t, partner)]
    if len(refs) < 2:
        raise InputError("signals", "fewer than 2 reference models besides the target and its partner")
    index = {str(r): i for i, r in enumerate(store.record_id.tolist())}
    rows = []
    for rid in ids:
        if str(rid) not in index:
            raise InputError("--id", f"record {rid!r} is not among the audited records")
        i = index[str(rid)]
        if store.population[i]:
            raise InputError("--id", f"record {rid!r} is a population record: no model trained on it, so the audit has no IN/OUT references for it")
        rows.append(i)
    phi = _phi(store)
    ref_phi, keep = phi[refs], store.keep[refs]
    out_mask = ~keep & ~store.population
    n_out_all = out_mask.sum(axis=0)
    mean_out = np.where(n_out_all > 0, (ref_phi * out_mask).sum(axis=0) / np.maximum(n_out_all, 1), 0.0)
    dev2 = ((ref_phi - mean_out) ** 2 * out_mask).sum(axis=0)
    dof_pooled = int(np.maximum(n_out_all - 1, 0).sum())
    s_pooled = float(np.sqrt(dev2.sum() / dof_pooled)) if dof_pooled > 0 else float("nan")
    in_mask = keep & ~store.population
    out = []
    for rid, i in zip(ids, rows, strict=True):
        n_out, n_in = int(n_out_all[i]), int(in_mask[:, i].sum())
        if not np.isfinite(s_pooled):
            raise InputError("results", "too few reference models to estimate how OUT models vary: a p-value needs records with 2 or more OUT references ([audit].references ≥ 2)")
        if n_out < 1:
            raise InputError("--id", f"record {rid!r} has no OUT reference: no model left out of training on it")
        if n_out >= min_per_record:
            sd, dof = float(np.sqrt(dev2[i] / (n_out - 1))), n_out - 1
        else:
            sd, dof = s_pooled, dof_pooled
        z = float((phi[t, i] - mean_out[i]) / (max(sd, 1e-12) * np.sqrt(1 + 1 / n_out)))
        p = float(student_t.sf(z, dof))
        llr = None
        if n_in >= 2:
            llr = float(lira_online(phi[t, i : i + 1], ref_phi[:, i : i + 1], keep[:, i : i + 1], variance="per_record")[0])
        out.append(RecordEvidence(str(rid), t, float(phi[t, i]), z, p, llr, n_out, n_in, bool(store.keep[t, i]), verdict(p)))
    return out


def check_record(results_dir: str | Path, ids: Sequence[str], *, target: int | None = None) -> list[RecordEvidence]:
    """:func:`check_records` on an audit folder (its restricted ``signals/signals.npz``)."""
    path = Path(results_dir) / SIGNALS_PATH
    if not path.is_file():
        raise InputError("results", f"{str(path)!r} not found: check-record needs the folder of a `miaudit audit` run")
    return check_records(load_signals(path), ids, target=target)
