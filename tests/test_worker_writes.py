"""Dask workers write volumes cases themselves: the store is the one the build process
would write, a written case travels back without its pixels, and a case the store
refuses after a worker wrote it leaves nothing behind."""

from __future__ import annotations

import pickle

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import zarr
from store_contents import store_contents

from medimg_build import open_store
from medimg_build.case import Case
from medimg_build.errors import StoreError
from medimg_build.image import MedicalImage
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store import create_store, volumes
from medimg_build.store.validate import validate_store
from medimg_build.store.results import CaseWritten, case_written


def _volume_source(root, shapes):
    rng = np.random.default_rng(0)
    for folder in ("images", "labels"):
        (root / folder).mkdir(parents=True)
    for index, shape in enumerate(shapes):
        affine = np.diag([-0.8, 0.9, 2.0 + index, 1.0])
        image = rng.integers(-1000, 1500, shape).astype(np.int16)
        mask = (image > 800).astype(np.uint8)
        nib.save(nib.Nifti1Image(image, affine), root / "images" / f"ct{index}.nii.gz")
        nib.save(nib.Nifti1Image(mask, affine), root / "labels" / f"ct{index}.nii.gz")
    return root


def test_two_workers_writing_cases_make_the_serial_store(tmp_path, monkeypatch):
    """Masks (NGFF label images with the recipe's classes) and a pyramid included."""
    source = _volume_source(tmp_path / "src", [(80, 72, 12), (64, 60, 9), (88, 80, 7)])
    recipe = load_recipe("volume-folder").with_overrides(
        {"labels": {"segmentation": {"classes": {"0": "background", "1": "bone"}}}})
    serial, parallel = tmp_path / "serial.zarr", tmp_path / "parallel.zarr"
    assert build_store(recipe, source, serial, progress=False, pyramid_levels=2).ok

    def not_here(*args):
        raise AssertionError("the build process wrote a case's pixels")

    # Only this process is patched: the workers (new processes) write with the real one.
    monkeypatch.setattr(volumes, "write_case_group", not_here)
    assert build_store(recipe, source, parallel, workers=2, progress=False,
                       pyramid_levels=2).ok
    contents = store_contents(serial)
    assert any("scale1" in key for key in contents)  # the pyramid was built
    assert store_contents(parallel) == contents
    assert validate_store(parallel) == []


def test_workers_in_another_folder_write_the_store_the_build_named(tmp_path, monkeypatch):
    """A relative ``--out`` names the build's folder: workers started in another folder
    (a ``dask worker`` run elsewhere) wrote their case groups into the store of that
    name in their own folder, and the build's store had cases without pixels."""
    from distributed import LocalCluster

    source = _volume_source(tmp_path / "src", [(40, 36, 6), (32, 30, 5)])
    recipe = load_recipe("volume-folder").with_overrides(
        {"labels": {"segmentation": {"classes": {"0": "background", "1": "bone"}}}})
    for folder in ("workers", "build"):
        (tmp_path / folder).mkdir()
    monkeypatch.chdir(tmp_path / "workers")
    assert build_store(recipe, source, "out.zarr", progress=False).ok  # an older store
    with LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        monkeypatch.chdir(tmp_path / "build")
        assert build_store(recipe, source, "serial.zarr", progress=False).ok
        assert build_store(recipe, source, "out.zarr", scheduler=cluster.scheduler_address,
                           progress=False).ok
    assert store_contents(tmp_path / "build" / "out.zarr") == \
        store_contents(tmp_path / "build" / "serial.zarr")


def _case(case_id, dtype, shape=(30, 20, 10)):
    pixels = np.asfortranarray(np.arange(np.prod(shape)).reshape(shape).astype(dtype))
    image = MedicalImage(pixels, np.diag([0.7, 0.8, 2.5, 1.0]), meta={"modality": "CT"})
    mask = image.replace(array=np.asfortranarray((pixels % 3 == 0).astype(np.uint8)))
    return Case(case_id, image, mask=mask, row={"site": "A"})


def test_a_written_case_travels_without_its_pixels():
    case = _case("ct0", np.float32, shape=(128, 128, 64))  # 4 MiB of image
    shipped = pickle.dumps(case_written(0, case))
    assert len(shipped) < 20_000
    arrived = pickle.loads(shipped)
    assert isinstance(arrived, CaseWritten)
    assert arrived.template["spatial_shape"] == list(case.image.spatial_shape)
    assert arrived.template["dtype"] == "float32" and arrived.template["mask_dtype"] == "uint8"
    assert arrived.row == case.row and arrived.case_id == "ct0"


def test_a_case_refused_after_a_worker_wrote_it_is_deleted(tmp_path):
    out = tmp_path / "ds.zarr"
    writer = create_store(out, "volumes", n_cases=2)
    writer.write_case(0, _case("ct0", np.int16))
    destination = pickle.loads(pickle.dumps(writer.worker_destination()))
    written = destination.write(1, _case("ct1", np.float32))  # as a worker would
    assert "ct1" in zarr.open_group(out / "cases", mode="r")
    with pytest.raises(StoreError, match="dtype float32 where the store has int16"):
        writer.write_case(1, pickle.loads(pickle.dumps(written)))
    assert "ct1" not in zarr.open_group(out / "cases", mode="r")
    writer.write_case(1, _case("ct1", np.int16))  # the index is free again
    writer.close(pd.DataFrame({"case_id": ["ct0", "ct1"]}))
    assert open_store(out).read_image("ct1").array.dtype == np.int16


def test_a_worker_written_case_has_its_labels_checked_as_given(tmp_path):
    """A label vector that is not ints is refused whoever wrote the pixels: the record
    a worker sends back must not round it into an int8 vector the check then accepts."""
    out = tmp_path / "ds.zarr"
    writer = create_store(out, "volumes", n_cases=2)
    writer.write_case(0, _case("ct0", np.int16))
    refused_here = _case("ct1", np.int16)
    refused_here.labels = {"grade": np.array([0.5, 1.0])}
    with pytest.raises(StoreError, match="neither an int nor a 1-D int vector"):
        writer.write_case(1, refused_here)
    destination = pickle.loads(pickle.dumps(writer.worker_destination()))
    written = destination.write(1, refused_here)  # as a worker would
    with pytest.raises(StoreError, match="neither an int nor a 1-D int vector"):
        writer.write_case(1, pickle.loads(pickle.dumps(written)))
    assert "ct1" not in zarr.open_group(out / "cases", mode="r")


@pytest.mark.parametrize("layout", ["volumes", "stack"])
def test_annotations_of_the_wrong_type_are_refused_as_a_store_error(tmp_path, layout):
    """The case fails (a StoreError), not the build (an AttributeError from making its
    journal record), whether this process or a worker writes it."""
    out = tmp_path / "ds.zarr"
    writer = create_store(out, layout, n_cases=1)
    case = _case("ct0", np.int16)
    case.boxes = {"lo": [[1, 2, 3]]}
    with pytest.raises(StoreError, match="boxes must be Boxes, got dict"):
        writer.write_case(0, case)
    if layout == "volumes":
        with pytest.raises(StoreError, match="boxes must be Boxes, got dict"):
            writer.worker_destination().write(0, case)
        assert "ct0" not in zarr.open_group(out / "cases", mode="r")
    case.boxes = None
    writer.write_case(0, case)  # the index is free again
