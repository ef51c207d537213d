"""Privacy accounting for Poisson-subsampled Gaussian DP-SGD: pure functions, no state.

The split follows Opacus: the math lives here, the state (what a site has spent) lives
in :mod:`client.ledger`. A history entry is ``(noise_multiplier, sample_rate, steps)``,
the same shape as Opacus's ``accountant.history``, so the two can be compared directly.
Both accountants below give UPPER bounds on epsilon ("prv" returns the PRV accountant's
upper estimate, not its point estimate), so either one is a valid guarantee.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, Iterable, Sequence

from opacus.accountants import create_accountant

ACCOUNTANTS = ("prv", "rdp")
Entry = tuple[float, float, int]
MAX_SIGMA = 1e4  # beyond this a budget is "impossible" for any useful run
# Opacus's default RDP orders stop at 63; large sigmas want larger orders for a tight bound
RDP_ORDERS = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)) + [80, 96, 128, 192, 256, 512, 1024]


def check_entry(noise_multiplier: float, sample_rate: float, steps: int) -> Entry:
    """One validated history entry; a bad value would make every later epsilon wrong."""
    sigma, q = float(noise_multiplier), float(sample_rate)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"noise multiplier must be finite and > 0 (DP is never switched off), got {noise_multiplier}")
    if not (math.isfinite(q) and 0 < q <= 1):
        raise ValueError(f"sample rate must be in (0, 1], got {sample_rate}")
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps}")
    return sigma, q, int(steps)


def compact(history: Iterable[Sequence[float]]) -> list[Entry]:
    """Validated entries, zero-step entries dropped, equal neighbours merged.

    Merging is exact (composition of identical mechanisms just adds steps) and makes the
    PRV accountant, whose cost grows with the number of distinct entries, fast.
    """
    out: list[Entry] = []
    for item in history:
        if len(item) != 3:
            raise ValueError(f"history entries are (noise_multiplier, sample_rate, steps), got {item!r}")
        sigma, q, steps = check_entry(*item)
        if steps == 0:
            continue
        if out and out[-1][:2] == (sigma, q):
            out[-1] = (sigma, q, out[-1][2] + steps)
        else:
            out.append((sigma, q, steps))
    return out


def _check_delta(delta: float) -> float:
    if not (0 < float(delta) < 1):
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    return float(delta)


def _check_accountant(accountant: str) -> str:
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"unknown accountant {accountant!r}; use one of {', '.join(ACCOUNTANTS)}")
    return accountant


def epsilon(history: Iterable[Sequence[float]], delta: float, accountant: str = "prv") -> float:
    """Epsilon spent by the whole ``history`` at ``delta`` (0.0 for an empty history)."""
    entries = compact(history)
    delta, accountant = _check_delta(delta), _check_accountant(accountant)
    if not entries:
        return 0.0
    acc = create_accountant(mechanism=accountant)
    acc.history = entries
    if accountant == "rdp":
        eps = float(acc.get_epsilon(delta=delta, alphas=RDP_ORDERS))
    else:
        try:
            eps = float(acc.get_epsilon(delta=delta))
        except RuntimeError as exc:  # PRV's discretisation fails far outside useful budgets
            warnings.warn(f"PRV accountant failed ({exc}); using the RDP bound, which is valid and looser", RuntimeWarning, stacklevel=2)
            return epsilon(entries, delta, "rdp")
    return eps if math.isfinite(eps) else math.inf


def noise_multiplier_for(
    target_epsilon: float,
    delta: float,
    sample_rate: float,
    steps: int,
    prior_history: Iterable[Sequence[float]] = (),
    accountant: str = "prv",
    rel_tol: float = 1e-3,
) -> float:
    """Smallest sigma (to ``rel_tol``) with epsilon(prior + planned steps) <= target.

    The returned sigma always satisfies the target: the search keeps the upper end of
    the bracket. Raises ValueError when the prior history alone already reaches the
    target or no sigma up to MAX_SIGMA fits.
    """
    prior = compact(prior_history)
    check_entry(1.0, sample_rate, steps)
    if steps < 1:
        raise ValueError(f"planned steps must be >= 1, got {steps}")
    if not target_epsilon > 0:
        raise ValueError(f"target epsilon must be > 0, got {target_epsilon}")
    spent = epsilon(prior, delta, accountant)
    if spent >= target_epsilon:
        raise ValueError(f"privacy budget spent: epsilon {spent:.3f} already >= target {target_epsilon:g}; no further steps are possible")

    def log_excess(sigma: float, kind: str) -> float:
        """log(epsilon / target): <= 0 means sigma fits the budget."""
        eps = epsilon(prior + [(sigma, sample_rate, steps)], delta, kind)
        return math.log(eps / target_epsilon) if eps > 0 else -math.inf

    # RDP is fast and robust at any sigma: bracket with it, so the slower PRV accountant
    # is never evaluated at tiny sigmas where its domain explodes.
    hi = 0.25
    while log_excess(hi, "rdp") > 0:
        hi *= 2
        if hi > MAX_SIGMA:
            raise ValueError(f"no noise multiplier <= {MAX_SIGMA:g} keeps epsilon <= {target_epsilon:g} for {steps} steps at q={sample_rate:g}")
    sigma = _smallest_fitting(lambda x: log_excess(x, "rdp"), hi / 2, hi, rel_tol if accountant == "rdp" else 0.01)
    if accountant == "rdp":
        return sigma
    # PRV is tighter than RDP: its answer lies a little below RDP's (rarely above)
    hi = sigma
    while log_excess(hi, accountant) > 0:
        hi *= 1.1
        if hi > MAX_SIGMA:
            raise ValueError(f"no noise multiplier <= {MAX_SIGMA:g} keeps epsilon <= {target_epsilon:g}")
    lo = 0.8 * hi
    while log_excess(lo, accountant) <= 0:
        lo, hi = 0.8 * lo, lo
    return _smallest_fitting(lambda x: log_excess(x, accountant), lo, hi, rel_tol)


def _smallest_fitting(f: Callable[[float], float], lo: float, hi: float, rel_tol: float) -> float:
    """Root of the decreasing ``f`` in [lo, hi] (f(lo) > 0 >= f(hi) unless lo is a guess),
    returning a point with f <= 0 within rel_tol of the root.

    log(epsilon) is nearly linear in log(sigma), so regula falsi in log-log space (Illinois
    variant) needs 3-5 evaluations where bisection needs ~10: PRV evaluations cost seconds.
    """
    f_lo, f_hi = f(lo), f(hi)
    if f_hi > 0:
        raise ValueError("upper end of the bracket does not fit")
    while f_lo <= 0:  # the guess was not below the root: widen downwards
        lo, hi, f_hi = lo / 2, lo, f_lo
        f_lo = f(lo)
    side = 0
    while hi - lo > rel_tol * hi:
        a, b = math.log(lo), math.log(hi)
        t = f_lo / (f_lo - f_hi) if math.isfinite(f_lo) else 0.5
        x = math.exp(a + min(max(t, 0.05), 0.95) * (b - a))
        if x - lo <= 0.5 * rel_tol * hi or hi - x <= 0.5 * rel_tol * hi:
            x = hi * (1 - 0.6 * rel_tol) if t > 0.5 else lo + 0.6 * rel_tol * hi  # close the bracket
        fx = f(x)
        if fx <= 0:
            hi, f_hi = x, fx
            if side == 1:
                f_lo /= 2  # Illinois: stop one end from sticking
            side = 1
        else:
            lo, f_lo = x, fx
            if side == -1:
                f_hi /= 2
            side = -1
    return hi


def default_delta(n_local: int) -> float:
    """A delta well below 1/n: a delta near 1/n would allow leaking one whole record."""
    if n_local < 1:
        raise ValueError(f"a site needs at least one training example, got {n_local}")
    return min(1e-5, 1.0 / (10.0 * n_local))
