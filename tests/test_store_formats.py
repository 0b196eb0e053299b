"""The contract every storage format keeps (``medimg_build.store.formats``), written once
and run against each format, as zarr-python's ``StoreTests`` is subclassed once per
store: write, read, validate, verify, resume, the same case table, the same labels,
boxes and landmarks. A new format gets the whole suite by one subclass below.

Each format is checked against the inputs it was given (the cases written, the table),
not against another format. Format-specific behaviour (HDF5's fletcher32, external
links, h5py alone reading the file) stays in that format's own tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import dask.array as da
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from medimg_build.case import Case
from medimg_build.errors import StoreError
from medimg_build.image import MedicalImage
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store import create_store, open_store
from medimg_build.store.formats import format_names, pick_format
from medimg_build.store.layouts import layout_named
from medimg_build.store.opening import verify_store
from medimg_build.store.validate import validate_store
from medimg_build.store.writer import reopen_store

import test_store_stack as stack_tests  # noqa: E402  (tests/ is on sys.path)
import test_store_volumes as volumes_tests  # noqa: E402


def stack_cases(n: int = 7) -> list[Case]:
    """``n`` RGB 2D images, oblique affines, a multi-label and a scalar label, a mask."""
    cases = [stack_tests.rgb_case(i) for i in range(n)]
    for i, case in enumerate(cases):
        grid = case.image.spatial_shape
        mask = np.random.default_rng(100 + i).integers(0, 3, grid, dtype=np.uint8)
        case.mask = MedicalImage(mask, case.image.affine, spatial_ndim=2)
    return cases


def volume_cases() -> list[Case]:
    return [volumes_tests.ct_case(0), volumes_tests.ct_case(1),
            volumes_tests.ct_case(2, affine=volumes_tests.oblique_affine())]


SKIPPED = 4  # a stack case never written: it must be hidden from readers


def assert_reads_back(store, cases: list[Case], skipped=()) -> None:
    """Every written case reads back as written (pixels, mask, geometry), lazily too;
    a case never written is hidden."""
    written = [c for i, c in enumerate(cases) if i not in skipped]
    assert store.cases["case_id"].tolist() == [c.case_id for c in written]
    for case in written:
        image = store.read_image(case.case_id)
        assert image.array.dtype == case.image.array.dtype
        np.testing.assert_array_equal(image.array, case.image.array)
        np.testing.assert_allclose(image.affine, case.image.affine, atol=1e-6)
        mask = store.read_mask(case.case_id)
        np.testing.assert_array_equal(mask.array, case.mask.array)
        lazy = store.case(case.case_id, chunks={})
        assert isinstance(lazy["image"].data, da.Array)
        np.testing.assert_array_equal(lazy["image"].values, store.case(case.case_id)
                                      ["image"].values)
    for index in skipped:
        with pytest.raises(StoreError, match="not complete"):
            store.read_image(cases[index].case_id)


def write_volume_source(source: Path) -> Path:
    """A volume-folder source: three oblique CT volumes, masks for the first two."""
    (source / "images").mkdir(parents=True)
    (source / "labels").mkdir()
    affine = np.array([[-0.8, 0.05, 0.0, 120.0], [-0.04, -0.8, 0.1, 90.0],
                       [0.0, 0.2, 2.5, -40.0], [0.0, 0.0, 0.0, 1.0]])
    for index in range(3):
        image = np.random.default_rng(index).integers(-1000, 1500, (30, 26, 9))
        mask = np.zeros(image.shape, np.uint8)
        mask[5:15, 8:18, 2:6] = 1
        nib.save(nib.Nifti1Image(image.astype(np.int16), affine),
                 source / "images" / f"case{index}.nii.gz")
        if index != 2:
            nib.save(nib.Nifti1Image(mask, affine), source / "labels" / f"case{index}.nii.gz")
    return source


def volume_recipe():
    """The volume-folder recipe for ``write_volume_source``'s liver masks."""
    return load_recipe("volume-folder").with_overrides({
        "harmonize": {"spacing": [1.5, 1.5, 2.0]},
        "labels": {"segmentation": {"classes": {"0": "background", "1": "liver"}}}})


class StoreFormatContract:
    """Subclass with ``name`` (the format's --format name), ``suffix`` (a new store's
    name ending) and ``resumable``."""

    name: str
    suffix: str
    resumable: bool

    def path(self, tmp_path: Path, stem: str) -> Path:
        return tmp_path / f"{stem}{self.suffix}"

    def test_the_format_is_chosen_by_name_then_by_content(self, tmp_path):
        path = volumes_tests.build(self.path(tmp_path, "v"), volume_cases())
        assert pick_format(path, writing=True).name == self.name
        assert pick_format(path).name == self.name
        assert pick_format(path, self.name).name == self.name
        assert self.name in format_names()

    def test_the_format_describes_and_lists_what_it_wrote(self, tmp_path):
        """``array_info`` gives what the root attributes record, ``manifest_objects``
        lists as many objects as the manifest counted at close."""
        path = volumes_tests.build(self.path(tmp_path, "v"), volume_cases())
        store_format = pick_format(path)
        with store_format.open(str(path)) as root:
            medimg = dict(root.attrs)["medimg"]
            described = {name: info for name, info in medimg["arrays"].items()
                         if "*" not in name}
            assert described
            for name, info in described.items():
                assert store_format.array_info(root[name]) == info
            objects = store_format.manifest_objects(root)
        assert len(objects) == medimg["manifest"]["n_objects"]

    @pytest.mark.parametrize("layout", ["stack", "volumes"])
    def test_one_writer_and_one_reads_class_per_layout(self, tmp_path, layout):
        """Every format is written and read by the layout's own classes (no subclass
        per format), and workers write into the store only where the format allows."""
        cases = stack_cases()[:2] if layout == "stack" else volume_cases()[:2]
        path = self.path(tmp_path, layout)
        writer = create_store(path, layout, n_cases=2, format=self.name)
        expected = layout_named(layout)
        assert type(writer) is expected.writer_class and writer.layout is expected
        destination = writer.worker_destination()
        assert (destination is not None) == pick_format(path, self.name).writes_from_workers
        for index, case in enumerate(cases):
            writer.write_case(index, case)
        writer.close(pd.DataFrame({"case_id": [c.case_id for c in cases]}))
        store = open_store(path)
        assert type(store._reads) is expected.reads_class
        assert_reads_back(store, cases)

    def test_make_room(self, tmp_path):
        path = volumes_tests.build(self.path(tmp_path, "v"), volume_cases())
        store_format = pick_format(path)
        assert store_format.make_room(str(tmp_path / "absent"), overwrite=False) is False
        with pytest.raises(StoreError, match="already exists"):
            store_format.make_room(str(path), overwrite=False)
        assert store_format.make_room(str(path), overwrite=True) is True
        other = tmp_path / "notes.txt"
        other.write_text("not a store")
        with pytest.raises(StoreError, match="refusing to delete it"):
            store_format.make_room(str(other), overwrite=True)

    def test_stack_write_read_validate_verify(self, tmp_path):
        cases = stack_cases()
        path = stack_tests.build(self.path(tmp_path, "s"), cases,
                                 order=[6, 0, 3, 1, 5, 2, 4], skip=(SKIPPED,), k=3)
        store = open_store(path)
        assert store.layout == "stack"
        assert_reads_back(store, cases, skipped=(SKIPPED,))
        table = stack_tests.table_of(cases).drop(index=SKIPPED).reset_index(drop=True)
        assert store.cases["split"].tolist() == table["split"].tolist()
        assert store.cases["age"].tolist() == table["age"].tolist()
        written = [c for i, c in enumerate(cases) if i != SKIPPED]
        assert store.labels("view").tolist() == [c.labels["view"] for c in written]
        np.testing.assert_array_equal(store.labels("findings").to_numpy(),
                                      np.stack([c.labels["findings"] for c in written]))
        ds = store.dataset()
        assert ds.sizes["case"] == len(written)
        assert verify_store(path) == []

    def test_volumes_write_read_validate_verify(self, tmp_path):
        cases = volume_cases()
        path = volumes_tests.build(self.path(tmp_path, "v"), cases)
        store = open_store(path)
        assert store.layout == "volumes"
        assert_reads_back(store, cases)
        assert store.cases["split"].tolist() == ["train"] * len(cases)
        assert store.labels("tumour").tolist() == [c.labels["tumour"] for c in cases]
        assert store.labels("tumour").index.tolist() == [c.case_id for c in cases]
        tree = store.dataset()
        assert isinstance(tree, xr.DataTree)
        assert set(tree["cases"].children) == {c.case_id for c in cases}
        assert verify_store(path) == []

    def test_a_build_is_valid_and_verifies(self, tmp_path):
        """``build_store`` from a source folder: what ``validate`` checks (recipe,
        provenance, schema) holds, the manifest verifies, the labels are the source's."""
        source = write_volume_source(tmp_path / "source")
        recipe = volume_recipe()
        out = tmp_path / "built.out"  # no telling suffix: the format is asked for
        assert build_store(recipe, source, out, progress=False, key="k", format=self.name).ok
        assert pick_format(out).name == self.name
        assert validate_store(out) == []
        assert verify_store(out) == []
        store = open_store(out)
        assert len(store.cases) == 3
        assert [store.read_mask(i) is None for i in store.cases["case_id"]] == \
            [False, False, True]

    def test_a_changed_attribute_is_found_by_verify(self, tmp_path):
        path = volumes_tests.build(self.path(tmp_path, "v"), volume_cases())
        assert verify_store(path) == []
        self.change_root_attribute(path)
        problems = verify_store(path)
        assert [m.where for m in problems] == [""]  # one, at the root

    def change_root_attribute(self, path: Path) -> None:
        raise NotImplementedError

    def test_a_store_behind_a_url(self, http):
        """A URL is tried as Zarr first (no request spent on guessing); a store of
        another format is then recognized and read all the same."""
        cases = volume_cases()
        path = volumes_tests.build(http.root / f"v{self.suffix}", cases)
        url = f"{http.url}/{path.name}"
        assert_reads_back(open_store(url), cases)
        assert pick_format(url).name == self.name
        assert verify_store(url) == []

    def test_resume(self, tmp_path):
        cases = volume_cases()
        path = self.path(tmp_path, "r")
        journal = {"recipe_sha256": None, "case_ids": [c.case_id for c in cases]}
        writer = create_store(path, "volumes", n_cases=3, attrs=volumes_tests.ATTRS,
                              journal=journal)
        writer.write_case(0, cases[0])
        writer.abort()  # killed: the store is unfinished
        reopen = lambda: reopen_store(path, "volumes", 3, dict(volumes_tests.ATTRS),  # noqa: E731
                                      journal)
        if not self.resumable:
            with pytest.raises(StoreError, match="--resume works on Zarr stores only"):
                reopen()
            return
        writer = reopen()
        assert sorted(writer.recovered) == [0]
        for index in (1, 2):
            writer.write_case(index, cases[index])
        writer.close(pd.DataFrame({"case_id": journal["case_ids"],
                                   "split": ["train"] * 3}))
        assert_reads_back(open_store(path), cases)

    def test_boxes_and_landmarks(self, tmp_path):
        annotations = pytest.importorskip("test_annotations_store")  # needs Case.boxes
        for layout, make in (("stack", annotations.xray_case),
                             ("volumes", annotations.ct_case)):
            cases = [make(i) for i in range(3)]
            store = open_store(annotations.build(self.path(tmp_path, layout), layout,
                                                 cases, crash=1))
            for kind in ("boxes", "landmarks"):
                frame = getattr(store, kind)()
                written = [c for i, c in enumerate(cases) if i != 1]
                expected = sum(len(getattr(c, kind)) for c in written)
                assert len(frame) == expected
                assert set(frame["case_id"]) == {c.case_id for c in written}


class TestZarr(StoreFormatContract):
    name, suffix, resumable = "zarr", ".zarr", True

    def change_root_attribute(self, path: Path) -> None:
        metadata = json.loads((path / "zarr.json").read_text())
        metadata["attributes"]["medimg"]["dataset"] = "changed"
        (path / "zarr.json").write_text(json.dumps(metadata))


class TestHdf5(StoreFormatContract):
    name, suffix, resumable = "hdf5", ".h5", False

    def change_root_attribute(self, path: Path) -> None:
        import h5py

        with h5py.File(path, "r+") as f:
            f.attrs["medimg"] = json.dumps({**json.loads(f.attrs["medimg"]),
                                            "dataset": "changed"})


def test_a_volumes_tree_lists_the_same_nodes_in_the_same_order_in_every_format(tmp_path):
    """``dataset()`` of a volumes store is one DataTree shape whatever the format. HDF5's
    used to list the cases in table order (and its root's groups ``cases`` first), where
    Zarr's (``xarray.open_datatree``) lists every group by name; since the layouts
    refactor (i17-layouts) HDF5 gives Zarr's order. Pinned so that the two cannot drift
    apart again (found by the issue-17 red team)."""
    cases = volume_cases()[::-1]  # table order is not name order
    trees = {name: [node.path for node in open_store(volumes_tests.build(
        tmp_path / f"v-{name}", cases, format=name)).dataset().subtree]
        for name in format_names()}
    by_name = sorted(case.case_id for case in cases)
    assert trees["zarr"][2:5] == [f"/cases/{case_id}" for case_id in by_name]
    assert trees["hdf5"] == trees["zarr"]



def test_a_format_that_leaves_a_setting_unset_is_refused_when_registered():
    """A third format is one module and its ``register_format`` call: one that forgets
    a class setting (``writes_from_workers``, asked only once a volumes build runs) is
    refused there, at import, not in the middle of a build."""
    from medimg_build.store.formats import ZarrFormat, register_format

    class Forgetful(ZarrFormat):
        name = "forgetful"

        @property
        def writes_from_workers(self):  # as if no class above set it
            raise AttributeError("writes_from_workers")

    with pytest.raises(TypeError, match="Forgetful does not set writes_from_workers"):
        register_format(Forgetful())
    assert "forgetful" not in format_names()
