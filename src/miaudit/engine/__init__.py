"""The training engine: a membership plan trained as fixed units of stacked models, cached,
verified on reuse, resumable, written as a multi-model SignalsStore.

Typical use (an audit trains its target and reference models this way)::

    from miaudit.engine import parse_config, train

    cfg = parse_config(
        {
            "seed": 1,
            "data": {"dataset": "adult"},
            "model": {"kind": "torch-mlp", "hidden": [256, 256], "epochs": 30},
            "plan": {"models": 16, "pool_fraction": 0.5},
        }
    )
    run = train(cfg, "results")  # or train("train.toml", "results")
    store = run.signals  # also at results/signals/signals.npz (0600)

``store.logits`` is (models, records[, queries], classes) float32, ``store.keep`` the plan,
``store.population`` the records no model trained on; ``store.target`` is None (every model
can take a turn as the target). A second run with the same config reuses every unit after
verifying it, and says so; a run killed at any point resumes where it stopped.
"""

from miaudit.engine._cache import CACHE_FORMAT, KeyParts
from miaudit.engine._config import (
    EngineConfig,
    PlanConfig,
    TrainConfig,
    check_device_for,
    load_config,
    parse_config,
    read_config_file,
    with_trust,
)
from miaudit.engine._executor import Executor, LocalExecutor
from miaudit.engine._plan import MembershipPlan, complementary_plan, independent_plan, user_plan
from miaudit.engine._ray import RayExecutor
from miaudit.engine._run import (
    TrainRun,
    check_before_training,
    check_dp_plan,
    make_plan,
    n_queries,
    train,
)
from miaudit.engine._size import check_finite, check_model_size
from miaudit.engine._unit import UnitJob, UnitOutcome

__all__ = [
    "CACHE_FORMAT",
    "EngineConfig",
    "Executor",
    "KeyParts",
    "LocalExecutor",
    "MembershipPlan",
    "PlanConfig",
    "RayExecutor",
    "TrainConfig",
    "TrainRun",
    "UnitJob",
    "UnitOutcome",
    "check_before_training",
    "check_device_for",
    "check_dp_plan",
    "check_finite",
    "check_model_size",
    "complementary_plan",
    "independent_plan",
    "load_config",
    "make_plan",
    "n_queries",
    "parse_config",
    "read_config_file",
    "train",
    "user_plan",
    "with_trust",
]
