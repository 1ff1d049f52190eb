"""Shared fixtures: small simulated model outputs with a known membership signal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from miaudit.data import ModelOutputs


def simulated_outputs(
    n: int = 2000, classes: int = 3, shift: float = 1.0, seed: int = 0
) -> ModelOutputs:
    """Logits whose true-class entry is larger for members by ``shift`` (0 = no leak)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    m = np.zeros(n, dtype=np.int8)
    m[rng.permutation(n)[: n // 2]] = 1
    z = rng.normal(size=(n, classes))
    z[np.arange(n), y] += 1.0 + shift * m
    return ModelOutputs.from_arrays(
        logits=z,
        label=y,
        member=m,
        record_id=np.arange(1000, 1000 + n),
        columns={"group": rng.choice(["a", "b"], n)},
    )


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
