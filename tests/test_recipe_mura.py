"""The bundled MURA recipe builds its miniature download (layout and headerless CSVs
verified against public code reading the real files: see tests/fixtures/mura.py)."""

from __future__ import annotations

from collections import Counter

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store

from fixtures import mura


def test_mura_recipe_builds_its_fixture(tmp_path):
    made = mura.make(tmp_path)
    out = tmp_path / "mura.zarr"
    report = build_store(load_recipe("mura"), tmp_path, out, progress=False)
    assert report.ok and len(report.built) == made["cases"]
    assert report.skipped == {}  # the CSVs are beside the images, not matched by the glob
    assert validate_store(out) == []

    store = open_store(out)
    classes = store.attrs["labels"]["classification"]["abnormal"]["classes"]
    labels = {case: classes[int(v)] for case, v in store.labels("abnormal").items()}
    assert labels == made["labels"]
    assert Counter(labels.values()) == made["per_class"]
    cases = store.cases.set_index("case_id")
    # Every image the official CSVs list is a case, with its official split and part.
    for split, paths in made["image_paths"].items():
        for path in paths:
            _, _, part, patient, study, image = path.split("/")
            case = f"{patient[7:]}_{part[3:]}_{study.split('_')[0][5:]}_{image[5:-4]}"
            assert cases.loc[case, "official_split"] == split
            assert cases.loc[case, "split"] == {"train": "train", "valid": "val"}[split]
            assert cases.loc[case, "body_part"] == part[3:]
    # Patient 00001 has shoulder and elbow studies: one pseudonym, one split for all.
    own = cases[cases.index.str.startswith("00001_")]
    assert len(own) == 6 and own["patient_id"].nunique() == 1 and own["split"].nunique() == 1


def test_mura_builds_from_the_mura_folder_itself(tmp_path):
    """Pointed at MURA-v1.1/ (where its CSVs are) rather than its parent, the same cases
    build; the recipe matched paths starting MURA-v1.1/ only and found none."""
    made = mura.make(tmp_path)
    out = tmp_path / "mura.zarr"
    report = build_store(load_recipe("mura"), tmp_path / "MURA-v1.1", out, progress=False)
    assert report.ok and len(report.built) == made["cases"]
    store = open_store(out)
    classes = store.attrs["labels"]["classification"]["abnormal"]["classes"]
    assert {c: classes[int(v)] for c, v in store.labels("abnormal").items()} == made["labels"]
    assert set(store.cases["split"]) == {"train", "val"}


def test_mura_builds_from_a_folder_above_a_renamed_or_nested_copy(tmp_path):
    """Red-team: the real MURA-v1.1/{train,valid}/XR_<PART>/patient<ID>/study<N>_<label>/
    image<M>.png layout (tests/fixtures/mura.py) unpacked one level deeper, under a
    renamed folder (downloads/mura-v11/), built nothing: the pattern wanted paths
    starting "MURA-v1.1/". The train/ and valid/ folders say the split wherever they lie."""
    made = mura.make(tmp_path / "downloads")
    (tmp_path / "downloads" / "MURA-v1.1").rename(tmp_path / "downloads" / "mura-v11")
    out = tmp_path / "mura.zarr"
    report = build_store(load_recipe("mura"), tmp_path, out, progress=False)
    assert report.ok and len(report.built) == made["cases"]
    store = open_store(out)
    classes = store.attrs["labels"]["classification"]["abnormal"]["classes"]
    assert {c: classes[int(v)] for c, v in store.labels("abnormal").items()} == made["labels"]
    assert set(store.cases["split"]) == {"train", "val"}
