"""Issue 14: nothing is read from outside the source folder. Every path that comes from
a table cell, a header field, a dataset file or a recipe setting resolves inside the
source folder, or is refused naming the row, file or setting; symbolic links inside the
tree are followed (recipe/paths.py). Each test builds a real hostile tree: ``src/`` and,
beside it, ``outside/`` holding real readable images."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medimg_build.cli import main
from medimg_build.errors import ImageReadError, RecipeError
from medimg_build.io import read_image
from medimg_build.io.dicom_discovery import discover_series
from medimg_build.labels.splits import plan_splits
from medimg_build.recipe.annotation_rows import annotation_rows
from medimg_build.recipe.model import load_recipe
from medimg_build.recipe.sections import Labels, Split, parse
from medimg_build.recipe.sources import list_sources

VOLUME = np.arange(4 * 3 * 2, dtype=np.int16).reshape(4, 3, 2)


def _nifti(path: Path, data: np.ndarray = VOLUME) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


@pytest.fixture
def tree(tmp_path):
    """``src/images/a.nii.gz`` and ``src/labels/a.nii.gz``; ``outside/`` beside ``src``
    with an image, a mask, a raw data file and a CSV table of its own."""
    source, outside = tmp_path / "src", tmp_path / "outside"
    _nifti(source / "images" / "a.nii.gz")
    _nifti(source / "labels" / "a.nii.gz", (VOLUME > 10).astype(np.uint8))
    _nifti(outside / "x.nii.gz")
    _nifti(outside / "mask.nii.gz", np.ones_like(VOLUME, dtype=np.uint8))
    (outside / "raw.bin").write_bytes(VOLUME.tobytes(order="F"))
    (outside / "table.csv").write_text("image,label\nx.nii.gz,1\n")
    return source, outside


def _outside_cases(listing, outside: Path) -> list[Path]:
    """Every file a listing would read that lies in ``outside`` (none is allowed)."""
    files = [p for case in listing.cases
             for p in [case.image_path, case.mask_path, *case.channels] if p is not None]
    return [p for p in files if Path(p).resolve().is_relative_to(outside.resolve())]


# -- the one rule ---------------------------------------------------------------------


@pytest.mark.parametrize("text, problem", [
    ("../outside/x.nii.gz", "'..'"), ("a/../../x", "'..'"), ("a\\..\\x", "'..'"),
    ("/etc/passwd", "absolute"), ("~/x", "absolute"), ("C:\\x", "absolute"),
    ("\\\\server\\share", "absolute"), ("a\0b", "NUL"),
    ("labels/a.nii.gz", None), ("./a..b/..c", None), ("", None)])
def test_the_rule_is_lexical(text, problem):
    from medimg_build.recipe.paths import outside_problem

    found = outside_problem(text)
    assert (found is None) if problem is None else (problem in found)


# -- 1. table cells -------------------------------------------------------------------


def _table_recipe(**source):
    return load_recipe("abide").with_overrides({"source": {
        "table": "cases.csv", "image_column": "image", "image_suffix": None,
        "images": "images/*.nii.gz", "patient_column": None, "columns": None, **source}})


@pytest.mark.parametrize("cell", ["../outside/mask.nii.gz", "OUTSIDE_ABSOLUTE",
                                  "labels/../../outside/mask.nii.gz"])
def test_a_mask_cell_outside_the_source_refuses_its_row(tree, cell):
    source, outside = tree
    cell = str(outside / "mask.nii.gz") if cell == "OUTSIDE_ABSOLUTE" else cell
    _nifti(source / "images" / "b.nii.gz")
    (source / "cases.csv").write_text(f"image,mask\na.nii.gz,{cell}\nb.nii.gz,labels/a.nii.gz\n")
    listing = list_sources(_table_recipe(mask_column="mask"), source)
    assert _outside_cases(listing, outside) == []
    assert [case.case_id for case in listing.cases] == ["b"]  # the good row still builds
    reason = listing.skipped["cases.csv: a.nii.gz"]
    assert "mask" in reason and ("'..'" in reason or "absolute path" in reason)


def test_image_cells_outside_are_refused_by_the_same_rule(tree):
    source, outside = tree
    (source / "cases.csv").write_text("image\na.nii.gz\n../outside/x.nii.gz\n")
    listing = list_sources(_table_recipe(), source)
    assert "leads outside the source folder" in listing.skipped["cases.csv: ../outside/x.nii.gz"]
    assert _outside_cases(listing, outside) == []


def test_a_dataset_json_entry_outside_its_task_is_not_read(tree):
    """Decathlon's dataset.json lists paths: they are data, like a table's cells."""
    source, outside = tree
    task = source / "Task09_Spleen"
    _nifti(task / "imagesTr" / "s_1.nii.gz")
    _nifti(task / "labelsTr" / "s_1.nii.gz", (VOLUME > 3).astype(np.uint8))
    (task / "dataset.json").write_text(json.dumps({
        "name": "Spleen", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "spleen"},
        "training": [{"image": "./imagesTr/s_1.nii.gz", "label": "./labelsTr/s_1.nii.gz"},
                     {"image": "../../outside/x.nii.gz", "label": "./labelsTr/s_1.nii.gz"},
                     {"image": "./imagesTr/s_1.nii.gz", "label": str(outside / "mask.nii.gz")}],
        "test": ["../../outside/x.nii.gz"]}))
    listing = list_sources(load_recipe("msd"), task)
    assert [case.case_id for case in listing.cases] == ["s_1"]
    assert _outside_cases(listing, outside) == []
    assert "'..'" in listing.skipped["dataset.json training: ../../outside/x.nii.gz"]
    assert "absolute" in listing.skipped[f"dataset.json training: {outside / 'mask.nii.gz'}"]
    assert "'..'" in listing.skipped["dataset.json test: ../../outside/x.nii.gz"]


def test_a_deeplesion_file_name_cannot_leave_its_slice_folder(tree):
    source, outside = tree
    columns = ["File_name", "Patient_index", "Study_index", "Series_ID", "Key_slice_index",
               "Measurement_coordinates", "Bounding_boxes", "Lesion_diameters_Pixel_",
               "Normalized_lesion_location", "Coarse_lesion_type", "Possibly_noisy",
               "Slice_range", "Spacing_mm_px_", "Image_size", "DICOM_windows",
               "Patient_gender", "Patient_age", "Train_Val_Test"]
    slices = np.full((8, 8), 32768, np.uint16)
    for folder in (source / "Images_png" / "000001_01_01", outside / "s"):
        folder.mkdir(parents=True)
        Image.fromarray(slices).save(folder / "001.png")

    def row(name):
        values = {"File_name": name, "Patient_index": "1", "Key_slice_index": "1",
                  "Bounding_boxes": "1, 1, 4, 4", "Coarse_lesion_type": "-1",
                  "Slice_range": "1, 1", "Spacing_mm_px_": "0.8, 0.8, 5"}
        return ",".join(f'"{values.get(c, "0")}"' for c in columns)

    (source / "DL_info.csv").write_text("\n".join(
        [",".join(columns), row("000001_01_01_001.png"), row("../../outside/s_001.png")]))
    recipe = load_recipe("deeplesion")
    listing = list_sources(recipe, source)
    assert [case.case_id for case in listing.cases] == ["000001_01_01_001"]
    assert not any(outside.name in str(c.image_path) for c in listing.cases)
    assert "'..'" in listing.skipped["DL_info.csv: ../../outside/s_001.png"]


# -- 2. MetaImage and NRRD headers ------------------------------------------------------


def _mhd(path: Path, data_file: str, extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 3 2\n"
                    "ElementType = MET_SHORT\nElementSpacing = 1 1 1\n"
                    f"ElementByteOrderMSB = False\nElementDataFile = {data_file}\n{extra}")
    return path


@pytest.mark.parametrize("suffix", [".mhd", ".mha"])
@pytest.mark.parametrize("data_file", ["../../outside/raw.bin", "OUTSIDE_ABSOLUTE",
                                       "~/raw.bin"])
def test_a_metaimage_data_file_outside_its_folder_is_refused(tree, suffix, data_file):
    source, outside = tree
    data_file = str(outside / "raw.bin") if data_file == "OUTSIDE_ABSOLUTE" else data_file
    header = _mhd(source / "images" / f"evil{suffix}", data_file)
    with pytest.raises(ImageReadError, match=r"evil\.mh[ad]: ElementDataFile .*"
                                             r"(leads outside|absolute path)"):
        read_image(header)


def test_the_list_and_pattern_forms_are_checked_name_by_name(tree):
    source, outside = tree
    for n in (1, 2):
        (outside / f"slice{n}.raw").write_bytes(VOLUME[..., n - 1].tobytes(order="F"))
        (source / "images" / f"slice{n}.raw").write_bytes(VOLUME[..., n - 1].tobytes(order="F"))
    listed = _mhd(source / "images" / "list.mhd", "LIST 2D", "slice1.raw\n../../outside/slice2.raw\n")
    with pytest.raises(ImageReadError, match=r"list\.mhd: ElementDataFile '\.\./\.\./outside"):
        read_image(listed)
    patterned = _mhd(source / "images" / "pattern.mhd", "../../outside/slice%d.raw 1 2 1")
    with pytest.raises(ImageReadError, match="pattern.mhd: ElementDataFile '../../outside/slice1"):
        read_image(patterned)
    # '%.0d' of 0 is empty: the name is checked after it is filled, not as written.
    sneaky = _mhd(source / "images" / "sneaky.mhd", "..%.0d/outside/raw.bin 0 0 1")
    with pytest.raises(ImageReadError, match=r"sneaky.mhd: ElementDataFile pattern .* leads "
                                             r"outside the source folder \('\.\.'\) when"):
        read_image(sneaky)
    unsafe = _mhd(source / "images" / "unsafe.mhd", "slice%s.raw 1 2 1")
    with pytest.raises(ImageReadError, match="not a name with one integer conversion"):
        read_image(unsafe)


def test_source_files_list_the_data_files_really_read(tree):
    source, _ = tree
    folder = source / "images"
    (folder / "data").mkdir()
    (folder / "data" / "volume.raw").write_bytes(VOLUME.tobytes(order="F"))
    image = read_image(_mhd(folder / "one.mhd", "data/volume.raw"))
    np.testing.assert_array_equal(image.array, VOLUME)
    assert image.meta["source_files"] == [str((folder / "data" / "volume.raw").resolve()),
                                          str((folder / "one.mhd").resolve())]
    for n in (1, 2):
        (folder / "data" / f"s{n}.raw").write_bytes(VOLUME[..., n - 1].tobytes(order="F"))
    listed = read_image(_mhd(folder / "list.mhd", "LIST", "data/s1.raw\ndata/s2.raw\n"))
    np.testing.assert_array_equal(listed.array, VOLUME)
    assert [Path(f).name for f in listed.meta["source_files"]] == ["s1.raw", "s2.raw", "list.mhd"]
    patterned = read_image(_mhd(folder / "pattern.mhd", "data/s%d.raw 1 2 1"))
    assert [Path(f).name for f in patterned.meta["source_files"]] == \
        ["s1.raw", "s2.raw", "pattern.mhd"]


def test_a_nrrd_data_file_outside_its_folder_is_refused(tree):
    source, outside = tree
    header = source / "images" / "evil.nhdr"
    header.write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 4 3 2\n"
                      "encoding: raw\nendian: little\ndata file: ../../outside/raw.bin\n")
    with pytest.raises(ImageReadError, match=r"evil\.nhdr: data file '\.\./\.\./outside"):
        read_image(header)
    header.write_text(header.read_text().replace("../../outside/raw.bin", "raw.bin"))
    (source / "images" / "raw.bin").write_bytes(VOLUME.tobytes(order="F"))
    assert [Path(f).name for f in read_image(header).meta["source_files"]] == \
        ["evil.nhdr", "raw.bin"]


def test_a_build_reads_no_outside_data_through_a_header(tree, tmp_path, capsys):
    source, _ = tree
    (source / "labels" / "a.nii.gz").unlink()
    _mhd(source / "images" / "evil.mhd", "../../outside/raw.bin")
    out = tmp_path / "store.zarr"
    assert main(["build", "volume-folder", "--source", str(source), "--out", str(out),
                 "--set", "source.images=images/*.*"]) == 1  # a failed case
    printed = capsys.readouterr().out
    assert "1 case(s) built, 1 failed" in printed
    assert "evil.mhd: ElementDataFile '../../outside/raw.bin' leads outside" in printed


# -- 3. recipe settings -----------------------------------------------------------------


RECIPE_SETTINGS = [
    ("volume-folder", {"source": {"images": "../outside/*"}}, "source.images"),
    ("volume-folder", {"source": {"images": "OUTSIDE/*"}}, "source.images"),
    ("volume-folder", {"source": {"masks": "OUTSIDE/mask.nii.gz"}}, "source.masks"),
    ("volume-folder", {"source": {"masks": {"1": "../outside/mask.nii.gz"}}}, "source.masks.1"),
    ("volume-folder", {"source": {"channels": ["../outside/x.nii.gz"],
                                  "channel_names": ["t1"]}}, "source.channels"),
    ("abide", {"source": {"table": "../outside/table.csv"}}, "source.table"),
    ("abide", {"source": {"table": "cases.csv", "images": "images/*.nii.gz", "columns": None,
                          "image_suffix": None, "masks": "../outside/mask.nii.gz"}},
     "source.masks"),
    ("dicom-tree", {"source": {"root": "../outside"}}, "source.root"),
    ("class-folders", {"source": {"images": "../outside/*.nii.gz"}}, "source.images"),
]


@pytest.mark.parametrize("name, overrides, setting", RECIPE_SETTINGS)
def test_a_recipe_path_outside_the_source_is_refused_naming_the_setting(
        tree, name, overrides, setting):
    source, outside = tree
    (source / "cases.csv").write_text("FILE_ID,SUB_ID\na.nii.gz,1\n")
    text = json.dumps(overrides).replace("OUTSIDE", str(outside))
    recipe = load_recipe(name).with_overrides(json.loads(text))
    with pytest.raises(RecipeError, match=rf"{setting} '.*' (leads outside|is an absolute)"):
        list_sources(recipe, source)


PARSER_OPTIONS = [
    ("table_join", {"table": "../outside/table.csv", "key_column": "image",
                    "images": "images/*", "path_pattern": "(?P<key>.*)"}, "options.table"),
    ("table_join", {"table": "cases.csv", "key_column": "image",
                    "images": "../outside/*", "path_pattern": "(?P<key>.*)"}, "options.images"),
    ("table_join", {"table": "cases.csv", "key_column": "image", "images": "images/*",
                    "path_pattern": r"images/(?P<key>\w+)\.nii\.gz",
                    "masks": "../outside/mask.nii.gz"}, "options.masks"),
    ("deeplesion", {"table": "../outside/table.csv"}, "options.table"),
    ("cbis", {"tables": ["../outside/table.csv"]}, "options.tables"),
    ("scr", {"images": "../outside/*.IMG"}, "options.images"),
    ("lidc", {"xml": "../outside/*.xml"}, "options.xml"),
    ("i2cvb", {"patients": "../outside"}, "options.patients"),
    ("i2cvb", {"image": "../../outside"}, "options.image"),
    ("i2cvb", {"images": ["T2W", "../ADC"]}, "options.images"),
    ("i2cvb", {"mask": "GT_inv/../../x"}, "options.mask"),
]


@pytest.mark.parametrize("parser, options, setting", PARSER_OPTIONS)
def test_a_parser_option_outside_the_source_is_refused_naming_it(tree, parser, options, setting):
    source, _ = tree
    (source / "cases.csv").write_text("image\na\n")
    recipe = load_recipe("volume-folder").with_overrides(
        {"source": {"kind": "parser", "parser": parser, "options": options, "images": None,
                    "masks": None, "case_id": None, "patient_id": None}})
    with pytest.raises(RecipeError, match=rf"source\.{setting} '.*' leads outside"):
        list_sources(recipe, source)


def test_box_tables_and_split_lists_outside_are_refused(tree):
    source, outside = tree
    boxes = {"boxes": {"table": "../outside/table.csv", "image_column": "image",
                       "label_column": "label", "columns": ["label"], "format": "xywh"}}
    with pytest.raises(RecipeError, match=r"labels\.boxes\.table '\.\./outside"):
        annotation_rows(parse(Labels, boxes), source)
    (outside / "test_list.txt").write_text("a.nii.gz\n")
    with pytest.raises(RecipeError, match=r"split\.lists\.test '\.\./outside/test_list"):
        plan_splits(parse(Split, {"lists": {"test": "../outside/test_list.txt"}}),
                    [("a", "p1", "a.nii.gz", None)], source)


def test_set_source_images_outside_stops_the_build_before_reading(tree, tmp_path, capsys):
    """The issue's command: the outside image used to be built into the store."""
    source, _ = tree
    out = tmp_path / "store.zarr"
    code = main(["build", "volume-folder", "--source", str(source), "--out", str(out),
                 "--set", "source.images=../outside/*"])
    assert code == 2
    err = capsys.readouterr().err
    assert "source.images '../outside/*' leads outside the source folder" in err
    assert not out.exists()


# -- 4. symbolic links inside the tree ----------------------------------------------------


def test_links_inside_the_tree_are_followed_wherever_they_point(tree):
    """Data farms link folders in from other disks: that is the tree's owner's choice."""
    source, outside = tree
    (source / "farm").symlink_to(outside, target_is_directory=True)
    (source / "labels" / "x.nii.gz").symlink_to(outside / "mask.nii.gz")
    recipe = load_recipe("volume-folder").with_overrides({"source": {"images": "farm/x.nii.gz"}})
    [case] = list_sources(recipe, source).cases
    assert case.image_path == source / "farm" / "x.nii.gz"
    assert case.mask_path == source / "labels" / "x.nii.gz"
    np.testing.assert_array_equal(read_image(case.image_path).array, VOLUME)


def test_a_text_path_through_a_link_may_not_climb_out(tree):
    """'farm/..' is the outside folder's parent for the system, ``src`` for a normalizing
    reader: '..' is refused outright, whatever precedes it."""
    source, outside = tree
    (source / "farm").symlink_to(outside, target_is_directory=True)
    _nifti(source / "images" / "b.nii.gz")
    (source / "cases.csv").write_text(
        "image,mask\na.nii.gz,farm/../outside/mask.nii.gz\nb.nii.gz,\n")
    listing = list_sources(_table_recipe(mask_column="mask"), source)
    assert [(c.case_id, c.mask_path) for c in listing.cases] == [("b", None)]
    assert "'..'" in listing.skipped["cases.csv: a.nii.gz"]


def test_link_loops_end_in_globs_and_folder_walks(tree, shared_data):
    source, _ = tree
    (source / "images" / "loop").symlink_to(source, target_is_directory=True)
    recipe = load_recipe("volume-folder").with_overrides(
        {"source": {"images": "images/**/*.nii.gz"}})
    found = list_sources(recipe, source)  # '**' does not enter linked folders: it ends
    assert [c.image_path.relative_to(source).as_posix() for c in found.cases] == \
        ["images/a.nii.gz"]
    dicom = source / "dicom"
    dicom.mkdir()
    (dicom / "series").symlink_to(shared_data / "dicom2nifti" / "anatomical" / "001")
    (dicom / "again").symlink_to(dicom, target_is_directory=True)  # a loop
    assert [len(ref.files) for ref in discover_series(dicom).series] == [4]


# -- 5. other files that name files ------------------------------------------------------


def test_an_ome_tiff_naming_a_file_outside_is_read_from_its_own_pages_only(tree):
    """OME-XML's <UUID FileName=...> lists the files of a multi-file series: tifffile
    opens them wherever they point. Only the file's own pages are read."""
    import tifffile

    source, outside = tree
    tifffile.imwrite(outside / "x.ome.tif", np.full((4, 5), 7, np.uint16), metadata=None)
    planes = "".join(
        f'<TiffData FirstZ="{z}" IFD="0" PlaneCount="1"><UUID FileName="{name}">'
        f"urn:uuid:0000000{z}-0000-0000-0000-000000000000</UUID></TiffData>"
        for z, name in enumerate(["evil.ome.tif", "../../outside/x.ome.tif"]))
    ome = ('<?xml version="1.0" encoding="UTF-8"?><OME xmlns="http://www.openmicroscopy.org/'
           'Schemas/OME/2016-06" UUID="urn:uuid:00000000-0000-0000-0000-000000000000">'
           '<Image ID="Image:0"><Pixels ID="Pixels:0" DimensionOrder="XYZCT" Type="uint16" '
           'SizeX="5" SizeY="4" SizeZ="2" SizeC="1" SizeT="1"><Channel ID="Channel:0:0" '
           f'SamplesPerPixel="1"/>{planes}</Pixels></Image></OME>')
    evil = source / "images" / "evil.ome.tif"
    tifffile.imwrite(evil, np.zeros((4, 5), np.uint16), description=ome, metadata=None)
    image = read_image(evil)
    assert image.array.max() == 0  # the outside file's 7s are not in it
    assert image.meta["source_files"] == [str(evil.resolve())]


def test_every_line_of_a_list_is_checked_and_a_list_past_the_limit_refused(tree):
    """MetaIO reads as many LIST lines as its axes hold slices: all lines are checked,
    so that a miscounted header cannot slip a name past the check."""
    from medimg_build.io.detached import HEADER_BYTES

    source, _ = tree
    folder = source / "images"
    extra = _mhd(folder / "extra.mhd", "LIST", "s1.raw\ns2.raw\n../../outside/raw.bin\n")
    with pytest.raises(ImageReadError, match="extra.mhd: ElementDataFile '../../outside"):
        read_image(extra)
    long = _mhd(folder / "long.mhd", "LIST", "s.raw\n" * (HEADER_BYTES // 6 + 1))
    with pytest.raises(ImageReadError, match="long.mhd: lists data files past its first"):
        read_image(long)
