"""docs/own-model.md, section "ONNX": its Python examples run as written, in order, in a fresh
folder, and do what the text says (the user's model leaks; its training records are found)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")
pytest.importorskip("torch")

DOC = Path(__file__).resolve().parents[2] / "docs" / "own-model.md"


def onnx_section(text: str) -> str:
    """The text under ``## ONNX``, up to the next second-level heading."""
    match = re.search(r"^## ONNX\n(.*?)(?=^## |\Z)", text, flags=re.DOTALL | re.MULTILINE)
    assert match, "docs/own-model.md has no '## ONNX' section"
    return match.group(1)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # it memorises
def test_onnx_examples_run_as_written(tmp_path, monkeypatch, capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", onnx_section(DOC.read_text("utf-8")), re.DOTALL)
    assert len(blocks) == 2
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "own_model_onnx"}  # a plain script, no main guard
    for block in blocks:
        exec(compile(block, str(DOC), "exec"), namespace)
    result = namespace["result"]
    assert result.reference.external_target and result.attack("rmia_online").auc.lower > 0.5
    rows = list(namespace["check_record"]("results", namespace["mine"]))
    assert len(rows) == 3 and all(r.member_in_plan for r in rows)
    assert (tmp_path / "results" / "results.json").is_file()
    out = capsys.readouterr().out
    assert "kind='logits'" in out and "n_features=64, n_classes=10" in out
