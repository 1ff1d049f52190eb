"""Typed training recipes. Every field is validated; a bad value names its field.

A recipe says *how* a model is trained, not on what: the membership plan says on what.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from miaudit.errors import InputError

Precision = Literal["float32", "bfloat16"]
#: What a model's preprocessing (numeric mean/std, which one-hot categories exist) is fitted on:
#: "training": the model's own training records (per model; what a deployment usually does);
#: "population": the records outside the plan's pool, which no audited model trains on.
PreprocessingFit = Literal["training", "population"]
Augmentation = Literal["shift", "hflip"]


class EarlyStopping(BaseModel):
    """Hold out ``validation_fraction`` of a model's own training half; keep the weights of the
    epoch with the lowest validation loss; stop after ``patience`` epochs without improvement.

    The held-out records stay members in the keep matrix: they belong to the model's training
    half and they chose its weights, though no gradient step used them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    validation_fraction: float = Field(0.1, gt=0.0, lt=0.5)
    patience: int = Field(5, ge=1)


#: Largest finite float32: DP-SGD's clipping norm and noise live in float32 tensors.
FLOAT32_MAX = 3.4028234663852886e38


class DPConfig(BaseModel):
    """DP-SGD through Opacus (models/_dp.py): give ``epsilon`` (with ``delta``: Opacus finds σ)
    or ``noise_multiplier``; per-sample clipping at ``max_grad_norm``; Poisson sampling;
    accountant "rdp" or "prv"; ``ghost_clipping`` (fast gradient clipping, no per-sample
    gradients stored). ``fault`` is a FAULT-INJECTION knob for auditing the auditor only:
    "zero_noise" adds no noise, "no_clipping" never clips, while the accountant is still told
    the configured σ, so the recorded ε is a lie that ``miaudit dp-audit`` must catch;
    "training_preprocessing" fits the preprocessing on each model's own training records, outside
    the accounting (a category no training record has becomes an all-zero column: membership
    leaks through the input, whatever the noise); "undercounted_steps" tells the accountant one
    step in ten (σ found for a tenth of the epochs).

    ``randomness``: where the mechanism's randomness (Poisson batch sampling and the Gaussian
    noise) comes from. "seeded" (default): from the config's seed, so that audits are
    reproducible bit for bit; but the seed is written in every results file, and an attacker
    who knows it and the other records replays the training with and without a record and
    matches the released weights exactly (red team: difference 0.0 against 0.0077 at a
    recorded ε of 2.0), so the ε holds for measurement, not for a model you release. "secret":
    drawn from the operating system's entropy and written nowhere: the ε holds against that
    attacker too, and the training is no longer reproducible."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epsilon: float | None = Field(None, gt=0.0)
    delta: float = Field(1e-5, gt=0.0, lt=1.0)
    noise_multiplier: float | None = Field(None, ge=0.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    poisson_sampling: bool = True
    accountant: Literal["rdp", "prv"] = "prv"
    ghost_clipping: bool = False
    randomness: Literal["seeded", "secret"] = "seeded"
    fault: Literal[
        "none", "zero_noise", "no_clipping", "training_preprocessing", "undercounted_steps"
    ] = "none"

    @field_validator("poisson_sampling")
    @classmethod
    def _accounted_sampling(cls, v: bool) -> bool:
        # Both accountants (Opacus's RDP and PRV) assume Poisson-sampled batches: shuffled
        # fixed-size batches can be much less private than the ε they would record.
        if not v:
            raise ValueError(
                'false is not covered by the accountant ("rdp" and "prv" both assume Poisson sampling); remove the field or set it to true'
            )
        return v

    @field_validator("max_grad_norm", "noise_multiplier")
    @classmethod
    def _fits_float32(cls, v: float | None) -> float | None:
        # DP-SGD clips and adds noise in float32 (and the accountant squares σ): 1e300 was an
        # internal error after the σ search, or "training diverged" blaming the noise (red team).
        if v is not None and v > FLOAT32_MAX:
            raise ValueError(f"must fit float32 (at most {FLOAT32_MAX:.3g}), got {v:g}")
        return v

    @model_validator(mode="after")
    def _one_budget(self) -> DPConfig:
        if (
            self.noise_multiplier is not None
            and self.noise_multiplier * self.max_grad_norm > FLOAT32_MAX
        ):
            raise ValueError(
                f"the noise's standard deviation noise_multiplier × max_grad_norm = "
                f"{self.noise_multiplier * self.max_grad_norm:g} does not fit float32 (at most {FLOAT32_MAX:.3g})"
            )
        if (self.epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("give exactly one of 'epsilon' (target budget) or 'noise_multiplier'")
        if self.fault == "no_clipping" and self.ghost_clipping:
            raise ValueError('fault = "no_clipping" is implemented for ghost_clipping = false only')
        return self


class _TorchRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(20, ge=1)
    batch_size: int = Field(128, ge=1)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    weight_decay: float = Field(0.0, ge=0.0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    #: float32, or bfloat16 weights and activations with float32 master weights, loss and
    #: optimizer state. Always an explicit choice: its effect on attack power is measured
    #: (benchmarks/bench_precision.py), never assumed.
    precision: Precision = "float32"
    early_stopping: EarlyStopping | None = None
    dp: DPConfig | None = None
    #: What preprocessing is fitted on (``PreprocessingFit``). Default: "population" for a DP
    #: recipe (the only choice it accepts: the accounting covers the gradient steps, not the
    #: preprocessing), "training" otherwise.
    preprocessing: PreprocessingFit | None = None

    @model_validator(mode="after")
    def _momentum_needs_sgd(self) -> _TorchRecipe:
        if self.momentum and self.optimizer != "sgd":
            raise ValueError("'momentum' applies to optimizer = \"sgd\" only")
        if self.dp is not None and (self.early_stopping is not None or self.precision != "float32"):
            raise ValueError(
                "'dp' trains in float32 without early stopping (validation-chosen weights are not covered by the accountant)"
            )
        return self

    @field_validator("preprocessing")
    @classmethod
    def _dp_preprocessing(
        cls, v: PreprocessingFit | None, info: ValidationInfo
    ) -> PreprocessingFit | None:
        if v == "training" and info.data.get("dp") is not None:
            raise ValueError(
                "a DP recipe cannot fit it on each model's training records: that happens outside the privacy accounting (a category only a member has "
                'becomes a column only members see); remove the field or set it to "population"'
            )
        return v

    @property
    def preprocessing_fit(self) -> PreprocessingFit:
        """What preprocessing is fitted on, the default resolved; DP fault injection may override
        it (``fault = "training_preprocessing"``)."""
        if self.dp is not None:
            return "training" if self.dp.fault == "training_preprocessing" else "population"
        return self.preprocessing or "training"

    @model_serializer(mode="wrap")
    def _omit_no_dp(self, handler):  # type: ignore[no-untyped-def]
        # A recipe without DP serialises as before 'dp' existed: cache keys of such recipes stay.
        # A DP recipe always names its preprocessing, so DP units trained before the field
        # existed (fitted on their training records) are never reused.
        out = handler(self)
        if isinstance(out, dict):
            if self.dp is None:
                out.pop("dp", None)
                if self.preprocessing is None:
                    out.pop("preprocessing", None)
            elif out.get("preprocessing") is None:
                out["preprocessing"] = "population"
        return out


class MLPRecipe(_TorchRecipe):
    """A fully connected network with ReLU: input → ``hidden`` layers → classes."""

    kind: Literal["torch-mlp"] = "torch-mlp"
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [256, 256])


class CNNRecipe(_TorchRecipe):
    """A small CNN for small images: 3×3 conv + ReLU per entry of ``channels`` (a 2×2 max-pool
    after each), then a hidden layer of ``hidden`` units.

    ``augment`` lists the augmentations the model trains with, and the same ones become the
    queries whose logits the engine records (un-augmented first): "shift" (random shifts of
    up to one pixel; queries: the four one-pixel shifts), "hflip" (mirror; refused for data
    that a mirror changes, such as digits).
    """

    kind: Literal["torch-cnn"] = "torch-cnn"
    channels: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [16, 32])
    hidden: int = Field(64, ge=1)
    augment: list[Augmentation] = Field(default_factory=list)

    @field_validator("augment")
    @classmethod
    def _unique(cls, v: list[Augmentation]) -> list[Augmentation]:
        return unique_augmentations(v)


def training_augmentations(recipe: object) -> list[Augmentation]:
    """The augmentations a recipe trains with (and queries with); none for other kinds."""
    return list(recipe.augment) if isinstance(recipe, CNNRecipe | TorchModuleRecipe) else []


def unique_augmentations(v: list[Augmentation]) -> list[Augmentation]:
    """A recipe's augmentations in their canonical (sorted) order, none listed twice."""
    if len(set(v)) != len(v):
        raise ValueError("lists an augmentation twice")
    return sorted(v)


class SklearnRecipe(BaseModel):
    """Any scikit-learn classifier by dotted name, with constructor ``params``; cloned per model.

    Where the estimator takes ``random_state`` the engine sets it from the model's own seed.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["sklearn"] = "sklearn"
    estimator: str = "sklearn.linear_model.LogisticRegression"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("estimator")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if "." not in v or not all(part.isidentifier() for part in v.split(".")):
            raise ValueError(
                f"{v!r} is not a dotted name such as 'sklearn.ensemble.RandomForestClassifier'"
            )
        return v


#: "package.module:function" (the function may be an attribute path: "pkg.mod:Class.build").
_CODE_REF = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def _code_ref(v: str, example: str) -> str:
    if not _CODE_REF.match(v):
        raise ValueError(f"{v!r} is not a reference such as {example!r} (module, colon, function)")
    return v


class _UserCode(BaseModel):
    """A recipe that names the user's own code: ``params`` are passed to it as keywords;
    ``path`` is the folder searched first for its modules (a config file sets it to its own
    folder when absent; relative: from the config's folder; None: ``sys.path`` as it is)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    params: dict[str, Any] = Field(default_factory=dict)
    path: Path | None = None


class PythonRecipe(_UserCode):
    """Your own training code: ``train = "package.module:function"`` is called per model as
    ``function(features, labels, seed, **params)`` (float32 features of the model's training
    records, their int64 labels, the model's own seed) and returns a fitted object with
    ``predict_proba(features)``, or a callable returning logits. What becomes the model's
    logits is documented in ``models/_python.py`` (raw margins where the framework has them).
    The engine caches the models' outputs, not the fitted objects."""

    kind: Literal["python"] = "python"
    train: str

    @field_validator("train")
    @classmethod
    def _reference(cls, v: str) -> str:
        return _code_ref(v, "mypkg.models:train")


class TorchModuleRecipe(_UserCode, _TorchRecipe):
    """Your own ``torch.nn.Module``: ``factory = "package.module:function"`` is called as
    ``function(n_features, n_classes, **params)`` and returns a module mapping a float32 batch
    (rows, features) to logits (rows, classes). It is trained by the generic per-model trainer
    (``models/_generic_torch.py``) with the typed fields of ``torch-mlp`` (optimizer, lr,
    epochs, batch size, weight decay, label smoothing, early stopping, preprocessing), or with
    your ``train_step = "package.module:function"``, called per minibatch as
    ``function(module, features, labels, optimizer)``: it computes the loss, steps the
    optimizer and returns the loss. ``augment`` (image data) as for ``torch-cnn``: each
    minibatch is augmented before the step (yours or the built-in one), and the augmented
    views become the queries whose logits are recorded. Dropout and other layers belong to the
    module; DP-SGD and bfloat16 are for the built-in networks."""

    kind: Literal["torch-module"] = "torch-module"
    factory: str
    train_step: str | None = None
    augment: list[Augmentation] = Field(default_factory=list)

    @field_validator("augment")
    @classmethod
    def _unique(cls, v: list[Augmentation]) -> list[Augmentation]:
        return unique_augmentations(v)

    @field_validator("factory")
    @classmethod
    def _factory(cls, v: str) -> str:
        return _code_ref(v, "mypkg.nets:build")

    @field_validator("train_step")
    @classmethod
    def _step(cls, v: str | None) -> str | None:
        return None if v is None else _code_ref(v, "mypkg.nets:train_step")

    @model_validator(mode="after")
    def _fields_it_reads(self) -> TorchModuleRecipe:
        # A field the generic trainer would not read is refused, never silently ignored.
        if self.dropout:
            raise ValueError("'dropout' is a layer of your module: put it in the module (params)")
        if self.dp is not None:
            raise ValueError("'dp' (DP-SGD) trains 'torch-mlp' and 'torch-cnn' only")
        if self.precision != "float32":
            raise ValueError("'precision' = \"bfloat16\" is for 'torch-mlp' and 'torch-cnn' only")
        if self.train_step is not None and self.label_smoothing:
            raise ValueError(
                "'label_smoothing' belongs to the built-in loss; with 'train_step' your step computes the loss"
            )
        return self


#: Every recipe kind, by its ``kind``.
AnyRecipe = MLPRecipe | CNNRecipe | SklearnRecipe | PythonRecipe | TorchModuleRecipe
Recipe = Annotated[AnyRecipe, Field(discriminator="kind")]
TorchRecipe = MLPRecipe | CNNRecipe
#: Recipes that name the user's code (``trust_code``).
CodeRecipe = PythonRecipe | TorchModuleRecipe
_ADAPTER: TypeAdapter[AnyRecipe] = TypeAdapter(Recipe)
_KINDS = "'torch-mlp', 'torch-cnn', 'torch-module', 'sklearn' or 'python'"


def parse_recipe(raw: dict[str, Any], *, field: str = "model") -> AnyRecipe:
    """Validate a recipe from a config table; the error names the offending field."""
    try:
        return _ADAPTER.validate_python(raw)
    except ValidationError as exc:
        raise validation_error(exc, field) from None


def validation_error(exc: ValidationError, prefix: str) -> InputError:
    """The first problem of a pydantic error as one-line InputError naming the field path."""
    err = exc.errors()[0]
    # Union members appear in the location ('torch-mlp'): the user never wrote that.
    kinds = ("torch-mlp", "torch-cnn", "torch-module", "sklearn", "python")
    loc = [str(p) for p in err["loc"] if p not in kinds]
    name = ".".join([prefix, *loc]) if prefix else ".".join(loc) or "config"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field (check its spelling)"
    elif err["type"] == "union_tag_invalid":
        tag = (err.get("ctx") or {}).get("tag", err.get("input"))
        msg = f"unknown kind {tag!r}; use {_KINDS}"
        name = f"{name}.kind"
    elif err["type"] == "union_tag_not_found":
        msg = f"missing; use {_KINDS}"
        name = f"{name}.kind"
    return InputError(name, msg)


def check_recipe_for_data(
    recipe: AnyRecipe,
    *,
    image_shape: tuple[int, int, int] | None,
    mirror_invariant: bool,
    dataset: str,
) -> None:
    """Refuse recipes the data cannot take (InputError naming the recipe field)."""
    if isinstance(recipe, TorchModuleRecipe) and recipe.augment and image_shape is None:
        raise InputError("model.augment", f"augmentations need image data; {dataset!r} is tabular")
    if isinstance(recipe, CNNRecipe) and image_shape is None:
        raise InputError(
            "model.kind",
            f"'torch-cnn' needs image data; {dataset!r} is tabular (use 'torch-mlp')",
        )
    if "hflip" in training_augmentations(recipe) and not mirror_invariant:
        raise InputError(
            "model.augment",
            f"'hflip' changes the class of {dataset!r} records (a mirrored digit is another digit)",
        )
