"""A corpus of malformed inputs, mixed with good cases, in the layouts of the bundled
``volume-folder`` and ``nih-chestxray14`` recipes (a generator, not a test module).

``make_volumes(root)`` and ``make_chest(root)`` each write one source folder whose bad
entries must fail (or be skipped with a reason) one case each while every good case
builds; ``make_source_level(root)`` writes one source per input that must stop the
whole build with a one-line error naming the file. Every entry carries the words its
error must contain, so the test can tell a specific error from a generic one.
"""

from __future__ import annotations

import csv
import gzip
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

AFFINE = np.diag([0.9, 0.9, 2.5, 1.0])
SHAPE = (20, 18, 8)
CLASSES = {"0": "background", "1": "organ"}
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"


@dataclass(frozen=True)
class Entry:
    """One malformed input: ``key`` is the case id (``failed``), the report key of a
    skipped file or row (``skipped``), or the source folder (``source``)."""

    name: str
    key: str
    words: tuple[str, ...]
    outcome: str = "failed"  # "failed" | "skipped" | "source"
    names: str = ""  # a file name the one-line error must contain ("" = key)
    recipe: Path | str | None = None  # source-level: the recipe to build with
    overrides: dict = field(default_factory=dict)


# -- volumes (volume-folder recipe) ----------------------------------------------------------


def volume_overrides() -> dict:
    return {"harmonize": {"spacing": [2.0, 2.0, 2.5]},
            "labels": {"segmentation": {"classes": CLASSES}}}


def _volume(seed: int, dtype=np.int16) -> np.ndarray:
    return np.random.default_rng(seed).integers(-900, 900, size=SHAPE).astype(dtype)


def _mask() -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[4:12, 4:10, 2:6] = 1
    return mask


def _save(array, path: Path, affine=AFFINE) -> Path:
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def _nifti_bytes(array, affine=AFFINE) -> bytes:
    return nib.Nifti1Image(array, affine).to_bytes()


def make_volumes(root: Path) -> tuple[list[str], list[Entry]]:
    """Good cases (NIfTI with and without masks, a DICOM series folder) and bad ones."""
    images, labels = root / "images", root / "labels"
    images.mkdir(parents=True)
    labels.mkdir()
    good = ["good_a", "good_b", "good_c", "good_dcm"]
    _save(_volume(0), images / "good_a.nii.gz")
    _save(_mask(), labels / "good_a.nii.gz")
    _save(_volume(1), images / "good_b.nii.gz")
    _save(_volume(2).astype(np.float32), images / "good_c.nii.gz")
    _save(_mask(), labels / "good_c.nii.gz")
    _dicom_series(images / "good_dcm", n=4)

    entries: list[Entry] = []

    def bad(name: str, words: tuple[str, ...], names: str = "") -> None:
        entries.append(Entry(name, name, words, names=names or name))

    whole = gzip.compress(_nifti_bytes(_volume(3)))
    (images / "trunc_nii.nii.gz").write_bytes(whole[: len(whole) // 2])
    bad("trunc_nii", ("truncated",))
    (images / "not_gzip.nii.gz").write_bytes(b"\x1f\x8b\x08\x00 this is not a gzip stream")
    bad("not_gzip", ("not a valid gzip stream",))
    # The header says 64 slices, the file holds 8: a dim that does not match the data.
    raw = bytearray(_nifti_bytes(_volume(4)))
    struct.pack_into("<h", raw, 40 + 2 * 3, 64)  # dim[3]
    (images / "bad_dim.nii.gz").write_bytes(gzip.compress(bytes(raw)))
    bad("bad_dim", ("truncated",))
    # A zero voxel size, with no sform/qform to say otherwise: the affine is singular.
    img = nib.Nifti1Image(_volume(5), None)
    img.header["pixdim"][1:4] = [0.9, 0.0, 2.5]
    nib.save(img, images / "zero_spacing.nii.gz")
    bad("zero_spacing", ("voxel size", "zero"))
    # A negative voxel size in pixdim with only the qform to place the voxels: the NIfTI
    # standard has no meaning for it (flips belong to the quaternion's qfac), so which
    # side is left is a guess. (A flip in an sform is legitimate and builds: good_b's
    # siblings in test_build.py are LPS-stored.)
    img = nib.Nifti1Image(_volume(6), None)
    img.header.set_qform(np.diag([0.9, 0.9, 2.5, 1.0]), code=1)
    img.header.set_sform(None, code=0)
    img.header["pixdim"][2] = -0.9
    nib.save(img, images / "neg_spacing.nii.gz")
    bad("neg_spacing", ("negative voxel size",))
    volume = _volume(7).astype(np.float32)
    volume[0, 0, :3] = np.nan
    _save(volume, images / "nan_pixels.nii.gz")
    bad("nan_pixels", ("3 NaN",))
    volume = _volume(8).astype(np.float32)
    volume[1, 1, :2] = [np.inf, -np.inf]
    _save(volume, images / "inf_pixels.nii.gz")
    bad("inf_pixels", ("2 infinite",))
    (images / "empty_nii.nii.gz").write_bytes(b"")
    bad("empty_nii", ("empty", "0 bytes"))
    (images / "empty_dcm.dcm").write_bytes(b"")
    bad("empty_dcm", ("empty", "0 bytes"))
    _save(np.zeros(SHAPE + (2, 3), np.int16), images / "five_d.nii.gz")
    bad("five_d", ("more than one non-spatial axis",))

    series = _dicom_series(images / "dcm_trunc_pixels", n=4)
    series[2].write_bytes(series[2].read_bytes()[:-300])
    bad("dcm_trunc_pixels", ("cannot decode pixel data", "less than expected"),
        names="dcm_trunc_pixels/slice002.dcm")
    series = _dicom_series(images / "dcm_garbage", n=4)
    series[1].write_bytes(b"\0" * 128 + b"DICM" + bytes(range(256)) * 4)
    bad("dcm_garbage", ("damaged DICOM file",), names="dcm_garbage")
    series = _dicom_series(images / "dcm_missing_slice", n=5)
    series[2].unlink()
    bad("dcm_missing_slice", ("missing",))
    _dicom_series(images / "dcm_mixed", n=3)
    _dicom_series(images / "dcm_mixed", n=3, prefix="other")
    bad("dcm_mixed", ("2 DICOM series",))
    _dicom_sr(images / "dcm_sr.dcm")
    bad("dcm_sr", ("no image", "PixelData"))
    _dicom_series(images / "dcm_zero_spacing", n=3, spacing=(0.0, 0.0))
    bad("dcm_zero_spacing", ("PixelSpacing",))

    # Masks: the image is good, its mask is not.
    for name in ("mask_size", "mask_labels", "mask_off_grid", "mask_rgb", "mask_empty"):
        _save(_volume(9), images / f"{name}.nii.gz")
    _save(np.zeros((10, 18, 8), np.uint8), labels / "mask_size.nii.gz")
    bad("mask_size", ("mask grid", "differs"), names="labels/mask_size.nii.gz")
    mask = _mask()
    mask[0, 0, 0] = 7
    _save(mask, labels / "mask_labels.nii.gz")
    bad("mask_labels", ("[7]", "not in the segmentation classes"),
        names="labels/mask_labels.nii.gz")
    shifted = AFFINE.copy()
    shifted[:3, 3] = [5.0, 0.0, 0.0]
    _save(_mask(), labels / "mask_off_grid.nii.gz", shifted)
    bad("mask_off_grid", ("mm away from image",), names="labels/mask_off_grid.nii.gz")
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    rgb["R"][4:8] = 1
    rgb["G"][6:10] = 1
    _save(rgb, labels / "mask_rgb.nii.gz")
    bad("mask_rgb", ("differing colour channels",), names="labels/mask_rgb.nii.gz")
    (labels / "mask_empty.nii.gz").write_bytes(b"")
    bad("mask_empty", ("empty", "0 bytes"), names="labels/mask_empty.nii.gz")

    # Names: a hidden '..x' file and an id that is not a safe name are reported, not read.
    _save(_volume(10), images / "..x.nii.gz")
    entries.append(Entry("dotdot_name", "images/..x.nii.gz", ("hidden",), "skipped"))
    _save(_volume(11), images / "case one.nii.gz")
    entries.append(Entry("unsafe_name", "images/case one.nii.gz", ("not a safe name",),
                         "skipped"))
    return good, entries


def _dicom_series(folder: Path, n: int, spacing=(0.8, 0.8), prefix: str = "slice"
                  ) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    study, series_uid = "1.2.826.0.1.3680043.8.498.1", generate_uid()
    pixels = np.random.default_rng(n).integers(-500, 500, size=(16, 12)).astype(np.int16)
    paths = []
    for k in range(n):
        path = folder / f"{prefix}{k:03d}.dcm"
        ds = _dataset(path, CT_IMAGE)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series_uid
        ds.SeriesNumber, ds.InstanceNumber, ds.Modality = 1, k + 1, "CT"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        ds.PixelSpacing, ds.SliceThickness = list(spacing), 2.0
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation, ds.SamplesPerPixel = 1, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = (pixels + k).tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _dataset(path: Path, sop_class: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.PatientID = "BADINPUT"
    return ds


def _dicom_sr(path: Path) -> None:
    ds = _dataset(path, BASIC_TEXT_SR)
    ds.Modality, ds.StudyInstanceUID, ds.SeriesInstanceUID = "SR", generate_uid(), generate_uid()
    ds.save_as(path, enforce_file_format=True)


# -- 2D pictures (nih-chestxray14 recipe) ----------------------------------------------------


def chest_overrides() -> dict:
    # PNG and JPEG: the corpus has both kinds of picture.
    return {"source": {"images": "**/*.[pj][np]g"}}


def make_chest(root: Path) -> tuple[list[str], list[Entry]]:
    folder = root / "images_001" / "images"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows: list[tuple[str, str]] = []
    good = [f"0000000{k}_000" for k in range(1, 5)]
    for k, case in enumerate(good):
        Image.fromarray(rng.integers(0, 256, (64, 80)).astype(np.uint8)).save(
            folder / f"{case}.png")
        rows.append((f"{case}.png", ["Cardiomegaly", "No Finding", "Mass|Effusion", ""][k]))
    entries: list[Entry] = []

    def bad(name: str, file: str, words: tuple[str, ...], finding: str = "No Finding",
            outcome: str = "failed", key: str = "", names: str = "") -> None:
        rows.append((file, finding))
        entries.append(Entry(name, key or Path(file).stem, words, outcome,
                             names=names or file))

    (folder / "00000010_000.png").write_bytes(b"")
    bad("empty_png", "00000010_000.png", ("empty", "0 bytes"))
    (folder / "00000011_000.png").write_text("Patient list, do not distribute\n")
    bad("text_png", "00000011_000.png", ("not a PNG",))
    (folder / "00000012_000.jpg").write_text("<html>403 Forbidden</html>\n")
    bad("text_jpg", "00000012_000.jpg", ("not a JPEG",))
    whole = _png_bytes(rng.integers(0, 256, (64, 80)).astype(np.uint8))
    (folder / "00000013_000.png").write_bytes(whole[: len(whole) * 2 // 3])
    bad("truncated_png", "00000013_000.png", ("truncated",))
    Image.fromarray(rng.integers(0, 256, (64, 80)).astype(np.uint8)).save(
        folder / "00000014_000.jpg", quality=90)
    data = bytearray((folder / "00000014_000.jpg").read_bytes())
    data[2:40] = b"\x00" * 38  # the APP0/DQT segments after the SOI marker
    (folder / "00000014_000.jpg").write_bytes(bytes(data))
    bad("corrupt_jpeg_header", "00000014_000.jpg", ("corrupt JPEG header",))
    (folder / "00000015_000.png").write_bytes(_png_header_only(100_000, 100_000))
    bad("bomb_png", "00000015_000.png", ("too large", "10000000000 pixels"))
    Image.fromarray(rng.integers(0, 256, (64, 80)).astype(np.uint8)).save(
        folder / "00000016_000.png")
    bad("unknown_class", "00000016_000.png", ("'Dragon'", "not a class"), finding="Dragon",
        names="Data_Entry_2017.csv (row of 00000016_000)")
    bad("row_without_image", "00000017_000.png", ("row without an image file",),
        outcome="skipped", key="Data_Entry_2017.csv: 00000017_000.png")
    bad("absolute_path", "/etc/00000018_000.png", ("absolute path",), outcome="skipped",
        key="Data_Entry_2017.csv: /etc/00000018_000.png")
    bad("dotdot_path", "../00000019_000.png", ("outside the source folder",),
        outcome="skipped", key="Data_Entry_2017.csv: ../00000019_000.png")
    # A box beyond the 80x64 picture of a good-looking image fails that image.
    Image.fromarray(rng.integers(0, 256, (64, 80)).astype(np.uint8)).save(
        folder / "00000020_000.png")
    bad("box_outside", "00000020_000.png", ("outside the image",), finding="Mass",
        names="BBox_List_2017.csv (rows of 00000020_000.png)")

    with open(root / "Data_Entry_2017.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Image Index", "Finding Labels", "Follow-up #", "Patient ID",
                         "Patient Age", "Patient Gender", "View Position"])
        for k, (name, findings) in enumerate(rows):
            writer.writerow([name, findings, "0", str(100 + k), "58", "M", "PA"])
    (root / "test_list.txt").write_text(f"{good[-1]}.png\n")
    (root / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        "00000003_000.png,Mass,10,10,20,20\n"
        "00000020_000.png,Mass,5000,4000,30,30\n")
    return good, entries


def _png_bytes(pixels: np.ndarray) -> bytes:
    from io import BytesIO

    out = BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height 8-bit grey pixels, with a tiny IDAT."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + \
            struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
            chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


# -- inputs that stop a whole build ----------------------------------------------------------


def make_source_level(root: Path) -> list[Entry]:
    """One source folder per input under ``root/<name>``; the entry's key is that folder."""
    entries = []

    def chest(name: str) -> Path:
        source = root / name
        make_chest_minimal(source)
        return source

    source = chest("csv_missing_columns")
    text = (source / "Data_Entry_2017.csv").read_text().replace("Patient ID", "Patient")
    (source / "Data_Entry_2017.csv").write_text(text)
    entries.append(Entry("csv_missing_columns", str(source), ("missing column", "Patient ID"),
                         "source", names="Data_Entry_2017.csv", recipe="nih-chestxray14"))
    source = chest("csv_binary")
    (source / "Data_Entry_2017.csv").write_bytes(
        bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)))
    entries.append(Entry("csv_binary", str(source), ("binary, not a CSV text table",), "source",
                         names="Data_Entry_2017.csv", recipe="nih-chestxray14"))
    source = chest("csv_empty")
    (source / "Data_Entry_2017.csv").write_bytes(b"")
    entries.append(Entry("csv_empty", str(source), ("empty",), "source",
                         names="Data_Entry_2017.csv", recipe="nih-chestxray14"))
    source = chest("csv_duplicate_rows")
    with open(source / "Data_Entry_2017.csv", "a") as handle:
        handle.write("00000001_000.png,Mass,0,1,58,M,PA\n")
    entries.append(Entry("csv_duplicate_rows", str(source), ("'00000001_000.png'", "two rows"),
                         "source", names="Data_Entry_2017.csv", recipe="nih-chestxray14"))
    source = chest("bbox_missing_columns")
    (source / "BBox_List_2017.csv").write_text("Image Index,Label\n")
    entries.append(Entry("bbox_missing_columns", str(source), ("missing column",), "source",
                         names="BBox_List_2017.csv", recipe="nih-chestxray14"))

    source = root / "duplicate_ids"
    (source / "images").mkdir(parents=True)
    _save(_volume(0), source / "images" / "dup.nii.gz")
    _save(_volume(1), source / "images" / "dup.nii")
    entries.append(Entry("duplicate_case_ids", str(source), ("'dup'", "used twice"), "source",
                         names="dup.nii", recipe="volume-folder",
                         overrides=volume_overrides()))

    good_source = root / "recipe_source"
    (good_source / "images").mkdir(parents=True)
    _save(_volume(0), good_source / "images" / "a.nii.gz")
    recipe = root / "unknown_keys.yaml"
    from medimg_build.recipe.model import load_recipe
    import yaml

    data = load_recipe("volume-folder").data | {"harmonise": {"spacing": [1, 1, 1]}}
    recipe.write_text(yaml.safe_dump(data))
    entries.append(Entry("recipe_unknown_keys", str(good_source), ("'harmonise' was unexpected",),
                         "source", names=str(recipe), recipe=recipe))
    recipe = root / "not_yaml.yaml"
    recipe.write_text("name: [unclosed\n  layout: : volumes\n\t- {")
    entries.append(Entry("recipe_not_yaml", str(good_source), ("not valid YAML",), "source",
                         names=str(recipe), recipe=recipe))
    recipe = root / "binary_recipe.yaml"
    recipe.write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\xff\xfe")
    entries.append(Entry("recipe_binary", str(good_source), ("not a text file",), "source",
                         names=str(recipe), recipe=recipe))
    return entries


def make_chest_minimal(root: Path) -> None:
    folder = root / "images"
    folder.mkdir(parents=True)
    with open(root / "Data_Entry_2017.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Image Index", "Finding Labels", "Follow-up #", "Patient ID",
                         "Patient Age", "Patient Gender", "View Position"])
        for k in range(1, 3):
            name = f"0000000{k}_000.png"
            Image.fromarray(np.full((32, 40), 40 * k, np.uint8)).save(folder / name)
            writer.writerow([name, "No Finding", "0", str(k), "58", "M", "PA"])
    (root / "test_list.txt").write_text("")
    (root / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
