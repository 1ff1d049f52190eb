"""``miaudit exposure``: does a fine-tuned language model regurgitate secrets?

The run (docs/text.md): pre-train miaudit's small LM on public synthetic records (cached),
fine-tune it on a random half of a private pool plus secret-sharer canaries inserted 1, 4 and
16 times (never-inserted canaries of the same format beside them), then for every canary
compute its exposure (exact rank by enumerating the candidate space, or the skew-normal
estimate) and whether greedy decoding from its prefix writes its secret. Reference fine-tunes
of the same base on other random halves are trained too, and the target's membership is audited
through the shared sequence signals and the registry's text attacks with the blind baseline
(:mod:`miaudit.audit._exposure_membership`; ``audit/`` holds results.json, report.html and
scores.parquet as :func:`miaudit.audit.audit_text` writes them).

Everything is written to a staging folder inside ``--out`` and moved into place at the end, so
a failed run leaves no partial result. Every file is restricted (0600): canary texts are
secrets, the records and models are personal data, ``membership.npz`` is the roster. Only
``exposure-summary.json`` (per-level aggregates, no text, no secret) and ``audit/results.json``
and ``audit/report.html`` (aggregates, no text, pseudonymous ids) are meant to be shared.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from miaudit._io import (
    RESTRICTED_MODE,
    dumps_json,
    ensure_private_dir,
    output_dir_cleanup,
    write_text_atomic,
)
from miaudit.audit._attack import AttackRun
from miaudit.audit._exposure_config import CanarySection, ExposureConfig
from miaudit.audit._exposure_math import (
    exact_exposure,
    exact_rank,
    sampled_exposure_bound,
    skewnorm_exposure,
)
from miaudit.audit._exposure_membership import (
    AUDIT_FOLDER,
    SIGNALS_FILE,
    heldout_summary,
    loglik_arrays,
    membership_audit,
    membership_summary,
    score_own_models,
)
from miaudit.audit._text_audit import TEXT_BASELINE
from miaudit.audit._writer import refuse_another_run
from miaudit.data import SyntheticText, fake_names, synthetic_records
from miaudit.defenses import deduplicate
from miaudit.errors import InputError
from miaudit.signals import Role, SequenceStore, write_sequence_signals

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


#: What (ε, δ) covers when the fine-tuning set was deduplicated first (red team: the record
#: claimed the guarantee per text without saying that dedup ran outside the accountant).
DEDUP_SCOPE = (
    "ε and δ are the accountant's for the deduplicated fine-tuning set; deduplication ran "
    "before, outside the accountant, and is not accounted: adding or removing one text can "
    "change which of its near-duplicates are kept, so for the texts as given the guarantee is "
    "group privacy over a text and its near-duplicates"
)


def dp_record(
    info: dict[str, Any], repetitions: Sequence[int], *, deduplicated: bool
) -> dict[str, Any] | None:
    """The DP part of the results from the fine-tuning's privacy record (None without DP): ε,
    δ, accountant, σ, steps, the group-privacy bound per repetition count and, when the set
    was deduplicated first, what the guarantee covers (:data:`DEDUP_SCOPE`)."""
    if "epsilon" not in info:
        return None
    dp = {
        **{k: info[k] for k in ("epsilon", "delta", "accountant", "noise_multiplier", "steps")},
        "group_privacy": [group_privacy(info["epsilon"], info["delta"], n) for n in repetitions],
    }
    if deduplicated:
        dp["scope"] = DEDUP_SCOPE
    return dp


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
            f"a canary inserted once is one record to the accountant: the guarantee for it is "
            f"the recipe's ({epsilon:g}, {delta:g})-DP"
            if n == 1
            else f"a canary inserted {n} times is {n} records to the accountant: "
            f"the guarantee for it is ({eps_n:g}, {delta_n:.3g})-DP (group privacy n·ε), "
            f"not ({epsilon:g}, {delta:g})"
        ),
    }


def _subseed(seed: int, what: int) -> int:
    return int(np.random.SeedSequence([seed, what]).generate_state(1)[0])


def _secret_exposures(
    model: Any, tok: Any, canaries: list[Canary], c: CanarySection, seed: int
) -> list[dict[str, Any]]:
    from miaudit.models import all_digit_log_likelihoods, greedy_digits

    space = c.space()
    inserted = np.array([int(k.secret) for k in canaries if k.repetitions > 0], dtype=np.int64)
    rng = np.random.default_rng([seed, 23])
    rows = []
    for canary in canaries:
        secret = int(canary.secret)
        # The other inserted secrets compete with this one only because miaudit inserts several
        # at once: each canary is ranked in the space without them.
        others = inserted[inserted != secret]
        if c.exact():
            ll = all_digit_log_likelihoods(model, tok, canary.prefix, c.digits)
            rank = exact_rank(ll, secret, exclude=others)
            bits, secret_ll = exact_exposure(space - len(others), rank), float(ll[secret])
            extra: dict[str, Any] = {"rank": rank, "method": "exact"}
        else:
            bits, secret_ll, extra = _estimated_exposure(model, tok, canary, c, others, rng)
        greedy = greedy_digits(model, tok, canary.prefix, c.digits)
        rows.append(
            {
                **asdict(canary),
                "log_likelihood": secret_ll,
                "rank": extra.pop("rank", None),
                "exposure": bits,
                "method": extra.pop("method"),
                **extra,
                "greedy": greedy,
                "extracted": greedy == canary.secret,
            }
        )
    return rows


#: Beside ``method: skewnorm-fit`` in the results: what the fit is and is not.
SKEWNORM_NOTE = (
    "skewnorm-fit extrapolates a skew-normal fitted to the sampled candidates into the tail "
    "where a memorised secret lies: against the exact rank on miaudit's LM it under-stated "
    "every memorised canary (10 of 10 inserted 16 times, two seeds) by 0.4 to 2.8 bits; "
    "exposure_lower95 is a bound from the same draws that rests on no such model (the exact "
    "exposure is at least that with 95 % confidence; at most about log2(samples / 3) bits)"
)


def _estimated_exposure(
    model: Any,
    tok: Any,
    canary: Canary,
    c: CanarySection,
    others: np.ndarray,
    rng: np.random.Generator,
) -> tuple[float, float, dict[str, Any]]:
    """(fitted bits, the secret's log-likelihood, what goes beside them): the skew-normal fit
    on ``c.estimate_samples`` uniform draws, and the distribution-free lower bound from those
    of them that are not another inserted secret (:func:`sampled_exposure_bound`)."""
    from miaudit.models import digit_log_likelihoods

    space = c.space()
    draws = rng.integers(space, size=c.estimate_samples)
    cands = [f"{int(d):0{c.digits}d}" for d in draws]
    sample = digit_log_likelihoods(model, tok, canary.prefix, cands)
    secret_ll = float(digit_log_likelihoods(model, tok, canary.prefix, [canary.secret])[0])
    bits = skewnorm_exposure(sample, secret_ll, space - len(others))
    usable = ~np.isin(draws, others)
    lower, k = sampled_exposure_bound(sample[usable], secret_ll, space - len(others))
    return (
        bits,
        secret_ll,
        {
            "method": "skewnorm-fit",
            "exposure_lower95": lower,
            "samples": int(usable.sum()),
            "samples_at_least_as_likely": k,
        },
    )


def _level_summary(rows: list[dict[str, Any]], space: int) -> list[dict[str, Any]]:
    """Per repetition count: exposure aggregates, extractions, and ``max_possible``, log2 of
    the space each of its canaries is ranked in (``space`` less the other inserted secrets: the
    exposure of a canary ranked first)."""
    inserted = sum(1 for r in rows if r["repetitions"] > 0)
    out = []
    for reps in sorted({r["repetitions"] for r in rows}):
        mine = np.array([r["exposure"] for r in rows if r["repetitions"] == reps])
        others = inserted - 1 if reps > 0 else inserted
        out.append(
            {
                "repetitions": reps,
                "canaries": int(mine.size),
                "mean_exposure": float(mine.mean()),
                "median_exposure": float(np.median(mine)),
                "max_exposure": float(mine.max()),
                "extracted": int(sum(r["extracted"] for r in rows if r["repetitions"] == reps)),
                "max_possible": float(np.log2(space - others)),
            }
        )
        mine_rows = [r for r in rows if r["repetitions"] == reps]
        if all("exposure_lower95" in r for r in mine_rows):  # the estimate's sampled bound
            lower = np.array([float(r["exposure_lower95"]) for r in mine_rows])
            out[-1]["mean_exposure_lower95"] = float(lower.mean())
            out[-1]["max_exposure_lower95"] = float(lower.max())
    return out


@dataclass(frozen=True)
class ExposureRun:
    """What one run made: the summary (shareable) and the full record (restricted)."""

    summary: dict[str, Any]
    record: dict[str, Any]
    out: Path
    #: The membership audit (text attacks and blind baseline on the pool) with its scores.
    membership: AttackRun | None = None
    #: The sequence signals it ran on (target, base, references; pool then population).
    signals: SequenceStore | None = None


def _keep_matrix(n_records: int, models: int, seed: int) -> np.ndarray:
    """(models, records) booleans: row 0 the target's members, a random half of the pool; then
    the references in complementary pairs (a random half, then the other half), so that every
    record is out of at least one reference once there are two (offline LiRA needs that)."""
    rng = np.random.default_rng([seed, 29])
    keep = np.zeros((models, n_records), dtype=bool)
    for m in range(models):
        if m >= 2 and m % 2 == 0:  # the second of a reference pair: the first one's complement
            keep[m] = ~keep[m - 1]
        else:
            keep[m, rng.permutation(n_records)[: n_records // 2]] = True
    return keep


@dataclass(frozen=True)
class _FineTuningSets:
    """What each model fine-tunes on, from the config alone (nothing trained yet)."""

    pool: SyntheticText
    canaries: list[Canary]
    #: (1 + references, pool records): row 0 the target's members, then each reference's.
    keep: np.ndarray
    members: list[str]
    #: The target's fine-tuning texts: its members and each canary's insertions, deduplicated
    #: under ``[dedup]``.
    texts: list[str]
    dedup: dict[str, Any] | None

    def sizes(self) -> list[int]:
        """Fine-tuning set sizes: the target's, then each reference's."""
        return [len(self.texts), *(int(k.sum()) for k in self.keep[1:])]


def _fine_tuning_sets(cfg: ExposureConfig) -> _FineTuningSets:
    pool = synthetic_records(
        cfg.data.records, seed=_subseed(cfg.seed, 1), families=cfg.data.families
    )
    canaries = make_canaries(cfg.canaries, cfg.seed)
    keep = _keep_matrix(len(pool), 1 + cfg.references, cfg.seed)
    members = [t for t, k in zip(pool.texts, keep[0], strict=True) if k]
    texts, dedup = _finetune_set(cfg, members, canaries)
    return _FineTuningSets(pool, canaries, keep, members, texts, dedup)


def _finetune_set(
    cfg: ExposureConfig, members: list[str], canaries: list[Canary]
) -> tuple[list[str], dict[str, Any] | None]:
    texts = members + [k.text for k in canaries for _ in range(k.repetitions)]
    if cfg.dedup is None:
        return texts, None
    result = deduplicate(texts, threshold=cfg.dedup.threshold, ngram=cfg.dedup.ngram, seed=cfg.seed)
    kept = [texts[i] for i in result.keep]
    left = set(kept)
    gone = [k for k in canaries if k.repetitions > 0 and k.text not in left]
    if gone:
        # Dedup is to leave one copy of a repeated canary; one that lost every copy reads as
        # "inserted r×" while the model never saw it (red team: a long prefix without {name}
        # made 29 of 30 canaries near-duplicates of one another, and the trade-off credited
        # dedup with a reduction even at 1×)
        inserted = sum(1 for k in canaries if k.repetitions > 0)
        raise InputError(
            "dedup",
            f"removes {len(gone)} of the {inserted} inserted canaries entirely (near-duplicates of one "
            f"another: their shared prefix dominates the word {cfg.dedup.ngram}-grams), so their "
            "exposure would read as if inserted; put {name} in canaries.prefix or raise "
            "[dedup].threshold",
        )
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


def _check_out(out: Path, overwrite: bool, cfg: ExposureConfig | None = None) -> None:
    """Before minutes of fine-tuning: a folder holding another command's run is refused even
    with ``overwrite`` (its files would stay beside these and be read as theirs: `miaudit demo
    --text` shares `miaudit demo`'s default folder), one holding an exposure run needs it.
    The text demo (``cfg`` is :func:`text_demo_config`'s, which ``miaudit demo --text`` runs
    with ``overwrite`` always on) replaces only an earlier demo's run: red team, it would have
    replaced a user's ``miaudit exposure`` run (models, canary secrets, audit) in the folder."""
    ensure_private_dir(out)
    refuse_another_run(out, own="exposure", advice="choose another folder")
    if (out / EXPOSURE_FILE).exists() and not overwrite:
        raise InputError("--out", f"{str(out)!r} already holds {EXPOSURE_FILE}; pass --overwrite")
    demo = (out / EXPOSURE_FILE).exists() and cfg is not None and _is_demo(cfg)
    if demo and _stored_config(out / EXPOSURE_FILE) != json.loads(cfg.model_dump_json()):  # type: ignore[union-attr]  # demo implies cfg
        raise InputError(
            "--out",
            f"{str(out)!r} holds a `miaudit exposure` run that the text demo did not write ({EXPOSURE_FILE}): choose another folder",
        )


def _is_demo(cfg: ExposureConfig) -> bool:
    from miaudit.audit._exposure_config import text_demo_config

    return cfg == text_demo_config()


def _stored_config(path: Path) -> Any:
    """The ``config`` an earlier run recorded in ``path`` (None when it cannot be read: the
    file is data in a folder anyone may have written, read as a regular file under a cap)."""
    from miaudit._io import read_regular_file

    try:
        raw = read_regular_file(path, EXPOSURE_FILE, max_bytes=64 << 20, field="--out")
        return json.loads(raw).get("config")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None


def _restrict(folder: Path) -> None:
    for p in folder.rglob("*"):
        os.chmod(p, 0o700 if p.is_dir() else RESTRICTED_MODE)
    os.chmod(folder, 0o700)


def run_exposure(
    cfg: ExposureConfig,
    out: Path,
    *,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ExposureRun:
    """Fine-tune the target (and references), compute every canary's exposure, audit the
    target's membership through the sequence signals and text attacks, write ``out``. A folder
    this call made is removed again if it fails or is killed while the folder is still empty
    (a learner's timeout left an empty --out)."""
    with output_dir_cleanup(out):
        return _exposure_into(cfg, out, overwrite=overwrite, progress=progress)


# Long: the run's steps in order (pool, base, canaries, target, exposures, references, membership
# audit, files), each one call; splitting would only pass the same dozen values between pieces.
def _exposure_into(
    cfg: ExposureConfig,
    out: Path,
    *,
    overwrite: bool,
    progress: Callable[[str], None] | None,
) -> ExposureRun:
    """:func:`run_exposure`'s work, into ``out``."""
    from miaudit.models import finetune_lm, load_lm, pretrained_base

    say = progress or (lambda _msg: None)
    _check_out(out, overwrite, cfg)
    recipe = cfg.model
    cache = cfg.cache or _default_cache()
    staging = out / f".staging-exposure-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        staging.mkdir(mode=0o700)
        population = _population(cfg)
        sets = _fine_tuning_sets(cfg)
        pool, canaries, keep, texts = sets.pool, sets.canaries, sets.keep, sets.texts
        # Before pre-training (minutes the first time): a DP claim no σ meets is refused now.
        check_exposure_dp(cfg, sets.sizes())
        public = synthetic_records(recipe.pretrain.records, seed=_subseed(cfg.seed, 2)).texts
        check_canaries_fit(cfg, canaries, public)  # before pre-training, too
        cache.mkdir(parents=True, exist_ok=True)
        base = pretrained_base(recipe, public, cache, seed=cfg.seed, say=say)
        say(
            f"fine-tuning the target on {len(texts)} texts ({len(sets.members)} members + canaries)"
        )
        models = staging / "models"
        info = finetune_lm(
            base, recipe.finetune, texts, models / "target", seed=cfg.seed, threads=recipe.threads
        )
        target, tok = load_lm(models / "target")
        say(f"exposure of {len(canaries)} canaries (space 10^{cfg.canaries.digits})")
        rows = _secret_exposures(target, tok, canaries, cfg.canaries, cfg.seed)
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
        say("membership audit: sequence signals of every model, text attacks, blind baseline")
        store, audit = _membership(cfg, staging, base, keep, pool.texts, population)
        summary, record = _results(cfg, rows, info, sets.dedup, store, audit, base)
        _write(staging, summary, record, store, pool, population)
        _restrict(staging)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExposureRun(summary, record, out, membership=audit, signals=store)


def check_canaries_fit(
    cfg: ExposureConfig, canaries: Sequence[Canary], public: Sequence[str]
) -> None:
    """Refuse, before any model trains, canaries that do not fit the model's context with BOS
    and the digits the exposure feeds (red team: a context of 16 was refused only after
    pre-training and fine-tuning). The tokenizer is trained with the base, so first bounds that
    hold for any tokenizer it could be (:func:`miaudit.models.token_bounds`: at
    least one token per pre-token, at most one per byte); only between them is the base's
    tokenizer trained now on ``public`` as pre-training trains it (seconds), and counted."""
    from miaudit.models import token_bounds, train_tokenizer

    c, context = cfg.canaries, cfg.model.architecture.context
    # the exact rank and greedy decoding feed all digits but the last; the estimate scores
    # whole candidates
    n_more = c.digits - 1 if c.exact() else c.digits
    prefixes = sorted({k.prefix for k in canaries})
    bounds = [token_bounds(p) for p in prefixes]
    fewest = 1 + max(lo for lo, _ in bounds) + n_more
    if 1 + max(hi for _, hi in bounds) + n_more <= context:
        return
    if fewest > context:
        need = f"at least {fewest}"
    else:
        tok = train_tokenizer(public, cfg.model.architecture.vocab_size)
        longest = max(len(tok.encode(p, add_special_tokens=False).ids) for p in prefixes)
        if 1 + longest + n_more <= context:
            return
        need = str(1 + longest + n_more)
    raise InputError(
        "model.architecture.context",
        f"a canary takes {need} tokens with its digits; the model's context is {context}",
    )


def check_exposure_dp(
    cfg: ExposureConfig,
    sizes: list[int] | None = None,
    *,
    epsilon_field: str = "model.finetune.dp.epsilon",
    delta_field: str = "model.finetune.dp.delta",
) -> None:
    """A DP fine-tuning's claim checked before anything trains (δ < 1/n, σ found for ε) on the
    fine-tuning sets' sizes: ``sizes`` (target, then references), else computed from the config
    as the run makes them (members + canary insertions, after ``[dedup]`` where it is set)."""
    from miaudit.models import check_finetune_dp

    ft = cfg.model.finetune
    if ft.dp is None:
        return
    if sizes is None:
        sizes = _fine_tuning_sets(cfg).sizes()
    check_finetune_dp(
        ft.dp.epsilon,
        ft.dp.delta,
        ft.dp.accountant,
        ft.batch_size,
        ft.epochs,
        sizes,
        epsilon_field=epsilon_field,
        delta_field=delta_field,
    )


def _population(cfg: ExposureConfig) -> tuple[str, ...]:
    """Records no model trains on, from a seed stream apart from the pool's and the public's."""
    if cfg.data.population == 0:
        return ()
    return synthetic_records(
        cfg.data.population, seed=_subseed(cfg.seed, 3), families=cfg.data.families
    ).texts


def _membership(
    cfg: ExposureConfig,
    staging: Path,
    base: Path,
    keep: np.ndarray,
    pool: tuple[str, ...],
    population: tuple[str, ...],
) -> tuple[SequenceStore, AttackRun]:
    """The sequence signals of target, base and references on pool and population, and the
    text attacks with the blind baseline on them (written to ``staging/audit``)."""
    refs = [staging / "models" / f"reference-{r}" for r in range(1, 1 + cfg.references)]
    n_pool, n_pop = keep.shape[1], len(population)
    full = np.zeros((keep.shape[0] + 1, n_pool + n_pop), dtype=bool)
    full[0, :n_pool] = keep[0]  # the target; row 1 is the base, which trained on none
    full[2:, :n_pool] = keep[1:]
    is_pop = np.arange(n_pool + n_pop) >= n_pool
    texts = [*pool, *population]
    roles: list[Role] = ["target", "base"]
    store = score_own_models(
        [staging / "models" / "target", base, *refs],
        roles + ["reference"] * len(refs),
        texts,
        full,
        is_pop,
    )
    run = membership_audit(
        store, texts, staging / AUDIT_FOLDER, seed=cfg.seed, n_resamples=cfg.resamples
    )
    return store, run


def _results(
    cfg: ExposureConfig,
    rows: list[dict[str, Any]],
    info: dict[str, Any],
    dedup: dict[str, Any] | None,
    store: SequenceStore,
    audit: AttackRun,
    base: Path,
) -> tuple[dict[str, Any], dict[str, Any]]:
    from miaudit._version import __version__

    c = cfg.canaries
    dp = dp_record(info, c.repetitions, deduplicated=dedup is not None)
    keep = store.keep[store.target, ~store.population]
    summary = {
        "schema_version": SCHEMA_VERSION,
        "miaudit_version": __version__,
        "kind": "exposure",
        "space": c.space(),
        "method": "exact" if c.exact() else "skewnorm-fit",
        "method_note": None if c.exact() else SKEWNORM_NOTE,
        "levels": _level_summary(rows, c.space()),
        "finetune": cfg.model.finetune.model_dump(),
        "members": int(keep.sum()),
        "pool": int(keep.size),
        "references": cfg.references,
        "loss_attack_auc": _auc(audit, TEXT_BASELINE),
        "membership": membership_summary(audit),
        "heldout": heldout_summary(store),
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


def _auc(audit: AttackRun, name: str) -> float | None:
    attack = next((a for a in audit.result.attacks if a.name == name), None)
    return None if attack is None else attack.auc.point


def _write(
    folder: Path,
    summary: dict[str, Any],
    record: dict[str, Any],
    store: SequenceStore,
    pool: SyntheticText,
    population: tuple[str, ...],
) -> None:
    write_text_atomic(folder / SUMMARY_FILE, dumps_json(summary, indent=2) + "\n", restricted=True)
    write_text_atomic(folder / EXPOSURE_FILE, dumps_json(record, indent=2) + "\n", restricted=True)
    lines = [
        json.dumps({"record": i, "family": f, "text": t})
        for i, (t, f) in enumerate(zip(pool.texts, pool.family, strict=True))
    ]
    lines += [
        json.dumps({"record": len(pool.texts) + i, "population": True, "text": t})
        for i, t in enumerate(population)
    ]
    write_text_atomic(folder / "records.jsonl", "\n".join(lines) + "\n", restricted=True)
    write_sequence_signals(store, folder / SIGNALS_FILE)
    # keep: (models, pool records), row 0 the target, then the references (the base trained on
    # none); per-record summed and mean token log-probabilities, from the sequence signals.
    models = [store.target, *store.references]
    total, count = loglik_arrays(store, models, len(pool.texts))
    with open(folder / "membership.npz", "wb") as fh:
        np.savez(
            fh,
            keep=store.keep[models][:, : len(pool.texts)],
            sum_logprob=total,
            tokens=count,
            mean_token_logprob=total / count,
        )


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
