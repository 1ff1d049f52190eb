"""The service's request and response bodies: the OpenAPI schema of ``miaudit serve``.

``/predict`` answers are encoded by hand in :class:`PredictResponse`'s shape (one validation pass
fewer on the hot path); the others are validated against these models by FastAPI.
"""

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from miaudit.serve._store import MAX_LABEL, MAX_RECORDS, MAX_WINDOW_S

# Strict: a record's values are JSON numbers ("1.5" and true were read as 1.5 and 1.0).
FiniteFloat = Annotated[float, Field(allow_inf_nan=False, strict=True)]
RecordIn = list[FiniteFloat] | dict[str, FiniteFloat]


class PredictRequest(BaseModel):
    """One record (``record``) or a batch (``records``): lists of numbers, or objects keyed by
    feature name when the model knows its feature names."""

    model_config = ConfigDict(extra="forbid")
    record: RecordIn | None = None
    records: list[RecordIn] | None = Field(default=None, min_length=1)


class Prediction(BaseModel):
    label: int = Field(description="Predicted class index.")
    scores: list[float] | None = Field(
        default=None,
        description="Per-class scores after the output policy; absent under label-only.",
    )


class PredictResponse(BaseModel):
    policy: str
    predictions: list[Prediction]


class RawPredictResponse(BaseModel):
    probabilities: list[list[float]]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str = Field(min_length=1, max_length=64)
    budget: int | None = Field(default=None, ge=0, le=MAX_RECORDS)
    rate: int | None = Field(default=None, ge=1, le=MAX_RECORDS)
    window_s: int = Field(default=60, ge=1, le=MAX_WINDOW_S)
    label: str | None = Field(default=None, max_length=MAX_LABEL)


class KeyLimits(BaseModel):
    """A change of a key's limits: each field given replaces the key's (``null`` budget or
    rate: no cap), each field left out keeps the key's current value."""

    model_config = ConfigDict(extra="forbid")
    budget: int | None = Field(
        default=None,
        ge=0,
        le=MAX_RECORDS,
        description="Total records; null: no cap; left out: the key's budget is kept.",
    )
    rate: int | None = Field(
        default=None,
        ge=1,
        le=MAX_RECORDS,
        description="Records per window; null: no cap; left out: the key's rate is kept.",
    )
    window_s: int | None = Field(
        default=None,
        ge=1,
        le=MAX_WINDOW_S,
        description="Rate window in seconds; left out: the key's window is kept.",
    )

    @field_validator("window_s")
    @classmethod
    def _window_is_seconds(cls, value: int | None) -> int:
        if value is None:  # only an explicit null reaches here (defaults are not validated)
            raise ValueError("must be a number of seconds (leave it out to keep the key's)")
        return value

    def given(self) -> dict[str, Any]:
        """The fields the request gave, to pass to ``Store.set_limits`` (the rest are kept)."""
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}


class KeyOut(BaseModel):
    key_id: str
    role: str
    label: str | None
    created_at: float
    revoked: bool
    budget: int | None
    used: int
    rate: int | None
    window_s: int


class NewKeyOut(KeyOut):
    token: str = Field(description="Shown once; the service keeps only its keyed hash.")


class WhoAmI(BaseModel):
    key_id: str
    role: str
    policy: str
    endpoints: list[str]
    budget: int | None
    used: int
    rate: int | None
    window_s: int


class AlertOut(BaseModel):
    id: int
    ts: float
    detector: str
    key_id: str | None
    keys: list[str]
    detail: dict[str, Any]


class LogEntry(BaseModel):
    id: int
    key_id: str | None
    ts: float
    endpoint: str
    n_records: int
    policy: str | None
    status: int
    record_hashes: list[str] | None = None


class ActOut(BaseModel):
    id: int
    ts: float
    actor: str | None
    action: str
    target: str | None
    detail: dict[str, Any]
