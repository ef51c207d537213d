"""Each bad input gives the right one-line Problem naming the file, and DataError when strict."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from client.loaders import load_images
from client.validation import DataError, Problem, check_pixels, to_gray, BadImage
from tests.test_loaders import gradient, save_png


def good_folder(root: Path, n: int = 2) -> Path:
    for i in range(n):
        save_png(root / f"ok{i}.png", gradient())
    return root


def only_problem(root: Path, name: str, level: str = "error") -> Problem:
    """Load non-strict: the good images survive and exactly one problem names ``name``."""
    data, problems = load_images(root, 32)
    assert len(problems) == 1, problems
    p = problems[0]
    assert p.file == str(root / name) and p.level == level and str(p) == f"{root / name}: {p.message}"
    assert "\n" not in str(p)
    return p


def strict_error(root: Path, name: str) -> str:
    with pytest.raises(DataError) as e:
        load_images(root, 32, strict=True)
    msg = str(e.value)
    assert msg.startswith(f"{root / name}: ") and "\n" not in msg
    return msg


def test_problem_str_and_levels() -> None:
    assert str(Problem("a/b.png", "broken")) == "a/b.png: broken"
    with pytest.raises(ValueError):
        Problem("x", "y", level="fatal")


def test_corrupt_png(tmp_path: Path) -> None:
    good_folder(tmp_path)
    full = (tmp_path / "ok0.png").read_bytes()
    (tmp_path / "broken.png").write_bytes(full[: len(full) // 2])
    assert "corrupt or truncated" in only_problem(tmp_path, "broken.png").message
    strict_error(tmp_path, "broken.png")


def test_garbage_with_image_suffix(tmp_path: Path) -> None:
    good_folder(tmp_path)
    (tmp_path / "fake.jpg").write_bytes(b"this is not a jpeg at all")
    assert "not a readable image" in only_problem(tmp_path, "fake.jpg").message


def test_non_image_file(tmp_path: Path) -> None:
    good_folder(tmp_path)
    (tmp_path / "notes.csv").write_text("patient,age\n1,40\n")
    (tmp_path / ".DS_Store").write_bytes(b"\0\0")  # hidden: ignored silently
    assert "not an image file" in only_problem(tmp_path, "notes.csv").message
    strict_error(tmp_path, "notes.csv")


def test_corrupt_dicom_and_nifti(tmp_path: Path) -> None:
    good_folder(tmp_path)
    (tmp_path / "x.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    (tmp_path / "y.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    data, problems = load_images(tmp_path, 32)
    assert len(data) == 2
    by_file = {Path(p.file).name: p.message for p in problems}
    assert set(by_file) == {"x.dcm", "y.nii.gz"}
    assert "DICOM" in by_file["x.dcm"] and "unreadable NIfTI" in by_file["y.nii.gz"]


def test_empty_folder_and_no_valid_image(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"empty folder"):
        load_images(tmp_path, 32)
    (tmp_path / "only.txt").write_text("nothing")
    with pytest.raises(DataError, match=r"no valid image found"):
        load_images(tmp_path, 32)  # always an error, strict or not


def test_empty_class_folder_is_reported(tmp_path: Path) -> None:
    good_folder(tmp_path / "a")
    (tmp_path / "b").mkdir()
    data, problems = load_images(tmp_path, 32)
    assert data.class_names == ["a", "b"] and [p.file for p in problems] == [str(tmp_path / "b")]


def test_mixed_sizes_resized_anyway_or_refused_when_strict(tmp_path: Path) -> None:
    good_folder(tmp_path, 3)
    save_png(tmp_path / "big.png", gradient(48))
    p = only_problem(tmp_path, "big.png", level="warning")
    assert "48x48 differs" in p.message and "32x32" in p.message
    assert len(load_images(tmp_path, 32)[0]) == 4  # kept, resized
    strict_error(tmp_path, "big.png")


def test_rgba_with_transparency_and_colour(tmp_path: Path) -> None:
    good_folder(tmp_path)
    rgba = np.dstack([gradient()] * 3 + [np.full((32, 32), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "alpha.png")
    colour = np.dstack([gradient(), gradient()[::-1], np.zeros((32, 32), np.uint8)])
    Image.fromarray(colour, "RGB").save(tmp_path / "colour.png")
    gray_rgb = np.dstack([gradient()] * 3)
    Image.fromarray(gray_rgb, "RGB").save(tmp_path / "grayrgb.png")  # gray stored as RGB: fine
    data, problems = load_images(tmp_path, 32)
    assert len(data) == 3
    by_file = {Path(p.file).name: p.message for p in problems}
    assert set(by_file) == {"alpha.png", "colour.png"}
    assert "RGBA" in by_file["alpha.png"] and "colour" in by_file["colour.png"]


def test_4d_nifti_refused(tmp_path: Path) -> None:
    good_folder(tmp_path)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((8, 8, 4, 3), dtype=np.float32), np.eye(4)), tmp_path / "fmri.nii")
    assert "4-D volume" in only_problem(tmp_path, "fmri.nii").message
    strict_error(tmp_path, "fmri.nii")


def test_nan_image(tmp_path: Path) -> None:
    good_folder(tmp_path)
    x = gradient().astype(np.float32)
    x[3, 4] = np.nan
    Image.fromarray(x, "F").save(tmp_path / "nan.tif")
    assert "NaN/inf" in only_problem(tmp_path, "nan.tif").message
    np.savez(tmp_path.parent / "n.npz", images=np.stack([x, gradient().astype(np.float32)]))
    data, problems = load_images(tmp_path.parent / "n.npz", 32)
    assert len(data) == 1 and [p.file for p in problems] == [str(tmp_path.parent / "n.npz[0]")]


def test_constant_image(tmp_path: Path) -> None:
    good_folder(tmp_path)
    save_png(tmp_path / "flat.png", np.full((32, 32), 17, np.uint8))
    assert "constant image" in only_problem(tmp_path, "flat.png").message
    msg = strict_error(tmp_path, "flat.png")
    assert "17" in msg


def test_channel_helpers_directly() -> None:
    assert to_gray(np.zeros((4, 4, 1))).shape == (4, 4)
    with pytest.raises(BadImage, match="4-D array"):
        to_gray(np.zeros((2, 4, 4, 1)))
    with pytest.raises(BadImage, match="5 channels"):
        to_gray(np.zeros((4, 4, 5)))
    with pytest.raises(BadImage, match="inf"):
        check_pixels(np.array([[0.0, np.inf]]))


def test_volumes_of_different_sizes_are_not_mixed_sizes(tmp_path: Path) -> None:
    for name, shape in (("a.nii.gz", (16, 16, 6)), ("b.nii.gz", (24, 20, 6))):
        vol = np.zeros(shape, dtype=np.float32)
        vol[2:-2, 2:-2, 1:-1] = np.linspace(1, 9, shape[0] - 4)[:, None, None]
        nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / name)
    data, problems = load_images(tmp_path, 32, strict=True)
    assert problems == [] and set(data.groups.tolist()) == {"a.nii.gz", "b.nii.gz"}
