"""Each loader on small files made here, with values checked numerically."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from client.loaders import load_images, load_with_sizes
from client.loaders_medical import apply_dicom_window
from client.validation import DataError


def save_png(path: Path, arr: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def gradient(size: int = 32, hi: int = 255, dtype: type = np.uint8) -> np.ndarray:
    """A left-to-right ramp from 0 to ``hi`` (not constant, exact end points)."""
    row = np.linspace(0, hi, size).round().astype(dtype)
    return np.tile(row, (size, 1))


def save_dicom(
    path: Path,
    raw: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = 0.0,
    window: tuple[float, float] | None = None,
    signed: bool = True,
    modality: str = "CT",
    photometric: str = "MONOCHROME2",
    series: str = "1.2.3.4",
    z: float = 0.0,
) -> Path:
    """A minimal but valid 16-bit DICOM file (pydicom 3)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID, ds.PatientID = modality, series, "anon"
    ds.Rows, ds.Columns = raw.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.RescaleSlope, ds.RescaleIntercept = str(slope), str(intercept)
    ds.PixelSpacing = [1.0, 1.0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [0.0, 0.0, z]
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = str(window[0]), str(window[1])
    ds.PixelData = raw.astype("<i2" if signed else "<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def blocks(values: list[int], size: int = 32) -> np.ndarray:
    """Vertical bands of the given values, so each can be read back at a known column."""
    out = np.zeros((size, size), dtype=np.int32)
    w = size // len(values)
    for i, v in enumerate(values):
        out[:, i * w : (i + 1) * w] = v
    return out


def test_png_folder_values_and_flat_layout(tmp_path: Path) -> None:
    for i in range(3):
        save_png(tmp_path / f"img{i}.png", gradient())
    data, problems = load_images(tmp_path, 32)
    assert problems == []
    assert data.images.shape == (3, 1, 32, 32) and data.images.dtype == np.float32
    assert data.images[0, 0, 0, 0] == -1.0 and data.images[0, 0, 0, -1] == 1.0
    assert data.labels is None and data.class_names == []
    assert len(set(data.groups.tolist())) == 3  # lone 2-D images: one group each
    assert data.positions is None


def test_class_subfolders_give_sorted_labels(tmp_path: Path) -> None:
    for cls, n in (("tumour", 2), ("normal", 3)):
        for i in range(n):
            save_png(tmp_path / cls / f"{i}.png", gradient())
    data, _ = load_images(tmp_path, 32)
    assert data.class_names == ["normal", "tumour"]
    assert sorted(data.labels.tolist()) == [0, 0, 0, 1, 1]
    for src, lab in zip(data.sources, data.labels):
        assert src.startswith(data.class_names[lab])


def test_patient_subfolders_become_groups_with_positions(tmp_path: Path) -> None:
    for p in ("p1", "p2"):
        for i in (1, 2, 10):
            save_png(tmp_path / "cls" / p / f"slice{i}.png", gradient())
    data, _ = load_images(tmp_path, 32)
    assert set(data.groups.tolist()) == {"cls/p1", "cls/p2"}
    order = [s for s in data.sources if "/p1/" in s]
    assert order == ["cls/p1/slice1.png", "cls/p1/slice2.png", "cls/p1/slice10.png"]  # natural order
    assert data.positions is not None and sorted(set(data.positions.tolist())) == [0.0, 1.0, 2.0]


def test_jpg_and_resize_to_64(tmp_path: Path) -> None:
    Image.fromarray(gradient(100)).save(tmp_path / "a.jpg", quality=95)
    data, problems = load_images(tmp_path / "a.jpg", 64)
    assert problems == [] and data.images.shape == (1, 1, 64, 64)
    row = data.images[0, 0, 32]
    assert row[0] < -0.9 and row[-1] > 0.9 and np.all(np.diff(row) > -0.05)


def test_16bit_png_is_min_max_scaled(tmp_path: Path) -> None:
    arr = gradient(32, hi=4095, dtype=np.uint16) + 1000  # 12-bit data in a 16-bit file
    Image.fromarray(arr).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    data, _ = load_images(tmp_path, 32)
    x = data.images[0, 0, 0]
    assert x[0] == -1.0 and x[-1] == 1.0
    assert np.allclose(x, (arr[0] - 1000) / 4095 * 2 - 1, atol=1e-5)


def test_dicom_rescale_and_file_window_applied(tmp_path: Path) -> None:
    # raw -> HU = 2 * raw - 1024; window 40/400 -> [-160, 240] HU
    raw = blocks([-100, 512, 532, 700])  # HU: -1224 (signed raw), 0, 40, 376
    save_dicom(tmp_path / "ct.dcm", raw, slope=2, intercept=-1024, window=(40, 400))
    data, problems = load_images(tmp_path, 32)
    assert problems == []
    got = data.images[0, 0, 0, [0, 8, 16, 24]]
    hu = np.array([-1224.0, 0.0, 40.0, 376.0])
    want = np.clip((hu - 39.5) / 399 + 0.5, 0, 1) * 2 - 1  # DICOM PS3.3 linear window
    assert np.allclose(got, want, atol=1e-5)
    assert got[0] == -1.0 and got[-1] == 1.0 and abs(got[2] - 0.0025) < 1e-3
    assert data.domains[0] == "CT" and data.groups[0] == "1.2.3.4"


def test_dicom_signed_values_are_not_read_as_unsigned(tmp_path: Path) -> None:
    raw = blocks([-100, 0])  # as uint16, -100 would be 65436 and come out white
    save_dicom(tmp_path / "s.dcm", raw, window=(-50, 200))
    x = load_images(tmp_path, 32)[0].images[0, 0, 0]
    assert np.isclose(x[0], apply_dicom_window(np.array(-100.0), -50, 200) * 2 - 1)
    assert x[0] < -0.4 and x[20] > 0.4


def test_dicom_default_window_and_monochrome1(tmp_path: Path) -> None:
    raw = blocks([-200, 40, 300])
    save_dicom(tmp_path / "a" / "m2.dcm", raw, modality="CT")
    save_dicom(tmp_path / "b" / "m1.dcm", raw, modality="CT", photometric="MONOCHROME1")
    data, _ = load_images(tmp_path, 32)
    m2 = data.images[data.sources.index("a/m2.dcm"), 0, 0, [0, 12, 25]]
    m1 = data.images[data.sources.index("b/m1.dcm"), 0, 0, [0, 12, 25]]
    # no window in the file: CT soft-tissue default 40/400 -> [-160, 240] HU
    assert m2[0] == -1.0 and m2[2] == 1.0 and abs(m2[1]) < 0.01
    assert np.allclose(m1, -m2, atol=1e-6)  # MONOCHROME1 inverted


def test_dicom_series_positions_and_no_suffix(tmp_path: Path) -> None:
    for k, z in enumerate([10.0, 12.5, 15.0]):
        save_dicom(tmp_path / f"IM{k}", blocks([0, 100]), window=(50, 100), series="9.9", z=z)
    data, problems = load_images(tmp_path, 32)
    assert problems == [] and len(data) == 3
    assert sorted(data.positions.tolist()) == [10.0, 12.5, 15.0]
    assert set(data.groups.tolist()) == {"9.9"}


def test_nifti_axial_slices_drop_empty(tmp_path: Path) -> None:
    vol = np.zeros((20, 24, 10), dtype=np.float32)
    vol[4:16, 5:20, 2:8] = np.linspace(10, 100, 6)[None, None, :]  # 6 non-empty axial slices
    nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "head.nii.gz")
    data, problems = load_images(tmp_path, 32)
    assert problems == [] and len(data) == 6
    assert set(data.groups.tolist()) == {"head.nii.gz"}
    assert sorted(data.positions.tolist()) == [2.0, 3.0, 4.0, 5.0, 6.0, 7.0]  # superior first
    assert data.images.min() == -1.0 and data.images.max() > 0.9


def test_nifti_coronal_keeps_true_proportions(tmp_path: Path) -> None:
    vol = np.zeros((20, 20, 10), dtype=np.float32)
    vol[:, 8:12, :] = np.linspace(20.0, 50.0, 20)[:, None, None]  # a full x-z sheet, 20 x 20 mm
    nib.save(nib.Nifti1Image(vol, np.diag([1.0, 1.0, 2.0, 1.0])), tmp_path / "v.nii")
    data, _ = load_images(tmp_path / "v.nii", 32, plane="coronal")
    assert len(data) == 4
    assert (data.images[0, 0] > -0.5).mean() > 0.95  # square in mm -> fills the square image


def test_medmnist_npz_splits_and_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    f = tmp_path / "organmnist.npz"
    np.savez(
        f,
        train_images=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        train_labels=np.array([[0], [1], [2], [0], [1], [2]]),
        val_images=rng.integers(0, 256, (2, 28, 28), dtype=np.uint8),
        val_labels=np.array([[2], [1]]),
    )
    data, problems = load_images(f, 32)
    assert problems == [] and data.images.shape == (6, 1, 32, 32)
    assert data.labels.tolist() == [0, 1, 2, 0, 1, 2] and data.labels.dtype == np.int64
    assert data.class_names == ["0", "1", "2"]
    val, _ = load_images(f, 32, split="val")
    assert val.labels.tolist() == [2, 1]
    with pytest.raises(DataError, match=r"organmnist\.npz: no split 'test' \(it has train, val\)"):
        load_images(f, 32, split="test")


def test_medmnist_rgb_is_converted_and_noted(tmp_path: Path) -> None:
    x = np.zeros((2, 28, 28, 3), dtype=np.uint8)
    x[:, :, 14:] = (255, 0, 0)
    x[1, :, :14] = (0, 0, 255)
    np.savez(tmp_path / "derma.npz", train_images=x, train_labels=np.array([[0], [1]]))
    data, problems = load_images(tmp_path / "derma.npz", 28, strict=True)  # a note is not refused
    assert [p.level for p in problems] == ["note"] and "RGB" in problems[0].message
    red = round(0.299 * 255) / 255 * 2 - 1
    assert np.isclose(data.images[0, 0, 0, -1], red, atol=1e-6)


def test_fedsynth_npz_keeps_side_information(tmp_path: Path) -> None:
    f = tmp_path / "mine.npz"
    imgs = np.stack([gradient(64)] * 3)
    np.savez_compressed(
        f, images=imgs, labels=np.array([1, 0, 1]), class_names=np.array(["a", "b"]),
        groups=np.array(["v1", "v1", "v2"]), positions=np.array([0.0, 2.0, 0.0]), domains=np.array(["CT", "CT", "MRI"]),
    )
    data, sizes_problems, sizes = load_with_sizes(f, 32)
    assert sizes == {"64x64": 3}
    assert data.class_names == ["a", "b"] and data.labels.tolist() == [1, 0, 1]
    assert data.groups.tolist() == ["v1", "v1", "v2"] and data.positions.tolist() == [0.0, 2.0, 0.0]
    assert data.domains.tolist() == ["CT", "CT", "MRI"]


def test_demo_literal_and_image_size_check() -> None:
    data, problems = load_images("demo", 32)
    assert problems == [] and data.images.shape[1:] == (1, 32, 32) and len(data.class_names) == 6
    with pytest.raises(DataError, match="image_size"):
        load_images("demo", 3)


def test_missing_path_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(DataError) as e:
        load_images(tmp_path / "nope", 32)
    assert str(e.value).startswith(str(tmp_path / "nope")) and "\n" not in str(e.value)


def test_patient_folders_without_classes(tmp_path: Path) -> None:
    for p in ("pat1", "pat2"):
        for i in range(3):
            save_png(tmp_path / p / f"{i}.png", gradient())
    data, _ = load_images(tmp_path, 32, class_folders=False)
    assert data.labels is None and data.class_names == []
    assert sorted(set(data.groups.tolist())) == ["pat1", "pat2"] and data.positions is not None
    labelled, _ = load_images(tmp_path, 32)
    assert labelled.class_names == ["pat1", "pat2"]
