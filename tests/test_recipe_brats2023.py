"""BraTS 2023 and later (BraTS-<task>-<patient>-<time point>/<case>-{t1n,t1c,t2w,t2f,seg}
.nii.gz): recipe brats2023 reads the five 2023 tasks with labels 1 NETC, 2 SNFH, 3 ET;
brats2024-gli adds 4 RC and groups a patient's time points; brats2024-ped has its own
numbering (1 is ET there). Layout and label sources: tests/fixtures/brats.py."""

from __future__ import annotations

import pytest

from fixtures.brats import (make_brats2021, make_brats2023, make_brats2024_gli,
                            make_brats2024_ped)
from medimg_build.errors import RecipeError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from test_recipe_brats import build, check_built, check_channel_order

SUFFIXES = ["-t1n", "-t1c", "-t2w", "-t2f"]  # the recipes' channel order


@pytest.mark.parametrize("task", ["GLI", "MEN", "MET", "PED", "SSA"])
def test_brats2023_task_builds_with_the_2023_label_names(tmp_path, task):
    made = make_brats2023(tmp_path / "src", task)
    report, out = build(tmp_path, "brats2023")
    store = check_built(report, out, made, [0, 1, 2, 3], SUFFIXES)
    classes = store.attrs["labels"]["segmentation"]["classes"]
    assert classes["1"].startswith("non-enhancing tumour core")
    assert classes["3"] == "enhancing tumour (ET)"
    check_channel_order(store, f"BraTS-{task}-00000-000", {"enhancing": 3, "edema": 2})


def test_brats2024_gli_groups_time_points_by_patient_and_names_the_cavity(tmp_path):
    made = make_brats2024_gli(tmp_path / "src")
    report, out = build(tmp_path, "brats2024-gli")
    store = check_built(report, out, made, [0, 1, 2, 3, 4], SUFFIXES)
    assert store.attrs["labels"]["segmentation"]["classes"]["4"] == "resection cavity (RC)"
    assert all(4 in values for values in made["label_values"].values())
    # check_built has compared the patients; one patient is one split.
    assert made["patients"]["BraTS-GLI-00005-101"] == "BraTS-GLI-00005"
    splits = store.cases.set_index("case_id")["split"]
    assert splits["BraTS-GLI-00005-100"] == splits["BraTS-GLI-00005-101"]


def test_brats2024_ped_has_its_own_label_numbering(tmp_path):
    made = make_brats2024_ped(tmp_path / "src")
    report, out = build(tmp_path, "brats2024-ped")
    store = check_built(report, out, made, [0, 1, 2, 3, 4], SUFFIXES)
    classes = store.attrs["labels"]["segmentation"]["classes"]
    assert classes["1"] == "enhancing tumour (ET)" and classes["4"] == "peritumoral edema (ED)"
    check_channel_order(store, "BraTS-PED-00001-000", {"enhancing": 1, "edema": 4})


@pytest.mark.parametrize("make, value", [(make_brats2024_gli, 4), (make_brats2024_ped, 4)])
def test_a_2024_seg_read_with_the_2023_recipe_fails_loudly(tmp_path, make, value):
    # PED 2024 and PED 2023 share their case names: the wrong recipe must not build
    # 2024's ET under 2023's name for label 1 -- its label 4 stops every case.
    made = make(tmp_path / "src")
    report, _ = build(tmp_path, "brats2023")
    assert sorted(report.failed) == made["cases"] and not report.built
    for message in report.failed.values():
        assert f"mask values [{value}] are not in the segmentation classes [0, 1, 2, 3]" \
            in message


def test_the_2023_recipe_does_not_read_2021_names_nor_the_reverse(tmp_path):
    make_brats2021(tmp_path / "a")
    make_brats2023(tmp_path / "b")
    for recipe, source in [("brats2023", "a"), ("brats", "b")]:
        with pytest.raises(RecipeError, match="no cases found"):
            build_store(load_recipe(recipe), tmp_path / source, tmp_path / f"{source}.zarr",
                        progress=False)
