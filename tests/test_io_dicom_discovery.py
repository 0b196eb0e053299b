"""Series discovery in a mixed folder tree, built from real files (symlinked, not copied).

The tree mixes dicom2nifti and dcm_qa_nih series, pydicom's dicomdirtests (DICOMDIR
indexes, three patients, localizers, a header-only file-set), reports and structure sets
without pixels, and junk; every series must be found once and read exactly like its own
folder, and every other file must be reported with the reason it was skipped.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from medimg_build.errors import DicomSeriesError, MedimgError
from medimg_build.io import read_image
from medimg_build.io.dicom_discovery import (
    DicomSeriesRef,
    discover_series,
    read_dicom_series,
)

PYDICOM_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
DICOMDIRTESTS = PYDICOM_FILES / "dicomdirtests"

# Source folder -> where it goes in the tree; each is one series.
SERIES_FOLDERS = {
    "dicom2nifti/anatomical/001": "patient1/study1/t1",
    "dicom2nifti/ge/anatomical/001": "patient1/study1/ge",
    "dicom2nifti/generic/compressed_rle/001": "patient2/rle",
    "dcm_qa_nih/In/20180918GE/mr_0004": "nih/mr_0004",  # 15 slices x 10 time points
    "dcm_qa_nih/In/20180918GE/mr_0005": "nih/mr_0005",
}
DICOMDIRTESTS_VOLUMES = 24  # 13 series UIDs; localizers split into one volume per plane


def link_tree(src: Path, dst: Path) -> None:
    """Mirror src under dst with one symlink per file (real folders, shared bytes)."""
    for path in sorted(src.rglob("*")):
        if path.is_file():
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(path)


@pytest.fixture(scope="module")
def tree(shared_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    for src, dst in SERIES_FOLDERS.items():
        link_tree(shared_data / src, root / dst)
    link_tree(DICOMDIRTESTS, root / "cd")
    (root / "reports").mkdir()
    for name in ("rtstruct.dcm", "test-SR.dcm"):
        (root / "reports" / name).symlink_to(PYDICOM_FILES / name)
    (root / "notes.txt").write_text("not an image\n")
    (root / "empty.dcm").write_bytes(b"")
    data = (PYDICOM_FILES / "CT_small.dcm").read_bytes()
    (root / "reports" / "cut.dcm").write_bytes(data[: len(data) // 2])
    return root


@pytest.fixture(scope="module")
def found(tree):
    return discover_series(tree)


def _reason(found, path: Path) -> str:
    reasons = {s.path: s.reason for s in found.skipped}
    assert path in reasons, f"{path} not reported as skipped"
    return reasons[path]


def test_every_series_is_found_once_with_its_files(tree, found):
    assert len(found.series) == len(SERIES_FOLDERS) + DICOMDIRTESTS_VOLUMES
    by_folder = {}
    for ref in found.series:
        by_folder.setdefault(ref.folder, []).append(ref)
    for src, dst in SERIES_FOLDERS.items():
        (ref,) = by_folder[tree / dst]
        expected = sorted(p for p in (tree / dst).iterdir() if p.suffix == ".dcm")
        assert list(ref.files) == expected
        assert ref.split == "" and ref.modality == "MR" and ref.series_uid
    # Time points stay together: one 4D series, not 10 volumes.
    (nih,) = by_folder[tree / "nih/mr_0004"]
    assert len(nih.files) == nih.n_frames == 150 and nih.series_number == 4
    assert nih.label == "#4 'Axial EPI-FMRI (Interleaved I to S)' MR"
    # dicomdirtests: a 4-slice CT, three single-image CRs, localizers split per plane.
    assert [len(r.files) for r in by_folder[tree / "cd/77654033/CT2"]] == [4]
    assert len(by_folder[tree / "cd/77654033/CR1"]) == 1
    mr700 = by_folder[tree / "cd/98892003/MR700"]
    assert len(mr700) == 7 and len({r.series_uid for r in mr700}) == 1
    assert {r.split.split(" (")[0] for r in mr700} == {f"orientation {k}" for k in range(1, 8)}
    assert len({ref.key for ref in found.series}) == len(found.series)
    assert all(ref.files == tuple(sorted(ref.files)) for ref in found.series)


def test_every_other_file_is_skipped_with_its_reason(tree, found):
    assert _reason(found, tree / "notes.txt").startswith("not DICOM")
    assert _reason(found, tree / "empty.dcm") == "not DICOM (empty file)"
    assert _reason(found, tree / "nih/mr_0004/README-Series.txt").startswith("not DICOM")
    assert _reason(found, tree / "cd/DICOMDIR") == "DICOMDIR index"
    assert _reason(found, tree / "cd/DICOMDIR-empty.dcm") == "DICOMDIR index"
    assert _reason(found, tree / "cd/TINY_ALPHA/DICOMDIR") == "DICOMDIR index"
    assert _reason(found, tree / "reports/rtstruct.dcm") == (
        "no pixel data (RT Structure Set Storage)")
    assert _reason(found, tree / "reports/test-SR.dcm").startswith("no pixel data (")
    assert "SR" in _reason(found, tree / "reports/test-SR.dcm")
    # pydicom's file-set holds CT headers without pixels: not images, whatever the class says
    tiny = tree / "cd/TINY_ALPHA/PT000000/ST000000/SE000000/IM000000"
    assert _reason(found, tiny) == "no pixel data (CT Image Storage)"
    assert _reason(found, tree / "reports/cut.dcm").startswith("unreadable: pixel data truncated")
    # Every file is either in one series or skipped, never both, never lost.
    listed = [f for ref in found.series for f in ref.files] + [s.path for s in found.skipped]
    assert sorted(listed) == sorted(p for p in tree.rglob("*") if p.is_file())
    assert all("\n" not in s.reason for s in found.skipped)


def _outcome(read):
    try:
        return read()
    except MedimgError as error:
        return error


def test_each_series_reads_like_its_own_folder(tree, found):
    # A whole folder must read the same through discovery as on its own (array and
    # geometry, or the same refusal); a split part must read like its single file.
    for ref in found.series:
        source = ref.files[0].resolve()
        alone = source if len(ref.files) == 1 else source.parent
        expected = _outcome(lambda: read_image(alone))
        got = _outcome(lambda: read_dicom_series(ref))
        if isinstance(expected, MedimgError):
            assert type(got) is type(expected), f"{ref.label}: {got}"
            assert expected.problem in got.problem and ref.label in got.problem
        else:
            assert not isinstance(got, MedimgError), f"{ref.label}: {got}"
            assert got.array.dtype == expected.array.dtype
            np.testing.assert_array_equal(got.array, expected.array)
            np.testing.assert_allclose(got.affine, expected.affine)
            assert got.meta["source_files"] == expected.meta["source_files"]


def test_several_series_in_one_folder_are_listed(tree):
    folder = tree / "patient1"
    with pytest.raises(DicomSeriesError) as caught:
        read_image(folder)
    message = str(caught.value)
    assert "\n" not in message and str(folder) in message
    assert "contains 2 DICOM series: #4 'no description' MR (4 files in ge); " in message
    assert "(4 files in t1)" in message
    assert "dicom-tree" in message


def test_split_series_are_counted_as_volumes_in_the_listing():
    folder = DICOMDIRTESTS / "98892003"
    with pytest.raises(DicomSeriesError) as caught:
        read_image(folder)
    message = str(caught.value)
    assert "contains 7 DICOM series (17 volumes)" in message
    assert "; ... 9 more" in message
    assert "[orientation 1 (" in message


def test_folder_holding_one_localizer_series_keeps_its_specific_error():
    # One series UID in three planes is still one series for read_image(folder).
    folder = DICOMDIRTESTS / "98892003" / "MR700"
    with pytest.raises(DicomSeriesError) as caught:
        read_image(folder)
    assert "mixed orientation" in str(caught.value)


# -- splitting rules on generated series ----------------------------------------------------


def _copy_series(src: Path, dst: Path, **changes) -> list[Path]:
    dst.mkdir(parents=True)
    out = []
    for path in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.SOPInstanceUID = generate_uid()
        for keyword, value in changes.items():
            setattr(ds, keyword, value)
        ds.save_as(dst / path.name)
        out.append(dst / path.name)
    return out


def test_multi_echo_series_splits_into_one_volume_per_echo(shared_data, tmp_path):
    src = shared_data / "dicom2nifti/generic/anatomical/001"
    uid = generate_uid()
    _copy_series(src, tmp_path / "series/e1", SeriesInstanceUID=uid, EchoNumbers=1)
    _copy_series(src, tmp_path / "series/e2", SeriesInstanceUID=uid, EchoNumbers=2)
    found = discover_series(tmp_path)
    assert [(ref.split, len(ref.files)) for ref in found.series] == [("echo 1", 4),
                                                                      ("echo 2", 4)]
    assert {ref.series_uid for ref in found.series} == {uid}
    assert found.series[1].label.endswith("[echo 2]")
    reference = read_image(src)
    for ref in found.series:
        image = read_dicom_series(ref)
        np.testing.assert_array_equal(image.array, reference.array)
        np.testing.assert_allclose(image.affine, reference.affine)


def test_image_size_splits_and_duplicates_are_skipped(tmp_path):
    uid, study = generate_uid(), generate_uid()
    for name in ("CT_small.dcm", "MR_small.dcm"):  # 128x128 and 64x64
        ds = pydicom.dcmread(PYDICOM_FILES / name)
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesNumber = study, uid, 3
        ds.EchoNumbers = 1  # only the size differs
        ds.save_as(tmp_path / name)
    shutil.copy(tmp_path / "MR_small.dcm", tmp_path / "MR_small_copy.dcm")
    found = discover_series(tmp_path)
    assert sorted(ref.split for ref in found.series) == ["128x128", "64x64"]
    (skipped,) = found.skipped
    assert skipped.path == tmp_path / "MR_small_copy.dcm"
    assert skipped.reason == f"duplicate of {tmp_path / 'MR_small.dcm'} (identical file)"


def test_files_without_series_uid_group_by_folder(shared_data, tmp_path):
    # TotalSegmentator's example CT has empty Study/Series UIDs and no SeriesNumber.
    src = shared_data / "totalsegmentator/example_ct_dicom"
    link_tree(src, tmp_path / "a")
    link_tree(src, tmp_path / "b")
    found = discover_series(tmp_path)
    assert [(ref.folder, len(ref.files), ref.series_uid) for ref in found.series] == [
        (tmp_path / "a", 20, ""), (tmp_path / "b", 20, "")]
    assert found.series[0].key != found.series[1].key
    image = read_dicom_series(found.series[1])
    np.testing.assert_array_equal(image.array, read_image(src).array)


def test_a_ref_is_a_small_frozen_value(found):
    ref = found.series[0]
    assert isinstance(ref, DicomSeriesRef)
    with pytest.raises(AttributeError):
        ref.label = "changed"  # type: ignore[misc]
    assert hash(ref) == hash(ref)


def test_discovery_follows_folder_links_without_looping(shared_data, tmp_path):
    """Cluster data trees are link farms: linked folders are searched, loops end."""
    (tmp_path / "linked").symlink_to(shared_data / "dicom2nifti" / "anatomical" / "001")
    (tmp_path / "loop").symlink_to(tmp_path)
    found = discover_series(tmp_path)
    assert [len(ref.files) for ref in found.series] == [4]


def test_a_library_failure_reading_a_series_is_one_line_naming_it(tmp_path):
    """pydicom's badVR.dcm (an RTDOSE whose IS value is '1A') is discovered as a series;
    reading it fails inside pydicom with a bare ValueError, which read_image already
    turns into one line. read_dicom_series does the same, naming the series."""
    import pydicom.data

    source = Path(pydicom.data.__file__).parent / "test_files" / "badVR.dcm"
    shutil.copy(source, tmp_path / "badVR.dcm")
    [ref] = discover_series(tmp_path).series
    with pytest.raises(MedimgError) as raised:
        read_dicom_series(ref)
    message = str(raised.value)
    assert "\n" not in message
    assert "series #1" in message and "unexpected failure while reading (ValueError" in message
