"""The per-site privacy ledger: cumulative, append-only, persistent, tamper-evident."""

from __future__ import annotations

import json

import pytest

from client.accounting import epsilon
from client.ledger import BudgetExceeded, LedgerError, PrivacyLedger

DELTA = 1e-5
ROUND = (20.0, 1.0, 40)  # sigma, q, steps: q=1 makes the RDP accountant closed-form, i.e. fast


def new(tmp_path, target=8.0, **kw):
    return PrivacyLedger(tmp_path / "site.json", target_epsilon=target, delta=DELTA, accountant="rdp", **kw)


def test_only_grows_and_epsilon_is_monotone(tmp_path):
    ledger = new(tmp_path)
    lengths, eps = [len(ledger.history)], [ledger.spent_epsilon()]
    for r in range(3):
        after = ledger.record(*ROUND, meta={"round": r + 1})
        lengths.append(len(ledger.history))
        eps.append(ledger.spent_epsilon())
        assert after == pytest.approx(eps[-1])
    assert lengths == [0, 1, 2, 3]
    assert eps[0] == 0.0 and all(a < b for a, b in zip(eps, eps[1:]))
    assert eps[-1] == pytest.approx(epsilon([ROUND] * 3, DELTA, "rdp"))
    assert [e["meta"]["round"] for e in ledger.entries] == [1, 2, 3]


def test_survives_a_restart(tmp_path):
    first = new(tmp_path)
    first.record(*ROUND)
    first.record(*ROUND)
    again = new(tmp_path)  # a fresh process opening the same file
    assert again.history == first.history
    assert again.spent_epsilon() == pytest.approx(first.spent_epsilon())
    assert PrivacyLedger.read_only(tmp_path / "site.json").spent_epsilon() == pytest.approx(first.spent_epsilon())


def test_refuses_to_go_over_budget_and_leaves_the_file_untouched(tmp_path):
    ledger = new(tmp_path, target=epsilon([ROUND] * 2, DELTA, "rdp") + 0.01)
    ledger.record(*ROUND)
    ledger.record(*ROUND)
    assert ledger.would_exceed(*ROUND)
    assert not ledger.would_exceed(ROUND[0], ROUND[1], 0)
    before = (tmp_path / "site.json").read_bytes()
    with pytest.raises(BudgetExceeded):
        ledger.record(*ROUND)
    assert (tmp_path / "site.json").read_bytes() == before
    assert len(new(tmp_path, target=ledger.target_epsilon).history) == 2


def test_a_second_process_cannot_lose_entries(tmp_path):
    a, b = new(tmp_path), new(tmp_path)
    a.record(*ROUND)
    b.record(*ROUND)  # b re-reads the file first: a's entry is kept
    assert len(new(tmp_path).history) == 2
    assert b.spent_epsilon() == pytest.approx(epsilon([ROUND] * 2, DELTA, "rdp"))


def test_atomic_write_leaves_no_temp_files(tmp_path):
    ledger = new(tmp_path)
    for _ in range(3):
        ledger.record(*ROUND)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.json"]


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2],  # truncated
        lambda text: "",
        lambda text: text.replace('"steps": 40', '"steps": 4', 1),  # hand edit: fewer steps
        lambda text: json.dumps({**json.loads(text), "entries": []}),  # history wiped
    ],
)
def test_corrupt_or_edited_file_is_a_clear_error_not_a_reset(tmp_path, damage):
    ledger = new(tmp_path)
    ledger.record(*ROUND)
    path = tmp_path / "site.json"
    path.write_text(damage(path.read_text()))
    with pytest.raises(LedgerError, match="site.json"):
        new(tmp_path)
    with pytest.raises(LedgerError, match="site.json"):
        ledger.record(*ROUND)  # an open instance notices on its next write too


def test_delta_and_accountant_are_fixed_and_budget_only_raised_explicitly(tmp_path):
    ledger = new(tmp_path)
    ledger.record(*ROUND)
    path = tmp_path / "site.json"
    with pytest.raises(LedgerError, match="delta"):
        PrivacyLedger(path, target_epsilon=8.0, delta=1e-6, accountant="rdp")
    with pytest.raises(LedgerError, match="accountant"):
        PrivacyLedger(path, target_epsilon=8.0, delta=DELTA, accountant="prv")
    with pytest.raises(LedgerError, match="raise_target"):
        PrivacyLedger(path, target_epsilon=20.0, delta=DELTA, accountant="rdp")
    adopted = PrivacyLedger(path, target_epsilon=8.0, delta=None, accountant=None)
    assert (adopted.delta, adopted.accountant) == (DELTA, "rdp")
    stricter = PrivacyLedger(path, target_epsilon=1.0, delta=DELTA, accountant="rdp")
    assert stricter.target_epsilon == 1.0 and stricter.would_exceed(*ROUND)
    ledger.raise_target(20.0, reason="ethics board approval 2026-11")
    assert PrivacyLedger(path, target_epsilon=20.0, delta=DELTA, accountant="rdp").target_epsilon == 20.0
    assert json.loads(path.read_text())["target_changes"][0]["to"] == 20.0


def test_read_only_ledger_refuses_to_record_and_missing_file_is_an_error(tmp_path):
    new(tmp_path).record(*ROUND)
    with pytest.raises(LedgerError, match="read-only"):
        PrivacyLedger.read_only(tmp_path / "site.json").record(*ROUND)
    with pytest.raises(FileNotFoundError):
        PrivacyLedger.read_only(tmp_path / "other.json")
    with pytest.raises(LedgerError, match="needs target_epsilon and delta"):
        PrivacyLedger(tmp_path / "other.json")


def test_invalid_steps_are_refused_before_writing(tmp_path):
    ledger = new(tmp_path)
    for bad in [(0.0, 1.0, 10), (3.0, 1.5, 10), (3.0, 1.0, -1)]:
        with pytest.raises(ValueError):
            ledger.record(*bad)
    assert ledger.history == []
