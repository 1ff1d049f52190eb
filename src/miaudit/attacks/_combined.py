"""One attack from several: a logistic stacker of LiRA and RMIA, fitted on the references only.

For an audited target t with reference models R, each reference r ∈ R plays the target in
turn, attacked by the components with R ∖ {r, r's complementary partners} as its references;
r's own membership (its keep row, known: the attacker trained it) labels those rows. A
logistic regression on the components' rank-Gaussianised scores, fitted on every r's rows,
then scores t's records from t's components (attacked with all of R). Neither t's membership
nor anything fitted on it enters (docs/method.md §14): the assumption is that the weights
learnt on the references transfer to the target, which holds when the target is trained like
them (the same recipe, its membership drawn alike).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from miaudit.attacks._lira import Variance
from miaudit.attacks._partners import complementary_partners
from miaudit.attacks._reference import (
    LiraAttack,
    ReferenceAttack,
    RmiaAttack,
    leave_one_model_out_each,
)
from miaudit.attacks._rmia import DEFAULT_A
from miaudit.data import SignalsStore, record_chunks

#: The stacker's L2 penalty (scikit-learn's C), fixed before any comparison.
STACKER_C = 1.0
#: The stacker learns a few weights: each reference playing the target is scored on at most
#: this many pool records, against at most this many population records (RMIA's z), drawn at
#: random with seed 0 (the same sample for every target), so its fit stops growing with the
#: store (one inner audit per reference model: at a million records, 62 times the target's own
#: cost). Fixed at scale-up, before any comparison; no benchmark's pool or population is larger.
STACKER_RECORDS = 20_000


def rank_gaussian(scores: np.ndarray) -> np.ndarray:
    """Each row's scores as standard normal quantiles of their ranks (ties share the mean
    rank; NaN stays NaN): components on different scales become comparable without using any
    membership."""
    from scipy.special import ndtri
    from scipy.stats import rankdata

    out = np.full(scores.shape, np.nan)
    for i, row in enumerate(np.atleast_2d(scores)):
        ok = ~np.isnan(row)
        if ok.any():
            out[i, ok] = ndtri(rankdata(row[ok]) / (ok.sum() + 1))
    return out


def stacker_records(store: SignalsStore, limit: int | None = None) -> SignalsStore:
    """The store the stacker's rows come from: at most ``limit`` (default
    :data:`STACKER_RECORDS`) pool records and at most ``limit`` population records, drawn at
    random with seed 0 where there are more (the same sample for every target), in the store's
    order; the store itself when neither is larger."""
    limit = STACKER_RECORDS if limit is None else limit
    pool, population = np.flatnonzero(~store.population), np.flatnonzero(store.population)
    if pool.size <= limit and population.size <= limit:
        return store
    rng = np.random.default_rng(0)
    chosen = [
        part if part.size <= limit else rng.choice(part, size=limit, replace=False)
        for part in (pool, population)
    ]
    rows = np.sort(np.concatenate(chosen))
    logits = np.empty((store.n_models, rows.size, *store.logits.shape[2:]), store.logits.dtype)
    done = 0
    # A chunk of the store's records at a time: a memory-mapped store's pages are released
    # after each (the rows are spread over the whole file; gathered at once, every page of it
    # would stay resident).
    for chunk in record_chunks(store.logits, axis=1):
        inside = rows[(rows >= chunk.start) & (rows < chunk.stop)]
        logits[:, done : done + inside.size] = store.logits[:, inside]
        done += inside.size
    return replace(
        store,
        logits=logits,
        label=store.label[rows],
        keep=store.keep[:, rows],
        population=store.population[rows],
        record_id=store.record_id[rows],
    )


@dataclass(frozen=True)
class CombinedAttack:
    """A :class:`~miaudit.attacks.PairScorer`: online and offline LiRA (and offline RMIA where
    the store has population records) combined by a logistic stacker fitted on the references'
    membership only. With fewer than two reference pairs no reference can play the target
    (its own references would be empty): the components' rank-Gaussianised scores are then
    averaged with equal weights."""

    variance: Variance = "global"
    needs_in: bool = True
    needs_out: bool = True

    def components(self, store: SignalsStore) -> dict[str, ReferenceAttack]:
        made: dict[str, ReferenceAttack] = {
            "lira_online": LiraAttack(mode="online", variance=self.variance),
            "lira_offline": LiraAttack(mode="offline", variance=self.variance),
        }
        if store.population.any():
            made["rmia_offline"] = RmiaAttack(mode="offline", a=DEFAULT_A)
        return made

    def _component_scores(
        self, store: SignalsStore, targets: list[int], refs: list[list[int]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(T, m, C) rank-Gaussianised component scores, (T, m) keep, (m,) store positions."""
        paired = leave_one_model_out_each(
            store, self.components(store), targets=targets, reference_sets=refs
        )
        stacked = np.stack([rank_gaussian(p.scores) for p in paired.values()], axis=-1)
        first = next(iter(paired.values()))
        return stacked, first.member, first.records

    def _training_rows(
        self, store: SignalsStore, references: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Each reference as the target, the other references (its partners left out) as its
        references: the stacker's rows and labels; None when no reference can play the target."""
        # Partners as §3 defines them, on the whole pool (keep is in memory), then the sample.
        pool_keep = store.keep[:, ~store.population]
        store = stacker_records(store)
        inner_t, inner_refs = [], []
        for r in references.tolist():
            partners = complementary_partners(pool_keep, r)
            others = [int(m) for m in references.tolist() if m != r and not partners[m]]
            if others:
                inner_t.append(int(r))
                inner_refs.append(others)
        if not inner_t:
            return None
        x, member, _ = self._component_scores(store, inner_t, inner_refs)
        rows, y = x.reshape(-1, x.shape[-1]), member.reshape(-1)
        ok = ~np.isnan(rows).any(axis=1)
        if len(np.unique(y[ok])) < 2:
            return None
        return rows[ok], y[ok].astype(np.int8)

    def score_pairs(
        self, store: SignalsStore, target: int, references: np.ndarray, records: np.ndarray
    ) -> np.ndarray:
        refs = np.asarray(references, dtype=np.int64)
        x, _, pool = self._component_scores(store, [int(target)], [refs.tolist()])
        position = {int(c): j for j, c in enumerate(pool.tolist())}
        z = x[0][[position[int(c)] for c in np.asarray(records).tolist()]]
        training = self._training_rows(store, refs)
        if training is None:
            equal: np.ndarray = z.mean(axis=1)
            return equal
        from sklearn.linear_model import LogisticRegression

        stacker = LogisticRegression(C=STACKER_C, max_iter=1000)
        stacker.fit(*training)
        out = np.full(z.shape[0], np.nan)
        ok = ~np.isnan(z).any(axis=1)
        out[ok] = stacker.decision_function(z[ok])
        return out
