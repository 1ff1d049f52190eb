"""Which data to train on: a typed config and the one loader for it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from miaudit.data import read_table
from miaudit.datasets import _builtin
from miaudit.datasets._dataset import Dataset
from miaudit.datasets._tabular import from_frame
from miaudit.errors import InputError

BuiltinName = Literal["adult", "digits", "fashion-mnist", "breast-cancer", "purchase"]


class PurchaseOptions(BaseModel):
    """Parameters of the synthetic Purchase-like generator (``dataset = "purchase"``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_records: int = Field(10_000, ge=2)
    n_features: int = Field(600, ge=1)
    n_classes: int = Field(100, ge=2)
    flip_rate: float = Field(0.1, ge=0.0, le=0.5)
    seed: int = Field(0, ge=0)


class DataConfig(BaseModel):
    """``dataset`` names a built-in dataset; or ``path`` (CSV or Parquet) with a ``label`` column.

    ``id_column`` names a column of stable record ids in a user file (else ids are row numbers,
    stable only while the file's row order is); a CSV's ids are read as text, as written
    (``0007`` stays ``0007``), a Parquet file's keep their type. ``max_records`` keeps a random
    subset (drawn with ``subset_seed``; ids are kept), for quick runs.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: BuiltinName | None = None
    path: Path | None = None
    label: str | None = None
    id_column: str | None = None
    purchase: PurchaseOptions = PurchaseOptions()
    max_records: int | None = Field(None, ge=2)
    subset_seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if (self.dataset is None) == (self.path is None):
            raise ValueError(
                "give exactly one of 'dataset' (built-in) or 'path' (CSV/Parquet file)"
            )
        if self.path is not None and not self.label:
            raise ValueError("a data file needs 'label', the name of its label column")
        if self.dataset is not None and (self.label or self.id_column):
            raise ValueError(
                "'label' and 'id_column' apply to a data file ('path'), not to a built-in dataset"
            )
        return self


def load_dataset(cfg: DataConfig, *, field: str = "data") -> Dataset:
    """Load (or generate) the dataset ``cfg`` describes; errors name the config field."""
    if cfg.dataset == "adult":
        data = _builtin.adult()
    elif cfg.dataset == "digits":
        data = _builtin.digits()
    elif cfg.dataset == "fashion-mnist":
        data = _builtin.fashion_mnist()
    elif cfg.dataset == "breast-cancer":
        data = _builtin.breast_cancer()
    elif cfg.dataset == "purchase":
        data = _builtin.purchase_like(**cfg.purchase.model_dump())
    else:
        assert cfg.path is not None and cfg.label is not None
        data = _load_file(cfg.path, cfg.label, cfg.id_column, field)
    if cfg.max_records is not None and cfg.max_records < data.n_records:
        rng = np.random.default_rng(np.random.SeedSequence(cfg.subset_seed))
        keep = np.sort(rng.choice(data.n_records, size=cfg.max_records, replace=False))
        data = subset(data, keep)
    return data


def subset(data: Dataset, rows: np.ndarray) -> Dataset:
    """The records ``rows`` of ``data`` (ids and column roles kept)."""
    from dataclasses import replace

    return replace(
        data, features=data.features[rows], label=data.label[rows], record_id=data.record_id[rows]
    )


def _load_file(path: Path, label: str, id_column: str | None, field: str) -> Dataset:
    import pandas as pd

    if not path.is_file():
        raise InputError(f"{field}.path", f"no such file: {str(path)!r}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            # One type per column: in chunks (low_memory) pandas may read the first rows of a
            # column as numbers and later ones as text, a column no sort can order. Ids are
            # text as written ("0007" was read as 7, so the user's ids matched no record).
            ids_as_text = {id_column: str} if id_column is not None else None
            frame = pd.read_csv(path, low_memory=False, dtype=ids_as_text)
        elif suffix == ".parquet":
            # bounded first, as every input file is (pandas reads a few-KB crafted file whole,
            # 1 GB): sizes declared, text values' lengths and totals checked before expansion
            read_table(path, f"{field}.path")
            frame = pd.read_parquet(path)
        else:
            raise InputError(
                f"{field}.path",
                f"unsupported file type {suffix or '(none)'!r}; use .csv or .parquet",
            )
    except (ValueError, OSError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{field}.path", f"cannot read {str(path)!r}: {exc}") from None
    if len(frame) < 2:
        raise InputError(f"{field}.path", f"{str(path)!r} has fewer than 2 records")
    if id_column is not None:
        if id_column not in frame.columns:
            raise InputError(f"{field}.id_column", f"no column {id_column!r} in {str(path)!r}")
        if bool(frame[id_column].isna().any()):  # else read as the id "nan"
            raise InputError(f"{field}.id_column", f"column {id_column!r} has missing ids")
        ids = frame[id_column].to_numpy()
        if ids.dtype.kind == "O":
            ids = ids.astype(str)
        if len(np.unique(ids)) != len(ids):
            raise InputError(f"{field}.id_column", f"ids in column {id_column!r} are not unique")
        frame = frame.drop(columns=[id_column])
    else:
        ids = np.arange(len(frame), dtype=np.int64)
    return from_frame(frame, name=path.name, label=label, record_id=ids, field=field)
