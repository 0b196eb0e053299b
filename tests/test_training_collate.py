"""Items of different shapes in one batch: ``pad_collate`` pads each to the batch's
largest shape (after the end of each axis) and records what it added."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from medimg_build.training import CaseDataset, pad_collate

import test_store_formats as formats_tests  # noqa: E402  (tests/ is on sys.path)
import test_store_volumes as volumes_tests  # noqa: E402

torch = pytest.importorskip("torch")
DataLoader = torch.utils.data.DataLoader


@pytest.fixture
def volumes(tmp_path):
    """Three cases of three shapes: stored (1, 4, 7, 11), (1, 5, 7, 12), (1, 6, 7, 13)."""
    return volumes_tests.build(tmp_path / "v.zarr", formats_tests.volume_cases())


def _check_padded(batch: dict, items: list[dict], pad_value: float) -> None:
    """Each row of the batch is its item, then padding, as ``shape``/``padding`` say."""
    largest = tuple(batch["image"].shape[2:])
    for row, item in enumerate(items):
        shape = tuple(item["image"].shape[1:])
        assert batch["shape"][row].tolist() == list(shape)
        assert batch["padding"][row].tolist() == [b - s for b, s in zip(largest, shape)]
        region = tuple(slice(0, n) for n in shape)
        image = batch["image"][row].numpy()
        np.testing.assert_array_equal(image[(slice(None),) + region], np.asarray(item["image"]))
        outside = np.ones(largest, bool)
        outside[region] = False
        assert (image[:, outside] == pad_value).all()
        mask = batch["mask"][row].numpy()
        np.testing.assert_array_equal(mask[region], np.asarray(item["mask"]))
        assert (mask[outside] == 0).all()
        # voxel 0 stays where it was: the item's affine is the padded row's
        np.testing.assert_array_equal(batch["affine"][row].numpy(), item["affine"])
        assert batch["case_id"][row] == item["case_id"]


@pytest.mark.parametrize("kwargs", [{}, {"slice_axis": "z", "seed": 2}])
def test_cases_of_different_shapes_are_one_padded_batch(volumes, kwargs):
    """Whole cases, or slices along z, of a volumes store: the default collation fails
    (the issue's RuntimeError), ``pad_collate`` pads them to one batch."""
    data = CaseDataset(volumes, **kwargs)
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        next(iter(DataLoader(data, batch_size=2)))
    loader = DataLoader(data, batch_size=2, collate_fn=pad_collate)
    batches = list(loader)
    assert [len(b["case_id"]) for b in batches] == [2, 1]
    _check_padded(batches[0], [data[0], data[1]], 0)
    _check_padded(batches[1], [data[2]], 0)
    assert batches[0]["padding"][0].tolist() == ([1, 0, 1] if not kwargs else [0, 1])


def test_the_padding_value_is_a_choice(volumes):
    loader = DataLoader(CaseDataset(volumes), batch_size=3,
                        collate_fn=functools.partial(pad_collate, pad_value=-1024))
    batch = next(iter(loader))
    _check_padded(batch, [CaseDataset(volumes)[i] for i in range(3)], -1024)
    assert batch["image"].shape == (3, 1, 6, 7, 13) and batch["image"].dtype == torch.int16


def _as_tensors(item: dict) -> dict:
    """A transform whose items are tensors, the mask channel first (as MONAI's are)."""
    return {**item, "image": torch.as_tensor(item["image"]),
            "mask": torch.as_tensor(item["mask"])[None]}


def test_tensors_with_a_channel_first_mask_are_padded_too(volumes):
    data = CaseDataset(volumes, transform=_as_tensors)
    batch = pad_collate([data[0], data[2]])
    assert batch["image"].shape == (2, 1, 6, 7, 13) and batch["mask"].shape == (2, 1, 6, 7, 13)
    plain = CaseDataset(volumes)
    items = [plain[0], plain[2]]
    batch["mask"] = batch["mask"][:, 0]
    _check_padded(batch, items, 0)
