"""resize_with_pad's anti-aliased linear path (harmonize.separable) against its definition
and against what it replaced: SimpleITK's recursive Gaussian, then SimpleITK's linear
resampling (``itk_resize`` below is that code, as it was before issue 18).

Tolerance against the old code: ``ITK_TOLERANCE`` of the input's value range per spatial
axis. Both filters are the same Gaussian of sigma = (1/s - 1)/2 voxels followed by the
same linear interpolation; they differ only in how the Gaussian is made. ITK's is a
recursive (IIR) approximation whose impulse response is at most ``ITK_KERNEL_L1`` from
the sampled Gaussian in L1, border rows included (``test_the_tolerance_is_what_the_
two_gaussians_differ_by`` measures it). Kernels that each sum to 1 and differ by ``d`` in
L1 give results that differ by at most ``d / 2`` of the range, once per axis.
"""

from __future__ import annotations

import tracemalloc
import zlib

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image

from medimg_build.harmonize import resize_with_pad, to_ras
from medimg_build.harmonize.resample import resample_onto
from medimg_build.harmonize.separable import GAUSSIAN, axis_operator, smooth_separable
from medimg_build.image import MedicalImage

ITK_KERNEL_L1 = 0.006
ITK_TOLERANCE = ITK_KERNEL_L1 / 2
# Against the definition computed in float64: float32 sums of a few hundred products.
DEFINITION_TOLERANCE = 2e-6


# -- the code this replaced (medimg_build/harmonize/resize.py before issue 18) ---------
def _itk_antialias(image: MedicalImage, sigma: float) -> MedicalImage:
    if min(image.spatial_shape) >= 4:
        vector = image.has_channels
        source = sitk.GetImageFromArray(np.ascontiguousarray(image.array.T if not vector
                                                             else image.array),
                                        isVector=vector)
        source = sitk.Cast(source, sitk.sitkVectorFloat32 if vector else sitk.sitkFloat32)
        pixels = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(source, sigma))
        return image.replace(array=pixels if vector else pixels.T)
    width = max(3, int(2 * np.ceil(4 * sigma) + 1))

    def discrete(channel):
        source = sitk.GetImageFromArray(np.ascontiguousarray(channel, dtype=np.float32))
        return sitk.GetArrayFromImage(sitk.DiscreteGaussian(source, sigma**2, width, 0.01))

    pixels = image.array
    if not image.has_channels:
        return image.replace(array=discrete(pixels))
    return image.replace(array=np.stack([discrete(pixels[..., c])
                                         for c in range(image.n_channels)], axis=-1))


def itk_resize(image: MedicalImage, shape, pad_value: float) -> MedicalImage:
    n = image.spatial_ndim
    target = np.asarray(shape)
    old = np.asarray(image.spatial_shape, dtype=np.float64)
    s = float(np.min(target / old))
    offset = ((target - 1) - s * (old - 1)) / 2
    new_to_old = np.eye(4)
    new_to_old[:n, :n] = np.eye(n) / s
    new_to_old[:n, 3] = -offset / s
    source = _itk_antialias(image, (1 / s - 1) / 2) if s < 1 else image
    return resample_onto(source, image.affine @ new_to_old, target, "linear",
                         fill_value=pad_value)


# -- the definition, one dense float64 matrix per axis ---------------------------------
def gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """Sampled Gaussian, cut at int(4 sigma + 0.5), sum 1, the border replicated."""
    if sigma == 0:
        return np.eye(n)
    radius = int(4 * sigma + 0.5)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel /= kernel.sum()
    matrix = np.zeros((n, n))
    for row in range(n):
        for tap, weight in enumerate(kernel):
            matrix[row, min(max(row + tap - radius, 0), n - 1)] += weight
    return matrix


def linear_matrix(n: int, m: int, scale: float, offset: float,
                  ) -> tuple[np.ndarray, np.ndarray]:
    """ITK's linear interpolation at p = (u - offset) / scale; rows outside are zero and
    flagged (ITK: the buffer is [-0.5, n - 0.5), the edge value between -0.5 and 0)."""
    matrix, inside = np.zeros((m, n)), np.zeros(m, bool)
    for u in range(m):
        p = (u - offset) / scale
        if not -0.5 - 1e-9 <= p < n - 0.5 - 1e-9:
            continue
        inside[u] = True
        p = min(max(p, 0.0), n - 1.0)
        low = min(int(np.floor(p)), max(n - 2, 0))
        matrix[u, low] += 1 - (p - low)
        matrix[u, min(low + 1, n - 1)] += p - low
    return matrix, inside


def definition(image: MedicalImage, shape, pad_value: float) -> np.ndarray:
    n = image.spatial_ndim
    old = np.asarray(image.spatial_shape)
    s = float(np.min(np.asarray(shape) / old))
    sigma = (1 / s - 1) / 2 if s < 1 else 0.0
    result = image.array.astype(np.float64)
    outside = np.zeros(tuple(shape), bool)
    for axis in range(n):
        offset = ((shape[axis] - 1) - s * (old[axis] - 1)) / 2
        linear, inside = linear_matrix(int(old[axis]), int(shape[axis]), s, offset)
        matrix = linear @ gaussian_matrix(int(old[axis]), sigma)
        result = np.moveaxis(np.tensordot(matrix, result, axes=(1, axis)), 0, axis)
        outside |= ~inside.reshape([-1 if a == axis else 1 for a in range(n)])
    result[outside] = pad_value
    return result


# -- the cases -------------------------------------------------------------------------
def real_xray(shared_data) -> MedicalImage:
    """ChestX-ray14's first image, brought to the 1024 x 1024 of the real dataset."""
    pixels = Image.open(shared_data / "torchxrayvision" / "tests" / "00000001_000.png")
    pixels = np.asarray(pixels.convert("L").resize((1024, 1024), Image.BICUBIC))
    image = MedicalImage(np.asfortranarray(pixels.T), np.diag([0.143, 0.143, 1, 1]), 2,
                         {"space": "image"})
    return to_ras(image)


def generated(name: str) -> tuple[MedicalImage, tuple[int, ...]]:
    rng = np.random.default_rng(zlib.crc32(name.encode()))

    def image(array, ndim, spacing=(0.7, 0.9, 2.0)):
        return MedicalImage(array, np.diag([*spacing, 1.0]), ndim)

    noise = rng.normal(100, 30, (101, 77)).astype(np.float32)
    return {
        "float non-square padded": (image(np.asfortranarray(noise), 2), (64, 64)),
        "float odd sizes": (image(np.asfortranarray(noise), 2), (41, 33)),
        "float non-integer scale 0.37": (image(np.asfortranarray(noise), 2), (37, 37)),
        "float upsampled": (image(np.asfortranarray(noise), 2), (250, 250)),
        "uint16 512 -> 256": (image(np.asfortranarray(
            rng.integers(0, 4096, (512, 512), dtype=np.uint16)), 2), (256, 256)),
        "rgb 153 x 102 -> 51": (image(rng.integers(0, 256, (153, 102, 3), dtype=np.uint8),
                                      2), (51, 51)),
        "3D int16 padded": (image(np.asfortranarray(
            rng.integers(-1000, 2000, (60, 50, 40), dtype=np.int16)), 3), (32, 32, 32)),
        "3D float C-ordered": (image(rng.normal(size=(30, 41, 22)).astype(np.float32), 3),
                               (17, 17, 17)),
    }[name]


GENERATED = ["float non-square padded", "float odd sizes", "float non-integer scale 0.37",
             "float upsampled", "uint16 512 -> 256", "rgb 153 x 102 -> 51",
             "3D int16 padded", "3D float C-ordered"]


def on_an_edge(image: MedicalImage, shape) -> np.ndarray:
    """Output voxels whose p is exactly -0.5 or n - 0.5 on some axis (a tie), where ITK's
    answer is decided by the rounding of its index arithmetic, not by its rule."""
    step = resize_with_pad(image.replace(array=np.zeros(image.spatial_shape, np.float32)),
                           shape).history[-1].params
    tie = np.zeros(tuple(shape), bool)
    for axis, (n, m) in enumerate(zip(image.spatial_shape, shape)):
        p = (np.arange(m) - step["offset"][axis]) / step["scale"][axis]
        edge = np.isclose(p, -0.5, rtol=0, atol=1e-9) | np.isclose(p, n - 0.5, rtol=0,
                                                                     atol=1e-9)
        tie |= edge.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return tie


def check_against_old(image: MedicalImage, shape) -> None:
    pad = float(image.array.min()) - 1  # a value no voxel of the content takes
    new = resize_with_pad(image, shape, pad_value=pad)
    old = itk_resize(image, shape, pad)
    assert np.array_equal(new.affine, old.affine)
    assert new.array.dtype == old.array.dtype == np.float32
    assert new.array.shape == old.array.shape and new.array.strides == old.array.strides
    compared = ~on_an_edge(image, shape)
    new_pixels, old_pixels = new.array[compared], old.array[compared]
    np.testing.assert_array_equal(new_pixels == pad, old_pixels == pad)  # the pad band
    tolerance = ITK_TOLERANCE * image.spatial_ndim * np.ptp(image.array.astype(np.float64))
    np.testing.assert_allclose(new_pixels, old_pixels, rtol=0, atol=tolerance)


@pytest.mark.parametrize("shape", [(512, 512), (224, 300)])
def test_the_real_xray_is_what_itk_made_within_tolerance(shared_data, shape):
    check_against_old(real_xray(shared_data), shape)


@pytest.mark.parametrize("name", GENERATED)
def test_generated_images_are_what_itk_made_within_tolerance(name):
    check_against_old(*generated(name))


@pytest.mark.parametrize("name", [*GENERATED, "thin"])
def test_resize_is_its_definition(name):
    """Gaussian sampled at integers, cut at 4 sigma, border replicated, then ITK's linear
    interpolation rule: to float32 rounding (ITK's filters were 0.3 % off it; for images
    under 4 voxels thick, ITK's discrete Gaussian of 1 % maximum error, up to 7 %)."""
    if name == "thin":
        image = MedicalImage(np.random.default_rng(3).normal(size=(40, 3, 30))
                             .astype(np.float32), np.eye(4), 3)
        shape = (20, 20, 15)
    else:
        image, shape = generated(name)
    pad = float(image.array.min()) - 1
    result = resize_with_pad(image, shape, pad_value=pad).array
    assert (result != pad).mean() > 0.05
    channels = range(image.n_channels) if image.has_channels else [None]
    for c in channels:
        one = image if c is None else image.replace(array=image.array[..., c])
        expected = definition(one, shape, pad)
        got = result if c is None else result[..., c]
        tolerance = DEFINITION_TOLERANCE * max(1.0, np.abs(expected).max())
        np.testing.assert_allclose(got, expected, rtol=0, atol=tolerance)


def test_the_tolerance_is_what_the_two_gaussians_differ_by():
    """ITK's recursive Gaussian, row by row on a line (its border rows too), against the
    sampled Gaussian with the border replicated: within ITK_KERNEL_L1 in L1."""
    for sigma in [0.1, 0.25, 0.5, 1.0, 1.5, 3.5, 8.0]:
        n = int(max(40, 12 * sigma))
        impulses = np.zeros((n, 4, n), np.float32)
        impulses[np.arange(n), :, np.arange(n)] = 1
        responses = np.stack([
            sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(
                sitk.GetImageFromArray(impulse), sigma))[1] for impulse in impulses], axis=1)
        distance = np.abs(responses - gaussian_matrix(n, sigma)).sum(axis=1).max()
        assert distance <= ITK_KERNEL_L1, sigma


def test_itk_tie_rule_at_the_buffer_edge():
    """A sample exactly on the image's outer edge, p = -0.5, is inside and takes the edge
    value; one exactly on p = n - 0.5 gets the pad value: ITK's half-open buffer. Here
    (11 columns centred in 20 at scale 1) ITK's arithmetic is exact, and the two agree."""
    array = np.asfortranarray(np.arange(20 * 11, dtype=np.float32).reshape(20, 11))
    image = MedicalImage(array, np.eye(4), 2)
    new = resize_with_pad(image, (20, 20), pad_value=-1).array
    old = itk_resize(image, (20, 20), -1.0).array
    np.testing.assert_array_equal(new, old)
    assert np.all(new[:, :4] == -1) and np.all(new[:, 15:] == -1)
    np.testing.assert_array_equal(new[:, 4], array[:, 0])  # p = -0.5: the edge value
    np.testing.assert_array_equal(new[:, 14], (array[:, 9] + array[:, 10]) / 2)  # p = 9.5


@pytest.mark.parametrize("ndim, old, new", [
    (2, (99, 60), (40, 40)), (3, (30, 24, 17), (11, 11, 11)), (2, (20, 3), (37, 37))])
def test_a_constant_stays_constant_inside_the_content(ndim, old, new):
    image = MedicalImage(np.full(old, 7.25, np.float32), np.eye(4), ndim)
    result = resize_with_pad(image, new, pad_value=-1).array
    content = result != -1
    assert content.any()
    np.testing.assert_allclose(result[content], 7.25, rtol=1e-6)


@pytest.mark.parametrize("size", [29, 32, 38, 43, 58])  # scales 0.30 .. 0.60
def test_a_nyquist_checkerboard_is_suppressed_at_least_as_much_as_before(size):
    """The finest pattern there is: interpolated without smoothing it aliases into a
    coarse pattern of nearly its full amplitude (ptp > 0.85 at these scales); smoothed, by
    as much as ITK's filter did (within 0.1 % of the pattern), and below 0.1 for s < 0.5."""
    n = 96
    board = np.indices((n, n)).sum(axis=0) % 2
    image = MedicalImage(np.asfortranarray(board.astype(np.float32)), np.eye(4), 2)
    shape, inner = (size, size), (slice(3, -3),) * 2  # away from the replicated border
    result = resize_with_pad(image, shape, pad_value=0)
    step = result.history[-1].params
    new_to_old = np.eye(4)
    new_to_old[:2, :2] /= step["scale"][0]
    new_to_old[:2, 3] = -np.asarray(step["offset"]) / step["scale"][0]
    unsmoothed = resample_onto(image, new_to_old, shape, "linear").array[inner]
    new, old = result.array[inner], itk_resize(image, shape, 0.0).array[inner]
    assert np.ptp(unsmoothed) > 0.85
    assert np.isclose(new.mean(), 0.5, atol=0.01)
    assert np.ptp(new) <= np.ptp(old) + 1e-3
    if step["scale"][0] < 0.5:
        assert np.ptp(new) < 0.1


def test_the_recorded_step_names_the_filter():
    image = MedicalImage(np.zeros((40, 30), np.float32), np.eye(4), 2)
    down = resize_with_pad(image, (20, 20)).history[-1].params
    assert down["antialias"] == GAUSSIAN == "gaussian-sampled-4sigma"
    assert down["antialias_sigma"] == [0.5, 0.5]
    for interpolation, shape in [("linear", (80, 80)), ("nearest", (20, 20))]:
        params = resize_with_pad(image, shape, interpolation).history[-1].params
        assert params["antialias"] is None and params["antialias_sigma"] is None
    params = resize_with_pad(image, (20, 20), "bspline").history[-1].params
    assert params["antialias"] == GAUSSIAN


def test_bspline_is_smoothed_by_the_same_gaussian():
    array = np.random.default_rng(5).normal(size=(33, 47)).astype(np.float32)
    smoothed = smooth_separable(np.asfortranarray(array), 2, 1.5)
    expected = gaussian_matrix(33, 1.5) @ array @ gaussian_matrix(47, 1.5).T
    np.testing.assert_allclose(smoothed, expected, rtol=0, atol=1e-5)


def test_cached_operators_cannot_be_changed():
    op = axis_operator(100, 40, 0.4, 0.3, 0.75)
    assert op is axis_operator(100, 40, 0.4, 0.3, 0.75)
    with pytest.raises(ValueError):
        op.blocks[0][4][0, 0] = 1.0


def test_a_large_radiograph_is_never_copied_whole_as_float():
    """The source is cast to float32 a block of rows at a time: the peak of numpy's
    allocations is the first axis's output (512 x 3000 here), not a float copy of the
    image (ITK's path made one, 36 MB, before its own buffers)."""
    pixels = np.asfortranarray(np.random.default_rng(0).integers(0, 255, (3000, 3000),
                                                                   dtype=np.uint8))
    image = MedicalImage(pixels, np.eye(4), 2)
    tracemalloc.start()
    try:
        resize_with_pad(image, (512, 512))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 0.25 * pixels.size * 4
