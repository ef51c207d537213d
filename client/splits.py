"""A hospital's own train / held-out split: the held-out images never train.

The audit compares synthetic images with how close a genuinely new patient comes to
the training set, so the split must not leave near-copies on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from client.dataset import ImageSet


@dataclass
class SiteData:
    """One hospital's images: ``train`` feeds DP training, ``holdout`` never does."""

    name: str
    train: ImageSet
    holdout: ImageSet


def split_site(name: str, data: ImageSet, fraction: float, seed: int) -> SiteData:
    """Hold out whole slabs/patients (see client.splits) of a site's images."""
    train_idx, holdout_idx = holdout_split(data, fraction, seed=seed)
    return SiteData(name, data.subset(train_idx), data.subset(holdout_idx))


def holdout_split(data: ImageSet, fraction: float, seed: int = 0, gap: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) indices; held-out images never train.

    With groups and slice positions, whole contiguous slabs are held out in every group,
    and ``gap`` slices on each side of a slab are dropped from both sides: neighbouring
    slices are near-copies, and a held-out slice next to a training slice would make the
    held-out baseline look like memorization. With groups only, whole groups (patients)
    are held out. Otherwise a random split.
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    n = len(data)
    rng = np.random.default_rng(seed)
    if data.groups is not None and data.positions is not None:
        train, held = [], []
        for g in sorted(set(data.groups.tolist())):
            idx = np.flatnonzero(data.groups == g)
            idx = idx[np.argsort(data.positions[idx], kind="stable")]
            k = int(round(fraction * len(idx)))
            if len(idx) < 3 or k == 0:
                train.extend(idx.tolist())
                continue
            start = int(rng.integers(0, len(idx) - k + 1))
            held.extend(idx[start : start + k].tolist())
            train.extend(idx[: max(0, start - gap)].tolist())
            train.extend(idx[start + k + gap :].tolist())
        tr, ho = np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(held, dtype=np.int64))
    elif data.groups is not None and len(set(data.groups.tolist())) > 1:
        groups = np.array(sorted(set(data.groups.tolist())), dtype=object)
        groups = groups[rng.permutation(len(groups))]
        k = max(1, int(round(fraction * len(groups))))
        held_groups = set(groups[:k].tolist())
        mask = np.array([g in held_groups for g in data.groups.tolist()])
        tr, ho = np.flatnonzero(~mask), np.flatnonzero(mask)
    else:
        perm = rng.permutation(n)
        k = max(1, int(round(fraction * n)))
        tr, ho = np.sort(perm[k:]), np.sort(perm[:k])
    if len(tr) == 0 or len(ho) == 0:
        raise ValueError(f"held-out split of {n} images at fraction {fraction} leaves an empty side")
    return tr, ho
