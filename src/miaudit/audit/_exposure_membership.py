"""The membership audit of an exposure run: does the fine-tuned LM reveal whose records it saw?

The target, its public base and the reference fine-tunes are read back from their folders and
scored through the shared sequence signals (:func:`miaudit.signals.sequence_signals`, each text
as the models were trained on it: ``[BOS] + tokens + [BOS]``); every applicable text attack of
the registry (loss, zlib, min-k %, min-k %++, the ratio to the base, sequence LiRA and RMIA)
and the blind baseline are then evaluated by the same path as :func:`miaudit.audit.audit_text`,
which writes ``results.json``, ``report.html`` and ``scores.parquet`` (``check-record`` reads
them). Record ids are the indices of ``records.jsonl``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miaudit.attacks import BLIND_NAME
from miaudit.audit._api import _write
from miaudit.audit._attack import AttackRun
from miaudit.audit._results import AuditResult
from miaudit.audit._text_audit import run_text_attacks
from miaudit.audit._writer import prepare_out
from miaudit.metrics import tpr_key
from miaudit.signals import Role, SequenceStore, sequence_signals

#: Texts per forward pass when scoring miaudit's own small LMs.
SCORE_BATCH = 64
AUDIT_FOLDER = "audit"
SIGNALS_FILE = "sequence-signals.npz"


def score_own_models(
    folders: Sequence[Path],
    roles: Sequence[Role],
    texts: Sequence[str],
    keep: np.ndarray,
    population: np.ndarray,
) -> SequenceStore:
    """Every model's sequence signals on every text (record ids: the texts' indices)."""
    from miaudit.models import load_own_lm

    models = [load_own_lm(f) for f in folders]
    return sequence_signals(
        models,
        roles,
        texts,
        keep,
        record_id=np.arange(len(texts)),
        population=population,
        batch_size=SCORE_BATCH,
        names=[f.name for f in folders],
    )


def membership_audit(
    store: SequenceStore, texts: Sequence[str], out: Path, *, seed: int, n_resamples: int
) -> AttackRun:
    """Every applicable text attack and the blind baseline on ``store``, written to ``out``."""
    key = prepare_out(out, overwrite=True)
    run = run_text_attacks(
        store, texts=texts, n_resamples=n_resamples, seed=seed, pseudonym_key=key
    )
    _write(out, key, run, quiet=True, report=True)
    return run


def _figures(result: AuditResult, name: str) -> dict[str, Any]:
    attack = next(a for a in result.attacks if a.name == name)
    return {
        "auc": attack.auc.model_dump(mode="json"),
        "tpr@1%fpr": attack.metric(tpr_key(0.01)).model_dump(mode="json"),
    }


def strongest_model_attack(result: AuditResult) -> str:
    """The model attack (not the blind baseline) with the largest AUC."""
    model = [a for a in result.attacks if a.name != BLIND_NAME]
    return max(model, key=lambda a: a.auc.point or 0.0).name


def membership_summary(run: AttackRun) -> dict[str, Any]:
    """Aggregates only (no text, no id): each attack's AUC and TPR at 1 % FPR with intervals,
    the strongest model attack, the blind baseline and what it says about the split."""
    result = run.result
    names = [a.name for a in result.attacks]
    blind = [n for n in result.notes if "blind baseline" in n or "shifted" in n]
    return {
        "pool": int(run.member.size),
        "members": int(run.member.sum()),
        "attacks": {n: _figures(result, n) for n in names},
        "strongest": strongest_model_attack(result),
        "blind_baseline": _figures(result, BLIND_NAME) if BLIND_NAME in names else None,
        "split_note": blind[-1] if blind else None,
        "results": f"{AUDIT_FOLDER}/results.json",
    }


def heldout_nll(store: SequenceStore) -> np.ndarray:
    """Per held-out record (pool records the target did not fine-tune on), the target's mean
    next-token negative log-likelihood."""
    tokens = store.models[store.target]
    sums = np.add.reduceat(tokens.log_prob, tokens.offsets[:-1])
    nll: np.ndarray = -sums / tokens.n_tokens
    heldout = ~store.keep[store.target] & ~store.population
    out: np.ndarray = nll[heldout]
    return out


def heldout_summary(store: SequenceStore) -> dict[str, Any]:
    """The target's utility on held-out private records: mean token loss (nats) and perplexity
    (exp of the token-weighted mean loss)."""
    tokens = store.models[store.target]
    heldout = ~store.keep[store.target] & ~store.population
    sums = np.add.reduceat(tokens.log_prob, tokens.offsets[:-1])[heldout]
    count = tokens.n_tokens[heldout]
    per_token = float(-sums.sum() / count.sum())
    return {
        "records": int(heldout.sum()),
        "loss": per_token,
        "perplexity": float(np.exp(per_token)),
    }


def loglik_arrays(store: SequenceStore, models: Sequence[int], n: int) -> tuple[np.ndarray, ...]:
    """(summed log-probability, tokens) per model and pool record (the first ``n`` records)."""
    total = np.stack(
        [
            np.add.reduceat(store.models[k].log_prob, store.models[k].offsets[:-1])[:n]
            for k in models
        ]
    )
    count = np.stack([store.models[k].n_tokens[:n] for k in models])
    return total, count
