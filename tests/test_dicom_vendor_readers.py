"""Vendor layouts the DICOM reader meets in the field (issue 15, items 6-9).

* Siemens XA enhanced: one multi-frame file per volume, pooled into one 4D image in the
  order of the per-frame items, as dcm2niix writes it;
* UIH mosaics ("grids"): refused in one line naming the private geometry;
* a lone slice: its slab is SpacingBetweenSlices thick when the file gives it, as in
  dcm2niix's NIfTI;
* old ACR-NEMA style files (no preamble, no file meta): read as implicit VR little
  endian, alone, in a folder and by discovery, with the fact recorded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from medimg_build.errors import DicomSeriesError, ImageReadError
from medimg_build.io import read_image
from medimg_build.io.dicom_discovery import discover_series, read_dicom_series

from dcm2niix_reference import assert_same_affine, assert_same_volume, run_dcm2niix

XA10 = "dcm_qa_vendor/dcm_qa_enh/In/Siemens/XA10"
XA10_REF = "dcm_qa_vendor/dcm_qa_enh/Ref/Siemens_REST1_w_SMS_PF7-8_6.nii"
CLASSIC_MR = "dicom2nifti/generic/anatomical/001"  # four 256x256 MR slices, Part 10


# -- item 6: Siemens XA, one enhanced file per volume -----------------------------------------


def xa_files_in_reverse(shared_data: Path, folder: Path) -> list[Path]:
    """The four XA10 volumes under names that sort last volume first, so that a reader
    ordering volumes by path (or by the first file read) gets them backwards."""
    folder.mkdir()
    sources = sorted((shared_data / XA10).glob("6_*.dcm"))
    return [Path(shutil.copy(src, folder / f"{len(sources) - k}.dcm"))
            for k, src in enumerate(sources)]


def test_xa_volume_files_make_the_4d_image_dcm2niix_writes(shared_data, tmp_path):
    xa_files_in_reverse(shared_data, tmp_path / "xa")
    image = read_image(tmp_path / "xa")
    assert image.array.shape == (64, 64, 6, 4)
    # Each volume holds the six slices of one time point, in time order.
    assert_same_volume(image, shared_data / XA10_REF)
    assert image.meta["dicom"]["NumberOfVolumes"] == 4
    assert len(image.meta["source_files"]) == 4


def test_xa_diffusion_volume_files_carry_their_b_values(shared_data, tmp_path):
    """The real XA10 files made a diffusion series: each file's frames get a per-frame
    MR Diffusion item (b-value, gradient). The b-values come out in volume order and
    equal dcm2niix's .bval for the same files."""
    b_values = [0.0, 1000.0, 2000.0, 1000.0]
    gradients = [None, (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    folder = tmp_path / "dwi"
    for path, b_value, gradient in zip(xa_files_in_reverse(shared_data, folder),
                                       b_values, gradients, strict=True):
        ds = pydicom.dcmread(path)  # the k-th volume, under a name sorting it last
        for item in ds.PerFrameFunctionalGroupsSequence:
            diffusion = Dataset()
            diffusion.DiffusionBValue = b_value
            diffusion.DiffusionDirectionality = "DIRECTIONAL" if gradient else "NONE"
            if gradient:
                direction = Dataset()
                direction.DiffusionGradientOrientation = list(gradient)
                diffusion.DiffusionGradientDirectionSequence = Sequence([direction])
            item.MRDiffusionSequence = Sequence([diffusion])
        ds.save_as(path)
    image = read_image(folder)
    facts = image.meta["dicom"]
    assert facts["DiffusionBValues"] == b_values
    assert facts["DiffusionGradients"] == [list(g) if g else [0.0, 0.0, 0.0] for g in gradients]
    [nifti] = run_dcm2niix(folder, tmp_path / "nii")
    np.testing.assert_array_equal(facts["DiffusionBValues"], np.loadtxt(nifti.with_suffix(".bval")))


def test_xa_volume_files_are_one_discovered_series(shared_data, tmp_path):
    """Needs discovery to read enhanced headers over 64 KiB (issue 15 item 5): until
    then the four files are skipped as unreadable, and this test fails."""
    xa_files_in_reverse(shared_data, tmp_path / "xa")
    found = discover_series(tmp_path / "xa")
    assert [len(ref.files) for ref in found.series] == [4], found.summary()
    np.testing.assert_array_equal(read_dicom_series(found.series[0]).array,
                                  read_image(tmp_path / "xa").array)


# -- item 7: UIH mosaics ----------------------------------------------------------------------


def uih_grid(source: Path, path: Path, *, vframe: bool) -> Path:
    """A real 256x256 MR slice dressed as a UIH grid of 4 tiles of 128x128: no top-level
    ImagePositionPatient, the tile count in (0065,1050) and one MR VFrame item per tile
    (0065,1051) with its position, as UIH describes them (dcm2niix UIH/README.md)."""
    ds = pydicom.dcmread(source)
    ds.Manufacturer = "UIH"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "VFRAME"] if vframe else \
        ["ORIGINAL", "PRIMARY", "M", "NONE"]
    position = [float(v) for v in ds.ImagePositionPatient]
    del ds.ImagePositionPatient
    ds.SOPInstanceUID = generate_uid()
    block = ds.private_block(0x0065, "Image Private Header", create=True)
    block.add_new(0x50, "DS", "4")
    items = []
    for tile in range(4):
        item = Dataset()
        item.ImagePositionPatient = [position[0], position[1], position[2] + 4.0 * tile]
        items.append(item)
    block.add_new(0x51, "SQ", Sequence(items))
    ds.save_as(path)
    return path


@pytest.mark.parametrize("vframe", [True, False], ids=["ImageType-VFRAME", "private-count"])
@pytest.mark.parametrize("as_folder", [True, False], ids=["folder", "file"])
def test_uih_mosaic_is_refused_naming_its_private_geometry(shared_data, tmp_path, vframe,
                                                          as_folder):
    sources = sorted((shared_data / CLASSIC_MR).iterdir())[:2]
    (tmp_path / "uih").mkdir()
    files = [uih_grid(src, tmp_path / "uih" / f"{k}.dcm", vframe=vframe)
             for k, src in enumerate(sources)]
    with pytest.raises(DicomSeriesError) as caught:
        read_image(tmp_path / "uih" if as_folder else files[0])
    message = str(caught.value)
    assert "UIH mosaic (tile geometry in private 0065,1051) not supported" in message
    assert "convert with dcm2niix" in message
    assert "projection" not in message and "\n" not in message


# -- item 8: the slab of a lone slice ---------------------------------------------------------


def test_single_slice_slab_is_spacing_between_slices_as_in_dcm2niix(shared_data, tmp_path):
    source = sorted((shared_data / CLASSIC_MR).iterdir())[0]
    ds = pydicom.dcmread(source)
    ds.SliceThickness, ds.SpacingBetweenSlices = "3", "4.5"  # a 1.5 mm gap
    (tmp_path / "one").mkdir()
    ds.save_as(tmp_path / "one" / "slice.dcm")
    image = read_image(tmp_path / "one" / "slice.dcm")
    assert image.spacing[2] == pytest.approx(4.5)
    assert image.meta["geometry"]["slice_spacing_source"] == "SpacingBetweenSlices"
    [nifti] = run_dcm2niix(tmp_path / "one", tmp_path / "nii")
    assert_same_affine(image, nifti)


# -- item 9: files without preamble or file meta ----------------------------------------------


def write_without_file_meta(source: Path, path: Path) -> Path:
    """The dataset of a real Part 10 file as an old ACR-NEMA file: no preamble, no
    'DICM', no file meta group; implicit VR little endian, as the standard's default."""
    ds = pydicom.dcmread(source)
    del ds.file_meta
    ds.preamble = None
    dcmwrite(path, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[:2] == b"\x08\x00"  # group 0008 first, nothing before it
    return path


@pytest.fixture
def acr_nema_series(shared_data, tmp_path) -> Path:
    folder = tmp_path / "acr"
    folder.mkdir()
    for source in sorted((shared_data / CLASSIC_MR).iterdir()):
        write_without_file_meta(source, folder / source.name)
    (folder / "README.txt").write_text("not an image\n")  # still skipped quietly
    return folder


def assert_read_as_implicit(image) -> None:
    facts = image.meta["dicom"]
    assert facts["FileMeta"] == ("absent (no preamble, no file meta): read as Implicit VR "
                                 "Little Endian")
    assert facts["TransferSyntaxUID"] == "1.2.840.10008.1.2"


def test_folder_without_file_meta_reads_like_the_part10_series(shared_data, acr_nema_series):
    image = read_image(acr_nema_series)
    part10 = read_image(shared_data / CLASSIC_MR)
    np.testing.assert_array_equal(image.array, part10.array)
    np.testing.assert_allclose(image.affine, part10.affine, atol=1e-9)
    assert len(image.meta["source_files"]) == 4
    assert_read_as_implicit(image)
    assert "FileMeta" not in part10.meta["dicom"]


def test_one_file_without_file_meta_is_read(shared_data, acr_nema_series):
    name = sorted(p.name for p in (shared_data / CLASSIC_MR).iterdir())[0]
    image = read_image(acr_nema_series / name)
    np.testing.assert_array_equal(image.array,
                                  read_image(shared_data / CLASSIC_MR / name).array)
    assert_read_as_implicit(image)


def test_discovery_finds_files_without_file_meta(shared_data, acr_nema_series):
    found = discover_series(acr_nema_series)
    assert [len(ref.files) for ref in found.series] == [4], found.summary()
    assert [s.path.name for s in found.skipped] == ["README.txt"]
    np.testing.assert_array_equal(read_dicom_series(found.series[0]).array,
                                  read_image(shared_data / CLASSIC_MR).array)


def test_bytes_that_only_start_like_dicom_are_refused_loudly(acr_nema_series):
    fake = acr_nema_series / "fake.dcm"
    fake.write_bytes(b"\x08\x00\x05\x00" + b"\xff" * 400)  # a group 0008 tag, then junk
    with pytest.raises(ImageReadError, match="not a DICOM file"):
        read_image(fake)
    with pytest.raises(ImageReadError, match="fake.dcm"):
        read_image(acr_nema_series)  # in a folder it is a damaged member, not skipped


def test_xa_files_whose_frames_do_not_order_the_volumes_are_refused(shared_data, tmp_path):
    """Two XA volume files stripped of TemporalPositionIndex (dimension index without
    time), the second storing its slices in the opposite order. Frame numbers count
    within one file, so they cannot order volumes across files: ordering by them would
    swap the two volumes at every other slice. Refused, naming both files."""
    folder = tmp_path / "xa"
    folder.mkdir()
    for k, source in enumerate(sorted((shared_data / XA10).glob("6_*.dcm"))[:2]):
        ds = pydicom.dcmread(source)
        ds.DimensionIndexSequence = Sequence(list(ds.DimensionIndexSequence)[:2])  # no time
        for item in ds.PerFrameFunctionalGroupsSequence:
            content = item.FrameContentSequence[0]
            del content.TemporalPositionIndex
            content.DimensionIndexValues = list(content.DimensionIndexValues)[:2]
        if k == 1:
            ds.PerFrameFunctionalGroupsSequence = Sequence(
                list(ds.PerFrameFunctionalGroupsSequence)[::-1])
            ds.PixelData = np.ascontiguousarray(ds.pixel_array[::-1]).tobytes()
        ds.save_as(folder / f"{k + 1}.dcm")
    with pytest.raises(DicomSeriesError, match="1.dcm frame 6 and 2.dcm frame 1 share "
                       "position, TemporalPositionIndex and DimensionIndexValues"):
        read_image(folder)
