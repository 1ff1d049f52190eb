"""Shared fixtures: small simulated model outputs with a known membership signal (tests/simulate.py),
a planted module, and the slow tier."""

from __future__ import annotations

from pathlib import Path

import pytest

from miaudit.data import ModelOutputs
from tests.simulate import simulated_outputs

__all__ = ["simulated_outputs"]  # older tests import it from here

# The slow tier: modules that train many models, start servers, browsers or clusters, or run a
# claim's small instance. `make check` (the inner loop) leaves them out; `make test` and CI run them.
# A module is listed when it costs more than about 3 s on the 2-core machine (pytest --durations).
SLOW_MODULES = frozenset(
    {
        "tests/attacks/test_text_blind.py",  # 12 cross-fitted n-gram regressions of 5 folds
        "tests/audit/test_dp_audit.py",  # trains DP models per case
        "tests/audit/test_dp_reference.py",  # one tiny audit with 8 reference runs (≈ 10 s)
        "tests/audit/test_plain_script.py",  # real processes: a script with workers, the CLI
        "tests/audit/test_qmia_audit.py",  # QMIA's regressors per target and the stacker, twice
        "tests/benchmarks/test_qmia_bench.py",  # trains two plans of 10 MLPs
        "tests/audit/test_exposure.py",  # fine-tunes tiny LMs with canaries, audits membership
        "tests/audit/test_tradeoff_text.py",  # three tiny LM runs (plain, DP on LoRA, dedup)
        "tests/audit/test_own_model_audit.py",  # a LightGBM reference audit
        "tests/audit/test_reference_audit.py",  # reference audits end to end, CLI gate
        "tests/audit/test_signals_example.py",  # trains the docs' 8 models, audits them by CLI
        "tests/audit/test_threat_model.py",  # null audits under three plans
        "tests/audit/test_text_audit.py",  # tiny causal LMs fine-tuned, then audited end to end
        "tests/audit/test_tradeoff.py",  # trains every control's variant
        "tests/benchmarks/test_null_suite.py",  # claim instances
        "tests/benchmarks/test_gpu_bench.py",  # two small audits (one on the GPU, if any)
        "tests/benchmarks/test_detection_tabular_bench.py",  # Adult traffic through two detector designs
        "tests/benchmarks/test_own_model_bench.py",  # trains a CNN's and XGBoost's references
        "tests/benchmarks/test_runner.py",
        "tests/benchmarks/test_text_exposure_bench.py",  # three tiny LM fine-tunes (one DP)
        "tests/benchmarks/test_text_audit_bench.py",  # three tiny LM fine-tunes, 6 blind baselines
        "tests/benchmarks/test_scale_benches.py",
        "tests/datasets/test_fashion_mnist_recipes.py",  # an MLP and a CNN plan on Fashion-MNIST
        "tests/docs/test_own_model_docs.py",  # three reference audits of the user's own code
        "tests/docs/test_own_model_scripts.py",  # the same three from plain scripts
        "tests/docs/test_own_model_hf.py",  # trains a tiny BERT and audits it, in fresh interpreters
        "tests/dp/test_dp_training.py",  # Opacus training
        "tests/dp/test_multi_run_training.py",  # trains 3 × 60 tiny DP-SGD runs (torch.func)
        "tests/engine/test_device_cuda.py",  # trains on the GPU (skipped without one)
        "tests/engine/test_ray.py",  # starts a Ray cluster
        "tests/engine/test_resume.py",  # SIGKILLs and resumes training processes
        "tests/golden/test_golden.py",  # five full fixed-seed runs
        "tests/lessons/test_lessons.py",  # trains the lessons' models
        "tests/models/test_hf_safety.py",  # imports transformers, builds two tiny models
        "tests/models/test_lm.py",  # pre-trains and fine-tunes tiny language models
        "tests/models/test_onnx_docs.py",  # trains the references of docs/own-model.md's ONNX audit
        "tests/models/test_train_unit.py",  # DP-SGD through the one training entry point
        "tests/report/test_browser.py",  # headless Chromium
        "tests/report/test_pdf.py",  # headless Chromium prints, poppler renders the pages
        "tests/serve/test_benchmarks.py",
        "tests/serve/test_e2e.py",  # uvicorn workers against SQLite and PostgreSQL
        "tests/serve/test_fuzz.py",  # schemathesis over the OpenAPI spec
        "tests/test_dependencies.py",  # fresh interpreters with dependencies blocked
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(config.rootpath)
    for item in items:
        if Path(item.fspath).relative_to(root).as_posix() in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def outputs() -> ModelOutputs:
    return simulated_outputs()


@pytest.fixture
def plant_module(tmp_path, monkeypatch):
    """``plant_module(body)``: a module on sys.path whose import first writes its trace file;
    returns (module name, trace path). For tests that an untrusted file or config runs nothing."""
    import sys
    import uuid

    planted: list[str] = []

    def plant(body: str) -> tuple[str, Path]:
        name = f"mia_planted_{uuid.uuid4().hex[:8]}"
        trace = tmp_path / f"{name}.trace"
        (tmp_path / f"{name}.py").write_text(
            f"import pathlib\nTRACE = pathlib.Path({str(trace)!r})\nTRACE.write_text('import')\n{body}"
        )
        monkeypatch.syspath_prepend(str(tmp_path))
        planted.append(name)
        return name, trace

    yield plant
    for name in planted:
        sys.modules.pop(name, None)
