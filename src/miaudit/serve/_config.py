"""What a service serves and to whom: roles, the service config, and the serialisable spec that
``miaudit serve`` hands to each uvicorn worker process.

A role maps to one output policy (:mod:`miaudit.defenses`) and the endpoints it may call:

=========  ============  ==================
role       policy        endpoints
=========  ============  ==================
admin      full          predict, admin
trusted    full          predict
analyst    round:2       predict
public     label-only    predict
=========  ============  ==================

A roles file (TOML) replaces this table::

    [roles.partner]
    policy = "top-1"
    endpoints = ["predict"]
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from miaudit.defenses import OutputPolicy, parse_policy
from miaudit.errors import InputError
from miaudit.serve._monitor import DetectorConfig, check_removed_settings, check_webhook_url
from miaudit.serve._predictor import Predictor

Endpoint = Literal["predict", "admin"]
ENDPOINTS: tuple[Endpoint, ...] = ("predict", "admin")


@dataclass(frozen=True)
class Role:
    """A role: the output policy its answers follow and the endpoints it may call."""

    name: str
    policy: OutputPolicy
    endpoints: frozenset[Endpoint]

    @classmethod
    def of(
        cls,
        name: str,
        policy: str | OutputPolicy,
        endpoints: list[str] | tuple[str, ...] = ("predict",),
    ) -> Role:
        bad = [e for e in endpoints if e not in ENDPOINTS]
        if bad:
            raise InputError(
                f"roles.{name}.endpoints",
                f"unknown endpoint {bad[0]!r}; expected some of {', '.join(ENDPOINTS)}",
            )
        return cls(name, parse_policy(policy, field=f"roles.{name}.policy"), frozenset(endpoints))  # type: ignore[arg-type]


DEFAULT_ROLES: dict[str, Role] = {
    "admin": Role.of("admin", "full", ["predict", "admin"]),
    "trusted": Role.of("trusted", "full"),
    "analyst": Role.of("analyst", "round:2"),
    "public": Role.of("public", "label-only"),
}


def load_roles(path: Path | str) -> dict[str, Role]:
    """Read a roles file (TOML, ``[roles.NAME] policy = …, endpoints = […]``)."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError("--roles", f"cannot read {str(p)!r} ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError("--roles", f"{str(p)!r} is not valid TOML ({exc})") from None
    return parse_roles(doc.get("roles"))


#: Longest role name: the keys table's role column.
MAX_ROLE_NAME = 64


def parse_roles(table: Any) -> dict[str, Role]:
    """Roles from a parsed ``roles`` table (``NAME → {policy, endpoints}``), checked field by
    field."""
    if not isinstance(table, dict) or not table:
        raise InputError("roles", "needs at least one [roles.NAME] table with a policy")
    out = {}
    for name, spec in table.items():
        if not 1 <= len(name) <= MAX_ROLE_NAME or not name.isprintable():
            # the keys table holds a role in 64 characters (PostgreSQL refused a longer one
            # with an internal error when a key was made), as the API's KeyCreate does
            raise InputError(
                f"roles.{name[:MAX_ROLE_NAME]}",
                f"a role name is 1 to {MAX_ROLE_NAME} printable characters",
            )
        if not isinstance(spec, dict) or "policy" not in spec:
            raise InputError(f"roles.{name}", 'needs a policy (e.g. policy = "label-only")')
        extra = set(spec) - {"policy", "endpoints"}
        if extra:
            raise InputError(
                f"roles.{name}", f"unknown field {min(extra)!r}; expected policy, endpoints"
            )
        endpoints = spec.get("endpoints", ["predict"])
        if not isinstance(endpoints, list):
            raise InputError(f"roles.{name}.endpoints", 'must be a list such as ["predict"]')
        out[name] = Role.of(name, spec["policy"], endpoints)
    return out


@dataclass(frozen=True)
class ServeConfig:
    """Everything :func:`miaudit.serve.create_app` needs.

    Parameters
    ----------
    predictor : Predictor
        The model (see :func:`load_predictor`, :class:`EstimatorPredictor`, :class:`UpstreamPredictor`).
    db : str
        SQLAlchemy URL: ``sqlite:///guard.db`` or ``postgresql://user@host:port/db``.
    secret : bytes
        Server secret (≥ 32 bytes) keying key digests and record hashes.
    roles : mapping
        Role name → :class:`Role`.
    max_batch : int
        Most records in one request.
    detectors : DetectorConfig
    webhook : str, optional
        URL that receives each alert as JSON.
    noise_seed : int, optional
        Seed of the ``noise`` policy's generator, for tests only: a fixed seed replays the same
        noise in every worker and after every restart, so a caller who sees it twice can cancel
        it. None (the default, and the command line's only choice) draws from the OS.
    guard : bool
        False serves the same model with no keys, budgets, policy, log or detectors
        (``{"probabilities": …}``): the baseline of the load benchmark and the upstream shape.
    sqlite_synchronous : "NORMAL" or "FULL"
    max_body_bytes : int, optional
        Most bytes of a ``/predict`` body (default: derived from ``max_batch`` and the model's
        width, see :func:`miaudit.serve.predict_body_cap`).
    """

    predictor: Predictor
    db: str
    secret: bytes
    roles: Mapping[str, Role] = field(default_factory=lambda: dict(DEFAULT_ROLES))
    max_batch: int = 10_000
    detectors: DetectorConfig = field(default_factory=DetectorConfig)
    webhook: str | None = None
    noise_seed: int | None = None
    guard: bool = True
    sqlite_synchronous: str = "NORMAL"
    max_body_bytes: int | None = None

    def __post_init__(self) -> None:
        if len(self.secret) < 32:
            raise InputError("secret", "must hold at least 32 bytes")
        if isinstance(self.max_batch, bool) or self.max_batch < 1:
            raise InputError("max_batch", f"must be ≥ 1, got {self.max_batch!r}")
        if self.max_body_bytes is not None and (
            isinstance(self.max_body_bytes, bool) or self.max_body_bytes < 1
        ):
            raise InputError("max_body_bytes", f"must be ≥ 1, got {self.max_body_bytes!r}")
        if self.webhook is not None:
            check_webhook_url(self.webhook)


@dataclass(frozen=True)
class ServeSpec:
    """The command line's choices, as JSON that each worker process turns into a :class:`ServeConfig`."""

    db: str
    model: str | None = None
    model_index: int = 0
    #: ``--model-output``: what an .onnx model's output holds (None: read from its name).
    model_output: Literal["logits", "probs"] | None = None
    upstream: str | None = None
    n_features: int | None = None
    feature_names: list[str] | None = None
    secret_file: str | None = None
    roles_file: str | None = None
    max_batch: int = 10_000
    webhook: str | None = None
    noise_seed: int | None = None
    guard: bool = True
    sqlite_synchronous: str = "NORMAL"
    detectors: dict[str, Any] = field(default_factory=dict)
    #: ``--factory`` (with ``--params``, ``--n-classes``, ``--trust-code``): the user's code that
    #: builds the torch module whose safetensors weights ``model`` names.
    factory: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    n_classes: int | None = None
    trust_code: bool = False
    code_dir: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSpec:
        return cls(**json.loads(text))

    def check(self) -> tuple[DetectorConfig, dict[str, Role]]:
        """The spec's detectors and roles, and its other options checked: everything but the
        model and the server secret, and nothing written (the roles file is only read)."""
        check_removed_settings(self.detectors)
        try:
            given: dict[str, Any] = {
                k: tuple(v) if k in ("center", "scale") and v is not None else v
                for k, v in self.detectors.items()
            }
            detectors = DetectorConfig(**given)
        except TypeError as exc:
            raise InputError("detectors", str(exc)) from None
        roles = load_roles(self.roles_file) if self.roles_file else dict(DEFAULT_ROLES)
        if self.sqlite_synchronous.upper() not in ("NORMAL", "FULL"):
            raise InputError(
                "--sqlite-sync", f"must be NORMAL or FULL, got {self.sqlite_synchronous!r}"
            )
        if self.webhook is not None:
            check_webhook_url(self.webhook, "--webhook")
        return detectors, roles

    def build(self, predictor: Predictor | None = None) -> ServeConfig:
        """The :class:`ServeConfig` this spec names (``predictor``: the model, when it is
        loaded already); the server secret file is created if missing, after every other
        check."""
        from miaudit.serve._keys import load_server_secret

        predictor = self.build_predictor() if predictor is None else predictor
        detectors, roles = self.check()
        if detectors.enabled and predictor.n_features is not None:
            detectors.check_width(predictor.n_features)  # before the secret file is written
        return ServeConfig(
            predictor=predictor,
            db=self.db,
            secret=load_server_secret(
                Path(self.secret_file) if self.secret_file else None, create=True
            ),
            roles=roles,
            max_batch=self.max_batch,
            detectors=detectors,
            webhook=self.webhook,
            noise_seed=self.noise_seed,
            guard=self.guard,
            sqlite_synchronous=self.sqlite_synchronous,
        )

    def build_predictor(self) -> Predictor:
        """The model the spec names (its file checked and loaded)."""
        from miaudit.serve._predictor import ModuleSource, UpstreamPredictor, load_predictor

        if (self.model is None) == (self.upstream is None):
            raise InputError("--model", "give exactly one of --model and --upstream")
        predictor: Predictor
        if self.model is not None:
            module = None
            if self.factory is not None:
                module = ModuleSource(
                    self.factory,
                    self.params,
                    self.n_features,
                    self.n_classes,
                    self.trust_code,
                    self.code_dir,
                )
            predictor = load_predictor(
                self.model,
                index=self.model_index,
                feature_names=self.feature_names,
                module=module,
                onnx_output=self.model_output,
            )
        else:
            assert self.upstream is not None
            if self.n_features is None:
                raise InputError(
                    "--n-features",
                    "give the upstream model's number of features with --upstream: records are checked against it before they are forwarded",
                )
            predictor = UpstreamPredictor(self.upstream, n_features=self.n_features)
        return predictor
