"""Red-team findings on the training hand-offs (issue 19): each test failed on 6524527.

Conventions checked against the libraries' own code (site-packages): MONAI's
``LoadImage`` meta and ``EnsureChannelFirst`` (monai/data/image_reader.py,
monai/transforms/utility/array.py), its ``list_data_collate`` and
``collate_meta_tensor_fn`` (monai/data/utils.py); TorchIO's resampling through
SimpleITK (torchio/data/io.py ``nib_to_sitk``), which has no float16.
"""

from __future__ import annotations

import numpy as np
import pytest

from medimg_build import open_store
from medimg_build.errors import StoreError
from medimg_build.training import CaseDataset, TorchioTransform, as_monai, pad_collate

torch = pytest.importorskip("torch")


def _mm(affine, index) -> np.ndarray:
    return (np.asarray(affine, dtype=np.float64) @ np.array([*index, 1.0]))[:3]


# -- slices along y and x: the item's affine is that of its own 2D array -----------------
@pytest.mark.parametrize("axis", ["y", "x"])
def test_a_slice_along_y_or_x_has_the_affine_of_its_own_array(reference_stores, axis):
    """An item (C, a, b) cut along ``axis`` has an affine whose (column, row) = (b, a)
    lands where the case's voxel is -- before, the case's (x, y) columns were kept, so
    a y-slice (C, z, x) was placed as if it were (C, y, x): MONAI and TorchIO got the
    wrong geometry."""
    case = open_store(reference_stores.ct).case("ct")
    volume, case_affine = case["image"].values[0], np.asarray(case.attrs["affine"])
    ax = "zyx".index(axis)
    item = CaseDataset(reference_stores.ct, slice_axis=axis, seed=3)[0]
    k = next(i for i in range(volume.shape[ax])
             if np.array_equal(np.take(volume, i, axis=ax), item["image"][0]))
    a, b = 5, 7  # a voxel (row a, column b) of the 2D item
    stored = [a, b]
    stored.insert(ax, k)  # the same voxel in the case, stored (z, y, x)
    np.testing.assert_allclose(_mm(item["affine"], (b, a, 0)), _mm(case_affine, stored[::-1]),
                               atol=1e-4)
    # and MONAI reads it so: the MetaTensor's affine indexes the array as it is
    image = as_monai(item)["image"]
    np.testing.assert_allclose(_mm(image.affine.numpy(), (a, b, 0)),
                               _mm(case_affine, stored[::-1]), atol=1e-4)


# -- as_monai: the meta MONAI's transforms read -----------------------------------------
def test_as_monai_items_go_through_ensure_channel_first_and_carry_load_image_meta(
        reference_stores):
    """A MONAI pipeline written for ``LoadImaged`` keeps its ``EnsureChannelFirstd`` when
    ``as_monai`` replaces the loader: it raised "Unknown original_channel_dim"."""
    mt = pytest.importorskip("monai.transforms")
    data = CaseDataset(reference_stores.ct, transform=mt.Compose([
        as_monai, mt.EnsureChannelFirstd(keys=["image", "mask"])]))
    item = data[0]
    stored = open_store(reference_stores.ct).case("ct")["image"].shape
    assert tuple(item["image"].shape) == tuple(stored)
    assert tuple(item["mask"].shape) == (1, *stored[1:])
    meta = item["image"].meta
    assert list(meta["spatial_shape"]) == list(stored[1:])
    assert meta["original_channel_dim"] == 0 and meta["filename_or_obj"] == "ct"
    np.testing.assert_allclose(np.asarray(meta["original_affine"]), item["image"].affine)


# -- TorchIO on a float16 store ----------------------------------------------------------
def test_torchio_resampling_transforms_take_a_float16_picture_store(reference_stores):
    """The stack store holds float16 (normalized): TorchIO's ``RandomAffine`` and
    ``Resample`` go through SimpleITK, which raised "dtype: float16 is not supported"."""
    tio = pytest.importorskip("torchio")
    plain = CaseDataset(reference_stores.xray)[0]
    assert plain["image"].dtype == np.float16
    item = CaseDataset(reference_stores.xray, transform=TorchioTransform(
        tio.RandomAffine(degrees=0, scales=0, translation=0)))[0]  # identity: same voxels
    assert item["image"].dtype == torch.float32
    np.testing.assert_allclose(item["image"].numpy(), plain["image"].astype(np.float32),
                               atol=1e-3)
    resampled = CaseDataset(reference_stores.xray,
                            transform=TorchioTransform(tio.Resample((2.0, 2.0, 1.0))))[0]
    np.testing.assert_allclose(resampled["spacing"], [2.0, 2.0])


# -- pad_collate ------------------------------------------------------------------------
def test_pad_collate_joins_the_lists_of_rand_crop_by_pos_neg_label(reference_stores):
    """MONAI's ``RandCropByPosNegLabeld(num_samples=n)`` gives a list per case: joined
    into one batch as ``list_data_collate`` does (it raised a TypeError)."""
    mt = pytest.importorskip("monai.transforms")
    data = CaseDataset(reference_stores.ct, transform=mt.Compose([
        as_monai, mt.RandCropByPosNegLabeld(keys=["image", "mask"], label_key="mask",
                                            spatial_size=(8, 16, 16), num_samples=3)]))
    loader = torch.utils.data.DataLoader(data, batch_size=1, collate_fn=pad_collate,
                                         num_workers=1)
    batch = next(iter(loader))
    assert tuple(batch["image"].shape) == (3, 1, 8, 16, 16)
    assert tuple(batch["mask"].shape) == (3, 1, 8, 16, 16)
    assert batch["case_id"] == ["ct"] * 3


def test_pad_collate_gives_a_meta_tensor_batch_each_item_its_affine(reference_stores):
    """MetaTensors collated as MONAI collates them: ``.affine`` (batch, 4, 4), each
    item's own; torch's collation kept the first item's affine for the whole batch."""
    pytest.importorskip("monai")
    data = CaseDataset(reference_stores.ct, patch_size=(4, 10, 12), seed=1)
    items = [as_monai(data[0]), as_monai({**data[0], **_moved(data[0])})]
    assert not np.allclose(items[0]["image"].affine, items[1]["image"].affine)
    batch = pad_collate(items)
    assert tuple(batch["image"].affine.shape) == (2, 4, 4)
    for row, item in enumerate(items):
        np.testing.assert_allclose(batch["image"].affine[row], item["image"].affine)
        np.testing.assert_allclose(batch["mask"].affine[row], item["mask"].affine)


def _moved(item: dict) -> dict:
    affine = item["affine"].copy()
    affine[:3, 3] += 10.0
    return {"affine": affine}


def test_pad_collate_keeps_ragged_boxes_as_a_list_per_item(reference_stores):
    """Keys whose arrays differ in size (boxes, landmarks a transform adds) become a
    list of tensors, one per item; default collation raised "stack expects..."."""
    data = CaseDataset(reference_stores.ct, patch_size=(4, 10, 12))
    boxes = [np.zeros((2, 6)), np.ones((3, 6))]
    batch = pad_collate([{**data[0], "boxes": boxes[0]}, {**data[0], "boxes": boxes[1]}])
    assert [b.tolist() for b in batch["boxes"]] == [b.tolist() for b in boxes]


def test_pad_collate_refuses_what_it_cannot_pad_in_one_line(reference_stores):
    item = CaseDataset(reference_stores.ct, patch_size=(4, 10, 12))[0]  # int16
    with pytest.raises(TypeError, match="make the transform return the item dict"):
        pad_collate([torch.as_tensor(item["image"])])
    with pytest.raises(ValueError, match="no items"):
        pad_collate([])
    two = {**item, "image": np.concatenate([item["image"]] * 2)}
    with pytest.raises(ValueError, match=r"have \[1, 2\] channels"):
        pad_collate([item, two])
    small = {**item, "image": item["image"][:, :2], "mask": item["mask"][:2]}
    with pytest.raises(ValueError, match="pad_value -100000 does not fit the int16"):
        pad_collate([item, small], pad_value=-100000)
    with pytest.raises(ValueError, match="pad_value nan does not fit"):
        pad_collate([item, small], pad_value=float("nan"))
    with pytest.raises(ValueError, match="mask_value -1 does not fit the uint8"):
        pad_collate([item, small], mask_value=-1)


def test_a_pad_value_the_stored_dtype_cannot_hold_is_refused_naming_the_store(
        reference_stores):
    """NaN padding an int16 CT patch gave garbage values (-47...) in silence."""
    data = CaseDataset(reference_stores.ct, patch_size=(40, 10, 10), pad_value=float("nan"))
    with pytest.raises(StoreError, match=r"ct\.zarr: pad_value nan does not fit the int16"):
        data[0]
    padded = CaseDataset(reference_stores.ct, patch_size=(40, 10, 10), pad_value=-1024)[0]
    assert padded["image"].min() == -1024


# -- repeated draws: new patches, not the same patch again -------------------------------
def _starts(batches) -> list[tuple]:
    return [(case_id, tuple(np.round(affine[:3, 3].numpy(), 3)))
            for batch in batches for case_id, affine in zip(batch["case_id"], batch["affine"])]


def test_samples_per_case_gives_different_patches_the_same_on_any_number_of_workers(
        reference_stores):
    """nnU-Net draws 250 batches an epoch from a few cases; MONAI (``samples_per_image``)
    and TorchIO (``samples_per_volume``) take several patches a volume. Before, the only
    way was a sampler repeating indices, and each repeat was the same patch, in every
    worker. ``samples_per_case=k``: k draws per case, all different, the same with 0
    or 2 workers, new with the epoch."""
    DataLoader = torch.utils.data.DataLoader
    data = CaseDataset(reference_stores.ct, patch_size=(8, 16, 16), seed=7,
                       samples_per_case=6)
    assert len(data) == 6 and {data[i]["case_id"] for i in range(6)} == {"ct"}
    two = _starts(DataLoader(data, batch_size=2, num_workers=2))
    assert len(set(two)) == 6  # six different patches of the one case
    assert _starts(DataLoader(data, batch_size=3, num_workers=0)) == two
    data.set_epoch(1)
    assert set(_starts(DataLoader(data, batch_size=2))).isdisjoint(two)
    with pytest.raises(ValueError, match="samples_per_case 0"):
        CaseDataset(reference_stores.ct, patch_size=(8, 16, 16), samples_per_case=0)
    with pytest.raises(ValueError, match="a whole case is the same each time"):
        CaseDataset(reference_stores.ct, samples_per_case=2)



# -- nnU-Net's ignore label is no foreground --------------------------------------------
def test_foreground_oversampling_never_centres_on_the_ignore_label(tmp_path):
    """A store from an nnU-Net dataset with an ``ignore`` label (its mask value named
    "ignore", recipe/parsers/nnunet.py): nnU-Net leaves it out of the classes it centres
    patches on (``LabelManager._get_all_labels``); here it was drawn as a class like any
    other -- half the "foreground" patches centred on unannotated voxels."""
    import pandas as pd

    from medimg_build.case import Case
    from medimg_build.image import MedicalImage
    from medimg_build.store import create_store

    import test_store_volumes as volumes_tests  # noqa: E402  (tests/ is on sys.path)

    shape = (40, 40, 8)  # in-memory (x, y, z)
    affine = volumes_tests.ras_affine(0)
    mask = np.zeros(shape, np.uint8)
    mask[2, 3, 1] = 1  # one voxel of class 1, far from ...
    mask[30:38, 30:38, 5:8] = 2  # ... a block of unannotated ("ignore") voxels
    image = np.zeros(shape, np.int16)
    path = tmp_path / "v.zarr"
    writer = create_store(path, "volumes", n_cases=1, attrs={
        **volumes_tests.ATTRS, "labels": {"segmentation": {"classes": {
            "0": "background", "1": "tumour", "2": "ignore"}}}})
    writer.write_case(0, Case("c", MedicalImage(image, affine), MedicalImage(mask, affine)))
    writer.close(pd.DataFrame({"case_id": ["c"], "split": ["train"]}))
    for epoch in range(12):
        data = CaseDataset(path, patch_size=(2, 6, 6), oversample_foreground=1.0, seed=epoch)
        values = set(np.unique(data[0]["mask"]).tolist())
        assert 1 in values and 2 not in values, f"epoch {epoch}: {values}"


def test_pad_collate_refuses_a_batch_where_only_some_cases_have_a_mask(tmp_path):
    """A volumes store whose cases have masks in part: the batch lost its masks when the
    first item had none (collated by its keys), else a KeyError."""
    from medimg_build.case import Case
    from medimg_build.image import MedicalImage

    import test_store_volumes as volumes_tests  # noqa: E402  (tests/ is on sys.path)

    affine = volumes_tests.ras_affine(0)
    image = np.ones((12, 10, 4), np.int16)
    path = volumes_tests.build(tmp_path / "v.zarr", [
        Case("bare", MedicalImage(image, affine), None),
        Case("masked", MedicalImage(image, affine), MedicalImage(image.astype(np.uint8), affine))])
    data = CaseDataset(path)
    for order in ([0, 1], [1, 0]):
        with pytest.raises(ValueError, match="cases masked have 'mask', cases bare have not"):
            pad_collate([data[i] for i in order])


# -- a real LPS volume: geometry-aware transforms agree with the libraries' own loaders ---
@pytest.fixture(scope="module")
def lps_mr(tmp_path_factory, shared_data):
    """TotalSegmentator's MR (LPS on disk, stored reoriented) and its segmentation."""
    import shutil

    import nibabel as nib

    from medimg_build import build_store, load_recipe

    root = tmp_path_factory.mktemp("lps")
    (root / "src" / "images").mkdir(parents=True)
    (root / "src" / "labels").mkdir()
    image = root / "src" / "images" / "mr.nii.gz"
    mask = root / "src" / "labels" / "mr.nii.gz"
    shutil.copy(shared_data / "totalsegmentator" / "example_mr_sm.nii.gz", image)
    shutil.copy(shared_data / "totalsegmentator" / "example_seg_mr.nii.gz", mask)
    assert nib.aff2axcodes(nib.load(image).affine) == ("L", "P", "S")
    values = np.unique(np.asanyarray(nib.load(mask).dataobj))
    recipe = load_recipe("volume-folder").with_overrides(
        {"labels": {"segmentation": {"classes": {str(int(v)): f"c{int(v)}" for v in values}}},
         "harmonize": {"spacing": None}})
    assert build_store(recipe, root / "src", root / "mr.zarr", progress=False).ok
    return root / "mr.zarr", image, mask


def test_geometry_aware_transforms_of_a_real_lps_case_match_the_libraries_loaders(lps_mr):
    """Held on 6524527, kept as a guard: on a real LPS MR, MONAI (``Orientationd`` then
    ``Spacingd``/``RandAffined``, seeded) and TorchIO (``RandomFlip('LR')``,
    ``ToCanonical``, ``Resample``, ``RandomAffine`` on the ``LabelMap``, seeded) give on
    our item exactly what they give on the NIfTI loaded by ``LoadImaged`` /
    ``tio.ScalarImage(path)``: voxels, labels (nearest) and affines within 1e-4 mm."""
    mt = pytest.importorskip("monai.transforms")
    tio = pytest.importorskip("torchio")
    store, image, mask = lps_mr
    keys = ["image", "mask"]
    modes = ("bilinear", "nearest")
    for tail in (lambda: mt.Spacingd(keys=keys, pixdim=(2.0, 2.5, 4.0), mode=modes),
                 lambda: mt.RandAffined(keys=keys, prob=1, rotate_range=(0.3, 0.2, 0.1),
                                        scale_range=0.1, mode=modes)):
        # each pipeline its own transform objects: MONAI seeds each Randomizable it holds
        load = mt.Compose([mt.LoadImaged(keys=keys, image_only=True),
                           mt.EnsureChannelFirstd(keys=keys),
                           mt.EnsureTyped(keys="image", dtype=torch.float32),
                           mt.Orientationd(keys=keys, axcodes="RAS"), tail()])
        ours = mt.Compose([as_monai, mt.EnsureTyped(keys="image", dtype=torch.float32),
                           mt.Orientationd(keys=keys, axcodes="RAS"), tail()])
        load.set_random_state(3)
        ours.set_random_state(3)
        theirs, item = load({"image": str(image), "mask": str(mask)}), CaseDataset(
            store, transform=ours)[0]
        for key in keys:
            np.testing.assert_allclose(item[key].numpy(), theirs[key].numpy(), atol=1e-3)
            np.testing.assert_allclose(item[key].affine, theirs[key].affine, atol=1e-4)
    for transform in (tio.Compose([tio.RandomFlip(axes=("LR",), flip_probability=1),
                                   tio.ToCanonical()]),
                      tio.Compose([tio.ToCanonical(), tio.Resample((2.0, 2.5, 4.0))]),
                      tio.Compose([tio.ToCanonical(), tio.RandomAffine(degrees=20)])):
        torch.manual_seed(5)
        theirs = transform(tio.Subject(image=tio.ScalarImage(image), mask=tio.LabelMap(mask)))
        torch.manual_seed(5)
        item = CaseDataset(store, transform=TorchioTransform(transform))[0]
        np.testing.assert_allclose(item["image"].numpy(),
                                   theirs["image"].data.permute(0, 3, 2, 1).numpy(), atol=1e-3)
        np.testing.assert_array_equal(item["mask"].numpy(),
                                      theirs["mask"].data.permute(0, 3, 2, 1).numpy()[0])
        np.testing.assert_allclose(item["affine"], theirs["image"].affine, atol=1e-4)


def test_whole_batches_of_monai_items_keep_each_items_affine(reference_stores):
    """``batches()`` with an ``as_monai`` transform: torch's collation of MetaTensors gave
    the batch the first case's affine; now (batch, 4, 4), each case's own."""
    pytest.importorskip("monai")
    data = CaseDataset(reference_stores.xray, transform=as_monai)
    plain = CaseDataset(reference_stores.xray)
    batch = data[[0, 1, 2, 3]]
    affines = [as_monai(plain[i])["image"].affine for i in range(4)]
    assert not all(np.allclose(affines[0], a) for a in affines[1:])  # cases differ
    assert tuple(batch["image"].affine.shape) == (4, 4, 4)
    for row, affine in enumerate(affines):
        np.testing.assert_allclose(batch["image"].affine[row], affine)
