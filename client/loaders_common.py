"""What every loader shares: one record per 2-D image, intensity scaling, resizing,
and the assembly of records into an :class:`ImageSet`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from skimage.transform import resize

from client.dataset import ImageSet
from client.validation import DataError, ProblemLog


@dataclass
class Slice:
    """One 2-D image in [0, 1] at its original size, with where it came from."""

    image: np.ndarray  # float32 (H, W) in [0, 1]
    source: str
    group: str
    position: float | None = None  # slice position; None for a lone 2-D image
    domain: str = "image"
    label: int | None = None
    spacing: tuple[float, float] = (1.0, 1.0)  # (row, col) pixel size, for true proportions


def check_image_size(image_size: int) -> int:
    if not isinstance(image_size, (int, np.integer)) or not 8 <= int(image_size) <= 1024:
        raise DataError(f"image_size: must be an integer in 8..1024 (fedsynth uses 32 or 64), got {image_size!r}")
    return int(image_size)


def scale_dtype(x: np.ndarray) -> np.ndarray:
    """To [0, 1]: 8-bit by /255 (the common case keeps absolute grey levels), floats already
    in [0, 1] as they are; anything else (16-bit PNG, other floats) by its own min-max,
    as it carries no standard window."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    if x.dtype == bool:
        return x.astype(np.float32)
    if np.issubdtype(x.dtype, np.floating) and x.min() >= 0.0 and x.max() <= 1.0:
        return x.astype(np.float32)
    return minmax(x)


def minmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    return np.zeros_like(x) if hi <= lo else (x - lo) / (hi - lo)


def robust_range(x: np.ndarray) -> tuple[float, float]:
    """0.5/99.5 percentiles of the non-background voxels of a volume (its display range)."""
    x = x[np.isfinite(x)]
    fg = x[x > x.min()] if (x > x.min()).any() else x
    lo, hi = (float(v) for v in np.percentile(fg, [0.5, 99.5]))
    if x.min() >= 0:  # magnitude data (MRI): zero means no signal and stays black
        lo = float(x.min())
    return (lo, hi) if hi > lo else (float(x.min()), float(x.max()))


def window(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.clip((x.astype(np.float32) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def to_square(img: np.ndarray, spacing: tuple[float, float], size: int) -> np.ndarray:
    """Resize to ``size`` x ``size`` keeping true proportions: rescale to square pixels,
    pad the short side with the image minimum (background), then anti-aliased resize."""
    h, w = img.shape
    ph, pw = h * spacing[0], w * spacing[1]
    if not np.isclose(ph / h, pw / w):
        px = min(spacing)
        img = resize(img, (max(1, round(ph / px)), max(1, round(pw / px))), anti_aliasing=True, preserve_range=True)
        h, w = img.shape
    if h != w:
        side = max(h, w)
        canvas = np.full((side, side), float(img.min()), dtype=np.float32)
        r0, c0 = (side - h) // 2, (side - w) // 2
        canvas[r0 : r0 + h, c0 : c0 + w] = img
        img = canvas
    if img.shape[0] != size:
        img = resize(img, (size, size), anti_aliasing=img.shape[0] > size, preserve_range=True)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def report_odd_sizes(slices: list[Slice], log: ProblemLog) -> None:
    """Flag images whose size differs from the usual one among their peers: 2-D images in
    the same folder, slices of the same DICOM series or volume (different scans may differ).
    They are resized anyway in the default mode; strict mode refuses them."""
    peers: dict[tuple[str, str], list[Slice]] = {}
    for s in slices:
        key = ("folder", str(Path(s.source).parent)) if s.domain == "image" else ("volume", s.group)
        peers.setdefault(key, []).append(s)
    for items in peers.values():
        sizes = Counter(s.image.shape for s in items)
        if len(sizes) < 2:
            continue
        usual = sizes.most_common(1)[0][0]
        for s in items:
            if s.image.shape != usual:
                got, want = "x".join(map(str, s.image.shape)), "x".join(map(str, usual))
                log.report(s.source, f"size {got} differs from this folder's usual {want}; resized anyway", "warning")


def assemble(slices: list[Slice], image_size: int, where: str, class_names: list[str] | None = None) -> ImageSet:
    """Stack records into an ImageSet at ``image_size``; no valid image is always an error."""
    if not slices:
        raise DataError(f"{where}: no valid image found")
    x = np.stack([to_square(s.image, s.spacing, image_size) for s in slices])[:, None]
    labelled = [s.label is not None for s in slices]
    if any(labelled) and not all(labelled):
        raise DataError(f"{where}: some images have class labels and some do not")
    labels = np.asarray([s.label for s in slices], dtype=np.int64) if all(labelled) else None
    groups = np.asarray([s.group for s in slices])
    has_pos = len(set(groups.tolist())) < len(groups) or any(s.position is not None for s in slices)
    positions = np.asarray([s.position or 0.0 for s in slices], dtype=np.float64) if has_pos else None
    return ImageSet(
        images=(x * 2.0 - 1.0).astype(np.float32),
        labels=labels,
        class_names=list(class_names or []) if labels is not None else [],
        groups=groups,
        positions=positions,
        domains=np.asarray([s.domain for s in slices]),
        sources=[s.source for s in slices],
    )
