"""The public text corpus (data/_text_corpus.py) is read offline from its installed package:
the version PROVENANCE.md records gives its recorded size, topics filter, and a bad topic or a
missing package is one line naming the input."""

from __future__ import annotations

import sys
from importlib.metadata import version

import pytest

pytest.importorskip("chatterbot_corpus")

from miaudit.data import CORPUS_PACKAGE, CORPUS_VERSION, load_text_corpus
from miaudit.errors import InputError


def test_the_corpus_loads_offline_with_its_topics() -> None:
    corpus = load_text_corpus()
    assert len(corpus) == len(corpus.topic) and all(isinstance(t, str) and t for t in corpus.texts)
    if version(CORPUS_PACKAGE) == CORPUS_VERSION:  # the counts PROVENANCE.md records
        assert len(corpus) == 4332 and len(set(corpus.topic)) == 21
    health = load_text_corpus(["health"])
    assert set(health.topic) == {"health"} and "How is your health?" in health.texts


def test_bad_topics_and_a_missing_package_are_named(monkeypatch) -> None:
    with pytest.raises(InputError, match="topics: unknown topic 'weather'"):
        load_text_corpus(["weather"])
    monkeypatch.setitem(sys.modules, "chatterbot_corpus", None)
    with pytest.raises(InputError, match=r"text corpus: needs the chatterbot-corpus package"):
        load_text_corpus()
