"""Stores larger than memory: a folder of .npy files read memory-mapped, validated and scored in
chunks of records, gives exactly the in-memory results (the 1,000,000-record audit is
benchmarks/bench_million.py; here 20,000 records, with chunks small enough to make many)."""

from __future__ import annotations

import json
import secrets

import numpy as np
import pytest

from miaudit.attacks import LiraAttack, RmiaAttack, score_target
from miaudit.audit import attack_store, parse_audit_config
from miaudit.data import SignalsStore, load_signals
from miaudit.data._signals_store import signals_to_folder
from miaudit.data._tables import is_mapped
from miaudit.data._writers import SignalsDirWriter
from miaudit.errors import InputError

K, N, C = 8, 20_000, 10
CHUNK = 3_000  # records per chunk in the test: seven chunks, the last one partial


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    import miaudit.attacks._reference as ref
    import miaudit.attacks._rmia as rmia
    import miaudit.data._tables as tables
    import miaudit.data._writers as wr

    for mod in (ref, rmia, tables, wr):
        monkeypatch.setattr(mod, "CHUNK_RECORDS", CHUNK)


def _synthetic(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    label = rng.integers(0, C, N)
    population = rng.random(N) < 0.2
    half = (
        rng.random((K // 2, N)) < 0.5
    )  # complementary pairs on the pool: no record lacks IN or OUT
    keep = np.repeat(half, 2, axis=0)
    keep[1::2] = ~keep[1::2]
    keep &= ~population
    logits = rng.standard_normal((K, N, C), dtype=np.float32)
    logits[:, np.arange(N), label] += (1.0 + 1.5 * keep).astype(np.float32)
    return {"logits": logits, "label": label, "keep": keep, "population": population}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[SignalsStore, SignalsStore]:
    arrays = _synthetic()
    memory = SignalsStore.from_arrays(**arrays, target=0, info={"dataset": "synthetic"})
    folder = tmp_path_factory.mktemp("large") / "signals"
    # written chunk by chunk, as a generator of a store larger than memory would
    with SignalsDirWriter(folder, (K, N, C), target=0, info={"dataset": "synthetic"}) as w:
        for lo in range(0, N, 4_096):
            w.logits[:, lo : lo + 4_096] = arrays["logits"][:, lo : lo + 4_096]
        w.finish(label=arrays["label"], keep=arrays["keep"], population=arrays["population"])
    return memory, load_signals(folder)


def test_folder_is_memory_mapped_and_equal(stores: tuple[SignalsStore, SignalsStore]) -> None:
    memory, mapped = stores
    assert is_mapped(mapped.logits) and not is_mapped(memory.logits)
    assert mapped.target == 0 and mapped.info.to_meta() == {"dataset": "synthetic"}
    for name in ("logits", "label", "keep", "population", "record_id"):
        assert np.array_equal(getattr(mapped, name), getattr(memory, name)), name


@pytest.mark.parametrize(
    "attack",
    [
        LiraAttack("online"),
        LiraAttack("offline"),
        LiraAttack("online", variance="per_record"),
        RmiaAttack("online"),
        RmiaAttack("offline", a=0.3),
        RmiaAttack("offline", temperature=2.0),
    ],
    ids=[
        "lira-online",
        "lira-offline",
        "lira-per-record",
        "rmia-online",
        "rmia-offline",
        "rmia-offline-T2-calibrated",
    ],
)
def test_streaming_scores_equal_in_memory(
    stores: tuple[SignalsStore, SignalsStore], attack: LiraAttack | RmiaAttack
) -> None:
    memory, mapped = stores
    a, b = score_target(memory, attack), score_target(mapped, attack)
    assert np.array_equal(a.scores, b.scores)  # bit for bit
    assert np.array_equal(a.member, b.member)


def test_streaming_audit_equals_in_memory(stores: tuple[SignalsStore, SignalsStore]) -> None:
    memory, mapped = stores
    cfg = parse_audit_config({"data": {"dataset": "adult"}, "audit": {"resamples": 20}})
    key = secrets.token_bytes(32)
    a = attack_store(memory, cfg, external_target=True, pseudonym_key=key)
    b = attack_store(mapped, cfg, external_target=True, pseudonym_key=key)
    for name, s in a.scores.items():
        assert np.array_equal(s, b.scores[name]), name
    ja, jb = json.loads(a.result.to_json()), json.loads(b.result.to_json())
    ja.pop("created_at"), jb.pop("created_at")
    assert ja == jb


def test_save_without_suffix_writes_a_folder(
    tmp_path, stores: tuple[SignalsStore, SignalsStore]
) -> None:
    memory, _ = stores
    memory.save(tmp_path / "again")
    assert sorted(p.name for p in (tmp_path / "again").iterdir()) == [
        "keep.npy",
        "label.npy",
        "logits.npy",
        "meta.json",
        "population.npy",
        "record_id.npy",
    ]
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in (tmp_path / "again").iterdir())
    assert np.array_equal(load_signals(tmp_path / "again").logits, memory.logits)
    memory.save(tmp_path / "again")  # replaces the folder
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_schema_2_is_written_schema_1_still_read_and_others_refused(
    tmp_path, stores: tuple[SignalsStore, SignalsStore]
) -> None:
    memory, _ = stores
    memory.save(tmp_path / "s")
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    assert (
        meta["schema"] == "miaudit.signals/2"
    )  # the pool (~population) is the plan's, drawn before membership
    np.testing.assert_array_equal(load_signals(tmp_path / "s").pool, ~memory.population)
    for schema, ok in (("miaudit.signals/1", True), ("miaudit.signals/3", False)):
        (tmp_path / "s" / "meta.json").write_text(json.dumps({**meta, "schema": schema}))
        if ok:
            assert load_signals(tmp_path / "s").n_records == memory.n_records
        else:
            with pytest.raises(InputError, match=r"unsupported signals schema 'miaudit.signals/3'"):
                load_signals(tmp_path / "s")


def test_chunked_validation_names_the_bad_value(tmp_path) -> None:
    arrays = _synthetic(1)
    arrays["logits"][3, 10_000, 2] = np.nan  # in the fourth chunk
    with SignalsDirWriter(tmp_path / "bad", (K, N, C)) as w:
        w.logits[:] = arrays["logits"]
        w.finish(label=arrays["label"], keep=arrays["keep"], population=arrays["population"])
    with pytest.raises(InputError, match=r"logits.*NaN or inf \(first at index \(3, 10000, 2\)\)"):
        load_signals(tmp_path / "bad")


def test_folder_without_meta_is_refused(tmp_path) -> None:
    (tmp_path / "x").mkdir()
    with pytest.raises(InputError, match=r"meta.json"):
        load_signals(tmp_path / "x")


def test_failed_writer_leaves_nothing(tmp_path) -> None:
    def write_then_fail() -> None:
        with SignalsDirWriter(tmp_path / "s", (2, 10, 3)) as w:
            w.logits[:] = 1.0
            raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError, match="generator failed"):
        write_then_fail()
    assert list(tmp_path.iterdir()) == []


def test_parquet_streams_both_ways(tmp_path, stores: tuple[SignalsStore, SignalsStore]) -> None:
    memory, mapped = stores
    mapped.save(tmp_path / "chunked.parquet")  # from a mapped store: one row group per chunk
    memory.save(tmp_path / "whole.parquet")
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "chunked.parquet").num_row_groups == -(-N // CHUNK)
    for name in ("chunked", "whole"):
        back = signals_to_folder(
            tmp_path / f"{name}.parquet", tmp_path / f"{name}-folder"
        )  # read by batches
        assert is_mapped(back.logits) and back.target == 0 and back.info == memory.info
        again = load_signals(tmp_path / f"{name}.parquet")  # the in-memory reader agrees
        for store in (back, again):
            for field in ("logits", "label", "keep", "population", "record_id"):
                assert np.array_equal(getattr(store, field), getattr(memory, field)), (name, field)
