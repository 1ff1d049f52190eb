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
