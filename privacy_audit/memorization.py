"""Are the synthetic images copies of training patients? Compare two distributions.

For every synthetic image: the SSIM of its nearest training image (NN-SSIM). For every
held-out real image (a patient the generator never saw): the same. A generator that
memorizes puts synthetic images closer to the training set than a new patient naturally
comes; one that generalizes does not.

Search: each query is also compared mirrored and shifted by up to 2 px (see
``TRANSFORM_SETS``); its NN-SSIM is the maximum over these transforms, each searched
exactly (``privacy_audit.nn_search``). Held-out images get the same search, so the
threshold is calibrated on the same footing.

Threshold: the ``quantile`` (default 99th percentile, numpy's "higher" method, so at
most 1% of the held-out images lie above it) of the held-out NN-SSIM, unless one is
given. An image is flagged when its NN-SSIM is above (>) the threshold.

Verdict (``passed`` is True only when no rule fires; each firing rule adds a reason):

1. copies: a flagged synthetic image with NN-SSIM >= ``copy_ssim`` (0.99) is a copy,
   however many there are (in the demo set no two distinct slices come that close);
2. too many flagged: if synthetic images were as close to the training set as new
   patients (exchangeable with the held-out images), the chance that one lies above a
   threshold that c of n held-out images exceed is Beta(c + 1, n - c) distributed (exact
   for the calibrated threshold, an order statistic), so the number flagged is
   beta-binomial; the audit fails when the count is improbable under it (one-sided
   p < ``alpha`` = 0.01). A small held-out set makes this rule lenient, honestly: it
   cannot pin the natural rate down. With a given threshold and no held-out set, any
   flagged image fails;
3. systematically closer: one-sided Mann-Whitney U of synthetic vs held-out NN-SSIM
   (the data-copying test of Meehan et al., 2020) with z > ``max_z`` (3.0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from scipy import stats

from privacy_audit.nn_search import ReferenceIndex
from privacy_audit.ssim import as_stack

MAX_SHIFT = 2
AGG_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95, 0.99)  # quantiles in the aggregate (no min/max)
HIST_EDGES = tuple(np.round(np.linspace(-1.0, 1.0, 21), 2).tolist())
StageProgress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class Transform:
    """Mirror left-right (``flip``), then move the content by ``dy`` rows and ``dx``
    columns, repeating edge pixels into the uncovered border."""

    flip: bool = False
    dy: int = 0
    dx: int = 0

    @property
    def name(self) -> str:
        parts = ["hflip"] if self.flip else []
        if self.dy or self.dx:
            parts.append(f"shift({self.dy:+d},{self.dx:+d})")
        return "+".join(parts) or "identity"

    def apply(self, images: np.ndarray) -> np.ndarray:
        """(N, H, W) -> (N, H, W) with out[i, j] = in[i - dy, j - dx]."""
        x = images[:, :, ::-1] if self.flip else images
        p = max(abs(self.dy), abs(self.dx))
        if p:
            h, w = x.shape[1:]
            x = np.pad(x, ((0, 0), (p, p), (p, p)), mode="edge")[:, p - self.dy : p - self.dy + h, p - self.dx : p - self.dx + w]
        return np.ascontiguousarray(x)


def _shifts(flip: bool) -> list[Transform]:
    r = range(-MAX_SHIFT, MAX_SHIFT + 1)
    return [Transform(flip, dy, dx) for dy in r for dx in r if dy or dx]


# Identity first: its answers are the floor that lets the other searches prune.
TRANSFORM_SETS: dict[str, list[Transform]] = {
    "none": [Transform()],
    "flip": [Transform(), Transform(flip=True)],
    "standard": [Transform(), Transform(flip=True), *_shifts(False)],  # mirror, or shift <= 2 px
    "full": [Transform(), Transform(flip=True), *_shifts(False), *_shifts(True)],  # also both at once
}


@dataclass
class Match:
    """Per query: best training image over all transforms searched."""

    index: np.ndarray
    ssim: np.ndarray
    psnr: np.ndarray
    transform: list[str]


@dataclass
class MemorizationReport:
    """Everything the audit found; ``to_dict`` for a local report, ``to_aggregate`` for a server."""

    threshold: float
    threshold_source: str
    quantile: float
    synthetic: Match
    holdout: Match | None
    n_train: int
    mann_whitney: dict[str, float] | None
    top_k: int
    transform_search: list[str]
    passed: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def flagged(self) -> np.ndarray:
        return self.synthetic.ssim > self.threshold

    @property
    def holdout_flagged_fraction(self) -> float | None:
        return None if self.holdout is None or not len(self.holdout.ssim) else float(np.mean(self.holdout.ssim > self.threshold))

    def top_pairs(self) -> list[dict[str, Any]]:
        order = np.argsort(-self.synthetic.ssim, kind="stable")[: self.top_k]
        s = self.synthetic
        return [{"synthetic_index": int(i), "real_index": int(s.index[i]), "ssim": float(s.ssim[i]), "psnr": float(s.psnr[i]), "transform": s.transform[i]} for i in order]

    def to_dict(self) -> dict[str, Any]:
        """Full JSON form (per-image values: stays where the training data is)."""
        h = self.holdout
        return {
            "threshold": float(self.threshold),
            "threshold_source": self.threshold_source,
            "quantile": float(self.quantile),
            "synthetic_nn_ssim": [float(v) for v in self.synthetic.ssim],
            "holdout_nn_ssim": None if h is None else [float(v) for v in h.ssim],
            "synthetic_nn_index": [int(v) for v in self.synthetic.index],
            "flagged_fraction": float(np.mean(self.flagged)) if len(self.flagged) else 0.0,
            "flagged_count": int(self.flagged.sum()),
            "holdout_flagged_fraction": self.holdout_flagged_fraction,
            "mann_whitney": self.mann_whitney,
            "top_pairs": self.top_pairs(),
            "transform_search": list(self.transform_search),
            "n_train": int(self.n_train),
            "n_synthetic": len(self.synthetic.ssim),
            "n_holdout": 0 if h is None else len(h.ssim),
            "passed": bool(self.passed),
            "reasons": list(self.reasons),
        }

    def to_aggregate(self) -> dict[str, Any]:
        """What a hospital may send to the server: counts, fractions, quantiles, histograms
        and the test statistics; no per-image index or value."""
        full = self.to_dict()
        out = {k: full[k] for k in ("threshold", "threshold_source", "quantile", "flagged_fraction", "flagged_count", "holdout_flagged_fraction", "mann_whitney", "transform_search", "n_train", "n_synthetic", "n_holdout", "passed", "reasons")}
        out["quantile_levels"] = list(AGG_LEVELS)
        out["histogram_edges"] = list(HIST_EDGES)
        for name, m in (("synthetic", self.synthetic), ("holdout", self.holdout)):
            v = np.asarray([] if m is None else m.ssim)
            out[f"{name}_nn_quantiles"] = [float(q) for q in np.quantile(v, AGG_LEVELS)] if len(v) else None
            out[f"{name}_nn_histogram"] = [int(c) for c in np.histogram(np.clip(v, -1, 1), bins=HIST_EDGES)[0]] if len(v) else None
        return out


def search_transforms(index: ReferenceIndex, queries: np.ndarray, transforms: list[Transform], progress: Callable[[int, int], None] | None = None) -> Match:
    """Per query, the best training image over all ``transforms`` (ties: earlier transform).

    Each transform is an exact search; after the first, the best so far is passed as a
    floor, so pairs that cannot beat it are skipped (the maximum stays exact)."""
    n = len(queries)
    best = Match(np.full(n, -1, np.int64), np.full(n, -np.inf), np.full(n, np.nan), ["identity"] * n)
    for k, t in enumerate(transforms):
        floor = None if k == 0 else np.nextafter(best.ssim, np.inf)  # strictly better only
        res = index.search(t.apply(queries), floor=floor, progress=None if progress is None else lambda d, _n, k=k: progress(k * n + d, len(transforms) * n))
        better = res.ssim > best.ssim
        best.index[better], best.ssim[better], best.psnr[better] = res.index[better], res.ssim[better], res.psnr[better]
        for i in np.flatnonzero(better):
            best.transform[i] = t.name
    return best


def audit_memorization(
    train: np.ndarray,
    synthetic: np.ndarray,
    holdout: np.ndarray | None,
    *,
    threshold: float | None = None,
    quantile: float = 0.99,
    top_k: int = 16,
    data_range: float = 2.0,
    transforms: str = "standard",
    copy_ssim: float = 0.99,
    alpha: float = 0.01,
    max_z: float = 3.0,
    progress: StageProgress | None = None,
) -> MemorizationReport:
    """Memorization audit of ``synthetic`` against ``train``, calibrated on ``holdout``."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    if transforms not in TRANSFORM_SETS:
        raise ValueError(f"unknown transform set {transforms!r}; choose one of {', '.join(TRANSFORM_SETS)}")
    tr, syn = as_stack(train, "training images"), as_stack(synthetic, "synthetic images")
    ho = None if holdout is None else as_stack(holdout, "held-out images")
    for name, arr in (("training images", tr), ("synthetic images", syn)) + ((("held-out images", ho),) if ho is not None else ()):
        if len(arr) == 0:
            raise ValueError(f"{name}: empty set")
        if arr.shape[1:] != tr.shape[1:]:
            raise ValueError(f"{name} are {arr.shape[1]}x{arr.shape[2]} but training images are {tr.shape[1]}x{tr.shape[2]}")
    if threshold is None and ho is None:
        raise ValueError("no threshold and no held-out images to calibrate one: give either")
    ts = TRANSFORM_SETS[transforms]
    index = ReferenceIndex(tr, data_range)

    def stage(name: str) -> Callable[[int, int], None] | None:
        return None if progress is None else lambda d, n: progress(name, d, n)

    held = None if ho is None else search_transforms(index, ho, ts, stage("held-out"))
    syn_m = search_transforms(index, syn, ts, stage("synthetic"))
    if threshold is None:
        thr, source = float(np.quantile(held.ssim, quantile, method="higher")), f"held-out NN-SSIM {quantile:.0%} quantile (n={len(held.ssim)})"
    else:
        thr, source = float(threshold), "given"
    mw = None if held is None else mann_whitney_closer(syn_m.ssim, held.ssim)
    report = MemorizationReport(thr, source, quantile, syn_m, held, len(tr), mw, top_k, [t.name for t in ts])
    report.reasons = _verdict(report, copy_ssim, alpha, max_z)
    report.passed = not report.reasons
    return report


def mann_whitney_closer(synthetic: np.ndarray, holdout: np.ndarray) -> dict[str, float]:
    """One-sided Mann-Whitney U (normal approximation, tie-corrected), H1: synthetic
    NN-SSIM tends to be larger (closer to the training set) than held-out NN-SSIM.
    ``u`` counts (synthetic, held-out) pairs where the synthetic image is closer (ties
    count 1/2); z > 0 points toward copying, and p is its one-sided tail."""
    s, h = np.asarray(synthetic, np.float64), np.asarray(holdout, np.float64)
    n1, n2 = len(s), len(h)
    both = np.concatenate([s, h])
    u = float(stats.rankdata(both)[:n1].sum() - n1 * (n1 + 1) / 2.0)
    n = n1 + n2
    _, counts = np.unique(both, return_counts=True)
    var = n1 * n2 / 12.0 * ((n + 1) - float((counts**3 - counts).sum()) / (n * (n - 1))) if n > 1 else 0.0
    z = (u - n1 * n2 / 2.0) / np.sqrt(var) if var > 0 else 0.0
    return {"u": u, "p_value": float(stats.norm.sf(z)), "z": float(z)}


def _verdict(r: MemorizationReport, copy_ssim: float, alpha: float, max_z: float) -> list[str]:
    """The reasons the audit fails (empty: it passes); rules in the module docstring."""
    reasons = []
    s = r.synthetic.ssim
    copies = int(((s >= copy_ssim) & r.flagged).sum())
    if copies:
        reasons.append(f"{copies} synthetic image(s) with NN-SSIM >= {copy_ssim:g} to a training image: copies")
    k, n = int(r.flagged.sum()), len(s)
    if r.holdout is None:
        p_tail, base = (0.0 if k else 1.0), "no held-out set: none allowed"
    else:
        nh = len(r.holdout.ssim)
        c = int((r.holdout.ssim > r.threshold).sum())
        p_tail = float(stats.betabinom.sf(k - 1, n, c + 1, max(nh - c, 1))) if k else 1.0
        base = f"{c} of {nh} held-out images are; p={p_tail:.2g}"
    if k and p_tail < alpha:
        reasons.append(f"{k} of {n} synthetic images ({k / n:.1%}) above NN-SSIM threshold {r.threshold:.3f} ({base})")
    if r.mann_whitney is not None and r.mann_whitney["z"] > max_z:
        mw = r.mann_whitney
        reasons.append(f"synthetic images are systematically closer to the training set than held-out patients (Mann-Whitney z={mw['z']:.2f} > {max_z:g}, p={mw['p_value']:.2g})")
    return reasons
