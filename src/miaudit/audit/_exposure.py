"""``miaudit exposure``: does a fine-tuned language model regurgitate secrets?

The run (docs/text.md): pre-train miaudit's small LM on public synthetic records (cached),
fine-tune it on a random half of a private pool plus secret-sharer canaries inserted 1, 4 and
16 times (never-inserted canaries of the same format beside them), then for every canary
compute its exposure (exact rank by enumerating the candidate space, or the skew-normal
estimate) and whether greedy decoding from its prefix writes its secret. Reference fine-tunes
of the same base on other random halves are saved with the keep matrix, for the sequence
membership attacks.

Everything is written to a staging folder inside ``--out`` and moved into place at the end, so
a failed run leaves no partial result. Every file is restricted (0600): canary texts are
secrets, the records and models are personal data, ``membership.npz`` is the roster. Only
``exposure-summary.json`` (per-level aggregates, no text, no secret) is meant to be shared.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from miaudit._io import RESTRICTED_MODE, ensure_writable_dir, write_text_atomic
from miaudit.audit._exposure_config import CanarySection, ExposureConfig
from miaudit.audit._exposure_math import exact_exposure, exact_rank, skewnorm_exposure
from miaudit.data import fake_names, synthetic_records
from miaudit.defenses import deduplicate
from miaudit.errors import InputError

EXPOSURE_FILE = "exposure.json"
SUMMARY_FILE = "exposure-summary.json"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Canary:
    """One canary: ``prefix`` + ``secret`` inserted ``repetitions`` times (0: never)."""

    prefix: str
    secret: str
    repetitions: int

    @property
    def text(self) -> str:
        return self.prefix + self.secret


def make_canaries(section: CanarySection, seed: int) -> list[Canary]:
    """The canaries of a run: distinct made-up names and distinct uniform secrets, per level,
    then the never-inserted ones (repetitions 0), reproducible for ``seed``."""
    levels = [r for r in section.repetitions for _ in range(section.per_level)]
    levels += [0] * section.never_inserted
    rng = np.random.default_rng([seed, 19])
    secrets: set[int] = set()
    while len(secrets) < len(levels):
        secrets.add(int(rng.integers(section.space())))
    order = rng.permutation(sorted(secrets))
    names = fake_names(len(levels), seed=seed + 7919)
    return [
        Canary(section.prefix.format(name=name), f"{int(s):0{section.digits}d}", reps)
        for name, s, reps in zip(names, order, levels, strict=True)
    ]


def group_privacy(epsilon: float, delta: float, n: int) -> dict[str, Any]:
    """The guarantee for a text inserted ``n`` times under per-record (ε, δ)-DP: by group
    privacy (n·ε, n·e^{(n−1)ε}·δ) (docs/method.md, "Secrets and exposure")."""
    eps_n = n * epsilon
    delta_n = min(1.0, n * float(np.exp(min((n - 1) * epsilon, 700.0))) * delta)
    return {
        "repetitions": n,
        "epsilon": eps_n,
        "delta": delta_n,
        "statement": (
            f"a canary inserted {n} times is {n} records to the accountant: "
            f"the guarantee for it is ({eps_n:g}, {delta_n:.3g})-DP (group privacy n·ε), "
            f"not ({epsilon:g}, {delta:g})"
        ),
    }


def _subseed(seed: int, what: int) -> int:
    return int(np.random.SeedSequence([seed, what]).generate_state(1)[0])


def _secret_exposures(
    model: Any, tok: Any, canaries: list[Canary], c: CanarySection, seed: int
) -> list[dict[str, Any]]:
    from miaudit.models import all_digit_log_likelihoods, digit_log_likelihoods, greedy_digits

    space = c.space()
    inserted = np.array([int(k.secret) for k in canaries if k.repetitions > 0], dtype=np.int64)
    rng = np.random.default_rng([seed, 23])
    rows = []
    for canary in canaries:
        secret = int(canary.secret)
        if c.exact():
            ll = all_digit_log_likelihoods(model, tok, canary.prefix, c.digits)
            others = inserted[inserted != secret]
            rank = exact_rank(ll, secret, exclude=others)
            bits, secret_ll = exact_exposure(space - len(others), rank), float(ll[secret])
            method = "exact"
        else:
            draws = rng.integers(space, size=c.estimate_samples)
            cands = [f"{int(d):0{c.digits}d}" for d in draws]
            sample = digit_log_likelihoods(model, tok, canary.prefix, cands)
            secret_ll = float(digit_log_likelihoods(model, tok, canary.prefix, [canary.secret])[0])
            bits, rank, method = skewnorm_exposure(sample, secret_ll, space), None, "skewnorm-fit"
        greedy = greedy_digits(model, tok, canary.prefix, c.digits)
        rows.append(
            {
                **asdict(canary),
                "log_likelihood": secret_ll,
                "rank": rank,
                "exposure": bits,
                "method": method,
                "greedy": greedy,
                "extracted": greedy == canary.secret,
            }
        )
    return rows


def _level_summary(rows: list[dict[str, Any]], space: int) -> list[dict[str, Any]]:
    out = []
    for reps in sorted({r["repetitions"] for r in rows}):
        mine = np.array([r["exposure"] for r in rows if r["repetitions"] == reps])
        out.append(
            {
                "repetitions": reps,
                "canaries": int(mine.size),
                "mean_exposure": float(mine.mean()),
                "median_exposure": float(np.median(mine)),
                "max_exposure": float(mine.max()),
                "extracted": int(sum(r["extracted"] for r in rows if r["repetitions"] == reps)),
                "max_possible": float(np.log2(space)),
            }
        )
    return out


@dataclass(frozen=True)
class ExposureRun:
    """What one run made: the summary (shareable) and the full record (restricted)."""

    summary: dict[str, Any]
    record: dict[str, Any]
    out: Path


def _keep_matrix(n_records: int, models: int, seed: int) -> np.ndarray:
    """(models, records) booleans: each model's members, a random half of the pool."""
    rng = np.random.default_rng([seed, 29])
    keep = np.zeros((models, n_records), dtype=bool)
    for m in range(models):
        keep[m, rng.permutation(n_records)[: n_records // 2]] = True
    return keep


def _finetune_set(
    cfg: ExposureConfig, members: list[str], canaries: list[Canary]
) -> tuple[list[str], dict[str, Any] | None]:
    texts = members + [k.text for k in canaries for _ in range(k.repetitions)]
    if cfg.dedup is None:
        return texts, None
    result = deduplicate(texts, threshold=cfg.dedup.threshold, ngram=cfg.dedup.ngram, seed=cfg.seed)
    kept = [texts[i] for i in result.keep]
    return kept, {
        "threshold": cfg.dedup.threshold,
        "ngram": cfg.dedup.ngram,
        "before": len(texts),
        "after": len(kept),
        "exact_removed": result.exact_removed,
        "near_removed": result.near_removed,
    }


def _default_cache() -> Path:
    return Path(os.environ.get("MIAUDIT_CACHE", Path.home() / ".cache" / "miaudit")) / "lm"


def _check_out(out: Path, overwrite: bool) -> None:
    ensure_writable_dir(out)
    if (out / EXPOSURE_FILE).exists() and not overwrite:
        raise InputError("--out", f"{str(out)!r} already holds {EXPOSURE_FILE}; pass --overwrite")


def _restrict(folder: Path) -> None:
    for p in folder.rglob("*"):
        os.chmod(p, 0o700 if p.is_dir() else RESTRICTED_MODE)
    os.chmod(folder, 0o700)


# Long: the run's steps in order (pool, base, canaries, target, exposures, references, files),
# each one call; splitting would only pass the same dozen values between pieces.
def run_exposure(
    cfg: ExposureConfig,
    out: Path,
    *,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ExposureRun:
    """Fine-tune the target (and references), compute every canary's exposure, write ``out``."""
    from miaudit.models import finetune_lm, load_lm, pretrained_base, record_log_likelihoods

    say = progress or (lambda _msg: None)
    _check_out(out, overwrite)
    recipe = cfg.model
    cache = cfg.cache or _default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    staging = out / f".staging-exposure-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(mode=0o700)
        pool = synthetic_records(
            cfg.data.records, seed=_subseed(cfg.seed, 1), families=cfg.data.families
        )
        say(f"pre-training the base on {recipe.pretrain.records} public records (cached)")
        public = synthetic_records(recipe.pretrain.records, seed=_subseed(cfg.seed, 2)).texts
        base = pretrained_base(recipe, public, cache, seed=cfg.seed)
        canaries = make_canaries(cfg.canaries, cfg.seed)
        keep = _keep_matrix(len(pool), 1 + cfg.references, cfg.seed)
        members = [t for t, k in zip(pool.texts, keep[0], strict=True) if k]
        texts, dedup = _finetune_set(cfg, members, canaries)
        say(f"fine-tuning the target on {len(texts)} texts ({len(members)} members + canaries)")
        models = staging / "models"
        info = finetune_lm(
            base, recipe.finetune, texts, models / "target", seed=cfg.seed, threads=recipe.threads
        )
        target, tok = load_lm(models / "target")
        say(f"exposure of {len(canaries)} canaries (space 10^{cfg.canaries.digits})")
        rows = _secret_exposures(target, tok, canaries, cfg.canaries, cfg.seed)
        loglik = [record_log_likelihoods(target, tok, pool.texts)]
        for r in range(1, 1 + cfg.references):
            say(f"reference fine-tune {r}/{cfg.references}")
            refs_members = [t for t, k in zip(pool.texts, keep[r], strict=True) if k]
            finetune_lm(
                base,
                recipe.finetune,
                refs_members,
                models / f"reference-{r}",
                seed=cfg.seed + r,
                threads=recipe.threads,
            )
            ref, _ = load_lm(models / f"reference-{r}")
            loglik.append(record_log_likelihoods(ref, tok, pool.texts))
        summary, record = _results(cfg, rows, info, dedup, keep, loglik, base)
        _write(staging, summary, record, keep, loglik, pool.texts, pool.family)
        _restrict(staging)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExposureRun(summary, record, out)


def _membership_auc(keep: np.ndarray, loglik: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """The target's loss attack (mean token log-likelihood), for a first look; the sequence
    attacks proper run on the saved models and ``membership.npz``."""
    from miaudit.metrics import roc_auc_score

    total, count = loglik[0]
    return float(roc_auc_score(keep[0].astype(int), total / count))


def _results(
    cfg: ExposureConfig,
    rows: list[dict[str, Any]],
    info: dict[str, Any],
    dedup: dict[str, Any] | None,
    keep: np.ndarray,
    loglik: list[tuple[np.ndarray, np.ndarray]],
    base: Path,
) -> tuple[dict[str, Any], dict[str, Any]]:
    from miaudit._version import __version__

    c = cfg.canaries
    dp = None
    if "epsilon" in info:
        dp = {
            **{k: info[k] for k in ("epsilon", "delta", "accountant", "noise_multiplier", "steps")},
            "group_privacy": [
                group_privacy(info["epsilon"], info["delta"], n) for n in c.repetitions
            ],
        }
    summary = {
        "schema_version": SCHEMA_VERSION,
        "miaudit_version": __version__,
        "kind": "exposure",
        "space": c.space(),
        "method": "exact" if c.exact() else "skewnorm-fit",
        "levels": _level_summary(rows, c.space()),
        "finetune": cfg.model.finetune.model_dump(),
        "members": int(keep[0].sum()),
        "pool": int(keep.shape[1]),
        "references": cfg.references,
        "loss_attack_auc": _membership_auc(keep, loglik),
        "dp": dp,
        "dedup": dedup,
    }
    record = {
        **summary,
        "config": json.loads(cfg.model_dump_json()),
        "base": base.name,
        "losses": info.get("losses"),
        "canaries": rows,
    }
    return summary, record


def _write(
    folder: Path,
    summary: dict[str, Any],
    record: dict[str, Any],
    keep: np.ndarray,
    loglik: list[tuple[np.ndarray, np.ndarray]],
    texts: tuple[str, ...],
    family: tuple[str, ...],
) -> None:
    write_text_atomic(folder / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n", restricted=True)
    write_text_atomic(folder / EXPOSURE_FILE, json.dumps(record, indent=2) + "\n", restricted=True)
    lines = [
        json.dumps({"record": i, "family": f, "text": t})
        for i, (t, f) in enumerate(zip(texts, family, strict=True))
    ]
    write_text_atomic(folder / "records.jsonl", "\n".join(lines) + "\n", restricted=True)
    total = np.stack([t for t, _ in loglik])
    count = np.stack([n for _, n in loglik])
    with open(folder / "membership.npz", "wb") as fh:
        # keep: (models, records), row 0 the target; mean_token_logprob: miaudit's own
        # per-record score until the shared sequence signals replace it.
        np.savez(fh, keep=keep, sum_logprob=total, tokens=count, mean_token_logprob=total / count)


def _publish(staging: Path, out: Path) -> None:
    """Move the staged files into ``out`` (the results file last: its presence means done)."""
    names = sorted(p.name for p in staging.iterdir())
    names.remove(EXPOSURE_FILE)
    for name in [*names, EXPOSURE_FILE]:
        dest = out / name
        if dest.is_dir():
            shutil.rmtree(dest)
        os.replace(staging / name, dest)
    staging.rmdir()
