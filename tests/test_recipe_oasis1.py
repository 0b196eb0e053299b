"""The bundled oasis1 recipe builds a miniature OASIS-1 download (tests/fixtures/oasis1.py):
Analyze 7.5 T88 images joined to oasis_cross-sectional.csv by session ID, CDR ordinal with
empty = unknown, demographics as columns, FAST tissue classes as masks. The CSV header and
rows, the disc/session/PROCESSED/FSL_SEG names and the 4D (x, y, z, 1) Analyze files were
verified against the public copies cited in tests/fixtures/oasis1.py."""

from __future__ import annotations

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
