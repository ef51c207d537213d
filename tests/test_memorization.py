"""The memorization audit catches planted copies and leaves new patients alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage, stats

from client.dataset import ImageSet
from client.site_audit import flatten_scalars
from client.splits import holdout_split
from privacy_audit.memorization import TRANSFORM_SETS, Transform, audit_memorization, mann_whitney_closer, search_transforms
from privacy_audit.nn_search import ReferenceIndex, argmax_lowest
from privacy_audit.ssim import ssim_matrix

KEYS = {
    "threshold", "threshold_source", "quantile", "synthetic_nn_ssim", "holdout_nn_ssim", "synthetic_nn_index",
    "flagged_fraction", "flagged_count", "holdout_flagged_fraction", "mann_whitney", "top_pairs", "transform_search",
    "n_train", "n_synthetic", "n_holdout", "passed", "reasons",
}  # fmt: skip
SHIFTS = [(2, 0), (-2, 0), (0, 2), (0, -2), (2, 2), (-2, 2), (2, -2), (-2, -2)]


def plant(train: np.ndarray, k: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """k copies of training images per kind: exact, mirrored, shifted 2 px, noisy."""
    def pick() -> np.ndarray:
        return train[rng.choice(len(train), k, replace=False)]

    return {
        "exact": pick(),
        "hflip": pick()[:, :, ::-1],
        "shift2": np.stack([Transform(False, *SHIFTS[i % 8]).apply(im[None])[0] for i, im in enumerate(pick())]),
        "noise0.02": np.clip(pick() + rng.normal(0, 0.02, (k, *train.shape[1:])), -1, 1),
        "noise0.05": np.clip(pick() + rng.normal(0, 0.05, (k, *train.shape[1:])), -1, 1),
    }


def gan_like(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """New images near (not copies of) ``images``: smooth warp, slight blur and noise."""
    out = []
    for img in images:
        h = img.shape[0]
        d = [ndimage.gaussian_filter(rng.normal(size=(h, h)), 4) for _ in range(2)]
        d = [1.5 * v / np.abs(v).max() for v in d]
        yy, xx = np.mgrid[:h, :h].astype(float)
        warped = ndimage.map_coordinates(img, [yy + d[0], xx + d[1]], order=1, mode="nearest")
        out.append(np.clip(ndimage.gaussian_filter(warped, 0.6) + rng.normal(0, 0.02, warped.shape), -1, 1))
    return np.stack(out).astype(np.float32)


def recall_report(data: ImageSet, k: int, n_fresh: int, seed: int = 0) -> tuple[dict[str, float], float, dict]:
    """Audit fresh + planted synthetic images; recall per planted kind, held-out rate."""
    rng = np.random.default_rng(seed)
    tr, ho = holdout_split(data, 0.25, seed=seed)
    train, hold = data.images[tr, 0], data.images[ho, 0]
    planted = plant(train, k, rng)
    fresh = gan_like(hold[rng.integers(0, len(hold), n_fresh)], rng)
    report = audit_memorization(train, np.concatenate([fresh, *planted.values()]), hold).to_dict()
    s = np.array(report["synthetic_nn_ssim"])[n_fresh:].reshape(len(planted), k)
    recall = {name: float(np.mean(row > report["threshold"])) for name, row in zip(planted, s)}
    return recall, report["holdout_flagged_fraction"], report


def check_recall(recall: dict[str, float], holdout_rate: float) -> None:
    assert recall["exact"] == 1.0
    assert all(v >= 0.95 for v in recall.values()), recall
    assert holdout_rate <= 0.01


def test_catches_planted_copies_in_demo_slices() -> None:
    from client.loaders import load_demo

    demo = load_demo(32)
    keep = np.flatnonzero(np.isin(demo.groups, ["ct-cranium:axial", "mri-colin27:coronal", "mri-mni152:sagittal"]))
    recall, rate, report = recall_report(demo.subset(keep), k=10, n_fresh=20)
    check_recall(recall, rate)
    assert not report["passed"] and any("copies" in r for r in report["reasons"])


def test_catches_planted_copies_in_phantoms() -> None:
    from client.phantoms import make_phantoms

    recall, rate, _ = recall_report(make_phantoms(120, 32, seed=3), k=6, n_fresh=10)
    check_recall(recall, rate)


@pytest.mark.slow
def test_catches_planted_copies_full_demo() -> None:
    from client.loaders import load_demo

    recall, rate, _ = recall_report(load_demo(32), k=40, n_fresh=100)
    check_recall(recall, rate)


def test_new_patients_pass() -> None:
    from client.loaders import load_demo

    demo = load_demo(32)
    data = demo.subset(np.flatnonzero(np.isin(demo.groups, ["ct-cranium:coronal", "mri-colin27:axial"])))
    tr, ho = holdout_split(data, 0.3, seed=1)
    hold = data.images[ho, 0]  # "synthetic" = every other held-out slice: new, not copies
    report = audit_memorization(data.images[tr], hold[1::2], hold[0::2], transforms="flip")
    assert report.passed, report.reasons
    assert report.to_dict()["mann_whitney"]["z"] < 3


def test_transform_apply() -> None:
    x = np.arange(25, dtype=float).reshape(1, 5, 5)
    assert Transform().apply(x).tolist() == x.tolist()
    assert Transform(flip=True).apply(x)[0, 0].tolist() == [4, 3, 2, 1, 0]
    down = Transform(dy=2).apply(x)[0]
    assert down[2].tolist() == x[0, 0].tolist() and down[0].tolist() == x[0, 0].tolist()  # edge repeated
    right = Transform(dx=-1).apply(x)[0]
    assert right[:, 0].tolist() == x[0, :, 1].tolist() and right[:, 4].tolist() == x[0, :, 4].tolist()
    assert [t.name for t in TRANSFORM_SETS["flip"]] == ["identity", "hflip"]
    assert len(TRANSFORM_SETS["standard"]) == 26 and len(TRANSFORM_SETS["full"]) == 50
    assert Transform(True, -2, 1).name == "hflip+shift(-2,+1)"


def test_search_over_transforms_is_exact() -> None:
    rng = np.random.default_rng(5)
    ref = gan_like(np.clip(ndimage.gaussian_filter(rng.normal(size=(30, 20, 20)), (0, 2, 2)) * 4, -1, 1), rng)
    q = gan_like(ref[:8], rng)
    q[0] = Transform(True, 0, 0).apply(ref[3:4])[0]  # a mirrored copy
    q[1] = Transform(False, 1, -2).apply(ref[4:5])[0]  # a shifted copy
    ts = TRANSFORM_SETS["full"]
    got = search_transforms(ReferenceIndex(ref), q, ts)
    per_t = np.stack([ssim_matrix(t.apply(q), ref, 2.0) for t in ts])  # (T, Q, R)
    for i in range(len(q)):
        best_t = argmax_lowest(per_t[:, i].max(axis=1))  # ties: earlier transform
        assert got.transform[i] == ts[best_t].name
        assert got.index[i] == argmax_lowest(per_t[best_t, i])
        assert got.ssim[i] == pytest.approx(per_t[:, i].max(), abs=1e-12)
    assert got.transform[0] == "hflip" and got.index[0] == 3
    assert got.transform[1] == "shift(-1,+2)" and got.index[1] == 4


def test_report_forms() -> None:
    rng = np.random.default_rng(2)
    train = gan_like(np.clip(ndimage.gaussian_filter(rng.normal(size=(40, 16, 16)), (0, 2, 2)) * 4, -1, 1), rng)
    hold, syn = gan_like(train[:12], rng), np.concatenate([gan_like(train[12:20], rng), train[:2]])
    report = audit_memorization(train, syn, hold, top_k=4, transforms="flip")
    full = report.to_dict()
    assert set(full) == KEYS
    json.dumps(full, allow_nan=False)
    assert len(full["top_pairs"]) == 4 and set(full["top_pairs"][0]) == {"synthetic_index", "real_index", "ssim", "psnr", "transform"}
    assert full["top_pairs"][0]["ssim"] == pytest.approx(1.0) and full["top_pairs"][0]["synthetic_index"] in (8, 9)
    assert full["threshold_source"].startswith("held-out") and not full["passed"]
    agg = report.to_aggregate()
    json.dumps(agg, allow_nan=False)
    for key in ("synthetic_nn_ssim", "holdout_nn_ssim", "synthetic_nn_index", "top_pairs"):
        assert key not in agg  # nothing per image leaves the site
    flat = flatten_scalars(agg)  # what the Flower reply carries
    assert flat["flagged_count"] == full["flagged_count"] and "mann_whitney.z" in flat
    assert sum(agg["holdout_nn_histogram"]) == 12 and len(agg["synthetic_nn_quantiles"]) == len(agg["quantile_levels"])


def test_given_threshold_without_holdout() -> None:
    rng = np.random.default_rng(6)
    train = gan_like(np.clip(ndimage.gaussian_filter(rng.normal(size=(20, 16, 16)), (0, 2, 2)) * 4, -1, 1), rng)
    ok = audit_memorization(train, gan_like(train[:5], rng) * 0.2, None, threshold=0.95, transforms="none")
    assert ok.to_dict()["threshold_source"] == "given" and ok.to_dict()["mann_whitney"] is None
    bad = audit_memorization(train, train[:1], None, threshold=0.95, transforms="none")
    assert not bad.passed and bad.to_dict()["holdout_flagged_fraction"] is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(holdout=None), "no threshold and no held-out"),
        (dict(synthetic=np.zeros((0, 16, 16))), "synthetic images: empty set"),
        (dict(synthetic=np.zeros((2, 20, 20))), "synthetic images are 20x20 but training images are 16x16"),
        (dict(quantile=1.0), "quantile"),
        (dict(transforms="rotations"), "unknown transform set"),
    ],
)
def test_bad_input(kwargs: dict, message: str) -> None:
    args = dict(train=np.zeros((3, 16, 16)), synthetic=np.zeros((2, 16, 16)), holdout=np.zeros((2, 16, 16)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        audit_memorization(args.pop("train"), args.pop("synthetic"), args.pop("holdout"), **args)


def test_mann_whitney_matches_scipy() -> None:
    rng = np.random.default_rng(8)
    s, h = np.round(rng.normal(0.6, 0.1, 50), 2), np.round(rng.normal(0.55, 0.1, 40), 2)  # with ties
    ours = mann_whitney_closer(s, h)
    ref = stats.mannwhitneyu(s, h, alternative="greater", method="asymptotic", use_continuity=False)
    assert ours["u"] == pytest.approx(ref.statistic) and ours["p_value"] == pytest.approx(ref.pvalue, rel=1e-9)
    assert ours["z"] > 0
