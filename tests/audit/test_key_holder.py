"""What only the key holder may do with a run's folder (miaudit.audit._key_holder)."""

from __future__ import annotations

import pytest

from miaudit.audit import attack, audited_records, records_of_pseudonyms
from miaudit.audit._pseudonyms import KEY_FILE, key_id, new_key
from miaudit.errors import InputError
from tests.simulate import simulated_outputs


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("key_holder")
    simulated_outputs(n=60, seed=2).save(d / "outputs.npz")
    attack(d / "outputs.npz", out=d / "out", attacks=["loss"], n_resamples=10, seed=1)
    return d / "out"


def test_the_holder_lists_the_records_and_maps_a_pseudonym_back(run):
    records = audited_records(run)
    assert len(records) == 60
    assert records_of_pseudonyms(run, [records[3].pseudonym]) == [records[3].record_id]


def test_a_key_that_did_not_make_the_results_pseudonyms_is_refused(tmp_path, run):
    """Red team (record.md F9): with another pseudonym.key in the folder, `miaudit ids` listed
    400 id/pseudonym pairs that appear nowhere in results.json or the report, and
    check-record --pseudonym said "the pseudonym of no record audited", naming no cause."""
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(run, folder)
    pseudonym = audited_records(folder)[0].pseudonym
    (folder / KEY_FILE).unlink()
    other = new_key()
    (folder / KEY_FILE).write_bytes(other)
    (folder / KEY_FILE).chmod(0o600)
    for call in (
        lambda: audited_records(folder),
        lambda: records_of_pseudonyms(folder, [pseudonym]),
    ):
        with pytest.raises(
            InputError, match="is not the key this folder's results were pseudonymised with"
        ) as info:
            call()
        assert info.value.field == str(folder / KEY_FILE) and key_id(other) in str(info.value)
