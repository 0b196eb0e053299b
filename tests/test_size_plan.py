"""Size bombs of the harmonization plan (issue 14): a step refuses an output grid past the
size limit before it allocates it, naming the case's file, the size and --max-voxels; a
recipe shape past the limit is refused before any case runs; one such case on a Dask
pool fails alone; a case that runs out of memory within the limit fails with one line.

Every build that could allocate a bomb's size on code without these checks runs in a
fresh process under an address-space limit (``peak_memory.run_measured``), which also
measures its peak memory."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medimg_build.cli import main
from medimg_build.errors import RecipeError
from medimg_build.harmonize import resample_to_grid, resample_to_spacing, resize_with_pad
from medimg_build.harmonize.convert import stack_channels
from medimg_build.io import read_image
from medimg_build.limits import ImageTooLargeError, max_voxels
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe, recipes_dir
from peak_memory import MiB, run_measured

GiB = 1024 * MiB
# What a refused bomb may cost: Python, numpy, SimpleITK, Dask and a few small cases.
# Each bomb below asks for 8.8 GiB or more.
REFUSED_PEAK = 1 * GiB


def _nifti(path: Path, voxel_mm: float, shape=(4, 4, 4)) -> Path:
    """A valid NIfTI of ``shape`` int16 voxels of ``voxel_mm`` (66 bytes of header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    nib.save(nib.Nifti1Image(array, np.diag([voxel_mm] * 3 + [1.0])), path)
    return path


def _good_cases(images: Path, n: int) -> None:
    rng = np.random.default_rng(1)
    for index in range(n):
        array = rng.integers(-1000, 1500, size=(10, 9, 4)).astype(np.int16)
        nib.save(nib.Nifti1Image(array, np.diag([-0.9, -0.9, 2.5, 1.0])),
                 images / f"case{index}.nii.gz")


def _build_code(args: list[str]) -> str:
    """A CLI build, its exit code the process's (for ``run_measured``)."""
    return f"import sys\nfrom medimg_build.cli import main\nsys.exit(main({args!r}))\n"


def _build_args(source: Path, out: Path, *options: str) -> list[str]:
    return ["build", "volume-folder", "--source", str(source), "--out", str(out),
            "--key", "k", "--quiet", *options]


def _failures(run) -> list[str]:
    return [line.strip() for line in run.stdout.splitlines()
            if line.strip().startswith("failed ")]


# -- an output grid past the limit is refused before resampling ----------------------
def test_a_500_mm_volume_resampled_to_1_5_mm_is_refused_naming_file_size_and_option(
        tmp_path):
    """4x4x4 voxels of 500 mm at the recipe's 1.5 mm are 1333**3 voxels (8.8 GiB as
    float32)."""
    bomb = _nifti(tmp_path / "src" / "images" / "big.nii.gz", 500.0)
    run = run_measured(_build_code(_build_args(tmp_path / "src", tmp_path / "out.zarr",
                                               "--workers", "1")))
    assert run.returncode == 1, run.stderr[-2000:]
    [failure] = _failures(run)
    assert failure.startswith(f"failed big: {bomb}: resampled to 1.5x1.5x1.5 mm")
    assert "1333x1333x1333 = 2,368,593,037 values" in failure
    assert "over the limit of 536,870,912" in failure
    assert "harmonize.spacing" in failure and "--max-voxels N" in failure
    assert run.peak_rss < REFUSED_PEAK, run.peak_mib


def test_a_tiny_spacing_on_the_command_line_refuses_each_real_case(shared_data, tmp_path):
    """``--set harmonize.spacing=[0.005,0.005,0.005]`` on real CT and MR volumes of 3 mm
    voxels asks for 10**13 voxels per case: each case is refused, naming its file."""
    images = tmp_path / "src" / "images"
    images.mkdir(parents=True)
    for name in ("example_ct_sm.nii.gz", "example_mr_sm.nii.gz"):
        shutil.copy(shared_data / "totalsegmentator" / name, images / name)
    run = run_measured(_build_code(_build_args(
        tmp_path / "src", tmp_path / "out.zarr", "--workers", "1",
        "--set", "harmonize.spacing=[0.005,0.005,0.005]")))
    assert run.returncode == 1, run.stderr[-2000:]
    failures = _failures(run)
    assert len(failures) == 2 and "0 case(s) built, 2 failed" in run.stdout
    for failure, name in zip(failures, ("example_ct_sm", "example_mr_sm")):
        assert failure.startswith(f"failed {name}: {images / name}.nii.gz: resampled to "
                                  "0.005x0.005x0.005 mm (from ")
        assert "voxels of 3x3x3 mm)" in failure and "--max-voxels N" in failure
    assert "73200x60600x18000 = 79,846,560,000,000 values" in failures[0]
    assert run.peak_rss < REFUSED_PEAK, run.peak_mib


def test_a_huge_harmonize_shape_is_a_recipe_error_before_any_case_runs(tmp_path):
    """A recipe whose output shape alone is past the limit would fail every case: it is
    refused at the start, naming the setting, and no store is made."""
    bundled = (recipes_dir() / "nih-chestxray14.yaml").read_text()
    assert "shape: [512, 512]" in bundled
    recipe = tmp_path / "huge.yaml"
    recipe.write_text(bundled.replace("shape: [512, 512]", "shape: [30000, 30000]"))
    source = tmp_path / "src"
    _chest_source(source)
    out = tmp_path / "out.zarr"
    run = run_measured(_build_code(["build", str(recipe), "--source", str(source),
                                    "--out", str(out), "--key", "k", "--quiet",
                                    "--workers", "1"]))
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert (f"{recipe}: harmonize.shape [30000, 30000] = 900,000,000 voxels per case is "
            "over the size limit of 536,870,912 values") in run.stderr
    assert "--max-voxels N" in run.stderr
    assert not out.exists()
    assert run.peak_rss < REFUSED_PEAK, run.peak_mib


def test_a_huge_harmonize_shape_through_build_store_names_the_setting(tmp_path):
    recipe = load_recipe("nih-chestxray14").with_overrides(
        {"harmonize": {"shape": [40, 40]}, "limits": {"max_voxels": 1000}})
    source = _chest_source(tmp_path / "src")
    with pytest.raises(RecipeError, match=r"harmonize.shape \[40, 40\] = 1,600 voxels"):
        build_store(recipe, source, tmp_path / "out.zarr", progress=False, key="k")
    assert not (tmp_path / "out.zarr").exists()


def _chest_source(root: Path) -> Path:
    """Two small ChestX-ray14 PNGs with their table."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    rows = ["Image Index,Finding Labels,Follow-up #,Patient ID"]
    for index in range(2):
        name = f"0000000{index}_000.png"
        Image.fromarray(np.full((12, 10), 40 * index, np.uint8)).save(root / "images" / name)
        rows.append(f"{name},No Finding,0,{index}")
    (root / "Data_Entry_2017.csv").write_text("\n".join(rows) + "\n")
    (root / "test_list.txt").write_text("")
    (root / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
    return root


# -- each step that makes a grid checks it ------------------------------------------------
# Under a limit of 100,000 values, with images each within it.
SMALL_LIMIT = 100_000


def test_resize_with_pad_checks_its_output_before_smoothing(tmp_path):
    small = read_image(_nifti(tmp_path / "small.nii.gz", 1.0, (10, 10, 10)))
    with max_voxels(SMALL_LIMIT):
        with pytest.raises(ImageTooLargeError, match=r"small.nii.gz: resized, the image of "
                           r"50x50x50 = 125,000 values .* \(give a smaller harmonize.shape"):
            resize_with_pad(small, [50, 50, 50])
        assert resize_with_pad(small, [40, 40, 40]).array.shape == (40, 40, 40)


def test_resample_to_grid_checks_the_grid_it_resamples_onto(tmp_path):
    small = read_image(_nifti(tmp_path / "small.nii.gz", 1.0, (10, 10, 10)))
    grid = read_image(_nifti(tmp_path / "grid.nii.gz", 0.2, (50, 50, 50)))
    with max_voxels(SMALL_LIMIT):
        with pytest.raises(ImageTooLargeError, match=r"small.nii.gz: resampled onto the "
                           r"grid of .*grid.nii.gz, the image of 50x50x50 = 125,000"):
            resample_to_grid(small, grid)


def test_stacked_channels_are_checked_together(tmp_path):
    channels = [read_image(_nifti(tmp_path / f"c{i}.nii.gz", 1.0, (40, 40, 40)))
                for i in range(3)]
    with max_voxels(150_000):  # two of them fit, not three
        with pytest.raises(ImageTooLargeError, match=r"c0.nii.gz: stacked as 3 channels, "
                           r"the image of 40x40x40x3 = 192,000 values"):
            stack_channels(channels)
        assert stack_channels(channels[:2]).array.shape == (40, 40, 40, 2)


def test_a_spacing_too_small_to_count_is_refused_as_too_large(tmp_path):
    """1e-300 mm gives an infinite number of voxels: too large, not a negative size."""
    image = read_image(_nifti(tmp_path / "small.nii.gz", 1.0))
    with pytest.raises(ImageTooLargeError, match=r"resampled to 1e-300x1e-300x1e-300 mm "
                       r"\(from 4x4x4 voxels of 1x1x1 mm\), the image of 9007199254740992x"):
        resample_to_spacing(image, 1e-300)


# -- one refused case never stops the pool --------------------------------------------------
def test_one_bomb_among_good_cases_fails_alone_on_a_dask_pool(tmp_path):
    source = tmp_path / "src"
    bomb = _nifti(source / "images" / "big.nii.gz", 500.0)
    _good_cases(source / "images", 4)
    code = f"""
        import json
        from medimg_build.recipe.build import build_store
        from medimg_build.recipe.model import load_recipe
        report = build_store(load_recipe("volume-folder"), {str(source)!r},
                             {str(tmp_path / 'out.zarr')!r}, workers=2, key="k",
                             progress=False)
        print(json.dumps({{"built": report.built, "failed": report.failed}}))
    """
    run = run_measured(code)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["built"] == [f"case{i}" for i in range(4)]
    assert list(report["failed"]) == ["big"]
    assert report["failed"]["big"].startswith(f"{bomb}: resampled to 1.5x1.5x1.5 mm")
    assert "--max-voxels N" in report["failed"]["big"]
    assert run.peak_rss < REFUSED_PEAK, run.peak_mib


@pytest.mark.parametrize("workers, spacing, limit", [
    # numpy's MemoryError: 700**3 voxels are within the default limit, not within 3 GiB
    ("2", "2.857", None),
    # ITK's "Failed to allocate memory" (a RuntimeError): 1333**3, the limit raised
    ("1", "1.5", str(2**40)),
])
def test_a_case_out_of_memory_within_the_limit_fails_alone_in_one_line(
        tmp_path, workers, spacing, limit):
    source = tmp_path / "src"
    bomb = _nifti(source / "images" / "big.nii.gz", 500.0)
    _good_cases(source / "images", 2)
    options = ["--workers", workers, "--set", f"harmonize.spacing=[{spacing}, {spacing}, {spacing}]"]
    if limit:
        options += ["--max-voxels", limit]
    run = run_measured(_build_code(_build_args(source, tmp_path / "out.zarr", *options)))
    assert run.returncode == 1, run.stderr[-2000:]
    assert "2 case(s) built, 1 failed" in run.stdout
    [failure] = _failures(run)
    assert failure.startswith(f"failed big: {bomb}: ran out of memory harmonizing this "
                              "case, within the size limit of ")
    assert "--max-voxels N" in failure and "unexpected" not in failure


# -- the limit is a setting, not a refusal of everything large ------------------------------
def test_raising_the_limit_lets_a_larger_output_through(tmp_path, capsys):
    """500 mm voxels at 25 mm: 80**3 = 512,000 voxels, refused under a limit of 500,000,
    built under 600,000 (option or recipe setting)."""
    source = tmp_path / "src"
    _nifti(source / "images" / "big.nii.gz", 500.0)
    spacing = ["--set", "harmonize.spacing=[25,25,25]"]
    assert main(_build_args(source, tmp_path / "low.zarr", *spacing,
                            "--max-voxels", "500000")) == 1
    assert "80x80x80 = 512,000 values" in capsys.readouterr().out
    assert main(_build_args(source, tmp_path / "high.zarr", *spacing,
                            "--max-voxels", "600000")) == 0
    recipe = load_recipe("volume-folder").with_overrides(
        {"harmonize": {"spacing": [25, 25, 25]}, "limits": {"max_voxels": 600_000}})
    report = build_store(recipe, source, tmp_path / "recipe.zarr", progress=False, key="k")
    assert report.built == ["big"]


# -- the peak memory of ordinary cases ------------------------------------------------------
# Peak memory of a step, in float32 copies of the (one-channel) image, beyond what the
# process held before it. Before these were cut: 3.8 (anti-aliased resize of a gray
# radiograph), 5.3 (RGB to gray), 7.5 (MR z-score); the numbers stored are the same.
STEP_PEAK = {
    "resize": ("np.asfortranarray(rng.integers(0, 255, (6000, 6000), dtype=np.uint8))", 2,
               "resize_with_pad(image, [512, 512])", 2.5),
    "to_grayscale": ("np.asfortranarray(rng.integers(0, 255, (4000, 3000, 3), np.uint8))", 2,
                     "to_grayscale(image)", 1.5),
    "normalize_mr": ("np.asfortranarray(rng.integers(-1000, 2000, (300, 300, 200), np.int16))",
                     3, "normalize(image, 'mr')", 4.5),
}


@pytest.mark.parametrize("step", sorted(STEP_PEAK))
def test_a_large_ordinary_image_costs_few_float_copies(step):
    pixels, ndim, call, most = STEP_PEAK[step]
    run = run_measured(f"""
        import resource
        import numpy as np
        from medimg_build.harmonize import normalize, resize_with_pad
        from medimg_build.harmonize.convert import to_grayscale
        from medimg_build.image import MedicalImage

        def image_of(array):
            return MedicalImage(array, np.eye(4), spatial_ndim={ndim}, meta={{"intensity": {{}}}})

        rng = np.random.default_rng(0)
        pixels = {pixels}
        image = image_of(pixels[:8, :8].copy(order="F"))
        {call}  # libraries loaded and warmed up: what follows is the step's own memory
        image = image_of(pixels)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        {call}
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print((after - before) / (np.prod(pixels.shape[:{ndim}]) * 4))
    """)
    assert run.returncode == 0, run.stderr[-2000:]
    assert float(run.stdout.split()[-1]) < most
