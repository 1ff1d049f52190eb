"""``engine.executor`` / ``engine.address`` and their command-line overrides (no Ray needed)."""

from __future__ import annotations

import pytest

from miaudit.cli._train import with_engine
from miaudit.engine import parse_config
from miaudit.errors import InputError

BASE = {"data": {"dataset": "breast-cancer"}}


def test_default_is_local() -> None:
    engine = parse_config(BASE).engine
    assert engine.executor == "local" and engine.address is None


def test_ray_with_address() -> None:
    engine = parse_config({**BASE, "engine": {"executor": "ray", "address": "auto"}}).engine
    assert (engine.executor, engine.address) == ("ray", "auto")


@pytest.mark.parametrize(
    ("engine", "match"),
    [
        ({"executor": "dask"}, r"^engine\.executor: Input should be 'local' or 'ray'"),
        ({"address": "auto"}, r"^engine\.address: .*executor = \"ray\""),
    ],
)
def test_bad_engine_fields_are_named(engine: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_config({**BASE, "engine": engine})


def test_command_line_overrides() -> None:
    cfg = parse_config(BASE)
    assert with_engine(cfg) is cfg  # nothing given: unchanged
    over = with_engine(cfg, executor="ray", address="10.0.0.1:6379", workers=None)
    assert (over.engine.executor, over.engine.address, over.engine.workers) == (
        "ray",
        "10.0.0.1:6379",
        None,
    )
    with pytest.raises(InputError, match=r"^engine\.executor"):
        with_engine(cfg, executor="spark")
