"""A real public text corpus, read offline from an installed registry package (provenance:
``data/_bundled/text/PROVENANCE.md``): the English ChatterBot dialogue corpus
(``chatterbot-corpus`` on PyPI, in the ``text`` extra).

It is public, not personal, text: for a base model's pre-training and for texts a fine-tuned
model never saw. Each line of a dialogue is one text, in the package's file order (topics sorted
by name), so a seed-free load is reproducible for a given package version.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from miaudit.errors import InputError

#: The package the corpus is read from, and the version whose contents PROVENANCE.md records.
CORPUS_PACKAGE = "chatterbot-corpus"
CORPUS_VERSION = "1.3.3"


@dataclass(frozen=True)
class TextCorpus:
    """Texts and the topic each came from (``topic[i]`` is the file name of ``texts[i]``)."""

    texts: tuple[str, ...]
    topic: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.texts)


def _corpus_folder() -> Path:
    try:
        import chatterbot_corpus
    except ImportError:
        raise InputError(
            "text corpus", f"needs the {CORPUS_PACKAGE} package: pip install 'miaudit[text]'"
        ) from None
    return Path(chatterbot_corpus.__file__).parent / "data" / "english"


def _lines(value: object) -> list[str]:
    """A dialogue's lines as text (the YAML holds strings, and now and then a number or a list)."""
    if isinstance(value, list):
        return [text for item in value for text in _lines(item)]
    text = str(value).strip() if value is not None else ""
    return [text] if text else []


def load_text_corpus(topics: Sequence[str] | None = None) -> TextCorpus:
    """The corpus's English lines, optionally only of some topics (``"health"``, ``"trivia"``…)."""
    folder = _corpus_folder()
    files = sorted(folder.glob("*.yml"))
    known = [f.stem for f in files]
    if topics is not None:
        unknown = sorted(set(topics) - set(known))
        if unknown:
            raise InputError("topics", f"unknown topic {unknown[0]!r}; known: {', '.join(known)}")
        files = [f for f in files if f.stem in set(topics)]
    texts: list[str] = []
    topic: list[str] = []
    for path in files:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for dialogue in data.get("conversations", []) if isinstance(data, dict) else []:
            lines = _lines(dialogue)
            texts += lines
            topic += [path.stem] * len(lines)
    return TextCorpus(tuple(texts), tuple(topic))
