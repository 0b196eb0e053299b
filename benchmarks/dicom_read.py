"""DICOM series read speed: ours vs pydicom's plain dcmread loop vs SimpleITK's
ImageSeriesReader, on the same real series in the same run (slices per second); and on
the benchmark's uncompressed CT series, the ratio to the pydicom loop and where our read
spends its time, step by step.

The steps are timed inside real reads: each step function of the DICOM reader is
wrapped with a clock for the duration of the timed reads (not re-run on its own, which
would time pydicom's attribute conversions as already done), and what the steps do not
cover -- the MONOCHROME1 inversion, the modality rescale, index order, the metadata --
is the read minus the steps."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import SimpleITK as sitk

from medimg_build import read_image
from medimg_build.io import dicom

from .common import REPEATS, median_seconds, shared_data

SERIES = {
    "totalsegmentator CT (J2K, 20 slices)": "totalsegmentator/example_ct_dicom",
    "dicom2nifti anatomical (4 slices)": "dicom2nifti/anatomical/001",
    "dcm_qa_nih GE EPI (150 files)": "dcm_qa_nih/In/20180918GE/mr_0004",
}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("README"))


def _pydicom_loop(files: list[Path]) -> None:
    for path in files:
        pydicom.dcmread(path).pixel_array


def _simpleitk(folder: Path) -> None:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder)))
    reader.Execute()


# The DICOM reader's steps: (name in the table, function looked up in io/dicom.py).
STEPS = (
    ("header parse (list the files, parse each header; pixels stay in the file)",
     "read_folder"),
    ("grouping (one series)", "_one_series"),
    ("frames (position, orientation, scaling of each file)", "frames_of"),
    ("geometry (4D split, sort by position, spacing checks)", "split_volumes"),
    ("geometry (4D split, sort by position, spacing checks)", "volume_geometry"),
    ("pixel decode (each file's pixels into the stack)", "stack_pixels"),
)
REST = "rescale, index order, metadata (the rest of the read)"


def ct_read(folder: Path) -> dict:
    """read_image on the CT series against the pydicom dcmread + pixel_array loop over
    its files, and the read's steps (medians of the repeats)."""
    files = _files(folder)
    read_image(folder)  # first use: imports, page cache
    ours = median_seconds(lambda: read_image(folder))
    loop = median_seconds(lambda: _pydicom_loop(files))
    return {"files": len(files), "seconds": {"ours": ours, "pydicom_loop": loop},
            "ours_over_loop": ours / loop, "steps": read_steps(folder)}


def read_steps(folder: Path, repeats: int = REPEATS) -> dict[str, float]:
    """Median seconds of each step within whole reads, and of the read itself."""
    runs = []
    for _ in range(repeats):
        with _clocked_steps() as spent:
            started = time.perf_counter()
            read_image(folder)
            whole = time.perf_counter() - started
        runs.append({**spent, REST: whole - sum(spent.values()), "read_image (whole)": whole})
    return {name: statistics.median(run[name] for run in runs) for name in runs[0]}


@contextmanager
def _clocked_steps() -> Iterator[dict[str, float]]:
    """Within the block, the reader's step functions add their time to the dict."""
    # A step the reader no longer has (renamed) is timed as part of the rest.
    steps = [(name, function) for name, function in STEPS if hasattr(dicom, function)]
    spent = {name: 0.0 for name, _ in steps}
    saved = {function: getattr(dicom, function) for _, function in steps}

    def clocked(name, original):
        def step(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - started
        return step

    for name, function in steps:
        setattr(dicom, function, clocked(name, saved[function]))
    try:
        yield spent
    finally:
        for function, original in saved.items():
            setattr(dicom, function, original)


def run(ct_folder: Path | None = None) -> dict:
    """{"ct": the CT series' read (ct_read), "series": the shared QA series' rows}."""
    return {"ct": ct_read(ct_folder) if ct_folder is not None else None,
            "series": _shared_series()}


def _shared_series() -> list[dict]:
    root = shared_data()
    if root is None:
        return []
    rows = []
    for name, relative in SERIES.items():
        folder = root / relative
        files = _files(folder)
        try:
            read_image(folder)
        except Exception as error:  # a series this version cannot read yet: say so
            rows.append({"series": name, "error": f"{type(error).__name__}: {error}"})
            continue
        ours = median_seconds(lambda: read_image(folder))
        plain = median_seconds(lambda: _pydicom_loop(files))
        itk = median_seconds(lambda: _simpleitk(folder))
        rows.append({"series": name, "files": len(files),
                     "ours_slices_per_s": len(files) / ours,
                     "pydicom_loop_over_ours": plain / ours,
                     "simpleitk_over_ours": itk / ours})
    return rows


def markdown(results: dict) -> list[str]:
    lines = ["## DICOM series read", ""]
    ct = results["ct"]
    if ct is not None:
        s = ct["seconds"]
        lines += [f"The CT series ({ct['files']} uncompressed slices): read_image "
                  f"{s['ours']:.3f} s, the pydicom loop (dcmread + pixel_array per file, "
                  f"nothing else) {s['pydicom_loop']:.3f} s: **ours / pydicom loop = "
                  f"{ct['ours_over_loop']:.2f}**. Where the read's time goes (each step "
                  "timed inside the read, median):", "",
                  "| step | seconds | share of the read |", "|---|---|---|"]
        whole = ct["steps"]["read_image (whole)"]
        for name, seconds in ct["steps"].items():
            share = "" if name == "read_image (whole)" else f"{seconds / whole:.0%}"
            lines.append(f"| {name} | {seconds:.3f} | {share} |")
        lines.append("")
    lines += ["| series | files | ours (slices/s) | pydicom loop / ours | SimpleITK / ours |",
              "|---|---|---|---|---|"]
    for row in results["series"]:
        if "error" in row:
            lines.append(f"| {row['series']} | | not read: {row['error']} | | |")
            continue
        lines.append(f"| {row['series']} | {row['files']} | {row['ours_slices_per_s']:.0f} | "
                     f"{row['pydicom_loop_over_ours']:.2f} | {row['simpleitk_over_ours']:.2f} |")
    lines += ["", "A ratio above 1 means ours is faster; the pydicom loop only decodes "
              "(no sorting, no geometry, no checks)."]
    return lines
