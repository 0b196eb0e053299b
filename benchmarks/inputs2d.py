"""The 2D sources of the mass-build section, made once from the real images in
../shared/data and kept under benchmarks/work/inputs2d (``__main__`` leaves that folder).

* ``png8`` -- NIH ChestX-ray14 as NIH ships it: ``Data_Entry_2017_v2020.csv`` (the
  header of NIH's box file 219760887468, as copied in sunlabuiuc/PyHealth's
  test_chestxray14.py: "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,
  Patient Sex,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
  with a trailing comma on every line), ``BBox_List_2017.csv``, ``test_list.txt`` and
  ``images_001/images/<patient>_<follow-up>.png``: 8-bit grey 1024x1024 PNGs (112,120
  of them, 45 GB, i.e. ~400 KB each: labelsets.com's ChestX-ray14 page; NIH's
  description on scidm.nchc.org.tw gives the count). Ours are the two real NIH PNGs
  of torchxrayvision's tests (512x512) upscaled bicubic with Gaussian noise
  (sigma 3 grey levels), so that they compress like the real files (~540 KB).
* ``jpeg`` -- EyePACS (Kaggle Diabetic Retinopathy) as the ``diabetic-retinopathy``
  recipe reads it: ``trainLabels.csv`` (image,level) and ``train/<id>_left.jpeg``.
  The real train set is 35,126 JPEGs in 34.99 GB (academictorrents' copy of
  train.zip), ~1 MB each. Ours: the real RGB JPEG X-ray of torchxrayvision's tests
  (2373x2373) cut to 3:2 and resized to 2592x1728, noise sigma 3, quality 95.
* ``png16`` -- DeepLesion-like 16-bit PNG slices (HU + 32768, as DeepLesion's
  Images_png): the axial slices of the real TotalSegmentator CT, resized to 512x512,
  noise sigma 10 HU, laid out like ``png8`` so that the ``nih-chestxray14`` recipe
  builds them into a 512x512 stack with ``--set modality=CT`` (its ``xray`` preset
  scales the 16-bit range to 0..1 as float32; a recipe cannot give another source range).
  The ``deeplesion`` recipe builds volumes, not 2D stacks: this is its key slices as a 2D
  training set.

Each variant is made at two sizes, sharing the files (hard links): the per-image cost
is the slope between them, free of the CLI's start-up and listing."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .common import WORK, shared_data

INPUTS = WORK / "inputs2d"
VERSION = 2  # of what the makers below make: older sources are made again
N_IMAGES = int(os.environ.get("MEDIMG_BENCH_2D_N", "300"))
FINDINGS = ["Atelectasis", "No Finding", "Effusion", "Infiltration", "Atelectasis|Effusion"]
BOX_XYWH = (225.084745762712, 547.019216763771, 86.7796610169491, 79.1864406779661)


@dataclass(frozen=True)
class Source2d:
    variant: str  # png8, jpeg, png16
    what: str
    recipe: str
    overrides: tuple[str, ...]  # --set KEY=VALUE
    folder: Path
    files: list[Path] = field(repr=False)

    @property
    def n(self) -> int:
        return len(self.files)

    @property
    def bytes(self) -> int:
        return sum(f.stat().st_size for f in self.files)


def make_sources(n: int = N_IMAGES) -> dict[str, tuple[Source2d, Source2d]]:
    """Each variant at (its full size, a third of it): ``png8`` at ``n``, the 16-bit
    PNGs at ``n // 3`` and the JPEGs (4.3 times the pixels, in colour) at ``n // 15``."""
    shared = shared_data()
    if shared is None:
        raise RuntimeError("the 2D benchmark needs the shared data (../shared/data)")
    sizes = {"png8": n, "jpeg": max(6, n // 15), "png16": max(6, n // 3)}
    made = {}
    for variant, count in sizes.items():
        large = _made(variant, count, lambda folder: MAKERS[variant](folder, count, shared))
        small = _made(variant, max(3, count // 3),
                      lambda folder: first_images(large, folder, max(3, count // 3)))
        made[variant] = (large, small)
    return made


def _made(variant: str, n: int, make) -> Source2d:
    """The source, made unless an earlier run left it complete (its stamp), as this
    version of the module makes it."""
    folder = INPUTS / f"{variant}-{n}"
    stamp, made = folder / ".made.json", {"variant": variant, "n": n, "version": VERSION}
    recipe, overrides, what = RECIPES[variant]
    if not stamp.exists() or json.loads(stamp.read_text()) != made:
        shutil.rmtree(folder, ignore_errors=True)
        make(folder)
        stamp.write_text(json.dumps(made))
    return Source2d(variant, what, recipe, overrides, folder,
                    sorted(folder.glob(IMAGE_GLOB[variant])))


def first_images(large: Source2d, folder: Path, n: int) -> None:
    """The first ``n`` images of ``large`` (hard links: the same files, the same page
    cache) with its tables cut to them."""
    for image in large.files[:n]:
        target = folder / image.relative_to(large.folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(image, target)
    if large.variant == "jpeg":
        rows = (large.folder / "trainLabels.csv").read_text().splitlines()
        (folder / "trainLabels.csv").write_text("\n".join(rows[:n + 1]) + "\n")
    else:
        write_chestxray14_tables(folder, [image.name for image in large.files[:n]],
                                 side=Image.open(large.files[0]).size[0])


def chestxray14_names(n: int) -> list[str]:
    """<patient>_<follow-up>.png as NIH names them: about two images per patient."""
    return [f"{1 + i // 2:08d}_{i % 2:03d}.png" for i in range(n)]


def noisy(pixels: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return pixels.astype(np.float32) + rng.normal(0, sigma, pixels.shape).astype(np.float32)


def make_png8(folder: Path, n: int, shared: Path) -> None:
    xrays = [Image.open(shared / "torchxrayvision" / "tests" / name).convert("L")
             for name in ("00000001_000.png", "00027426_000.png")]
    big = [np.asarray(x.resize((1024, 1024), Image.BICUBIC)) for x in xrays]
    rng = np.random.default_rng(0)
    images = folder / "images_001" / "images"
    images.mkdir(parents=True)
    names = chestxray14_names(n)
    for i, name in enumerate(names):
        pixels = np.clip(noisy(big[i % 2], 3, rng), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(images / name)
    write_chestxray14_tables(folder, names)


def write_chestxray14_tables(folder: Path, names: list[str], side: int = 1024) -> None:
    """The three tables of the recipe for ``names``. The one box is the first row of
    NIH's BBox_List_2017.csv (00013118_008.png, Atelectasis, in pixels of the
    1024x1024 PNG; as mirrored in huggingface.co/datasets/alkzar90/NIH-Chest-X-ray-dataset,
    data/BBox_List_2017.csv), put on our first image and scaled to ``side``."""
    box = ",".join(f"{v * side / 1024!r}" for v in BOX_XYWH)
    header = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Sex,"
              "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],")
    rows = [header] + [
        f"{name},{FINDINGS[i % len(FINDINGS)]},{int(name[9:12])},{int(name[:8])},"
        f"{40 + i % 40},{'MF'[i % 2]},PA,2682,2749,0.143,0.143," for i, name in enumerate(names)]
    (folder / "Data_Entry_2017_v2020.csv").write_text("\n".join(rows) + "\n")
    (folder / "BBox_List_2017.csv").write_text(
        "Image Index,Finding Label,Bbox [x,y,w,h],,,\n"
        f"{names[0]},Atelectasis,{box},,,\n")
    (folder / "test_list.txt").write_text("\n".join(names[4::5]) + "\n")


def make_jpeg(folder: Path, n: int, shared: Path) -> None:
    photo = Image.open(shared / "torchxrayvision" / "tests"
                       / "covid-19-pneumonia-58-prior.jpg").convert("RGB")
    width, height = photo.size
    band = height * 2 // 3  # 3:2, as the fundus cameras' frames
    frame = photo.crop((0, (height - band) // 2, width, (height - band) // 2 + band))
    base = np.asarray(frame.resize((2592, 1728), Image.BICUBIC))
    rng = np.random.default_rng(0)
    (folder / "train").mkdir(parents=True)
    rows = ["image,level"]
    for i in range(n):
        stem = f"{10 + i // 2}_{('left', 'right')[i % 2]}"
        pixels = np.clip(noisy(base, 3, rng), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / "train" / f"{stem}.jpeg", quality=95)
        rows.append(f"{stem},{i % 5}")
    (folder / "trainLabels.csv").write_text("\n".join(rows) + "\n")


def make_png16(folder: Path, n: int, shared: Path) -> None:
    from medimg_build import read_image

    ct = read_image(shared / "totalsegmentator" / "example_ct.nii.gz")
    hu = np.asarray(ct.array, dtype=np.float32)  # (x, y, z)
    rng = np.random.default_rng(0)
    images = folder / "images_001" / "images"
    images.mkdir(parents=True)
    names = chestxray14_names(n)
    depth = hu.shape[2]
    for i, name in enumerate(names):
        plane = Image.fromarray(np.ascontiguousarray(hu[:, :, i % depth].T))
        resized = np.asarray(plane.resize((512, 512), Image.BICUBIC))
        stored = np.clip(noisy(resized, 10, rng) + 32768, 0, 65535).astype(np.uint16)
        Image.fromarray(stored).save(images / name)  # mode I;16: a 16-bit grey PNG
    write_chestxray14_tables(folder, names, side=512)


IMAGE_GLOB = {"png8": "images_001/images/*.png", "jpeg": "train/*.jpeg",
              "png16": "images_001/images/*.png"}
MAKERS = {"png8": make_png8, "jpeg": make_jpeg, "png16": make_png16}
RECIPES = {
    "png8": ("nih-chestxray14", (), "ChestX-ray14: 8-bit grey PNG 1024x1024 -> 512x512 "
             "float16 (recipe nih-chestxray14)"),
    "jpeg": ("diabetic-retinopathy", (), "EyePACS-like: RGB JPEG 2592x1728 -> 512x512 "
             "RGB float16 (recipe diabetic-retinopathy)"),
    "png16": ("nih-chestxray14", ("modality=CT",),
              "DeepLesion-like: 16-bit PNG 512x512 (HU + 32768) -> 512x512 float32 0..1 "
              "(recipe nih-chestxray14 --set modality=CT)"),
}
