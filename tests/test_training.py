"""The training adapter: a DataLoader with worker processes returns what open_store
returns; sampled slices and patches keep their place in the patient."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

from medimg_build import open_store
from medimg_build.errors import StoreError
from medimg_build.training import CaseDataset

torch = pytest.importorskip("torch")
DataLoader = torch.utils.data.DataLoader


def _expected(store, case_id: str, label_names: list[str]) -> dict:
    ds = store.case(case_id)
    out = {"image": ds["image"].values, "affine": np.asarray(ds.attrs["affine"])}
    if "mask" in ds:
        out["mask"] = ds["mask"].values
    out["labels"] = {}
    for name in label_names:
        values = store.labels(name).loc[case_id]
        out["labels"][name] = values.to_numpy() if hasattr(values, "to_numpy") else int(values)
    return out


def test_a_dataloader_with_two_workers_returns_what_open_store_returns(reference_stores):
    dataset = CaseDataset(reference_stores.xray)
    store = open_store(reference_stores.xray)
    assert len(dataset) == len(store.cases) and dataset.label_names == ["finding"]
    loader = DataLoader(dataset, batch_size=2, num_workers=2, shuffle=True,
                        generator=torch.Generator().manual_seed(0))
    seen = []
    for batch in loader:
        assert isinstance(batch["image"], torch.Tensor) and batch["image"].shape[1:] == (
            1, 512, 512)
        for row, case_id in enumerate(batch["case_id"]):
            expected = _expected(store, case_id, ["finding"])
            np.testing.assert_array_equal(batch["image"][row].numpy(), expected["image"])
            np.testing.assert_array_equal(batch["labels"]["finding"][row].numpy(),
                                          expected["labels"]["finding"])
            np.testing.assert_array_equal(batch["affine"][row].numpy(), expected["affine"])
            assert batch["split"][row] == store.cases.set_index("case_id").loc[case_id, "split"]
            seen.append(case_id)
    assert sorted(seen) == sorted(store.cases["case_id"])


def test_workers_of_any_start_method_read_from_s3(s3, reference_stores):
    url = s3.upload(reference_stores.xray, "nih.zarr")
    dataset = CaseDataset(url, storage_options=s3.options, split="train")
    assert pickle.loads(pickle.dumps(dataset))._handle is None  # never ships a handle
    store = open_store(reference_stores.xray)
    train = store.cases[store.cases["split"] == "train"]["case_id"].tolist()
    assert dataset.case_ids == train
    loader = DataLoader(dataset, batch_size=None, num_workers=2,
                        multiprocessing_context="spawn")
    items = list(loader)
    assert [item["case_id"] for item in items] == train
    for item in items:
        np.testing.assert_array_equal(item["image"].numpy(),
                                      _expected(store, item["case_id"], [])["image"])


def _voxel_start(item: dict, case_affine: np.ndarray) -> np.ndarray:
    """Where voxel 0 of an item lies in its case, in stored (z, y, x) index order."""
    start = np.linalg.solve(case_affine, item["affine"][:, 3])[:3]
    assert np.allclose(start, np.round(start), atol=1e-6)
    assert np.allclose(item["affine"][:3, :3], case_affine[:3, :3])
    return np.round(start).astype(int)[::-1]


def test_random_slices_keep_their_place_in_the_patient(reference_stores):
    dataset = CaseDataset(reference_stores.ct, slice_axis="z", seed=3)
    store = open_store(reference_stores.ct)
    case = _expected(store, "ct", [])
    depths = set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        item = dataset[0]
        z, y, x = _voxel_start(item, case["affine"])
        assert (y, x) == (0, 0)
        depths.add(z)
        np.testing.assert_array_equal(item["image"], case["image"][:, z])
        np.testing.assert_array_equal(item["mask"], case["mask"][z])
        assert item["origin"].tolist() == item["affine"][:3, 3][::-1].tolist()
    assert len(depths) > 1  # a new slice per epoch
    dataset.set_epoch(0)
    again = CaseDataset(reference_stores.ct, slice_axis="z", seed=3)[0]
    np.testing.assert_array_equal(dataset[0]["image"], again["image"])  # (seed, epoch, index)


def test_random_patches_keep_their_place(reference_stores):
    store = open_store(reference_stores.ct)
    case = _expected(store, "ct", [])
    dataset = CaseDataset(reference_stores.ct, patch_size=(8, 32, 40), seed=1)
    item = dataset[0]
    z, y, x = _voxel_start(item, case["affine"])
    assert item["image"].shape == (1, 8, 32, 40) and item["mask"].shape == (8, 32, 40)
    np.testing.assert_array_equal(item["image"], case["image"][:, z:z + 8, y:y + 32, x:x + 40])
    np.testing.assert_array_equal(item["mask"], case["mask"][z:z + 8, y:y + 32, x:x + 40])
    with pytest.raises(StoreError, match="has 2 axes"):
        CaseDataset(reference_stores.ct, patch_size=(8, 8))[0]
    with pytest.raises(StoreError, match="no case in split 'nope'"):
        CaseDataset(reference_stores.ct, split="nope")
    with pytest.raises(StoreError, match="not a spatial axis"):
        CaseDataset(reference_stores.xray, slice_axis="z")


def test_a_batch_of_a_stack_store_is_its_items_read_together(reference_stores):
    dataset = CaseDataset(reference_stores.xray)
    indices = [5, 0, 1, 2, 7, 1, -1]  # unsorted, a repeat, from the end
    for batch_item, index in zip(dataset.__getitems__(indices), indices):
        item = dataset[index]
        assert batch_item.keys() == item.keys() and batch_item["case_id"] == item["case_id"]
        for key in ("image", "affine", "spacing", "origin"):
            np.testing.assert_array_equal(batch_item[key], item[key])
        np.testing.assert_array_equal(batch_item["labels"]["finding"], item["labels"]["finding"])
    with pytest.raises(IndexError):
        dataset.__getitems__([0, len(dataset)])


def _same(got, expected) -> None:
    """Equal as a DataLoader returns them: tensors of one dtype and value, lists, dicts."""
    if isinstance(expected, dict):
        assert got.keys() == expected.keys()
        for key in expected:
            _same(got[key], expected[key])
    elif isinstance(expected, torch.Tensor):
        assert isinstance(got, torch.Tensor) and got.dtype == expected.dtype
        assert torch.equal(got, expected)
    else:
        assert got == expected


@pytest.mark.parametrize("store, kwargs", [("xray", {}), ("xray", {"split": "train"}),
                                           ("ct", {"slice_axis": "z"}), ("ct", {})])
def test_whole_batches_are_what_collating_the_items_gives(reference_stores, store, kwargs):
    """``batches`` hands the dataset whole batches (a stack's cases read together and
    decoded into one array, anything else item by item): a DataLoader over them returns
    what the default collation of the same items returns."""
    dataset = CaseDataset(getattr(reference_stores, store), **kwargs)
    sampler = dataset.batches(3, shuffle=True)
    order = list(sampler)
    assert len(order) == len(sampler) == -(-len(dataset) // 3)
    assert sorted(i for batch in order for i in batch) == list(range(len(dataset)))
    loader = DataLoader(dataset, batch_size=None, sampler=sampler)
    for batch, indices in zip(loader, order, strict=True):
        _same(batch, torch.utils.data.default_collate([dataset[i] for i in indices]))
    dataset.set_epoch(1)
    if len(dataset) > 3:
        assert list(sampler) != order  # a new order each epoch
    assert len(dataset.batches(3, drop_last=True)) == len(dataset) // 3


def test_whole_batches_of_a_stack_in_order_are_read_without_a_copy(reference_stores):
    """Cases in order are one read: its array is the batch's image, not a copy of it."""
    dataset = CaseDataset(reference_stores.xray)
    image = dataset[list(range(4))]["image"]
    assert image.flags.owndata and image.shape == (4, 1, 512, 512)


def test_a_case_is_opened_once_for_all_its_random_slices(reference_stores, monkeypatch):
    """Opening a case (~7 ms: zarr metadata calls, xarray's open) is not paid again at
    every random slice of it (~0.5 ms), nor carried into another process."""
    from medimg_build.store.reader import MedimgStore

    opened = []
    case = MedimgStore.case
    monkeypatch.setattr(MedimgStore, "case", lambda self, *a, **k: (
        opened.append(a[0]), case(self, *a, **k))[1])
    dataset = CaseDataset(reference_stores.ct, slice_axis="z", seed=3)
    store = open_store(reference_stores.ct)
    expected = _expected(store, "ct", [])
    for epoch in range(5):
        dataset.set_epoch(epoch)
        item = dataset[0]
        z = _voxel_start(item, expected["affine"])[0]
        np.testing.assert_array_equal(item["image"], expected["image"][:, z])
        np.testing.assert_array_equal(item["mask"], expected["mask"][z])
    assert opened.count("ct") == 2  # _expected's, then the dataset's one
    assert pickle.loads(pickle.dumps(dataset))._cases == {}


def _arrays(value):
    """Every NumPy array in an item or batch (dicts and lists walked)."""
    if isinstance(value, np.ndarray):
        yield value
    elif isinstance(value, dict):
        for inner in value.values():
            yield from _arrays(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _arrays(inner)


def _collate_writable(batch):
    """The default collation (or conversion, for a whole batch), once every array it is
    given is checked writable: torch's warning fires once per process only."""
    assert all(array.flags.writeable for array in _arrays(batch))
    if isinstance(batch, list):
        return torch.utils.data.default_collate(batch)
    return torch.utils.data.default_convert(batch)


@pytest.mark.parametrize("loader", ["items", "batches", "workers", "slices", "patches"])
def test_no_batch_makes_torch_warn_of_an_array_it_cannot_write(reference_stores, loader):
    """PyTorch warns ("The given NumPy array is not writable") when it wraps a read-only
    array, as it did for stack batches before issue 18 (multi-label rows): every array
    of an item or batch is writable, in every read path -- checked before collation,
    and warnings are errors (forked workers inherit the filter)."""
    stack = CaseDataset(reference_stores.xray)
    ct = {"slices": {"slice_axis": "z"},
          "patches": {"patch_size": (4, 600, 20), "oversample_foreground": 0.5}}
    loaders = {
        "items": lambda: DataLoader(stack, batch_size=4, collate_fn=_collate_writable),
        "batches": lambda: DataLoader(stack, batch_size=None, sampler=stack.batches(4),
                                      collate_fn=_collate_writable),
        "workers": lambda: DataLoader(stack, batch_size=4, num_workers=2,
                                      collate_fn=_collate_writable),
        "slices": lambda: DataLoader(CaseDataset(reference_stores.ct, **ct["slices"]),
                                     batch_size=1, collate_fn=_collate_writable),
        "patches": lambda: DataLoader(CaseDataset(reference_stores.ct, **ct["patches"]),
                                      batch_size=1, collate_fn=_collate_writable),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert sum(len(batch["case_id"]) for batch in loaders[loader]()) > 0
