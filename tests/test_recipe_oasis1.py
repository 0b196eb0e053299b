"""The bundled oasis1 recipe builds a miniature OASIS-1 download (tests/fixtures/oasis1.py):
Analyze 7.5 T88 images joined to oasis_cross-sectional.csv by session ID, CDR ordinal with
empty = unknown, demographics as columns, FAST tissue classes as masks. The CSV header and
rows, the disc/session/PROCESSED/FSL_SEG names and the 4D (x, y, z, 1) Analyze files were
verified against the public copies cited in tests/fixtures/oasis1.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fixtures.oasis1 import make_oasis1
from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store


def test_oasis1_builds_cdr_labels_columns_and_tissue_masks(tmp_path):
    made = make_oasis1(tmp_path / "src")
    out = tmp_path / "oasis.zarr"
    report = build_store(load_recipe("oasis1"), tmp_path / "src", out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    assert list(report.skipped.values()) == ["row without an image file"] * \
        made["rows_without_images"]
    assert validate_store(out) == []

    store = open_store(out)
    cases = store.cases.set_index("case_id")
    assert sorted(cases.index) == made["cases"]
    cdr = store.labels("cdr")
    classes = ["0", "0.5", "1", "2"]
    for case_id, value in made["cdr"].items():
        assert cdr[case_id] == (classes.index(value) if value else -1)
        assert str(cases.loc[case_id, "age"]) == made["age"][case_id]
        assert cases.loc[case_id, "sex"] == made["sex"][case_id]
        assert str(cases.loc[case_id, "mmse"]) == made["mmse"][case_id]
        mask = store.read_mask(case_id)
        assert sorted(int(v) for v in np.unique(mask.array)) == made["tissue_values"][case_id]
    # Read as Analyze through SimpleITK; one patient per subject (OAS1_0001 ...).
    assert cases.loc["OAS1_0001_MR1", "n_scans"] == "4"
    assert cases.loc["OAS1_0004_MR1", "n_scans"] == "3"
    assert all(f.endswith(".img") or f.endswith(".hdr")
               for f in cases.loc["OAS1_0001_MR1", "source_files"])


def test_oasis1_session_without_fsl_seg_and_macos_forks_are_reported(tmp_path):
    """Red-team (issue 16 items 9, 11), on the real OASIS-1 disc layout of
    tests/fixtures/oasis1.py (FSL_SEG/<stem>_masked_gfc_fseg.{hdr,img} beside
    PROCESSED/MPRAGE/T88_111/; a macOS file in the disc folders, find_string id
    31391608199): a session whose FSL_SEG files are absent is built without a mask and
    reported as incomplete, never silently; a ._ fork that matches the T88 image glob is
    skipped and reported."""
    made = make_oasis1(tmp_path / "src")
    session = made["cases"][1]
    for fseg in (tmp_path / "src").glob(f"*/{session}/FSL_SEG/*_fseg.*"):
        fseg.unlink()
    t88 = next((tmp_path / "src").glob(f"*/{session}/PROCESSED/MPRAGE/T88_111"))
    image = next(t88.glob("*_t88_gfc.img"))
    (t88 / f"._{image.name}").write_bytes(b"\0\5\26\7\0\2\0\0Mac OS X")
    report = build_store(load_recipe("oasis1"), tmp_path / "src", tmp_path / "o.zarr",
                         progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    assert [Path(p).name for p in report.incomplete] == [image.name]
    # The template is quoted whole: "}/FSL_SEG/" is no absolute path to shorten.
    assert next(iter(report.incomplete.values())) == (
        "built without a mask: none found at source.options.masks "
        "'{session_dir}/FSL_SEG/{stem}_masked_gfc_fseg.img'")
    forks = [p for p in report.skipped if Path(p).name == f"._{image.name}"]
    assert len(forks) == 1 and ".DS_Store" in report.skipped[forks[0]]
    assert list(open_store(tmp_path / "o.zarr").cases.set_index("case_id")
                .loc[session, "mask_values"]) == []
