"""Red team of issue 18's read path (training.py's cached cases and whole batches):
what an item or batch returns is its own, and a batch that cannot be one array says
which cases and why."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from medimg_build import open_store
from medimg_build.errors import StoreError
from medimg_build.store.schema import image_path
from medimg_build.training import CaseDataset

import test_store_formats as formats_tests  # noqa: E402  (tests/ is on sys.path)
import test_store_stack as stack_tests  # noqa: E402
import test_store_volumes as volumes_tests  # noqa: E402


def _arrays(item: dict) -> dict[str, np.ndarray]:
    """Every array of an item or batch, labels too, by name."""
    found = {k: v for k, v in item.items() if isinstance(v, np.ndarray)}
    found.update({f"labels/{k}": v for k, v in item["labels"].items()
                  if isinstance(v, np.ndarray)})
    return found


@pytest.mark.parametrize("layout, read", [
    ("stack", lambda data: data[1]), ("volumes", lambda data: data[1]),
    ("stack", lambda data: data.__getitems__([1, 2])[0]),
    ("stack", lambda data: data[[1, 2]]),
])
def test_the_arrays_returned_are_writable_and_their_own(tmp_path, layout, read):
    """An item's arrays are writable (torch warns on others) and belong to the caller:
    writing into one (an in-place augmentation, ``labels.clamp_(0)``) changes nothing a
    later read returns. Cases kept open per process must not hand out their cached
    spacing, nor the dataset its one copy of a multi-label row."""
    path = stack_tests.build(tmp_path / "s.zarr", formats_tests.stack_cases(5), k=2) \
        if layout == "stack" else volumes_tests.build(tmp_path / "v.zarr",
                                                      formats_tests.volume_cases())
    data = CaseDataset(path)
    pristine = {k: v.copy() for k, v in _arrays(read(data)).items()}
    assert "spacing" in pristine and (layout == "volumes" or "labels/findings" in pristine)
    for name, array in _arrays(read(data)).items():
        assert array.flags.writeable, name
        array[...] = 7
    for name, array in _arrays(read(data)).items():
        np.testing.assert_array_equal(array, pristine[name], err_msg=name)


def test_a_batch_of_cases_of_different_shapes_names_them(tmp_path):
    """Whole cases of a volumes store differ in shape: a batch of them cannot be one
    array, which is said as a StoreError naming two of them and their shapes (the
    DataLoader's collation named the shapes; NumPy's stack names nothing)."""
    cases = formats_tests.volume_cases()
    path = volumes_tests.build(tmp_path / "v.zarr", cases)
    data = CaseDataset(path)
    with pytest.raises(StoreError, match=r"liver_00.*\[1, 4, 7, 11\].*liver_01.*"
                       r"\[1, 5, 7, 12\].*one shape"):
        data[[0, 1]]
    assert data[[0]]["image"].shape == (1, 1, 4, 7, 11)  # one case is always one shape


def _v2_chunk_keys(store: Path, array: str) -> None:
    """Rewrite ``array`` of a store as another tool may: the same chunks under zarr v3's
    ``v2`` chunk key encoding (``0/0/0``, no ``c/`` prefix), which zarr-python reads."""
    encoding = {"name": "v2", "configuration": {"separator": "/"}}
    for path in store.rglob("zarr.json"):
        document = json.loads(path.read_text())
        consolidated = (document.get("consolidated_metadata") or {}).get("metadata") or {}
        if path == store / array / "zarr.json":
            document["chunk_key_encoding"] = encoding
        if array in consolidated:
            consolidated[array]["chunk_key_encoding"] = encoding
        path.write_text(json.dumps(document))
    for shard in (store / array / "c").iterdir():
        shutil.move(shard, store / array / shard.name)
    (store / array / "c").rmdir()


def test_chunks_under_the_v2_key_encoding_read_as_zarr_python_reads_them(tmp_path):
    """The lean reader builds ``c/<i>/<j>...`` paths, the default encoding's: an array
    with another encoding (same separator) goes to zarr-python, not read as a missing
    shard (a store with checksums: false damage; without: fill values)."""
    path = volumes_tests.build(tmp_path / "v.zarr", formats_tests.volume_cases())
    expected = open_store(path).case("liver_01")["image"].values
    _v2_chunk_keys(path, f"cases/liver_01/{image_path()}")
    np.testing.assert_array_equal(open_store(path).case("liver_01")["image"].values, expected)
    np.testing.assert_array_equal(CaseDataset(path)[1]["image"], expected)


@pytest.mark.parametrize("selection", [
    (0, slice(5, 5, -1)), (0, slice(2, 4), slice(3, -1, -1)), (slice(None), -1, slice(0, 9, -2)),
])
def test_an_empty_reversed_selection_is_empty(tmp_path, selection):
    """A reversed slice that selects nothing gives an empty array, as NumPy does (it
    raised from xarray's adapter before issue 18, from zarr-python or NumPy after)."""
    path = volumes_tests.build(tmp_path / "v.zarr", formats_tests.volume_cases())
    image = open_store(path).case("liver_01")["image"]
    expected = image.values[selection]
    assert expected.size == 0
    got = image[selection].values
    assert got.shape == expected.shape and got.dtype == expected.dtype
