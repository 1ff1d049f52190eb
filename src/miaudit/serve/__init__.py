"""The prediction service (``miaudit serve``): a model behind API keys, per-role output policies,
record budgets, an audit log and probing detectors (docs/method.md §7, §10).

An outer layer, like the CLI: it imports the library, nothing in the library imports it.
Needs the ``serve`` extra (FastAPI, uvicorn, SQLAlchemy, httpx, psycopg).
"""

from miaudit.serve._app import app_from_env, create_app, predict_body_cap
from miaudit.serve._client import HttpOracle, ServiceError, asgi_client
from miaudit.serve._config import (
    DEFAULT_ROLES,
    Role,
    ServeConfig,
    ServeSpec,
    load_roles,
    parse_roles,
)
from miaudit.serve._keys import load_server_secret, new_key, record_hashes
from miaudit.serve._monitor import (
    DetectorConfig,
    Monitor,
    calibrate_knn_threshold,
    calibrated_detectors,
    default_knn_threshold,
    fit_spread_window,
)
from miaudit.serve._predictor import (
    EstimatorPredictor,
    ModuleSource,
    Predictor,
    TorchMLPPredictor,
    TorchModulePredictor,
    UpstreamPredictor,
    check_served_outputs,
    load_predictor,
)
from miaudit.serve._store import Alert, Charge, KeyInfo, Store, check_limits, make_engine

__all__ = [
    "DEFAULT_ROLES",
    "Alert",
    "Charge",
    "DetectorConfig",
    "EstimatorPredictor",
    "HttpOracle",
    "KeyInfo",
    "ModuleSource",
    "Monitor",
    "Predictor",
    "Role",
    "ServeConfig",
    "ServeSpec",
    "ServiceError",
    "Store",
    "TorchMLPPredictor",
    "TorchModulePredictor",
    "UpstreamPredictor",
    "app_from_env",
    "asgi_client",
    "calibrate_knn_threshold",
    "calibrated_detectors",
    "check_limits",
    "check_served_outputs",
    "create_app",
    "default_knn_threshold",
    "fit_spread_window",
    "load_predictor",
    "load_roles",
    "load_server_secret",
    "make_engine",
    "new_key",
    "parse_roles",
    "predict_body_cap",
    "record_hashes",
]
