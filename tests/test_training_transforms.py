"""``CaseDataset(..., transform=...)``: every item goes through the callable -- a
plain function, MONAI's dictionary transforms and TorchIO's transforms -- in a
DataLoader with worker processes, the geometry kept right (adapters.py)."""

from __future__ import annotations

import numpy as np
import pytest

from medimg_build import open_store
from medimg_build.training import CaseDataset, TorchioTransform, as_monai

import test_store_formats as formats_tests  # noqa: E402  (tests/ is on sys.path)
import test_store_volumes as volumes_tests  # noqa: E402

torch = pytest.importorskip("torch")
DataLoader = torch.utils.data.DataLoader


@pytest.fixture
def volumes(tmp_path):
    """Three cases of three shapes, stored (1, 4+i, 7, 11+i); the third oblique."""
    return volumes_tests.build(tmp_path / "v.zarr", formats_tests.volume_cases())


def _voxel_start(affine: np.ndarray, case_affine: np.ndarray) -> np.ndarray:
    """Where voxel 0 of an item lies in its case, in stored (z, y, x) index order."""
    start = np.linalg.solve(case_affine, np.asarray(affine)[:, 3])[:3]
    assert np.allclose(start, np.round(start), atol=1e-6)
    return np.round(start).astype(int)[::-1]


def _doubled(item: dict) -> dict:  # module level: worker processes unpickle it
    return {**item, "image": item["image"] * 2, "seen": True}


@pytest.mark.parametrize("store, kwargs", [("xray", {}), ("ct", {"slice_axis": "z"})])
def test_any_callable_transforms_every_item_and_batch(reference_stores, store, kwargs):
    """Items one by one, the items of a batch of a stack store read together
    (``__getitems__``) and whole batches (``batches``) all go through it."""
    location = getattr(reference_stores, store)
    plain = CaseDataset(location, **kwargs)
    data = CaseDataset(location, transform=_doubled, **kwargs)
    np.testing.assert_array_equal(data[0]["image"], plain[0]["image"] * 2)
    assert data[0]["seen"] is True
    n = min(len(data), 4)
    for row, item in enumerate(data.__getitems__(list(range(n)))):
        np.testing.assert_array_equal(item["image"], plain[row]["image"] * 2)
    for batch in DataLoader(data, batch_size=2, num_workers=2):
        for row, index in enumerate(batch["index"].tolist()):
            np.testing.assert_array_equal(batch["image"][row].numpy(),
                                          plain[index]["image"] * 2)
    whole = next(iter(DataLoader(data, batch_size=None, sampler=data.batches(n))))
    assert whole["seen"].tolist() == [True] * n
    np.testing.assert_array_equal(whole["image"].numpy(),
                                  np.stack([plain[i]["image"] * 2 for i in range(n)]))
    with pytest.raises(TypeError, match="transform must be callable"):
        CaseDataset(location, transform="flip")


# -- MONAI --------------------------------------------------------------------------------
def test_monai_dictionary_transforms_in_a_dataloader(volumes):
    """MONAI's transforms on the items as they are: the mask given its channel
    (``EnsureChannelFirstd(channel_dim="no_channel")``), then a random flip along x of
    image and mask together and an intensity rescale, with two workers."""
    mt = pytest.importorskip("monai.transforms")
    transform = mt.Compose([
        mt.EnsureChannelFirstd(keys="mask", channel_dim="no_channel"),
        mt.RandFlipd(keys=["image", "mask"], prob=1.0, spatial_axis=2),  # stored x
        mt.ScaleIntensityd(keys="image", minv=0.0, maxv=1.0),
    ])
    patch = (3, 6, 8)
    data = CaseDataset(volumes, patch_size=patch, seed=4, transform=transform)
    store = open_store(volumes)
    rows = 0
    for batch in DataLoader(data, batch_size=3, num_workers=2):
        assert batch["image"].shape == (3, 1, *patch) and batch["mask"].shape == (3, 1, *patch)
        for row, case_id in enumerate(batch["case_id"]):
            case = store.case(case_id)
            z, y, x = _voxel_start(batch["affine"][row].numpy(),
                                   np.asarray(case.attrs["affine"]))
            window = (slice(z, z + 3), slice(y, y + 6), slice(x, x + 8))
            image = case["image"].values[(0,) + window][..., ::-1].astype(np.float64)
            expected = (image - image.min()) / (image.max() - image.min())
            np.testing.assert_allclose(batch["image"][row, 0].numpy(), expected, atol=1e-5)
            np.testing.assert_array_equal(batch["mask"][row, 0].numpy(),
                                          case["mask"].values[window][..., ::-1])
            rows += 1
    assert rows == 3


def test_monai_reads_the_geometry_of_as_monai_items_as_it_reads_the_nifti(reference_stores):
    """``as_monai`` gives MONAI the item's geometry in the array's own axis order:
    ``Orientationd(axcodes="RAS")`` then turns a case into exactly what MONAI's own
    ``LoadImaged`` + ``EnsureChannelFirstd`` + ``Orientationd`` make of the source NIfTI
    (same voxels, same affine) -- and its mask into the source segmentation."""
    mt = pytest.importorskip("monai.transforms")
    source = reference_stores.root / "ct"
    load = mt.Compose([
        mt.LoadImaged(keys=["image", "mask"], image_only=True),
        mt.EnsureChannelFirstd(keys=["image", "mask"]),
        mt.Orientationd(keys=["image", "mask"], axcodes="RAS"),
    ])
    theirs = load({"image": str(source / "images" / "ct.nii.gz"),
                   "mask": str(source / "labels" / "ct.nii.gz")})
    ours = mt.Compose([as_monai, mt.Orientationd(keys=["image", "mask"], axcodes="RAS")])
    data = CaseDataset(reference_stores.ct, transform=ours)
    item = data[0]
    assert item["image"].shape == theirs["image"].shape
    window = (-1024, 3071)  # the volume-folder recipe's CT window: the store's HU, clipped
    np.testing.assert_array_equal(item["image"].numpy(),
                                  np.clip(theirs["image"].numpy(), *window))
    np.testing.assert_array_equal(item["mask"].numpy(), theirs["mask"].numpy())
    np.testing.assert_allclose(item["image"].affine.numpy(), theirs["image"].affine.numpy(),
                               atol=1e-4)
    np.testing.assert_allclose(item["mask"].affine.numpy(), theirs["image"].affine.numpy(),
                               atol=1e-4)


# -- TorchIO ------------------------------------------------------------------------------
def test_torchio_transforms_in_a_dataloader_keep_the_geometry(volumes):
    """``TorchioTransform``: a ``tio.CropOrPad`` to one shape (which moves the affine)
    and a flip along the patient's left-right axis, with two workers: each item is
    the stored case at the place its new affine gives, flipped along stored x, image
    and mask alike; the other keys pass through."""
    tio = pytest.importorskip("torchio")
    target = (9, 7, 3)  # TorchIO's (x, y, z): crops x and z of every case
    transform = TorchioTransform(tio.Compose([
        tio.CropOrPad(target), tio.RandomFlip(axes=("LR",), flip_probability=1.0)]))
    data = CaseDataset(volumes, transform=transform)
    store = open_store(volumes)
    seen = []
    for batch in DataLoader(data, batch_size=2, num_workers=2):
        assert tuple(batch["image"].shape[1:]) == (1, 3, 7, 9)  # ours: (C, z, y, x)
        for row, case_id in enumerate(batch["case_id"]):
            case = store.case(case_id)
            case_affine = np.asarray(case.attrs["affine"])
            affine = batch["affine"][row].numpy()
            z, y, x = _voxel_start(affine, case_affine)
            assert (z, y, x) != (0, 0, 0)  # CropOrPad cropped from the middle
            window = (slice(z, z + 3), slice(y, y + 7), slice(x, x + 9))
            flip = (Ellipsis, slice(None, None, -1))  # left-right: stored x, oblique or not
            np.testing.assert_array_equal(batch["image"][row].numpy(),
                                          case["image"].values[(slice(None),) + window][flip])
            np.testing.assert_array_equal(batch["mask"][row].numpy(),
                                          case["mask"].values[window][flip])
            np.testing.assert_allclose(batch["origin"][row].numpy(), affine[:3, 3][::-1])
            np.testing.assert_allclose(batch["spacing"][row].numpy(),
                                       np.asarray(case.attrs["spacing"]), atol=1e-6)
            seen.append(case_id)
    assert sorted(seen) == ["liver_00", "liver_01", "liver_02"]


def test_torchio_transforms_2d_slices(reference_stores):
    """A slice (C, y, x) goes to TorchIO as depth 1 and comes back 2D."""
    tio = pytest.importorskip("torchio")
    case = open_store(reference_stores.ct).case("ct")
    data = CaseDataset(reference_stores.ct, slice_axis="z", seed=1,
                       transform=TorchioTransform(tio.CropOrPad((20, 30, 1))))
    item = data[0]
    assert tuple(item["image"].shape) == (1, 30, 20) and tuple(item["mask"].shape) == (30, 20)
    z, y, x = _voxel_start(item["affine"], np.asarray(case.attrs["affine"]))
    np.testing.assert_array_equal(item["image"].numpy(),
                                  case["image"].values[:, z, y:y + 30, x:x + 20])
    np.testing.assert_array_equal(item["mask"].numpy(),
                                  case["mask"].values[z, y:y + 30, x:x + 20])
