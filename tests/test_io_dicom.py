"""DICOM reading against the field's reference tools, on real data.

Ground truth: dicom2nifti's own NIfTI output for its test series, TotalSegmentator's
segmentation grid, torchxrayvision's MONOCHROME1 fake, and pydicom's shipped test files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian

from medimg_build.resources import find_shared_data
from medimg_build.errors import DicomSeriesError, ImageReadError, MedimgError
from medimg_build.io import read_image
from medimg_build.io.read_options import read_options
from medimg_build.provenance import AppliedStep

# pydicom's shipped files, located without ever calling its downloader.
PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"

LOSSLESS_SYNTAXES = {
    "1.2.840.10008.1.2": "Implicit VR Little Endian",
    "1.2.840.10008.1.2.1": "Explicit VR Little Endian",
    "1.2.840.10008.1.2.2": "Explicit VR Big Endian",
    "1.2.840.10008.1.2.5": "RLE Lossless",
    "1.2.840.10008.1.2.4.57": "JPEG Lossless (Process 14)",
    "1.2.840.10008.1.2.4.70": "JPEG Lossless SV1 (Process 14)",
    "1.2.840.10008.1.2.4.80": "JPEG-LS Lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 Lossless Only",
}

SIIM_CR = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"

# 4D (time / diffusion) series: test_io_dicom_4d.py; failing/ has its own tests below.
NOT_PLAIN_VOLUMES = ("dti", "fmri", "failing")


def _discover_ground_truth_series() -> list:
    shared = find_shared_data()
    root = shared / "dicom2nifti" if shared else None
    if root is None or not root.is_dir():
        return []
    cases = []
    for truth in sorted(root.rglob("*_ground_truth.nii.gz")):
        folder = truth.with_name(truth.name.removesuffix("_ground_truth.nii.gz"))
        rel = folder.relative_to(root).as_posix()
        if folder.is_dir() and not any(part in NOT_PLAIN_VOLUMES for part in rel.split("/")):
            cases.append(pytest.param(rel, id=rel))
    return cases


GROUND_TRUTH_SERIES = _discover_ground_truth_series() or [pytest.param(None, id="no-data")]


def canonical(array: np.ndarray, affine: np.ndarray) -> nib.Nifti1Image:
    return nib.as_closest_canonical(nib.Nifti1Image(array, affine))


def truth_voxels(img: nib.Nifti1Image) -> np.ndarray:
    data = np.asanyarray(img.dataobj)
    if data.dtype.names:  # dicom2nifti writes RGB as NIfTI RGBA32
        data = np.stack([data[c] for c in "RGB"], axis=-1)
    return data


def one_line(error: MedimgError, path) -> str:
    message = str(error)
    assert "\n" not in message
    assert str(path) in message
    return message


# -- 1. every plain volume equals dicom2nifti's ground truth ------------------------------------


@pytest.mark.parametrize("rel", GROUND_TRUTH_SERIES)
def test_series_matches_dicom2nifti_ground_truth(shared_data, rel):
    if rel is None:
        pytest.fail("no dicom2nifti ground-truth series found under shared data")
    folder = shared_data / "dicom2nifti" / rel
    with read_options(philips_scaling="display"):  # dicom2nifti applies RS/RI only
        image = read_image(folder)
    truth = nib.load(folder.with_name(folder.name + "_ground_truth.nii.gz"))

    ours_ras = canonical(image.array, image.affine)
    truth_ras = nib.as_closest_canonical(truth)
    np.testing.assert_allclose(ours_ras.affine, truth_ras.affine, atol=1e-3, rtol=0)

    ours, expected = np.asanyarray(ours_ras.dataobj), truth_voxels(truth_ras)
    if expected.shape != ours.shape and expected.shape[3:] == (1,):
        expected = expected[..., 0]  # dicom2nifti keeps a 4th axis of 1 for enhanced MR
    assert ours.shape == expected.shape
    if np.issubdtype(expected.dtype, np.floating):
        # dicom2nifti scales float data in float32 (or float64); we scale in float64 and
        # round once to float32, so values agree to float32 precision.
        np.testing.assert_allclose(ours, expected, rtol=2.0**-22, atol=0)
        assert image.array.dtype == np.float32
    else:
        np.testing.assert_array_equal(ours, expected)

    assert image.meta["format"] == "dicom"
    assert image.meta["space"] == "patient"
    assert image.spatial_ndim == 3
    assert image.meta["source_files"] == sorted(image.meta["source_files"])
    assert all(Path(f).is_absolute() and Path(f).is_file() for f in image.meta["source_files"])
    json.dumps(image.meta)  # every value JSON-serializable
    [step] = image.history
    assert step.name == "read" and step.params["reader"] == "dicom"
    json.loads(step.to_json())


def test_ground_truth_discovery_covers_the_listed_cases(shared_data):
    ids = {p.id for p in GROUND_TRUTH_SERIES}
    for rel in ("anatomical/001_implicit", "generic/anatomical/002_non_isotropic",
                "generic/compressed_rle/001", "generic/rgb/001", "hyperfine/anatomical/001",
                "ge/anatomical/001", "ge/anatomical/001_single_slice"):
        assert rel in ids


def test_float_rescale_matches_dicom2nifti_exactly_after_rounding(shared_data):
    # 002_non_isotropic has RescaleSlope 0.00103.. / Intercept 33.9: dicom2nifti keeps
    # float64; ours is the same value rounded once to float32.
    folder = shared_data / "dicom2nifti/generic/anatomical/002_non_isotropic"
    image = read_image(folder)
    truth = nib.as_closest_canonical(nib.load(f"{folder}_ground_truth.nii.gz"))
    ours = np.asanyarray(canonical(image.array, image.affine).dataobj)
    np.testing.assert_array_equal(ours, np.asanyarray(truth.dataobj).astype(np.float32))
    assert image.meta["intensity"]["rescale_slope"] == pytest.approx(0.0010346139)


# -- 2. compressed transfer syntaxes ----------------------------------------------------------


@pytest.mark.parametrize("variant", ["compressed_j2k", "compressed_jpeg", "compressed_jpegls",
                                     "compressed_rle"])
def test_compressed_series_decode_to_the_same_voxels(shared_data, variant):
    generic = shared_data / "dicom2nifti/generic"
    reference = read_image(generic / "compressed/001")
    image = read_image(generic / variant / "001")
    syntax = image.meta["dicom"]["TransferSyntaxUID"]
    # All four are lossless syntaxes (the "jpeg" one is Process 14, not baseline), so
    # the voxels must be identical, not merely close.
    assert syntax in LOSSLESS_SYNTAXES, f"{variant} uses lossy {syntax}"
    np.testing.assert_array_equal(image.array, reference.array)
    np.testing.assert_allclose(image.affine, reference.affine, atol=1e-6)


def test_one_image_in_nine_transfer_syntaxes(shared_data):
    files = sorted((shared_data / "dcm_qa_ts/In").glob("*.dcm"))
    assert len(files) == 9
    images = [read_image(f) for f in files]
    for f, image in zip(files, images):
        assert image.meta["dicom"]["TransferSyntaxUID"] in LOSSLESS_SYNTAXES, f.name
        np.testing.assert_array_equal(image.array, images[0].array, err_msg=f.name)
        assert image.array.dtype.isnative


DCM2NIIX_REFERENCES = [
    ("dcm_qa_ts", f"{k}.dcm", f"{k}.nii") for k in range(1, 10)
] + [
    ("dcm_qa_12bit", "12bitUnsigned.dcm", "2.nii"),
    ("dcm_qa_12bit", "12bitUnsigned_0x0F0F.dcm", "3.nii"),
    ("dcm_qa_12bit", "12bitSigned_0x0F0F.dcm", "4.nii"),
]


@pytest.mark.parametrize(("folder", "dcm", "ref"), DCM2NIIX_REFERENCES,
                         ids=[f"{f}/{d}" for f, d, _ in DCM2NIIX_REFERENCES])
def test_siemens_mosaic_matches_dcm2niix(shared_data, folder, dcm, ref):
    # Each file is a Siemens mosaic: 35 slices of 64x64 tiled in one 384x384 image.
    # Tiles, their positions (IPP of the mosaic shifted to the tile) and the 12-bit
    # masking / sign extension must give exactly what dcm2niix wrote.
    image = read_image(shared_data / folder / "In" / dcm)
    truth = nib.as_closest_canonical(nib.load(shared_data / folder / "Ref" / ref))
    ours = canonical(image.array, image.affine)
    assert ours.shape == truth.shape == (64, 64, 35)
    np.testing.assert_allclose(ours.affine, truth.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asanyarray(ours.dataobj), np.asanyarray(truth.dataobj))


def test_mosaic_without_csa_header_uses_the_public_tags(shared_data, tmp_path):
    source = shared_data / "dcm_qa_ts/In/1.dcm"
    reference = read_image(source)
    ds = pydicom.dcmread(source)
    del ds[0x0029, 0x1010]  # CSA image header (slice normal, mosaic count)
    ds.save_as(tmp_path / "no_csa.dcm")
    image = read_image(tmp_path / "no_csa.dcm")
    np.testing.assert_array_equal(image.array, reference.array)
    np.testing.assert_allclose(image.affine, reference.affine, atol=1e-4)
    del ds[0x0019, 0x100A]  # NumberOfImagesInMosaic: nothing left to untile with
    ds.save_as(tmp_path / "no_count.dcm")
    with pytest.raises(DicomSeriesError) as caught:
        read_image(tmp_path / "no_count.dcm")
    assert "mosaic" in one_line(caught.value, tmp_path / "no_count.dcm")


def test_pydicom_small_mr_in_every_encoding():
    reference = read_image(PYDICOM_FILES / "MR_small.dcm")
    for name in ("MR_small_implicit.dcm", "MR_small_bigendian.dcm", "MR_small_expb.dcm",
                 "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                 "MR_small_jpeg_ls_lossless.dcm"):
        image = read_image(PYDICOM_FILES / name)
        np.testing.assert_array_equal(image.array, reference.array, err_msg=name)
        np.testing.assert_allclose(image.affine, reference.affine)
        assert image.array.dtype.isnative


# -- 3. a real CT in Hounsfield units on its segmentation's grid --------------------------------


def test_totalsegmentator_ct_is_in_hu_on_the_segmentation_grid(shared_data):
    ct = read_image(shared_data / "totalsegmentator/example_ct_dicom")
    assert ct.meta["modality"] == "CT"
    assert ct.meta["dicom"]["TransferSyntaxUID"] == "1.2.840.10008.1.2.4.90"
    assert ct.array.dtype == np.int16
    assert ct.meta["intensity"]["unit"] == "HU"
    assert ct.meta["intensity"]["rescale_intercept"] == -1024
    assert ct.array.min() == -1024  # air outside the body: stored 0 + intercept
    assert ct.array.max() > 1000  # bone

    seg_path = shared_data / "totalsegmentator/example_seg_dicom.nii.gz"
    seg = nib.as_closest_canonical(nib.load(seg_path))
    ours = canonical(ct.array, ct.affine)
    assert ours.shape == seg.shape == (512, 512, 20)
    np.testing.assert_allclose(ours.affine, seg.affine, atol=1e-3)
    # The files have no suffix: names like "CT.1.3.12...." are found by their preamble.
    assert all(Path(f).parent.name == "example_ct_dicom" for f in ct.meta["source_files"])


def test_extensionless_single_dicom_file(shared_data):
    first = sorted((shared_data / "totalsegmentator/example_ct_dicom").iterdir())[0]
    image = read_image(first)
    assert image.array.shape == (512, 512, 1)
    assert image.meta["source_files"] == [str(first.resolve())]


# -- 4. X-ray DICOM: MONOCHROME1 ---------------------------------------------------------------


def test_monochrome1_is_inverted_to_match_monochrome2(shared_data):
    folder = shared_data / "torchxrayvision/tests"
    fake = folder / "Fake_MONOHR1.dcm"
    siim = folder / SIIM_CR
    # The fake stores the very same pixel bytes, only relabelled MONOCHROME1...
    assert pydicom.dcmread(fake).PixelData == pydicom.dcmread(siim).PixelData
    mono1, mono2 = read_image(fake), read_image(siim)
    # ...so read correctly it is the negative of the original: 255 - value (8 bits stored).
    assert mono1.meta["intensity"]["inverted"] is True
    assert mono2.meta["intensity"]["inverted"] is False
    np.testing.assert_array_equal(mono1.array, 255 - mono2.array)
    assert mono1.array.dtype == mono2.array.dtype == np.uint8


def test_cr_without_orientation_is_a_2d_picture_with_pixel_spacing(shared_data):
    siim = shared_data / "torchxrayvision/tests" / SIIM_CR
    image = read_image(siim)
    ds = pydicom.dcmread(siim)
    assert image.spatial_ndim == 2
    assert image.array.shape == (ds.Columns, ds.Rows)
    np.testing.assert_array_equal(image.array, ds.pixel_array.T)
    assert image.meta["space"] == "image"
    assert image.meta["modality"] == "CR"
    assert image.meta["pixel_spacing_known"] is True
    np.testing.assert_allclose(image.affine, np.diag([0.168, 0.168, 1, 1]))
    assert image.meta["intensity"]["photometric"] == "MONOCHROME2"
    assert image.meta["patient_id"] == str(ds.PatientID)
    assert "PatientName" not in json.dumps(image.meta)


# -- slice ordering, single files, metadata ------------------------------------------------------


def _copy_series(src: Path, dst: Path, rename=None) -> list[Path]:
    dst.mkdir(parents=True)
    out = []
    for k, f in enumerate(sorted(p for p in src.iterdir() if p.is_file())):
        target = dst / (rename(k, f) if rename else f.name)
        shutil.copy(f, target)
        out.append(target)
    return out


def test_order_comes_from_positions_not_names_or_instance_numbers(shared_data, tmp_path):
    src = shared_data / "dicom2nifti/generic/anatomical/001"
    reference = read_image(src)
    # Reverse the file names and scramble InstanceNumber: nothing may change.
    files = _copy_series(src, tmp_path / "s", rename=lambda k, f: f"z{9 - k}.dcm")
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ds.InstanceNumber = [3, 1, 4, 2][k]
        ds.save_as(f)
    image = read_image(tmp_path / "s")
    np.testing.assert_array_equal(image.array, reference.array)
    np.testing.assert_allclose(image.affine, reference.affine)


def test_non_dicom_files_and_dicomdir_are_ignored(shared_data, tmp_path):
    src = shared_data / "dicom2nifti/generic/anatomical/001"
    _copy_series(src, tmp_path / "s" / "deeper")  # searched recursively
    (tmp_path / "s" / "README.txt").write_text("not an image\n")
    (tmp_path / "s" / "notes.json").write_text("{}")
    shutil.copy(PYDICOM_FILES / "dicomdirtests" / "DICOMDIR", tmp_path / "s" / "DICOMDIR")
    image = read_image(tmp_path / "s")
    np.testing.assert_array_equal(image.array, read_image(src).array)
    assert len(image.meta["source_files"]) == 4


def test_single_slice_is_a_one_slice_volume_with_thickness_recorded():
    image = read_image(PYDICOM_FILES / "CT_small.dcm")
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    assert image.array.shape == (ds.Columns, ds.Rows, 1)
    # CT_small gives both; SpacingBetweenSlices wins, as in dcm2niix (both are 5 here).
    assert image.spacing[2] == pytest.approx(float(ds.SpacingBetweenSlices))
    assert image.meta["geometry"]["slice_spacing_source"] == "SpacingBetweenSlices"
    assert image.array.dtype == np.int16
    expected = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    np.testing.assert_array_equal(image.array[..., 0], expected.T)
    assert image.meta["intensity"]["unit"] == "HU"
    # LPS -> RAS: the first two world axes change sign.
    assert image.affine[0, 3] == pytest.approx(-float(ds.ImagePositionPatient[0]))
    assert image.affine[1, 3] == pytest.approx(-float(ds.ImagePositionPatient[1]))
    assert image.affine[2, 3] == pytest.approx(float(ds.ImagePositionPatient[2]))


def test_acquisition_facts_are_json_and_carry_no_names():
    image = read_image(PYDICOM_FILES / "CT_small.dcm")
    facts = image.meta["dicom"]
    assert facts["KVP"] == 120.0 and facts["ConvolutionKernel"] == "STANDARD"
    for key in ("Modality", "Manufacturer", "KVP", "ConvolutionKernel", "SliceThickness",
                "StudyInstanceUID", "SeriesInstanceUID", "TransferSyntaxUID"):
        assert key in facts
    text = json.dumps(image.meta)
    for forbidden in ("PatientName", "PatientBirthDate", "ReferringPhysicianName"):
        assert forbidden not in text
    assert isinstance(image.history[0], AppliedStep)


# -- failures: specific, one line, naming the folder ----------------------------------------------


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("gantrytilting/001", "gantry tilt"),
        ("notavolume/001", "distinct positions"),
        ("sliceincrement/001", "missing slice"),
        ("sliceincrement/002", "missing slice"),
        ("sliceorientation/001", "mixed orientation"),
    ],
)
def test_failing_series_give_specific_errors(shared_data, case, words):
    folder = shared_data / "dicom2nifti/failing" / case
    with pytest.raises(DicomSeriesError) as caught:
        read_image(folder)
    assert words in one_line(caught.value, folder)


def test_two_slice_series_reads_like_dicom2nifti(shared_data):
    # failing/slicecount has only two slices (too few for dicom2nifti's checks), but they
    # form a regular volume, and its ground truth shows what it is.
    folder = shared_data / "dicom2nifti/failing/slicecount/001"
    image = read_image(folder)
    truth = nib.as_closest_canonical(nib.load(f"{folder}_ground_truth.nii.gz"))
    ours = canonical(image.array, image.affine)
    np.testing.assert_allclose(ours.affine, truth.affine, atol=1e-3)
    np.testing.assert_array_equal(np.asanyarray(ours.dataobj), np.asanyarray(truth.dataobj))


def test_folder_with_several_series_lists_them():
    folder = PYDICOM_FILES / "dicomdirtests" / "77654033"
    with pytest.raises(DicomSeriesError) as caught:
        read_image(folder)
    message = one_line(caught.value, folder)
    assert "contains 4 DICOM series" in message
    assert "one series" in message


def test_mixed_orientation_in_one_series():
    # A real localizer series: one SeriesInstanceUID, three planes.
    folder = PYDICOM_FILES / "dicomdirtests" / "98892003" / "MR700"
    with pytest.raises(DicomSeriesError) as caught:
        read_image(folder)
    assert "mixed orientation" in one_line(caught.value, folder)


def test_uneven_spacing_is_named(shared_data, tmp_path):
    files = _copy_series(shared_data / "dicom2nifti/generic/anatomical/001", tmp_path / "s")
    ds = pydicom.dcmread(files[-1])
    normal = np.cross(np.array(ds.ImageOrientationPatient[:3], float),
                      np.array(ds.ImageOrientationPatient[3:], float))
    ds.ImagePositionPatient = list(np.array(ds.ImagePositionPatient, float) + 0.4 * normal)
    ds.save_as(files[-1])
    with pytest.raises(DicomSeriesError) as caught:
        read_image(tmp_path / "s")
    assert "uneven spacing" in one_line(caught.value, tmp_path / "s")


def test_empty_and_non_dicom_folders(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ImageReadError) as caught:
        read_image(empty)
    assert "no DICOM" in one_line(caught.value, empty)
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.txt").write_text("hello")
    (junk / "b.dcm").write_text("not dicom at all")
    with pytest.raises(ImageReadError) as caught:
        read_image(junk)
    assert "no DICOM" in one_line(caught.value, junk)


def test_text_file_named_dcm(tmp_path):
    fake = tmp_path / "fake.dcm"
    fake.write_text("this is a text file\nwith two lines\n")
    with pytest.raises(ImageReadError) as caught:
        read_image(fake)
    assert "not a DICOM file" in one_line(caught.value, fake)


def test_truncated_pixel_data_names_the_file():
    path = PYDICOM_FILES / "MR_truncated.dcm"
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    assert "cannot decode pixel data" in one_line(caught.value, path)


def test_truncated_file_in_a_copy(tmp_path):
    data = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as caught:
        read_image(cut)
    one_line(caught.value, cut)


def test_cut_compressed_file_is_called_truncated_not_a_file_without_image(tmp_path):
    # Encapsulated (JPEG 2000) pixel data cut before its end delimiter: pydicom drops
    # the element, and the file read alone was "holds no image (point at an image
    # file, not a report...)", though its folder said "truncated?" (pydicom-data's
    # emri_small_jpeg_2k_lossless_too_short.dcm is such a file).
    data = (PYDICOM_FILES / "MR_small_jp2klossless.dcm").read_bytes()
    cut = tmp_path / "cut" / "mr.dcm"
    cut.parent.mkdir()
    cut.write_bytes(data[:-2000])
    for where in (cut, cut.parent):
        with pytest.raises(ImageReadError) as caught:
            read_image(where)
        assert "without pixel data (truncated?)" in one_line(caught.value, cut)


def test_damaged_slice_in_a_folder_is_named(shared_data, tmp_path):
    files = _copy_series(shared_data / "dicom2nifti/generic/anatomical/001", tmp_path / "s")
    files[1].write_bytes(files[1].read_bytes()[:300])  # preamble kept, header cut short
    with pytest.raises(ImageReadError) as caught:
        read_image(tmp_path / "s")
    assert "damaged DICOM file" in one_line(caught.value, files[1])


def test_dicom_without_pixels_is_refused():
    path = PYDICOM_FILES / "rtplan.dcm"
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    assert "no image" in one_line(caught.value, path)


def test_cine_multiframe_is_refused_clearly():
    path = PYDICOM_FILES / "SC_rgb_rle_2frame.dcm"
    with pytest.raises(DicomSeriesError) as caught:
        read_image(path)
    assert "multi-frame" in one_line(caught.value, path)


# -- photometric and bit-depth handling on synthetic variants -------------------------------------


def _variant(tmp_path: Path, name: str, **changes) -> Path:
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    for key, value in changes.items():
        setattr(ds, key, value)
    out = tmp_path / name
    ds.save_as(out)
    return out


def test_unsigned_12bit_monochrome1_uses_the_stored_range(tmp_path):
    ds = pydicom.dcmread(PYDICOM_FILES / "CT_small.dcm")
    stored = np.clip(ds.pixel_array, 0, 4095).astype(np.uint16)
    ds.PixelRepresentation, ds.BitsStored, ds.HighBit = 0, 12, 11
    ds.PixelData = stored.tobytes()
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.Modality = "DX"
    del ds.RescaleSlope, ds.RescaleIntercept
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path = tmp_path / "mono1.dcm"
    ds.save_as(path)
    image = read_image(path)
    np.testing.assert_array_equal(image.array[..., 0], (4095 - stored).T)
    assert image.array.dtype == np.uint16
    assert image.meta["intensity"]["inverted"] is True
    assert image.meta["intensity"]["bits_stored"] == 12


def test_signed_monochrome1_is_bitwise_inverted(tmp_path):
    plain = read_image(PYDICOM_FILES / "MR_small.dcm")  # signed 16-bit
    path = tmp_path / "m1.dcm"
    ds = pydicom.dcmread(PYDICOM_FILES / "MR_small.dcm")
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(path)
    image = read_image(path)
    np.testing.assert_array_equal(image.array, -1 - plain.array.astype(np.int32))
    assert image.meta["intensity"]["inversion"] == "-1 - stored"


def test_non_integer_rescale_gives_float32(tmp_path):
    path = _variant(tmp_path, "f.dcm", RescaleSlope="0.5", RescaleIntercept="-10.25")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    assert image.array.dtype == np.float32
    np.testing.assert_array_equal(image.array[..., 0],
                                  (ds.pixel_array * 0.5 - 10.25).astype(np.float32).T)


def test_rescale_that_overflows_int16_gives_float32(tmp_path):
    path = _variant(tmp_path, "big.dcm", RescaleSlope="1", RescaleIntercept="40000")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    assert image.array.dtype == np.float32
    np.testing.assert_array_equal(image.array[..., 0], (ds.pixel_array + 40000.0).T)


def test_rgb_dicom_has_a_trailing_channel_axis():
    path = PYDICOM_FILES / "SC_rgb_rle.dcm"
    image = read_image(path)
    ds = pydicom.dcmread(path)
    assert image.array.shape == (ds.Columns, ds.Rows, 3)
    np.testing.assert_array_equal(image.array, ds.pixel_array.transpose(1, 0, 2))
    assert image.meta["intensity"]["photometric"] == "RGB"
    assert image.array.flags.c_contiguous or image.array.flags.f_contiguous
