"""Every DICOM series in the shared reference data against dcm2niix.

For each folder that holds DICOM files, dcm2niix (``-d 0``: that folder only) writes its
volumes, and ``discover_series`` finds ours. Each dcm2niix volume is matched to our series
by SeriesNumber, image kind and echo, read from the suffixes dcm2niix gives its files
(``_e2``, ``_ph``, ``_real``, ``_imaginary``, ``_fieldmaphz``). It must then equal ours (see
``assert_same_volume``) or be refused by our reader in one line; every refusal is listed
in ``REFUSED`` with the words it must contain, so a new refusal fails here. A series of
ours that dcm2niix does not write must be refused too.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from medimg_build.errors import MedimgError
from medimg_build.io.dicom_discovery import DicomSeriesRef, discover_series, read_dicom_series

from dcm2niix_reference import assert_same_volume, kind_and_echo, run_dcm2niix

COLLECTIONS = ["dcm_qa_vendor", "dcm_qa_nih", "dcm_qa_ts", "dcm_qa_12bit", "dicom2nifti",
               "totalsegmentator", "torchxrayvision"]

# (folder under the shared data, SeriesNumber) -> words our one-line refusal must contain.
# dcm2niix writes these anyway, with a warning (and a resampled "_Tilt"/"_Eq" copy); we
# refuse them, since a silently irregular volume is worse than none.
REFUSED: dict[tuple[str, int | None], str] = {
    ("dicom2nifti/failing/gantrytilting/001", 4): "gantry tilt",
    ("dicom2nifti/failing/sliceincrement/001", 2): "missing slice",
    ("dicom2nifti/failing/sliceincrement/002", 3): "missing slice",
    # dcm2niix writes the four copies of one slice as a 1-slice 4D image
    ("dicom2nifti/failing/notavolume/001", 4): "no distinct positions",
    # two radiographs in one series (the same film as MONOCHROME1 and MONOCHROME2):
    # dcm2niix keeps one as a "duplicate"; they are read one file at a time
    ("torchxrayvision/tests", 1): "read one file at a time",
}


def _dcm2niix_identity(nifti: Path) -> tuple[int | None, str, int | None, list[str]]:
    """(series number, image kind, echo, other suffixes) from dcm2niix's file name."""
    number, *suffixes = nifti.stem.split("_")  # run with -f %s: the series number first
    kind, echo, other = kind_and_echo(suffixes)
    return (int(number) if number.isdigit() else None), kind, echo, other


def _same_number(ref: DicomSeriesRef, number: int | None) -> bool:
    if ref.series_number is not None and ref.series_number >= 1:
        return ref.series_number == number
    # A series numbered below 1, or not at all (anonymized files), dcm2niix names by the
    # CRC-32 of its SeriesInstanceUID, 0 without one (nii_dicom.cpp, readDICOMx, its
    # issue 218)
    return number == zlib.crc32(ref.series_uid.encode())


def _our_kind(ref: DicomSeriesRef) -> str:
    return ref.image_kind or "magnitude"  # headers that say nothing: dcm2niix's default


def _match(refs: list[DicomSeriesRef], number, kind, echo) -> list[DicomSeriesRef]:
    found = [r for r in refs if _same_number(r, number) and _our_kind(r) == kind]
    if len(found) > 1 and echo is not None:
        found = [r for r in found if r.echo == echo]
    return found


def _folders(collection: Path) -> dict[Path, list[DicomSeriesRef]]:
    """Each folder holding DICOM files, with the series discovered in it alone.

    Folder by folder, as dcm2niix is run: some collections hold copies of one series in
    several folders (the same slices in another transfer syntax), one series to each.
    """
    found = discover_series(collection)
    holding = {path.parent for ref in found.series for path in ref.files}
    # and where DICOM files were skipped: dcm2niix may well read them
    holding |= {s.path.parent for s in found.skipped if not s.reason.startswith("not DICOM")}
    return {folder: [ref for ref in discover_series(folder).series if ref.folder == folder]
            for folder in holding}


@pytest.mark.parametrize("collection", COLLECTIONS)
def test_every_series_equals_dcm2niix_or_is_refused(shared_data, tmp_path, collection):
    problems: list[str] = []
    folders = _folders(shared_data / collection)
    assert folders, f"no DICOM series found under {collection}"
    for k, (folder, refs) in enumerate(sorted(folders.items())):
        where = folder.relative_to(shared_data).as_posix()
        matched: set[int] = set()
        for nifti in run_dcm2niix(folder, tmp_path / str(k), ["-d", "0", "-f", "%s"],
                                  no_dicom_ok=True):
            number, kind, echo, other = _dcm2niix_identity(nifti)
            found = _match(refs, number, kind, echo)
            if len(found) != 1:
                problems.append(f"{where}: dcm2niix's {nifti.name} matches {len(found)} of "
                                f"our series ({[r.label for r in refs]})")
                continue
            ref = found[0]
            matched.add(id(ref))
            problems += _compare(where, ref, nifti, other)
        for ref in refs:
            if id(ref) not in matched:
                problems += _must_be_refused(where, ref, "dcm2niix writes no volume for it")
    assert not problems, "\n".join(problems)


def _compare(where: str, ref: DicomSeriesRef, nifti: Path, other: list[str]) -> list[str]:
    expected_refusal = REFUSED.get((where, ref.series_number))
    try:
        image = read_dicom_series(ref)
    except MedimgError as error:
        return _check_refusal(where, ref, str(error), expected_refusal)
    if expected_refusal is not None:
        return [f"{where} {ref.label}: reads, but is listed as refused ({expected_refusal!r})"]
    if other:  # e.g. _Tilt_1, _Eq_1, _i00001: dcm2niix's own corrections or slice-by-slice
        return [f"{where} {ref.label}: we read a volume where dcm2niix wrote {nifti.name}"]
    try:
        assert_same_volume(image, nifti)
    except AssertionError as error:
        return [f"{where} {ref.label} vs {nifti.name}: {str(error).strip().splitlines()[0]}"]
    return []


def _must_be_refused(where: str, ref: DicomSeriesRef, why: str) -> list[str]:
    try:
        read_dicom_series(ref)
    except MedimgError as error:
        return _check_refusal(where, ref, str(error), REFUSED.get((where, ref.series_number)))
    return [f"{where} {ref.label}: we read a volume; {why}"]


def _check_refusal(where: str, ref: DicomSeriesRef, message: str, expected: str | None):
    if "\n" in message:
        return [f"{where} {ref.label}: refusal is not one line: {message!r}"]
    if expected is None or expected not in message:
        return [f"{where} {ref.label}: refused ({message}), expected "
                + ("to read" if expected is None else repr(expected))]
    return []
