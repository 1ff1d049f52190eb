"""Hugging Face folders are data (models/_hf.py): a folder written by ``save_pretrained`` loads
and its outputs are the model's own (zlib's c(x) of the text it scored, cut to its context);
crafted folders (pickle weights, no safetensors, custom code
named by ``auto_map`` in either config, an unknown model type, no tokenizer.json, malformed JSON,
a shard index pointing outside the folder, weights over the cap, a path that is not a folder) are
refused with one line naming the input, and the folder's Python never runs."""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from miaudit.errors import InputError
from miaudit.models import (
    HfCausalLM,
    check_hf_folder,
    load_hf_causal_lm,
    load_hf_classifier,
)
from miaudit.signals import sequence_signals
from tests.text_models import VOCABULARY, tiny_bert_classifier, tiny_gpt2

TEXTS = ["the patient was seen today", "my order arrived late and the parcel was broken", "refund"]


@pytest.fixture(scope="module")
def lm_folder(tmp_path_factory) -> Path:
    return tiny_gpt2(tmp_path_factory.mktemp("lm") / "lm", TEXTS)


@pytest.fixture(scope="module")
def clf_folder(tmp_path_factory) -> Path:
    return tiny_bert_classifier(tmp_path_factory.mktemp("clf") / "clf", TEXTS)


@pytest.fixture
def copy(tmp_path):
    def make(folder: Path) -> Path:
        return Path(shutil.copytree(folder, tmp_path / folder.name))

    return make


def _edit_json(path: Path, **changes) -> None:
    value = json.loads(path.read_text())
    value.update(changes)
    path.write_text(json.dumps(value))


def test_a_causal_lms_token_statistics_are_its_own_next_token_distribution(lm_folder) -> None:
    lm = load_hf_causal_lm(lm_folder)
    stats = lm.token_stats(TEXTS, batch_size=2)  # padded batches give each text's own numbers
    alone = lm.token_stats(TEXTS[1:2])[0]
    np.testing.assert_allclose(stats[1].log_prob, alone.log_prob, atol=1e-6)
    ids = lm.encode(TEXTS[1])
    assert ids[0] == lm.tokenizer.bos_token_id and len(stats[1].log_prob) == len(ids) - 1
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0, :-1].double()
    log_p = torch.log_softmax(logits, -1).numpy()
    np.testing.assert_allclose(
        stats[1].log_prob, log_p[np.arange(len(ids) - 1), ids[1:]], atol=1e-9
    )
    p = np.exp(log_p)
    mean = (p * log_p).sum(1)
    np.testing.assert_allclose(stats[1].mean, mean, atol=1e-9)
    np.testing.assert_allclose(stats[1].var, (p * (log_p - mean[:, None]) ** 2).sum(1), atol=1e-9)
    assert "lm" in repr(lm)


#: 120 known words (tiny_gpt2's context is 64: BOS + the first 63 are scored), in an order
#: zlib does not compress the first 63 of to the whole text's length.
LONG = " ".join(VOCABULARY.split()[(7 * i) % len(VOCABULARY.split())] for i in range(120))


def _zlib(text: str) -> int:
    return len(zlib.compress(text.encode("utf-8"), 9))


def test_zlib_is_of_the_prefix_a_causal_lm_scored(lm_folder) -> None:
    """A text longer than the context: the store compressed all 120 words beside the mean
    log-probability of the first 63; a text that fits keeps its whole length."""
    lm = load_hf_causal_lm(lm_folder)
    assert lm.context == 64
    scored = " ".join(LONG.split()[:63])  # word-level tokens: one per word, single spaces
    store = sequence_signals([lm], ["target"], [LONG, TEXTS[1]], np.array([1, 0]))
    np.testing.assert_array_equal(store.models[0].n_tokens, [63, 9])
    assert _zlib(scored) != _zlib(LONG)
    assert store.zlib_bytes.tolist() == [_zlib(scored), _zlib(TEXTS[1])]
    assert lm.scored_chars([LONG, TEXTS[1]]) == [len(scored), len(TEXTS[1])]


class _NoOffsets:
    """A tokenizer without an offsets mapping, as transformers 5's Python tokenizers."""

    def __init__(self, tokenizer) -> None:  # type: ignore[no-untyped-def]
        self._tokenizer = tokenizer

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._tokenizer, name)

    def __call__(self, text: str, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.pop("return_offsets_mapping", None)
        return self._tokenizer(text, **kwargs)


def test_a_tokenizer_without_offsets_is_refused_only_for_a_text_it_cuts(lm_folder) -> None:
    lm = load_hf_causal_lm(lm_folder)
    slow = HfCausalLM(lm.folder, lm.model, _NoOffsets(lm.tokenizer))
    assert slow.scored_chars(TEXTS) == [len(t) for t in TEXTS]
    with pytest.raises(InputError, match=r"no offsets mapping .* text 1 .* \(63 of 120 tokens\)"):
        slow.scored_chars([TEXTS[0], LONG])
    with pytest.raises(InputError, match=r"^model folder: .*no offsets mapping") as info:
        sequence_signals([slow], ["target"], [LONG], np.array([1]))
    assert "\n" not in str(info.value)


def test_a_classifiers_logits_are_the_models(clf_folder) -> None:
    clf = load_hf_classifier(clf_folder)
    assert clf.n_classes == 3
    logits = clf.logits(TEXTS, batch_size=2)
    assert logits.shape == (3, 3) and logits.dtype == np.float64
    with torch.no_grad():
        direct = clf.model(**clf.tokenizer(TEXTS[:1], return_tensors="pt")).logits.double().numpy()
    np.testing.assert_allclose(logits[:1], direct, atol=1e-5)
    with pytest.raises(InputError, match="texts: item 1 is not a string"):
        clf.logits(["ok", 3])  # type: ignore[list-item]


def _refused(folder: Path, match: str) -> None:
    with pytest.raises(InputError, match=match) as info:
        load_hf_causal_lm(folder)
    assert "\n" not in str(info.value) and str(info.value).startswith("model folder:")


def test_pickle_weights_are_refused_naming_the_file(lm_folder, copy) -> None:
    folder = copy(lm_folder)
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04 pickle")
    _refused(folder, r"pytorch_model\.bin is a pickle-based weights file")
    (folder / "pytorch_model.bin").unlink()
    (folder / "sub").mkdir()
    (folder / "sub" / "extra.pt").write_bytes(b"x")
    _refused(folder, r"extra\.pt is a pickle-based")


def test_a_folder_without_safetensors_is_refused(lm_folder, copy) -> None:
    folder = copy(lm_folder)
    (folder / "model.safetensors").unlink()
    _refused(folder, "has no model.safetensors")


@pytest.mark.parametrize("config", ["config.json", "tokenizer_config.json"])
def test_custom_code_is_refused_and_never_runs(lm_folder, copy, config) -> None:
    folder = copy(lm_folder)
    trace = folder / "ran.trace"
    (folder / "modeling_evil.py").write_text(f"open({str(trace)!r}, 'w').write('ran')\n")
    _edit_json(folder / config, auto_map={"AutoModelForCausalLM": "modeling_evil.Evil"})
    _refused(folder, rf"{config} names custom code \(auto_map\)")
    assert not trace.exists()


def test_an_unknown_model_type_is_refused(lm_folder, copy) -> None:
    folder = copy(lm_folder)
    _edit_json(folder / "config.json", model_type="my-secret-arch")
    _refused(folder, "model_type 'my-secret-arch' is not a model type transformers knows")


def test_a_folder_without_tokenizer_json_is_refused(lm_folder, copy) -> None:
    folder = copy(lm_folder)
    (folder / "tokenizer.json").unlink()
    _refused(folder, "has no tokenizer.json")


def test_malformed_files_and_paths_are_refused(lm_folder, copy, tmp_path) -> None:
    folder = copy(lm_folder)
    (folder / "config.json").write_text("{not json")
    _refused(folder, "config.json is not valid JSON")
    (folder / "config.json").write_text("[" * 100_000 + "]" * 100_000)  # red team: a traceback
    _refused(folder, "config.json is nested too deeply")
    _refused(tmp_path / "nowhere", "is not a folder")
    with pytest.raises(InputError, match=r"model folder: .* is not a folder"):
        check_hf_folder(lm_folder / "config.json")


def test_a_shard_index_naming_a_file_outside_the_folder_is_refused(lm_folder, copy) -> None:
    folder = copy(lm_folder)
    (folder / "model.safetensors").rename(folder / "model-00001-of-00001.safetensors")
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "../elsewhere.safetensors"}}))
    _refused(folder, "shards must be safetensors files in the folder")
    index.write_text(json.dumps({"weight_map": {"w": "model-00002-of-00002.safetensors"}}))
    _refused(folder, "shard model-00002-of-00002.safetensors named in .* is missing")


def test_weights_over_the_cap_are_refused(lm_folder, monkeypatch) -> None:
    import miaudit.models._hf as hf

    monkeypatch.setattr(hf, "MAX_HF_WEIGHT_BYTES", 100)
    _refused(lm_folder, "over the 100 cap")


def test_a_folder_of_another_task_is_refused(clf_folder, lm_folder) -> None:
    # transformers would fill the missing language-model head with random weights.
    with pytest.raises(
        InputError, match=r"model folder: its weights lack \d+ tensor\(s\) a causal-lm model needs"
    ):
        load_hf_causal_lm(clf_folder)
    with pytest.raises(InputError, match="a sequence-classification model needs"):
        load_hf_classifier(lm_folder)


def test_a_config_declaring_a_larger_model_than_its_weights_is_refused_first(
    lm_folder, copy
) -> None:
    """Red team: a 60 KB folder whose config.json declared a 2,048-wide GPT-2 peaked at 2.7 GB
    (transformers built and initialised the whole model) before the missing weights were found."""
    import resource

    folder = copy(lm_folder)
    _edit_json(folder / "config.json", n_embd=1024, n_layer=8, n_head=16)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _refused(folder, r"config\.json declares a model of [\d,]+ parameters; its weights hold")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, grown_mb  # the declared model is 100 M parameters (400 MB in float32)


@pytest.mark.parametrize("change", [{"n_layer": 20_000}, {"num_labels": 2_000_000}])
def test_counts_that_size_the_build_are_bounded_from_the_raw_config(lm_folder, copy, change):
    """Verification red team: building even on the meta device cost 36 s and 1.5 GB for 20,000
    layers, 1.6 GB for 2 million labels, before the size check refused the folder."""
    folder = copy(lm_folder)
    _edit_json(folder / "config.json", **change)
    _refused(folder, f"config\\.json's {next(iter(change))} is")


def test_a_tokenizer_whose_ids_pass_the_models_vocabulary_is_refused(lm_folder, copy) -> None:
    """Red team: a tokenizer.json with ids past the embedding's rows raised a bare IndexError
    from token_stats on the first text holding such a token."""
    folder = copy(lm_folder)
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    word = next(iter(tokenizer["model"]["vocab"]))
    tokenizer["model"]["vocab"][word] = 100_299
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    _refused(folder, r"tokenizer\.json has token ids up to 100,299; the model's vocabulary has \d+")


#: Socket calls seen while ``_NET["on"]``: an audit hook cannot be removed, so it is added once
#: and records only inside :func:`_network_attempts`.
_NET: dict[str, list] = {"on": [], "seen": []}


def _socket_hook(event: str, args: tuple) -> None:
    if _NET["on"] and event in ("socket.getaddrinfo", "socket.connect"):
        _NET["seen"].append((event, args[:2]))


def _network_attempts(call) -> tuple[list, BaseException | None]:
    """(socket calls made, exception raised) while ``call()`` runs (red team's net_trace.py)."""
    import sys

    if not getattr(_socket_hook, "added", False):
        sys.addaudithook(_socket_hook)
        _socket_hook.added = True  # type: ignore[attr-defined]
    _NET["seen"].clear()
    _NET["on"].append(True)
    try:
        call()
        raised = None
    except BaseException as err:  # a bare ImportError was the finding
        raised = err
    finally:
        _NET["on"].clear()
    return list(_NET["seen"]), raised


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"attn_implementation": "kernels-community/flash-attn2"}, "attn_implementation"),
        ({"attn_implementation": "attacker/evil-kernel"}, "attn_implementation"),
        ({"attn_implementation": "flash_attention_2"}, "attn_implementation"),
        ({"_attn_implementation": "flash_attention_3"}, "_attn_implementation"),
        (
            {"text_config": {"attn_implementation": "kernels-community/flash-attn2"}},
            "text_config.attn_implementation",
        ),
        ({"quantization_config": {"quant_method": "gptq", "bits": 4}}, "quantization_config"),
        (
            {"quantization_config": {"quant_method": "bitsandbytes", "load_in_8bit": True}},
            "quantization_config",
        ),
    ],
)
def test_fields_that_fetch_or_import_code_are_refused_without_the_network(
    lm_folder, clf_folder, copy, change, named
) -> None:
    """Red team: config.json's attn_implementation naming a Hub kernel (or flash_attention_2/3,
    whose fallback is one) made loading call getaddrinfo('huggingface.co') twice (transformers 5
    with the kernels package ignores local_files_only); flash attention and quantization_config
    surfaced as a bare ImportError. Now: one line naming config.json and the field, no socket."""
    for folder, load in (
        (copy(lm_folder), load_hf_causal_lm),
        (copy(clf_folder), load_hf_classifier),
    ):
        _edit_json(folder / "config.json", **change)
        seen, raised = _network_attempts(lambda f=folder, ld=load: ld(f))
        assert seen == []
        assert isinstance(raised, InputError), repr(raised)
        assert "\n" not in str(raised)
        assert str(raised).startswith(f"model folder: config.json's {named} ")


def test_eager_and_sdpa_load_and_the_hub_is_offline_meanwhile(lm_folder, copy, monkeypatch) -> None:
    """The allowed values load; loading names its attention implementation itself (the folder's
    ``sdpa`` or nothing gives the class's sdpa); :func:`hub_offline` sets the Hub offline for the
    block and restores the caller's settings after."""
    import os

    from huggingface_hub import constants

    from miaudit.models._hf import hub_offline

    for value in ("eager", "sdpa", None):
        folder = copy(lm_folder)
        _edit_json(folder / "config.json", attn_implementation=value)
        lm = load_hf_causal_lm(folder)
        assert lm.model.config._attn_implementation == "sdpa"
        shutil.rmtree(folder)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("USE_HUB_KERNELS", "YES")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with hub_offline():
        assert constants.HF_HUB_OFFLINE is True and constants.is_offline_mode()
        assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["USE_HUB_KERNELS"] == "NO"
    assert constants.HF_HUB_OFFLINE is False and "HF_HUB_OFFLINE" not in os.environ
    assert os.environ["USE_HUB_KERNELS"] == "YES"


def test_the_hub_stays_unreached_even_past_the_folder_check(lm_folder, copy, monkeypatch) -> None:
    """The second line of defence: with the config check switched off, a Hub kernel named in
    config.json is overridden by the attention implementation loading names (and the Hub is
    offline meanwhile): no network attempt, and the model loads with sdpa."""
    import miaudit.models._hf as hf

    monkeypatch.setattr(hf, "_check_loading_fields", lambda *a, **k: None)
    folder = copy(lm_folder)
    _edit_json(folder / "config.json", attn_implementation="kernels-community/flash-attn2")
    loaded = []
    seen, raised = _network_attempts(lambda: loaded.append(load_hf_causal_lm(folder)))
    assert seen == [] and raised is None, repr(raised)
    assert loaded[0].model.config._attn_implementation == "sdpa"
