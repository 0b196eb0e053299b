"""``medimg-build demo``: build stores from real sample images and say what was made.

Sources: DICOM and NIfTI files shipped inside pydicom and nibabel (always present), and
the reference data in ../shared/data (a real CT with its segmentation, real chest
X-rays) when it is there. Each source is laid out as its bundled recipe expects, with
symbolic links, and built with that recipe; nothing is copied."""

from __future__ import annotations

import csv
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel
import numpy as np
import pydicom

from .describe import directory_size, file_count
from .errors import MedimgError
from .privacy import DefaultKeyWarning
from .recipe.build import build_store
from .recipe.model import load_recipe
from .resources import find_shared_data


@dataclass(frozen=True)
class DemoStore:
    name: str
    recipe: str
    overrides: dict[str, Any]
    lay_out: Callable[[Path, Path | None], None]  # (source folder, shared data) -> files
    needs_shared: bool = False


def _pydicom_files() -> Path:
    return Path(pydicom.data.get_testdata_file("CT_small.dcm")).parent


def _nibabel_files() -> Path:
    return Path(nibabel.__file__).parent / "tests" / "data"


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target.resolve(), target_is_directory=target.is_dir())


def _lay_out_nibabel_mr(folder: Path, shared: Path | None) -> None:
    _link(_nibabel_files() / "anatomical.nii", folder / "images" / "anatomical.nii")
    _link(_nibabel_files() / "example4d.nii.gz", folder / "images" / "example4d.nii.gz")


def _lay_out_pydicom_ct(folder: Path, shared: Path | None) -> None:
    # Two real CT series of pydicom's DICOMDIR tests: 5 slices, and 1 slice.
    series = _pydicom_files() / "dicomdirtests" / "98892001" / "CT5N"
    _link(series, folder / "images" / "98892001-CT5N")
    _link(_pydicom_files() / "CT_small.dcm", folder / "images" / "CT_small" / "CT_small.dcm")


def _lay_out_totalsegmentator(folder: Path, shared: Path | None) -> None:
    base = shared / "totalsegmentator"
    _link(base / "example_ct_dicom", folder / "images" / "example_ct")
    _link(base / "example_seg_dicom.nii.gz", folder / "labels" / "example_ct.nii.gz")


# OriginalImage[Width,Height] and OriginalImagePixelSpacing[x,y] of the NIH image among the
# reference X-rays, from NIH's Data_Entry_2017_v2020.csv as copied in sunlabuiuc/PyHealth
# (pyhealth/unittests/test_datasets/test_chestxray14.py). Written unquoted, as NIH's
# header is, so that each bracket is two columns, as the recipe reads them.
NIH_GEOMETRY = {"00000001_000.png": (2682, 2749, 0.14300000000000002, 0.14300000000000002)}


def _lay_out_chest_xrays(folder: Path, shared: Path | None) -> None:
    """The real X-rays beside the reference data, with a ChestX-ray14-style table.
    Their findings are not known here, so the table leaves them empty (= unknown)."""
    base = shared / "torchxrayvision" / "tests"
    rows = []
    for path in sorted(base.iterdir()):
        if path.suffix.lower() not in {".png", ".jpg", ".dcm"} or path.name.startswith("Fake"):
            continue
        name = path.name if path.suffix != ".dcm" else "siim-cr.dcm"
        _link(path, folder / "images" / name)
        # NIH file names are <patient>_<follow-up>.png; others are one patient each.
        patient = path.stem.split("_")[0] if path.suffix == ".png" else Path(name).stem
        # Pixel size: NIH's own row where known (else empty: unknown, kept in pixels).
        width, height, x, y = NIH_GEOMETRY.get(name, ("", "", "", ""))
        rows.append({"Image Index": name, "Finding Labels": "", "Patient ID": patient,
                     "Follow-up #": "", "Patient Age": "", "Patient Gender": "",
                     "View Position": "", "OriginalImage[Width": width, "Height]": height,
                     "OriginalImagePixelSpacing[x": x, "y]": y})
    # None of these images is in the official test list: it is empty here.
    (folder / "test_list.txt").write_text("")
    (folder / "BBox_List_2017.csv").write_text("Image Index,Finding Label,Bbox [x,y,w,h],,,\n")
    with open(folder / "Data_Entry_2017.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _totalsegmentator_classes(shared: Path) -> dict[str, str]:
    seg = nibabel.load(shared / "totalsegmentator" / "example_seg_dicom.nii.gz")
    values = np.unique(np.asanyarray(seg.dataobj))
    # The label names of TotalSegmentator are not shipped with the data: keep numbers.
    return {str(int(v)): "background" if v == 0 else f"structure_{int(v)}" for v in values}


DEMOS = [
    DemoStore("pydicom-ct", "volume-folder",
              {"title": "Real CT series shipped with pydicom", "organ": "abdomen",
               "source": {"images": "images/*"}, "harmonize": {"spacing": [1.0, 1.0, 2.5]}},
              _lay_out_pydicom_ct),
    DemoStore("nibabel-mr", "volume-folder",
              {"title": "Real MR volumes shipped with nibabel", "modality": "MR",
               "organ": "brain", "harmonize": {"spacing": [2.0, 2.0, 2.0],
                                               "intensity": {"preset": "mr", "window": None}}},
              _lay_out_nibabel_mr),
    DemoStore("totalsegmentator-ct", "volume-folder",
              {"title": "TotalSegmentator example CT with its segmentation", "organ": "abdomen"},
              _lay_out_totalsegmentator, needs_shared=True),
    DemoStore("chest-xray", "nih-chestxray14",
              {"title": "Real chest X-rays (NIH ChestX-ray14, SIIM, COVID, TBX11K samples)",
               "source": {"images": "images/*"}, "harmonize": {"shape": [256, 256]}},
              _lay_out_chest_xrays, needs_shared=True),
]


def run_demo(out: str | Path, shared_data: str | Path | None = None,
             use_shared: bool = True) -> int:
    out = Path(out)
    shared = find_shared_data(shared_data) if use_shared else None
    out.mkdir(parents=True, exist_ok=True)
    lines, status = [], 0
    for demo in DEMOS:
        if demo.needs_shared and shared is None:
            lines.append(f"{demo.name:20} skipped: ../shared/data not found")
            continue
        source = out / "sources" / demo.name
        shutil.rmtree(source, ignore_errors=True)
        demo.lay_out(source, shared)
        overrides = dict(demo.overrides)
        if demo.name == "totalsegmentator-ct":
            overrides["labels"] = {"segmentation": {"classes": _totalsegmentator_classes(shared)}}
        recipe = load_recipe(demo.recipe).with_overrides({"name": demo.name, **overrides})
        store = out / f"{demo.name}.zarr"
        started = time.perf_counter()
        try:
            with warnings.catch_warnings():
                # Public sample data: said once below, not once per store.
                warnings.simplefilter("ignore", DefaultKeyWarning)
                report = build_store(recipe, source, store, overwrite=True, progress=False)
        except MedimgError as error:
            lines.append(f"{demo.name:20} failed: {error}")
            status = 1
            continue
        lines.append(_summary_line(demo.name, store, time.perf_counter() - started))
        if report.failed:
            status = 1
            lines += [f"{'':20} failed {k}: {v}" for k, v in report.failed.items()]
    print(f"Demo stores in {out.resolve()}:")
    print("\n".join(lines))
    print("(public sample data, pseudonymized with the built-in key: pass --key to "
          "'medimg-build build' for data you share)")
    print(f"\nNext: medimg-build inspect {out / 'pydicom-ct.zarr'}")
    print(f"      medimg-build report {out / 'chest-xray.zarr'} --out {out / 'report'}")
    return status


def _summary_line(name: str, store: Path, seconds: float) -> str:
    from .store import open_store

    opened = open_store(store)
    cases = opened.cases
    shapes = sorted({"x".join(str(n) for n in s) for s in cases["harmonized_shape"]})
    spacing = sorted({"x".join(f"{v:.3g}" for v in s) + (" px" if unit == "pixel" else " mm")
                      for s, unit in zip(cases["harmonized_spacing"], cases["spacing_unit"])})
    size = directory_size(store)
    return (f"{name:20} {len(cases):2} case(s), {opened.layout:7}, shapes {', '.join(shapes)}, "
            f"spacing {', '.join(spacing)}, {size / 1e6:.2f} MB in {file_count(store)} "
            f"files, {seconds:.1f} s")
