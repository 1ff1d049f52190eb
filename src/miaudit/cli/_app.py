"""The ``miaudit`` command line: a thin layer over the public API.

Bad input prints one line naming the input and the problem and exits with status 2.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console

from miaudit.cli._console import console, report_sharing
from miaudit.cli._options import Address, AsJson, Executor, TrustCode
from miaudit.errors import InputError

if TYPE_CHECKING:
    from miaudit.audit import AuditResult

# Help texts are plain text: rich markup would eat their bracketed names ("[data], [model]").
app = typer.Typer(
    rich_markup_mode=None,
    add_completion=False,
    no_args_is_help=True,
    help="Measure how much a model reveals about its training data.",
)
err = console(stderr=True)
out = console()


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def _gate(result: object, fail_on: list[str] | None) -> None:
    """The CI gate: exit 1 with a one-line reason when any ``--fail-on`` rule holds; else one
    line saying so, with each rule's closest attack (a passing gate printed nothing)."""
    from miaudit.audit import gate_failures, gate_passes, parse_gate_rule

    rules = [parse_gate_rule(r) for r in fail_on or []]
    broken = gate_failures(result, rules)  # type: ignore[arg-type]
    if rules and not broken:
        err.print(
            "passed --fail-on: " + "; ".join(gate_passes(result, rules)),  # type: ignore[arg-type]
            highlight=False,
            soft_wrap=True,
        )
    if broken:
        err.print(
            f"FAILED --fail-on: {broken[0]}"
            + (f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""),
            highlight=False,
            soft_wrap=True,
        )
        raise SystemExit(1)


def _check_before_work(
    *,
    fail_on: list[str] | None = None,
    policy: str | None = None,
    seed: int | None = None,
    resamples: int | None = None,
) -> None:
    """Options checked before any work starts, so that a bad one leaves nothing behind."""
    from miaudit.audit import parse_gate_rule

    for r in fail_on or []:
        parse_gate_rule(r)  # the FPRs an audit reports are checked once its config is read
    if policy is not None:
        from miaudit.defenses import parse_policy

        parse_policy(policy, field="--policy")
    if seed is not None and seed < 0:
        raise InputError("--seed", f"must be ≥ 0, got {seed}")
    if resamples is not None and resamples < 1:
        raise InputError("--resamples", f"must be ≥ 1, got {resamples}")


def _report_line(out_dir: Path, to: Console | None = None) -> None:
    """Say where the run's report is (written by ``audit()``/``attack()``; else written now)."""
    from miaudit.report import REPORT_FILE, write_report

    path = out_dir / REPORT_FILE
    if not path.is_file():
        path = write_report(out_dir)
    (to or out).print(f"report: {path} ({report_sharing(path)}; self-contained HTML)")


def _print_json(text: str) -> None:
    """The machine-readable result: the only thing a ``--json`` command writes on stdout."""
    sys.stdout.write(text.rstrip("\n") + "\n")
    sys.stdout.flush()


# Long: over 60 lines only through its command-line option declarations; the body is short.
@app.command("attack")
def attack_cmd(
    outputs: Annotated[
        Path,
        typer.Argument(
            help="Model outputs (.npz, .parquet or .csv): logits or probs, label, member."
        ),
    ],
    attacks: Annotated[
        str | None, typer.Option(help="Comma-separated attacks (default: all output attacks).")
    ] = None,
    slices: Annotated[
        str | None, typer.Option(help="Comma-separated extra columns to break results down by.")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Folder for results.json and scores.parquet.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every random choice (bootstrap, folds).")] = 0,
    resamples: Annotated[
        int,
        typer.Option(
            help="Bootstrap replicates (records resampled); the verdict and --fail-on bounds need ≥ 39."
        ),
    ] = 200,
    prior: Annotated[float, typer.Option(help="Member prior for the PPV.")] = 0.5,
    raw_ids: Annotated[
        bool,
        typer.Option(
            "--raw-ids",
            help="Show raw record ids instead of keyed pseudonyms (results.json and report.html are then restricted, 0600: they name likely members).",
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace results already in --out.")
    ] = False,
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            help='Exit 1 when a rule holds for any attack, e.g. "auc.lower>0.6" or "epsilon.lower>1".',
        ),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option(
            help="Attack only what an output policy exposes: full, top-K, round:D, label-only, noise:SIGMA."
        ),
    ] = None,
    population: Annotated[
        Path | None,
        typer.Option(
            help="The same model's outputs on population records (known non-members, none audited), with their features (images in .npz as (n, H, W) or (n, C, H, W)): what --attacks qmia fits on."
        ),
    ] = None,
    features: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated feature columns of OUTPUTS and --population (Parquet/CSV; default: their 'features' array)."
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Audit one model from its saved outputs on known members and non-members."""
    from miaudit.audit import DEFAULT_ATTACKS, attack, check_gate_rules
    from miaudit.cli._summary import print_summary
    from miaudit.metrics import DEFAULT_FPRS

    _check_before_work(fail_on=fail_on, policy=policy, seed=seed, resamples=resamples)
    # the FPRs `miaudit attack` reports
    check_gate_rules(fail_on or [], DEFAULT_FPRS, resamples=resamples)
    if policy is not None and not attacks:
        from miaudit.attacks import output_attacks_under

        usable = set(DEFAULT_ATTACKS) if population is None else None
        attacks = ",".join(a for a in output_attacks_under(policy) if usable is None or a in usable)
    result = attack(
        outputs,
        policy=policy,
        attacks=_split(attacks) or DEFAULT_ATTACKS,
        slices=_split(slices),
        n_resamples=resamples,
        seed=seed,
        prior=prior,
        out=out_dir,
        overwrite=overwrite,
        raw_ids=raw_ids,
        population=population,
        feature_columns=_split(features) or None,
    )
    say = err if as_json else out
    print_summary(result, say)
    if out_dir is not None:
        shared = (
            "restricted, 0600: --raw-ids names records by their ids" if raw_ids else "shareable"
        )
        say.print(
            f"results: {out_dir / 'results.json'} ({shared}); scores: {out_dir / 'scores.parquet'} (restricted)"
        )
        _report_line(out_dir, say)
    if as_json and raw_ids:  # CI logs are often readable by many: say what stdout now holds
        err.print(
            "note: stdout holds the results with --raw-ids: the most exposed records by their ids "
            "(most of them members); keep it as restricted as results.json",
            highlight=False,
            soft_wrap=True,
        )
    if as_json:
        _print_json(result.to_json())
    _gate(result, fail_on)


# Long: over 60 lines only through its command-line option declarations; the body is short.
@app.command("audit")
def audit_cmd(
    out_dir: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Folder for results.json, scores.parquet, report.html, signals/ and models/.",
        ),
    ],
    config: Annotated[
        Path | None,
        typer.Argument(
            help="Audit config (.toml/.yaml): [data], [model], [plan], [engine], [audit], seed. "
            "With --signals: optional, its [audit] and seed only."
        ),
    ] = None,
    signals: Annotated[
        Path | None,
        typer.Option(
            "--signals",
            help="Audit models trained elsewhere from their signals (.npz, .parquet or a folder, e.g. written by miaudit.data.SignalsWriter): nothing is trained.",
        ),
    ] = None,
    target: Annotated[
        int | None,
        typer.Option(
            help="With --signals: the one model to audit (default: the store's target if it names one, else every model in turn)."
        ),
    ] = None,
    references: Annotated[
        str | None,
        typer.Option(
            help="With --signals: 'all' (every other model except the target's complementary partner; the default), "
            "K (K complementary pairs per target) or model indices such as 1,2,5 (one target; a single model: 5,)."
        ),
    ] = None,
    attacks: Annotated[
        str | None,
        typer.Option(
            help="With --signals: comma-separated attacks (default: the config's, else loss, LiRA and RMIA)."
        ),
    ] = None,
    resamples: Annotated[
        int | None,
        typer.Option(
            help="With --signals: bootstrap replicates (default: the config's, else 200; the verdict and --fail-on bounds need ≥ 39)."
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help="With --signals: seed of the bootstrap (default: the config's, else 0)."),
    ] = None,
    fail_on: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-on",
            help='Exit 1 when a rule holds for any attack, e.g. "tpr@1%fpr.upper>0.05" (bound: point, lower or upper; default upper).',
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace results of another config already in --out."),
    ] = False,
    executor: Executor = None,
    address: Address = None,
    trust_code: TrustCode = False,
    as_json: AsJson = False,
) -> None:
    """Train the recipe's reference models (or reuse verified cached ones), attack, and evaluate; or, with --signals, attack models trained elsewhere."""
    from miaudit.cli._summary import print_summary

    _check_before_work(fail_on=fail_on, seed=seed, resamples=resamples)
    signal_opts = {"--target": target, "--references": references, "--attacks": attacks}
    signal_opts.update({"--resamples": resamples, "--seed": seed})
    if signals is not None:
        if executor is not None or address is not None or trust_code:
            raise InputError(
                "--signals",
                "audits models already trained: --executor, --address and --trust-code do not apply",
            )
        result = _audit_signals(
            config,
            out_dir,
            signals,
            target,
            references,
            attacks,
            resamples,
            seed,
            overwrite,
            fail_on=fail_on or [],
        )
    else:
        given = [name for name, value in signal_opts.items() if value is not None]
        if given:
            raise InputError(
                given[0], "applies to audits of signals trained elsewhere (--signals FILE)"
            )
        if config is None:
            raise InputError(
                "config",
                "missing argument: give an audit config, or --signals FILE to audit models trained elsewhere",
            )
        result = _audit_config(
            config,
            out_dir,
            overwrite,
            executor,
            address,
            trust_code,
            fail_on=fail_on or [],
            quiet=as_json,
        )
    say = err if as_json else out
    print_summary(result, say)
    say.print(
        f"results: {out_dir / 'results.json'} (shareable); scores, signals{', models' if signals is None else ''}: restricted (0600)"
    )
    _report_line(out_dir, say)
    if as_json:
        _print_json(result.to_json())
    _gate(result, fail_on)


def _audit_config(
    config: Path,
    out_dir: Path,
    overwrite: bool,
    executor: str | None,
    address: str | None,
    trust_code: bool,
    *,
    fail_on: list[str],
    quiet: bool = False,
) -> AuditResult:
    """``miaudit audit CONFIG``: train the recipe's reference models and audit them (``quiet``:
    no training summary on stdout, which ``--json`` keeps for the JSON)."""
    from miaudit.audit import audit, check_gate_rules
    from miaudit.cli._train import load_audit, with_engine

    cfg = load_audit(config, trust_code)
    check_gate_rules(fail_on, cfg.audit.fprs, epsilon=False, resamples=cfg.audit.resamples)
    return audit(
        with_engine(cfg, executor=executor, address=address),
        out_dir,
        overwrite=overwrite,
        quiet=quiet,
    )


def _audit_signals(
    config: Path | None,
    out_dir: Path,
    signals: Path,
    target: int | None,
    references: str | None,
    attacks: str | None,
    resamples: int | None,
    seed: int | None,
    overwrite: bool,
    *,
    fail_on: list[str],
) -> AuditResult:
    """``miaudit audit --signals FILE``: the same files from models trained anywhere."""
    from miaudit.audit import (
        audit_signals,
        check_gate_rules,
        parse_references,
        signals_audit_config,
    )

    if target is not None and target < 0:
        raise InputError("--target", f"must be a model index ≥ 0, got {target}")
    cfg = signals_audit_config(
        config,
        attacks=_split(attacks) if attacks is not None else None,
        resamples=resamples,
        seed=seed,
    )
    check_gate_rules(fail_on, cfg.audit.fprs, epsilon=False, resamples=cfg.audit.resamples)
    refs = None if references is None else parse_references(references)
    return audit_signals(
        signals, out_dir, config=cfg, target=target, references=refs, overwrite=overwrite
    ).result


# Long: over 60 lines only through its command-line option declarations; the body is short.
@app.command("demo")
def demo_cmd(
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder for the demo's results and report.")
    ] = Path("demo-results"),
    outputs_only: Annotated[
        bool,
        typer.Option(
            "--outputs-only",
            help="The quick version, without reference models: audit a random forest from its saved outputs only.",
        ),
    ] = False,
    seed: Annotated[
        int,
        typer.Option(
            help="Seed of the --outputs-only demo (the full demo's seed is in its config)."
        ),
    ] = 20261128,
    text: Annotated[
        bool,
        typer.Option(
            "--text",
            help="The language-model demo: fine-tune miaudit's small LM on synthetic personal records with canaries; exposure, and membership audited by the text attacks and the blind baseline.",
        ),
    ] = False,
) -> None:
    """Audit a deliberately overfit model on bundled UCI Adult and compare DP-SGD, weight decay and a label-only policy."""
    from miaudit._io import ensure_private_dir, output_dir_cleanup

    # a folder this command made is removed again when it fails or is killed while still empty
    with output_dir_cleanup(out_dir):
        ensure_private_dir(out_dir)  # an unusable --out is refused before minutes of work
        _demo(out_dir, outputs_only=outputs_only, seed=seed, text=text)


def _demo(out_dir: Path, *, outputs_only: bool, seed: int, text: bool) -> None:
    """``miaudit demo``'s three versions, into ``out_dir`` (checked writable)."""
    if text:
        from miaudit.cli._text import text_demo

        text_demo(out_dir)
        return
    if outputs_only:
        from miaudit.audit import run_demo
        from miaudit.cli._summary import print_summary

        with out.status(
            "training an overfit random forest on UCI Adult and auditing its saved outputs…"
        ):
            result = run_demo(out_dir, seed=seed)
        print_summary(result, out)
        out.print(
            f"results: {out_dir / 'results.json'} (shareable); scores: {out_dir / 'scores.parquet'} (restricted, 0600)"
        )
        _report_line(out_dir)
        return
    from importlib import resources

    from miaudit.cli._tradeoff import tradeoff

    config = resources.files("miaudit.audit") / "_bundled" / "demo.toml"
    with resources.as_file(config) as path:
        out.print(
            f"miaudit demo: the config {path.name} (overfit MLP on UCI Adult, 10 models) and three controls beside it"
        )
        tradeoff(
            path,
            out_dir,
            epsilons="4",
            weight_decays="0.001",
            early_stopping=False,
            policies="label-only",
            noise_sigma=0.1,
        )


@app.command("version")
def version_cmd() -> None:
    """Print miaudit's version (also: miaudit --version)."""
    _version(True)


from miaudit.cli._train import train as _train  # noqa: E402

app.command("train")(_train)

from miaudit.cli._report import report as _report  # noqa: E402

app.command("report")(_report)

from miaudit.cli._records import check_record_cmd, ids_cmd  # noqa: E402

app.command("check-record")(check_record_cmd)
app.command("ids")(ids_cmd)

from miaudit.cli._serve import alerts_cmd, keys_app, serve_cmd  # noqa: E402
from miaudit.cli._text import exposure as _exposure  # noqa: E402
from miaudit.cli._tradeoff import dp_audit as _dp_audit  # noqa: E402
from miaudit.cli._tradeoff import tradeoff as _tradeoff  # noqa: E402

app.command("exposure")(_exposure)
app.command("tradeoff")(_tradeoff)
app.command("dp-audit")(_dp_audit)
app.command("serve")(serve_cmd)
app.add_typer(keys_app, name="keys")
app.command("alerts")(alerts_cmd)


def _version(value: bool) -> None:
    if value:
        from miaudit._version import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print miaudit's version and exit."
        ),
    ] = False,
) -> None:
    """Measure how much a model reveals about its training data."""


#: Exit status of a miaudit bug ("internal error … please report it"): apart from 1, a failing
#: --fail-on gate or DP audit, so that CI can tell "leaks past the rule" from "crashed" (red
#: team); 2 is bad input, 130 an interruption.
INTERNAL_ERROR = 3


def _fail(message: str, code: int = 2) -> NoReturn:
    """One plain-text line on stderr (no markup, no traceback), then exit ``code``."""
    from miaudit.cli._console import plain

    line = plain(" ".join(str(message).split()))  # names from input files drive no terminal
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()
    raise SystemExit(code)


def _usage(exc: typer.TyperException) -> NoReturn:
    """Typer's own usage errors (it vendors click: no ``click`` import needed or wanted)."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "miaudit"
    _fail(
        f"{where}: {exc.format_message()} (see: {where} --help)",
        int(getattr(exc, "exit_code", 2) or 2),
    )


# The optional dependencies (pyproject.toml's extras), by the module that a command imports.
_EXTRA_OF = {
    **dict.fromkeys(
        ("fastapi", "starlette", "uvicorn", "sqlalchemy", "httpx", "psycopg", "anyio"), "serve"
    ),
    **dict.fromkeys(("torch", "safetensors"), "torch"),
    "skops": "sklearn-models",
    "opacus": "dp",
    **dict.fromkeys(("transformers", "tokenizers", "peft", "faker"), "text"),
    "ray": "ray",
}


@contextlib.contextmanager
def _exit_on_sigterm() -> Iterator[None]:
    """While a command runs, SIGTERM (``timeout``, ``kill``, a scheduler) raises
    SystemExit(143) in the main thread, so the run's cleanup (staging folders, a half-made
    --out) runs as it does for Ctrl-C: the default action killed the process at once and left
    them (a new user's walk found fine-tuned weights in `.staging-exposure-*` after `timeout`).
    A handler someone else set is kept; the previous one is restored afterwards."""
    import signal
    import threading

    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    ):
        yield
        return

    def terminated(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: list[str] | None = None) -> None:
    """The ``miaudit`` command: exit 0 on success, 1 when a --fail-on rule or a DP audit fails,
    2 with one line ``error: <input>: <problem>`` on bad input or usage."""
    try:
        with _exit_on_sigterm():
            code = app(args=argv, prog_name="miaudit", standalone_mode=False)
    except SystemExit:
        raise
    except InputError as exc:
        details = getattr(exc, "details", "")  # the user's code's traceback (UserCodeError)
        if details and os.environ.get("MIAUDIT_DEBUG"):
            err.print(details, highlight=False, soft_wrap=True)
        _fail(str(exc))
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None
    except (typer.Abort, KeyboardInterrupt):
        _fail("interrupted", 130)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `miaudit` or `miaudit keys` alone: the help
            ctx = getattr(exc, "ctx", None)
            typer.echo(ctx.get_help() if ctx is not None else "miaudit --help")
            raise SystemExit(0) from None
        _usage(exc)
    except ImportError as exc:  # an optional dependency this command needs is not installed
        extra = _EXTRA_OF.get((exc.name or "").split(".")[0])
        if extra is None:
            if os.environ.get("MIAUDIT_DEBUG"):
                raise
            _fail(
                f"internal error (ImportError: {exc}); please report it (MIAUDIT_DEBUG=1 shows the traceback)",
                INTERNAL_ERROR,
            )
        _fail(
            f"{exc.name}: this command needs the optional dependency {exc.name!r}: pip install 'miaudit[{extra}]'"
        )
    except MemoryError:
        _fail(
            "out of memory: reduce the sizes in the config or the input (the estimate before the run did not catch this)"
        )
    except OSError as exc:  # a full disk, a file that vanished, a permission: name the file
        name = exc.filename if exc.filename is not None else "I/O"
        _fail(f"{name}: {exc.strerror or exc}")
    except Exception as exc:
        if os.environ.get("MIAUDIT_DEBUG"):
            raise
        _fail(
            f"internal error ({type(exc).__name__}: {exc}); please report it (MIAUDIT_DEBUG=1 shows the traceback)",
            INTERNAL_ERROR,
        )
    if code == 130:  # typer returns a Ctrl-C as exit code 130, having printed nothing
        _fail("interrupted", 130)
    if isinstance(code, int) and code != 0:
        raise SystemExit(code)
