"""No name, birth date or original ID reaches a store (DICOM PS3.15 Basic Profile)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import zarr

from medimg_build import open_store
from medimg_build.privacy import (CLEAN_DESCRIPTORS, identifying_values, pseudonymize,
                                  scrub)
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

KEY = b"test-key"
PATIENT_ID = "MRN123456"
# A rich set of identifiers, written into real DICOM files below.
IDENTITY = {
    "PatientName": "Doe^Jane", "PatientID": PATIENT_ID, "PatientBirthDate": "19700101",
    "OtherPatientIDs": "ALT7654321", "AccessionNumber": "ACC998877",
    "InstitutionName": "Saint Example Hospital", "ReferringPhysicianName": "House^Gregory",
    "StationName": "SCANNER-ROOM-4", "StudyID": "STUDY4242",
    "SeriesDescription": f"T1 Doe {PATIENT_ID}",  # an identifier inside a descriptor
}


def test_identifying_values_of_a_real_file():
    dataset = pydicom.dcmread(pydicom.data.get_testdata_file("CT_small.dcm"))
    found = identifying_values(dataset)
    for value in ["CompressedSamples^CT1", "CompressedSamples", "1CT1", "JFK IMAGING CENTER",
                  "19970430", dataset.StudyInstanceUID, dataset.SOPInstanceUID]:
        assert value in found
    assert "ISOVUE300/100" not in found  # contrast agent: a clean descriptor, kept
    assert "0.000000" not in found  # numbers (weight) identify nobody


def test_scrub_replaces_whole_tokens_only():
    ids = {"DEV", "Doe^Jane", "Doe"}
    assert "DEV" not in scrub("DEV_T1 of Doe^Jane", ids, KEY)
    assert scrub("DEVICE", ids, KEY) == "DEVICE"
    assert scrub("T1 Doe", ids, KEY) == f"T1 [{pseudonymize('Doe', KEY)[:8]}]"


@pytest.fixture
def identified_series(shared_data, tmp_path) -> Path:
    """A real MR series with identifying headers, in a folder named by its PatientID
    (as TCIA downloads are)."""
    source = tmp_path / "source"
    folder = source / "images" / PATIENT_ID
    folder.mkdir(parents=True)
    for path in sorted((shared_data / "dicom2nifti" / "anatomical" / "001").iterdir()):
        dataset = pydicom.dcmread(path)
        for keyword, value in IDENTITY.items():
            setattr(dataset, keyword, value)
        dataset.save_as(folder / f"{dataset.SOPInstanceUID}.dcm")
    return source


def _every_text_in(store_path: Path) -> list[str]:
    """Every attribute, array value, array and group name and file name of a store."""
    texts = [str(p.relative_to(store_path)) for p in store_path.rglob("*")]
    texts += [p.read_text(errors="ignore") for p in store_path.rglob("zarr.json")]

    def visit(group: zarr.Group) -> None:
        texts.append(json.dumps(dict(group.attrs)))
        for name, array in group.arrays():
            texts.append(name)
            texts.append(json.dumps(dict(array.attrs)))
            values = np.asarray(array[...])  # a 0-d string array (the manifest) gives a str
            if values.dtype.kind in "OUT":
                texts.extend(str(v) for v in np.ravel(values))
        for _, child in group.groups():
            visit(child)

    visit(zarr.open_group(store_path, mode="r"))
    return texts


def test_store_from_dicom_holds_no_identifier(identified_series, tmp_path):
    recipe = load_recipe("volume-folder").with_overrides(
        {"modality": "MR", "organ": "brain", "labels": None,
         "harmonize": {"spacing": [2, 2, 2], "intensity": {"preset": "mr", "window": None}}})
    out = tmp_path / "mr.zarr"
    report = build_store(recipe, identified_series, out, key=KEY.decode(), progress=False)
    assert report.ok, report.failed

    forbidden: set[str] = set()
    keep = {pydicom.datadict.tag_for_keyword(k) for k in CLEAN_DESCRIPTORS}
    for path in (identified_series / "images" / PATIENT_ID).iterdir():
        dataset = pydicom.dcmread(path, stop_before_pixels=True)
        forbidden |= identifying_values(dataset)
        assert all(dataset[t].value not in forbidden for t in keep if t in dataset)
    assert {PATIENT_ID, "Doe^Jane", "19700101", "ACC998877", "STUDY4242"} <= forbidden

    texts = _every_text_in(out)
    tokens = {token for text in texts for token in
              "".join(c if c.isalnum() or c in "^.-" else " " for c in text).split()}
    for value in forbidden:
        if len(value) >= 6:
            assert not any(value in text for text in texts), value
        else:
            assert value not in tokens, value

    cases = open_store(out).cases
    assert cases.loc[0, "case_id"].startswith("case-")  # the folder was the PatientID
    assert cases.loc[0, "series_description"].startswith("T1 [")  # cleaned, kept
    assert cases.loc[0, "patient_id"] == pseudonymize(PATIENT_ID, KEY)
    assert open_store(out).attrs["deidentification"]["key"].startswith("secret")
