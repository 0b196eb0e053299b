"""The bundled i2cvb recipe builds a miniature I2CVB download in its real layout
(tests/fixtures/i2cvb.py, which cites where it was checked: the Zenodo archives unpack
to ``GE/`` and ``Siemens/``, masks in ``Patient NNN/GT/{prostate,pz,cg,cap}``): T2W
DICOM series with the ADC map resampled onto it as a second channel, and the zone and
cancer ground truths (binary DICOM series) combined into one label map -- from the
download root (both vendors) or from one vendor folder."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from fixtures.i2cvb import make_i2cvb as make_fixture
from medimg_build import open_store
from medimg_build.cli import _overrides
from medimg_build.privacy import pseudonym_key, pseudonymize
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.recipe.sources import list_sources
from medimg_build.store.validate import validate_store

NO_T2W = "patient folder without T2W/"


def make_i2cvb(root):
    """The fixture's download, its case ids as a build names them: each patient folder
    ("Patient 383") spells its PatientID, so its case id is a pseudonym
    (``sources.private_case_id``); ``folders`` maps it back."""
    made = make_fixture(root)
    ids = {case: f"case-{pseudonymize(case, pseudonym_key()[0])[:12]}"
           for case in made["cases"]}
    return {**made, "cases": sorted(ids.values()),
            "folders": {pseudonym: case for case, pseudonym in ids.items()},
            "prostate_voxels": {ids[c]: v for c, v in made["prostate_voxels"].items()},
            "vendor": {ids[c]: v for c, v in made["vendor"].items()}}


def test_i2cvb_cases_are_the_patient_folders_of_both_vendors(tmp_path):
    made = make_i2cvb(tmp_path / "src")
    listing = list_sources(load_recipe("i2cvb"), tmp_path / "src")
    assert sorted(c.case_id for c in listing.cases) == made["cases"]
    for case in listing.cases:
        assert case.image_path.name == "T2W" and case.channel_names == ("T2W", "ADC")
        layers = case.mask_loader_args["layers"]
        assert [layer[0] for layer in layers] == [1, 2, 3]
        assert [layer[1].split("/")[-2:] for layer in layers] == \
            [["GT", "pz"], ["GT", "cg"], ["GT", "cap"]]
        assert case.patient_id == made["folders"][case.case_id].replace("_", " ")
        assert case.fields["vendor"] == made["vendor"][case.case_id]
    assert listing.skipped == {"Siemens/Patient 2000": NO_T2W}


def test_i2cvb_builds_t2w_and_adc_with_zones_and_cancer(tmp_path):
    made = make_i2cvb(tmp_path / "src")
    out = tmp_path / "i2cvb.zarr"
    report = build_store(load_recipe("i2cvb"), tmp_path / "src", out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    assert list(report.skipped.values()) == [NO_T2W] * made["skipped"]
    assert validate_store(out) == []

    store = open_store(out)
    cases = store.cases.set_index("case_id")
    assert sorted(cases.index) == made["cases"]
    assert dict(cases["vendor"]) == made["vendor"]
    assert set(cases["manufacturer"]) == {"SIEMENS", "GE MEDICAL SYSTEMS"}
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


def test_one_vendor_folder_builds_its_patients_with_their_masks(tmp_path):
    """``--source I2CVB/Siemens``: its patients, every one with its label map (the
    recipe used to build them without masks, silently)."""
    made = make_i2cvb(tmp_path / "src")
    out = tmp_path / "siemens.zarr"
    report = build_store(load_recipe("i2cvb"), tmp_path / "src" / "Siemens", out,
                         progress=False)
    siemens = sorted(c for c, v in made["vendor"].items() if v == "Siemens")
    assert report.ok and sorted(report.built) == siemens
    assert report.skipped == {"Patient 2000": NO_T2W}
    store = open_store(out)
    assert set(store.cases["vendor"]) == {"Siemens"}
    for case_id in siemens:
        assert sorted(int(v) for v in np.unique(store.read_mask(case_id).array)) == \
            [0, 1, 2, 3]


def test_a_patient_without_a_declared_mask_is_reported_not_built_without(tmp_path):
    made = make_i2cvb(tmp_path / "src")
    shutil.rmtree(tmp_path / "src" / "GE" / "Patient 428260" / "GT" / "cap")
    listing = list_sources(load_recipe("i2cvb"), tmp_path / "src")
    ge = [c for c, v in made["vendor"].items() if v == "GE"]
    assert sorted(c.case_id for c in listing.cases) == sorted(set(made["cases"]) - set(ge))
    assert listing.skipped["GE/Patient 428260"] == \
        "patient folder without the mask(s) the recipe declares: GT/cap/"
    # One structure alone (options.mask) is declared too.
    shutil.rmtree(tmp_path / "src" / "Siemens" / "Patient 383" / "GT" / "prostate")
    gland = load_recipe("i2cvb").with_overrides(
        {"source": {"options": {"masks": None, "mask": "GT/prostate"}}})
    skipped = list_sources(gland, tmp_path / "src").skipped
    assert skipped["Siemens/Patient 383"] == \
        "patient folder without the mask(s) the recipe declares: GT/prostate/"


def test_i2cvb_t2w_alone_builds(tmp_path):
    """The T2W images alone (``mask: false``), without masks, build and validate."""
    made = make_i2cvb(tmp_path / "src")
    out = tmp_path / "t2w.zarr"
    recipe = load_recipe("i2cvb").with_overrides(
        {"source": {"options": {"images": None, "masks": None, "mask": False}},
         "labels": None})
    report = build_store(recipe, tmp_path / "src", out, progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    assert validate_store(out) == []
    store = open_store(out)
    assert set(store.cases["modality"]) == {"MR"}
    assert set(store.cases["manufacturer"]) == {"SIEMENS", "GE MEDICAL SYSTEMS"}
    assert store.read_image(made["cases"][0]).spacing == pytest.approx((1.0, 1.0, 1.0))


def test_patients_without_adc_are_reported_with_the_set_that_builds_t2w_alone(tmp_path):
    """Red-team (issue 16 item 2). No public copy shows the GE 1.5 T patients with an
    ADC/ folder (NVFlare's README and conversion script read only <vendor>/Patient NNN/T2W
    and GT/; a UTSW script lists DCE, DWI, MRSI for GE; /work/notes/i16-research-A.md).
    From the root, every GE patient is then skipped: the report says why and names the
    --set that builds T2W alone, which then builds both vendors with their masks."""
    made = make_i2cvb(tmp_path / "src")
    for adc in (tmp_path / "src" / "GE").glob("Patient */ADC"):
        shutil.rmtree(adc)
    ge = sorted(c for c, v in made["vendor"].items() if v == "GE")
    report = build_store(load_recipe("i2cvb"), tmp_path / "src", tmp_path / "a.zarr",
                         progress=False)
    reason = report.skipped["GE/Patient 428260"]
    assert reason == ("patient folder without ADC/ (to build T2W alone, for every "
                      "patient: --set source.options.images=[T2W])")
    assert sorted(report.built) == sorted(set(made["cases"]) - set(ge))
    assert reason in report.summary()
    # The --set exactly as the reason spells it, parsed as the command line does.
    override = _overrides([reason.split("--set ")[1].rstrip(")")], None)
    report = build_store(load_recipe("i2cvb").with_overrides(override), tmp_path / "src",
                         tmp_path / "t2w.zarr", progress=False)
    assert report.ok and sorted(report.built) == made["cases"]
    cases = open_store(tmp_path / "t2w.zarr").cases
    assert sorted(cases["vendor"]) == sorted(made["vendor"].values())
    assert all(list(values) == [0, 1, 2, 3] for values in cases["mask_values"])
