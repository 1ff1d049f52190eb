"""``miaudit train CONFIG --out DIR``: train (or reuse) the models of a config's plan.

Register with ``app.command("train")(train)``. Bad input raises InputError (exit 2 in main).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from pydantic import ValidationError

from miaudit.cli._console import console
from miaudit.cli._options import Address, Executor, TrustCode

if TYPE_CHECKING:
    from miaudit.audit import AuditConfig
    from miaudit.engine import TrainConfig

#: The configs with an ``[engine]`` section.
Cfg = TypeVar("Cfg", "TrainConfig", "AuditConfig")


# Long: over 60 lines only through its command-line option declarations; the body is short.
def train(
    config: Annotated[
        Path,
        typer.Argument(
            help="Training config (.toml, .yaml or .yml): [data], [model], [plan], [engine], seed."
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Folder for train.json, signals/ and (by default) the model cache models/.",
        ),
    ],
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes (0: train in this process); overrides engine.workers."),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            help="Torch threads per worker; part of the cache key; overrides engine.threads."
        ),
    ] = None,
    cache: Annotated[
        Path | None,
        typer.Option(help="Model cache folder; overrides engine.cache (default: OUT/models)."),
    ] = None,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="Show progress bars.")
    ] = True,
    executor: Executor = None,
    address: Address = None,
    trust_code: TrustCode = False,
) -> None:
    """Train reference models on a membership plan and write their signals (multi-model format)."""
    from miaudit.engine import load_config
    from miaudit.engine import train as run_train

    cfg = load_config(config, trust_code=trust_code)
    warn_self_trust(cfg, trust_code, config)
    updates = {
        k: v
        for k, v in {"workers": workers, "threads": threads, "cache": cache}.items()
        if v is not None
    }
    updates["progress"] = progress and cfg.engine.progress
    cfg = with_engine(cfg, executor=executor, address=address, **updates)
    _refuse_another_runs_folder(out)
    result = run_train(cfg, out, console=console(stderr=True))
    console().print(result.summary(), soft_wrap=True)


def _refuse_another_runs_folder(out: Path) -> None:
    """``miaudit train`` into a folder another command wrote replaced its signals beside the
    results they no longer match (check-record then answered from the mix: red team)."""
    from miaudit.audit import refuse_another_run

    refuse_another_run(out, own="train", advice="train into another folder")


def warn_self_trust(cfg: object, flag: bool, path: Path) -> None:
    """A config that grants itself ``trust_code`` runs the code it names: say so on stderr, so a
    config from elsewhere cannot do it silently (``--trust-code`` is the caller's own word)."""
    from miaudit.models import code_names

    named = code_names(getattr(cfg, "model", None))
    if not flag and getattr(cfg, "trust_code", False) and named:
        typer.echo(
            f"warning: {path} sets trust_code = true: it imports and runs {', '.join(map(repr, named.values()))}",
            err=True,
        )


def load_audit(config: Path, trust_code: bool) -> AuditConfig:
    """The audit config at ``config`` (code it names allowed with ``trust_code``), with the
    warning of :func:`warn_self_trust` when the file grants itself trust."""
    from miaudit.audit import load_audit_config

    cfg = load_audit_config(config, trust_code=trust_code)
    warn_self_trust(cfg, trust_code, config)
    return cfg


def with_engine(cfg: Cfg, **updates: object) -> Cfg:
    """``cfg`` (a train or audit config) with ``[engine]`` fields replaced by the non-None
    ``updates`` (command-line options), validated; an InputError names the bad field."""
    from miaudit.models import validation_error

    changed = {k: v for k, v in updates.items() if v is not None}
    if not changed:
        return cfg
    try:
        engine = type(cfg.engine).model_validate({**cfg.engine.model_dump(), **changed})
    except ValidationError as exc:
        raise validation_error(exc, "engine") from None
    return cfg.model_copy(update={"engine": engine})
