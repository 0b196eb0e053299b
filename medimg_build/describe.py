"""A human-readable description of a store, for ``medimg-build inspect``."""

from __future__ import annotations

import os
from pathlib import Path

from .labels.splits import ordered_splits
from .store import open_store
from .store.formats import pick_format


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """``1 case``, ``3 cases`` (``plural`` where adding an s is wrong)."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def directory_size(path: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def file_count(path: str | Path) -> int:
    return sum(1 for f in Path(path).rglob("*") if f.is_file())


def describe_store(path: str, storage_options: dict | None = None) -> str:
    store = open_store(path, storage_options)
    attrs = store.attrs
    cases = store.cases
    lines = [
        f"{path}",
        f"  dataset     {attrs.get('dataset')} — {attrs.get('title', '')}",
        f"  modality    {attrs.get('modality')}   organ {attrs.get('organ')}   "
        f"layout {store.layout}   schema {attrs.get('schema_version')}",
        f"  recipe      {attrs['recipe']['name']} {attrs['recipe']['version']} "
        f"(sha256 {attrs['recipe']['sha256'][:12]})",
        f"  cases       {counted(len(cases), 'case')} complete"
        + (f"; splits {split_counts(cases['split'])}" if len(cases) and "split" in cases
           else ""),
    ]
    if os.path.isdir(path):
        lines.append(f"  on disk     {directory_size(path) / 1e6:.2f} MB in "
                     f"{counted(file_count(path), 'file')}")
    elif os.path.isfile(path):  # an HDF5 file, a snapshot
        lines.append(f"  on disk     {os.path.getsize(path) / 1e6:.2f} MB in 1 file")
    report = attrs.get("build_report", {})
    if report:
        lines.append(f"  build       {report.get('built')} built, {len(report.get('failed', {}))} "
                     f"failed, {report.get('seconds')} s")
        # A failure names its case (``a_1: not a PNG``): after "failed a_1:", once is enough.
        lines += [f"    failed {k}: {str(v).removeprefix(f'{k}: ')}"
                  for k, v in report.get("failed", {}).items()]
    labels = attrs.get("labels", {})
    for name, spec in labels.get("classification", {}).items():
        lines.append(f"  label       {name}: {spec['kind']}, "
                     f"{counted(len(spec['classes']), 'class', 'classes')}")
    if "segmentation" in labels:
        classes = len(labels["segmentation"]["classes"])
        lines.append(f"  segmentation {counted(classes, 'class', 'classes')}")
    arrays = attrs.get("arrays") or {}
    lines.append("  arrays" if arrays else "  arrays      none: no case was built")
    sharded = pick_format(path, storage_options=storage_options).name != "hdf5"
    for name, info in arrays.items():
        lines.append(f"    {info.get('path', name):22} {_array_line(info, sharded)}")
    if len(cases):
        columns = [c for c in ["case_id", "split", "modality", "harmonized_shape", "harmonized_spacing"] if c in cases]
        lines.append("  first cases")
        lines += ["    " + line for line in cases[columns].head(5).to_string(index=False).splitlines()]
    return "\n".join(lines)


def split_counts(splits) -> str:
    """``train 2, val 1``: the cases of each split, in the order people say them."""
    counts = splits.astype(str).value_counts()
    return ", ".join(f"{s} {counts[s]}" for s in ordered_splits(counts.index))


def _array_line(info: dict, sharded: bool = True) -> str:
    """``int16 (channel, z, y, x) shape (4, 1, 512, 512) chunks (1, 1, 512, 512) shards
    (4, 1, 512, 512) blosc zstd-3 shuffle``. A volumes store records its case arrays as
    a pattern, null meaning the case's own extent: ``shape per case``, ``chunks (1, 1,
    all, all)`` (one slice a chunk), ``shards whole array``."""
    codecs = []
    for codec in info.get("codecs", []):
        config = codec.get("configuration", {})
        if codec.get("name") == "blosc":
            codecs.append(f"blosc {config.get('cname')}-{config.get('clevel')} "
                          f"{config.get('shuffle')}")
        else:
            codecs.append(codec.get("name", "?"))
    dims = ", ".join(info.get("dims", []))
    # An HDF5 file has no shards (hdf5_backend.py); its volumes pattern records null.
    shards = f"shards {_sizes(info.get('shards'), 'whole array')} " if sharded else ""
    return (f"{info.get('dtype')} ({dims}) shape {_sizes(info.get('shape'), 'per case')} "
            f"chunks {_sizes(info.get('chunks'), 'whole array')} {shards}{', '.join(codecs)}")


def _sizes(values: list | None, when_all_own: str) -> str:
    """Sizes along each axis; None is the case's own extent (``all`` of that axis)."""
    if not values:
        return "-"
    if all(v is None for v in values):
        return when_all_own
    return "(" + ", ".join("all" if v is None else str(v) for v in values) + ")"
