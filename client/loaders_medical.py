"""DICOM and NIfTI readers: scanner values to display values, volumes to 2-D slices.

CT pixel values mean something (Hounsfield units after RescaleSlope/Intercept), so a
window is applied the way a radiologist's viewer would; a GAN trained on raw 12-bit
numbers would spend its capacity on air and bone it never needs to see.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from client.loaders_common import Slice, robust_range, window
from client.validation import BadImage, check_pixels, one_line, to_gray

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
PLANES = ("axial", "coronal", "sagittal")
# Fallback windows (center, width) when a file names none: soft tissue for CT.
DEFAULT_WINDOWS = {"CT": (40.0, 400.0)}
EMPTY_FRACTION = 0.01  # a slice with less foreground than this is dropped as empty


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(NIFTI_SUFFIXES)


def looks_like_dicom(path: Path) -> bool:
    """A .dcm-like suffix, or the DICM magic at byte 128 (many scanners write no suffix)."""
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def dicom_window(ds: object, hu: np.ndarray, modality: str) -> tuple[float, float]:
    """(center, width): the file's own first WindowCenter/Width, else a modality default,
    else the image's robust range."""
    c, w = getattr(ds, "WindowCenter", None), getattr(ds, "WindowWidth", None)
    if c is not None and w is not None and str(c) != "" and str(w) != "":
        center, width = _first(c), _first(w)  # several windows may be offered: take the first
        if width >= 1:
            return center, width
    if modality in DEFAULT_WINDOWS:
        return DEFAULT_WINDOWS[modality]
    lo, hi = robust_range(hu)
    return (lo + hi) / 2.0, max(hi - lo, 1.0)


def apply_dicom_window(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """The DICOM linear VOI window (PS3.3 C.11.2.1.2) to [0, 1]."""
    if width <= 1:
        return (x > center - 0.5).astype(np.float32)
    y = ((x.astype(np.float64) - (center - 0.5)) / (width - 1.0)) + 0.5
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def _first(value: object) -> float:
    """A DICOM number that may be multi-valued (e.g. two WindowCenter values)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
        return float(value)  # type: ignore[arg-type]
    return float(value[0])  # type: ignore[index]


def read_dicom(path: Path, label: int | None, rel: str) -> list[Slice]:
    """One DICOM file (single or multi-frame) as windowed slices in [0, 1]."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(str(path))
    except InvalidDicomError as e:
        raise BadImage(f"not a DICOM file ({one_line(e)})") from e
    except Exception as e:  # noqa: BLE001 - any reader failure is this file's problem
        raise BadImage(f"unreadable DICOM ({type(e).__name__}: {one_line(e)})") from e
    if "PixelData" not in ds:
        raise BadImage("DICOM file without pixel data (e.g. a report or DICOMDIR)")
    try:
        raw = ds.pixel_array  # honours BitsAllocated/BitsStored/PixelRepresentation (signed)
    except Exception as e:  # noqa: BLE001
        raise BadImage(f"DICOM pixel data cannot be decoded ({type(e).__name__}: {one_line(e)})") from e
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    spp = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    arr = np.asarray(raw)
    if frames == 1:
        arr = arr[None]
    if spp > 1 or arr.ndim == 4:
        arr = np.stack([to_gray(a) for a in arr])
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    intercept = float(getattr(ds, "RescaleIntercept", 0) or 0)
    vals = arr.astype(np.float64) * slope + intercept
    check_pixels(vals)
    modality = str(getattr(ds, "Modality", "") or "").upper()
    center, width = dicom_window(ds, vals, modality)
    group = str(getattr(ds, "SeriesInstanceUID", "") or str(Path(rel).parent))
    spacing = tuple(float(v) for v in getattr(ds, "PixelSpacing", [1.0, 1.0]))[:2]
    pos = _slice_position(ds)
    invert = str(getattr(ds, "PhotometricInterpretation", "")).upper() == "MONOCHROME1"
    out = []
    for i, frame in enumerate(vals):
        img = apply_dicom_window(frame, center, width)
        if invert:  # MONOCHROME1: low values are displayed white
            img = 1.0 - img
        source = f"{rel}[{i}]" if frames > 1 else rel
        position = (pos if pos is not None else 0.0) + i if frames > 1 else pos
        domain = {"MR": "MRI"}.get(modality, modality or "DICOM")
        out.append(Slice(img, source, group, position, domain, label, spacing))  # type: ignore[arg-type]
    return out


def _slice_position(ds: object) -> float | None:
    """Position along the slice normal (mm), else SliceLocation, else InstanceNumber."""
    ipp, iop = getattr(ds, "ImagePositionPatient", None), getattr(ds, "ImageOrientationPatient", None)
    if ipp is not None and iop is not None and len(iop) == 6:
        normal = np.cross(np.asarray(iop[:3], float), np.asarray(iop[3:], float))
        return float(np.dot(normal, np.asarray(ipp, float)))
    for tag in ("SliceLocation", "InstanceNumber"):
        v = getattr(ds, tag, None)
        if v is not None and str(v) != "":
            return _first(v)
    return None


def read_nifti(path: Path, label: int | None, rel: str, plane: str = "axial") -> list[Slice]:
    """A NIfTI volume as non-empty 2-D slices along ``plane``, displayed like a viewer does
    (superior / anterior at the top, patient's right on the left)."""
    import nibabel as nib

    if plane not in PLANES:
        raise BadImage(f"unknown plane {plane!r}; use one of {', '.join(PLANES)}")
    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        data = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as e:  # noqa: BLE001 - corrupt gzip, bad header, truncated data...
        raise BadImage(f"unreadable NIfTI ({type(e).__name__}: {one_line(e)})") from e
    zooms = [float(z) for z in img.header.get_zooms()[:3]] + [1.0] * 3
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise BadImage(f"{data.ndim}-D volume of shape {tuple(data.shape)}; expected 3-D (take one volume first)")
    check_pixels(data)
    hu_like = float(data.min()) <= -900.0  # CT stored in Hounsfield units
    lo, hi = robust_range(data) if not hu_like else _window_bounds(*DEFAULT_WINDOWS["CT"])
    # RAS (x, y, z) -> (superior->inferior, anterior->posterior, right->left)
    vol = window(data, lo, hi).transpose(2, 1, 0)[::-1, ::-1, ::-1]
    sp = (zooms[2], zooms[1], zooms[0])
    axis = PLANES.index(plane)
    rest = tuple(s for i, s in enumerate(sp) if i != axis)
    out = []
    for k in range(vol.shape[axis]):
        sl = np.ascontiguousarray(np.take(vol, k, axis=axis))
        if (sl > 0.05).mean() < EMPTY_FRACTION or sl.min() == sl.max():
            continue
        domain = "CT" if hu_like else "NIfTI"
        out.append(Slice(sl, f"{rel}[{plane}:{k}]", rel, float(k), domain, label, (rest[0], rest[1])))
    if not out:
        raise BadImage(f"no non-empty {plane} slice in a volume of shape {tuple(data.shape)}")
    return out


def _window_bounds(center: float, width: float) -> tuple[float, float]:
    return center - width / 2.0, center + width / 2.0
