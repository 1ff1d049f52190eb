"""Terminal summary of audit results (rich)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from miaudit.audit import AttackResult, AuditResult
from miaudit.cli._console import plain
from miaudit.metrics import Estimate


def fmt(e: Estimate, pct: bool = False) -> str:
    if e.status == "not_measurable" or e.point is None:
        return "n/m"
    scale, unit = (100.0, "%") if pct else (1.0, "")
    text = f"{e.point * scale:.3g}{unit}" if pct else f"{e.point:.3f}"
    if e.lower is not None and e.upper is not None:
        text += (
            f" [{e.lower * scale:.3g}, {e.upper * scale:.3g}]"
            if pct
            else f" [{e.lower:.3f}, {e.upper:.3f}]"
        )
    elif e.status == "interval_not_reliable":
        text += " (no CI)"
    return text


def print_summary(result: AuditResult, console: Console | None = None) -> None:
    console = console or Console(markup=False, highlight=False)
    _print_setup(result, console)
    console.print(_attack_table(result))
    for note in result.notes:  # what changes how the table reads: the policy, top-score ties
        if note.startswith("WARNING: "):  # the figures may mean nothing: said first and loud
            console.print(f"warning: {note.removeprefix('WARNING: ')}", soft_wrap=True)
        elif note.startswith(("Attacks saw only what", "ties:")):
            console.print(f"note: {note}")
    if result.slices:
        console.print(_slice_table(result))


def _print_setup(result: AuditResult, console: Console) -> None:
    """What was audited: the reference models (if any), the records, the model's utility."""
    inp = result.input
    ref = result.reference
    unit = "records"
    if ref is not None:
        unit = "(model, record) pairs"
        refs = (
            f"k = {ref.references} reference pairs"
            if ref.reference_choice is None
            else f"references: {ref.reference_choice}"
        )
        console.print(
            f"{ref.dataset}: {ref.models} models ({'an external target + ' if ref.external_target else ''}{refs}), "
            f"{ref.pool_records:,} pool records, {ref.population_records:,} population records; {ref.targets} target(s) attacked"
        )
        if ref.rmia_offline_a is not None:
            values = sorted(set(ref.rmia_offline_a.per_target))
            how = _rmia_a_source(ref.rmia_offline_a.method, ref.rmia_offline_a.per_target)
            console.print(f"offline RMIA a = {', '.join(f'{v:g}' for v in values)} ({how})")
    console.print(
        f"{inp.name}: {inp.n_records:,} {unit} ({inp.n_members:,} members, {inp.n_nonmembers:,} non-members), "
        f"{inp.n_classes} classes; {result.bootstrap.replicates} bootstrap replicates, seed {result.seed}"
    )
    if result.utility is not None:
        u = result.utility
        console.print(
            f"accuracy: train {u.train_accuracy:.3f}, test {_test_accuracy(result)} (generalisation gap {u.generalization_gap:+.3f})"
        )


def _test_accuracy(result: AuditResult) -> str:
    u = result.utility
    assert u is not None
    return fmt(u.test_accuracy_interval) if u.test_accuracy_interval else f"{u.test_accuracy:.3f}"


def _attack_table(result: AuditResult) -> Table:
    table = Table(title="Membership inference (95% intervals; n/m = not measurable)")
    table.add_column("attack")
    table.add_column("AUC")
    tpr_keys = list(result.attacks[0].tpr_at_fpr)
    for k in tpr_keys:
        table.add_column(k.upper().replace("@", " @ "))
    table.add_column("advantage")
    for a in result.attacks:
        table.add_row(
            a.name,
            fmt(a.auc),
            *(_tpr_cell(a, k) for k in tpr_keys),
            fmt(a.advantage),
        )
    return table


def _tpr_cell(a: AttackResult, key: str) -> str:
    cell = fmt(a.tpr_at_fpr[key], pct=True)
    return cell if cell == "n/m" else cell + _tie_mark(a, key)


def _tie_mark(a: AttackResult, key: str) -> str:
    """ " (tie)" where the attack's top score is shared by more of the non-members than the FPR
    allows: its TPR there reads 0 because no threshold splits the tie, not because nothing
    leaks (the note under the table says so; a new user read "0% [0, 0]" as no leak)."""
    if a.top_tie is None:
        return ""
    fpr = float(key.removeprefix("tpr@").removesuffix("%fpr")) / 100
    return " (tie)" if fpr < a.top_tie.nonmembers and a.top_tie.records > 0.001 else ""


def _slice_table(result: AuditResult) -> Table:
    """Each slice under the attack that exposes most (the strongest)."""
    strongest = result.exposure_attack
    st = Table(title=f"Slices ({strongest})")
    for col in ("slice", "records", "AUC", "TPR @ 1% FPR"):
        st.add_column(col)
    for s in result.slices:
        match = [a for a in s.attacks if a.attack == strongest]
        figures = (
            (fmt(match[0].auc), fmt(match[0].tpr_at_1pct_fpr, pct=True))
            if match
            else ("too few records", "")
        )
        st.add_row(plain(f"{s.column}={s.value}"), f"{s.size:,}", *figures)
    return st


def _rmia_a_source(method: str, per_target: list[float]) -> str:
    """Where offline RMIA's a came from, in words: given, cross-fitted (on a grid of tenths), or
    the stated default where fewer than two pairs lie outside a target's (k = 1: the console
    said "cross-fitted" for it, a new user's walk)."""
    from miaudit.attacks import RMIA_DEFAULT_A

    if method.startswith("given"):
        return "given"
    defaulted = sum(v == RMIA_DEFAULT_A for v in per_target)
    if defaulted == len(per_target):
        return "the stated default: too few pairs outside a target's to cross-fit it (k = 1)"
    fitted = "cross-fitted per target on the models outside its pair"
    return (
        fitted if not defaulted else f"{fitted}; the stated default where too few pairs lie outside"
    )
