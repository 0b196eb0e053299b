"""The catalog: one query surface over stores of different modalities (issue 5)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from test_build import OBLIQUE_LPS, _chest_source, _ct_volume

from medimg_build import open_store
from medimg_build.catalog import Catalog
from medimg_build.cli import main
from medimg_build.errors import MedimgError
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.export import read_exported_table

# Recipe overrides of the three stores (also what the collection file says).
CT_SET = {"name": "ct-lung", "organ": "lung", "harmonize.spacing": [3, 3, 4],
          "labels.segmentation.classes": {"0": "background", "1": "nodule", "2": "vessel"}}
MR_SET = {"name": "mr-brain", "modality": "MR", "organ": "brain",
          "harmonize.spacing": [3, 3, 4], "harmonize.intensity.preset": "mr",
          "harmonize.intensity.window": None,
          "labels": None}
DX_SET = {"harmonize.shape": [16, 16]}
CHEST_ROWS = [("00000001_000.png", "Cardiomegaly", "1"),
              ("00000001_001.png", "Cardiomegaly|Effusion", "1"),
              ("00000002_000.png", "No Finding", "2"),
              ("00000003_000.png", "Effusion", "3"),
              ("00000004_000.png", "", "4")]


def _volumes(root: Path, n: int, masks: set[int]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for index in range(n):
        image, mask = _ct_volume(index, shape=(12, 10, 6))
        nib.save(nib.Nifti1Image(image, OBLIQUE_LPS), root / "images" / f"case{index}.nii.gz")
        if index in masks:
            nib.save(nib.Nifti1Image(mask, OBLIQUE_LPS), root / "labels" / f"case{index}.nii.gz")
    return root


def _sources(root: Path) -> dict[str, Path]:
    return {"ct": _volumes(root / "ct", 3, masks={0, 2}),
            "mr": _volumes(root / "mr", 2, masks=set()),
            "dx": _chest_source(root / "nih", CHEST_ROWS)}


def _nested(flat: dict) -> dict:
    nested: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("catalog")
    sources = _sources(root / "sources")
    built = {}
    for name, recipe, overrides in [("ct", "volume-folder", CT_SET),
                                    ("mr", "volume-folder", MR_SET),
                                    ("dx", "nih-chestxray14", DX_SET)]:
        out = root / f"{name}.zarr"
        recipe = load_recipe(recipe).with_overrides(_nested(overrides))
        assert build_store(recipe, sources[name], out, progress=False).ok
        built[name] = out
    return built


@pytest.fixture(scope="module")
def catalog(stores) -> Catalog:
    return Catalog.open([stores["ct"], stores["mr"], stores["dx"]])


def _keys(subset: pd.DataFrame) -> set[tuple[str, str]]:
    return {(Path(s).stem, c) for s, c in zip(subset["store"], subset["case_id"])}


def test_one_table_over_three_modalities(catalog):
    cases = catalog.cases
    assert len(cases) == 3 + 2 + 5
    assert cases.groupby("modality").size().to_dict() == {"CT": 3, "MR": 2, "DX": 5}
    # Named by --set name=, or (a bundled recipe's name) by the store's file name.
    assert set(cases["dataset"]) == {"ct-lung", "mr-brain", "dx"}
    assert set(cases["layout"]) == {"volumes", "stack"}
    assert cases["n_boxes"].eq(0).all()
    # each store's own columns come along (NaN for the other stores' cases)
    assert cases.loc[cases["modality"] == "DX", "view_position"].eq("PA").all()
    assert "3 store(s), 10 case(s)" in catalog.summary()


def test_ct_cases_with_segmentation(catalog):
    subset = catalog.query(modality="CT", organ="lung", has_segmentation=True)
    assert _keys(subset) == {("ct", "case0"), ("ct", "case2")}
    assert not catalog.query(modality="MR", has_segmentation=True).shape[0]


def test_xray_cases_with_a_finding(catalog):
    effusion = catalog.query(modality=["DX", "CR"], finding="Effusion")
    assert _keys(effusion) == {("dx", "00000001_001"), ("dx", "00000003_000")}
    findings = catalog.cases.set_index("case_id")["findings"]
    assert findings["00000001_001"] == ["Cardiomegaly", "Effusion"]
    assert findings["00000002_000"] == []      # No Finding: known, nothing positive
    assert findings["00000004_000"] is None    # unknown
    assert catalog.query(modality="CT")["findings"].isna().all()  # no such label


def test_all_mr_cases(catalog):
    assert _keys(catalog.query(modality="MR")) == {("mr", "case0"), ("mr", "case1")}
    assert _keys(catalog.query(dataset="mr-brain")) == {("mr", "case0"), ("mr", "case1")}


def test_sql_condition_through_duckdb(catalog):
    subset = catalog.where("modality = 'DX' and list_contains(findings, 'Cardiomegaly')")
    assert _keys(subset) == {("dx", "00000001_000"), ("dx", "00000001_001")}
    subset = catalog.where("has_segmentation or organ = 'brain'")
    assert _keys(subset) == {("ct", "case0"), ("ct", "case2"), ("mr", "case0"), ("mr", "case1")}
    counts = catalog.sql("select modality, count(*) as n from cases group by modality "
                         "order by modality")
    assert dict(zip(counts["modality"], counts["n"])) == {"CT": 3, "DX": 5, "MR": 2}
    with pytest.raises(MedimgError, match="no_such_column"):
        catalog.where("no_such_column = 1")


def test_lazy_selection_equals_the_stored_images(catalog, stores):
    subset = catalog.query(modality="CT", has_segmentation=True)
    images = catalog.images(subset)
    assert list(images) == [(str(stores["ct"]), "case0"), (str(stores["ct"]), "case2")]
    store = open_store(stores["ct"])
    for (_, case_id), ds in images.items():
        assert ds["image"].chunks is not None  # lazy, Dask-backed
        expected = store.read_image(case_id).array  # (x, y, z) in memory, one channel
        assert expected.ndim == 3 and ds["image"].dims == ("channel", "z", "y", "x")
        np.testing.assert_array_equal(ds["image"].values[0], expected.T)
        np.testing.assert_array_equal(ds["mask"].values, store.read_mask(case_id).array.T)
    # Stack stores: the selection as one Dataset along `case`.
    chest = catalog.stack(catalog.query(finding="Effusion"))
    assert list(chest["case"].values) == ["00000001_001", "00000003_000"]
    dx = open_store(stores["dx"])
    np.testing.assert_array_equal(chest["image"].sel(case="00000003_000").values[0],
                                  dx.read_image("00000003_000").array.T)
    with pytest.raises(MedimgError, match="volumes store"):
        catalog.stack(catalog.query(modality="CT"))


def test_parquet_and_catalog_file(catalog, stores, tmp_path):
    catalog.to_parquet(tmp_path / "all.parquet")
    table = read_exported_table(tmp_path / "all.parquet")
    assert list(table["case_id"]) == list(catalog.cases["case_id"])
    assert table["findings"].tolist() == catalog.cases["findings"].tolist()
    assert table["has_segmentation"].tolist() == catalog.cases["has_segmentation"].tolist()
    listing = tmp_path / "catalog.yaml"
    listing.write_text(yaml.safe_dump({"stores": [str(stores["ct"]), str(stores["dx"])]}))
    assert len(Catalog.open(listing).cases) == 3 + 5


def test_cli_catalog(stores, tmp_path, capsys):
    out = tmp_path / "ct.parquet"
    code = main(["catalog", str(stores["ct"]), str(stores["mr"]), str(stores["dx"]),
                 "--where", "modality = 'CT' and has_segmentation", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "3 store(s), 10 case(s)" in printed and "by modality: CT 3, MR 2, DX 5" in printed
    assert "2 matching case(s)" in printed
    assert list(pd.read_parquet(out)["case_id"]) == ["case0", "case2"]


def test_build_collection_then_catalog(tmp_path, capsys):
    sources = _sources(tmp_path / "downloads")
    collection = tmp_path / "collection.yaml"
    collection.write_text(yaml.safe_dump({"stores": [
        {"recipe": "volume-folder", "source": "downloads/ct", "out": "ct.zarr", "set": CT_SET},
        {"recipe": "volume-folder", "source": "downloads/mr", "out": "mr.zarr", "set": MR_SET},
        {"recipe": "nih-chestxray14", "source": str(sources["dx"]), "out": "dx.zarr",
         "set": DX_SET}]}))
    out = tmp_path / "collection"
    assert main(["build-collection", str(collection), "--out", str(out), "--quiet"]) == 0
    assert "3 store(s) built, 0 not built" in capsys.readouterr().out
    listed = yaml.safe_load((out / "catalog.yaml").read_text())["stores"]
    assert listed == ["ct.zarr", "mr.zarr", "dx.zarr"]
    catalog = Catalog.open(out / "catalog.yaml")
    assert catalog.cases.groupby("modality").size().to_dict() == {"CT": 3, "MR": 2, "DX": 5}
    assert _keys(catalog.query(has_segmentation=True)) == {("ct", "case0"), ("ct", "case2")}
    assert main(["catalog", str(out / "catalog.yaml"), "--where", "organ = 'brain'"]) == 0
    assert "2 matching case(s)" in capsys.readouterr().out


def test_collection_mistakes_are_one_line(tmp_path, capsys):
    collection = tmp_path / "c.yaml"
    collection.write_text(yaml.safe_dump({"stores": [{"recipe": "volume-folder",
                                                      "out": "a.zarr"}]}))
    assert main(["build-collection", str(collection), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "entry 1 lacks source" in err


def test_stores_of_one_generic_recipe_are_datasets_of_their_own(tmp_path, monkeypatch):
    """Issue 19: two volume-folder stores were one dataset, "volume-folder". A store is
    named by the name given to its recipe (--set name=...), else by its file name."""
    monkeypatch.chdir(tmp_path)
    _volumes(tmp_path / "src", 2, masks={0})
    for out, extra in (("liver.zarr", []), ("kidney.zarr", []),
                       ("third.zarr", ["--set", "name=lung-ct"])):
        assert main(["build", "volume-folder", "--source", "src", "--out", out, "--quiet",
                     "--set", "harmonize.spacing=[3,3,4]", *extra]) == 0
    catalog = Catalog.open(["liver.zarr", "kidney.zarr", "third.zarr"])
    counts = catalog.sql("select dataset, count(*) as n from cases group by dataset "
                         "order by dataset")
    assert dict(zip(counts["dataset"], counts["n"])) == {"kidney": 2, "liver": 2,
                                                         "lung-ct": 2}
    assert "liver.zarr: liver CT" in catalog.summary()


@pytest.mark.parametrize("location, name", [
    ("stores/ct.zarr", "ct"), ("s3://bucket/ct.zarr/", "ct"), ("ds.zarr.zip", "ds"),
    ("https://host/data/ds.zarr.zip", "ds"), ("ct.h5", "ct"), ("CT.HDF5", "CT"),
    ("plain", "plain")])
def test_a_store_file_name_without_its_suffix(location, name):
    from medimg_build.catalog import file_stem

    assert file_stem(location) == name
