"""The real converter: dcm2niix (pip package ``dcm2niix``) run on real series, compared.

Each case runs ``dcm2niix -b y -z n -o TMP DIR`` and compares our ``read_image`` with its
NIfTI: the same affine in RAS+ within 1e-3 mm and the same voxel values after its
scl_slope/scl_inter. Where dcm2niix follows a convention of its own, the case says so.
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

from medimg_build.io import read_image
from medimg_build.io.read_options import read_options

# (id, path under shared data, extra dcm2niix options, our read options)
CASES = [
    ("dicom2nifti-anatomical", "dicom2nifti/anatomical/001", [], {}),
    ("rescale-per-slice", "dicom2nifti/generic/anatomical/002_non_isotropic", [], {}),
    ("rgb", "dicom2nifti/generic/rgb/001", [], {}),
    ("totalsegmentator-ct-j2k", "totalsegmentator/example_ct_dicom", [], {}),
    ("ge-4d-fmri", "dcm_qa_nih/In/20180918GE/mr_0004", [], {}),
    ("ge-dti", "dicom2nifti/ge/dti/001", [], {}),
    ("siemens-mosaic", "dcm_qa_ts/In/1.dcm", [], {}),
    ("siemens-4d-mosaic", "dcm_qa_nih/In/20180918Si/mr_0003", [], {}),
    ("siemens-enhanced", "dicom2nifti/siemens_multiframe/anatomical/001", [], {}),
    # Philips: dcm2niix's default -p y writes "precise" values, stored * RS + RI divided by
    # RS * the private ScaleSlope 2005,100E, as we do by default; its -p n the displayed
    # values (RescaleSlope/Intercept only), our read option philips_scaling="display".
    ("philips-enhanced-anatomical", "dicom2nifti/philips_enhanced/anatomical/001", [], {}),
    ("philips-enhanced-dti", "dicom2nifti/philips_enhanced/dti/001", [], {}),
    ("philips-enhanced-dti-display", "dicom2nifti/philips_enhanced/dti/001", ["-p", "n"],
     {"philips_scaling": "display"}),
]


def _dcm2niix() -> str:
    beside = Path(sys.executable).parent / "dcm2niix"
    found = str(beside) if beside.is_file() else shutil.which("dcm2niix")
    if found is None:
        message = "dcm2niix not installed (pip install dcm2niix, part of the test extra)"
        if os.environ.get("MEDIMG_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def dcm2niix() -> str:
    return _dcm2niix()


def _convert(dcm2niix: str, source: Path, out: Path, options: list[str]) -> Path:
    if source.is_file():  # dcm2niix converts folders: give the one file a folder
        (out / "in").mkdir(parents=True)
        source = Path(shutil.copy(source, out / "in" / source.name)).parent
    (out / "nii").mkdir(parents=True)
    result = subprocess.run(
        [dcm2niix, *options, "-b", "y", "-z", "n", "-o", str(out / "nii"), str(source)],
        check=False, capture_output=True, text=True, timeout=60,  # asserted below with output
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [nifti] = sorted((out / "nii").glob("*.nii"))  # one series in, one volume out
    return nifti


@pytest.mark.parametrize(("rel", "options", "reading"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_matches_dcm2niix(shared_data, dcm2niix, tmp_path, rel, options, reading):
    source = shared_data / rel
    with read_options(**reading):
        image = read_image(source)
    nifti = _convert(dcm2niix, source, tmp_path, options)
    theirs = nib.as_closest_canonical(nib.load(nifti))
    ours = nib.as_closest_canonical(nib.Nifti1Image(image.array, image.affine))
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-3, rtol=0)

    expected = np.asanyarray(theirs.dataobj)  # nibabel applies scl_slope / scl_inter
    if expected.dtype.names:  # RGB24 NIfTI: a structured array of R, G, B
        expected = np.stack([expected[c] for c in "RGB"], axis=-1)
    actual = np.asanyarray(ours.dataobj)
    assert actual.shape == expected.shape
    if np.issubdtype(actual.dtype, np.integer):
        # Integers compared exactly (dcm2niix writes uint16 that fits as int16: values).
        np.testing.assert_array_equal(actual, expected)
    else:
        # Float data: dcm2niix keeps the stored integers with a float32 scl_slope (or
        # scales in float32); ours is scaled in float64 and rounded once to float32.
        np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=0)

    bval = nifti.with_suffix(".bval")
    if bval.is_file():  # same volumes in the same order as dcm2niix's .bval
        np.testing.assert_array_equal(
            image.meta["dicom"].get("DiffusionBValues", [0.0] * image.n_channels),
            np.atleast_1d(np.loadtxt(bval)))
