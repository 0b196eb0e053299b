"""Philips private scaling: dcm2niix's default values, and the recipe option for the
other (issue 15, item 4).

Philips MR stores RescaleSlope/Intercept (RS, RI) and a private MRScaleSlope (SS,
2005,100E; per frame in 2005,140F items of enhanced files). dcm2niix's default (-p y)
writes the "precise" values (stored * RS + RI) / (RS * SS) (nii_dicom_batch.cpp,
PhilipsPreciseVal); -p n the displayed stored * RS + RI. The references are the
collection's own dcm2niix outputs of a pCASL series, classic and enhanced.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medimg_build.io import read_image
from medimg_build.io.read_options import read_options
from medimg_build.privacy import pseudonym_key
from medimg_build.recipe.model import load_recipe
from medimg_build.recipe.pipeline import BuildContext, harmonize_case
from medimg_build.recipe.sources import discover_cases

from dcm2niix_reference import assert_same_volume

PHILIPS = "dcm_qa_vendor/dcm_qa_philips_enh"
ENHANCED = "In/enh/1903_WIP_SOURCE_-_3DpCASL.dcm"
RS, SS = 1.33870573870573, 3.432509765843861e-05  # as the series' headers give them


@pytest.fixture(scope="module")
def classic(shared_data, tmp_path_factory) -> Path:
    """The classic series (240 files) alone: its shared folder holds a DTI as well."""
    folder = tmp_path_factory.mktemp("philips") / "1903"
    folder.mkdir()
    for path in sorted((shared_data / PHILIPS / "In/cl").glob("1903_*.dcm")):
        (folder / path.name).symlink_to(path)
    return folder


@pytest.mark.parametrize("kind", ["cl", "enh"])
def test_default_values_equal_dcm2niix_default(shared_data, classic, kind):
    source = classic if kind == "cl" else shared_data / PHILIPS / ENHANCED
    image = read_image(source)
    assert_same_volume(image,
                       shared_data / PHILIPS / f"Ref/1903_WIP_SOURCE_-_3DpCASL_{kind}.nii.gz")
    intensity = image.meta["intensity"]
    assert intensity["philips_scaling"] == "precise"
    assert intensity["philips_scale_slope"] == pytest.approx(SS, rel=1e-12)
    assert intensity["rescale_slope"] == pytest.approx(RS, rel=1e-12)
    assert "unit" not in intensity  # RescaleType "normalized" names the displayed values
    assert image.history[0].params["philips_scaling"] == "precise"


@pytest.mark.parametrize("kind", ["cl", "enh"])
def test_display_option_gives_rescaled_stored_values(shared_data, classic, kind):
    source = classic if kind == "cl" else shared_data / PHILIPS / ENHANCED
    with read_options(philips_scaling="display"):
        image = read_image(source)
    # Precise values times RS * SS are the displayed ones (RI = 0 in this series).
    assert_same_volume(image,
                       shared_data / PHILIPS / f"Ref/1903_WIP_SOURCE_-_3DpCASL_{kind}.nii.gz",
                       factor=RS * SS)
    assert image.meta["intensity"]["philips_scaling"] == "display"
    if kind == "cl":  # ... which are exactly stored * RS + RI (RescaleType "normalized")
        assert image.meta["intensity"]["unit"] == "normalized"
        first = pydicom.dcmread(sorted(classic.iterdir())[0])
        assert first.InstanceNumber == 1 and float(first.RescaleIntercept) == 0
        assert np.isin(np.float32(first.pixel_array.astype(np.float64) * RS),
                       image.array).all()


def test_other_vendors_keep_dicom_rescale(shared_data):
    image = read_image(shared_data / "dcm_qa_nih/In/20180918GE/mr_0004")
    assert "philips_scaling" not in image.meta["intensity"]
    assert "philips_scaling" not in image.history[0].params


def test_recipe_read_section_reaches_the_reader(shared_data, tmp_path):
    """``read: {philips_scaling: display}`` in a recipe: the build reads display values,
    recorded in the case's steps; without it, the default precise ones."""
    source = tmp_path / "source"
    (source / "images").mkdir(parents=True)
    (source / "images" / "asl.dcm").symlink_to(shared_data / PHILIPS / ENHANCED)
    base = load_recipe("volume-folder").with_overrides(
        {"modality": "MR", "harmonize": {"spacing": [4.0, 4.0, 4.0],
                                         "intensity": {"preset": "none"}}})
    read = {}
    for scaling in (None, "display"):
        recipe = base if scaling is None else base.with_overrides(
            {"read": {"philips_scaling": scaling}})
        [case_source] = discover_cases(recipe, source)
        case = harmonize_case(case_source, BuildContext(recipe, source,
                                                        pseudonym_key(None)[0]))
        read[scaling] = case
        assert case.row["steps"][0]["params"]["philips_scaling"] == (scaling or "precise")
    precise, display = read[None].image.array, read["display"].image.array
    np.testing.assert_allclose(display, precise * (RS * SS), rtol=1e-5,
                               atol=1e-6 * float(np.abs(display).max()))
