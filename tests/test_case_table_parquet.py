"""The case table as Parquet (issue 19): ``export-table`` carries the classification
labels and types ``steps`` as a list of records; a Zarr store keeps the same file as
``cases.parquet``, which DuckDB reads from the store's folder without Zarr, and which
the content manifest covers (verify and snapshots)."""

from __future__ import annotations

import shutil
import warnings
import zipfile
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_build import _chest_source

from medimg_build import open_store
from medimg_build.cli import main
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.export import read_exported_table
from medimg_build.store.opening import verify_store
from medimg_build.store.validate import validate_store

from fixtures import volume_folder

# Known findings, "No Finding" (known, none positive), unknown (empty cell), and an
# image that cannot be read: a failed case, which readers never see.
CHEST_ROWS = [("00000001_000.png", "Cardiomegaly", "1"),
              ("00000001_001.png", "Cardiomegaly|Effusion", "1"),
              ("00000002_000.png", "No Finding", "2"),
              ("00000003_000.png", "", "3"),
              ("00000004_000.png", "", "4"),
              ("00000005_000.png", "Effusion", "5")]
BROKEN = "00000005_000.png"


@pytest.fixture(scope="module")
def chest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("chest")
    source = _chest_source(root / "nih", CHEST_ROWS)
    (source / "images_001" / "images" / BROKEN).write_bytes(b"not a png")
    recipe = load_recipe("nih-chestxray14").with_overrides({"harmonize": {"shape": [32, 32]}})
    report = build_store(recipe, source, root / "chest.zarr", progress=False)
    assert list(report.failed) == [Path(BROKEN).stem]
    return root / "chest.zarr"


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> Path:
    return volume_folder.built(tmp_path_factory.mktemp("volumes"), "ct.zarr")


def _duckdb(sql: str, store: Path) -> pd.DataFrame:
    """``sql`` over ``cases``, the store's Parquet file read by DuckDB as a file."""
    connection = duckdb.connect()
    connection.execute(f"create view cases as select * from "
                       f"read_parquet('{store / 'cases.parquet'}')")
    return connection.execute(sql).df()


@pytest.mark.parametrize("name", ["chest", "volumes"])
def test_duckdb_reads_the_stores_parquet_as_store_cases(request, name):
    path = request.getfixturevalue(name)
    store = open_store(path)
    cases = store.cases
    duck = _duckdb("select * from cases", path)
    assert len(duck) == len(cases) > 0
    assert list(duck.columns[:len(cases.columns)]) == list(cases.columns)
    scalars = [c for c in cases.columns if cases[c].dtype != object]
    for column in scalars:
        pd.testing.assert_series_equal(duck[column], cases[column], check_dtype=False,
                                       check_names=False, obj=column)
    # Nested columns are nested in SQL: the first step's name, the normalization's method.
    first = _duckdb("select steps[1].name as step, intensity.method as method from cases",
                    path)
    assert first["step"].tolist() == [steps[0]["name"] for steps in cases["steps"]]
    assert first["method"].tolist() == [i["method"] for i in cases["intensity"]]
    kind = _duckdb("select typeof(steps[1].params) as t from cases limit 1", path)
    assert kind["t"].tolist() == ["JSON"]  # Parquet's JSON logical type
    # pyarrow reads the same file back to the stored values, nested ones included.
    back = read_exported_table(path / "cases.parquet")
    pd.testing.assert_frame_equal(back[list(cases.columns)], cases, check_dtype=False)


def test_the_labels_are_columns_unknown_is_null(chest):
    store = open_store(chest)
    labels = store.labels("finding")
    counts = _duckdb("select count(*) filter (where label_finding.Cardiomegaly = 1) as cardio, "
                     "count(*) filter (where label_finding.Effusion = 0) as no_effusion, "
                     "count(*) filter (where label_finding.Effusion is null) as unknown "
                     "from cases", chest).iloc[0].to_dict()
    assert counts == {"cardio": int((labels["Cardiomegaly"] == 1).sum()),
                      "no_effusion": int((labels["Effusion"] == 0).sum()),
                      "unknown": int((labels["Effusion"] == -1).sum())}
    assert counts["unknown"] == 2 and counts["cardio"] == 2
    back = read_exported_table(chest / "cases.parquet").set_index("case_id")
    for case_id, row in labels.iterrows():
        stored = {name: (None if value < 0 else int(value)) for name, value in row.items()}
        assert back.loc[case_id, "label_finding"] == stored
    assert Path(BROKEN).stem not in set(back.index)  # only readable cases


def test_steps_round_trip_through_pyarrow(volumes):
    table = pq.read_table(volumes / "cases.parquet")
    steps = table.schema.field("steps").type
    # A list of records (name, params), each step's own params as JSON text.
    assert pa.types.is_list(steps) and steps.value_type == pa.struct(
        [("name", pa.string()), ("params", pa.json_(pa.string()))])
    cases = open_store(volumes).cases
    assert read_exported_table(volumes / "cases.parquet")["steps"].tolist() == \
        cases["steps"].tolist()


def test_export_table_writes_the_stores_own_file(chest, tmp_path, capsys):
    out = tmp_path / "cases.parquet"
    assert main(["export-table", str(chest), "--out", str(out)]) == 0
    assert out.read_bytes() == (chest / "cases.parquet").read_bytes()
    assert "label_finding" in pq.read_schema(out).names


def test_an_hdf5_store_exports_the_same_table(tmp_path):
    source = _chest_source(tmp_path / "nih", CHEST_ROWS[:4])
    recipe = load_recipe("nih-chestxray14").with_overrides({"harmonize": {"shape": [32, 32]}})
    tables = {}
    for suffix in (".zarr", ".h5"):
        assert build_store(recipe, source, tmp_path / f"chest{suffix}", progress=False).ok
        assert main(["export-table", str(tmp_path / f"chest{suffix}"), "--out",
                     str(tmp_path / f"{suffix[1:]}.parquet")]) == 0
        tables[suffix] = read_exported_table(tmp_path / f"{suffix[1:]}.parquet")
    pd.testing.assert_frame_equal(tables[".h5"], tables[".zarr"], check_dtype=False)
    assert "label_finding" in tables[".h5"]  # HDF5 keeps no Parquet copy; its export has all


def test_verify_covers_the_parquet(chest, tmp_path):
    assert verify_store(chest) == []
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file beside the arrays is no stray object
        assert validate_store(chest) == []
    altered = tmp_path / "altered.zarr"
    shutil.copytree(chest, altered)
    data = bytearray((altered / "cases.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (altered / "cases.parquet").write_bytes(bytes(data))
    assert [str(p) for p in verify_store(altered)] == ["/: object cases.parquet sha256 differs"]
    (altered / "cases.parquet").unlink()
    assert [str(p) for p in verify_store(altered)] == ["/: object cases.parquet missing"]


def test_a_snapshot_carries_and_verifies_the_parquet(chest, tmp_path):
    snapshot = tmp_path / "chest.zarr.zip"
    assert main(["snapshot", str(chest), str(snapshot)]) == 0
    with zipfile.ZipFile(snapshot) as archive:
        assert archive.read("cases.parquet") == (chest / "cases.parquet").read_bytes()
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members["cases.parquet"] = members["cases.parquet"][:-8] + b"\0" * 8
    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(tampered, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    assert [str(p) for p in verify_store(snapshot)] == []
    assert [str(p) for p in verify_store(tampered)] == ["/: object cases.parquet sha256 differs"]
