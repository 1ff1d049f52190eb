"""Data layer: input formats, validation, bundled datasets, and reading arrays larger than
memory in chunks of records (:func:`record_chunks`). Other packages check their own inputs with
the same rules: :func:`looks_like_probabilities` (outputs declared as logits) and
:func:`fits_float32` (values kept as float32)."""

from miaudit.data._adult import ADULT_CATEGORICAL, ADULT_LABEL, ADULT_NUMERIC, load_adult
from miaudit.data._fashion_mnist import (
    FASHION_MNIST_ATTRIBUTION,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_PACKAGE,
    load_fashion_mnist,
    parse_idx,
)
from miaudit.data._outputs import (
    ModelOutputs,
    PopulationOutputs,
    load_outputs,
    load_population,
    load_records,
)
from miaudit.data._signals_store import SIGNALS_SCHEMA, SignalsInfo, SignalsStore, load_signals
from miaudit.data._synthetic_text import (
    FAMILIES,
    MAX_RECORD_CHARS,
    TEMPLATE_FAMILIES,
    SyntheticText,
    fake_names,
    synthetic_records,
)
from miaudit.data._tables import (
    CHUNK_RECORDS,
    RawTable,
    is_mapped,
    read_table,
    record_chunks,
    release,
)
from miaudit.data._text_corpus import CORPUS_PACKAGE, CORPUS_VERSION, TextCorpus, load_text_corpus
from miaudit.data._validate import fits_float32, looks_like_probabilities
from miaudit.data._writers import SignalsWriter

__all__ = [
    "ADULT_CATEGORICAL",
    "ADULT_LABEL",
    "ADULT_NUMERIC",
    "CHUNK_RECORDS",
    "CORPUS_PACKAGE",
    "CORPUS_VERSION",
    "FAMILIES",
    "FASHION_MNIST_ATTRIBUTION",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_PACKAGE",
    "MAX_RECORD_CHARS",
    "SIGNALS_SCHEMA",
    "TEMPLATE_FAMILIES",
    "ModelOutputs",
    "PopulationOutputs",
    "RawTable",
    "SignalsInfo",
    "SignalsStore",
    "SignalsWriter",
    "SyntheticText",
    "TextCorpus",
    "fake_names",
    "fits_float32",
    "is_mapped",
    "load_adult",
    "load_fashion_mnist",
    "load_outputs",
    "load_population",
    "load_records",
    "load_signals",
    "load_text_corpus",
    "looks_like_probabilities",
    "parse_idx",
    "read_table",
    "record_chunks",
    "release",
    "synthetic_records",
]
