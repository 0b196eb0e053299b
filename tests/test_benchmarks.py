"""The benchmark's inputs and baselines do what the report says they do: the DICOM
series and the NIfTI hold the same CT, the baselines' outputs sit on our grid, and the
decompression floor decodes exactly the bytes a store read decodes."""

from __future__ import annotations

import locale

import numcodecs
import numpy as np
import pytest
import zarr

from benchmarks import baselines
from benchmarks.ct_build import build_ours, compare_voxels
from benchmarks.inputs import make_ct_inputs, write_dicom_series
from benchmarks.reads import compressed_chunks, write_slice_stack
from medimg_build import open_store, read_image
from medimg_build.harmonize import to_ras
from medimg_build.image import MedicalImage

SMALL = (256, 224, 100)  # sub-1.5 mm in-plane, as the real size: the build downsamples it


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_data):
    return make_ct_inputs(tmp_path_factory.mktemp("bench"), SMALL)


def test_the_dicom_series_and_the_nifti_hold_the_same_ct(inputs):
    nifti, dicom = to_ras(read_image(inputs.nifti)), to_ras(read_image(inputs.dicom))
    assert nifti.spatial_shape == SMALL
    np.testing.assert_array_equal(dicom.array, nifti.array)
    np.testing.assert_allclose(dicom.affine, nifti.affine, atol=1e-5)
    assert read_image(inputs.nifti).affine[0, 0] < 0  # stored LAS, like dcm2niix
    np.testing.assert_array_equal(np.load(inputs.npy), nifti.array.T)


@pytest.mark.parametrize("source", ["nifti", "dicom"])
def test_linear_nnunet_style_resampling_gives_our_voxels(inputs, tmp_path, source):
    path = getattr(inputs, source)
    build_ours(path.parent.parent, tmp_path / "ours.zarr")
    ours = open_store(tmp_path / "ours.zarr").read_image("ct").array
    baselines.nnunet_style(path, tmp_path / "theirs.npy", order=1)
    agreement = compare_voxels(np.load(tmp_path / "theirs.npy"), ours)
    assert agreement["shape"] == list(ours.shape)
    assert agreement["max_abs_hu"] <= 1  # float32 rounding at most


def test_monai_resamples_onto_our_grid_give_or_take_a_plane(inputs, tmp_path):
    build_ours(inputs.nifti.parent.parent, tmp_path / "ours.zarr")
    ours = open_store(tmp_path / "ours.zarr").read_image("ct").array
    shape = baselines.monai_pipeline(inputs.nifti, tmp_path / "monai.npy")
    assert all(abs(theirs - mine) <= 1 for theirs, mine in zip(shape, ours.shape))
    assert compare_voxels(np.load(tmp_path / "monai.npy"), ours)["max_abs_hu"] <= 1


def test_the_blosc_floor_decodes_the_bytes_a_store_read_returns(tmp_path):
    volume = np.random.default_rng(0).integers(-1024, 3000, (7, 16, 12)).astype(np.int16)
    write_slice_stack(volume, tmp_path / "slices.zarr")
    array = zarr.open_array(tmp_path / "slices.zarr" / "image", mode="r")
    blosc = numcodecs.Blosc()
    decoded = b"".join(blosc.decode(chunk) for chunk in
                       compressed_chunks(array, tmp_path / "slices.zarr" / "image"))
    np.testing.assert_array_equal(np.frombuffer(decoded, np.int16).reshape(array.shape),
                                  array[:])
    np.testing.assert_array_equal(array[:, 0], volume)  # slice z is case z, as (y, x)



def test_writing_a_dicom_series_leaves_the_process_locale_alone(tmp_path):
    """GDCM sets it to "C" (Python's default text encoding becomes ASCII)."""
    before = locale.setlocale(locale.LC_ALL)
    image = MedicalImage(np.zeros((8, 6, 3), np.int16, order="F"), np.eye(4))
    write_dicom_series(image, tmp_path / "series")
    assert locale.setlocale(locale.LC_ALL) == before
    assert len(list((tmp_path / "series").iterdir())) == 3


def test_the_checks_are_timed_against_a_store_without_them(tmp_path):
    """The baseline of "What the read checks cost" is the same store with the codec
    chain of before (no crc32c), read by the same reader to the same pixels."""
    from zarr.codecs import Crc32cCodec

    from benchmarks.checksums import without_checksums

    volume = np.random.default_rng(0).integers(-1000, 2000, (6, 16, 12)).astype(np.int16)
    write_slice_stack(volume, tmp_path / "slices.zarr")
    plain = without_checksums(tmp_path / "slices.zarr", tmp_path / "plain.zarr",
                              ["image", "affine"])
    for name, codecs in (("image", lambda a: a.metadata.codecs[0].codecs),
                         ("affine", lambda a: a.metadata.codecs)):
        assert any(isinstance(c, Crc32cCodec)
                   for c in codecs(zarr.open_array(tmp_path / "slices.zarr" / name)))
        assert not any(isinstance(c, Crc32cCodec)
                       for c in codecs(zarr.open_array(plain / name)))
    checked, before = open_store(tmp_path / "slices.zarr"), open_store(plain)
    for case_id in checked.cases["case_id"]:
        np.testing.assert_array_equal(before.read_image(case_id).array,
                                      checked.read_image(case_id).array)


def test_the_dicom_read_steps_are_timed_inside_real_reads(inputs):
    """make bench's DICOM table: every step of the reader is clocked within read_image
    (and the reader is left as it was), the rest being the read minus the steps."""
    from benchmarks.dicom_read import REST, STEPS, read_steps
    from medimg_build.io import dicom

    reader = {function: getattr(dicom, function) for _, function in STEPS}
    steps = read_steps(inputs.dicom, repeats=1)
    assert {function: getattr(dicom, function) for _, function in STEPS} == reader
    assert set(steps) == {name for name, _ in STEPS} | {REST, "read_image (whole)"}
    assert all(seconds > 0 for seconds in steps.values())
    assert sum(steps.values()) == pytest.approx(2 * steps["read_image (whole)"])
