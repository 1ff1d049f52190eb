from miaudit.data import load_adult


def test_bundled_adult_is_complete_and_ids_are_stable():
    f = load_adult()
    # 32,561 + 16,281, the original counts (src/miaudit/data/_bundled/adult/PROVENANCE.md)
    assert len(f) == 48_842
    assert f["record_id"].tolist()[:3] == [0, 1, 2] and f["record_id"].is_unique
    assert set(f["income"].unique()) == {0, 1}
    assert abs(f["income"].mean() - 0.2393) < 1e-3
    assert f.loc[32_561, "age"] == 25  # first record of adult.test (the junk line skipped)
