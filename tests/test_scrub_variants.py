"""No patient identifier, in any spelling, reaches a store, its failure messages, its
lock or journal, or its QC report (issue 14, "No identifier, no key").

Sources are real DICOM made here, in folder trees named as careless sources name them
(after the patient, in every spelling); each store is then read back whole -- every
file as bytes, every attribute, every table cell, every HDF5 name -- and searched for
every spelling, whatever the case."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pydicom
import pytest
import zarr
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from medimg_build import open_store
from medimg_build.privacy import pseudonymize, scrub
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.journal import JOURNAL_DIR

KEY = "scrub-test-key"
NAME, PATIENT_ID, BIRTH = "Doe^Jane", "ALT7654321", "19700101"
NAME_SPELLINGS = ["JANE DOE", "jane.doe", "Doe_Jane", "DOE-JANE", "janedoe", "Jane, Doe"]
DATE_SPELLINGS = ["1970-01-01", "01.01.1970", "1970_01_01", "01/01/1970", "19700101",
                  "Jan 1 1970", "1/1/1970", "01-JAN-1970", "January 1st, 1970"]
ID_SPELLINGS = ["ALT7654321", "alt-7654321", "Alt_7654321"]
HARMONIZE = {"spacing": [2, 2, 2], "intensity": {"preset": "ct", "window": [-1024, 3071]}}

# -- what must not be found, searched for independently of privacy.scrub ---------------
# The name and ID with any separators (or none) squeezed out, either order; the name's
# components as words; the birth date in numeric and month-name spellings.
_SQUEEZED = ("janedoe", "doejane", "alt7654321")
_DATE = re.compile(r"(?<!\d)(1970[\W_]{0,2}0?1[\W_]{0,2}0?1|0?1[\W_]{0,2}0?1[\W_]{0,2}1970)"
                   r"(?!\d)|jan[a-z]*[\W_]{0,3}0?1(st)?[\W_]{0,3}1970|"
                   r"(?<!\d)0?1(st)?[\W_]{0,3}jan[a-z]*[\W_]{0,3}1970")


def leaks(text: str) -> list[str]:
    """The spellings of Jane Doe's name, ID or birth date found in ``text``."""
    low = text.casefold()
    squeezed = re.sub(r"[\W_]+", "", low)
    found = [s for s in _SQUEEZED if s in squeezed]
    found += [w for w in ("doe", "jane") if w in re.findall(r"[^\W\d_]+", low)]
    found += [m.group(0) for m in _DATE.finditer(low)]
    return found


def test_leaks_finds_every_spelling():
    """The detector itself: every spelling the tests plant is one it reports."""
    for spelling in NAME_SPELLINGS + DATE_SPELLINGS + ID_SPELLINGS:
        assert leaks(f"x/{spelling}/y"), spelling
    assert not leaks("DEVICE 1.5 mm janet doerr [1f0c] 1970 2001-01-01")


# -- privacy.scrub ------------------------------------------------------------------------
IDENTIFIERS = {NAME, "Doe", "Jane", PATIENT_ID, BIRTH}


@pytest.mark.parametrize("spelling", NAME_SPELLINGS + DATE_SPELLINGS + ID_SPELLINGS)
def test_scrub_replaces_every_spelling(spelling):
    scrubbed = scrub(f"images/{spelling}_CT/1.dcm", IDENTIFIERS, KEY.encode())
    assert not leaks(scrubbed), scrubbed
    assert scrubbed.startswith("images/[") and scrubbed.endswith("_CT/1.dcm")


def test_every_spelling_of_a_value_has_its_one_pseudonym():
    key = KEY.encode()
    token = f"[{pseudonymize(NAME, key)[:8]}]"
    assert {scrub(s, IDENTIFIERS, key) for s in NAME_SPELLINGS} == {token}
    date = f"[{pseudonymize(BIRTH, key)[:8]}]"
    assert {scrub(s, IDENTIFIERS, key) for s in DATE_SPELLINGS} == {date}
    assert scrub("DOE_JANE_ALT7654321", IDENTIFIERS, key) == \
        f"{token}_[{pseudonymize(PATIENT_ID, key)[:8]}]"


def test_scrub_leaves_ordinary_words_and_short_components():
    """Whole chunks only (a run of letters or digits), and name components of one or two
    letters only inside the whole name: "Li" alone is too common a word part."""
    key = KEY.encode()
    ids = {"Li^Xu", "Li", "Xu", "DEV", "19700101"}
    for text in ["DEVICE", "Janet", "lithium Xuan", "li-ion, xu-ray", "1970", "19700102",
                 "1.0 1.0 1970", "2001-01-01", "/images/case_001.nii.gz"]:
        assert scrub(text, ids, key) == scrub(text, IDENTIFIERS | ids, key) == text
    assert scrub("XU_LI_T1", ids, key).endswith("_T1")
    assert "li" not in scrub("XU_LI_T1", ids, key).lower()
    assert scrub("DEV2", ids, key) != "DEV2"  # a letter run ends where digits begin


# -- real DICOM, named carelessly -----------------------------------------------------------
def write_series(folder: Path, n: int, description: str, file_name: str,
                 gap_at: int | None = None) -> list[Path]:
    """A small CT series of Jane Doe; ``gap_at``: a slice left out there (the series then
    fails to read as one volume, and its error names the folder and the description)."""
    folder.mkdir(parents=True, exist_ok=True)
    study, series = "1.2.826.0.1.3680043.8.498.77", generate_uid()
    pixels = np.random.default_rng(n).integers(-500, 500, size=(12, 10)).astype(np.int16)
    paths = []
    for k in range(n + (gap_at is not None)):
        if k == gap_at:
            continue
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = \
            CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / file_name.format(k=k)
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate = NAME, PATIENT_ID, BIRTH
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 3, k + 1
        ds.SeriesDescription = description
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 2.0 * k]
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.8], 2.0
        ds.Rows, ds.Columns = pixels.shape
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation, ds.SamplesPerPixel = 1, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.RescaleIntercept, ds.RescaleSlope = 0, 1
        ds.PixelData = (pixels + k).tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture
def dicom_tree(tmp_path) -> Path:
    """TCIA-like: patient/study/series folders named after Jane Doe in every spelling;
    one series reads, one has a missing slice (fails), one file is corrupt."""
    source = tmp_path / "source"
    patient = source / "DOE_JANE_ALT7654321" / "jane.doe 1970-01-01"
    write_series(patient / "JANE DOE 01.01.1970", 5, "CT janedoe 01/01/1970 Jan 1 1970",
                 "Doe-Jane_1970_01_01_{k}.dcm")
    write_series(patient / "DOE-JANE 19700101", 5, "T1 JANE DOE alt-7654321",
                 "janedoe{k}.dcm", gap_at=2)
    (patient / "JANE DOE 01.01.1970" / "Doe_Jane_broken.dcm").write_bytes(b"\0" * 300)
    # A second copy: skipped, its reason quoting the first one's path.
    copy = source / "copies" / "Jane Doe.dcm"
    copy.parent.mkdir()
    shutil.copy(next((patient / "JANE DOE 01.01.1970").glob("*_3.dcm")), copy)
    return source


@pytest.fixture
def volume_folder(tmp_path) -> Path:
    """nnU-Net-like images/ of DICOM folders named after the patient: one reads, one has
    a corrupt file among readable ones, one holds only corrupt files."""
    source = tmp_path / "source"
    write_series(source / "images" / "Doe_Jane_ALT7654321", 5, "CT Jane Doe 1970-01-01",
                 "janedoe_{k}.dcm")
    half = source / "images" / "DOE-JANE_19700101"
    write_series(half, 5, "CT DOE JANE", "{k}.dcm")
    (half / "2.dcm").write_bytes(b"DICM" + b"\xff" * 400)
    # A name that is no safe case id: skipped, its reason quoting it.
    write_series(source / "images" / "Doe^Jane 1970-01-01", 3, "CT", "{k}.dcm")
    broken = source / "images" / "JANEDOE_01011970"
    broken.mkdir(parents=True)
    for k in range(3):
        (broken / f"{k}.dcm").write_bytes(b"\0" * 132 + b"garbage")
    return source


def _dicom_tree_recipe():
    return load_recipe("dicom-tree").with_overrides({"harmonize": HARMONIZE})


def _volume_folder_recipe():
    return load_recipe("volume-folder").with_overrides({"labels": None,
                                                        "harmonize": HARMONIZE})


# -- every text of a store ------------------------------------------------------------------
def every_text_of(out: Path, journal: bool = False) -> list[str]:
    """Every file of a store (Zarr directory or HDF5 file, with its lock; with
    ``journal``, the build journal a store with failed cases keeps) as bytes and by
    name; every attribute, array and group name; every string value; every cell of the
    case table."""
    texts: list[str] = []
    files = [out] if out.is_file() else sorted(
        p for p in out.rglob("*") if p.is_file()
        and (journal or JOURNAL_DIR not in p.relative_to(out).parts))
    files += sorted(out.parent.glob(out.name + ".*"))  # an HDF5 store's lock beside it
    for path in files:
        texts += [path.relative_to(out.parent).as_posix(),
                  path.read_bytes().decode("latin-1")]
    if out.is_file():
        with h5py.File(out, "r") as handle:
            def visit(name: str, node) -> None:
                texts.append(name)
                texts.extend(f"{k}={v!r}" for k, v in node.attrs.items())
                if isinstance(node, h5py.Dataset) and node.dtype.kind in "OSU":
                    texts.extend(str(v) for v in np.ravel(node.asstr()[...]
                                                          if node.dtype.kind == "O"
                                                          else node[...]))
            texts.extend(f"{k}={v!r}" for k, v in handle.attrs.items())
            handle.visititems(visit)
    else:
        def walk(group: zarr.Group) -> None:
            texts.append(json.dumps(dict(group.attrs)))
            for name, array in group.arrays():
                texts.extend([name, json.dumps(dict(array.attrs))])
                values = np.asarray(array[...])  # a 0-d string array gives a str
                if values.dtype.kind in "OTU":
                    texts.extend(str(v) for v in np.ravel(values))
            for name, child in group.groups():
                texts.append(name)
                walk(child)

        walk(zarr.open_group(out, mode="r"))
    store = open_store(out)
    texts.append(json.dumps(store.attrs, default=str))
    texts.extend(str(cell) for cell in np.ravel(store.cases.to_numpy()))
    return texts


def assert_no_leak(texts: list[str], where: str) -> None:
    found = {(leak, text[:200]) for text in texts for leak in leaks(text)}
    assert not found, f"{where}: {sorted(found)[:5]}"


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_dicom_tree_store_holds_no_spelling_of_the_patient(dicom_tree, tmp_path, fmt):
    out = tmp_path / ("tree.zarr" if fmt == "zarr" else "tree.h5")
    report = build_store(_dicom_tree_recipe(), dicom_tree, out, key=KEY, progress=False)
    assert len(report.built) == 1 and len(report.failed) == 1, report.summary()
    store = open_store(out)
    (case_id, error), = store.attrs["build_report"]["failed"].items()
    # The stored error names the case by its id, and keeps the description, scrubbed.
    assert error.startswith(f"{case_id}: series #3 'T1 [") and "missing" in error
    assert store.cases.loc[0, "series_description"].startswith("CT [")
    assert_no_leak(every_text_of(out), str(out))


def test_journal_kept_for_resume_holds_no_spelling_of_the_patient(dicom_tree, tmp_path):
    """A store with a failed case keeps its build journal (for --resume), whose records
    name each built case's source files: scrubbed as the table's are. A resume still
    finds them -- and rebuilds a case whose file changed since."""
    out = tmp_path / "tree.zarr"
    first = build_store(_dicom_tree_recipe(), dicom_tree, out, key=KEY, progress=False)
    assert first.failed and (out / JOURNAL_DIR).is_dir()
    assert_no_leak(every_text_of(out, journal=True), str(out))
    again = build_store(_dicom_tree_recipe(), dicom_tree, out, key=KEY, progress=False,
                        resume=True)
    assert again.already_complete == 1 and not again.notes, again.notes
    built = next(p for p in dicom_tree.rglob("Doe-Jane_1970_01_01_0.dcm"))
    dataset = pydicom.dcmread(built)
    dataset.InstanceNumber = 99
    dataset.save_as(built)
    changed = build_store(_dicom_tree_recipe(), dicom_tree, out, key=KEY, progress=False,
                          resume=True)
    assert [n for n in changed.notes if "source changed since it was built" in n], \
        changed.notes
    assert_no_leak(every_text_of(out, journal=True), str(out))


@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_volume_folder_store_holds_no_spelling_of_the_patient(volume_folder, tmp_path,
                                                              fmt):
    out = tmp_path / ("vol.zarr" if fmt == "zarr" else "vol.h5")
    report = build_store(_volume_folder_recipe(), volume_folder, out, key=KEY,
                         progress=False)
    assert len(report.built) == 1 and len(report.failed) == 2, report.summary()
    # Every case id is a pseudonym: two name their patient, one cannot be checked.
    assert all(c.startswith("case-") for c in report.built + list(report.failed))
    assert_no_leak(every_text_of(out), str(out))
    # The console keeps the real folders, so that the user can find the broken files.
    assert any("JANEDOE_01011970" in message for message in report.failed.values())


def test_qc_report_shows_no_spelling_of_the_patient(dicom_tree, volume_folder, tmp_path):
    """The QC report of stores with failed cases (`medimg-build report`)."""
    for recipe, source, name in [(_dicom_tree_recipe(), dicom_tree, "tree.zarr"),
                                 (_volume_folder_recipe(), volume_folder, "vol.zarr")]:
        out = tmp_path / name
        report = build_store(recipe, source, out, key=KEY, progress=False)
        assert report.failed
        html = tmp_path / f"{name}.report"
        _cli("report", str(out), "--out", str(html), cwd=tmp_path)
        texts = [p.relative_to(tmp_path).as_posix() for p in html.rglob("*")]
        texts += [p.read_bytes().decode("latin-1") for p in html.rglob("*") if p.is_file()]
        assert any("failed" in t.lower() for t in texts)
        assert_no_leak(texts, str(html))


def test_dicomdirtests_leaks_no_patient_id(tmp_path):
    """pydicom's DICOMDIR test tree names folders by PatientID, as TCIA does: 77654033
    is Doe^Archibald's, and his CT2 series fails (a 200 mm gap)."""
    tree = Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent / "dicomdirtests"
    source = tmp_path / "source"
    shutil.copytree(tree, source)
    out = tmp_path / "dicomdir.zarr"
    recipe = load_recipe("dicom-tree").with_overrides(
        {"source": {"modalities": ["CT", "MR"]}, "harmonize": HARMONIZE})
    report = build_store(recipe, source, out, key=KEY, progress=False)
    assert report.built and report.failed
    assert any("77654033" in message for message in report.failed.values())  # console
    html = tmp_path / "qc"
    _cli("report", str(out), "--out", str(html), cwd=tmp_path)
    texts = every_text_of(out) + [p.read_bytes().decode("latin-1")
                                  for p in html.rglob("*") if p.is_file()]
    for value in ("77654033", "98890234", "Archibald"):
        assert not [t[:200] for t in texts if value.lower() in t.lower()], value


# -- a relative --source, and what a killed build leaves behind ---------------------------
def _cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    root = Path(__file__).resolve().parents[1]
    environment = {**os.environ, "PYTHONPATH": str(root), "MEDIMG_WORKERS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "medimg_build.cli", *args], cwd=cwd,
                          env=environment, capture_output=True, text=True, check=False)


def test_relative_source_name_stays_out_of_the_store(tmp_path):
    """``--source Smith_John_MRN555`` from its parent folder: the folder's own name is in
    no stored text -- the steps, the files, the lock a killed build leaves in the store
    (its command line), and the store that build leaves behind."""
    source = tmp_path / "Smith_John_MRN555"
    (source / "images").mkdir(parents=True)
    volume = np.random.default_rng(0).normal(0, 100, (8, 8, 6)).astype(np.float32)
    for name in ("c1", "c2"):
        nib.save(nib.Nifti1Image(volume, np.eye(4)), source / "images" / f"{name}.nii.gz")
    build = ["build", "volume-folder", "--source", "Smith_John_MRN555", "--key", KEY,
             "--quiet", "--set", "harmonize.spacing=[2,2,2]"]
    done = _cli(*build, "--out", "out.zarr", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    killed = _cli(*build, "--out", "killed.zarr", cwd=tmp_path,
                  env={"MEDIMG_TEST_KILL_AFTER": "1"})
    assert killed.returncode != 0
    assert (tmp_path / "killed.zarr" / ".medimg-build.lock").exists()
    steps = open_store(tmp_path / "out.zarr").cases["steps"].astype(str).tolist()
    assert any('"read"' in s or "'read'" in s for s in steps)
    for out in ("out.zarr", "killed.zarr"):
        texts = [p.relative_to(tmp_path).as_posix() + p.read_bytes().decode("latin-1")
                 for p in (tmp_path / out).rglob("*") if p.is_file()]
        if out == "out.zarr":
            texts += every_text_of(tmp_path / out)
        for word in ("smith", "john", "mrn555"):
            assert not [t[:120] for t in texts if word in t.lower()], (out, word)


# -- DICOM SEG: segment labels become the store's label vocabulary -------------------------
def test_seg_segment_labels_are_scrubbed(shared_data, tmp_path):
    """A SEG whose segment label names its patient (as a descriptor may): the store's
    segmentation classes, made from the labels, keep the label, scrubbed."""
    from fixtures.tcia_seg import make_tcia_seg

    made = make_tcia_seg(tmp_path / "src", shared_data)
    seg_path = made["seg"]
    seg = pydicom.dcmread(seg_path)
    seg.PatientName, seg.PatientBirthDate = NAME, BIRTH
    for item in seg.SegmentSequence:
        item.SegmentLabel = f"{item.SegmentLabel} of JANE DOE 1970-01-01"
    seg.save_as(seg_path)
    out = tmp_path / "seg.zarr"
    report = build_store(load_recipe("tcia-seg"), made["root"], out, key=KEY, progress=False)
    assert report.ok, report.failed
    classes = open_store(out).attrs["labels"]["segmentation"]["classes"]
    assert sorted(c.split()[0] for c in classes.values()) == ["background", "liver", "spleen"]
    assert_no_leak(every_text_of(out), str(out))


def test_image_table_case_ids_of_dicom_files_named_after_the_patient(tmp_path):
    """A table of DICOM files named after their patient: their case ids (file names)
    become pseudonyms, as a DICOM folder's do; PNG and NIfTI files are not opened."""
    source = tmp_path / "source"
    files = write_series(source / "images", 3, "CR", "x{k}.dcm")
    names = ["DOE_JANE_ALT7654321.dcm", "jane.doe-1970-01-01.dcm", "Doe_Jane_bad.dcm"]
    for path, name in zip(files, names):
        path.rename(source / "images" / name)
    bad = pydicom.dcmread(source / "images" / names[2])
    bad.PixelData = bad.PixelData[:50]  # its header reads, its pixels do not
    bad.save_as(source / "images" / names[2])
    (source / "Data_Entry_2017.csv").write_text(
        "Image Index,Finding Labels,Patient ID\n"
        + "".join(f"{name},No Finding,1\n" for name in names))
    recipe = load_recipe("nih-chestxray14").with_overrides(
        {"source": {"images": "**/*.dcm", "columns": None}, "split": {"lists": None},
         "labels": {"boxes": None}, "harmonize": {"shape": [16, 16]}})
    out = tmp_path / "table.zarr"
    report = build_store(recipe, source, out, key=KEY, progress=False)
    assert len(report.built) == 2 and len(report.failed) == 1, report.summary()
    assert all(c.startswith("case-") for c in report.built + list(report.failed))
    # The stored error (build report; the table's error column as the build hands it
    # to the writer) names the case by its pseudonym; the console names the file.
    (case_id, error), = open_store(out).attrs["build_report"]["failed"].items()
    assert error.startswith(f"{case_id}: cannot decode"), error
    assert [row["error"] for row in report.rows if row["status"] == "failed"] == [error]
    assert "Doe_Jane_bad.dcm" in report.failed[case_id]
    assert_no_leak(every_text_of(out), str(out))


def test_class_folder_case_ids_of_dicom_files_named_after_the_patient(tmp_path):
    """Class folders of DICOM pictures named after their patient (``image_folder``)."""
    source = tmp_path / "source"
    files = write_series(source / "tmp", 2, "CR", "x{k}.dcm")
    for path, where in zip(files, ["normal/DOE_JANE_ALT7654321.dcm",
                                   "mass/jane.doe-1970-01-01.dcm"]):
        (source / where).parent.mkdir(parents=True)
        path.rename(source / where)
    recipe = load_recipe("class-folders").with_overrides(
        {"source": {"path_pattern": r"(?P<image>(?P<class>[^/]+)/(?P<stem>[^/]+))\.dcm"},
         "harmonize": {"shape": [16, 16], "intensity": {"preset": "ct",
                                                        "window": [-1024, 3071]}},
         "split": {"stratify": None}})
    out = tmp_path / "classes.zarr"
    report = build_store(recipe, source, out, key=KEY, progress=False)
    assert report.ok and all(c.startswith("case-") for c in report.built), report.summary()
    assert_no_leak(every_text_of(out), str(out))
