"""Every way a hospital's images reach fedsynth, ending in one :class:`ImageSet`.

``load_images`` takes a folder (PNG/JPG/TIFF/BMP, DICOM, NIfTI, optionally one
subfolder per class), a single file, a MedMNIST-style or fedsynth ``.npz``, or the
literal ``"demo"``. Bad files are skipped and reported (see ``client.validation``).

Policies, in one place:
- intensities: 8-bit by /255; 16-bit and float images by their own min-max; DICOM by
  RescaleSlope/Intercept then the file's first window (else CT 40/400 HU, else the
  image's 0.5-99.5 percentile range), MONOCHROME1 inverted; NIfTI by the volume's
  robust range (Hounsfield-unit volumes get the CT window).
- sizes: every image keeps its true proportions (pixel spacing), is padded to a square
  with its background and resized with anti-aliasing. An image whose size differs from
  its folder's (or series') usual size is kept, resized, and reported as a "warning";
  strict mode refuses it.
- groups / positions: DICOM series and slice position along the normal; NIfTI file and
  slice index; 2-D images in a patient subfolder, that folder and natural file order;
  a lone 2-D image is its own group (positions None when every image is alone).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np

from client.dataset import ImageSet
from client.loaders_common import Slice, assemble, check_image_size, report_odd_sizes, scale_dtype
from client.loaders_medical import is_nifti, looks_like_dicom, read_dicom, read_nifti
from client.validation import BadImage, DataError, Problem, ProblemLog, check_pixels, one_line, rgb_to_gray, to_gray

__all__ = ["load_images", "load_with_sizes", "load_demo", "DEMO_PATH", "DataError", "Problem"]

DEMO_PATH = Path(__file__).parent / "demo_data" / "fedsynth_demo_64.npz"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SPLITS = ("train", "val", "test")
IGNORED_NAMES = {"thumbs.db", "desktop.ini", "dicomdir", "data.md", "readme.md", "readme.txt", "license", "license.txt"}
MANY_CLASSES = 20  # more class folders than this are probably patient folders: say so


def load_images(
    path: str | Path,
    image_size: int,
    strict: bool = False,
    *,
    split: str = "train",
    plane: str = "axial",
    class_folders: bool = True,
) -> tuple[ImageSet, list[Problem]]:
    """(images, problems) from ``path``; ``split`` picks a MedMNIST split, ``plane`` the
    NIfTI slicing plane; ``class_folders=False`` reads top-level subfolders as patients
    (groups), not classes. Raises DataError if nothing valid is left (or, when
    ``strict``, on the first problem)."""
    data, problems, _sizes = load_with_sizes(path, image_size, strict, split=split, plane=plane, class_folders=class_folders)
    return data, problems


def load_with_sizes(
    path: str | Path,
    image_size: int,
    strict: bool = False,
    *,
    split: str = "train",
    plane: str = "axial",
    class_folders: bool = True,
) -> tuple[ImageSet, list[Problem], dict[str, int]]:
    """Like :func:`load_images`, plus how many images had each original size ("HxW")."""
    size = check_image_size(image_size)
    p = DEMO_PATH if str(path) == "demo" else Path(path)
    log = ProblemLog(strict=strict, root=p if p.is_dir() else p.parent)
    classes: list[str] = []
    if not p.exists():
        hint = "; rebuild it with `fedsynth data build-demo`" if str(path) == "demo" else ""
        raise DataError(f"{p}: no such file or folder{hint}")
    if p.is_dir():
        slices, classes = _folder_slices(p, log, plane, class_folders)
    elif p.name.lower().endswith(".npz"):
        slices, classes = _npz_slices(p, log, split)
    else:
        slices = _read_any(p, p.name, None, log, plane)
    sizes = Counter("x".join(map(str, s.image.shape)) for s in slices)
    return assemble(slices, size, str(p), classes), log.problems, dict(sizes.most_common())


def load_demo(image_size: int = 32) -> ImageSet:
    """The bundled CT/MRI demo set (see client/demo_data/DATA.md) at ``image_size``."""
    if not DEMO_PATH.exists():
        raise DataError(f"{DEMO_PATH}: no such file or folder; rebuild it with `fedsynth data build-demo`")
    slices, names = _npz_slices(DEMO_PATH, ProblemLog(strict=True), "train")
    return assemble(slices, check_image_size(image_size), str(DEMO_PATH), names)


def _natural_key(text: str) -> list[object]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _folder_slices(root: Path, log: ProblemLog, plane: str, class_folders: bool) -> tuple[list[Slice], list[str]]:
    """A folder: top-level subfolders are classes when there are no files beside them
    (and ``class_folders``); deeper subfolders are patients / volumes."""
    entries = [e for e in root.iterdir() if not _ignored(e)]
    subdirs = sorted((e for e in entries if e.is_dir()), key=lambda e: e.name)
    top_files = [e for e in entries if e.is_file()]
    if not entries:
        raise DataError(f"{root}: empty folder")
    classes = [d.name for d in subdirs] if class_folders and subdirs and not top_files else []
    if len(classes) > MANY_CLASSES:
        log.report(root, f"{len(classes)} class folders: if they are patients, load with class_folders=False", "note")
    slices: list[Slice] = []
    if classes:
        for label, d in enumerate(subdirs):
            files = _files_under(d)
            if not files:
                log.report(d, "empty class folder (no files)", "warning")
            for f in files:
                slices += _read_any(f, str(f.relative_to(root)), label, log, plane)
    else:
        for f in _files_under(root):
            slices += _read_any(f, str(f.relative_to(root)), None, log, plane)
    _group_2d_by_subfolder(slices, depth=2 if classes else 1)
    report_odd_sizes(slices, log)
    return slices, classes


def _ignored(p: Path | str) -> bool:
    """Hidden files and the usual notes beside data are skipped silently, not reported."""
    name = Path(p).name
    return name.startswith(".") or name.lower() in IGNORED_NAMES


def _files_under(d: Path) -> list[Path]:
    files = [f for f in d.rglob("*") if f.is_file() and not any(_ignored(q) for q in f.relative_to(d).parts)]
    return sorted(files, key=lambda f: _natural_key(str(f.relative_to(d))))


def _group_2d_by_subfolder(slices: list[Slice], depth: int) -> None:
    """Plain 2-D images inside a deeper subfolder (e.g. class/patient07/*.png) belong to
    that subfolder's volume, in natural file order, so slab and patient splits work."""
    counters: dict[str, int] = {}
    for s in slices:
        parts = Path(s.source).parts
        if s.domain == "image" and len(parts) > depth:
            s.group = str(Path(*parts[:-1]))
            s.position = float(counters.setdefault(s.group, 0))
            counters[s.group] += 1


def _read_any(f: Path, rel: str, label: int | None, log: ProblemLog, plane: str) -> list[Slice]:
    """One file of any supported kind; a bad file becomes a Problem and no slices."""
    try:
        if is_nifti(f):
            return read_nifti(f, label, rel, plane)
        if f.suffix.lower() in IMAGE_SUFFIXES:
            return [_read_pil(f, label, rel)]
        if looks_like_dicom(f):
            return read_dicom(f, label, rel)
        if f.suffix.lower() == ".npz":
            raise BadImage("an .npz inside a folder is not read; pass the .npz itself")
        raise BadImage(f"not an image file (unsupported type {f.suffix or 'without suffix'!r})")
    except BadImage as e:
        log.report(rel, str(e))
    except OSError as e:
        log.report(rel, f"cannot read file ({one_line(e)})")
    return []


def _read_pil(f: Path, label: int | None, rel: str) -> Slice:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(f) as im:
            im.load()
            if getattr(im, "n_frames", 1) > 1:
                raise BadImage(f"multi-page image ({im.n_frames} frames); expected one 2-D image")
            if im.mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            arr = np.asarray(im)
    except UnidentifiedImageError as e:
        raise BadImage("not a readable image (unknown or corrupt format)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise BadImage(f"corrupt or truncated image ({one_line(e)})") from e
    gray = to_gray(arr)
    check_pixels(gray)
    return Slice(scale_dtype(gray), rel, rel, None, "image", label)


def _npz_slices(path: Path, log: ProblemLog, split: str = "train") -> tuple[list[Slice], list[str]]:
    """A MedMNIST npz (``{split}_images``/``{split}_labels``) or a fedsynth npz (``images`` +
    optional labels, class_names, groups, positions, domains)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # noqa: BLE001 - bad zip, pickled objects, truncated file...
        raise DataError(f"{path}: unreadable .npz ({type(e).__name__}: {one_line(e)})") from e
    if "images" in data:
        x, y = data["images"], data.get("labels")
        prefix = ""
    elif f"{split}_images" in data:
        x, y, prefix = data[f"{split}_images"], data.get(f"{split}_labels"), f"{split}:"
    else:
        have = [s for s in SPLITS if f"{s}_images" in data]
        why = f"no split {split!r} (it has {', '.join(have)})" if have else "no 'images' or 'train_images' array"
        raise DataError(f"{path}: {why}")
    x = _npz_gray(x, path, log)
    n = len(x)
    labels = _npz_labels(y, n, path, log)
    names = [str(c) for c in data["class_names"]] if "class_names" in data else []
    if labels is not None and not names:
        names = [str(i) for i in range(int(labels.max()) + 1)]
    groups = data.get("groups")
    positions = data.get("positions")
    domains = data.get("domains")
    slices = []
    for i in range(n):
        src = f"{path.name}[{prefix}{i}]"  # reported under the log's root, the npz's folder
        try:
            check_pixels(x[i])
        except BadImage as e:
            log.report(src, str(e))
            continue
        slices.append(
            Slice(
                image=scale_dtype(x[i]),
                source=src,
                group=str(groups[i]) if groups is not None else src,
                position=float(positions[i]) if positions is not None else None,
                domain=str(domains[i]) if domains is not None else path.stem,
                label=int(labels[i]) if labels is not None else None,
            )
        )
    return slices, names


def _npz_gray(x: np.ndarray, path: Path, log: ProblemLog) -> np.ndarray:
    """(N, H, W) from (N, H, W), (N, H, W, 1) or (N, 1, H, W); RGB sets become luma."""
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim == 4 and x.shape[-1] == 3:
        log.report(path, "RGB images converted to gray (ITU-R 601 luma)", "note")
        luma = rgb_to_gray(x)
        x = np.clip(np.round(luma), 0, 255).astype(np.uint8) if x.dtype == np.uint8 else luma
    if x.ndim != 3:
        raise DataError(f"{path}: images array has shape {tuple(x.shape)}; expected (N, H, W) gray or (N, H, W, 3)")
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{path}: images array has non-numeric dtype {x.dtype}")
    return x


def _npz_labels(y: np.ndarray | None, n: int, path: Path, log: ProblemLog) -> np.ndarray | None:
    if y is None:
        return None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        log.report(path, f"labels of shape {tuple(y.shape)} are multi-label; loaded without labels", "note")
        return None
    if len(y) != n:
        raise DataError(f"{path}: {len(y)} labels for {n} images")
    if not np.issubdtype(y.dtype, np.integer) or (len(y) and y.min() < 0):
        raise DataError(f"{path}: labels must be non-negative integers, got dtype {y.dtype}")
    return y.astype(np.int64)
