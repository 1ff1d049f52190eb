"""The demo path at small size: an overfit model on bundled Adult, audited from its saved outputs."""

import os
import stat

from miaudit.audit._demo import run_demo


def test_demo_small(tmp_path):
    result = run_demo(tmp_path, pool=2000, n_resamples=20)
    assert result.input.n_records == 2000 and result.input.n_members == 1000
    assert result.strongest().auc.point > 0.55  # fully grown trees memorise their training half
    assert {s.column for s in result.slices} == {"sex", "race"}
    for name in ("outputs.parquet", "scores.parquet", "pseudonym.key"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o600


def _stop_before_training(monkeypatch):
    import miaudit.models

    def refuse(*_a, **_k):
        raise AssertionError("pre-training started")

    monkeypatch.setattr(miaudit.models, "pretrained_base", refuse)


def test_the_text_demo_does_not_replace_a_users_exposure_run(tmp_path, monkeypatch):
    """Red team: `miaudit demo --text --out DIR` (overwrite always on) would have replaced a
    `miaudit exposure` run in DIR — models, canary secrets, audit — at its end. Now it is
    refused in one line before anything trains; an earlier demo's run is still replaced."""
    import json

    import pytest

    from miaudit.audit import parse_exposure_config, run_exposure, text_demo_config
    from miaudit.errors import InputError

    _stop_before_training(monkeypatch)
    users = tmp_path / "mine"
    users.mkdir()
    mine = json.loads(parse_exposure_config({"seed": 3}).model_dump_json())
    (users / "exposure.json").write_text(json.dumps({"config": mine}))
    with pytest.raises(
        InputError,
        match=r"^--out: .* holds a `miaudit exposure` run that the text demo did not write \(exposure\.json\): choose another folder$",
    ):
        run_exposure(text_demo_config(), users, overwrite=True)
    assert json.loads((users / "exposure.json").read_text()) == {"config": mine}
    (users / "exposure.json").write_text("not json")
    with pytest.raises(InputError, match="the text demo did not write"):
        run_exposure(text_demo_config(), users, overwrite=True)
    demo = tmp_path / "demo"
    demo.mkdir()
    own = json.loads(text_demo_config().model_dump_json())
    (demo / "exposure.json").write_text(json.dumps({"config": own}))
    with pytest.raises(AssertionError, match="pre-training started"):
        run_exposure(text_demo_config(), demo, overwrite=True)
