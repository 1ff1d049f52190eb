"""``miaudit exposure`` end to end on a tiny LM: exposure rises with repetitions, outputs are
restricted and complete (HF folders, keep matrix), bad input leaves nothing, DP states the
group-privacy bound, dedup collapses repeated canaries."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("faker")

from miaudit.cli import main

TINY = """
seed = 1
references = 1
cache = "cache"

[data]
records = 60

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
epochs = 6
learning_rate = 0.003
batch_size = 8

[canaries]
digits = 3
per_level = 3
never_inserted = 3
repetitions = [1, 16]
"""


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "exposure.toml"
    path.write_text(TINY + extra, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("exposure")
    main(["exposure", str(_config(tmp)), "--out", str(tmp / "out")])
    return tmp / "out"


def test_exposure_rises_with_repetitions(run: Path) -> None:
    summary = json.loads((run / "exposure-summary.json").read_text())
    mean = {lv["repetitions"]: lv["mean_exposure"] for lv in summary["levels"]}
    assert set(mean) == {0, 1, 16} and summary["method"] == "exact"
    assert mean[16] > mean[1] and mean[16] > mean[0] + 2.0
    assert "text" not in json.dumps(summary)  # aggregates only: no canary text, no secret


def test_every_output_is_restricted_and_the_models_are_hf_folders(run: Path) -> None:
    for path in run.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, (path, oct(mode))
    for name in ("target", "reference-1"):
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
            p.name for p in (run / "models" / name).iterdir()
        }
    record = json.loads((run / "exposure.json").read_text())
    assert len(record["canaries"]) == 9 and all(c["rank"] >= 1 for c in record["canaries"])
    with np.load(run / "membership.npz") as z:
        assert z["keep"].shape == (2, 60) and z["keep"].sum(1).tolist() == [30, 30]
        assert z["mean_token_logprob"].shape == (2, 60)
    assert len((run / "records.jsonl").read_text().splitlines()) == 60
    assert not [p for p in run.iterdir() if p.name.startswith(".staging")]


def test_existing_results_are_not_overwritten(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (run / "exposure.json").read_bytes()
    with pytest.raises(SystemExit) as exc:
        main(["exposure", str(run.parent / "exposure.toml"), "--out", str(run)])
    assert exc.value.code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (run / "exposure.json").read_bytes() == before


@pytest.mark.parametrize(
    "extra, field",
    [("\n[dedup]\nthreshold = 2.0\n", "dedup.threshold"), ("\ncolour = 1\n", "colour")],
)
def test_bad_config_exits_2_with_one_line_and_no_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, field: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["exposure", str(_config(tmp_path, extra)), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.splitlines()
    assert exc.value.code == 2 and len(err) == 1 and field in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_failed_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import miaudit.models

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", "model.safetensors")

    monkeypatch.setattr(miaudit.models, "finetune_lm", boom)
    with pytest.raises(SystemExit) as exc:
        main(["exposure", str(_config(tmp_path)), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert list((tmp_path / "out").iterdir()) == []


def test_dp_lora_states_group_privacy_and_dedup_collapses_canaries(tmp_path: Path) -> None:
    path = _config(tmp_path, "\n[model.finetune.dp]\nepsilon = 8.0\n\n[dedup]\nthreshold = 0.8\n")
    text = path.read_text().replace("references = 1", "references = 0")
    path.write_text(text.replace("[model.finetune]\n", '[model.finetune]\nmethod = "lora"\n'))
    main(["exposure", str(path), "--out", str(tmp_path / "out")])
    summary = json.loads((tmp_path / "out" / "exposure-summary.json").read_text())
    dp = summary["dp"]
    assert 0 < dp["epsilon"] <= 8.0 + 1e-6
    assert [g["epsilon"] for g in dp["group_privacy"]] == pytest.approx(
        [dp["epsilon"], 16 * dp["epsilon"]]
    )
    # 3 canaries × 16 copies and 3 × 1: dedup keeps one copy of each.
    assert summary["dedup"]["exact_removed"] == 3 * 15
