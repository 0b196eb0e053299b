"""The bundled i2cvb recipe builds a miniature I2CVB download (tests/fixtures/i2cvb.py):
T2W DICOM series with the ADC map resampled onto it as a second channel, and the zone
and cancer ground truths (binary DICOM series) combined into one label map."""

from __future__ import annotations

import numpy as np
import pytest

from fixtures.i2cvb import make_i2cvb as make_fixture
from medimg_build import open_store
from medimg_build.privacy import pseudonym_key, pseudonymize
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.recipe.sources import list_sources
from medimg_build.store.validate import validate_store


def make_i2cvb(root):
    """The fixture's download, its case ids as a build names them: each patient folder
    ("Patient 383") spells its PatientID, so its case id is a pseudonym
    (``sources.private_case_id``); ``folders`` maps it back."""
    made = make_fixture(root)
    ids = {case: f"case-{pseudonymize(case, pseudonym_key()[0])[:12]}"
           for case in made["cases"]}
    return {**made, "cases": sorted(ids.values()),
            "folders": {pseudonym: case for case, pseudonym in ids.items()},
            "prostate_voxels": {ids[c]: v for c, v in made["prostate_voxels"].items()}}


def test_i2cvb_cases_are_patient_folders_with_t2w_and_the_prostate_series(tmp_path):
    made = make_i2cvb(tmp_path / "src")
    listing = list_sources(load_recipe("i2cvb"), tmp_path / "src")
    assert sorted(c.case_id for c in listing.cases) == made["cases"]
    for case in listing.cases:
        assert case.image_path.name == "T2W" and case.channel_names == ("T2W", "ADC")
        assert [layer[0] for layer in case.mask_loader_args["layers"]] == [1, 2, 3]
        assert case.patient_id == made["folders"][case.case_id].replace("_", " ")
    assert list(listing.skipped.values()) == ["patient folder without T2W/"] * made["skipped"]


def test_i2cvb_builds_t2w_and_adc_with_zones_and_cancer(tmp_path):
    made = make_i2cvb(tmp_path / "src")
    out = tmp_path / "i2cvb.zarr"
    report = build_store(load_recipe("i2cvb"), tmp_path / "src", out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    assert list(report.skipped.values()) == ["patient folder without T2W/"] * made["skipped"]
    assert validate_store(out) == []

    store = open_store(out)
    assert sorted(store.cases["case_id"]) == made["cases"]
    for case_id in made["cases"]:
        mask, image = store.read_mask(case_id), store.read_image(case_id)
        assert sorted(int(v) for v in np.unique(mask.array)) == [0, 1, 2, 3]
        # Two channels; the gland is bright on T2W and dark on ADC (restricted diffusion).
        t2w, adc = image.array[..., 0], image.array[..., 1]
        assert t2w[mask.array > 0].mean() > t2w[mask.array == 0].mean()
        covered = adc > adc.min()  # where the ADC grid reaches (0 outside, before z-score)
        assert adc[covered & (mask.array > 0)].mean() < adc[covered & (mask.array == 0)].mean()
        # 0.8 x 0.8 x 3 mm voxels resampled to 1 mm: the gland keeps its volume (nearest).
        volume = int((mask.array > 0).sum())
        assert volume == pytest.approx(made["prostate_voxels"][case_id] * 0.8 * 0.8 * 3,
                                       rel=0.15)
    assert set(store.cases["manufacturer"]) == {"SIEMENS"}


def test_i2cvb_t2w_alone_builds(tmp_path):
    """The T2W images alone, without masks, build and validate."""
    made = make_i2cvb(tmp_path / "src")
    out = tmp_path / "t2w.zarr"
    recipe = load_recipe("i2cvb").with_overrides(
        {"source": {"options": {"images": None, "masks": None, "mask": "no-such-folder"}},
         "labels": None})
    report = build_store(recipe, tmp_path / "src", out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    assert validate_store(out) == []
    store = open_store(out)
    assert set(store.cases["modality"]) == {"MR"}
    assert set(store.cases["manufacturer"]) == {"SIEMENS"}
    assert store.read_image(made["cases"][0]).spacing == pytest.approx((1.0, 1.0, 1.0))
