"""The bundled abide recipe builds a miniature ABIDE Preprocessed download
(tests/fixtures/abide.py): 4D func_preproc found from FILE_ID, diagnosis labels,
"no_filename" rows reported. Layouts verified against nilearn/nilearn
nilearn/datasets/func.py @ 00532841b573179e932b94735b01d69b5ad61c01 (fetch_abide_pcp) and
public scripts (see tests/fixtures/abide.py)."""

from __future__ import annotations

import pytest

from fixtures.abide import N_VOLUMES, make_abide
from medimg_build.errors import RecipeError
from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store


def test_abide_builds_func_preproc_with_diagnosis(tmp_path):
    made = make_abide(tmp_path / "src")
    out = tmp_path / "abide.zarr"
    report = build_store(load_recipe("abide"), tmp_path / "src", out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    assert list(report.skipped.values()) == ["row without an image file"] * made["no_filename"]
    assert validate_store(out) == []

    store = open_store(out)
    cases = store.cases.set_index("case_id")
    assert sorted(cases.index) == made["cases"]
    dx, dsm = store.labels("dx_group"), store.labels("dsm_iv_tr")
    for case_id in made["cases"]:
        assert dx[case_id] == ["1", "2"].index(made["dx_group"][case_id])
        code = made["dsm"][case_id]
        assert dsm[case_id] == (-1 if code == "-9999" else int(code))
        assert cases.loc[case_id, "site"] == made["site"][case_id]
    # The BOLD series keeps its time points as channels, at MNI 3 mm.
    image = store.read_image("Pitt_0050003_func_preproc")
    assert image.n_channels == N_VOLUMES
    assert image.spacing == (3.0, 3.0, 3.0)
    # One patient per SUB_ID, pseudonymized.
    assert cases["patient_id"].nunique() == len(made["cases"])
    assert "50003" not in set(cases["patient_id"])


def test_abide_builds_nilearn_fetch_abide_pcp_layout(tmp_path):
    """nilearn's fetch_abide_pcp (the usual way ABIDE Preprocessed is downloaded) puts the
    series in ABIDE_pcp/cpac/nofilt_noglobal/, not under Outputs/ (nilearn/nilearn
    nilearn/datasets/func.py @ 00532841b573179e932b94735b01d69b5ad61c01); the recipe
    looked only under Outputs/ and found no case."""
    made = make_abide(tmp_path / "ABIDE_pcp", layout="nilearn")
    out = tmp_path / "abide.zarr"
    report = build_store(load_recipe("abide"), tmp_path / "ABIDE_pcp", out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    assert list(report.skipped.values()) == ["row without an image file"] * made["no_filename"]
    dx = open_store(out).labels("dx_group")
    assert {case: ["1", "2"][dx[case]] for case in made["cases"]} == made["dx_group"]


def test_abide_refuses_two_strategies_of_one_subject(tmp_path):
    """Two strategies downloaded side by side name each file twice: refused, not one
    picked at random."""
    make_abide(tmp_path / "src", layout="nilearn")
    make_abide(tmp_path / "other", layout="s3")
    (tmp_path / "other" / "Outputs").rename(tmp_path / "src" / "Outputs")
    with pytest.raises(RecipeError, match="two image files are named"):
        build_store(load_recipe("abide"), tmp_path / "src", tmp_path / "a.zarr", progress=False)


def test_every_no_filename_row_is_counted(tmp_path):
    """Red-team: the real Phenotypic_V1_0b_preprocessed1.csv gives FILE_ID "no_filename"
    to every subject without preprocessed data (nilearn's fetch_abide_pcp drops those
    rows; a public parser's copy of real rows: "50002,PITT,no_filename,1,16.77,1",
    find_string id 59887801995). Several such rows were reported as one skipped row."""
    make_abide(tmp_path / "src")
    table = tmp_path / "src" / "Phenotypic_V1_0b_preprocessed1.csv"
    lines = table.read_text().splitlines(keepends=True)
    without = [line for line in lines if ",no_filename," in line]
    assert len(without) == 1
    table.write_text("".join(lines + [without[0].replace("50005", "50002")] * 2))
    report = build_store(load_recipe("abide"), tmp_path / "src", tmp_path / "a.zarr",
                         progress=False)
    assert list(report.skipped.values()) == ["row without an image file"] * 3
