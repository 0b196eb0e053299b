"""Stores come from other labs: an HDF5 store must not make its reader read files of the
reader's own machine. HDF5 follows external links, external raw storage and virtual
datasets on read; a medimg store has none, so each is refused where a reader meets it."""

from __future__ import annotations

from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from medimg_build.errors import StoreError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store import open_store
from medimg_build.store.validate import validate_store

IMAGE = "cases/a/scale0/image"
SECRET = b"PRIVATE KEY OF THE READER "


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("hostile_store")
    (root / "src" / "images").mkdir(parents=True)
    image = np.arange(6 * 5 * 4, dtype=np.int16).reshape(6, 5, 4)
    nib.save(nib.Nifti1Image(image, np.eye(4)), root / "src" / "images" / "a.nii.gz")
    recipe = load_recipe("volume-folder").with_overrides({"harmonize": {"spacing": None}})
    assert build_store(recipe, root / "src", root / "store.h5", progress=False).ok
    return root / "store.h5"


def _altered(built: Path, tmp_path: Path, how: str) -> Path:
    """A copy of the store whose image reads the reader's own file ``secret.bin``."""
    store, secret = tmp_path / "store.h5", tmp_path / "secret.bin"
    store.write_bytes(built.read_bytes())
    with h5py.File(store, "a") as h5:
        old = h5[IMAGE]
        shape, dtype, attrs = old.shape, old.dtype, dict(old.attrs)
        size = int(np.prod(shape)) * dtype.itemsize
        secret.write_bytes((SECRET * (size // len(SECRET) + 1))[:size])
        del h5[IMAGE]
        if how == "external storage":
            new = h5.create_dataset(IMAGE, shape=shape, dtype=dtype,
                                    external=[(str(secret), 0, size)])
        elif how == "virtual dataset":
            with h5py.File(tmp_path / "other.h5", "w") as other:
                other.create_dataset("x", data=np.frombuffer(secret.read_bytes(), dtype)
                                     .reshape(shape))
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            layout[...] = h5py.VirtualSource(str(tmp_path / "other.h5"), "x", shape=shape)
            new = h5.create_virtual_dataset(IMAGE, layout)
        else:  # an external link to a dataset of another file
            with h5py.File(tmp_path / "other.h5", "w") as other:
                new = other.create_dataset("x", data=np.frombuffer(secret.read_bytes(), dtype)
                                           .reshape(shape))
                for key, value in attrs.items():
                    new.attrs[key] = value
            h5[IMAGE] = h5py.ExternalLink(str(tmp_path / "other.h5"), "x")
            return store
        for key, value in attrs.items():
            new.attrs[key] = value
    return store


HOW = ["external storage", "virtual dataset", "external link"]


@pytest.mark.parametrize("how", HOW)
def test_an_hdf5_store_reading_another_file_is_refused_by_every_reader(built, tmp_path, how):
    store = _altered(built, tmp_path, how)
    expected = r"cases/a/scale0/image (keeps its values in external file|is a virtual " \
               r"dataset|is an external link).*this one was altered"
    with pytest.raises(StoreError, match=expected):
        open_store(store).read_image("a")
    with pytest.raises(StoreError, match=expected):
        open_store(store).case("a").load()
    with pytest.raises(StoreError, match=expected):
        validate_store(store)


def test_the_unaltered_store_reads(built):
    """The check refuses only what reads outside: the built store itself reads."""
    assert open_store(built).read_image("a").array.shape == (6, 5, 4)
    assert validate_store(built) == []
