"""The bundled adni recipe builds a miniature ADNI IDA download (tests/fixtures/adni.py):
NIfTI images joined to the collection CSV by their image ID, Group as diagnosis, the
visits of one subject in one split."""

from __future__ import annotations

from fixtures.adni import make_adni
from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.validate import validate_store

CLASSES = ["CN", "SMC", "EMCI", "MCI", "LMCI", "AD"]


def test_adni_builds_images_with_their_collection_diagnosis(tmp_path):
    made = make_adni(tmp_path / "src")
    out = tmp_path / "adni.zarr"
    report = build_store(load_recipe("adni"), tmp_path / "src", out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    assert list(report.skipped.values()) == ["row without an image file"] * \
        made["not_downloaded"]
    assert validate_store(out) == []

    store = open_store(out)
    cases = store.cases.set_index("case_id")
    assert sorted(cases.index) == made["cases"]
    diagnosis = store.labels("diagnosis")
    for case_id, group in made["group"].items():
        assert diagnosis[case_id] == CLASSES.index(group)
    assert cases["patient_id"].nunique() == len(made["patients"])
    # Subject 002_S_0295's screening and month-12 scans: one patient, one split.
    pair = cases.loc[["I45108", "I64025"]]
    assert pair["patient_id"].nunique() == 1 and pair["split"].nunique() == 1
    assert set(pair["visit"]) == {"sc", "m12"}
    # The sagittal 1.25 x 0.94 x 0.94 mm volumes come out RAS at 1 mm.
    image = store.read_image("I45108")
    assert image.orientation == "RAS" and image.spacing == (1.0, 1.0, 1.0)
