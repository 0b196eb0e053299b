"""Viewers open every case (issue 19): each case group of a volumes store, with a mask
and without, passes the three OME-Zarr readers -- ngff-zarr's strict JSON-schema
validator, ome-zarr-py's reader and ome-zarr-models' pydantic models -- and carries an
``omero`` display window, which ome-zarr-py hands napari as contrast limits.

On the real TotalSegmentator CT (with its 42-class segmentation, and once more without
a mask) and MR, built by the volume-folder recipe on their own grids."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr
from ngff_zarr import validate as ngff_validate
from ome_zarr.io import parse_url
from ome_zarr.reader import Label, Multiscales, Reader
from ome_zarr_models import open_ome_zarr
from ome_zarr_models.v05.image import Image
from ome_zarr_models.v05.image_label import ImageLabel
from ome_zarr_models.v05.labels import Labels

from medimg_build.image import MedicalImage
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store import open_store
from medimg_build.store.axes import image_to_stored
from medimg_build.store.ngff import (
    DISPLAY_PERCENTILES, SOFT_TISSUE_HU, display_window, image_omero,
)

WITH_MASK, WITHOUT_MASK = "ct", "plain"


def _build(root, images: dict[str, str], masks: dict[str, str], overrides: dict, **kwargs):
    source = root / "src"
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    for case, path in images.items():
        (source / "images" / f"{case}.nii.gz").symlink_to(path)
    for case, path in masks.items():
        (source / "labels" / f"{case}.nii.gz").symlink_to(path)
    out = root / "store.zarr"
    recipe = load_recipe("volume-folder").with_overrides(overrides)
    report = build_store(recipe, source, out, progress=False, **kwargs)
    assert not report.failed, report.failed
    return out


@pytest.fixture(scope="module")
def ct(shared_data, tmp_path_factory):
    """The CT with its segmentation ("ct") and without ("plain"), no pyramid (the
    default)."""
    base = shared_data / "totalsegmentator"
    return _build(tmp_path_factory.mktemp("ct"),
                  {WITH_MASK: base / "example_ct_sm.nii.gz",
                   WITHOUT_MASK: base / "example_ct_sm.nii.gz"},
                  {WITH_MASK: base / "example_seg.nii.gz"},
                  {"harmonize": {"spacing": None}})


@pytest.fixture(scope="module")
def mr(shared_data, tmp_path_factory):
    """The MR with its segmentation, z-scored by the MR preset."""
    base = shared_data / "totalsegmentator"
    return _build(tmp_path_factory.mktemp("mr"), {"mr": base / "example_mr_sm.nii.gz"},
                  {"mr": base / "example_seg_mr.nii.gz"},
                  {"modality": "MR", "harmonize": {"spacing": None,
                                                   "intensity": {"preset": "mr"}}})


def _case(store, case_id: str) -> zarr.Group:
    return zarr.open_group(store / "cases" / case_id, mode="r")


# -- the three validators ----------------------------------------------------------------
@pytest.mark.parametrize("case_id", [WITH_MASK, WITHOUT_MASK])
def test_ome_zarr_models_validates_every_case(ct, case_id):
    """ome-zarr-models 1.7 builds its models from the case group: the image, and through
    it (``Image.from_zarr`` validates the optional ``labels`` group) the label image;
    before, every case with a mask raised KeyError 'scale0/mask'."""
    group = _case(ct, case_id)
    image = open_ome_zarr(group, version="0.5")
    assert type(image) is Image
    assert [d.path for d in image.datasets[0]] == ["scale0/image"]
    if case_id == WITHOUT_MASK:
        assert "labels" not in group
        return
    labels = Labels.from_zarr(group["labels"])
    assert labels.label_paths == ["mask"]
    label_image = open_ome_zarr(group["labels/mask"], version="0.5")
    assert type(label_image) is ImageLabel
    assert [d.path for d in label_image.ome_attributes.multiscales[0].datasets] == ["mask"]
    assert label_image.ome_attributes.image_label.source.image == "../../"


@pytest.mark.parametrize("case_id", [WITH_MASK, WITHOUT_MASK])
def test_ngff_zarr_strict_validator_accepts_every_case(ct, case_id):
    group = _case(ct, case_id)
    nodes = [(group, "image")] + ([(group["labels/mask"], "label")]
                                  if case_id == WITH_MASK else [])
    for node, model in nodes:
        attrs = node.attrs.asdict()
        ngff_validate(attrs, version="0.5", model=model, strict=True)
        # What a JSON schema cannot see: each level's dimension_names are the axes.
        multiscale = attrs["ome"]["multiscales"][0]
        names = [axis["name"] for axis in multiscale["axes"]]
        for dataset in multiscale["datasets"]:
            assert list(node[dataset["path"]].metadata.dimension_names) == names


@pytest.mark.parametrize("case_id", [WITH_MASK, WITHOUT_MASK])
def test_ome_zarr_py_reads_image_labels_and_window(ct, case_id):
    location = parse_url(str(ct / "cases" / case_id))
    assert location.version == "0.5"  # its format detection
    group = _case(ct, case_id)
    for node in [group] + ([group["labels/mask"]] if case_id == WITH_MASK else []):
        multiscale = node.attrs["ome"]["multiscales"][0]
        location.fmt.validate_coordinate_transformations(
            len(multiscale["axes"]), len(multiscale["datasets"]),
            [d["coordinateTransformations"] for d in multiscale["datasets"]])
    nodes = list(Reader(location)())
    images = [n for n in nodes if any(isinstance(s, Multiscales) for s in n.specs)
              and not any(isinstance(s, Label) for s in n.specs)]
    labels = [n for n in nodes if any(isinstance(s, Label) for s in n.specs)]
    assert len(images) == 1 and len(labels) == (case_id == WITH_MASK)
    case = open_store(ct).case(case_id)
    np.testing.assert_array_equal(np.asarray(images[0].data[0]), case["image"].values)
    window = _case(ct, case_id).attrs["ome"]["omero"]["channels"][0]["window"]
    assert images[0].metadata["contrast_limits"] == [[window["start"], window["end"]]]
    assert images[0].metadata["channel_names"] == ["CT"]
    if labels:
        np.testing.assert_array_equal(np.asarray(labels[0].data[0]), case["mask"].values)


def test_a_pyramid_mask_is_read_by_all_but_ome_zarr_models_1_7(shared_data, tmp_path):
    """With a pyramid the mask's levels stay in scale<n>/ (one group each, for xarray and
    netCDF: ngff.py): ngff-zarr and ome-zarr-py read them; ome-zarr-models 1.7 looks
    the path up as one member name (v05/labels.py ``_check_valid_dtypes``), the
    limitation the README states. When a release accepts them, this fails: drop the
    note."""
    base = shared_data / "totalsegmentator"
    store = _build(tmp_path, {WITH_MASK: base / "example_ct_sm.nii.gz"},
                   {WITH_MASK: base / "example_seg.nii.gz"},
                   {"harmonize": {"spacing": None}}, pyramid_levels=2)
    group = _case(store, WITH_MASK)
    ngff_validate(group["labels/mask"].attrs.asdict(), version="0.5", model="label",
                  strict=True)
    [label] = [n for n in Reader(parse_url(str(store / "cases" / WITH_MASK)))()
               if any(isinstance(s, Label) for s in n.specs)]
    assert [d.shape for d in label.data] == [group[f"labels/mask/scale{n}/mask"].shape
                                             for n in range(2)]
    with pytest.raises(RuntimeError, match="KeyError: 'scale0/mask'"):
        open_ome_zarr(group, version="0.5")
    xr.open_datatree(store, engine="zarr").close()  # what the layout keeps


@pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning")  # consolidating by hand
def test_no_pyramid_mask_layout_passes_both_ome_zarr_models_and_xarray(shared_data, tmp_path):
    """Why a pyramid's mask levels stay in scale<n>/ (ngff.py), shown on the real CT:
    ome-zarr-models 1.7 accepts only levels that are arrays of the label image group
    itself (the NGFF spec example's labels/<name>/0, 1...), each with the axes' names
    as its dimension_names (v05/image.py ``_check_arrays_compatible``); xarray makes a
    group one Dataset, where each dimension has one length. Levels of one group named
    z, y, x with two lengths satisfy the first and break the second, so no layout
    satisfies both: rewritten that way, the store passes ome-zarr-models and
    ``xr.open_datatree`` refuses it. The layout keeps xarray, ome-zarr-py (napari) and
    ngff-zarr; when ome-zarr-models reads nested label paths as it reads image paths,
    the test above fails and all four pass."""
    base = shared_data / "totalsegmentator"
    store = _build(tmp_path, {WITH_MASK: base / "example_ct_sm.nii.gz"},
                   {WITH_MASK: base / "example_seg.nii.gz"},
                   {"harmonize": {"spacing": None}}, pyramid_levels=2)
    label_image = zarr.open_group(store / "cases" / WITH_MASK / "labels" / "mask", mode="a")
    attrs = label_image.attrs.asdict()
    for level, dataset in enumerate(attrs["ome"]["multiscales"][0]["datasets"]):
        level_array = label_image[dataset["path"]]
        label_image.create_array(str(level), data=level_array[...],
                                 dimension_names=level_array.metadata.dimension_names)
        del label_image[f"scale{level}"]
        dataset["path"] = str(level)
    label_image.attrs.put(attrs)
    zarr.consolidate_metadata(store)
    open_ome_zarr(_case(store, WITH_MASK), version="0.5")  # accepted
    with pytest.raises(ValueError, match="conflicting sizes for dimension 'z'"):
        xr.open_datatree(store, engine="zarr")


# -- the omero window --------------------------------------------------------------------
def test_ct_window_is_soft_tissue_and_range_the_stored_values(ct):
    group = _case(ct, WITH_MASK)
    [channel] = group.attrs["ome"]["omero"]["channels"]
    stored = group["scale0/image"][...]
    assert channel["window"] == {"min": float(stored.min()), "max": float(stored.max()),
                                 "start": SOFT_TISSUE_HU[0], "end": SOFT_TISSUE_HU[1]}
    assert channel["color"] == "FFFFFF" and channel["label"] == "CT"
    assert group.attrs["ome"]["omero"]["rdefs"] == {"model": "greyscale"}


def test_z_scored_mr_window_is_the_percentiles_of_its_stored_values(mr):
    group = _case(mr, "mr")
    [channel] = group.attrs["ome"]["omero"]["channels"]
    stored = group["scale0/image"][0]
    assert stored.dtype == np.float32  # z-scored
    low, high = np.percentile(stored, DISPLAY_PERCENTILES)
    # Sampled on a grid for large images; every voxel of this one.
    assert stored.size <= 1 << 21
    assert (channel["window"]["start"], channel["window"]["end"]) == pytest.approx(
        (low, high), rel=1e-6)
    # The MR preset clipped at the same percentiles before z-scoring: they are the ends.
    assert channel["window"]["min"] == float(stored.min()) <= low
    assert channel["window"]["max"] == float(stored.max()) >= high
    ngff_validate(group.attrs.asdict(), version="0.5", model="image", strict=True)
    open_ome_zarr(group, version="0.5")


def test_a_large_image_window_comes_from_a_sample_and_is_close():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(80, 200, 200)).astype(np.float32)  # 3.2 M voxels
    image = MedicalImage(values, np.eye(4)).recorded("normalize_mr", method="mr")
    [channel] = image_omero(image_to_stored(image), image.history, {})["channels"]
    exact = np.percentile(values, DISPLAY_PERCENTILES)
    assert (channel["window"]["start"], channel["window"]["end"]) == pytest.approx(
        tuple(exact), abs=0.05)
    # The sample is taken by index, so the memory order of the array does not matter.
    fortran = MedicalImage(np.asfortranarray(values), np.eye(4), history=image.history)
    assert image_omero(image_to_stored(fortran), fortran.history, {})["channels"] == [channel]


def test_an_rgb_picture_gets_a_red_green_and_blue_channel():
    rng = np.random.default_rng(1)
    pixels = rng.random((30, 20, 3)).astype(np.float16)
    image = MedicalImage(pixels, np.eye(4), spatial_ndim=2,
                         meta={"intensity": {"photometric": "RGB"}})
    omero = image_omero(image_to_stored(image), image.history, image.meta)
    assert [c["color"] for c in omero["channels"]] == ["FF0000", "00FF00", "0000FF"]
    assert [c["label"] for c in omero["channels"]] == ["red", "green", "blue"]
    assert omero["rdefs"] == {"model": "color"}


def test_a_colour_picture_keeps_its_colours():
    """The three channels of a colour picture share one window (the percentiles of all
    their values): with a window each, a reddish photo (a fundus: bright red, dim blue)
    had its blue stretched as far as its red -- drawn in colours it was not taken in."""
    rng = np.random.default_rng(4)
    red = rng.uniform(0.5, 1.0, (40, 30))
    pixels = np.stack([red, 0.5 * red, 0.1 * red], axis=-1).astype(np.float32)
    image = MedicalImage(pixels, np.eye(4), spatial_ndim=2,
                         meta={"intensity": {"photometric": "RGB"}})
    image = image.recorded("normalize_unit_range", method="unit_range")
    omero = image_omero(image_to_stored(image), image.history, image.meta)
    windows = {(c["window"]["start"], c["window"]["end"]) for c in omero["channels"]}
    assert len(windows) == 1
    [(start, end)] = windows
    assert (start, end) == pytest.approx(tuple(np.percentile(pixels, DISPLAY_PERCENTILES)))
    # each channel keeps its own value range
    assert [c["window"]["max"] for c in omero["channels"]] == pytest.approx(
        [float(pixels[..., c].max()) for c in range(3)])


def test_a_ct_window_narrower_than_soft_tissue_is_kept():
    values = np.zeros((2, 2), dtype=np.int16)
    assert display_window(values, {"method": "ct", "window": [-100, 100]}) == (-100.0, 100.0)
    assert display_window(values, {"method": "ct", "window": [300, 1500]}) == (300.0, 1500.0)


@pytest.mark.parametrize("values, window", [
    (np.full((4, 5, 6), 3.0, np.float32), (2.5, 3.5)),  # one value: one unit around it
    (np.zeros((10, 10, 10), np.float32), (-0.5, 0.5)),  # a blank image
    # 0.2% of the voxels bright: both percentiles are 0; the range of the values instead
    (np.where(np.arange(1000).reshape(10, 10, 10) < 2, 7.0, 0.0), (0.0, 7.0)),
])
def test_a_display_window_always_increases(values, window):
    """napari's image layer refuses contrast limits that do not increase (napari
    ``layers/intensity_mixin.py``: ``_validate_increasing(contrast_limits)``, "must be
    monotonically increasing"), and ome-zarr-py hands it the window's start and end:
    before, a channel of one value (a blank case, or a blank channel of several) got
    start == end and did not open in napari."""
    image = MedicalImage(values, np.eye(4)).recorded("normalize_mr", method="mr")
    [channel] = image_omero(image_to_stored(image), image.history, {})["channels"]
    assert (channel["window"]["start"], channel["window"]["end"]) == window
    assert display_window(values, None) == window


def test_stacked_channels_are_named_in_napari(shared_data, tmp_path):
    """A multi-parametric MR of stacked files (Dataset005_Prostate: nnU-Net's
    ``channel_names`` T2 and ADC, real MR crops): each channel's ``omero`` label is its
    name, which ome-zarr-py hands napari as the layer's name -- before, "MR 0", "MR 1"
    -- and only the first is active, where both were (drawn white and added together).
    Each channel has its own window (ADC is 3000 - 2 T2 here: another range)."""
    from fixtures.nnunet import make_dataset005_prostate

    make_dataset005_prostate(tmp_path / "src", shared_data)
    out = tmp_path / "prostate.zarr"
    assert build_store(load_recipe("nnunet"), tmp_path / "src", out, progress=False).ok
    [image] = [n for n in Reader(parse_url(str(out / "cases" / "prostate_00")))()
               if any(isinstance(s, Multiscales) for s in n.specs)
               and not any(isinstance(s, Label) for s in n.specs)]
    assert image.metadata["channel_names"] == ["T2", "ADC"]
    # Both drawn white (rdefs greyscale): one shown at a time, not their sum.
    assert image.metadata["visible"] == [True, False]
    [t2, adc] = image.metadata["contrast_limits"]
    stored = np.asarray(image.data[0])
    for limits, values in zip((t2, adc), stored):
        assert values.min() <= limits[0] < limits[1] <= values.max()


def test_a_picture_in_pixels_has_no_millimeter_axes(shared_data, tmp_path):
    """NIH's PNGs without their table (class folders) have no pixel size: their axes
    carry no unit (NGFF's is optional) rather than "millimeter", which told napari a
    pixel was 1 mm. The SIIM CR (PixelSpacing) keeps millimeter. All validate."""
    from fixtures import chest_films
    (tmp_path / "png" / "nih").mkdir(parents=True)
    png = shared_data / "torchxrayvision" / "tests" / "00000001_000.png"
    (tmp_path / "png" / "nih" / png.name).symlink_to(png)
    built = {}
    for name, recipe_name, source, overrides in (
            ("png", "class-folders", tmp_path / "png", {}),
            ("cr", "nih-chestxray14", chest_films.make(tmp_path / "cr", shared_data),
             chest_films.OVERRIDES)):
        recipe = load_recipe(recipe_name).with_overrides(
            {**overrides, "layout": "volumes", "harmonize": {"shape": [64, 64]}})
        out = tmp_path / f"{name}.zarr"
        assert build_store(recipe, source, out, progress=False).ok
        built[name] = out
    units = {}
    for name, out in built.items():
        for case_id in open_store(out).cases["case_id"]:
            group = _case(out, case_id)
            ngff_validate(group.attrs.asdict(), version="0.5", model="image", strict=True)
            assert type(open_ome_zarr(group, version="0.5")) is Image
            axes = group.attrs["ome"]["multiscales"][0]["axes"][1:]
            units[case_id] = {axis.get("unit") for axis in axes}
    # The NIH PNG in the ChestX-ray14 source has its table's pixel size: millimeter.
    assert units == {"nih_00000001_000": {None}, "00000001_000": {"millimeter"},
                     "siim-cr": {"millimeter"}}
