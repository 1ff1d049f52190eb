"""miaudit's own small causal LM: recipe, tokenizer, cached pre-training, reproducible
fine-tuning (full and LoRA), saved as plain Hugging Face folders; candidate enumeration
against a brute-force reference."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("faker")

from pydantic import ValidationError

from miaudit.data import synthetic_records
from miaudit.models import (
    CausalLMRecipe,
    LMArchitecture,
    LMFinetune,
    LMPretrain,
    all_digit_log_likelihoods,
    build_lm,
    digit_log_likelihoods,
    finetune_lm,
    greedy_digits,
    load_lm,
    n_parameters,
    pretrained_base,
    record_log_likelihoods,
)
from miaudit.models._lm_tokenizer import digit_ids

TINY = CausalLMRecipe(
    architecture=LMArchitecture(vocab_size=300, context=48, width=32, layers=1, heads=2),
    pretrain=LMPretrain(records=200, epochs=1, batch_size=32),
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    public = synthetic_records(200, seed=11).texts
    return pretrained_base(TINY, public, tmp_path_factory.mktemp("cache"))


def test_defaults_are_about_two_million_parameters() -> None:
    n = n_parameters(build_lm(LMArchitecture(), seed=0))
    assert 1.8e6 <= n <= 2.2e6


def test_recipe_refuses_bad_fields() -> None:
    with pytest.raises(ValidationError, match="multiple of heads"):
        LMArchitecture(width=30, heads=4)
    with pytest.raises(ValidationError, match="method"):
        LMFinetune(method="full", dp={"epsilon": 8})
    with pytest.raises(ValidationError, match="max_tokens"):
        LMPretrain(max_tokens=2_000_000)


def test_base_is_a_plain_hf_folder_and_is_cached(base: Path) -> None:
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
        p.name for p in base.iterdir()
    }
    stamp = (base / "model.safetensors").stat().st_mtime_ns
    again = pretrained_base(TINY, synthetic_records(200, seed=11).texts, base.parent)
    assert again == base and (base / "model.safetensors").stat().st_mtime_ns == stamp


@pytest.mark.parametrize(
    "tamper",
    [
        lambda f: (f / "config.json").write_text(
            (f / "config.json").read_text().replace('"n_layer": 1', '"n_layer": 3')
        ),
        lambda f: (f / "model.safetensors").write_bytes(
            (f / "model.safetensors").read_bytes()[:100]
        ),
        lambda f: (f / "miaudit-base.json").unlink(),
        lambda f: (f / "extra.bin").write_bytes(b"x"),
    ],
    ids=["config edited", "weights truncated", "no manifest", "extra file"],
)
def test_a_cached_base_that_does_not_match_its_manifest_is_rebuilt(
    base: Path, tmp_path: Path, tamper: Callable[[Path], object]
) -> None:
    """Red team: a base whose config.json said 3 layers was reused with 2 layers at random
    (mean exposure 3.32 -> 2.32); a truncated one failed every later run with exit 1."""
    import shutil

    cache = tmp_path / "cache"
    copy = cache / base.name
    shutil.copytree(base, copy)
    tamper(copy)
    public = synthetic_records(200, seed=11).texts
    with pytest.warns(UserWarning, match="does not match its manifest"):
        again = pretrained_base(TINY, public, cache)
    assert again == copy
    for name in ("config.json", "model.safetensors", "tokenizer.json", "miaudit-base.json"):
        assert (again / name).read_bytes() == (base / name).read_bytes()  # rebuilt bit for bit
    assert not (again / "extra.bin").exists()


def test_a_link_in_place_of_a_cached_base_is_removed_never_its_target(
    base: Path, tmp_path: Path
) -> None:
    import shutil

    target = tmp_path / "elsewhere"
    shutil.copytree(base, target)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / base.name).symlink_to(target, target_is_directory=True)
    again = pretrained_base(TINY, synthetic_records(200, seed=11).texts, cache)
    assert not again.is_symlink() and (target / "model.safetensors").exists()


def test_digits_are_single_tokens_whatever_surrounds_them(base: Path) -> None:
    _, tok = load_lm(base)
    prefix = "Ann Lee's account number is "
    ids = tok.encode(prefix + "90417", add_special_tokens=False).ids
    lut = digit_ids(tok)
    assert ids == tok.encode(prefix, add_special_tokens=False).ids + [lut[int(d)] for d in "90417"]


@pytest.mark.parametrize("method", ["full", "lora"])
def test_fine_tuning_is_reproducible_bit_for_bit(base: Path, tmp_path: Path, method: str) -> None:
    texts = synthetic_records(40, seed=12).texts
    ft = LMFinetune(method=method, epochs=2, batch_size=8)  # type: ignore[arg-type]
    finetune_lm(base, ft, texts, tmp_path / "a", seed=5)
    finetune_lm(base, ft, texts, tmp_path / "b", seed=5)
    finetune_lm(base, ft, texts, tmp_path / "c", seed=6)
    a, b, c = ((tmp_path / x / "model.safetensors").read_bytes() for x in "abc")
    assert a == b and a != c
    assert (tmp_path / "a" / "tokenizer.json").is_file()


def test_dp_fine_tuning_steps_on_every_poisson_round(base: Path, tmp_path: Path) -> None:
    """Empty Poisson batches are steps of noise alone, as the accountant assumes (they were
    skipped: red team); GPT-2 runs them on a placeholder row whose loss is weighted 0."""
    pytest.importorskip("opacus")
    from miaudit.models import LMDP

    texts = synthetic_records(20, seed=15).texts
    ft = LMFinetune(method="lora", epochs=2, batch_size=1, dp=LMDP(epsilon=8.0))
    info = finetune_lm(base, ft, texts, tmp_path / "dp", seed=5)
    assert info["steps"] == 2 * 20 and info["sample_rate"] == pytest.approx(1 / 20)
    assert 0.9 * 8.0 <= info["epsilon"] <= 8.0 + 1e-9


def test_fine_tuning_raises_the_members_likelihood(base: Path, tmp_path: Path) -> None:
    members = synthetic_records(30, seed=13).texts
    others = synthetic_records(30, seed=14).texts
    finetune_lm(
        base,
        LMFinetune(epochs=6, batch_size=8, learning_rate=3e-3),
        members,
        tmp_path / "ft",
        seed=0,
    )
    before, tok = load_lm(base)
    after, _ = load_lm(tmp_path / "ft")

    def gain(texts: tuple[str, ...]) -> float:
        s0, n = record_log_likelihoods(before, tok, texts)
        s1, _ = record_log_likelihoods(after, tok, texts)
        return float(np.mean((s1 - s0) / n))

    assert gain(members) > gain(others) + 0.05


def test_enumeration_matches_full_sequence_scoring(base: Path) -> None:
    model, tok = load_lm(base)
    prefix = "Ann Lee's account number is "
    every = all_digit_log_likelihoods(model, tok, prefix, 3, max_batch=30)  # forces chunking
    sample = np.random.default_rng(0).choice(1000, size=60, replace=False)
    ref = digit_log_likelihoods(model, tok, prefix, [f"{i:03d}" for i in sample])
    np.testing.assert_allclose(every[sample], ref, atol=1e-5)  # float32 model, float64 sums
    probs = np.exp(every).sum()
    assert probs <= 1.0 + 1e-6  # a distribution over digit strings, less what is not digits
    assert isinstance(greedy_digits(model, tok, prefix, 3), str)


def test_a_canary_longer_than_the_context_is_one_line(base: Path) -> None:
    """Red team: an exposure config with context = 16 was an IndexError inside the model after
    pre-training; the base here has a context of 48."""
    from miaudit.errors import InputError

    model, tok = load_lm(base)
    prefix = "Ann Lee's account number is " * 3
    for score in (
        lambda: all_digit_log_likelihoods(model, tok, prefix, 30),
        lambda: digit_log_likelihoods(model, tok, prefix, ["1" * 30]),
        lambda: greedy_digits(model, tok, prefix, 30),
    ):
        with pytest.raises(InputError, match="the model's context is 48") as info:
            score()
        assert info.value.field == "model.architecture.context"


def test_own_lm_sequence_signals_score_texts_as_trained(base: Path) -> None:
    """The shared sequence signals read miaudit's own LM with [BOS] + tokens + [BOS], as it was
    trained: the same per-text sums as the LM module's own scoring, one token more than a
    generic Hugging Face reading of the same folder (which has no closing BOS)."""
    from miaudit.models import load_hf_causal_lm, load_own_lm
    from miaudit.signals import sequence_signals

    texts = [*synthetic_records(12, seed=5).texts, "x"]
    model, tok = load_lm(base)
    total, count = record_log_likelihoods(model, tok, texts)
    own = sequence_signals([load_own_lm(base)], ["target"], texts, np.zeros(len(texts)))
    tokens = own.models[0]
    sums = np.add.reduceat(tokens.log_prob, tokens.offsets[:-1])
    np.testing.assert_array_equal(tokens.n_tokens, count)
    np.testing.assert_allclose(sums, total, rtol=1e-5, atol=1e-4)
    generic = sequence_signals([load_hf_causal_lm(base)], ["target"], texts, np.zeros(len(texts)))
    whole = count < TINY.architecture.context - 1  # not cut at the context
    assert whole.sum() >= 1
    np.testing.assert_array_equal(generic.models[0].n_tokens[whole], count[whole] - 1)


def test_own_lms_zlib_prefix_leaves_out_the_closing_bos() -> None:
    """[BOS] + tokens + [BOS] cut to a context of 16 scores 15 digits (one token each): zlib's
    c(x) is of those 15; a text of 15 tokens loses only its closing BOS and keeps its whole
    length. A character split into byte-level tokens counts whole once one of them is kept."""
    import zlib

    from miaudit.models import OwnCausalLM
    from miaudit.models._lm_tokenizer import fast_tokenizer, train_tokenizer
    from miaudit.signals import sequence_signals

    arch = LMArchitecture(vocab_size=300, context=16, width=8, layers=1, heads=1)
    tok = fast_tokenizer(train_tokenizer(["the patient", "0123456789 日本"], arch.vocab_size))
    own = OwnCausalLM(Path("own"), build_lm(arch, seed=0), tok)
    digits = "0123456789" * 3
    texts = [digits, digits[:15], digits[:14] + "日本"]
    store = sequence_signals([own], ["target"], texts, np.array([1, 0, 1]))
    np.testing.assert_array_equal(store.models[0].n_tokens, [15, 15, 15])
    expected = [len(zlib.compress(t[:15].encode(), 9)) for t in texts]
    assert expected[0] != len(zlib.compress(digits.encode(), 9))
    assert store.zlib_bytes.tolist() == expected
    assert own.scored_chars(texts) == [15, 15, 15]


def _refused_own(folder: Path, match: str) -> None:
    from miaudit.errors import InputError
    from miaudit.models import load_own_lm

    with pytest.raises(InputError, match=match) as info:
        load_own_lm(folder)
    assert "\n" not in str(info.value) and str(info.value).startswith("model folder:")


def test_own_lm_folders_get_the_hugging_face_folder_checks(base: Path, tmp_path, monkeypatch):
    """Red team: load_lm (the cached base exposure reuses) and load_own_lm skipped the checks
    of load_hf_causal_lm: a pickle beside the weights, a config declaring a larger model (a raw
    RuntimeError, or the memory), a malformed or oversized tokenizer.json (a bare Exception),
    token ids past the embedding (IndexError while scoring)."""
    import json
    import shutil

    import miaudit.models._hf as hf

    def copy(name: str) -> Path:
        return Path(shutil.copytree(base, tmp_path / name))

    (copy("pickle") / "pytorch_model.bin").write_bytes(b"\x80\x04N.")
    _refused_own(tmp_path / "pickle", r"pytorch_model\.bin is a pickle-based weights file")
    config = json.loads((base / "config.json").read_text())
    (copy("big") / "config.json").write_text(json.dumps({**config, "n_embd": 1024, "n_head": 16}))
    _refused_own(tmp_path / "big", r"config\.json declares a model of [\d,]+ parameters")
    (copy("deep") / "tokenizer.json").write_text('{"added_tokens": [[[[1]]]]}')
    _refused_own(tmp_path / "deep", r"tokenizer\.json cannot be read: invalid type")
    tokenizer = json.loads((base / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"]["zzz"] = 100_299
    (copy("oob") / "tokenizer.json").write_text(json.dumps(tokenizer))
    _refused_own(tmp_path / "oob", r"token ids up to 100,299; the model's vocabulary has 300")
    monkeypatch.setattr(hf, "MAX_HF_JSON_BYTES", 4096)  # config.json fits, tokenizer.json not
    _refused_own(base, r"tokenizer\.json is over the 4096-byte cap")


def test_a_vocabulary_smaller_than_the_byte_alphabet_is_refused() -> None:
    """Red team: vocab_size = 64 was accepted; the byte-level BPE holds 258 tokens at least."""
    with pytest.raises(ValidationError, match="258"):
        LMArchitecture(vocab_size=64)
    assert LMArchitecture(vocab_size=258).vocab_size == 258


def test_estimated_canaries_carry_the_sampled_bound_beside_the_fit() -> None:
    """An untrained tiny LM, space 10^3 scored both ways: each estimated canary carries a
    distribution-free lower bound within [0, log2 of its space], the draws it rests on, and the
    per-level aggregates; the exact rank's rows carry none."""
    from miaudit.audit import CanarySection, make_canaries
    from miaudit.audit._exposure import _level_summary, _secret_exposures
    from miaudit.data import synthetic_records
    from miaudit.models._lm import build_lm
    from miaudit.models._lm_recipe import LMArchitecture
    from miaudit.models._lm_tokenizer import train_tokenizer

    arch = LMArchitecture(vocab_size=300, context=48, width=16, layers=1, heads=2)
    tok = train_tokenizer([*synthetic_records(40, seed=1).texts, "0123456789"], arch.vocab_size)
    model = build_lm(arch, seed=0)
    raw = {"digits": 3, "repetitions": [4], "per_level": 1, "never_inserted": 1}
    est = CanarySection(**raw, method="estimate", estimate_samples=200)
    canaries = make_canaries(est, seed=1)
    rows = _secret_exposures(model, tok, canaries, est, seed=1)
    exact = _secret_exposures(model, tok, canaries, CanarySection(**raw), seed=1)
    inserted = sum(c.repetitions > 0 for c in canaries)
    for row, ex in zip(rows, exact, strict=True):
        others = inserted - (row["repetitions"] > 0)
        assert row["method"] == "skewnorm-fit" and row["rank"] is None
        assert 0.0 <= row["exposure_lower95"] <= math.log2(1000 - others) + 1e-12
        assert 190 <= row["samples"] <= 200 and 0 <= row["samples_at_least_as_likely"] <= 200
        assert "exposure_lower95" not in ex and ex["method"] == "exact"
    levels = _level_summary(rows, 1000)
    assert all(lv["mean_exposure_lower95"] <= lv["max_exposure_lower95"] for lv in levels)
