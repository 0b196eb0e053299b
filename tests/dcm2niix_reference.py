"""dcm2niix, the field's reference DICOM converter, run from tests and compared with ours.

The binary comes with the ``dcm2niix`` pip package (part of the test extra). Without it a
test skips, except under MEDIMG_REQUIRE_SHARED_DATA=1 (CI), where that is a failure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from medimg_build.image import MedicalImage
from required import missing

# Words dcm2niix adds to a file name after its -f pattern (its FILENAMING.md), and the
# image kind each names; a name without one is a magnitude (or says nothing).
KIND_SUFFIXES = {"ph": "phase", "real": "real", "imaginary": "imaginary",
                 "fieldmaphz": "fieldmap"}
ECHO_SUFFIX = re.compile(r"e(\d+)")


def dcm2niix_binary() -> str:
    beside = Path(sys.executable).parent / "dcm2niix"
    found = str(beside) if beside.is_file() else shutil.which("dcm2niix")
    if found is None:
        missing("dcm2niix not installed (pip install dcm2niix, part of the test extra)")
    return found


def run_dcm2niix(folder: Path, out: Path, options: Sequence[str] = (), *,
                 no_dicom_ok: bool = False) -> list[Path]:
    """The NIfTI files dcm2niix writes for ``folder`` into ``out``, sorted by name.

    It runs as ``dcm2niix -b y -z n OPTIONS -o OUT FOLDER``: a BIDS .json (and .bval,
    .bvec) beside each uncompressed .nii, unless ``options`` say otherwise (the last
    ``-b`` given wins, e.g. ``["-b", "n", "-f", "%s_%d"]``). Its console output is kept
    in ``out/dcm2niix.log``. A failed run fails the test with that output; so does a
    folder without DICOM files (exit code 2) unless ``no_dicom_ok``.
    """
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [dcm2niix_binary(), "-b", "y", "-z", "n", *options, "-o", str(out), str(folder)],
        check=False, capture_output=True, text=True, timeout=300,  # asserted below with output
    )
    (out / "dcm2niix.log").write_text(result.stdout + result.stderr)
    assert result.returncode == 0 or (no_dicom_ok and result.returncode == 2), \
        result.stdout + result.stderr
    return sorted(out.glob("*.nii"))


def kind_and_echo(words: list[str]) -> tuple[str, int | None, list[str]]:
    """(image kind, echo number, the other words) from the ``_``-separated words of a
    dcm2niix file name: ``_ph``, ``_real``, ``_imaginary``, ``_fieldmaphz``, ``_e2``."""
    kind, echo, other = "magnitude", None, []
    for word in words:
        if word in KIND_SUFFIXES:
            kind = KIND_SUFFIXES[word]
        elif match := ECHO_SUFFIX.fullmatch(word):
            echo = int(match.group(1))
        else:
            other.append(word)
    return kind, echo, other


def _in_ras(image: MedicalImage) -> nib.Nifti1Image:
    return nib.as_closest_canonical(nib.Nifti1Image(image.array, image.affine))


def _assert_affines_equal(ours: nib.Nifti1Image, theirs: nib.Nifti1Image, name: str) -> None:
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-3, rtol=0,
                               err_msg=f"affine differs from {name}")


def assert_same_affine(image: MedicalImage, nifti: Path) -> None:
    """Our image's affine equals dcm2niix's, both in RAS+, within 1e-3 mm."""
    _assert_affines_equal(_in_ras(image), nib.as_closest_canonical(nib.load(nifti)),
                          nifti.name)


def assert_same_volume(image: MedicalImage, nifti: Path, *, volume: int | None = None,
                       factor: float = 1.0) -> None:
    """Our image equals dcm2niix's NIfTI: affine in RAS+ within 1e-3 mm, same voxel values.

    ``volume``: compare with that one volume of a 4D NIfTI. ``factor``: compare with
    dcm2niix's values times it (another scaling convention of the same data).

    Integers are compared exactly. Floats within 1e-6 relative, or 5% of one stored
    step: dcm2niix keeps the stored integers with a float32 scl_slope/scl_inter that it
    derives in single precision (a Philips field map's RS·SS-divided slope is off by
    6e-6 relative, 0.006 Hz at the ends of its range), while ours is scaled in float64
    and rounded once. A misplaced voxel or a wrong formula is off by a step or more.
    """
    loaded = nib.load(nifti)
    if loaded.get_data_dtype().names:
        # RGB24: scl_slope/scl_inter do not apply (nifti1.h), but dcm2niix may still
        # write a CT's RescaleIntercept there, which nibabel would add to the colours
        loaded = nib.Nifti1Image(np.asanyarray(loaded.dataobj.get_unscaled()),
                                 loaded.affine, loaded.header)
    theirs, ours = nib.as_closest_canonical(loaded), _in_ras(image)
    _assert_affines_equal(ours, theirs, nifti.name)
    expected = np.asanyarray(theirs.dataobj)  # nibabel applies scl_slope / scl_inter
    if expected.dtype.names:  # RGB24 NIfTI: a structured array of R, G, B
        expected = np.stack([expected[c] for c in "RGB"], axis=-1)
    if volume is not None:
        expected = expected[..., volume]
    if factor != 1.0:
        expected = expected * factor
    actual = np.asanyarray(ours.dataobj)
    assert actual.shape == expected.shape, f"{nifti.name}: {actual.shape} != {expected.shape}"
    if np.issubdtype(actual.dtype, np.integer):
        np.testing.assert_array_equal(actual, expected, err_msg=nifti.name)
    else:
        stored = loaded.get_data_dtype().kind in "iu"
        stored_step = abs(float(loaded.dataobj.slope) * factor) if stored else 0.0
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=0.05 * stored_step,
                                   err_msg=nifti.name)
