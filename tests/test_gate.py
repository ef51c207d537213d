"""Release gate and the aggregate-only audit reply format."""

from client.site_audit import flatten_scalars
from privacy_audit.gate import decide
from server.federated_audit import unflatten

import pytest


def ok(site, eps=5.0):
    return {"site": site, "passed": True, "epsilon": eps, "flagged_fraction": 0.0, "threshold": 0.8, "reasons": []}


def test_gate_passes_only_when_every_site_passes_within_budget():
    assert decide([ok("a"), ok("b")], 2, 10.0).passed
    d = decide([ok("a"), {**ok("b"), "passed": False, "reasons": ["3.0% above threshold"]}], 2, 10.0)
    assert not d.passed and any("b: memorization" in r and "3.0%" in r for r in d.reasons)
    d = decide([ok("a"), ok("b", eps=10.5)], 2, 10.0)
    assert not d.passed and any("budget exceeded" in r for r in d.reasons)
    d = decide([ok("a")], 2, 10.0)
    assert not d.passed and "only 1 of 2" in d.reasons[0]
    d = decide([ok("a"), {"site": "b", "error": "boom"}], 2, 10.0)
    assert not d.passed and "b: audit failed: boom" in d.reasons


def test_flatten_round_trip_and_refuses_non_aggregates():
    agg = {"site": "s", "passed": True, "mann_whitney": {"u": 3.0, "p_value": 0.5}, "quantiles": [0.1, 0.2], "reasons": ["x"]}
    flat = flatten_scalars(agg)
    assert flat["mann_whitney.u"] == 3.0 and flat["passed"] == 1
    back = unflatten(flat)
    assert back["mann_whitney"] == {"u": 3.0, "p_value": 0.5} and back["quantiles"] == [0.1, 0.2]
    import numpy as np

    with pytest.raises(TypeError, match="not an aggregate"):
        flatten_scalars({"nn_index": np.arange(3)})
    with pytest.raises(TypeError):
        flatten_scalars({"rows": [{"real_index": 1}]})
