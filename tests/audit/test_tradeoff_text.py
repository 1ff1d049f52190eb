"""``miaudit tradeoff`` on a text config, end to end at a tiny size: plain, DP on LoRA adapters at
ε = 8 and deduplication, on the same members and canaries; utility, membership, exposure per
level and the group-privacy bound in ``tradeoff.json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("faker")
pytest.importorskip("opacus")

from miaudit.cli import main

TINY = """
seed = 2
references = 0
resamples = 50
cache = "cache"

[data]
records = 60

[model]
kind = "causal-lm"

[model.architecture]
vocab_size = 300
context = 48
width = 32
layers = 1
heads = 2

[model.pretrain]
records = 200
epochs = 1

[model.finetune]
method = "lora"
epochs = 6
learning_rate = 0.003
batch_size = 8

[canaries]
digits = 3
per_level = 3
never_inserted = 3
repetitions = [1, 16]
"""


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("text-tradeoff")
    path = tmp / "text.toml"
    path.write_text(TINY, encoding="utf-8")
    main(
        ["tradeoff", str(path), "--out", str(tmp / "out"), "--epsilons", "8", "--accountant", "rdp"]
    )
    return tmp / "out", (tmp / "out" / "tradeoff.json").read_text()


def test_three_variants_on_the_same_records(result: tuple[Path, str]) -> None:
    from miaudit.audit import TextTradeoffResult

    out, text = result
    tr = TextTradeoffResult.from_json(text)
    assert [v.name for v in tr.variants] == ["plain", "dp-eps8", "dedup"]
    plain, dp, dedup = tr.variants
    assert plain.baseline and plain.risk_reduction is None and plain.epsilon is None
    for v in (dp, dedup):
        assert v.risk_reduction is not None and v.risk_reduction.lower is not None
        assert v.loss_increase is not None and v.loss_increase.point is not None
        assert (out / v.folder / "audit" / "results.json").is_file()
        assert [lv.repetitions for lv in v.exposure] == [0, 1, 16]
    for v in tr.variants:
        assert v.heldout_perplexity > 1 and v.blind_auc is not None
        assert v.strongest_attack in ("text_loss", "zlib", "min_k", "min_k_plus", "reference_ratio")
    assert "text" not in json.loads(text)  # aggregates only


def test_dp_states_the_group_privacy_bound(result: tuple[Path, str]) -> None:
    from miaudit.audit import TextTradeoffResult

    dp = TextTradeoffResult.from_json(result[1]).variant("dp-eps8")
    assert dp.epsilon is not None and 0 < dp.epsilon <= 8.0 + 1e-6
    assert [g.repetitions for g in dp.group_privacy] == [1, 16]
    assert [g.epsilon for g in dp.group_privacy] == pytest.approx([dp.epsilon, 16 * dp.epsilon])
    assert "16 records to the accountant" in dp.group_privacy[1].statement


def test_dedup_collapses_the_repeated_canaries_and_lowers_their_exposure(
    result: tuple[Path, str],
) -> None:
    from miaudit.audit import TextTradeoffResult

    out, text = result
    dedup = TextTradeoffResult.from_json(text).variant("dedup")
    summary = json.loads((out / dedup.folder / "exposure-summary.json").read_text())
    # 3 canaries × 16 copies and 3 × 1 beside 30 members: dedup keeps one copy of each.
    assert summary["dedup"]["exact_removed"] == 3 * 15
    assert dedup.finetune_texts == summary["dedup"]["after"] <= 30 + 3 + 3
    top = dedup.exposure[-1]
    assert top.repetitions == 16 and top.reduction is not None
    assert top.reduction.point is not None and top.reduction.point > 0


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--epsilons", "1e-6"], "--epsilons: variant dp-eps1e-06: ε = 1e-06 is too small"),
        (["--epsilons", "8", "--delta", "0.05"], "--delta: variant dp-eps8: δ = 0.05"),
    ],
)
def test_a_bad_dp_variant_is_refused_before_anything_trains(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], options: list[str], expected: str
) -> None:
    """Refused with exit 2 before the plain variant (or the base) trains: no folder written."""
    path = tmp_path / "text.toml"
    path.write_text(TINY, encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main(["tradeoff", str(path), "--out", str(tmp_path / "out"), *options])
    assert exc.value.code == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()


class _Stop(Exception):
    """Raised by the stand-in for run_exposure: the trade-off got as far as its first variant."""


def _variants_stop(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """run_exposure replaced by a stand-in that records the folder and stops the trade-off."""
    import miaudit.audit._tradeoff_text as tt

    seen: list[Path] = []

    def stop(_cfg: object, folder: Path, **_k: object) -> None:
        seen.append(folder)
        raise _Stop

    monkeypatch.setattr(tt, "run_exposure", stop)
    return seen


def test_variants_folder_is_private_whatever_the_umask(tmp_path: Path, monkeypatch) -> None:
    """Red team: variants/ was made with the umask's mode (0777 under umask 000) while the
    README promises 0700 for every folder miaudit makes."""
    import os
    import stat

    from miaudit.audit import parse_exposure_config, text_tradeoff

    seen = _variants_stop(monkeypatch)
    cfg = parse_exposure_config({"canaries": {"digits": 3, "per_level": 3, "never_inserted": 1}})
    old = os.umask(0)
    try:
        with pytest.raises(_Stop):
            text_tradeoff(cfg, tmp_path / "out")
    finally:
        os.umask(old)
    assert seen == [tmp_path / "out" / "variants" / "plain"]
    for folder in (tmp_path / "out", tmp_path / "out" / "variants"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_a_folder_holding_a_run_is_refused_before_anything_trains(
    tmp_path: Path, monkeypatch
) -> None:
    """Red team: the text trade-off wrote beside an audit's files, and replaced an earlier
    trade-off without asking."""
    from miaudit.audit import parse_exposure_config, text_tradeoff
    from miaudit.errors import InputError

    seen = _variants_stop(monkeypatch)
    cfg = parse_exposure_config({"canaries": {"digits": 3, "per_level": 3, "never_inserted": 1}})
    audit = tmp_path / "audit"
    audit.mkdir()
    (audit / "results.json").write_text("{}")
    with pytest.raises(InputError, match=r"^--out: .* holds a `miaudit attack` run"):
        text_tradeoff(cfg, audit)
    for held in ("tradeoff.json", "variants"):
        out = tmp_path / held.replace(".", "_")
        out.mkdir()
        (out / held).mkdir() if held == "variants" else (out / held).write_text("{}")
        with pytest.raises(InputError, match=rf"already holds a trade-off \({held}\)"):
            text_tradeoff(cfg, out)
        with pytest.raises(_Stop):  # overwrite: on to the first variant
            text_tradeoff(cfg, out, overwrite=True)
    assert len(seen) == 2
