"""UCI Adult (Census Income), bundled with the package.

Becker, B. & Kohavi, R. (1996). Adult [Dataset]. UCI Machine Learning Repository.
Licensed CC BY 4.0; see ``_bundled/adult/PROVENANCE.md`` and ``adult.names``.
"""

from __future__ import annotations

from importlib import resources

import pandas as pd

COLUMNS = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
]
ADULT_NUMERIC = ["age", "fnlwgt", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
ADULT_CATEGORICAL = [c for c in COLUMNS[:-1] if c not in ADULT_NUMERIC]
ADULT_LABEL = "income"
ATTRIBUTION = "UCI Adult (Becker & Kohavi, 1996), UCI Machine Learning Repository, CC BY 4.0"


def load_adult() -> pd.DataFrame:
    """All 48,842 records (train then test file) with a stable ``record_id`` and 0/1 ``income``.

    ``record_id`` is the row number in that order (0–32,560 from ``adult.data``, then the test
    file), so ids stay the same across versions of miaudit. Unknown values ('?') stay as the
    category ``"?"``: dropping them would change the ids.
    """
    base = resources.files("miaudit.data") / "_bundled" / "adult"
    parts = []
    for name, skip in (("adult.data.gz", 0), ("adult.test.gz", 1)):
        with resources.as_file(base / name) as path:
            parts.append(
                pd.read_csv(
                    path,
                    header=None,
                    names=COLUMNS,
                    skiprows=skip,
                    skipinitialspace=True,
                    compression="gzip",
                )
            )
    frame = pd.concat(parts, ignore_index=True)
    frame = frame.dropna(subset=[ADULT_LABEL]).reset_index(drop=True)
    frame[ADULT_LABEL] = (
        frame[ADULT_LABEL].str.rstrip(".").map({"<=50K": 0, ">50K": 1}).astype("int64")
    )
    for col in ADULT_CATEGORICAL:
        frame[col] = frame[col].astype(str)
    frame.insert(0, "record_id", range(len(frame)))
    return frame
