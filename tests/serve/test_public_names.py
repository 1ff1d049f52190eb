"""The service's public names, and the layering rule: nothing below the service imports it."""

from __future__ import annotations

from pathlib import Path

import miaudit
import miaudit.serve


def test_public_names_are_pinned() -> None:
    assert set(miaudit.serve.__all__) >= {
        "create_app",
        "ServeConfig",
        "ServeSpec",
        "Role",
        "DEFAULT_ROLES",
        "Store",
        "HttpOracle",
        "ServiceError",
        "Predictor",
        "EstimatorPredictor",
        "TorchMLPPredictor",
        "UpstreamPredictor",
        "load_predictor",
        "DetectorConfig",
        "Monitor",
        "calibrate_knn_threshold",
        "asgi_client",
        "load_server_secret",
    }
    for name in miaudit.serve.__all__:
        assert hasattr(miaudit.serve, name), name


def test_http_oracle_implements_the_oracle_protocol() -> None:
    from miaudit.attacks._oracle import Oracle

    for attr in ("policy", "queries", "queries_per_record", "query"):
        assert hasattr(miaudit.serve.HttpOracle, attr)
    assert issubclass(miaudit.serve.HttpOracle, object) and Oracle is not None


def test_nothing_below_the_service_imports_it() -> None:
    root = Path(miaudit.__file__).resolve().parent
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        if rel.parts[0] in ("serve", "cli"):
            continue
        assert "miaudit.serve" not in path.read_text(encoding="utf-8"), (
            f"{rel} imports miaudit.serve"
        )
