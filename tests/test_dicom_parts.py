"""Series that hold several images dcm2niix writes separately (issue 15, items 1 and 5).

Magnitude and phase, real and imaginary, a field map in Hz beside its magnitude, several
echoes: each part is its own image, never channels of one silently mixed 4D image.
``read_image`` on a folder of several parts refuses, naming them; ``discover_series``
returns each part (even several inside one enhanced file); a ``dicom-tree`` build makes
each a case with ``echo`` and ``image_kind`` in the case table. Every part is compared
with dcm2niix's own output: its shared ``Ref/`` NIfTI, or the binary run on a tmp copy.

Where the shared data has no example (Philips classic M/P and SW_M/SW_P, echoes x
kinds, enhanced ComplexImageComponent, Siemens multi-echo read as a folder), one is
built from real files with pydicom. Philips' private MRScaleSlope (2005,100E) is removed
from those copies: the scaling convention (issue 15, item 4) is not what is tested here.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from medimg_build import open_store
from medimg_build.errors import DicomSeriesError
from medimg_build.io import read_image
from medimg_build.io.dicom_discovery import discover_series, read_dicom_series
from medimg_build.io.dicom_parts import ImagePart
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

from dcm2niix_reference import assert_same_volume, kind_and_echo, run_dcm2niix

VENDOR = "dcm_qa_vendor"
GE_B0MAP = f"{VENDOR}/dcm_qa_fmap/In/GE/6_CV_Neuro"
PHILIPS_FMAP = f"{VENDOR}/dcm_qa_fmap/In/Philips/fmap/IM_0027_fMAP.dcm"
SIEMENS_PHASE = f"{VENDOR}/dcm_qa_fmap/In/Siemens/3_gre_field_magph"
PHILIPS_CLASSIC = f"{VENDOR}/dcm_qa_philips_enh/In/cl"
PRIVATE_SCALE = 0x2005100E  # Philips MRScaleSlope
DCM2NIIX = ["-b", "n", "-f", "%s_%d"]  # no sidecars; series number and description


# -- comparing with dcm2niix --------------------------------------------------------------


def assert_parts_match(root: Path, niftis: list[Path], *, echoes_named: bool = True) -> list:
    """Every part discovery finds under ``root`` equals the one dcm2niix file of its kind
    (and echo, where dcm2niix names echoes by EchoNumbers: classic files)."""
    refs = discover_series(root).series
    assert len(refs) == len(niftis), (refs, niftis)
    named = {nifti: kind_and_echo(nifti.stem.split("_")) for nifti in niftis}
    for ref in refs:
        kind = ref.image_kind or "magnitude"  # unsaid: dcm2niix adds no suffix either
        matches = [n for n in niftis if named[n][0] == kind]
        if echoes_named and len(matches) > 1:
            matches = [n for n in matches if (named[n][1] or 1) == (ref.echo or 1)]
        assert len(matches) == 1, (ref, niftis)
        image = read_dicom_series(ref)
        assert_same_volume(image, matches[0])
        assert image.meta["dicom"].get("ImageKind", "") == ref.image_kind
        assert image.meta["dicom"].get("EchoNumber") == ref.echo
    return refs


# -- building parts from real files --------------------------------------------------------


def without_private_scale(ds: pydicom.Dataset) -> None:
    if PRIVATE_SCALE in ds:
        del ds[PRIVATE_SCALE]
    for element in ds:
        if element.VR == "SQ":
            for item in element.value:
                without_private_scale(item)


def philips_volume(shared_data: Path) -> list[Path]:
    """One clean 3D volume of a real Philips classic series: the 40 slices of the first
    time point's control images of the ASL series 1903."""
    chosen = []
    for path in sorted((shared_data / PHILIPS_CLASSIC).glob("1903_*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if str(ds.TemporalPositionIdentifier) == "1" and \
                str(ds[0x2005, 0x1429].value).strip() == "CONTROL":
            chosen.append(path)
    assert len(chosen) == 40
    return chosen


def write_part(sources: list[Path], folder: Path, series_uid: str, number: int, *,
               image_type: str, echo: int = 1, echo_time: float = 9.0,
               values=lambda pixels: pixels) -> None:
    """The slices again as one part of one series: new instance UIDs and numbers, the
    given ImageType and echo, and pixel values made different per part."""
    folder.mkdir(parents=True, exist_ok=True)
    for k, path in enumerate(sources):
        ds = pydicom.dcmread(path)
        without_private_scale(ds)
        del ds[0x2005, 0x1429]  # the ASL label: these copies are a plain volume
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = number * 1000 + k + 1
        ds.ImageType = image_type.split("\\")
        ds.EchoNumbers, ds.EchoTime = echo, echo_time
        ds.PixelData = values(ds.pixel_array).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(folder / f"{number:02d}_{k:03d}.dcm")


# -- the classes of issue 15, item 1 -------------------------------------------------------


def test_ge_b0_map_is_a_field_map_in_hz_and_a_magnitude(shared_data):
    # One series, one public ImageType; the private GE tags tell the field map (dcm2niix
    # issue 501): the first volume is the field map, written "_fieldmaphz".
    folder = shared_data / GE_B0MAP
    with pytest.raises(DicomSeriesError) as refused:
        read_image(folder)
    assert "magnitude (16 frames); fieldmap (16 frames)" in str(refused.value)
    assert "discover_series" in str(refused.value)
    refs = discover_series(folder).series
    assert [(r.image_kind, r.echo, r.split, len(r.files)) for r in refs] == [
        ("magnitude", 1, "magnitude", 16), ("fieldmap", 1, "fieldmap", 16)]
    ref_folder = shared_data / f"{VENDOR}/dcm_qa_fmap/Ref"
    assert_parts_match(folder, [ref_folder / "GE_6_CV_Neuro_HH_Adv.nii",
                                ref_folder / "GE_6_CV_Neuro_HH_Adv_fieldmaphz.nii"])


def test_philips_enhanced_field_map_and_magnitude_in_one_file(shared_data, tmp_path):
    ds = pydicom.dcmread(shared_data / PHILIPS_FMAP)
    without_private_scale(ds)
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "IM_0027_fMAP.dcm")
    with pytest.raises(DicomSeriesError) as refused:
        read_image(tmp_path / "in" / "IM_0027_fMAP.dcm")
    assert "magnitude (32 frames); fieldmap (32 frames)" in str(refused.value)
    niftis = run_dcm2niix(tmp_path / "in", tmp_path / "out", DCM2NIIX)
    refs = assert_parts_match(tmp_path / "in", niftis, echoes_named=False)
    # Two refs share the one file; each reads only its own 32 frames.
    assert [(r.image_kind, r.n_frames, len(r.files)) for r in refs] == [
        ("magnitude", 32, 1), ("fieldmap", 32, 1)]
    assert refs[0].files == refs[1].files and refs[0].key != refs[1].key


def test_siemens_phase_of_echo_2_says_so(shared_data):
    folder = shared_data / SIEMENS_PHASE
    image = read_image(folder)  # one part: read as before
    assert image.meta["dicom"]["ImageKind"] == "phase"
    assert image.meta["dicom"]["EchoNumber"] == 2
    (ref,) = discover_series(folder).series
    assert (ref.image_kind, ref.echo, ref.split) == ("phase", 2, "")
    assert_same_volume(image, shared_data / f"{VENDOR}/dcm_qa_fmap/Ref/"
                       "Si_3_gre_field_magph_e2_ph.nii")


@pytest.mark.parametrize(("magnitude", "phase"), [
    ("ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE", "ORIGINAL\\PRIMARY\\P_FFE\\P\\FFE"),
    ("ORIGINAL\\PRIMARY\\SW_M\\SW_M\\SW", "ORIGINAL\\PRIMARY\\SW_P\\SW_P\\SW"),
], ids=["M-P", "SW_M-SW_P"])
def test_philips_classic_magnitude_and_phase(shared_data, tmp_path, magnitude, phase):
    sources, uid = philips_volume(shared_data), generate_uid()
    series = tmp_path / "series"
    write_part(sources, series / "m", uid, 1, image_type=magnitude)
    write_part(sources, series / "p", uid, 2, image_type=phase, values=lambda p: p.max() - p)
    with pytest.raises(DicomSeriesError) as refused:
        read_image(series)
    assert "magnitude (40 frames); phase (40 frames)" in str(refused.value)
    niftis = run_dcm2niix(series, tmp_path / "out", DCM2NIIX)
    refs = assert_parts_match(series, niftis)
    assert [r.image_kind for r in refs] == ["magnitude", "phase"]


def test_two_echoes_of_magnitude_and_phase(shared_data, tmp_path):
    sources, uid = philips_volume(shared_data), generate_uid()
    series = tmp_path / "series"
    for echo, echo_time in ((1, 4.6), (2, 9.2)):
        write_part(sources, series / f"m{echo}", uid, 2 * echo - 1, echo=echo,
                   echo_time=echo_time, image_type="ORIGINAL\\PRIMARY\\M_FFE\\M\\FFE",
                   values=lambda p, e=echo: p // e)
        write_part(sources, series / f"p{echo}", uid, 2 * echo, echo=echo,
                   echo_time=echo_time, image_type="ORIGINAL\\PRIMARY\\P_FFE\\P\\FFE",
                   values=lambda p, e=echo: p.max() - p // e)
    with pytest.raises(DicomSeriesError) as refused:
        read_image(series)
    assert ("holds 4 images that dcm2niix writes separately: echo 1, magnitude (40 "
            "frames); echo 1, phase (40 frames); echo 2, magnitude (40 frames); echo 2, "
            "phase (40 frames)") in str(refused.value)
    niftis = run_dcm2niix(series, tmp_path / "out", DCM2NIIX)
    refs = assert_parts_match(series, niftis)
    assert sorted((r.echo, r.image_kind, r.split) for r in refs) == [
        (1, "magnitude", "echo 1, magnitude"), (1, "phase", "echo 1, phase"),
        (2, "magnitude", "echo 2, magnitude"), (2, "phase", "echo 2, phase")]


@pytest.mark.parametrize(("component", "kind"), [
    ("PHASE", "phase"), ("REAL", "real"), ("IMAGINARY", "imaginary")])
def test_enhanced_complex_image_component(shared_data, tmp_path, component, kind):
    # The real Philips enhanced file, its field-map frames relabelled per frame as
    # another component of the same echo: only ComplexImageComponent tells them apart.
    ds = pydicom.dcmread(shared_data / PHILIPS_FMAP)
    without_private_scale(ds)
    for item in ds.PerFrameFunctionalGroupsSequence:
        frame_type = item.MRImageFrameTypeSequence[0]
        if frame_type.ComplexImageComponent != "REAL":
            continue
        frame_type.ComplexImageComponent = component
        frame_type.FrameType = ["ORIGINAL", "PRIMARY", "T1", component[0]]
        item.MREchoSequence[0].EffectiveEchoTime = 1.52
        private = item[0x2005, 0x140F].value[0]
        private.ImageType = ["ORIGINAL", "PRIMARY", f"{component[0]}_FFE", component[0], "FFE"]
        private.ComplexImageComponent = component
        private.EchoTime = 1.52
    (tmp_path / "in").mkdir()
    ds.save_as(tmp_path / "in" / "enhanced.dcm")
    with pytest.raises(DicomSeriesError) as refused:
        read_image(tmp_path / "in" / "enhanced.dcm")
    assert f"magnitude (32 frames); {kind} (32 frames)" in str(refused.value)
    niftis = run_dcm2niix(tmp_path / "in", tmp_path / "out", DCM2NIIX)
    refs = assert_parts_match(tmp_path / "in", niftis, echoes_named=False)
    assert [r.image_kind for r in refs] == ["magnitude", kind]


def test_siemens_echoes_read_as_a_folder_are_refused(shared_data, tmp_path):
    # discover_series always split by EchoNumbers; read_image(folder) stacked the echoes
    # as the channels of one 4D image.
    series = tmp_path / "series"
    shutil.copytree(shared_data / SIEMENS_PHASE, series / "e2")
    for path in sorted((series / "e2").iterdir()):
        ds = pydicom.dcmread(path)
        ds.EchoNumbers, ds.EchoTime = 1, 5.19
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PixelData = (ds.pixel_array // 2).astype(ds.pixel_array.dtype).tobytes()
        (series / "e1").mkdir(exist_ok=True)
        ds.save_as(series / "e1" / path.name)
    with pytest.raises(DicomSeriesError) as refused:
        read_image(series)
    assert "2 images that dcm2niix writes separately: echo 1 (36 frames); echo 2 (36 " \
        "frames)" in str(refused.value)
    niftis = run_dcm2niix(series, tmp_path / "out", DCM2NIIX)
    refs = assert_parts_match(series, niftis)
    assert [(r.echo, r.image_kind, r.split) for r in refs] == [
        (1, "phase", "echo 1"), (2, "phase", "echo 2")]


# -- item 5: enhanced headers over 64 KiB ---------------------------------------------------


def test_enhanced_headers_over_64_kib_are_discovered(shared_data):
    root = shared_data / f"{VENDOR}/dcm_qa_enh/In"
    found = discover_series(root)
    assert not [s for s in found.skipped if s.reason.startswith("unreadable")], found.skipped
    by_folder = {}
    for ref in found.series:
        by_folder.setdefault(ref.folder.name, []).append(ref)
    assert [(r.image_kind, r.n_frames) for r in by_folder["Philips"]] == [
        ("magnitude", 32), ("fieldmap", 32)]
    (xa,) = by_folder["XA10"]  # Siemens XA10: one multi-frame file per volume
    assert len(xa.files) == 4
    # The headers are parsed whole: the first 64 KiB end inside a sequence.
    assert all(path.stat().st_size > 64 * 1024 for path in xa.files)


# -- dicom-tree: a case per part -------------------------------------------------------------


def test_dicom_tree_builds_each_part_as_a_case(shared_data, tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(shared_data / GE_B0MAP, tree / "ge")
    (tree / "philips").mkdir()
    shutil.copy(shared_data / PHILIPS_FMAP, tree / "philips")
    shutil.copytree(shared_data / SIEMENS_PHASE, tree / "siemens")
    recipe = load_recipe("dicom-tree").with_overrides({
        "modality": "MR", "source": {"modalities": ["MR"]},
        "harmonize": {"intensity": {"preset": "mr", "window": None}}})
    out = tmp_path / "tree.zarr"
    report = build_store(recipe, tree, out, key="k", progress=False)
    assert not report.failed, report.failed
    cases = open_store(out).cases
    rows = sorted((str(r.source_files[0]), r.image_kind, int(r.echo))
                  for r in cases.itertuples())
    assert rows == [("ge", "fieldmap", 1), ("ge", "magnitude", 1),
                    ("philips", "fieldmap", 1), ("philips", "magnitude", 1),
                    ("siemens", "phase", 2)]
    assert cases["case_id"].is_unique
    again = build_store(recipe, tree, tmp_path / "again.zarr", key="k", progress=False)
    assert sorted(again.built) == sorted(report.built)  # stable ids


def test_a_part_describes_itself():
    assert ImagePart("phase", 2, 7.65).describe() == "echo 2 phase"
    assert ImagePart("fieldmap").describe() == "fieldmap"
    assert ImagePart().describe() == ""
