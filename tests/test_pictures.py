"""Pictures stay in picture space (issue 19): a PNG, a JPEG or a radiograph without
ImageOrientationPatient is no anatomical slice. Its axes are named column and row,
nothing reorients it, its boxes and landmarks are placed by row and column, and its
pixel size is in mm wherever the source knows it (a DICOM header's PixelSpacing or
ImagerPixelSpacing, ChestX-ray14's table), in pixels where not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydicom
import pytest
from PIL import Image

from medimg_build import open_store
from medimg_build.case import Case
from medimg_build.errors import RecipeError
from medimg_build.harmonize import resize_with_pad, to_ras
from medimg_build.image import MedicalImage
from medimg_build.io import read_image
from medimg_build.labels.boxes_landmarks import Boxes, Landmarks
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.recipe.sections import TablePixelSpacing
from medimg_build.recipe.table_spacing import with_table_pixel_spacing
from medimg_build.store import create_store

from fixtures import chest_films, nih_chestxray14

SIIM_CR = "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819.dcm"
WORLD = ["R_min", "R_max", "A_min", "A_max", "S_min", "S_max"]
PICTURE_BOX = ["row_min", "row_max", "column_min", "column_max"]
NIH_SPACING = TablePixelSpacing(columns=("OriginalImagePixelSpacing[x", "y]"),
                                measured_on=("OriginalImage[Width", "Height]"))


def picture(columns: int, rows: int, spacing=(1.0, 1.0), **meta) -> MedicalImage:
    return MedicalImage(np.zeros((columns, rows), np.uint8),
                        np.diag([*spacing, 1.0, 1.0]), 2, {"space": "image", **meta})


# -- axes named by column and row, never reoriented ---------------------------------------


@pytest.mark.parametrize("name", ["16747_3_1.jpg", "00000001_000.png", SIIM_CR])
def test_real_pictures_and_a_cr_are_named_by_column_and_row(shared_data, name):
    image = read_image(shared_data / "torchxrayvision" / "tests" / name)
    assert image.is_picture
    assert image.orientation == "column,row"  # not "RA": a film's rows run head to foot
    assert "orientation=column,row" in repr(image)


def test_a_volume_keeps_its_anatomical_codes(shared_data):
    image = read_image(shared_data / "dicom2nifti" / "generic" / "anatomical" / "001")
    assert not image.is_picture
    assert len(image.orientation) == 3 and set(image.orientation) <= set("RLAPSI")


def test_to_ras_leaves_a_picture_as_acquired():
    # Even an affine whose signs would flip an anatomical image: a picture has none.
    image = MedicalImage(np.arange(12.0).reshape(4, 3), np.diag([-0.5, -0.25, 1, 1]), 2,
                         {"space": "image"})
    result = to_ras(image)
    assert result.array is image.array
    np.testing.assert_array_equal(result.affine, image.affine)
    step = result.history[-1]
    assert step.params["from"] == step.params["to"] == "column,row"
    # The same grid in the patient frame is reoriented, as before.
    patient = to_ras(image.replace(meta={"space": "patient"}))
    np.testing.assert_array_equal(patient.array, image.array[::-1, ::-1])


# -- boxes and landmarks by row and column --------------------------------------------------


def _stack(path, cases: list[Case]):
    writer = create_store(path, "stack", n_cases=len(cases),
                          attrs={"labels": {"boxes": {"classes": ["Mass"]}}})
    for index, case in enumerate(cases):
        writer.write_case(index, case)
    writer.close(pd.DataFrame({"case_id": [case.case_id for case in cases]}))
    return open_store(path)


def _case(case_id: str, source: MedicalImage) -> Case:
    """300 columns x 200 rows, a box at columns 100..119, rows 50..59, a point at
    column 150, row 10; resized to 64 x 64 as a stack holds it."""
    image = resize_with_pad(to_ras(source), (64, 64), "nearest", pad_value=0)
    boxes = Boxes.from_xywh(source, ["Mass"], [[100, 50, 20, 10]])
    points = Landmarks.from_pixels(source, ["apex"], [[150, 10]])
    return Case(case_id, image, boxes=boxes.onto(image), landmarks=points.onto(image))


def test_picture_boxes_and_landmarks_are_placed_by_row_and_column(tmp_path):
    # 0.5 mm across a row, 0.25 mm down a column.
    store = _stack(tmp_path / "s.zarr", [_case("film", picture(300, 200, (0.5, 0.25)))])
    boxes, points = store.boxes(), store.landmarks()
    assert not set(WORLD) & set(boxes.columns)
    assert not {"R", "A", "S"} & set(points.columns)
    # Edges: rows 49.5 .. 59.5 x 0.25 mm, columns 99.5 .. 119.5 x 0.5 mm.
    np.testing.assert_allclose(boxes.loc[0, PICTURE_BOX], [12.375, 14.875, 49.75, 59.75])
    np.testing.assert_allclose(points.loc[0, ["row", "column"]], [2.5, 75.0])
    assert boxes.loc[0, ["source_i_min", "source_j_min"]].tolist() == [99.5, 49.5]


def test_a_table_of_pictures_and_slices_has_both_kinds_of_column(tmp_path):
    slice_2d = MedicalImage(np.zeros((300, 200), np.uint8), np.diag([0.5, 0.25, 1, 1]), 2)
    store = _stack(tmp_path / "s.zarr", [_case("film", picture(300, 200, (0.5, 0.25))),
                                         _case("slice", slice_2d)])
    boxes = store.boxes().set_index("case_id")
    assert boxes.loc["film", WORLD].isna().all() and boxes.loc["slice", PICTURE_BOX].isna().all()
    np.testing.assert_allclose(boxes.loc["slice", ["R_min", "R_max", "A_min", "A_max"]],
                               [49.75, 59.75, 12.375, 14.875])
    np.testing.assert_allclose(boxes.loc["film", PICTURE_BOX], [12.375, 14.875, 49.75, 59.75])


# -- pixel size: from the table, in mm where the source knows it ---------------------------


def test_table_spacing_scales_the_original_pixel_size_to_the_file():
    # ChestX-ray14: the PNG (128 x 64 here) is the 2500 x 2048 original resized.
    image = picture(128, 64)
    row = {"OriginalImagePixelSpacing[x": 0.143, "y]": 0.143,
           "OriginalImage[Width": 2500, "Height]": 2048}
    result = with_table_pixel_spacing(image, NIH_SPACING, row, "row")
    np.testing.assert_allclose(result.spacing, [0.143 * 2500 / 128, 0.143 * 2048 / 64])
    assert result.meta["pixel_spacing_known"] is True
    assert result.history[-1].name == "pixel_spacing_from_table"
    assert result.is_picture and result.orientation == "column,row"


def test_table_spacing_of_a_jpeg_decoded_reduced_keeps_its_block_centres():
    # A 256 x 128 file decoded at 1/8: pixel i is the block 8i .. 8i + 7, centred at 8i + 3.5.
    affine = np.diag([8.0, 8.0, 1.0, 1.0])
    affine[:2, 3] = 3.5
    image = MedicalImage(np.zeros((32, 16), np.uint8), affine, 2,
                         {"space": "image", "raster": {"reduced": 8, "full_size": [256, 128]}})
    spec = TablePixelSpacing(columns=("x", "y"))
    result = with_table_pixel_spacing(image, spec, {"x": 0.2, "y": 0.3}, "row")
    np.testing.assert_allclose(result.affine[:2, :2], np.diag([1.6, 2.4]))
    np.testing.assert_allclose(result.affine[:2, 3], [0.7, 1.05])


def test_table_spacing_says_unknown_and_never_overrides_a_header():
    empty = {"OriginalImagePixelSpacing[x": np.nan, "y]": "", "OriginalImage[Width": 2500,
             "Height]": 2048}
    image = picture(128, 64)
    assert with_table_pixel_spacing(image, NIH_SPACING, empty, "row") is image
    known = picture(128, 64, (0.2, 0.2), pixel_spacing_known=True)
    full = {**empty, "OriginalImagePixelSpacing[x": 0.143, "y]": 0.143}
    assert with_table_pixel_spacing(known, NIH_SPACING, full, "row") is known
    with pytest.raises(RecipeError, match="not two positive numbers"):
        with_table_pixel_spacing(image, NIH_SPACING, {**full, "y]": ""}, "row")
    with pytest.raises(RecipeError, match="not two positive numbers"):
        with_table_pixel_spacing(image, NIH_SPACING, {**full, "OriginalImage[Width": 0}, "row")


def test_a_cr_with_imager_pixel_spacing_only_is_in_mm(shared_data, tmp_path):
    """DX/CR headers: ImagerPixelSpacing (row spacing, column spacing in mm at the
    detector; PS3.3 C.8.11.4, 10.7.1.3) when there is no PixelSpacing."""
    dataset = pydicom.dcmread(shared_data / "torchxrayvision" / "tests" / SIIM_CR)
    del dataset.PixelSpacing
    dataset.ImagerPixelSpacing = [0.2, 0.1]  # rows 0.2 mm apart, columns 0.1 mm
    dataset.save_as(tmp_path / "cr.dcm")
    image = read_image(tmp_path / "cr.dcm")
    assert image.is_picture
    np.testing.assert_allclose(image.spacing, [0.1, 0.2])  # i runs along a row
    assert image.meta["geometry"]["pixel_spacing_source"] == "ImagerPixelSpacing"


# (header changes, expected (row, column) spacing in mm, where it is measured)
RADIOGRAPH_SPACINGS = {
    # PixelSpacing alone (the real SIIM CR): taken as it is; whether it was calibrated
    # cannot be told (PS3.3 10.7.1.1).
    "pixel spacing only": ({}, [0.168, 0.168], "unknown"),
    # Differs from the detector's: corrected or calibrated at the modality.
    "calibrated": ({"ImagerPixelSpacing": [0.2, 0.2], "PixelSpacing": [0.18, 0.18]},
                   [0.18, 0.18], "patient"),
    # The IHE Mammography Image profile / cornerstone3D / Starviewer: ImagerPixelSpacing
    # over the estimated magnification when nothing corrected it.
    "magnification": ({"PixelSpacing": None, "ImagerPixelSpacing": [0.1, 0.12],
                       "EstimatedRadiographicMagnificationFactor": 1.2},
                      [0.1 / 1.2, 0.1], "patient"),
    # A PixelSpacing equal to ImagerPixelSpacing was not corrected either (10.7.1.1).
    "equal, magnification": ({"PixelSpacing": [0.1, 0.1], "ImagerPixelSpacing": [0.1, 0.1],
                              "EstimatedRadiographicMagnificationFactor": 1.25},
                             [0.08, 0.08], "patient"),
    # ... unless the header says it was calibrated (GEOMETRY: by that very factor).
    "equal, calibrated": ({"PixelSpacing": [0.1, 0.1], "ImagerPixelSpacing": [0.1, 0.1],
                           "PixelSpacingCalibrationType": "GEOMETRY",
                           "PixelSpacingCalibrationDescription": "ERMF",
                           "EstimatedRadiographicMagnificationFactor": 1.25},
                          [0.1, 0.1], "patient"),
    # A factor below 1 is no SID/SOD: the size at the detector, said so.
    "bad factor": ({"PixelSpacing": None, "ImagerPixelSpacing": [0.1, 0.1],
                    "EstimatedRadiographicMagnificationFactor": 0.5}, [0.1, 0.1], "detector"),
    "scanned film": ({"PixelSpacing": None, "NominalScannedPixelSpacing": [0.05, 0.05]},
                     [0.05, 0.05], "film"),
}


@pytest.mark.parametrize("name", sorted(RADIOGRAPH_SPACINGS))
def test_radiograph_pixel_size_follows_ps3_3_10_7_1_1(shared_data, tmp_path, name):
    changes, spacing, where = RADIOGRAPH_SPACINGS[name]
    dataset = pydicom.dcmread(shared_data / "torchxrayvision" / "tests" / SIIM_CR)
    dataset.Modality = "MG" if "magnification" in name else "DX"
    for keyword, value in changes.items():
        if value is None:
            delattr(dataset, keyword)
        else:
            setattr(dataset, keyword, value)
    dataset.save_as(tmp_path / "film.dcm")
    image = read_image(tmp_path / "film.dcm")
    assert image.is_picture
    np.testing.assert_allclose(image.spacing, spacing[::-1])  # (column, row) step
    assert image.meta["geometry"]["pixel_spacing_at"] == where
    assert image.history[-1].params["pixel_spacing_at"] == where  # in the case's steps


def test_chestxray14_pictures_are_in_mm_with_row_column_boxes(shared_data, tmp_path):
    made = nih_chestxray14.make(tmp_path / "nih", shared_data)
    assert build_store(load_recipe("nih-chestxray14"), tmp_path / "nih", tmp_path / "s.zarr",
                       progress=False).ok
    store = open_store(tmp_path / "s.zarr")
    cases = store.cases.set_index("case_id")
    assert set(cases["spacing_unit"]) == {"mm"}  # no pixel next to mm in one stack
    assert set(cases["original_orientation"]) == {"column,row"}
    # The real NIH image: a PNG (512 x 512 in torchxrayvision's copy) of a 2682 x 2749
    # original at 0.143 mm (NIH's row), stacked at 512 x 512.
    real = cases.loc["00000001_000"]
    width, height = Image.open(shared_data / "torchxrayvision" / "tests" / "00000001_000.png").size
    png_mm = [0.143 * 2682 / width, 0.143 * 2749 / height]
    np.testing.assert_allclose(real["original_spacing"], png_mm, rtol=1e-5)
    np.testing.assert_allclose(real["harmonized_spacing"],
                               np.multiply(png_mm, [width / 512, height / 512]), rtol=1e-5)
    assert "pixel_spacing_from_table" in [step["name"] for step in real["steps"]]
    boxes = store.boxes().set_index("case_id")
    assert not set(WORLD) & set(boxes.columns)
    for name, (_, x, y, w, h) in made["boxes"].items():
        box = boxes.loc[name.removesuffix(".png")]
        size = nih_chestxray14.SIZE  # generated 128 x 128 of a 2500 x 2048 original
        along_row, down_column = 0.143 * 2500 / size, 0.143 * 2048 / size
        # Edges from the centre of pixel 0: x - 0.5 .. x + w - 0.5 pixels.
        np.testing.assert_allclose(
            box[PICTURE_BOX].astype(float),
            [(y - 0.5) * down_column, (y + h - 0.5) * down_column,
             (x - 0.5) * along_row, (x + w - 0.5) * along_row], rtol=1e-6)


def test_a_chestxray14_row_without_pixel_size_stays_in_pixels(shared_data, tmp_path):
    nih_chestxray14.make(tmp_path / "nih", shared_data)
    table = tmp_path / "nih" / "Data_Entry_2017_v2020.csv"
    lines = table.read_text().splitlines()
    # The first row's last four values (and the trailing empty column) emptied.
    lines[1] = ",".join(lines[1].split(",")[:-5] + ["", "", "", "", ""])
    table.write_text("\n".join(lines) + "\n")
    recipe = load_recipe("nih-chestxray14").with_overrides({"harmonize": {"shape": [32, 32]}})
    assert build_store(recipe, tmp_path / "nih", tmp_path / "s.zarr", progress=False).ok
    cases = open_store(tmp_path / "s.zarr").cases.set_index("case_id")
    first = lines[1].split(",")[0].removesuffix(".png")
    assert cases.loc[first, "spacing_unit"] == "pixel"
    assert (cases.drop(index=first)["spacing_unit"] == "mm").all()


def test_a_table_without_pixel_size_columns_says_so_and_keeps_pixels(tmp_path):
    nih_chestxray14.make(tmp_path / "nih")
    table = tmp_path / "nih" / "Data_Entry_2017_v2020.csv"
    text = table.read_text()
    table.write_text(text.replace("OriginalImagePixelSpacing[x,y]", "Spacing[x,y]", 1))
    recipe = load_recipe("nih-chestxray14").with_overrides({"harmonize": {"shape": [32, 32]}})
    report = build_store(recipe, tmp_path / "nih", tmp_path / "s.zarr", progress=False)
    assert report.ok
    assert any("'OriginalImagePixelSpacing[x'" in note and "pixel sizes unknown" in note
               for note in report.notes), report.notes
    assert set(open_store(tmp_path / "s.zarr").cases["spacing_unit"]) == {"pixel"}


def test_a_jpeg_decoded_reduced_keeps_its_table_pixel_size_in_the_case_table(shared_data,
                                                                              tmp_path):
    """A real RGB JPEG X-ray shrunk into a stack is decoded at 1/4 (io/raster.py); the
    case table still describes its file -- 1024 x 768 pixels of 0.2 x 0.1 mm, as the
    table row says -- not one pixel a unit while spacing_unit says mm."""
    source = tmp_path / "source"
    (source / "images").mkdir(parents=True)
    film = Image.open(shared_data / "torchxrayvision" / "tests" / "covid-19-pneumonia-58-prior.jpg")
    film.convert("RGB").crop((0, 0, 1024, 768)).save(source / "images" / "film.jpg", quality=95)
    (source / "Data_Entry_2017_v2020.csv").write_text(
        f"{chest_films.HEADER}\nfilm.jpg,Cardiomegaly,0,7,60,F,PA,1024,768,0.2,0.1,\n")
    (source / "test_list.txt").write_text("")
    (source / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
    recipe = load_recipe("nih-chestxray14").with_overrides(
        {**chest_films.OVERRIDES, "harmonize": {"shape": [128, 128], "channels": "keep"}})
    assert build_store(recipe, source, tmp_path / "s.zarr", progress=False).ok
    row = open_store(tmp_path / "s.zarr").cases.set_index("case_id").loc["film"]
    assert row["steps"][0]["params"]["reduced"] == 4  # decoded at 1/4 of 1024 x 768
    assert row["spacing_unit"] == "mm"
    assert row["original_shape"] == [1024, 768, 3]
    np.testing.assert_allclose(row["original_spacing"], [0.2, 0.1])
    np.testing.assert_allclose(row["original_affine"], np.diag([0.2, 0.1, 1.0, 1.0]))
    # Harmonized: 1024 columns of 0.2 mm into 128 (aspect kept): 1.6 mm per pixel.
    np.testing.assert_allclose(row["harmonized_spacing"], [1.6, 0.8])


def test_a_picture_of_unknown_pixel_size_is_not_resampled_to_mm(shared_data, tmp_path):
    """harmonize.spacing is in mm: a row without pixel size would be resampled as if its
    pixels were 1 mm, and stacked at another scale than its neighbours (2.0 'pixel'
    next to 5.56 mm here). It fails, naming the fix; the others are built in mm."""
    nih_chestxray14.make(tmp_path / "nih", shared_data)
    table = tmp_path / "nih" / "Data_Entry_2017_v2020.csv"
    lines = table.read_text().splitlines()
    lines[1] = ",".join(lines[1].split(",")[:-5] + ["", "", "", "", ""])
    table.write_text("\n".join(lines) + "\n")
    first = lines[1].split(",")[0].removesuffix(".png")
    recipe = load_recipe("nih-chestxray14").with_overrides(
        {"harmonize": {"spacing": [4.0, 4.0], "shape": [64, 64]}})
    report = build_store(recipe, tmp_path / "nih", tmp_path / "s.zarr", progress=False)
    assert set(report.failed) == {first}
    assert "pixel size is unknown" in report.failed[first]
    assert "source.pixel_spacing" in report.failed[first]
    assert set(open_store(tmp_path / "s.zarr").cases["spacing_unit"]) == {"mm"}
