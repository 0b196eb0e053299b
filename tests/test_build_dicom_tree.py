"""A DICOM tree as archives deliver it: one case per series, the rest reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

from fixtures import dicom_tree as dicom_tree_fixture


@pytest.fixture
def dicom_tree(shared_data, tmp_path) -> Path:
    dicom_tree_fixture.make(tmp_path / "tree", shared_data)
    return tmp_path / "tree"


def test_every_ct_series_of_a_tree_is_a_case(dicom_tree, tmp_path):
    recipe = load_recipe("dicom-tree")
    out = tmp_path / "tree.zarr"
    report = build_store(recipe, dicom_tree, out, progress=False)
    store = open_store(out)
    cases = store.cases
    # The real CT (20 slices, no UIDs) and pydicom's 5-slice CT5N are clean volumes.
    assert len(report.built) >= 2 and all(c.startswith("series-") for c in report.built)
    assert sorted(cases["n_source_files"])[-2:] == [5, 20]
    # pydicom's CT2 series has a 200 mm gap between its slices: refused, not stacked.
    assert any("CT2" in message and "slice" in message for message in report.failed.values())
    reasons = set(report.skipped.values())
    assert "DICOMDIR index" in reasons
    assert any(r.startswith("not DICOM") for r in reasons)
    assert any(r.startswith("modality MR not in") for r in reasons)
    assert store.attrs["build_report"]["skipped"]["DICOMDIR index"] >= 1
    # No path of a skipped file (TCIA folders are patient IDs) is written to the store.
    assert "notes.txt" not in json.dumps(store.attrs)
    ct = cases[cases["n_source_files"] == 20].iloc[0]
    assert ct["source_files"] == ["patient-A/study-1/ct"]
    assert store.read_image(ct["case_id"]).array.dtype.name == "int16"


def test_same_key_same_case_ids(dicom_tree, tmp_path):
    recipe = load_recipe("dicom-tree")
    one = build_store(recipe, dicom_tree, tmp_path / "a.zarr", key="k1", progress=False)
    two = build_store(recipe, dicom_tree, tmp_path / "b.zarr", key="k1", progress=False)
    other = build_store(recipe, dicom_tree, tmp_path / "c.zarr", key="k2", progress=False)
    assert sorted(one.built) == sorted(two.built)
    assert not set(one.built) & set(other.built)
