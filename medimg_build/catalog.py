"""One query surface over many stores: their case tables as one DataFrame, SQL over it
(DuckDB), and lazy xarray access to the cases a query selects.

    catalog = Catalog.open(["ct.zarr", "mr.zarr", "chest.zarr"])   # or "catalog.yaml"
    catalog.cases                                    # one row per case of every store
    catalog.query(modality="CT", organ="lung", has_segmentation=True)
    catalog.query(modality="DX", finding="Effusion")
    catalog.where("modality = 'MR' and split = 'train'")     # a DuckDB SQL condition
    catalog.sql("select dataset, count(*) from cases group by dataset")
    catalog.images(subset)        # {(store, case_id): lazy xarray Dataset}
    catalog.stack(subset)         # stack-store cases of one shape as one Dataset

A catalog file is YAML or JSON: ``stores:`` a list of store paths or URLs (relative
paths are relative to the file), or entries ``{path: ..., storage_options: {...}}``.
``build_collection`` builds several stores from a collection file and writes one.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml

from .errors import MedimgError, RecipeError, StoreError
from .resources import recipes_dir
from .store.layouts import layout_named
from .store.opening import open_store
from .store.reader import MedimgStore
from .yaml_input import load_yaml, yaml_problem

CATALOG_FILE_SUFFIXES = (".yaml", ".yml", ".json")
MASK_NAME = "mask"
# Columns the catalog adds in front of each store's own case table (they win over a
# dataset column of the same name).
CATALOG_COLUMNS = ["store", "dataset", "layout", "case_id", "modality", "organ",
                   "has_segmentation", "findings", "n_boxes", "n_landmarks"]
# What a store's file name ends with, not part of its name: ct.zarr, ds.zarr.zip, ct.h5.
STORE_SUFFIX = re.compile(r"(\.zarr)?(\.zip)?$|\.(h5|hdf5)$", re.IGNORECASE)


class Catalog:
    """The cases of several stores. Open it with ``Catalog.open``."""

    def __init__(self, stores: list[MedimgStore]) -> None:
        self.stores: dict[str, MedimgStore] = {}
        for store in stores:
            if store.location in self.stores:
                raise StoreError(store.location, "is listed twice in the catalog")
            self.stores[store.location] = store
        tables = [catalog_rows(store) for store in self.stores.values()]
        self.cases: pd.DataFrame = (pd.concat(tables, ignore_index=True) if tables
                                    else pd.DataFrame(columns=CATALOG_COLUMNS))
        self._arrow = None

    @classmethod
    def open(cls, stores: str | os.PathLike | Iterable[str | os.PathLike],
             storage_options: dict | None = None) -> Catalog:
        """From store paths/URLs and/or catalog files (.yaml/.yml/.json)."""
        if isinstance(stores, (str, os.PathLike)):
            stores = [stores]
        opened = [open_store(location, options or storage_options)
                  for location, options in store_locations(stores)]
        return cls(opened)

    def __repr__(self) -> str:
        return f"Catalog({len(self.stores)} stores, {len(self.cases)} cases)"

    # -- selecting cases ----------------------------------------------------------------
    def query(self, *, finding: str | None = None, **filters: Any) -> pd.DataFrame:
        """The cases whose columns equal the given values (a list, tuple or set means
        any of them); ``finding`` keeps cases with that class among their findings."""
        keep = pd.Series(True, index=self.cases.index)
        for column, wanted in filters.items():
            if column not in self.cases:
                raise MedimgError(None, f"the catalog has no column {column!r}",
                                  hint=f"columns: {', '.join(self.cases.columns)}")
            values = self.cases[column]
            if isinstance(wanted, (list, tuple, set, frozenset)):
                keep &= values.isin(list(wanted))
            else:
                keep &= values == wanted
        if finding is not None:
            keep &= self.cases["findings"].map(lambda f: isinstance(f, list) and finding in f)
        return self.cases[keep]

    def where(self, condition: str) -> pd.DataFrame:
        """The cases matching a DuckDB SQL condition over the ``cases`` table, e.g.
        ``"modality = 'DX' and list_contains(findings, 'Effusion')"``."""
        query = f"select _row from _cases where {condition} order by _row"
        rows = self._run(query, condition).fetchnumpy()["_row"]
        return self.cases.iloc[np.asarray(rows, dtype=np.int64)]

    def sql(self, query: str) -> pd.DataFrame:
        """Any DuckDB query over the table ``cases``: lists and records are nested
        (``steps[1].name``, ``intensity.method``), what Arrow cannot hold exactly (each
        step's ``params``) is JSON (``store/table_arrow.py``)."""
        return self._run(query, query).df()

    # -- reading the selected cases ---------------------------------------------------
    def images(self, subset: pd.DataFrame | None = None) -> dict[tuple[str, str], xr.Dataset]:
        """Lazy, Dask-backed per-case Datasets (``store.case(case_id, chunks={})``:
        image [+ mask], coordinates in mm) keyed by (store, case_id), in the order of
        ``subset``."""
        subset = self.cases if subset is None else subset
        return {(location, case_id): self.stores[location].case(case_id, chunks={})
                for location, case_id in zip(subset["store"], subset["case_id"])}

    def stack(self, subset: pd.DataFrame | None = None) -> xr.Dataset:
        """The selected cases as one lazy Dataset along ``case`` (with a ``store``
        coordinate): only for cases of stack stores that share one image shape."""
        subset = self.cases if subset is None else subset
        if subset.empty:
            raise MedimgError(None, "no cases selected", hint="check the query")
        own_arrays = ~subset["layout"].map(lambda name: layout_named(name).cases_share_arrays)
        not_stack = sorted(set(subset.loc[own_arrays, "store"]))
        if not_stack:
            raise StoreError(not_stack[0], "is a volumes store: its cases have their own "
                             "shapes", hint="use catalog.images(subset) for per-case Datasets")
        parts = []
        for location, rows in subset.groupby("store", sort=False):
            ds = self.stores[location].dataset()
            names = [n for n in ("image", "mask", "affine") if n in ds]
            part = ds[names].sel(case=list(rows["case_id"]))
            parts.append(part.assign_coords(store=("case", [location] * len(rows))))
        shapes = {part["image"].shape[1:] for part in parts}
        if len(shapes) > 1:
            raise MedimgError(None, f"the selected stacks have different image shapes "
                              f"{sorted(shapes)}", hint="select cases of one shape, or use "
                              "catalog.images(subset)")
        variables = set.intersection(*(set(part.data_vars) for part in parts))
        return xr.concat([part[sorted(variables)] for part in parts], dim="case",
                         combine_attrs="drop")

    # -- the table as Arrow, DuckDB, Parquet ------------------------------------------------
    def to_arrow(self):
        """The case table as an Arrow table (what DuckDB and Parquet see)."""
        if self._arrow is None:
            from .store.export import table_to_arrow

            table = self.cases.astype(object).where(self.cases.notna(), None)
            nested = [c for c in table.columns if self.cases[c].dtype == object]
            self._arrow = table_to_arrow(table, nested)
        return self._arrow

    def to_parquet(self, path: str | os.PathLike, subset: pd.DataFrame | None = None) -> str:
        """Write the table, or the rows of ``subset`` (readable back with
        ``medimg_build.store.export.read_exported_table``), as ``export-table`` writes
        a store's (a .parquet name, its folder made if missing)."""
        from .store.export import write_parquet

        table = self.to_arrow()
        if subset is not None:
            table = table.take(self.cases.index.get_indexer(subset.index))
        write_parquet(table, os.fspath(path))
        return os.fspath(path)

    def _run(self, query: str, shown: str):
        connection = self._duckdb()
        import duckdb

        try:
            return connection.execute(query)
        except duckdb.Error as error:
            problem = str(error).strip().splitlines()[0]
            raise MedimgError(None, f"SQL {shown!r}: {problem}", hint="the table is 'cases'; "
                              "see the columns of Catalog.cases") from None

    def _duckdb(self):
        try:
            import duckdb
        except ImportError as error:
            raise MedimgError(None, "SQL over the catalog needs DuckDB",
                              hint="pip install duckdb, or use catalog.query(...)") from error
        import pyarrow as pa

        connection = duckdb.connect()
        table = self.to_arrow()
        connection.register("_cases", table.append_column(
            "_row", pa.array(np.arange(table.num_rows, dtype=np.int64))))
        connection.execute("create view cases as select * exclude (_row) from _cases")
        return connection

    # -- a summary for people ----------------------------------------------------------
    def summary(self) -> str:
        lines = [f"{len(self.stores)} store(s), {len(self.cases)} case(s)"]
        for location, store in self.stores.items():
            count = int((self.cases["store"] == location).sum())
            lines.append(f"  {location}: {dataset_name(store)} "
                         f"{store.attrs.get('modality')} {store.attrs.get('organ')} "
                         f"{store.layout}, {count} case(s), labels: "
                         f"{', '.join(label_kinds(store)) or '-'}")
        for column in ("modality", "organ", "dataset"):
            counts = self.cases[column].value_counts(sort=False)
            lines.append(f"by {column}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        return "\n".join(lines)


# -- the catalog row of each case ---------------------------------------------------------
def catalog_rows(store: MedimgStore) -> pd.DataFrame:
    """The store's case table with the catalog columns in front."""
    cases = store.cases.reset_index(drop=True)
    ids = list(cases["case_id"])
    added = {
        "store": store.location,
        "dataset": dataset_name(store),
        "layout": store.layout,
        "case_id": ids,
        "modality": cases.get("modality", pd.Series([store.attrs.get("modality")] * len(ids))),
        "organ": cases.get("organ", pd.Series([store.attrs.get("organ")] * len(ids))),
        "has_segmentation": mask_flags(store, ids),
        "findings": findings(store, ids),
        "n_boxes": _annotation_counts(store, "boxes", ids),
        "n_landmarks": _annotation_counts(store, "landmarks", ids),
    }
    front = pd.DataFrame(added, index=cases.index)
    rest = cases.drop(columns=[c for c in CATALOG_COLUMNS if c in cases])
    return pd.concat([front, rest], axis=1)


def dataset_name(store: MedimgStore) -> str:
    """The store's own name: the name its recipe was given (``--set name=...``, or a
    recipe file of one's own), else the store's file name without its suffix
    (``stores/ct.zarr`` -> ``ct``). A bundled recipe's name (``volume-folder``,
    ``nnunet``) names a kind of source, not a dataset: two stores built with it are two
    datasets. The store records its recipe's name as ``dataset`` (a name given on the
    command line replaces the recipe's), never its own path: that is not content."""
    name = str(store.attrs.get("dataset") or "")
    if name and not (recipes_dir() / f"{name}.yaml").is_file():
        return name
    return file_stem(store.location)


def file_stem(location: str) -> str:
    """``ct`` of ``ct.zarr``, ``s3://bucket/ct.zarr/``, ``ds.zarr.zip`` or ``ct.h5``."""
    base = posixpath.basename(location.replace(os.sep, "/").rstrip("/"))
    return STORE_SUFFIX.sub("", base) or base


def label_kinds(store: MedimgStore) -> list[str]:
    """The label kinds the store's vocabulary declares."""
    labels = store.attrs.get("labels") or {}
    return [kind for kind in ("classification", "segmentation", "boxes", "landmarks")
            if labels.get(kind)]


def mask_flags(store: MedimgStore, ids: list[str]) -> list[bool]:
    """Whether each case has a segmentation mask (metadata only, no voxels read).
    A stack has a mask for every case or for none; a volumes case has its own."""
    if layout_named(store.layout).cases_share_arrays:
        return [MASK_NAME in store.dataset()] * len(ids)
    return [MASK_NAME in store.case(case_id) for case_id in ids]


def findings(store: MedimgStore, ids: list[str]) -> list[list[str] | None]:
    """Per case, the class names its classification labels give it: the positive
    classes of a multi-label label, the class of a single-label one. None when the
    store has no classification label or all of the case's are unknown (-1). A label
    of the vocabulary that no built case had (every case failed, or the source's column
    is empty) has no array: it gives no finding."""
    vocabulary = (store.attrs.get("labels") or {}).get("classification") or {}
    found: list[list[str] | None] = [None] * len(ids)
    for name in store.label_names:
        spec = vocabulary[name]
        labels = store.labels(name).reindex(ids)
        classes = ([str(c) for c in labels.columns] if isinstance(labels, pd.DataFrame)
                   else [str(c) for c in spec.get("classes", [])])
        values = labels.to_numpy()
        for i, row in enumerate(values):
            if np.ndim(row) == 0:
                names = None if row < 0 else [_class_name(classes, int(row))]
            else:
                names = None if (row < 0).all() else [classes[k] for k in np.flatnonzero(row == 1)]
            if names is not None:
                found[i] = (found[i] or []) + names
    return found


def _class_name(classes: list[str], value: int) -> str:
    return classes[value] if value < len(classes) else str(value)


def _annotation_counts(store: MedimgStore, kind: str, ids: list[str]) -> list[int]:
    if kind not in label_kinds(store):
        return [0] * len(ids)
    table = store.boxes() if kind == "boxes" else store.landmarks()
    counts = table["case_id"].value_counts()
    return [int(counts.get(case_id, 0)) for case_id in ids]


# -- catalog files ------------------------------------------------------------------------
def store_locations(items: Iterable[str | os.PathLike]) -> list[tuple[str, dict | None]]:
    """(location, storage_options) of each store: catalog files are expanded."""
    found: list[tuple[str, dict | None]] = []
    for item in items:
        location = os.fspath(item)
        if location.lower().endswith(CATALOG_FILE_SUFFIXES) and "://" not in location:
            found += read_catalog_file(location)
        else:
            found.append((location, None))
    return found


def read_catalog_file(path: str | os.PathLike) -> list[tuple[str, dict | None]]:
    path = Path(path)
    if not path.is_file():
        raise StoreError(path, "no catalog file at this path")
    try:
        data = load_yaml(path.read_text())  # YAML is a superset of JSON
    except yaml.YAMLError as error:
        raise StoreError(path, f"is not valid YAML or JSON{yaml_problem(error)}") from None
    entries = data.get("stores") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise StoreError(path, "has no list 'stores'",
                         hint="write stores: [path or URL, ...]")
    found = []
    for entry in entries:
        if isinstance(entry, str):
            entry = {"path": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            raise StoreError(path, f"store entry {entry!r} is neither a path nor "
                             "{path: ..., storage_options: ...}")
        location = entry["path"]
        if "://" not in location and not os.path.isabs(location):
            location = os.fspath(path.parent / location)
        found.append((location, entry.get("storage_options")))
    return found


def write_catalog_file(path: str | os.PathLike, stores: list[str]) -> None:
    """A catalog file listing ``stores`` (paths relative to its folder stay relative)."""
    text = "# medimg-build catalog: open with `medimg-build catalog` or Catalog.open\n"
    Path(path).write_text(text + yaml.safe_dump({"stores": stores}, sort_keys=False))


# -- building a collection ----------------------------------------------------------------
@dataclass
class CollectionEntry:
    recipe: str
    source: Path
    out: str
    overrides: dict[str, Any] = field(default_factory=dict)


def read_collection(path: str | os.PathLike) -> list[CollectionEntry]:
    """A collection file: ``stores:`` a list of {recipe, source, out, set}, where
    ``set`` maps recipe keys (dotted, like --set) to values. Relative source and recipe
    paths are relative to the file."""
    path = Path(path)
    try:
        data = load_yaml(path.read_text())
    except FileNotFoundError:
        raise RecipeError(path, "no collection file at this path") from None
    except yaml.YAMLError as error:
        raise RecipeError(path, f"is not valid YAML{yaml_problem(error)}") from None
    entries = data.get("stores") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise RecipeError(path, "has no list 'stores'",
                          hint="stores: [{recipe: ..., source: ..., out: ...}, ...]")
    result, outs = [], set()
    for number, entry in enumerate(entries, 1):
        missing = [k for k in ("recipe", "source", "out")
                   if not isinstance(entry, dict) or not entry.get(k)]
        if missing:
            raise RecipeError(path, f"store entry {number} lacks {', '.join(missing)}",
                              hint="each entry needs recipe, source and out")
        unknown = sorted(set(entry) - {"recipe", "source", "out", "set"})
        if unknown:
            raise RecipeError(path, f"store entry {number} has unknown key(s) "
                              f"{', '.join(unknown)}", hint="keys: recipe, source, out, set")
        out = str(entry["out"])
        if out in outs or Path(out).name != out:
            raise RecipeError(path, f"store entry {number}: out {out!r} must be a unique "
                              "file name (stores are written into --out)")
        outs.add(out)
        recipe = str(entry["recipe"])
        if recipe.endswith((".yaml", ".yml")) and not os.path.isabs(recipe):
            recipe = os.fspath(path.parent / recipe)
        result.append(CollectionEntry(recipe, path.parent / str(entry["source"]), out,
                                      nested_overrides(entry.get("set") or {}, path)))
    return result


def nested_overrides(flat: dict[str, Any], where: Path) -> dict[str, Any]:
    """``{"harmonize.spacing": [1, 1, 1]}`` into ``{"harmonize": {"spacing": [...]}}``;
    a key no recipe has is refused with the closest real one, as ``--set`` does."""
    from .recipe.override_keys import check_key

    if not isinstance(flat, dict):
        raise RecipeError(where, f"'set' must map recipe keys to values, not {flat!r}")
    merged: dict[str, Any] = {}
    for key, value in flat.items():
        check_key(str(key), str(where), "set")
        node = merged
        *parents, leaf = str(key).split(".")
        for part in parents:
            node = node.setdefault(part, {})
        if isinstance(value, dict) and isinstance(node.get(leaf), dict):
            node[leaf].update(value)
        else:
            node[leaf] = value
    return merged


def build_collection(collection: str | os.PathLike, out_dir: str | os.PathLike, *,
                     workers: int = 1, overwrite: bool = False, progress: bool = True):
    """Build every store of a collection file into ``out_dir`` and write
    ``out_dir/catalog.yaml`` listing those that were built. Returns the build reports
    and the errors of entries that could not be built at all ({out: message})."""
    from .recipe.build import build_store
    from .recipe.model import load_recipe

    entries = read_collection(collection)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    reports, errors, built = [], {}, []
    for entry in entries:
        try:
            recipe = load_recipe(entry.recipe)
            if entry.overrides:
                recipe = recipe.with_overrides(entry.overrides)
            report = build_store(recipe, entry.source, out_dir / entry.out, workers=workers,
                                 overwrite=overwrite, progress=progress)
        except MedimgError as error:
            errors[entry.out] = str(error)
            continue
        reports.append(report)
        if report.built:
            built.append(entry.out)
    write_catalog_file(out_dir / "catalog.yaml", built)
    return reports, errors


def describe_subset(subset: pd.DataFrame) -> str:
    counts = subset.groupby(["dataset", "modality"], sort=False).size()
    parts = [f"{dataset} ({modality}) {n}" for (dataset, modality), n in counts.items()]
    return f"{len(subset)} matching case(s)" + (": " + ", ".join(parts) if parts else "")


__all__ = ["Catalog", "build_collection", "read_catalog_file", "read_collection",
           "write_catalog_file"]
