"""The noise multiplier σ for a target (ε, δ), found with Opacus's accountants, bounded.

:func:`noise_for_epsilon` runs Opacus's own search (``opacus.accountants.utils.
get_noise_multiplier``, its default ``epsilon_tolerance`` 0.01: double σ from 10 until the
accountant's ε is below the target, then bisect until it is within the tolerance below it),
step for step, so the σ it returns is Opacus's. Every ε comes from Opacus's accountant — never
our maths. What it adds are the guards Opacus's loop lacks, so that bad input is an
:class:`~miaudit.errors.InputError` naming the field, never a hang or an internal error:

- a target Opacus's loop can never reach (the PRV accountant gives no finite ε below σ ≈ 0.08
  at q = 1/8 over 16 steps, and at most ≈ 630 above: ``epsilon = 1e9`` made the bisection run
  for ever) is recognised once the bisection has narrowed the σ at which the accountant stops
  giving a finite ε to ``UNREACHABLE_WIDTH`` of itself; the error says which ε is reachable;
- a target too small for any σ up to Opacus's ``MAX_SIGMA`` (its "privacy budget is too low");
- a cap on the bisection's steps and on the search's time.

It is called with the number of steps the training takes (``steps=``), not epochs: Opacus turns
epochs into ``int(epochs / sample_rate)`` steps, which floating point can make one fewer than
the Poisson rounds actually run (``poisson_schedule``), so the recorded ε could exceed the
target.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from miaudit.errors import InputError

if TYPE_CHECKING:
    from miaudit.models._recipe import CNNRecipe, MLPRecipe

#: Opacus's ``get_noise_multiplier`` default tolerance: its σ are what training always used.
EPSILON_TOLERANCE = 0.01
#: Opacus's ``MAX_SIGMA``: beyond it, "the privacy budget is too low".
MAX_SIGMA = 1e6
#: The bisection's steps at most (Opacus's search takes 20-40 for ordinary targets).
MAX_BISECTION_STEPS = 100
#: A target is called unreachable once the interval [σ without a finite ε, σ below the target]
#: is narrower than this fraction of its top.
UNREACHABLE_WIDTH = 0.01
#: The whole search's wall-clock cap (seconds): the PRV accountant slows down at small σ.
MAX_SEARCH_SECONDS = 180.0
#: FAULT INJECTION "undercounted_steps": the accountant is told one step in this many.
UNDERCOUNT = 10


def poisson_schedule(n_records: int, batch_size: int, epochs: int) -> tuple[float, int]:
    """(sampling rate, steps) of DP-SGD on ``n_records`` records as ``models/_dp.py`` trains:
    Opacus's Poisson loader samples at 1 / len(loader) (batches of min(batch_size, n)) and runs
    ``int(1 / sample_rate)`` rounds per epoch (its ``UniformWithReplacementSampler`` default)."""
    batches = math.ceil(n_records / max(1, min(batch_size, n_records)))
    q = 1 / batches
    return q, epochs * int(1 / q)


#: Opacus's PRV accountant's refusal of a δ its floating point cannot resolve.
_DELTA_UNRESOLVED = "small values of delta"


def _accountant_epsilon(
    accountant: str, delta: float, unresolved: list[float] | None = None
) -> Callable[[float, float, int], float]:
    """ε(σ, q, steps) by Opacus's accountant; ∞ when it gives no finite number. The σ at which
    the accountant refused δ itself (too small for its floating point) go into ``unresolved``:
    a search that fails there failed for δ, not for ε (red team: δ = 1e-30 was reported as
    "ε = 50 is too small")."""
    from opacus.accountants import create_accountant

    acc = create_accountant(mechanism=accountant)

    def eps(sigma: float, q: float, steps: int) -> float:
        acc.history = [(sigma, q, steps)]
        try:
            with warnings.catch_warnings():  # RDP order-range advice: not about this search
                warnings.simplefilter("ignore", UserWarning)
                warnings.simplefilter("ignore", RuntimeWarning)
                value = float(acc.get_epsilon(delta=delta))
        except ValueError as exc:
            if unresolved is not None and _DELTA_UNRESOLVED in str(exc):
                unresolved.append(sigma)
            return math.inf
        except (ZeroDivisionError, OverflowError, FloatingPointError):
            return math.inf
        return value if math.isfinite(value) else math.inf

    return eps


def spent_epsilon(
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    accountant: str,
    *,
    delta_field: str = "model.dp.delta",
) -> float:
    """Opacus's accountant's ε for DP-SGD at σ = ``noise_multiplier``, sampling rate and steps
    (∞ where it gives no finite number); InputError naming ``delta_field`` for a δ the accountant cannot resolve (red team: an
    internal error for δ = 1e-30)."""
    from opacus.accountants import create_accountant

    acc = create_accountant(accountant)
    acc.history = [(noise_multiplier, sample_rate, steps)]
    try:
        with warnings.catch_warnings():  # RDP order-range advice: not about this mechanism
            warnings.simplefilter("ignore", UserWarning)
            eps = float(acc.get_epsilon(delta))
    except ValueError as exc:
        if _DELTA_UNRESOLVED in str(exc):
            raise _delta_unresolved(delta, accountant, delta_field) from None
        raise
    return eps if math.isfinite(eps) else math.inf


def _delta_unresolved(delta: float, accountant: str, field: str) -> InputError:
    """The error for a δ the accountant cannot resolve, naming ``field``."""
    return InputError(
        field,
        f"δ = {delta:g} is too small for the {accountant} accountant (its floating point cannot "
        'resolve it): use a larger δ, or accountant = "rdp"',
    )


#: What one σ search is asked: (ε, δ, sample rate, steps, accountant).
SigmaQuery = tuple[float, float, float, int, str]
#: σ found, per query (a search is seconds: PRV ≈ 7 s for ε = 4 over 400 steps on one core).
SigmaTable = tuple[tuple[SigmaQuery, float], ...]
#: The σ this process found or was handed, at most ``_MAX_REMEMBERED`` (oldest dropped first).
_FOUND: dict[SigmaQuery, float] = {}
_MAX_REMEMBERED = 256


def noise_for_epsilon(
    epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    accountant: str,
    field: str = "model.dp.epsilon",
    delta_field: str = "model.dp.delta",
) -> float:
    """Opacus's σ for a target (ε, δ) at this sampling rate over ``steps`` steps (its search,
    with the guards of the module docstring); InputError naming ``field`` when there is none
    (``delta_field`` when the accountant could not resolve δ itself).

    A pure function of its arguments (≈ 0.3 s per PRV accountant call, seconds per search):
    remembered per process, and handed to training workers by :func:`remember_sigmas`."""
    query = _query(epsilon, delta, sample_rate, steps, accountant)
    if query in _FOUND:
        return _FOUND[query]
    unresolved: list[float] = []
    eps = _accountant_epsilon(accountant, delta, unresolved)
    try:
        sigma = search_sigma(
            lambda s: eps(s, sample_rate, steps),
            epsilon,
            field=field,
            where=f"with the {accountant} accountant at sample rate {sample_rate:.4g} over {steps} steps (δ = {delta:g})",
        )
    except InputError:
        if unresolved:
            raise _delta_unresolved(delta, accountant, delta_field) from None
        raise
    _remember(query, sigma)
    return sigma


def _query(
    epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str
) -> SigmaQuery:
    return (float(epsilon), float(delta), float(sample_rate), int(steps), accountant)


def _remember(query: SigmaQuery, sigma: float) -> None:
    if len(_FOUND) >= _MAX_REMEMBERED:
        del _FOUND[next(iter(_FOUND))]
    _FOUND[query] = sigma


def remember_sigmas(table: SigmaTable) -> None:
    """Take the σ another process of this run found (the coordinator's checks, handed to each
    training worker with its unit), so that a worker does not repeat searches of seconds each.
    The table travels inside the run's own jobs, never through a file: it is not input."""
    for query, sigma in table:
        _remember(query, sigma)


# Long: Opacus's two loops (doubling, bisection) kept step for step so its σ are unchanged,
# with the guards between them; splitting them would separate each guard from its loop.
def search_sigma(
    eps_at: Callable[[float], float],
    target: float,
    *,
    field: str,
    where: str,
    clock: Callable[[], float] = time.monotonic,
) -> float:
    """Opacus's ``get_noise_multiplier`` loop over ``eps_at(σ)`` (the accountant's ε, ∞ when it
    has none), bounded; InputError naming ``field`` when no σ reaches ``target``."""
    if not (math.isfinite(target) and target > 0):
        raise InputError(field, f"must be a finite number > 0, got {target!r}")
    start = clock()

    def timed() -> None:
        if clock() - start > MAX_SEARCH_SECONDS:
            raise InputError(
                field,
                f"the search for a noise multiplier reaching ε = {target:g} {where} took over "
                f"{MAX_SEARCH_SECONDS:g} s; use a smaller ε",
            )

    sigma_low: float = 0
    sigma_high: float = 10  # Opacus's start (an int, as in Opacus: the same σ, bit for bit)
    eps_high = math.inf
    while eps_high > target:
        sigma_high = 2 * sigma_high
        eps_high = eps_at(sigma_high)
        if sigma_high > MAX_SIGMA:
            raise InputError(
                field,
                f"ε = {target:g} is too small: even a noise multiplier of {MAX_SIGMA:g} gives "
                f"ε = {eps_high:.3g} {where}; use a larger ε (or fewer steps, more records)",
            )
        timed()
    finite_low = False  # a finite ε ≥ target seen at sigma_low: the target is reachable
    for _ in range(MAX_BISECTION_STEPS):
        if target - eps_high <= EPSILON_TOLERANCE:
            return float(sigma_high)
        if not finite_low and sigma_high - sigma_low <= UNREACHABLE_WIDTH * sigma_high:
            raise InputError(
                field,
                f"no noise multiplier reaches ε = {target:g} {where}: below σ ≈ {sigma_low:.3g} "
                f"the accountant gives no finite ε, and at most ≈ {eps_high:.4g} above it; "
                f"use ε ≤ {_round_down(eps_high):g}",
            )
        sigma = (sigma_low + sigma_high) / 2
        eps = eps_at(sigma)
        if eps < target:
            sigma_high, eps_high = sigma, eps
        else:
            sigma_low = sigma
            finite_low = finite_low or math.isfinite(eps)
        timed()
    raise InputError(
        field,
        f"the search for a noise multiplier reaching ε = {target:g} {where} did not converge "
        f"in {MAX_BISECTION_STEPS} steps; use a smaller ε",
    )


def dp_sigma_args(recipe: MLPRecipe | CNNRecipe, n_records: int) -> tuple[float, int]:
    """(sampling rate, steps) that the σ search for ``recipe`` on ``n_records`` records uses:
    the training's (FAULT INJECTION "undercounted_steps": a tenth of the epochs)."""
    dp = recipe.dp
    assert dp is not None
    epochs = recipe.epochs if dp.fault != "undercounted_steps" else -(-recipe.epochs // UNDERCOUNT)
    return poisson_schedule(n_records, recipe.batch_size, epochs)


def check_delta(delta: float, n_max: int, field: str) -> None:
    """InputError naming ``field`` unless δ < 1/n for the largest training set (n records): at
    δ ≥ 1/n an (ε, δ)-DP training may publish a whole record."""
    if n_max >= 1 and delta * n_max >= 1:
        raise InputError(
            field,
            f"δ = {delta:g} is not below 1/n = {1 / n_max:.3g} (n = {n_max} records in a model's "
            f"training set): at δ ≥ 1/n an (ε, δ)-DP training may publish whole records; "
            f"use δ < 1/n (e.g. {_below(1 / n_max):g})",
        )


def _round_down(x: float) -> float:
    """``x`` rounded down to 3 significant digits."""
    unit = 10.0 ** (math.floor(math.log10(x)) - 2)
    return math.floor(x / unit) * unit


def _below(x: float) -> float:
    """A round number well below ``x`` (a power of ten at most x / 10)."""
    return float(10 ** math.floor(math.log10(x) - 1))


def check_dp_claim(
    recipe: MLPRecipe | CNNRecipe,
    train_sizes: Iterable[int],
    *,
    epsilon_field: str = "model.dp.epsilon",
    delta_field: str = "model.dp.delta",
) -> SigmaTable:
    """Before any training: δ < 1/n for every model's training set, and, for a target ε, σ
    found for every training-set size; the σ found (for :func:`remember_sigmas` in the
    processes that train). InputError naming the field otherwise."""
    dp = recipe.dp
    if dp is None:
        return ()
    sizes = sorted({int(n) for n in train_sizes if n >= 1})
    if not sizes:
        return ()
    check_delta(dp.delta, sizes[-1], delta_field)
    if dp.epsilon is None:
        return ()
    return tuple(
        (
            _query(dp.epsilon, dp.delta, *args, dp.accountant),
            noise_for_epsilon(
                dp.epsilon,
                dp.delta,
                *args,
                dp.accountant,
                field=epsilon_field,
                delta_field=delta_field,
            ),
        )
        for args in sorted({dp_sigma_args(recipe, n) for n in sizes})
    )


def check_finetune_dp(
    epsilon: float,
    delta: float,
    accountant: str,
    batch_size: int,
    epochs: int,
    train_sizes: Iterable[int],
    *,
    epsilon_field: str = "model.finetune.dp.epsilon",
    delta_field: str = "model.finetune.dp.delta",
) -> None:
    """The language model's DP fine-tuning (``models/_lm_dp.py``) checked before it trains, as
    :func:`check_dp_claim` checks a recipe: δ < 1/n, σ found for ε at every fine-tuning set size."""
    sizes = sorted({int(n) for n in train_sizes if n >= 1})
    if not sizes:
        return
    check_delta(delta, sizes[-1], delta_field)
    for args in sorted({poisson_schedule(n, batch_size, epochs) for n in sizes}):
        noise_for_epsilon(
            epsilon, delta, *args, accountant, field=epsilon_field, delta_field=delta_field
        )
