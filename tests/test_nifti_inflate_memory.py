"""A .nii.gz is inflated straight into its voxel array: no second copy of the voxels
at the read's peak (GzipFile.readinto inflates into a temporary bytes first)."""

from __future__ import annotations

import tracemalloc

import nibabel as nib
import numpy as np

from medimg_build import read_image


def test_gzip_voxels_inflated_into_the_array(tmp_path):
    rng = np.random.default_rng(0)
    voxels = rng.integers(-1024, 3000, (256, 256, 64), dtype=np.int16)  # 8 MiB
    path = tmp_path / "ct.nii.gz"
    nib.save(nib.Nifti1Image(voxels, np.diag([-0.8, -0.8, 2.0, 1.0])), path)
    tracemalloc.start()
    try:
        image = read_image(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(image.array, voxels)
    # The array itself, plus slack for headers and the inflater's window; a second
    # copy of the voxels would put the peak at twice the array.
    assert peak < 1.3 * voxels.nbytes
