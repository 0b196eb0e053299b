"""The 2D mass-build section measures what it says: its sources are what the recipes
build, the MedMNIST-style script does the same work as our build, and the per-image
slope and the projection are the arithmetic the report states. No timing is asserted."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from benchmarks import inputs2d
from benchmarks.inputs2d import Source2d, first_images
from benchmarks.mass2d import (
    agreement, build_ours, medmnist_style, per_image_slope, ratios_by_round, summary,
)
from benchmarks.projection import cores_at, project


@pytest.fixture(scope="module")
def sources(tmp_path_factory, shared_data):
    """Each variant, small, made as make_sources makes them, and its first images."""
    root = tmp_path_factory.mktemp("inputs2d")
    made = {}
    for variant, n in (("png8", 6), ("jpeg", 3), ("png16", 6)):
        recipe, overrides, what = inputs2d.RECIPES[variant]
        folder = root / f"{variant}-{n}"
        inputs2d.MAKERS[variant](folder, n, shared_data)
        files = sorted(folder.glob(inputs2d.IMAGE_GLOB[variant]))
        made[variant] = Source2d(variant, what, recipe, overrides, folder, files)
    return made


def test_the_sources_look_like_the_datasets(sources):
    with Image.open(sources["png8"].files[0]) as xray:
        assert (xray.mode, xray.size, xray.format) == ("L", (1024, 1024), "PNG")
    with Image.open(sources["jpeg"].files[0]) as photo:
        assert (photo.mode, photo.size, photo.format) == ("RGB", (2592, 1728), "JPEG")
    with Image.open(sources["png16"].files[0]) as ct:
        assert (ct.mode, ct.size) == ("I;16", (512, 512))
        hu = np.asarray(ct).astype(np.int32) - 32768
    assert -1500 < hu.min() and hu.max() < 3500 and hu.std() > 100  # a CT slice in HU
    table = (sources["png8"].folder / "Data_Entry_2017_v2020.csv").read_text().splitlines()
    assert table[0].startswith("Image Index,Finding Labels,Follow-up #,Patient ID")
    assert [line.split(",")[0] for line in table[1:]] == \
        [f.name for f in sources["png8"].files]


@pytest.mark.parametrize("variant", ["png8", "jpeg", "png16"])
def test_each_source_builds_whole_and_the_script_does_the_same_work(sources, variant,
                                                                    tmp_path):
    """Every image is a case (a box or table the recipe refuses would fail one), and
    the script's stack is ours within the two resampling filters' difference."""
    source = sources[variant]
    build_ours(source, tmp_path / "ours.zarr", workers=1)
    medmnist_style(source.files, tmp_path / "script.npy")
    stack = np.load(tmp_path / "script.npy")
    assert stack.dtype == (np.float32 if variant == "png16" else np.float16)
    assert stack.shape[:3] == (source.n, 512, 512)
    same = agreement(tmp_path / "ours.zarr", tmp_path / "script.npy", cases=source.n)
    assert same["shape"][0] == source.n
    assert same["mean_abs"] < 0.01


def test_a_small_source_is_the_first_images_of_the_large_one(sources, tmp_path):
    large = sources["png8"]
    first_images(large, tmp_path / "small", 3)
    small = sorted((tmp_path / "small").glob(inputs2d.IMAGE_GLOB["png8"]))
    assert [f.name for f in small] == [f.name for f in large.files[:3]]
    assert small[0].samefile(large.files[0])  # a hard link, not a copy
    rows = (tmp_path / "small" / "Data_Entry_2017_v2020.csv").read_text().splitlines()
    assert len(rows) == 4


def test_the_per_image_cost_is_the_slope_between_two_sizes():
    slope, fixed = per_image_slope(10 + 0.05 * 300, 10 + 0.05 * 100, 300, 100)
    assert slope == pytest.approx(0.05) and fixed == pytest.approx(10)
    seconds = {"decode": 3.0, "medmnist": 6.0, "ours_w1": 10 + 0.05 * 300,
               "ours_w1_small": 10 + 0.05 * 100, "ours_w2": 12 + 0.025 * 300,
               "ours_w2_small": 12 + 0.025 * 100}
    result = summary(seconds, 300, 100)
    assert result["ours_per_worker_over_decode"] == pytest.approx(0.05 / 0.01)
    assert result["medmnist_over_ours"] == pytest.approx(0.02 / 0.05)
    assert result["speedup_1_to_2"] == pytest.approx(2.0)
    assert result["slope_failed"] == []


def test_a_slope_lost_in_noise_falls_back_to_the_wall_time_and_says_so():
    seconds = {"decode": 3.0, "medmnist": 6.0, "ours_w1": 20.0, "ours_w1_small": 21.0,
               "ours_w2": 15.0, "ours_w2_small": 10.0}
    result = summary(seconds, 300, 100)
    assert result["per_image"]["ours_w1"] == pytest.approx(20 / 300)
    assert result["slope_failed"] == ["ours_w1"]


def test_the_projection_is_capped_by_the_lowest_bound():
    caps = {"scheduler": 400.0, "build process": 200.0}
    rows = project(112_120, 0.1, 0.5, caps, (1, 32, 256))
    assert rows[0]["cases_per_second"] == pytest.approx(10)  # 1 core: no efficiency lost
    assert rows[0]["hours"] == pytest.approx(112_120 / 10 / 3600)
    assert rows[1]["cases_per_second"] == pytest.approx(32 / 0.1 * 0.5)
    assert rows[1]["bound_by"] == "the workers' compute"
    assert rows[2]["cases_per_second"] == 200 and rows[2]["bound_by"] == "build process"
    assert cores_at(200, 0.1, 0.5) == pytest.approx(40)


def test_each_round_gives_its_own_ratios():
    times = {"decode": [3.0, 6.0], "medmnist": [6.0, 12.0], "ours_w1": [25.0, 50.0],
             "ours_w1_small": [15.0, 30.0], "ours_w2": [17.5, 35.0],
             "ours_w2_small": [12.5, 25.0]}
    rounds = ratios_by_round(times, 300, 100)
    assert rounds["ours_per_worker_over_decode"] == pytest.approx([5.0, 5.0])
    assert rounds["speedup_1_to_2"] == pytest.approx([2.0, 2.0])
