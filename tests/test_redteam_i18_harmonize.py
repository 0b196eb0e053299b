"""Red-team checks of issue 18's faster harmonization against the code it replaced:
what the reduced JPEG decoding, the separable resampling and the float32 normalization
must keep as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medimg_build import open_store
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe

ROWS, COLUMNS = 1600, 2400  # a photo the 256^2 stack shrinks 9x: decoded at 1/4


def _lesion_photos(root: Path, masks: bool) -> Path:
    """ISIC's layout in one class folder: RGB JPEG photos, optional PNG masks (0/255)."""
    (root / "lesion").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        photo = rng.integers(0, 255, (ROWS, COLUMNS, 3), dtype=np.uint8)
        Image.fromarray(photo).save(root / "lesion" / f"c{k}.jpg", quality=90)
        if masks:
            mask = np.zeros((ROWS, COLUMNS), np.uint8)
            mask[400:1200, 800:1600] = 255
            Image.fromarray(mask).save(root / "masks" / f"c{k}.png")
    return root


def _build(source: Path, out: Path, masks: bool):
    overrides = {"source": {"images": "lesion/*.jpg"}, "split": {"stratify": None}}
    if masks:
        overrides["source"]["masks"] = "masks/{stem}.png"
        overrides["labels"] = {"segmentation": {"classes": {"0": "background", "1": "lesion"},
                                                "map": {"255": 1}}}
    recipe = load_recipe("class-folders").with_overrides(overrides)
    with pytest.warns(UserWarning):  # the built-in pseudonym key
        return build_store(recipe, source, out, progress=False)


def test_jpeg_with_a_mask_builds_as_before(tmp_path):
    # The mask is checked against the image's grid as read, and is itself read whole:
    # a JPEG read at 1/4 scale failed every case ("mask grid (2400, 1600, 1) differs
    # from image grid (600, 400, 1)"), where the full decoding built them.
    source = _lesion_photos(tmp_path / "src", masks=True)
    report = _build(source, tmp_path / "out.zarr", masks=True)
    assert report.ok, report.failed
    store = open_store(tmp_path / "out.zarr")
    mask = store.read_mask(store.cases.index[0] if "case_id" not in store.cases
                           else store.cases["case_id"].iloc[0])
    # The lesion is a third of the columns and half of the rows: padded into 256^2.
    assert 0.1 < (mask.array == 1).mean() < 0.2


def test_case_table_keeps_the_source_files_shape(tmp_path):
    # original_shape/spacing/affine describe the source file (PRODUCT.md, the report's
    # figures); a JPEG read at 1/4 scale recorded its reduced 600 x 400 at 4 pixels.
    source = _lesion_photos(tmp_path / "src", masks=False)
    assert _build(source, tmp_path / "out.zarr", masks=False).ok
    cases = open_store(tmp_path / "out.zarr").cases
    assert any("'reduced': 4" in str(steps) for steps in cases["steps"])  # it was reduced
    for shape, spacing, affine in zip(cases["original_shape"], cases["original_spacing"],
                                      cases["original_affine"]):
        assert list(shape) == [COLUMNS, ROWS, 3]
        assert list(spacing) == [1.0, 1.0]
        np.testing.assert_array_equal(np.asarray(affine, dtype=float).reshape(4, 4), np.eye(4))


@pytest.mark.parametrize("source_range", [[0.3, 200.7], [10, 200.7], [100.2, 3000]])
def test_unit_range_with_a_given_source_range_keeps_float64s_bits(source_range):
    # The float32 working copy is exact only when x - low and the division by the scale
    # are float32's correctly rounded results of exact operands: a source range that
    # float32 cannot hold (200.7) moved 1 ulp in 15-30 % of the pixels.
    from medimg_build.harmonize.normalize import normalize_unit_range
    from medimg_build.image import MedicalImage

    array = np.random.default_rng(0).integers(0, 4096, (300, 300)).astype(np.uint16)
    image = MedicalImage(np.asfortranarray(array), np.eye(4), spatial_ndim=2)
    out = normalize_unit_range(image, source_range, "float32").array
    low, high = source_range
    reference = np.clip((array.astype(np.float64) - low) / (high - low), 0, 1)
    np.testing.assert_array_equal(out, reference.astype(np.float32))


@pytest.mark.parametrize("size, reduced", [((2405, 1603), None), ((2402, 1602), 2),
                                           ((2400, 1600), 4)])
def test_reduced_jpeg_keeps_the_harmonized_grid_exactly(tmp_path, size, reduced):
    # libjpeg's last block of a side not divisible by the scale is partial: the reduced
    # picture (602 x 401 for 2405 x 1603 at 1/4) spans past the file, and the resized
    # grid moved (spacing 9.3945 -> 9.4062 px, origin by a pixel, up to 9 grey levels).
    from medimg_build import read_image
    from medimg_build.harmonize import resize_with_pad
    from medimg_build.harmonize.orient import to_ras
    from medimg_build.io.read_options import picture_fit

    path = tmp_path / "photo.jpg"
    columns, rows = size
    j, i = np.mgrid[0:rows, 0:columns]
    grey = 40 + 180 * np.exp(-(((i - 2000) / 40) ** 2 + ((j - 1500) / 40) ** 2) / 2)
    Image.fromarray(grey.astype(np.uint8)).save(path, quality=95)
    whole = resize_with_pad(to_ras(read_image(path)), [256, 256])
    with picture_fit((256, 256)):
        read = read_image(path)
    assert read.history[-1].params.get("reduced") == reduced
    harmonized = resize_with_pad(to_ras(read), [256, 256])
    np.testing.assert_allclose(harmonized.affine, whole.affine, atol=1e-9)


def test_upsampling_holds_no_gathers_of_the_whole_output():
    # resample_to_spacing 2x per axis: the two-tap step gathered both neighbours of every
    # output voxel at once (two output-sized arrays beside the result: 3.5 outputs traced,
    # 468 MB peak RSS for a 192 MB result against 390 MB for the SimpleITK code).
    import tracemalloc

    from medimg_build.harmonize.resample import resample_to_spacing
    from medimg_build.image import MedicalImage

    array = np.asfortranarray(np.random.default_rng(0).integers(
        -1000, 2000, (64, 64, 40)).astype(np.int16))
    image = MedicalImage(array, np.diag([2.0, 2.0, 2.0, 1.0]), spatial_ndim=3)
    tracemalloc.start()
    try:
        out = resample_to_spacing(image, [1.0, 1.0, 1.0], "linear").array
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.shape == (128, 128, 80)
    assert peak < 3.0 * out.nbytes, peak / out.nbytes
