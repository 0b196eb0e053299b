"""The QC report: a page Chromium renders without broken images, thumbnails whose
anatomical sides follow the geometry, and a number of case reads that does not grow
with the store."""

from __future__ import annotations

import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from medimg_build import open_store
from medimg_build.cli import main
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.report import write_report, write_store_report
from medimg_build.report.figures import geometry_columns, original_intensities
from medimg_build.report.reading import planes_of, read_case
from medimg_build.report.sampling import sample
from medimg_build.report.views import AXIAL, CORONAL, SAGITTAL, plan_plane
from medimg_build.report.views import view_of_2d_grid
from medimg_build.report.write import thumbnail_name

from fixtures import nih_chestxray14, volume_folder
from required import missing

CHROMIUM = Path("/usr/bin/chromium")

# The asymmetric volume, stored "PIL": index i runs towards posterior (1.0 mm), j
# towards inferior (1.2 mm), k towards the patient's left (0.8 mm). Nothing about it
# is RAS, so only a display that goes through the affine puts the marker right.
PIL_AFFINE = np.array([[0.0, 0.0, -0.8, 20.0], [-1.0, 0.0, 0.0, 30.0],
                       [0.0, -1.2, 0.0, 40.0], [0.0, 0.0, 0.0, 1.0]])
PIL_SHAPE = (40, 30, 50)


def marker_volume() -> tuple[np.ndarray, np.ndarray]:
    """HU image and mask with a bright block in the patient's left, anterior, superior
    part; the block reaches past the middle of each axis, so every mid-plane cuts it."""
    image = np.full(PIL_SHAPE, -800, np.int16)
    mask = np.zeros(PIL_SHAPE, np.uint8)
    anterior = slice(0, int(PIL_SHAPE[0] * 0.6))  # i runs towards posterior
    superior = slice(0, int(PIL_SHAPE[1] * 0.6))  # j runs towards inferior
    left = slice(int(PIL_SHAPE[2] * 0.4), None)  # k runs towards the left
    image[anterior, superior, left] = 1000
    mask[anterior, superior, left] = 1
    return image, mask


@pytest.fixture(scope="module")
def marker_store(tmp_path_factory) -> Path:
    source = tmp_path_factory.mktemp("marker")
    (source / "images").mkdir()
    (source / "labels").mkdir()
    image, mask = marker_volume()
    nib.save(nib.Nifti1Image(image, PIL_AFFINE), source / "images" / "marker.nii.gz")
    nib.save(nib.Nifti1Image(mask, PIL_AFFINE), source / "labels" / "marker.nii.gz")
    out = source.parent / f"{source.name}.zarr"
    assert build_store(marker_recipe(), source, out, progress=False).ok
    return out


def marker_recipe(**overrides):
    return load_recipe("volume-folder").with_overrides(
        {"labels": {"segmentation": {"classes": {"0": "background", "1": "marker"}}},
         **overrides})


@pytest.fixture(scope="module")
def volumes_store(tmp_path_factory, shared_data) -> Path:
    root = tmp_path_factory.mktemp("volumes")
    volume_folder.make(root / "src", shared_data)
    seg = np.asanyarray(nib.load(shared_data / "totalsegmentator" /
                                 "example_seg_dicom.nii.gz").dataobj)
    classes = {str(int(v)): f"structure_{int(v)}" for v in np.unique(seg)}
    recipe = load_recipe("volume-folder").with_overrides(
        {"labels": {"segmentation": {"classes": classes}}})
    assert build_store(recipe, root / "src", root / "ct.zarr", progress=False).ok
    return root / "ct.zarr"


@pytest.fixture(scope="module")
def stack_store(tmp_path_factory, shared_data) -> Path:
    root = tmp_path_factory.mktemp("stack")
    nih_chestxray14.make(root / "nih", shared_data)
    assert build_store(load_recipe("nih-chestxray14"), root / "nih", root / "nih.zarr",
                       progress=False).ok
    return root / "nih.zarr"


# -- geometry: the marker's side ---------------------------------------------------------
def bright_centroid(plane: np.ndarray, threshold: float) -> tuple[float, float]:
    """Row and column of the centre of the bright pixels, as fractions of the plane."""
    rows, cols = np.nonzero(plane > threshold)
    assert len(rows), "the marker is not in this plane"
    return rows.mean() / plane.shape[0], cols.mean() / plane.shape[1]


# view -> (marker in the top half, marker in the right half)
EXPECTED_SIDES = {"axial": (True, True),      # anterior up, patient's left on the right
                  "coronal": (True, True),    # superior up, patient's left on the right
                  "sagittal": (True, False)}  # superior up, anterior on the left


def assert_marker_sides(view: str, row: float, col: float) -> None:
    top, right = EXPECTED_SIDES[view]
    assert (row < 0.5) == top, f"{view}: marker at row fraction {row:.2f}"
    assert (col > 0.5) == right, f"{view}: marker at column fraction {col:.2f}"


def test_planes_of_a_pil_grid_follow_its_affine():
    image, _ = marker_volume()
    for view in (AXIAL, CORONAL, SAGITTAL):
        plane = plan_plane(PIL_AFFINE, PIL_SHAPE, view).extract(image)
        assert_marker_sides(view.name, *bright_centroid(plane, 0))


def test_a_radiograph_with_world_geometry_is_a_coronal_view():
    # As DICOM lays out a PA chest radiograph: rows run towards the patient's left,
    # columns towards the feet. Shown as read, that is already the radiological view.
    pa = np.array([[-0.2, 0, 0, 0], [0, 0, 0, 0], [0, -0.2, 0, 0], [0, 0, 0, 1]], float)
    picture = np.arange(6 * 4).reshape(6, 4)  # (i, j): i across, j down as read
    assert view_of_2d_grid(pa) is CORONAL
    np.testing.assert_array_equal(plan_plane(pa, (6, 4), CORONAL).extract(picture), picture.T)
    ap = pa.copy()
    ap[0, 0] = 0.2  # an AP image (rows towards the patient's right) is shown mirrored
    np.testing.assert_array_equal(plan_plane(ap, (6, 4), CORONAL).extract(picture),
                                  picture.T[:, ::-1])


def test_stored_marker_planes_show_the_patients_left_on_the_right(marker_store):
    store = open_store(marker_store)
    case = read_case(store, "marker", boxes=_empty(), landmarks=_empty(), picture=False)
    planes = planes_of(case)
    assert [p.view.name for p in planes] == ["axial", "coronal", "sagittal"]
    for plane in planes:
        assert_marker_sides(plane.view.name, *bright_centroid(plane.extract(case.image.array), 0))
        assert_marker_sides(plane.view.name, *bright_centroid(plane.extract(case.mask.array), 0))


def test_rendered_thumbnails_show_the_marker_on_the_stated_side(marker_store, tmp_path):
    index = write_report(marker_store, tmp_path / "report")
    html = index.read_text()
    assert "patient&#39;s left on the image&#39;s right" in html  # the convention is stated
    for view in EXPECTED_SIDES:
        thumbnail = tmp_path / "report" / "images" / thumbnail_name(0, "marker", view)
        rgb = np.asarray(Image.open(thumbnail).convert("RGB"), dtype=np.int16)
        # The marker is white (1000 HU) under the mask's translucent red: pink, unlike
        # the grey background, white pixels and the yellow direction letters.
        red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        marker = (red > 200) & (green < 200) & (blue > 120) & (blue < 220)
        assert_marker_sides(view, *bright_centroid(marker.astype(float), 0.5))


def test_original_spacing_is_listed_per_anatomical_axis(marker_store):
    cases = open_store(marker_store).cases
    columns = geometry_columns(cases, 3)
    np.testing.assert_allclose(columns["original_spacing"][0], [0.8, 1.0, 1.2], atol=1e-5)
    np.testing.assert_allclose(columns["original_shape"][0], [50, 40, 30])
    np.testing.assert_allclose(columns["harmonized_spacing"][0], [1.5, 1.5, 1.5])


def test_intensities_before_normalization_are_in_source_units(marker_store, tmp_path):
    # The marker volume read as MR: z-scored when stored, -800 and 1000 once undone.
    source = marker_store.parent / marker_store.name.removesuffix(".zarr")
    recipe = marker_recipe(modality="MR",
                           harmonize={"intensity": {"preset": "mr", "window": None}})
    assert build_store(recipe, source, tmp_path / "mr.zarr", progress=False).ok
    store = open_store(tmp_path / "mr.zarr")
    stored = store.read_image("marker").array.ravel()
    original = original_intensities(stored, store.cases["intensity"].iloc[0])
    assert abs(float(stored.mean())) < 1e-3  # z-scored
    np.testing.assert_allclose([original.min(), original.max()], [-800, 1000], atol=0.05)


def _empty() -> pd.DataFrame:
    return pd.DataFrame()


# -- the page in a browser ------------------------------------------------------------
class LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.links += [value for name, value in attrs if name in ("src", "href") and value]


def broken_links(index: Path) -> list[str]:
    """Links of the page that leave it (a URL with a scheme) or name a missing file."""
    collector = LinkCollector()
    collector.feed(index.read_text())
    assert collector.links, "the page links nothing"
    broken = []
    for link in collector.links:
        if link.startswith("#"):
            continue
        parsed = urlparse(link)
        if parsed.scheme or parsed.netloc or not (index.parent / unquote(parsed.path)).is_file():
            broken.append(link)
    return broken


def chromium() -> Path:
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is missing (apt-get install chromium)", "MEDIMG_REQUIRE_BROWSER")
    return CHROMIUM


def screenshot(index: Path, png: Path, profile: Path) -> np.ndarray:
    subprocess.run(
        [str(chromium()), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={png}",
         "--window-size=1280,2000", index.as_uri()],
        check=True, capture_output=True, timeout=180)
    return np.asarray(Image.open(png).convert("RGB"))


@pytest.mark.parametrize("store_fixture", ["volumes_store", "stack_store"])
def test_report_renders_in_chromium_without_broken_links(store_fixture, request, tmp_path):
    store = request.getfixturevalue(store_fixture)
    index = write_report(store, tmp_path / "report")
    assert broken_links(index) == []
    pixels = screenshot(index, tmp_path / "page.png", tmp_path / "profile")
    assert pixels.shape[:2] == (2000, 1280)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 200, "the page is (nearly) blank"
    assert pixels.std() > 20
    # The dark case tiles are laid out on the page (their images: broken_links).
    assert (pixels.max(axis=2) < 40).mean() > 0.02


def test_stack_report_shows_classes_and_boxes(stack_store, tmp_path):
    html = write_report(stack_store, tmp_path / "report").read_text()
    assert "finding: Mass" in html and "box Mass" in html
    assert "Cases per split" in html and "Build report" in html
    assert "CC0 1.0" in html  # the license from the recipe


# -- reads do not grow with the store ---------------------------------------------------
class CountingStore:
    """A store whose pixel reads are counted by case id."""

    PIXEL_READS = ("read_image", "read_mask", "case")

    def __init__(self, store) -> None:
        self._store = store
        self.reads: list[tuple[str, str]] = []  # (method, case id)

    def __getattr__(self, name):
        attribute = getattr(self._store, name)
        if name == "dataset":
            raise AssertionError("the report must not open the whole dataset")
        if name not in self.PIXEL_READS:
            return attribute

        def counted(case_id, *args, **kwargs):
            self.reads.append((name, case_id))
            return attribute(case_id, *args, **kwargs)
        return counted


def class_folder_store(root: Path, n_cases: int) -> Path:
    rng = np.random.default_rng(n_cases)
    for index in range(n_cases):
        folder = root / "src" / ("benign", "malignant", "normal")[index % 3]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, size=(12, 10), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{index:04d}.png")
    recipe = load_recipe("class-folders").with_overrides({"harmonize": {"shape": [16, 16]}})
    assert build_store(recipe, root / "src", root / "store.zarr", progress=False).ok
    return root / "store.zarr"


def test_cases_read_do_not_grow_with_the_store(tmp_path):
    per_group = 2
    groups = 3 + 3  # splits train/val/test, classes benign/malignant/normal
    for n_cases in (60, 180):
        path = class_folder_store(tmp_path / str(n_cases), n_cases)
        store = CountingStore(open_store(path))
        write_store_report(store, tmp_path / f"report{n_cases}", per_group=per_group)
        images_read = [case_id for method, case_id in store.reads if method == "read_image"]
        # Each sampled case is read once; a case sampled for its split and its class
        # is shared, so the bound is reached or nearly.
        assert len(images_read) == len(set(images_read))
        assert groups * per_group - 3 <= len(images_read) <= groups * per_group
        assert {case_id for _, case_id in store.reads} == set(images_read)


def test_sample_is_seeded_and_bounded():
    ids = [f"case{i}" for i in range(1000)]
    first = sample(ids, 5, seed=0, name="split train")
    assert first == sample(ids, 5, seed=0, name="split train") and len(first) == 5
    assert first != sample(ids, 5, seed=1, name="split train")
    assert sample(ids[:3], 5, seed=0, name="x") == tuple(ids[:3])


def test_cli_report_and_its_errors(stack_store, tmp_path, capsys):
    assert main(["report", str(stack_store), "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r" / "index.html").is_file()
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["report", str(stack_store), "--out", str(blocker)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and str(blocker) in error and "directory" in error
    assert main(["report", str(tmp_path / "missing.zarr")]) == 2
