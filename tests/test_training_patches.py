"""Patches of CaseDataset (medimg_build/training/sampling.py): larger than a case,
padded as nnU-Net pads them; a share centred on foreground as nnU-Net oversamples it;
and every patch, foreground or not, reads only its own chunks."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_build import open_store
from medimg_build.case import Case
from medimg_build.errors import StoreError
from medimg_build.image import MedicalImage
from medimg_build.store.chunk_reads import LocalShardArray
from medimg_build.training import CaseDataset

import test_store_volumes as volumes_tests  # noqa: E402  (tests/ is on sys.path)


def _voxel_start(item: dict, case_affine: np.ndarray) -> np.ndarray:
    """Where voxel 0 of an item lies in its case, in stored (z, y, x) index order."""
    start = np.linalg.solve(case_affine, item["affine"][:, 3])[:3]
    assert np.allclose(start, np.round(start), atol=1e-6)
    return np.round(start).astype(int)[::-1]


def _sparse_store(path, shape=(11, 7, 4)):
    """Two volumes (in-memory (x, y, z) ``shape``) whose masks hold little foreground:
    class 1 in 4 voxels of slice z=1, class 2 in one voxel of slice z=3 (stored
    (z, y, x): class 2 at (3, 6, 9))."""
    cases = []
    for i in range(2):
        affine = volumes_tests.ras_affine(i)
        image = np.random.default_rng(i).integers(-1024, 3000, shape, dtype=np.int16)
        mask = np.zeros(shape, np.uint8)
        mask[1:3, 2:4, 1] = 1
        mask[9, 6, 3] = 2
        cases.append(Case(f"case_{i}", MedicalImage(image, affine), MedicalImage(mask, affine),
                          labels={"tumour": 0}))
    return volumes_tests.build(path, cases)


def test_a_patch_larger_than_the_case_is_padded_around_it(tmp_path):
    """nnU-Net's placement: along an axis where the patch is larger, the case sits in
    its middle (start in [-ceil(need/2), -floor(need/2)]); the image is padded with
    ``pad_value``, the mask with 0, and the affine still places every voxel."""
    path = volumes_tests.build(tmp_path / "v.zarr", [volumes_tests.ct_case(0)])
    store = open_store(path)
    case = store.case("liver_00")
    image, mask = case["image"].values, case["mask"].values
    affine = np.asarray(case.attrs["affine"])
    assert image.shape == (1, 4, 7, 11)
    seen = set()
    for epoch in range(8):
        data = CaseDataset(path, patch_size=(6, 5, 16), pad_value=-2000, seed=epoch)
        item = data[0]
        z, y, x = _voxel_start(item, affine)
        seen.add((int(z), int(x)))
        assert z == -1 and 0 <= y <= 2 and x in (-3, -2)  # need 2 -> -1; need 5 -> -3..-2
        assert item["image"].shape == (1, 6, 5, 16) and item["mask"].shape == (6, 5, 16)
        inside = (slice(-z, -z + 4), slice(None), slice(-x, -x + 11))
        np.testing.assert_array_equal(item["image"][(0,) + inside], image[0, :, y:y + 5])
        np.testing.assert_array_equal(item["mask"][inside], mask[:, y:y + 5])
        outside = np.ones((6, 5, 16), bool)
        outside[inside] = False
        assert (item["image"][0][outside] == -2000).all() and (item["mask"][outside] == 0).all()
        assert item["image"].flags.writeable and item["mask"].flags.writeable
    assert len(seen) > 1  # the voxel of jitter nnU-Net allows


def test_foreground_oversampling_centres_patches_on_a_present_class(tmp_path):
    """With ``oversample_foreground=1`` every patch holds the voxel it was centred on,
    of a class drawn from those present: both classes come up, the one-voxel class as
    often as the larger one (classes are drawn first, as nnU-Net draws them)."""
    path = _sparse_store(tmp_path / "v.zarr", shape=(40, 40, 8))
    hits = {1: 0, 2: 0}
    for epoch in range(40):
        data = CaseDataset(path, patch_size=(2, 6, 6), oversample_foreground=1.0,
                           seed=epoch)
        for index in range(len(data)):
            values = set(np.unique(data[index]["mask"]).tolist()) - {0}
            assert values, f"epoch {epoch}, case {index}: a patch without foreground"
            for value in values:
                hits[value] += 1
    assert hits[2] > 25 and hits[1] > 25  # of 80 patches, each class about half


def test_the_foreground_share_is_the_share_of_patches_centred(tmp_path):
    """Random patches of a large case almost never hold its few foreground voxels; with
    a share of 0.5 about half of them do (each patch drawn with that probability, as
    nnU-Net's probabilistic oversampling)."""
    path = _sparse_store(tmp_path / "v.zarr", shape=(64, 64, 8))
    share = {}
    for oversample in (0.0, 0.5):
        data = CaseDataset(path, patch_size=(2, 8, 8), oversample_foreground=oversample)
        found = 0
        for epoch in range(100):
            data.set_epoch(epoch)
            found += sum(bool(data[i]["mask"].any()) for i in range(len(data)))
        share[oversample] = found / (100 * len(data))
    assert share[0.0] < 0.1
    assert 0.38 < share[0.5] < 0.65  # 200 draws: 0.5 +- 2.4 standard deviations, + chance


def test_slices_can_be_centred_on_foreground_too(tmp_path):
    path = _sparse_store(tmp_path / "v.zarr", shape=(20, 20, 8))
    for epoch in range(10):
        data = CaseDataset(path, slice_axis="z", oversample_foreground=1.0, seed=epoch)
        item = data[0]
        assert item["image"].shape == (1, 20, 20) and item["mask"].any()


def test_foreground_needs_masks_and_a_share_from_0_to_1(reference_stores):
    with pytest.raises(StoreError, match="has no mask to find foreground in"):
        CaseDataset(reference_stores.xray, patch_size=(64, 64), oversample_foreground=0.5,
                    seed=0)[[0, 1, 2, 3, 4, 5]]
    with pytest.raises(ValueError, match="from 0 to 1"):
        CaseDataset(reference_stores.ct, patch_size=(8, 8, 8), oversample_foreground=33)
    with pytest.raises(ValueError, match="give slice_axis or patch_size too"):
        CaseDataset(reference_stores.ct, oversample_foreground=0.5)


@pytest.fixture
def chunk_reads(monkeypatch):
    """Every chunk the store's chunk reader decodes, as (array path, chunk index)."""
    reads: list[tuple[str, tuple[int, ...]]] = []
    chunk = LocalShardArray._chunk

    def recorded(self, where, out=None):
        reads.append((self.array.path, tuple(int(i) for i in where)))
        return chunk(self, where, out)

    monkeypatch.setattr(LocalShardArray, "_chunk", recorded)
    return reads


def _window_chunks(item: dict, affine: np.ndarray, depth: int, patch_depth: int) -> set:
    """The z-slices (chunks: one slice each) a patch of ``patch_depth`` covers."""
    z = int(_voxel_start(item, affine)[0])
    return set(range(max(z, 0), min(z + patch_depth, depth)))


@pytest.mark.parametrize("oversample", [0.0, 1.0])
def test_a_patch_reads_only_its_chunks(reference_stores, chunk_reads, oversample):
    """A patch decodes the image and mask chunks (2D slices) under it and no other --
    with foreground oversampling too: only the first patch of a case counts its mask's
    classes (one read of the whole mask, once per case and process); each later one
    reads the one mask slice holding its voxel, which is under the patch."""
    case = open_store(reference_stores.ct).case("ct")
    affine, depth = np.asarray(case.attrs["affine"]), case["image"].shape[1]
    patch = (6, 48, 40)
    data = CaseDataset(reference_stores.ct, patch_size=patch, oversample_foreground=oversample)
    data[0]  # opens the case (and counts the classes of its mask)
    first_mask_reads = {where for path, where in chunk_reads if path.endswith("mask")}
    assert len(first_mask_reads) == (depth if oversample else patch[0])
    for epoch in range(1, 8):
        data.set_epoch(epoch)
        chunk_reads.clear()
        item = data[0]
        under = _window_chunks(item, affine, depth, patch[0])
        image_chunks = {where for path, where in chunk_reads if path.endswith("image")}
        mask_chunks = {where for path, where in chunk_reads if path.endswith("mask")}
        assert image_chunks == {(0, z, 0, 0) for z in under}
        assert mask_chunks == {(z, 0, 0) for z in under}
        if oversample:
            assert item["mask"].any()
