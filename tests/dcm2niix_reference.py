"""dcm2niix, the field's reference DICOM converter, run from tests and compared with ours.

The binary comes with the ``dcm2niix`` pip package (part of the test extra). Without it a
test skips, except under MEDIMG_REQUIRE_SHARED_DATA=1 (CI), where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medimg_build.image import MedicalImage


def dcm2niix_binary() -> str:
    beside = Path(sys.executable).parent / "dcm2niix"
    found = str(beside) if beside.is_file() else shutil.which("dcm2niix")
    if found is None:
        message = "dcm2niix not installed (pip install dcm2niix, part of the test extra)"
        if os.environ.get("MEDIMG_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


def run_dcm2niix(binary: str, folder: Path, out: Path, options: list[str]) -> list[Path]:
    """The NIfTI files dcm2niix writes for ``folder`` (each with its BIDS .json beside)."""
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [binary, *options, "-b", "y", "-z", "n", "-o", str(out), str(folder)],
        check=False, capture_output=True, text=True, timeout=300,  # asserted below with output
    )
    assert result.returncode in (0, 2), result.stdout + result.stderr  # 2: no DICOM found
    return sorted(out.glob("*.nii"))


def assert_same_volume(image: MedicalImage, nifti: Path) -> None:
    """Our image equals dcm2niix's NIfTI: affine in RAS+ within 1e-3 mm, same voxel values.

    Integers are compared exactly. Floats within 1e-6 relative, or 5% of one stored
    step: dcm2niix keeps the stored integers with a float32 scl_slope/scl_inter that it
    derives in single precision (a Philips field map's RS·SS-divided slope is off by
    6e-6 relative, 0.006 Hz at the ends of its range), while ours is scaled in float64
    and rounded once. A misplaced voxel or a wrong formula is off by a step or more.
    """
    loaded = nib.load(nifti)
    theirs = nib.as_closest_canonical(loaded)
    ours = nib.as_closest_canonical(nib.Nifti1Image(image.array, image.affine))
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-3, rtol=0,
                               err_msg=f"affine differs from {nifti.name}")
    expected = np.asanyarray(theirs.dataobj)  # nibabel applies scl_slope / scl_inter
    if expected.dtype.names:  # RGB24 NIfTI: a structured array of R, G, B
        expected = np.stack([expected[c] for c in "RGB"], axis=-1)
    actual = np.asanyarray(ours.dataobj)
    assert actual.shape == expected.shape, f"{nifti.name}: {actual.shape} != {expected.shape}"
    if np.issubdtype(actual.dtype, np.integer):
        np.testing.assert_array_equal(actual, expected, err_msg=nifti.name)
    else:
        stored = loaded.get_data_dtype().kind in "iu"
        stored_step = abs(float(loaded.dataobj.slope)) if stored else 0.0
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=0.05 * stored_step,
                                   err_msg=nifti.name)
