"""The training config: data, recipe, plan, engine. Loaded from TOML or YAML, typed, and
validated with errors that name the field (``model.hidden.1``, ``plan.models``…)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from miaudit.datasets import DataConfig
from miaudit.engine._size import check_finite
from miaudit.errors import InputError, first_line
from miaudit.models import (
    CNNRecipe,
    MLPRecipe,
    Recipe,
    TorchModuleRecipe,
    check_code_trust,
    check_device,
    resolve_code_folder,
    validation_error,
)


class PlanConfig(BaseModel):
    """How many models, on which records, in which training units.

    ``kind``: "complementary" pairs (default), "independent" random halves, or "user" with
    ``keep`` a .npy file holding a (models × records) 0/1 matrix in data order and, optionally,
    ``pool`` a .npy file holding the (records,) 0/1 mask of the records that matrix was drawn
    from (default: every record). The pool is what is evaluated; the rest is the population.
    ``unit_size`` (B) models train together as one unit, the cache's unit too. B is part of
    the cache key and can change the bits, so by default it depends on the number of models
    (and the device) only, never on the machine's cores, ``engine.workers`` or the executor:
    on the CPU an even number of units of at most 16 models, filled evenly (6 models: 3 + 3;
    18: 9 + 9; 40: 4 × 10); on a GPU the fewest units of at most 16. Set it to spread a run
    over more workers or Ray CPUs than the default's units (docs/scale.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: int = Field(16, ge=1)
    pool_fraction: float = Field(0.5, gt=0.0, le=1.0)
    kind: Literal["complementary", "independent", "user"] = "complementary"
    keep: Path | None = None
    pool: Path | None = None
    unit_size: int | None = Field(None, ge=1)

    @field_validator("keep", "pool")
    @classmethod
    def _user_only(cls, v: Path | None, info: ValidationInfo) -> Path | None:
        if v is not None and info.data.get("kind") != "user":
            raise ValueError('belongs to a user keep matrix: set kind = "user" too, or remove it')
        return v


#: Bounds on a machine's parallelism (2**40 threads overflowed torch, past them a process per
#: unit was spawned): far above any machine this runs on, and refused in one line.
MAX_THREADS = 1024
MAX_WORKERS = 1024


class EngineConfig(BaseModel):
    """Where and how units train. ``workers`` processes (0: in this process; default: one per
    core, at most one per unit; one per GPU when ``device`` is a GPU), each with ``threads``
    torch threads; ``threads`` is part of the cache key (it can change the bits), ``workers``
    is not, and neither workers nor cores choose the units (``plan.unit_size``). ``device``: "cpu" (default), "cuda" or "cuda:N" for torch recipes, refused when
    this machine has no such GPU; part of the cache key (docs/scale.md, "GPU"). ``cache``
    defaults to ``<out>/models``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int | None = Field(None, ge=0, le=MAX_WORKERS)
    threads: int = Field(1, ge=1, le=MAX_THREADS)
    device: str = "cpu"
    cache: Path | None = None
    progress: bool = True
    # "ray": units run as Ray tasks (engine/_ray.py) on the cluster at ``address`` (None: a
    # local one; "auto": the one this machine belongs to); ``workers`` is then Ray's business.
    executor: Literal["local", "ray"] = "local"
    address: str | None = None

    @field_validator("address")
    @classmethod
    def _address_needs_ray(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is not None and info.data.get("executor") != "ray":
            raise ValueError(
                'is the Ray cluster\'s address: set executor = "ray" too, or remove it'
            )
        return v

    @field_validator("device")
    @classmethod
    def _known_device(cls, v: str) -> str:
        try:
            return check_device(v)
        except InputError as exc:  # reported by validation_error as engine.device
            raise ValueError(exc.problem) from None

    @model_serializer(mode="wrap")
    def _device_when_named(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # The CPU (the default) is left out of dumps, so a config that names no device dumps
        # and hashes as before devices existed (audit.json, config_sha256, reuse of an out
        # folder); a GPU is dumped and changes the hash, as it changes the bits.
        data: dict[str, Any] = handler(self)
        if data.get("device") == "cpu":
            del data["device"]
        return data


class TrainConfig(BaseModel):
    """Everything ``miaudit train`` needs: ``[data]``, ``[model]``, ``[plan]``, ``[engine]``, ``seed``.

    ``trust_code``: the config may name code to import and run (an estimator outside
    scikit-learn's classifiers); without it such a config is refused (docs/security.md).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: DataConfig
    model: Recipe = Field(default_factory=MLPRecipe)
    plan: PlanConfig = PlanConfig()
    engine: EngineConfig = EngineConfig()
    seed: int = Field(0, ge=0)
    trust_code: bool = False


def with_trust(raw: dict[str, Any], trust_code: bool) -> dict[str, Any]:
    """The raw config with ``--trust-code`` applied (it can only add trust, never remove it)."""
    return {**raw, "trust_code": True} if trust_code else raw


def parse_config(raw: dict[str, Any], *, trust_code: bool = False) -> TrainConfig:
    """Validate a config mapping; the InputError names the first bad field. A config naming
    code is refused unless it or ``trust_code`` (``--trust-code``) opts in."""
    check_finite(raw)
    if isinstance(raw.get("audit"), dict):  # "audit: unknown field (check its spelling)" misled
        raise InputError(
            "audit",
            "`miaudit train` reads [data], [model], [plan] and [engine]; an [audit] table is for `miaudit audit` (remove it, or audit this config)",
        )
    try:
        cfg = TrainConfig.model_validate(with_trust(raw, trust_code))
    except ValidationError as exc:
        raise validation_error(exc, "") from None
    check_code_trust(cfg.model, cfg.trust_code)
    check_device_for(cfg.model, cfg.engine)
    return cfg


def check_device_for(model: Any, engine: EngineConfig) -> None:
    """A GPU trains the torch recipes only: a scikit-learn or Python recipe named with one
    trained on the CPU all the same, while the signals said "cuda" and the run fell to one
    worker (red team)."""
    if engine.device != "cpu" and not isinstance(model, MLPRecipe | CNNRecipe | TorchModuleRecipe):
        raise InputError(
            "engine.device",
            f"{engine.device!r} trains torch recipes (torch-mlp, torch-cnn, torch-module); a {model.kind!r} recipe trains on the CPU: remove device",
        )


def load_config(path: str | Path, *, trust_code: bool = False) -> TrainConfig:
    """Read a TOML (.toml) or YAML (.yaml/.yml) config file; relative paths in it are taken
    relative to the file's folder."""
    path = Path(path)
    cfg = parse_config(read_config_file(path), trust_code=trust_code)
    return _resolve_paths(cfg, path.parent)


#: Largest config file read: configs are a page or two; lists of records go in files they name.
MAX_CONFIG_BYTES = 4 * 2**20


def read_config_file(path: Path) -> dict[str, Any]:
    """The top-level table of a TOML or YAML config file; InputError naming what is wrong.

    YAML is read without aliases (``*name``: nine levels of ten aliases expanded to 10⁹ values
    and hung every command; a self-referring one was an internal error) and without repeated
    keys (the last silently won); TOML refuses repeated keys itself."""
    if not path.is_file():
        raise InputError("config", f"no such file: {str(path)!r}")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise InputError(
            "config", f"unsupported config type {suffix or '(none)'!r}; use .toml, .yaml or .yml"
        )
    if path.stat().st_size > MAX_CONFIG_BYTES:  # a 2 MB YAML list took 28 s and 890 MB
        raise InputError(
            "config", f"{path.name} is larger than {MAX_CONFIG_BYTES // 2**20} MiB: not a config"
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a byte-order mark is not the config's
        raw = tomllib.loads(text) if suffix == ".toml" else _strict_yaml(text)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad config, one line
        first = first_line(exc)
        raise InputError("config", f"cannot parse {path.name}: {first}") from None
    if not isinstance(raw, dict):
        raise InputError("config", f"{path.name} must hold a table at the top level")
    return raw


def _strict_yaml(text: str) -> Any:
    """YAML's safe subset, without aliases and repeated keys (see :func:`read_config_file`)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.events.AliasEvent):
                raise yaml.composer.ComposerError(
                    None,
                    None,
                    "aliases (*name) are not allowed in miaudit configs",
                    self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                )
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                try:
                    repeated = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the base class says so
                    break
                if repeated:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} is given twice", key_node.start_mark
                    )
            return super().construct_mapping(node, deep)

    return yaml.load(text, Loader=StrictLoader)


def _resolve_paths(cfg: TrainConfig, base: Path) -> TrainConfig:
    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else base / p

    return cfg.model_copy(
        update={
            "data": cfg.data.model_copy(update={"path": fix(cfg.data.path)}),
            "plan": cfg.plan.model_copy(
                update={"keep": fix(cfg.plan.keep), "pool": fix(cfg.plan.pool)}
            ),
            "engine": cfg.engine.model_copy(update={"cache": fix(cfg.engine.cache)}),
            "model": resolve_code_folder(cfg.model, base),
        }
    )
