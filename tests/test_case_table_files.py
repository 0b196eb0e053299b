"""The case table's Parquet files, tried as users outside Python would (issue 19, red
team): one writer for the store's ``cases.parquet``, ``export-table`` and the catalog,
whose bytes follow the data, not pandas' settings; names that say another format
refused; a catalog over a store whose every case failed; the file read from a
snapshot and from S3 (moto) by pyarrow and DuckDB.

DuckDB's ``httpfs`` extension is not installed here and cannot be downloaded offline
(``INSTALL httpfs`` fails), so DuckDB reads S3 through ``s3fs`` registered as an fsspec
filesystem (``DuckDBPyConnection.register_filesystem``), and pyarrow through its own
``S3FileSystem``; both against the moto server of ``servers.py``."""

from __future__ import annotations

import json
import shutil
import warnings
import zipfile
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from pyarrow.fs import S3FileSystem

from medimg_build import open_store
from medimg_build.catalog import Catalog
from medimg_build.cli import main
from medimg_build.recipe.build import build_store
from medimg_build.recipe.model import load_recipe
from medimg_build.store.table_arrow import case_table, parquet_bytes

from fixtures import class_folders


def _build(source: Path, out: Path, allow_failures: bool = False, recipe=None) -> Path:
    recipe = recipe or load_recipe("class-folders")
    report = build_store(recipe, source, out, progress=False)
    assert report.ok or allow_failures
    return out


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("folders")
    class_folders.make(root / "src")
    return _build(root / "src", root / "folders.zarr")


@pytest.fixture(scope="module")
def all_failed(tmp_path_factory) -> Path:
    """A store of a build whose every case failed: its table has no row."""
    root = tmp_path_factory.mktemp("failed")
    for name in ("benign/a.png", "malignant/b.png"):
        (root / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "src" / name).write_bytes(b"not a png")
    out = _build(root / "src", root / "failed.zarr", allow_failures=True)
    assert open_store(out).cases.empty
    return out


# -- one writer, bytes that follow the data ----------------------------------------------
def _cases(strings: str) -> pd.DataFrame:
    return pd.DataFrame({"case_id": pd.Series(["a", "b"], dtype=strings),
                         "split": pd.Series(["train", "test"], dtype=strings),
                         "n_source_files": [1, 2]})


def test_the_file_does_not_follow_how_pandas_holds_text():
    """pandas 3 holds text as Arrow ``large_string``, pandas 2 (or pandas 3 with
    ``future.infer_string`` off) as Python objects, which Arrow reads as ``string``:
    the Arrow schema stored in the file, so its bytes and the store's content hash,
    followed the pandas setting of the machine that built it."""
    tables = [case_table(_cases(kind), []) for kind in ("object", "str")]
    assert [t.schema.field("case_id").type for t in tables] == [pa.string(), pa.string()]
    assert parquet_bytes(tables[0]) == parquet_bytes(tables[1])


def test_a_store_built_with_pandas_text_as_objects_has_the_same_hash(tmp_path, folders):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas 3 says the option is deprecated
        try:
            objects = pd.option_context("future.infer_string", False)
        except pd.errors.OptionError:
            pytest.skip("this pandas has no future.infer_string option")
        with objects:
            other = _build(folders.parent / "src", tmp_path / "objects.zarr")
    assert (other / "cases.parquet").read_bytes() == (folders / "cases.parquet").read_bytes()
    assert open_store(other).attrs["manifest"]["content_sha256"] == \
        open_store(folders).attrs["manifest"]["content_sha256"]


def test_export_and_catalog_write_with_the_stores_writer(folders, tmp_path, capsys):
    out = tmp_path / "cases.parquet"
    assert main(["export-table", str(folders), "--out", str(out)]) == 0
    assert out.read_bytes() == (folders / "cases.parquet").read_bytes()
    catalog = Catalog.open([folders])
    # --out into a folder that does not exist yet, as export-table allows
    written = tmp_path / "new" / "folder" / "catalog.parquet"
    assert main(["catalog", str(folders), "--out", str(written)]) == 0
    assert written.read_bytes() == parquet_bytes(catalog.to_arrow())
    metadata = pq.ParquetFile(written).metadata
    assert metadata.row_group(0).column(0).compression == "SNAPPY"
    assert b"pandas" not in (metadata.metadata or {})  # no pandas version in the file


@pytest.mark.parametrize("command", ["export-table", "catalog"])
@pytest.mark.parametrize("name", ["cases.csv", "cases.jsonl", "cases"])
def test_a_name_of_another_format_is_refused(folders, tmp_path, capsys, command, name):
    """The file was Parquet whatever its name: ``cases.csv`` opened in a spreadsheet
    as binary garbage."""
    args = [command, str(folders), "--out", str(tmp_path / name)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"{tmp_path / name}: is not a .parquet file name" in err
    assert not (tmp_path / name).exists()


# -- a store whose every case failed ---------------------------------------------------
def test_an_empty_store_keeps_a_readable_table(all_failed, capsys):
    assert main(["verify", str(all_failed)]) == 0
    duck = duckdb.sql(f"select count(*) from read_parquet('{all_failed / 'cases.parquet'}')")
    assert duck.fetchall() == [(0,)]
    assert pq.read_schema(all_failed / "cases.parquet").field("case_id").type == pa.string()


def test_a_catalog_takes_a_store_whose_every_case_failed(all_failed, folders, capsys):
    """Its recipe declares the classification label, but no case had a value, so the
    store has no label array: the catalog asked for it and stopped with 'no label'."""
    assert "class" in open_store(all_failed).attrs["labels"]["classification"]
    catalog = Catalog.open([all_failed, folders])
    assert len(catalog.cases) == len(open_store(folders).cases)
    assert main(["catalog", str(all_failed), str(folders)]) == 0
    assert f"{all_failed}: failed" in capsys.readouterr().out


# -- the file outside the store's folder: a snapshot, S3 ------------------------------------
def test_pyarrow_and_duckdb_read_the_table_in_a_snapshot(folders, tmp_path):
    snapshot = tmp_path / "folders.zarr.zip"
    assert main(["snapshot", str(folders), str(snapshot)]) == 0
    expected = pq.read_table(folders / "cases.parquet")
    with zipfile.ZipFile(snapshot) as archive:
        with archive.open("cases.parquet") as member:
            assert pq.read_table(member).equals(expected)  # a stored entry: seekable
        with archive.open("cases.parquet") as member:
            counted = duckdb.read_parquet(member).aggregate("count(*)").fetchall()
    assert counted == [(expected.num_rows,)]


def test_pyarrow_and_duckdb_read_the_table_on_s3(folders, s3, tmp_path, capsys):
    url = s3.upload(folders, "folders.zarr")
    endpoint = s3.options["client_kwargs"]["endpoint_url"]
    fs = S3FileSystem(access_key="test", secret_key="test", region="us-east-1",
                            endpoint_override=endpoint.removeprefix("http://"),
                            scheme="http")
    table = ds.dataset("bucket/folders.zarr/cases.parquet", filesystem=fs)
    benign = table.to_table(filter=ds.field("label_class") == 0)
    assert benign.num_rows == int((open_store(folders).labels("class") == 0).sum()) > 0
    connection = duckdb.connect()
    connection.register_filesystem(s3.fs)
    rows = connection.sql(f"select count(*), count(label_class), any_value(steps[1].name) "
                          f"from read_parquet('{url}/cases.parquet')").fetchall()
    assert rows[0][:2] == (len(open_store(folders).cases),) * 2 and rows[0][2]
    # export-table from S3 to S3: the store's own bytes
    options = ["--storage-options", json.dumps(s3.options)]
    assert main(["export-table", url, "--out", "s3://bucket/out/cases.parquet", *options]) == 0
    assert s3.fs.cat("bucket/out/cases.parquet") == (folders / "cases.parquet").read_bytes()


def test_the_catalog_command_takes_storage_options(folders, s3, capsys):
    """Every other read command took --storage-options; the catalog of an S3 store
    needed a catalog file to say where the server was."""
    url = s3.upload(folders, "folders.zarr")
    assert main(["catalog", url, "--storage-options", json.dumps(s3.options),
                 "--where", "list_contains(findings, 'benign')"]) == 0
    assert f"{url}: folders OT" in capsys.readouterr().out


@pytest.mark.parametrize("values", [[{}, {}], [[{}], []], [{"a": {}}, {"a": {}}]])
def test_a_column_of_empty_records_is_json(values):
    """A source column of records that are empty in every case (a JSON sidecar's field)
    became an Arrow struct without fields, which Parquet cannot write: the store's close
    stopped with ArrowNotImplementedError after every case was written."""
    cases = pd.DataFrame({"case_id": ["a", "b"], "extra": pd.Series(values, dtype=object)})
    table = case_table(cases, ["extra"])
    back = pq.read_table(pa.BufferReader(parquet_bytes(table)))
    assert isinstance(table.schema.field("extra").type, pa.JsonType)
    assert [json.loads(v) for v in back.column("extra").to_pylist()] == values


def test_the_default_table_beside_a_store_on_http_is_refused_in_one_line(folders, http,
                                                                         tmp_path, capsys):
    """export-table writes next to the store by default: next to an https:// store it
    raised fsspec's bare NotImplementedError (HTTP is read-only)."""
    shutil.copytree(folders, http.root / "folders.zarr")
    url = f"{http.url}/folders.zarr"
    assert main(["export-table", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"medimg-build: error: {url}.cases.parquet: cannot be written: http:// "
                   "is read-only (give --out a local path, or a writable URL such as s3://)")
    out = tmp_path / "cases.parquet"
    assert main(["export-table", url, "--out", str(out)]) == 0
    assert out.read_bytes() == (folders / "cases.parquet").read_bytes()


def _dicom_ct_store(tmp_path: Path, name: str, series: Path) -> Path:
    source = tmp_path / f"{name}-src"
    (source / "images").mkdir(parents=True)
    (source / "images" / name).symlink_to(series)
    recipe = load_recipe("volume-folder").with_overrides(
        {"harmonize": {"spacing": [3.0, 3.0, 3.0]}})
    return _build(source, tmp_path / f"{name}.zarr", recipe=recipe)


def test_two_dicom_stores_tables_read_together(shared_data, tmp_path):
    """TotalSegmentator's CT has ConvolutionKernel "Br38f\\3" (VM 2), pydicom's CT_small
    "STANDARD": the kernel column was list<string> in one file and string in the other,
    and DuckDB could not read both (union_by_name too: VARCHAR to VARCHAR[]). The real
    convention is one text, as dcm2niix writes it in its sidecar."""
    pydicom_data = pytest.importorskip("pydicom.data")
    small = Path(pydicom_data.get_testdata_file("CT_small.dcm"))
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "CT_small.dcm").symlink_to(small)
    stores = [_dicom_ct_store(tmp_path, "total", shared_data / "totalsegmentator" /
                              "example_ct_dicom"),
              _dicom_ct_store(tmp_path, "small", tmp_path / "small")]
    files = ", ".join(f"'{store / 'cases.parquet'}'" for store in stores)
    kernels = duckdb.sql(f"select case_id, convolution_kernel from read_parquet([{files}], "
                         "union_by_name = true) order by case_id").fetchall()
    assert kernels == [("small", "STANDARD"), ("total", "Br38f\\3")]
