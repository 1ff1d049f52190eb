"""``train``: data + recipe + plan → trained (or verified cached) units → a SignalsStore."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from miaudit._io import cleans_output_dir, ensure_private_dir, refuse_link, write_text_atomic
from miaudit.data import SignalsStore
from miaudit.datasets import Dataset, load_dataset
from miaudit.engine import _cache
from miaudit.engine._config import TrainConfig, load_config
from miaudit.engine._executor import Executor, LocalExecutor, WorkerDied
from miaudit.engine._plan import (
    MembershipPlan,
    complementary_plan,
    even_unit_size,
    independent_plan,
    user_plan,
)
from miaudit.engine._progress import UnitProgress
from miaudit.engine._size import check_train_size
from miaudit.engine._unit import Event, UnitJob
from miaudit.errors import InputError
from miaudit.models import (
    CNNRecipe,
    MLPRecipe,
    PythonRecipe,
    SigmaTable,
    SklearnRecipe,
    check_dp_claim,
    check_recipe_for_data,
    fits_anything,
    make_estimator,
    population_digest,
    preprocessing_fit,
    training_augmentations,
)

SIGNALS_FILE = "signals.npz"


@dataclass(frozen=True, eq=False)
class TrainRun:
    """What a training run produced and what it reused.

    ``signals`` (also saved at ``signals_path``) holds every model's float32 logits on every
    record, the keep matrix and the population mask. ``reused`` units were taken from the
    cache after verification; ``refused`` maps units whose cached files failed verification to
    the reason (they were retrained).
    """

    config: TrainConfig
    signals: SignalsStore
    signals_path: Path
    out: Path
    cache: Path
    plan: MembershipPlan
    trained: tuple[int, ...]
    reused: tuple[int, ...]
    refused: dict[int, str]
    seconds: float

    def model_location(self, model: int) -> tuple[Path, int]:
        """(unit folder, position in the unit) of model ``model``: the unit's
        ``weights.safetensors`` holds stacked tensors (index the first axis by the position)
        and the model's preprocessing; scikit-learn units hold ``model_<model>.skops``."""
        if not (0 <= model < self.plan.n_models):
            raise InputError("model", f"model {model} is outside [0, {self.plan.n_models})")
        unit = model // self.plan.unit_size
        return _cache.unit_dir(
            self.cache, self.signals.info.units[unit]
        ), model - unit * self.plan.unit_size

    def __repr__(self) -> str:
        return f"TrainRun({self.summary()}; {self.seconds:.1f} s)"

    def summary(self) -> str:
        k, n = self.signals.keep.shape
        parts = [
            f"{k} models on {n} records: trained {len(self.trained)} unit(s), reused {len(self.reused)} verified unit(s) from {self.cache}"
        ]
        parts += [
            f"unit {u}: cached files refused ({why}); retrained"
            for u, why in sorted(self.refused.items())
        ]
        parts.append(f"signals: {self.signals_path}")
        return "\n".join(parts)


def n_queries(recipe: object) -> int:
    """Augmentation queries per record (1: no query axis in the logits)."""
    augment = training_augmentations(recipe)
    return (1 + ("hflip" in augment)) * (1 + 4 * ("shift" in augment))


def default_workers(cfg: TrainConfig) -> int:
    """Worker processes of a local run: ``engine.workers``, else one per core (each with
    ``engine.threads`` threads) on the CPU and one on a GPU, which trains one unit at a time
    faster than several processes sharing it (the device names one GPU). They decide where
    units run, never what the units are (:func:`unit_size`)."""
    if cfg.engine.workers is not None:
        return cfg.engine.workers
    if isinstance(cfg.model, PythonRecipe):
        return 0  # the user's own training code runs in this process unless workers are asked for
    if cfg.engine.device != "cpu":
        return 1
    return max(1, (os.cpu_count() or 1) // cfg.engine.threads)


#: The default layout's units come in multiples of this many: two keep a 2-core machine's two
#: workers equally busy. Four cost a 2-core machine 18-19 % more training time on the demo-like
#: MLP (6 and 10 models: units of 2 and 3 instead of 3 and 5), so the default stays at two.
DEFAULT_UNIT_SPREAD = 2


def unit_size(cfg: TrainConfig, n_models: int) -> int:
    """``plan.unit_size``, else a size fixed by the number of models and the device alone.

    The layout is part of every unit's key and can change the bits (stacks of other widths
    round differently), so it must not follow the machine: when it followed the workers (the
    core count) a 1-core machine and Ray trained 6 models as one unit and a 2-core one as
    3 + 3, with other keys and logits up to 1.9e-6 apart (red team). On the CPU: an even number
    of units of at most 16 models, filled evenly (6 models: 3 + 3; 18: 9 + 9; 40: 4 × 10),
    which Ray spreads over two CPUs or more; on a GPU, which gains from wide stacks, the fewest
    units of at most 16."""
    if cfg.plan.unit_size is not None:
        return cfg.plan.unit_size
    return even_unit_size(n_models, DEFAULT_UNIT_SPREAD if cfg.engine.device == "cpu" else 1)


def make_plan(
    cfg: TrainConfig, n_records: int, keep: np.ndarray | None = None, pool: np.ndarray | None = None
) -> MembershipPlan:
    """The membership plan of ``cfg`` (or of a user keep matrix ``keep`` with its ``pool``)."""
    p = cfg.plan
    if keep is not None or p.kind == "user":
        if keep is None:
            if p.keep is None:
                raise InputError(
                    "plan.keep", "kind = \"user\" needs 'keep', a .npy file with the keep matrix"
                )
            keep = _load_npy(p.keep, "plan.keep")
            if pool is None and p.pool is not None:
                pool = _load_npy(p.pool, "plan.pool")
        plan = user_plan(
            keep, n_records, pool=pool, unit_size=unit_size(cfg, max(1, len(np.atleast_2d(keep))))
        )
        if plan.n_models != p.models:
            raise InputError(
                "plan.models", f"is {p.models} but the keep matrix has {plan.n_models} rows"
            )
        return plan
    make = complementary_plan if p.kind == "complementary" else independent_plan
    return make(
        n_records,
        p.models,
        seed=cfg.seed,
        pool_fraction=p.pool_fraction,
        unit_size=unit_size(cfg, p.models),
    )


def _load_npy(path: Path, field: str) -> np.ndarray:
    if path.suffix.lower() != ".npy" or not path.is_file():
        raise InputError(field, f"{str(path)!r} is not an existing .npy file")
    try:
        array: np.ndarray = np.load(path, allow_pickle=False)  # numpy types np.load as Any
    except (OSError, ValueError) as exc:
        raise InputError(field, f"cannot read {str(path)!r}: {exc}") from None
    return array


def unit_jobs(
    cfg: TrainConfig,
    data: Dataset,
    plan: MembershipPlan,
    cache: Path,
    *,
    sigmas: SigmaTable = (),
) -> list[UnitJob]:
    """The plan's units as jobs; ``sigmas``: the σ :func:`check_dp_plan` found, for each job."""
    fingerprint = data.fingerprint()
    versions = _cache.key_versions(cfg.model)
    recipe_json = _cache.recipe_key(cfg.model)
    a = n_queries(cfg.model)
    jobs = []
    # Preprocessing fitted on the population: the unit's bits depend on the population too.
    fitted_on = (
        f"|preprocessing fitted on {population_digest(plan.population)}"
        if preprocessing_fit(cfg.model) == "population" and fits_anything(data)
        else ""
    )
    for unit in range(plan.n_units):
        models = tuple(plan.unit_models(unit))
        rows = plan.keep[list(models)]
        parts = _cache.KeyParts(
            data=fingerprint,
            recipe=recipe_json,
            seed=cfg.seed,
            members=_cache.members_digest(rows) + fitted_on,
            layout=f"unit {unit} of size {plan.unit_size}: models {models[0]}..{models[-1]}",
            threads=cfg.engine.threads,
            versions=versions,
            device=cfg.engine.device,
        )
        shape = (len(models), data.n_records, *((a,) if a > 1 else ()), data.n_classes)
        jobs.append(
            UnitJob(
                unit,
                models,
                rows,
                cfg.model,
                data,
                cfg.seed,
                cfg.engine.threads,
                parts,
                cache,
                shape,
                plan.population,
                cfg.trust_code,
                device=cfg.engine.device,
                sigmas=sigmas,
            )
        )
    return jobs


@cleans_output_dir  # bad input leaves no folder it made
def train(
    config: TrainConfig | str | Path,
    out: str | Path,
    *,
    keep: np.ndarray | None = None,
    pool: np.ndarray | None = None,
    executor: Executor | None = None,
    on_event: Callable[[Event], None] | None = None,
    console: Console | None = None,
) -> TrainRun:
    """Train (or reuse) every unit of the plan and write ``<out>/signals/signals.npz``.

    ``config`` is a ``TrainConfig`` or a TOML/YAML file; ``keep`` overrides the plan with a
    user keep matrix (models × records) and ``pool`` gives its pool (records,) mask (default:
    every record; see :func:`~miaudit.engine.user_plan`); ``executor`` defaults to a ``LocalExecutor`` with the
    config's workers and threads; ``on_event`` sees every progress event ``(kind, unit, done,
    total)``. Files: ``<out>/train.json`` (the config as run), ``<out>/signals/`` and the cache
    (``engine.cache``, default ``<out>/models``). Restricted files are 0600.
    """
    start = time.perf_counter()
    cfg = config if isinstance(config, TrainConfig) else load_config(config)
    out = ensure_private_dir(Path(out))
    refuse_link(out / "signals", "signals")
    if cfg.engine.cache is None:
        refuse_link(out / "models", "models")
    cache = ensure_private_dir(cfg.engine.cache or out / "models", field="engine.cache")
    data = check_before_training(cfg, own_executor=executor is None)
    if pool is not None and keep is None:
        raise InputError("pool", "a pool goes with a user keep matrix (keep=)")
    plan = make_plan(cfg, data.n_records, keep, pool)
    _check_population(cfg, data, plan)
    sigmas = check_dp_plan(cfg, plan)
    console = console or Console(stderr=True)
    _cache.clean_stale_staging(cache)
    jobs = unit_jobs(cfg, data, plan, cache, sigmas=sigmas)
    todo, reused, refused = _sort_by_cache(jobs, cache, console)
    if todo:
        _run_jobs(todo, cfg, executor, on_event, console)
    store = _assemble(jobs, cache, data, plan, cfg)
    signals_dir = ensure_private_dir(out / "signals")
    store.save(signals_dir / SIGNALS_FILE)
    # Last: a failed run leaves no record of itself.
    write_text_atomic(out / "train.json", cfg.model_dump_json(indent=2))
    return TrainRun(
        cfg,
        store,
        signals_dir / SIGNALS_FILE,
        out,
        cache,
        plan,
        tuple(j.unit for j in todo),
        tuple(reused),
        refused,
        time.perf_counter() - start,
    )


def _check_population(cfg: TrainConfig, data: Dataset, plan: MembershipPlan) -> None:
    """Preprocessing fitted on the population needs a population (records outside the pool)."""
    if (
        preprocessing_fit(cfg.model) == "population"
        and fits_anything(data)
        and not plan.population.any()
    ):
        raise InputError(
            "model.preprocessing",
            "is fitted on the population (records outside the plan's pool), and the population is empty: lower plan.pool_fraction below 1, or give a pool that leaves records out",
        )


def check_dp_plan(
    cfg: TrainConfig,
    plan: MembershipPlan,
    *,
    epsilon_field: str = "model.dp.epsilon",
    delta_field: str = "model.dp.delta",
) -> SigmaTable:
    """A DP recipe's claim checked against the plan before any training: δ below 1/n for every
    model's training set of n records, and σ found for the target ε at every model's sampling
    rate and steps (a bounded search: an ε no σ reaches is refused now, never searched for ever
    in a worker). InputError naming the field otherwise; the σ found (handed to the workers)."""
    if isinstance(cfg.model, MLPRecipe | CNNRecipe) and cfg.model.dp is not None:
        return check_dp_claim(
            cfg.model,
            plan.keep.sum(axis=1).tolist(),
            epsilon_field=epsilon_field,
            delta_field=delta_field,
        )
    return ()


def _sort_by_cache(
    jobs: list[UnitJob], cache: Path, console: Console
) -> tuple[list[UnitJob], list[int], dict[int, str]]:
    """(jobs to train, units reused after verification, units whose cached files were refused
    → why), each said on the console."""
    todo, reused, refused = [], [], {}
    for job in jobs:
        ok, why = _cache.verify(cache, job.key, job.logits_shape)
        if ok:
            reused.append(job.unit)
        else:
            if why != "not cached":
                refused[job.unit] = why
            todo.append(job)
    if reused:
        console.print(
            f"reusing {len(reused)} of {len(jobs)} unit(s) from {cache} (keys and file hashes verified): units {_ranges(reused)}"
        )
    for unit, why in refused.items():
        console.print(f"unit {unit}: cached files refused ({why}); retraining")
    return todo, reused, refused


def check_before_training(cfg: TrainConfig, *, own_executor: bool = True) -> Dataset:
    """What :func:`train` checks before any work, so that callers running several trainings can
    check first too: the data, the recipe against it, an estimator's parameters, the memory the
    plan needs, and (``own_executor`` with ``executor = "ray"``) the cluster's address. Returns
    the data."""
    if not isinstance(cfg.model, SklearnRecipe | PythonRecipe):
        _require("torch")  # workers would fail on it one by one
    data = load_dataset(cfg.data)
    check_recipe_for_data(
        cfg.model,
        image_shape=data.image_shape,
        mirror_invariant=data.mirror_invariant,
        dataset=data.name,
    )
    if isinstance(cfg.model, SklearnRecipe):
        _check_params(
            make_estimator(cfg.model, trust_code=cfg.trust_code)
        )  # refuse a bad estimator or params before any work
    check_train_size(
        cfg, data.n_records, data.n_features, data.n_classes
    )  # before any array is allocated
    if own_executor and cfg.engine.executor == "ray":
        from miaudit.engine._ray import probe_address

        probe_address(
            cfg.engine.address
        )  # an unreachable cluster is refused now, not waited on forever
    return data


def _require(module: str) -> None:
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise ModuleNotFoundError(f"No module named {module!r}", name=module)


def _check_params(estimator: Any) -> None:
    """scikit-learn checks constructor parameters only in ``fit``; check them now."""
    validate = getattr(estimator, "_validate_params", None)
    if not callable(validate):
        return
    try:
        validate()
    except (ValueError, TypeError) as exc:
        raise InputError("model.params", str(exc).splitlines()[0]) from None


def _run_jobs(
    todo: list[UnitJob],
    cfg: TrainConfig,
    executor: Executor | None,
    on_event: Callable[[Event], None] | None,
    console: Console,
) -> None:
    step = "model" if isinstance(cfg.model, SklearnRecipe | PythonRecipe) else "epoch"
    own = executor is None
    if executor is None and cfg.engine.executor == "ray":
        from miaudit.engine._ray import RayExecutor

        ex: Executor = RayExecutor(cfg.engine.address, threads=cfg.engine.threads)
    else:
        workers = min(default_workers(cfg), len(todo))
        ex = executor or LocalExecutor(workers=workers, threads=cfg.engine.threads)
    with UnitProgress(len(todo), step, console, enabled=cfg.engine.progress) as bars:

        def events(event: Event) -> None:
            bars(event)
            if on_event is not None:
                on_event(event)

        ex.start(events)
        futures: list[Future[Any]] = []
        try:
            futures = [ex.submit(job) for job in todo]
            for fut in futures:
                fut.result()
        except Exception as exc:
            where = _lost_worker(exc)
            if where is None:
                raise
            done = sum(f.done() and not f.cancelled() and f.exception() is None for f in futures)
            raise WorkerDied(
                f"{where} died (killed by the system: out of memory?); {done} of the {len(todo)} unit(s) to train were published, and rerunning the same command resumes from every unit published"
            ) from None
        except BaseException:  # Ctrl-C, SIGTERM: stop now rather than wait for running units
            if isinstance(ex, LocalExecutor):
                ex.stop_workers()
            raise
        finally:
            if own:
                ex.close()


def _lost_worker(exc: BaseException) -> str | None:
    """What died, when ``exc`` says a training process or node was lost rather than that
    training failed: a local worker (the pool breaks) or a Ray worker, raylet or node."""
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(exc, BrokenProcessPool):
        return "a training worker process"
    if "ray" in sys.modules:  # never imported for a local run
        from miaudit.engine._ray import lost_on_ray

        return lost_on_ray(exc)
    return None


def _assemble(
    jobs: list[UnitJob], cache: Path, data: Dataset, plan: MembershipPlan, cfg: TrainConfig
) -> SignalsStore:
    parts = []
    privacy: list[
        dict[str, Any]
    ] = []  # DP-SGD units: per model ε spent, δ, accountant (models/_dp.py)
    seen: list[dict[str, Any]] = []  # per model: what its preprocessing was fitted on
    for job in jobs:
        try:
            info = _cache.verified_info(cache, job.key, job.logits_shape)
        except _cache.Refused as why:  # verified a moment ago: something else is touching the cache
            raise RuntimeError(
                f"unit {job.unit} failed verification right after training: {why}"
            ) from None
        # memory-mapped: concatenate reads each file once instead of loading, then copying it
        parts.append(np.load(_cache.unit_dir(cache, job.key) / _cache.LOGITS, mmap_mode="r"))
        seen += info.get("preprocessing") or []
        if getattr(cfg.model, "dp", None) is not None:
            privacy += info.get("privacy") or []
    info = {
        "dataset": data.name,
        "data_fingerprint": data.fingerprint(),
        "recipe": cfg.model.model_dump(mode="json"),
        "seed": cfg.seed,
        "plan": plan.kind,
        "pool_fraction": cfg.plan.pool_fraction,
        "unit_size": plan.unit_size,
        "units": [j.key for j in jobs],
        "versions": _cache.key_versions(cfg.model),
        "threads": cfg.engine.threads,
        "device": cfg.engine.device,
        **({"privacy": privacy} if privacy else {}),
        **({"preprocessing": _preprocessing_summary(seen)} if seen else {}),
    }
    return SignalsStore.from_arrays(
        logits=np.concatenate(parts),
        label=data.label,
        keep=plan.keep,
        population=plan.population,
        record_id=data.record_id,
        info=info,
    )


def _preprocessing_summary(seen: list[dict[str, Any]]) -> dict[str, Any]:
    """What the models' preprocessing saw, in short: one entry when every model saw the same."""
    fits = sorted({s["fit"] for s in seen})
    digests = {s["records_sha256"] for s in seen}
    out: dict[str, Any] = {
        "fit": fits[0] if len(fits) == 1 else fits,
        "fitted_columns": seen[0]["fitted_columns"],
    }
    if len(digests) == 1:
        out |= {"records": seen[0]["records"], "records_sha256": seen[0]["records_sha256"]}
    else:
        out["records"] = [s["records"] for s in seen]
    return out


def _ranges(units: list[int]) -> str:
    """[0, 1, 2, 5] → "0–2, 5"."""
    runs: list[list[int]] = []
    for u in units:
        if runs and u == runs[-1][-1] + 1:
            runs[-1].append(u)
        else:
            runs.append([u])
    return ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)
