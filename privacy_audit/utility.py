"""Downstream utility: does a classifier trained with the synthetic images work on real ones?

Reported as GAN-augmentation studies on chest X-rays report it: accuracy and macro
one-vs-rest AUC on held-out real images, for train-on-synthetic/test-on-real (TSTR)
and for 1/10/50/100% of the real training data, each with and without the synthetic
images added. The same small CNN also serves as the offline fidelity feature
extractor (``privacy_audit.features``), so its architecture is versioned by name.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

from client.dataset import ImageSet

CLASSIFIER_ID = "small-cnn-v1"


def _block(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    """3x3 conv, GroupNorm, ReLU. GroupNorm, not BatchNorm: it trains several times faster
    than no normalisation and behaves the same for a 6-image regime, in train and eval mode."""
    return [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(4, c_out), nn.ReLU()]


class SmallCNN(nn.Module):
    """Four conv blocks, global average pool (the embedding), one linear layer.

    Small on purpose: it must train in seconds on one CPU core at a hospital site, so the
    first convolution already strides by 2, and larger images are average-pooled to 32 px
    first (64 px costs what 32 px costs).
    """

    def __init__(self, num_classes: int, image_size: int = 32, width: int = 16) -> None:
        super().__init__()
        c = width
        pool = max(1, image_size // 32)
        self.body = nn.Sequential(
            nn.AvgPool2d(pool) if pool > 1 else nn.Identity(),
            *_block(1, c, 2), *_block(c, 2 * c, 2), *_block(2 * c, 4 * c, 2), *_block(4 * c, 4 * c, 1),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.head = nn.Linear(4 * c, num_classes)
        self.embedding_dim = 4 * c

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    epochs: int,
    seed: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    min_steps: int = 60,
) -> tuple[SmallCNN, int]:
    """(trained model, optimizer steps). Deterministic for a seed (and a thread count).

    At least ``min_steps`` steps are taken so a 1%-of-data regime (a handful of images,
    one batch per epoch) is trained to fit, not just barely started.
    """
    if len(images) == 0:
        raise ValueError("cannot train a classifier on 0 images")
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's RNG
        torch.manual_seed(seed)
        model = SmallCNN(num_classes, image_size=int(images.shape[-1]))
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    rng = np.random.default_rng(seed)
    n = len(x)
    total = max(epochs * math.ceil(n / batch_size), min_steps)
    model.train()
    step = 0
    while step < total:
        perm = torch.from_numpy(rng.permutation(n))
        for start in range(0, n, batch_size):
            idx = perm[start : start + batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step >= total:
                break
    return model.eval(), total


@torch.no_grad()
def predict_proba(model: SmallCNN, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Softmax class probabilities, (N, K)."""
    model.eval()
    out = [torch.softmax(model(torch.from_numpy(np.ascontiguousarray(images[i : i + batch_size], dtype=np.float32))), 1) for i in range(0, len(images), batch_size)]
    return torch.cat(out).double().numpy()


def macro_auc(y_true: np.ndarray, proba: np.ndarray) -> float:
    """Mean one-vs-rest ROC AUC over the classes present in ``y_true`` (with ties handled).

    Classes absent from the test set have no defined AUC and are left out, as sklearn does
    not allow; NaN if fewer than two classes are present.
    """
    y_true = np.asarray(y_true)
    present = np.unique(y_true)
    if len(present) < 2:
        return float("nan")
    aucs = []
    for k in present:
        pos = y_true == k
        ranks = rankdata(proba[:, k])  # average ranks: ties count one half (Mann-Whitney U)
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        u = ranks[pos].sum() - n_pos * (n_pos + 1) / 2
        aucs.append(u / (n_pos * n_neg))
    return float(np.mean(aucs))


def nested_stratified_order(labels: np.ndarray, seed: int) -> np.ndarray:
    """An ordering of the indices whose every prefix is (close to) class-stratified.

    Taking the first n gives the n-image regime, so 1% is inside 10% inside 50%: regimes
    differ by amount of data, not by which patients happened to be drawn.
    """
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    key = np.empty(len(labels))
    for k in np.unique(labels):
        idx = np.flatnonzero(labels == k)
        idx = idx[rng.permutation(len(idx))]
        key[idx] = (np.arange(len(idx)) + 0.5) / len(idx)
    return np.lexsort((rng.random(len(labels)), key))


def regime_name(fraction: float) -> str:
    return f"real-{fraction * 100:g}%"


def _check(name: str, s: ImageSet) -> None:
    if s.labels is None or len(s) == 0:
        raise ValueError(f"utility needs labelled images: {name} has {'no labels' if len(s) else 'no images'}")


def utility_report(
    train_real: ImageSet,
    synthetic: ImageSet,
    test_real: ImageSet,
    *,
    epochs: int = 12,
    seed: int = 0,
    regimes: Sequence[float] = (0.01, 0.1, 0.5, 1.0),
    min_steps: int = 60,
) -> dict[str, Any]:
    """Accuracy and macro AUC on ``test_real`` for TSTR and every real-data regime (JSON-able).

    Every regime trains the same seeded CNN for ``epochs`` epochs (at least ``min_steps``
    optimizer steps) and is tested on all of ``test_real``.
    """
    for name, s in (("train_real", train_real), ("synthetic", synthetic), ("test_real", test_real)):
        _check(name, s)
    sizes = {train_real.image_size, synthetic.image_size, test_real.image_size}
    if len(sizes) != 1:
        raise ValueError(f"image sizes differ between real and synthetic sets: {sorted(sizes)}")
    if any(not 0 < f <= 1 for f in regimes):
        raise ValueError(f"regimes are fractions in (0, 1], got {list(regimes)}")
    t0 = time.perf_counter()
    k = max(train_real.num_classes, synthetic.num_classes, test_real.num_classes, 2)
    order = nested_stratified_order(train_real.labels, seed)

    def row(regime: str, train_on: str, fraction: float, real_idx: np.ndarray, with_syn: bool) -> dict[str, Any]:
        xs = [train_real.images[real_idx]] + ([synthetic.images] if with_syn else [])
        ys = [train_real.labels[real_idx]] + ([synthetic.labels] if with_syn else [])
        x, y = np.concatenate(xs), np.concatenate(ys)
        model, steps = train_classifier(x, y, k, epochs=epochs, seed=seed, min_steps=min_steps)
        proba = predict_proba(model, test_real.images)
        auc = macro_auc(test_real.labels, proba)
        return {
            "regime": regime,
            "train_on": train_on,
            "real_fraction": fraction,
            "n_real": int(len(real_idx)),
            "n_synthetic": int(len(synthetic)) if with_syn else 0,
            "n_train": int(len(x)),
            "steps": steps,
            "accuracy": float(np.mean(proba.argmax(1) == test_real.labels)),
            "macro_auc": None if np.isnan(auc) else auc,  # None, not NaN: audit.json stays strict JSON
        }

    rows = [row("tstr", "synthetic", 0.0, np.zeros(0, dtype=np.int64), True)]
    for frac in regimes:
        idx = np.sort(order[: max(1, int(round(frac * len(train_real))))])
        rows.append(row(regime_name(frac), "real", float(frac), idx, False))
        rows.append(row(regime_name(frac) + "+synthetic", "real+synthetic", float(frac), idx, True))
    counts = np.bincount(test_real.labels, minlength=k)
    return {
        "classifier": f"{CLASSIFIER_ID} (4 conv+GroupNorm layers, width 16, Adam lr 2e-3)",
        "epochs": epochs,
        "min_steps": min_steps,
        "seed": seed,
        "num_classes": k,
        "class_names": list(train_real.class_names),
        "n_train_real": len(train_real),
        "n_synthetic": len(synthetic),
        "n_test": len(test_real),
        "chance_accuracy": float(counts.max() / counts.sum()),
        "rows": rows,
        "time_s": round(time.perf_counter() - t0, 2),
    }
