"""The real converter: dcm2niix (pip package ``dcm2niix``) run on real series, compared.

Each case runs ``dcm2niix -b y -z n -o TMP DIR`` and compares our ``read_image`` with its
NIfTI (``dcm2niix_reference.assert_same_volume``): the same affine in RAS+ within 1e-3 mm
and the same voxel values after its scl_slope/scl_inter. Where dcm2niix follows a
convention of its own, the case says so.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from medimg_build.io import read_image
from medimg_build.io.read_options import read_options

from dcm2niix_reference import assert_same_volume, run_dcm2niix

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


@pytest.mark.parametrize(("rel", "options", "reading"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_matches_dcm2niix(shared_data, tmp_path, rel, options, reading):
    source = shared_data / rel
    with read_options(**reading):
        image = read_image(source)
    if source.is_file():  # dcm2niix converts folders: give the one file a folder
        (tmp_path / "in").mkdir()
        shutil.copy(source, tmp_path / "in")
        source = tmp_path / "in"
    [nifti] = run_dcm2niix(source, tmp_path / "nii", options)  # one series, one volume
    assert_same_volume(image, nifti)

    bval = nifti.with_suffix(".bval")
    if bval.is_file():  # same volumes in the same order as dcm2niix's .bval
        np.testing.assert_array_equal(
            image.meta["dicom"].get("DiffusionBValues", [0.0] * image.n_channels),
            np.atleast_1d(np.loadtxt(bval)))
