"""Utility (TSTR / augmentation regimes): the classifier learns, shuffled labels do not, AUC is right."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from client.dataset import ImageSet
from privacy_audit.utility import macro_auc, nested_stratified_order, utility_report


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Two CPU cores are shared by several people: keep torch and BLAS on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(before)


def toy_set(n: int, seed: int, *, size: int = 32, k: int = 3, noise: float = 0.25, shift: float = 0.0) -> ImageSet:
    """An easy, separable k-class problem: a disc (class 0), horizontal or vertical bars."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    labels = (np.arange(n) % k).astype(np.int64)
    images = np.empty((n, 1, size, size), np.float32)
    for i, c in enumerate(labels):
        cx, cy = 0.5 + rng.normal(0, 0.06) + shift, 0.5 + rng.normal(0, 0.06)
        disc = np.where((xx - cx) ** 2 + (yy - cy) ** 2 < (0.2 + 0.03 * c) ** 2, 1.0, -1.0)
        pattern = [disc, np.sign(np.cos(2 * np.pi * 3 * yy)), np.sign(np.cos(2 * np.pi * 3 * xx))][c % 3]
        pattern = pattern * (1 - 0.2 * (c // 3))  # classes beyond 3 differ by contrast
        images[i, 0] = np.clip(pattern + rng.normal(0, noise, (size, size)), -1, 1)
    return ImageSet(images, labels, [f"class-{j}" for j in range(k)])


def rows_by_regime(report: dict) -> dict[str, dict]:
    return {r["regime"]: r for r in report["rows"]}


def test_macro_auc_matches_sklearn_on_a_fixed_case() -> None:
    rng = np.random.default_rng(3)
    y = np.array([0, 1, 2, 2, 1, 0, 0, 2, 1, 1, 2, 0])
    logits = rng.normal(size=(len(y), 3)) + 1.5 * np.eye(3)[y]
    logits[3, :] = logits[4, :]  # a tie between a positive and a negative
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = roc_auc_score(y, p, multi_class="ovr", average="macro")
    assert macro_auc(y, p) == pytest.approx(expected, abs=1e-12)
    assert macro_auc(y, np.eye(3)[y]) == 1.0
    assert np.isnan(macro_auc(np.zeros(4, dtype=int), np.full((4, 3), 1 / 3)))


def test_nested_order_is_stratified_and_nested() -> None:
    labels = np.repeat([0, 1, 2], [500, 300, 200])
    order = nested_stratified_order(labels, seed=1)
    assert sorted(order) == list(range(1000))
    counts = np.bincount(labels[order[:100]], minlength=3)
    assert abs(counts - [50, 30, 20]).max() <= 1


def test_report_regimes_sizes_and_accuracy_on_a_separable_problem() -> None:
    train, syn, test = toy_set(200, 0), toy_set(60, 1), toy_set(60, 2)
    rep = utility_report(train, syn, test, epochs=3, seed=0, regimes=(0.01, 0.1, 1.0), min_steps=30)
    rows = rows_by_regime(rep)
    assert list(rows) == ["tstr", "real-1%", "real-1%+synthetic", "real-10%", "real-10%+synthetic", "real-100%", "real-100%+synthetic"]
    assert rows["real-1%"]["n_train"] == 2 and rows["real-1%"]["n_real"] == 2
    assert rows["real-10%"]["n_train"] == 20
    assert rows["real-10%+synthetic"]["n_train"] == 20 + 60
    assert rows["real-100%"]["n_train"] == 200
    assert rows["tstr"]["n_train"] == 60 and rows["tstr"]["n_real"] == 0
    assert rows["real-100%"]["accuracy"] >= 0.9 and rows["real-100%"]["macro_auc"] >= 0.95
    assert rows["tstr"]["accuracy"] >= 0.9  # the "synthetic" images come from the same distribution
    assert rep["n_test"] == 60 and rep["chance_accuracy"] == pytest.approx(1 / 3)


def test_tstr_with_shuffled_synthetic_labels_is_near_chance() -> None:
    train, syn, test = toy_set(30, 0), toy_set(240, 1), toy_set(240, 2)
    syn.labels = np.random.default_rng(0).permutation(syn.labels)
    rows = rows_by_regime(utility_report(train, syn, test, epochs=2, seed=0, regimes=(1.0,), min_steps=30))
    assert rows["tstr"]["accuracy"] < 0.5  # chance is 1/3; the separable problem is learnt to > 0.9
    assert abs(rows["tstr"]["macro_auc"] - 0.5) < 0.15


def test_report_is_deterministic_for_a_seed() -> None:
    train, syn, test = toy_set(60, 0), toy_set(30, 1), toy_set(30, 2)
    a = utility_report(train, syn, test, epochs=1, seed=5, regimes=(0.5,), min_steps=5)
    b = utility_report(train, syn, test, epochs=1, seed=5, regimes=(0.5,), min_steps=5)
    assert a["rows"] == b["rows"]


def test_report_refuses_unlabelled_or_mismatched_sets() -> None:
    train, test = toy_set(20, 0), toy_set(20, 2)
    with pytest.raises(ValueError, match="labelled"):
        utility_report(train, ImageSet(train.images), test)
    with pytest.raises(ValueError, match="sizes differ"):
        utility_report(train, toy_set(20, 1, size=64), test)
    with pytest.raises(ValueError, match="fractions"):
        utility_report(train, toy_set(20, 1), test, regimes=(0.0,))
