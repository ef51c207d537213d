"""Build the bundled demo set of real head CT and brain MRI slices.

Sources (all reachable through package registries, none needed at run time):
Debian ``invesalius-examples`` (one head CT), Debian ``mricron-data`` (Colin27 T1,
``ch2.nii.gz`` only: ``ch2better`` is the same person) and nilearn's bundled MNI152
T1 template. Slices are taken at a spacing and near-duplicates removed so that a
memorization audit on this set can tell a copy from a new image.

Run: ``python -m client.demo_build [OUT]``.
"""

from __future__ import annotations

import io
import json
import os
import plistlib
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage.transform import resize

from client.demo_stats import greedy_dedupe, holdout_report

CT_PATH = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
COLIN_PATH = Path("/usr/share/mricron/templates/ch2.nii.gz")
CLASS_NAMES = ["ct-axial", "ct-coronal", "ct-sagittal", "mri-axial", "mri-coronal", "mri-sagittal"]
PLANES = ("axial", "coronal", "sagittal")
STORE_SIZE = 64
DEFAULT_OUT = Path(__file__).parent / "demo_data" / f"fedsynth_demo_{STORE_SIZE}.npz"
APT_HINT = "apt-get install invesalius-examples mricron-data"
# CT window (Hounsfield units): a wide brain window, so brain tissue is grey,
# CSF darker, and the skull a white ring rather than a flat blob.
CT_WINDOW = (40.0, 160.0)  # (center, width)


@dataclass
class Volume:
    """A head volume resampled to 1 mm isotropic, axes (superior->inferior,
    anterior->posterior, patient right->left), values already windowed to [0, 1]."""

    name: str
    modality: str  # "CT" or "MRI"
    data: np.ndarray
    source: str


def mni152_path() -> Path:
    """The MNI152 T1 file shipped inside the nilearn package (works offline)."""
    from nilearn.datasets.struct import MNI152_FILE_PATH

    return Path(MNI152_FILE_PATH)


def missing_sources() -> list[str]:
    """Source files that are not installed (empty list = ready to build)."""
    paths = [CT_PATH, COLIN_PATH]
    try:
        paths.append(mni152_path())
    except ImportError:
        return ["nilearn (pip install nilearn)"]
    return [str(p) for p in paths if not p.exists()]


def window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """Linear window to [0, 1] (values outside are clipped)."""
    lo = center - width / 2.0
    return np.clip((x.astype(np.float32) - lo) / width, 0.0, 1.0)


def _to_iso(vol: np.ndarray, spacing: tuple[float, float, float], mm: float = 1.0) -> np.ndarray:
    """Resample to ``mm`` isotropic voxels so all three planes have true proportions."""
    zoom = [s / mm for s in spacing]
    if np.allclose(zoom, 1.0):
        return vol.astype(np.float32)
    return ndimage.zoom(vol.astype(np.float32), zoom, order=1)


def load_ct(path: Path = CT_PATH) -> Volume:
    """The InVesalius ``Cranium.inv3`` head CT (a tar.gz with a raw int16 HU matrix)."""
    with tarfile.open(path, "r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers()}
        main = plistlib.load(tar.extractfile(members["main.plist"]))  # type: ignore[arg-type]
        info = main["matrix"]
        raw = tar.extractfile(members[info["filename"]]).read()  # type: ignore[union-attr]
    hu = np.frombuffer(raw, dtype=np.dtype(info["dtype"])).reshape(info["shape"])
    sx, sy, sz = (float(s) for s in main["spacing"])  # x, y in-plane; z between slices
    hu = _to_iso(hu, (sz, sy, sx))
    hu[~_body_mask(hu)] = -1024.0  # remove the head rest and couch: air
    # matrix is (slice, row, col): slice 0 is the most inferior, rows run posterior->
    # anterior, cols patient right->left; flip the first two to match load_mri's layout.
    vol = window(hu, *CT_WINDOW)[::-1, ::-1].copy()
    return Volume("ct-cranium", "CT", vol, f"invesalius-examples:{path.name}")


def _body_mask(hu: np.ndarray) -> np.ndarray:
    """The patient: the largest connected component above -500 HU, holes filled.

    Without this the curved head rest shows in every slice and sets the crop box."""
    lab, n = ndimage.label(hu > -500.0)
    if n == 0:
        return np.zeros(hu.shape, dtype=bool)
    sizes = ndimage.sum_labels(np.ones_like(lab), lab, index=np.arange(1, n + 1))
    body = lab == (1 + int(np.argmax(sizes)))
    body = ndimage.binary_closing(body, iterations=2)
    filled = np.stack([ndimage.binary_fill_holes(s) for s in body])
    return ndimage.binary_dilation(filled, iterations=1)


def load_mri(path: Path, name: str) -> Volume:
    """A T1 NIfTI, reoriented to RAS, windowed on robust percentiles of the head."""
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(str(path)))
    d = np.asarray(img.dataobj, dtype=np.float32)
    d = _to_iso(d, tuple(float(z) for z in img.header.get_zooms()[:3]))
    hi = np.percentile(d[d > 0.05 * d.max()], 99.9)
    d = np.clip(d / hi, 0.0, 1.0)  # 0 stays background black
    # RAS (x, y, z) -> (S->I, A->P, R->L): radiological left-right, like the CT
    vol = d.transpose(2, 1, 0)[::-1, ::-1, ::-1].copy()
    return Volume(name, "MRI", vol, f"{path.name}")


def _crop_box(vol: np.ndarray, thr: float = 0.1, margin: int = 4) -> tuple[slice, ...]:
    """Bounding box of the head (all voxels above ``thr``) plus a margin."""
    idx = np.argwhere(vol > thr)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + margin + 1, vol.shape)
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def _square(img: np.ndarray, side: int) -> np.ndarray:
    """Centre ``img`` on a black square canvas of ``side`` pixels."""
    out = np.zeros((side, side), dtype=np.float32)
    r0, c0 = (side - img.shape[0]) // 2, (side - img.shape[1]) // 2
    out[r0 : r0 + img.shape[0], c0 : c0 + img.shape[1]] = img
    return out


def slice_volume(vol: Volume, plane: str, step_mm: int, min_fill: float) -> list[tuple[float, np.ndarray]]:
    """(position in mm, 64-px image in [0, 1]) for every ``step_mm`` slice that is not near-empty."""
    axis = PLANES.index(plane)
    data = vol.data[_crop_box(vol.data)]
    side = max(s for i, s in enumerate(data.shape) if i != axis)
    out = []
    for k in range(0, data.shape[axis], step_mm):
        sl = np.take(data, k, axis=axis)
        img = resize(_square(sl, side), (STORE_SIZE, STORE_SIZE), anti_aliasing=True, preserve_range=True)
        if (img > 0.1).mean() >= min_fill:
            out.append((float(k), np.clip(img, 0.0, 1.0)))
    return out


def _volumes() -> list[Volume]:
    return [load_ct(), load_mri(COLIN_PATH, "mri-colin27"), load_mri(mni152_path(), "mri-mni152")]


def build_demo(
    out_path: str | Path = DEFAULT_OUT,
    step_mm: int = 2,
    min_fill: float = 0.06,
    max_ssim: float = 0.98,
) -> dict:
    """Slice, filter, de-duplicate and save the demo set; returns its stats."""
    missing = missing_sources()
    if missing:
        raise FileNotFoundError(f"demo sources missing: {', '.join(missing)}; run: {APT_HINT}")
    images, labels, groups, positions, domains = [], [], [], [], []
    for vol in _volumes():
        for plane in PLANES:
            label = CLASS_NAMES.index(f"{vol.modality.lower()}-{plane}")
            for pos, img in slice_volume(vol, plane, step_mm, min_fill):
                u8 = np.round(img * 255).astype(np.uint8)
                images.append(u8)
                labels.append(label)
                groups.append(f"{vol.name}:{plane}")
                positions.append(pos)
                domains.append(vol.modality)
    x = np.stack(images)
    keep = dedupe(x, max_ssim)
    dropped_dup = len(x) - len(keep)
    arrays = {
        "images": x[keep],
        "labels": np.asarray(labels, dtype=np.int64)[keep],
        "class_names": np.asarray(CLASS_NAMES),
        "groups": np.asarray(groups)[keep],
        "positions": np.asarray(positions, dtype=np.float32)[keep],
        "domains": np.asarray(domains)[keep],
    }
    stats = {
        "count": int(len(keep)),
        "dropped_near_duplicates": int(dropped_dup),
        "per_class": {n: int((arrays["labels"] == i).sum()) for i, n in enumerate(CLASS_NAMES)},
        "step_mm": step_mm,
        "max_ssim": max_ssim,
        "ct_window": list(CT_WINDOW),
    }
    stats["holdout_nn_ssim_32px"] = _measure(arrays, 32)
    arrays["build_info"] = np.asarray(json.dumps(stats))
    save_npz_atomic(Path(out_path), arrays)
    stats["file_bytes"] = Path(out_path).stat().st_size
    return stats


def _measure(arrays: dict[str, np.ndarray], size: int) -> dict[str, float]:
    """The slab-holdout NN-SSIM figure on the images as users get them at ``size`` px, with
    gap 1 (what client.splits uses) and gap 2 (slices left out either side of a slab)."""
    from client.loaders_common import to_square

    x = np.stack([to_square(im.astype(np.float32) / 255.0, (1.0, 1.0), size) for im in arrays["images"]])
    return {f"gap{g}": holdout_report(x, arrays["groups"], arrays["positions"], gap=g) for g in (1, 2)}


def dedupe(x: np.ndarray, max_ssim: float) -> np.ndarray:
    """Indices to keep: no two kept images have SSIM >= ``max_ssim`` at the stored size."""
    return greedy_dedupe(x, max_ssim, data_range=255.0)


def save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write a compressed npz via a temp file in the same folder, then os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            buf = io.BytesIO()
            np.savez_compressed(buf, **arrays)
            f.write(buf.getvalue())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the npz is a shipped, readable asset
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    print(json.dumps(build_demo(out), indent=2))
