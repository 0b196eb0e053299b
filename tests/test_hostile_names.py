"""Names are never paths: a case id the store itself uses, or too long for a file
name, is that one file's refusal at build time; and a store from another lab whose
case ids are '../', absolute or 441 characters long gets a report written inside
``--out`` only."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import zarr

from medimg_build import open_store
from medimg_build.cli import main
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

from test_report import broken_links, class_folder_store

MAX_CASE_ID_CHARS = 128  # the limit the README states
AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


def _volume_source(root: Path, names: list[str]) -> Path:
    images = root / "images"
    images.mkdir(parents=True)
    for index, name in enumerate(names):
        pixels = np.full((8, 6, 4), index * 10, np.int16)
        nib.save(nib.Nifti1Image(pixels, AFFINE), images / name)
    return root


@pytest.mark.parametrize("layout", ["volumes", "stack"])
def test_a_case_id_the_store_uses_is_that_files_refusal(tmp_path, layout):
    hostile = ["zarr.json.nii.gz", "labels.nii.gz", "Scale0.nii.gz", "x.partial.nii.gz"]
    source = _volume_source(tmp_path / "src", ["good1.nii.gz", "good2.nii.gz", *hostile])
    recipe = load_recipe("volume-folder").with_overrides(
        {"layout": layout, "harmonize": {"spacing": None, "shape": [8, 6, 4]}})
    report = build_store(recipe, source, tmp_path / "o.zarr", progress=False)
    assert report.ok and sorted(report.built) == ["good1", "good2"]
    for name in hostile:
        reason = report.skipped[f"images/{name}"]
        assert "a name the store itself uses" in reason and "rename the file" in reason
        assert "\n" not in reason
    assert sorted(open_store(tmp_path / "o.zarr").cases["case_id"]) == ["good1", "good2"]


def test_a_case_id_over_the_limit_is_that_files_refusal(tmp_path):
    long_name = "x" * (MAX_CASE_ID_CHARS + 1)
    at_limit = "y" * MAX_CASE_ID_CHARS
    source = _volume_source(tmp_path / "src", [f"{long_name}.nii.gz", f"{at_limit}.nii.gz"])
    recipe = load_recipe("volume-folder").with_overrides({"harmonize": {"spacing": None}})
    report = build_store(recipe, source, tmp_path / "o.zarr", progress=False)
    assert report.ok and report.built == [at_limit]
    reason = report.skipped[f"images/{long_name}.nii.gz"]
    assert f"over {MAX_CASE_ID_CHARS}" in reason and long_name not in reason


def _files_under(folder: Path) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), folder)
            for d, _, files in os.walk(folder) for f in files}


@pytest.mark.parametrize("kind", ["paths", "long"])
def test_report_of_a_store_with_hostile_case_ids_writes_only_inside_out(tmp_path, capsys,
                                                                        kind):
    # An attacker's store: a real one whose case array is rewritten with zarr.
    lab = tmp_path / "lab"
    store = class_folder_store(lab, 6)
    hostile = {"paths": ["../../ESCAPED", str(tmp_path / "ABSOLUTE"), "a/b", "..", "", "ok"],
               "long": ["x" * 441, "y" * 300, "ok0", "ok1", "ok2", "ok3"]}[kind]
    root = zarr.open_group(store, mode="r+")
    root["case"][:] = np.array(hostile, dtype=root["case"].dtype)
    zarr.consolidate_metadata(store)
    out = lab / "out" / "report"
    before = _files_under(tmp_path)
    code = main(["report", str(store), "--out", str(out)])
    written = _files_under(tmp_path) - before
    assert written and all(name.startswith("lab/out/report/") for name in written), written
    assert code == 0, capsys.readouterr().err
    assert all(len(name.encode()) <= 255 for name in os.listdir(out / "images"))
    assert broken_links(out / "index.html") == []
    assert hostile[0] in (out / "index.html").read_text()  # shown, as text
