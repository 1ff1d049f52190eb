"""The public audit functions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from miaudit._io import output_dir_cleanup
from miaudit.audit._attack import DEFAULT_ATTACKS, AttackRun, run_attacks
from miaudit.audit._results import AuditResult
from miaudit.audit._text_audit import run_text_attacks
from miaudit.audit._writer import prepare_out, write_run, write_shareable_report
from miaudit.data import ModelOutputs, PopulationOutputs
from miaudit.metrics import DEFAULT_FPRS
from miaudit.signals import SequenceStore, load_sequence_signals


# Long: one keyword per `miaudit attack` option, each documented; the body is short.
def attack(
    outputs: ModelOutputs | str | Path,
    *,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    slices: Sequence[str] = (),
    n_resamples: int = 200,
    seed: int = 0,
    prior: float = 0.5,
    fprs: Sequence[float] = DEFAULT_FPRS,
    out: str | Path | None = None,
    overwrite: bool = False,
    raw_ids: bool = False,
    policy: str | None = None,
    quiet: bool = False,
    report: bool = True,
    population: PopulationOutputs | str | Path | None = None,
    feature_columns: Sequence[str] | None = None,
) -> AuditResult:
    """Audit one model from its outputs on known members and non-members.

    Args:
        outputs: :class:`~miaudit.data.ModelOutputs` or a path to .npz/.parquet/.csv outputs.
        attacks: names from :data:`miaudit.attacks.OUTPUT_ATTACKS`.
        slices: extra columns of the outputs to break results down by.
        n_resamples: bootstrap replicates (records resampled) for every interval.
        seed: makes the run reproducible bit for bit.
        prior: member prior for the PPV.
        out: folder for ``results.json`` and ``report.html`` (shareable) and ``scores.parquet``
            (restricted, 0600): the files ``miaudit attack --out`` writes.
        overwrite: replace results already in ``out``.
        raw_ids: show raw record ids instead of keyed pseudonyms in shareable outputs.
        policy: an output policy (``"top-1"``, ``"round:2"``, ``"label-only"``, ``"noise:0.05"``):
            attacks then see only what it exposes, as a caller of a guarded API would.
        quiet: no warning about the restricted scores on stderr.
        report: write ``report.html`` into ``out`` too.
        population: the same model's outputs on population records (known non-members, none
            of them audited), with their features: what ``qmia`` fits its regressor on
            (:class:`~miaudit.data.PopulationOutputs` or a path; docs/formats.md).
        feature_columns: the columns of ``outputs`` and ``population`` holding the records'
            features (Parquet or CSV); by default their ``features`` array or list column.

    Returns:
        The immutable :class:`AuditResult` (what ``results.json`` holds).
    """
    return _run_into(
        out,
        lambda key: run_attacks(
            outputs,
            attacks=attacks,
            slices=slices,
            n_resamples=n_resamples,
            seed=seed,
            prior=prior,
            fprs=fprs,
            pseudonym_key=key,
            raw_ids=raw_ids,
            policy=policy,
            population=population,
            feature_columns=feature_columns,
        ),
        overwrite=overwrite,
        quiet=quiet,
        report=report,
    )


def _run_into(
    out: str | Path | None,
    run_with: Callable[[bytes | None], AttackRun],
    *,
    overwrite: bool,
    quiet: bool,
    report: bool,
) -> AuditResult:
    """Check ``out`` before any work, run (with the folder's pseudonym key), write the files;
    a failed run leaves no output folder it made."""
    out_dir = Path(out) if out is not None else None
    with output_dir_cleanup(out_dir):
        key = prepare_out(out_dir, overwrite=overwrite) if out_dir is not None else None
        run = run_with(key)
        if out_dir is not None and key is not None:
            _write(out_dir, key, run, quiet=quiet, report=report)
    return run.result


def _write(out_dir: Path, key: bytes, run: AttackRun, *, quiet: bool, report: bool) -> None:
    """The files ``miaudit attack --out`` writes: results, restricted scores, the report."""
    write_run(
        out_dir,
        key,
        run.result.to_json(),
        run.record_id,
        run.member,
        run.label,
        run.scores,
        quiet=quiet,
        restricted_results=run.result.pseudonymisation.raw_ids,
    )
    if report:
        write_shareable_report(out_dir)


def audit_text(
    signals: SequenceStore | str | Path,
    *,
    texts: Sequence[str] | None = None,
    attacks: Sequence[str] | None = None,
    n_resamples: int = 200,
    seed: int = 0,
    prior: float = 0.5,
    fprs: Sequence[float] = DEFAULT_FPRS,
    out: str | Path | None = None,
    overwrite: bool = False,
    raw_ids: bool = False,
    quiet: bool = False,
    report: bool = True,
) -> AuditResult:
    """Audit a language model on texts from its sequence signals (docs/method.md §13).

    Args:
        signals: a :class:`~miaudit.signals.SequenceStore` (from
            :func:`miaudit.signals.sequence_signals`) or the path of one written by
            :func:`miaudit.signals.write_sequence_signals`.
        texts: the store's texts, in its record order: the blind baseline (texts alone, never
            the model) runs beside the attacks and flags a shifted split. Texts are never
            written or printed.
        attacks: text attacks (``SignalKind.SEQUENCE_SIGNALS``); default every one the store
            has the inputs of (a base model, reference fine-tunes, population texts).
        out: folder for ``results.json``, ``report.html`` (shareable) and ``scores.parquet``
            (restricted, 0600), as :func:`attack` writes; ``check_record`` reads it.

    The other arguments are :func:`attack`'s.
    """
    store = signals if isinstance(signals, SequenceStore) else load_sequence_signals(signals)
    return _run_into(
        out,
        lambda key: run_text_attacks(
            store,
            texts=texts,
            attacks=attacks,
            n_resamples=n_resamples,
            seed=seed,
            prior=prior,
            fprs=fprs,
            pseudonym_key=key,
            raw_ids=raw_ids,
        ),
        overwrite=overwrite,
        quiet=quiet,
        report=report,
    )
