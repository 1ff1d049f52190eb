"""The training engine: a membership plan trained as fixed units of stacked models, cached,
verified on reuse, resumable, written as a multi-model SignalsStore."""

from miaudit.engine._cache import CACHE_FORMAT, KeyParts
from miaudit.engine._config import EngineConfig, PlanConfig, TrainConfig, load_config, parse_config
from miaudit.engine._executor import Executor, LocalExecutor
from miaudit.engine._plan import MembershipPlan, complementary_plan, independent_plan, user_plan
from miaudit.engine._run import TrainRun, make_plan, n_queries, train
from miaudit.engine._unit import UnitJob, UnitOutcome

__all__ = [
    "CACHE_FORMAT",
    "EngineConfig",
    "Executor",
    "KeyParts",
    "LocalExecutor",
    "MembershipPlan",
    "PlanConfig",
    "TrainConfig",
    "TrainRun",
    "UnitJob",
    "UnitOutcome",
    "complementary_plan",
    "independent_plan",
    "load_config",
    "make_plan",
    "n_queries",
    "parse_config",
    "train",
    "user_plan",
]
