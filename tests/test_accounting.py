"""Accounting math against an INDEPENDENT implementation: Google's dp-accounting.

Our ``epsilon`` runs on Opacus's accountants; dp-accounting shares no code with them.
RDP vs RDP must agree tightly (same bound, only the grid of orders differs); PRV vs PLD
are two different numerical methods for the same tight privacy curve, so a looser
tolerance, and PRV (an upper estimate) may sit slightly above PLD but never clearly below.
"""

from __future__ import annotations

import math

import pytest

dp_accounting = pytest.importorskip("dp_accounting")
from dp_accounting import GaussianDpEvent, PoissonSampledDpEvent, SelfComposedDpEvent  # noqa: E402
from dp_accounting.pld import PLDAccountant  # noqa: E402
from dp_accounting.rdp import RdpAccountant  # noqa: E402

from client.accounting import compact, default_delta, epsilon, noise_multiplier_for  # noqa: E402

DELTA = 1e-5
CASES = [(1.0, 0.01, 1000), (2.0, 0.35, 100), (4.0, 0.35, 500), (5.0, 1.0, 50)]


def reference(history, delta, kind):
    acc = RdpAccountant() if kind == "rdp" else PLDAccountant(value_discretization_interval=1e-3)
    for sigma, q, steps in history:
        acc.compose(SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(sigma)), steps))
    return acc.get_epsilon(delta)


@pytest.mark.parametrize("sigma,q,steps", CASES)
def test_rdp_matches_dp_accounting_rdp(sigma, q, steps):
    ours, ref = epsilon([(sigma, q, steps)], DELTA, "rdp"), reference([(sigma, q, steps)], DELTA, "rdp")
    assert ours == pytest.approx(ref, rel=0.01)


@pytest.mark.parametrize("sigma,q,steps", CASES)
def test_prv_matches_dp_accounting_pld(sigma, q, steps):
    ours, ref = epsilon([(sigma, q, steps)], DELTA, "prv"), reference([(sigma, q, steps)], DELTA, "pld")
    assert ref - 0.02 <= ours <= ref * 1.02 + 0.02
    assert ours < epsilon([(sigma, q, steps)], DELTA, "rdp")  # PRV is the tighter of the two


def test_heterogeneous_history_composes_like_dp_accounting():
    history = [(3.0, 0.3, 60), (2.0, 0.3, 40), (3.0, 0.3, 60)]
    assert epsilon(history, DELTA, "rdp") == pytest.approx(reference(history, DELTA, "rdp"), rel=0.01)
    ref = reference(history, DELTA, "pld")
    assert ref - 0.02 <= epsilon(history, DELTA, "prv") <= ref * 1.02 + 0.02


def test_epsilon_grows_with_steps_and_is_zero_for_nothing():
    assert epsilon([], DELTA) == 0.0
    assert epsilon([(2.0, 0.3, 0)], DELTA) == 0.0
    values = [epsilon([(3.0, 0.3, t)], DELTA, "rdp") for t in (10, 50, 200)]
    assert 0 < values[0] < values[1] < values[2]
    # splitting a run into rounds changes nothing: composition only adds steps
    assert epsilon([(3.0, 0.3, 50)] * 4, DELTA, "prv") == epsilon([(3.0, 0.3, 200)], DELTA, "prv")
    assert compact([(3.0, 0.3, 50), (3.0, 0.3, 0), (3.0, 0.3, 50), (2.0, 0.3, 5)]) == [(3.0, 0.3, 100), (2.0, 0.3, 5)]


@pytest.mark.parametrize("bad", [(0.0, 0.3, 10), (-1.0, 0.3, 10), (math.nan, 0.3, 10), (1.0, 0.0, 10), (1.0, 1.5, 10), (1.0, 0.3, -1), (1.0, 0.3, 2.5)])
def test_invalid_history_entries_are_refused(bad):
    with pytest.raises(ValueError):
        epsilon([bad], DELTA)


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_noise_multiplier_round_trip(accountant):
    q, steps, target = 0.3, 200, 8.0
    sigma = noise_multiplier_for(target, DELTA, q, steps, accountant=accountant)
    assert epsilon([(sigma, q, steps)], DELTA, accountant) <= target
    assert epsilon([(sigma, q, steps)], DELTA, accountant) >= 0.98 * target  # close, not wastefully noisy
    assert epsilon([(sigma * 0.99, q, steps)], DELTA, accountant) > target  # and the smallest such sigma


def test_noise_multiplier_accounts_for_prior_spending():
    q, steps, target = 0.3, 100, 8.0
    prior = [(4.0, q, 100)]
    fresh = noise_multiplier_for(target, DELTA, q, steps, accountant="rdp")
    sigma = noise_multiplier_for(target, DELTA, q, steps, prior_history=prior, accountant="rdp")
    assert sigma > fresh  # less budget left -> more noise
    assert epsilon(prior + [(sigma, q, steps)], DELTA, "rdp") <= target


def test_noise_multiplier_refuses_a_spent_budget():
    spent = [(1.0, 0.5, 500)]
    assert epsilon(spent, DELTA, "rdp") > 10
    with pytest.raises(ValueError, match="budget spent"):
        noise_multiplier_for(10.0, DELTA, 0.3, 100, prior_history=spent, accountant="rdp")


@pytest.mark.parametrize("n", [1, 10, 190, 10_000, 1_000_000])
def test_default_delta_is_well_below_one_over_n(n):
    assert 0 < default_delta(n) < 1.0 / n
    assert default_delta(n) <= 1e-5
