"""Content checksums of an HDF5 store: the counterpart of the Zarr manifest
(manifest.py), with the same summary, the same ``manifest`` dataset at the root (0-d,
as the Zarr array) and the same content hash formula, so ``verify`` reads both formats alike.

An HDF5 file has no objects of its own to list, so the manifest names what a reader
depends on, in keys shaped like a Zarr store's:

- ``<path>/c/<i>/<j>...``: the stored (compressed) bytes of each chunk of a numeric
  dataset, read with ``read_direct_chunk`` -- what a flipped byte on disk changes;
- ``<path>/values``: a string dataset's values as canonical JSON (variable-length
  strings are stored as references into the file's heap, which say nothing of the text);
- ``<path>/metadata``: a node's shape, dtype, chunks, filters and attributes as
  canonical JSON, without HDF5's dimension-scale bookkeeping (object references that
  differ from file to file) and, at the root, without what ``stable_attrs`` drops.

The file's own bytes (superblock, B-trees, free space) are not hashed: two equal
stores written by different HDF5 library versions still give one content hash.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import h5py
import numpy as np

from ...errors import StoreError
from .hdf5_backend import is_string
from .hdf5_dimensions import is_dimension_only, scale_problems
from .hdf5_group import Hdf5Group, decode_attr, decode_attrs
from ..manifest import (
    ALGORITHM, MANIFEST, ManifestError, Mismatch, canonical_json, compare, content_sha256,
    hash_problem, refuse_unfinished, sources_of, stable_attrs,
)

METADATA, VALUES = "metadata", "values"


def write_hdf5_manifest(h5: h5py.File) -> dict[str, Any]:
    """Checksum the finished store ``h5`` (root attributes final), store the manifest
    dataset and add the summary to the root ``medimg`` attribute. Returns the summary."""
    if MANIFEST in h5:  # left by a killed close
        del h5[MANIFEST]
    objects = hdf5_objects(h5)
    sources = _sources(h5)
    medimg = json.loads(h5.attrs["medimg"])
    summary = {"algorithm": ALGORITHM, "n_objects": len(objects),
               "content_sha256": content_sha256({"medimg": medimg}, objects, sources)}
    document = {"algorithm": ALGORITHM, "objects": dict(sorted(objects.items())),
                "sources": sources}
    # A scalar dataset: a 0-d variable of the root to netCDF, as the Zarr store's 0-d
    # array is. Shaped (1,) with a dimension of its own (before), h5netcdf made it an
    # indexed coordinate that every node of xarray's DataTree inherits.
    dataset = h5.create_dataset(MANIFEST, data=canonical_json(document),
                                dtype=h5py.string_dtype("utf-8"))
    dataset.attrs["description"] = json.dumps(
        "medimg content manifest (medimg_build/store/formats/hdf5_manifest.py)")
    h5.attrs["medimg"] = json.dumps({**medimg, "manifest": summary})
    return summary


def verify_hdf5(location: str, h5: h5py.File) -> list[Mismatch]:
    """``verify_store`` for an HDF5 file (see manifest.verify_store)."""
    medimg = decode_attr(h5.attrs.get("medimg", "{}"))
    refuse_unfinished(medimg, location, "--overwrite (HDF5 builds do not resume)")
    if not isinstance(medimg, dict):  # as open_store says it (reader.check_medimg)
        raise StoreError(location, "is an HDF5 file but not a medimg store (no 'medimg' "
                         "root attribute)", hint="was it written by medimg-build?")
    if "manifest" not in medimg or MANIFEST not in h5:
        raise ManifestError(location, "has no content manifest",
                            hint="built by an older medimg-build; rebuild it")
    recorded = json.loads(manifest_text(h5[MANIFEST]))
    actual = hdf5_objects(h5)
    problems = compare(recorded["objects"], actual, _locate)
    if not problems:
        digest = content_sha256({"medimg": medimg}, actual, _sources(h5))
        problems += hash_problem(digest, medimg["manifest"]["content_sha256"])
    # The scale attachments are not hashed (object references differ between files)
    # but say which axis is which to h5netcdf: checked against the hashed dims instead.
    return problems + [Mismatch(path, problem) for path, problem in scale_problems(h5)]


def manifest_text(dataset: h5py.Dataset) -> str:
    """The manifest document of the ``manifest`` dataset: scalar, or of one element in
    stores written before the manifest became 0-d (schema 3.0 wrote both)."""
    values = np.asarray(dataset.asstr()[()], dtype=object)
    if values.size != 1:
        raise ManifestError(dataset.file.filename, f"its manifest dataset holds "
                            f"{values.size} values, not one document",
                            hint="the file was altered: rebuild it")
    return str(values.reshape(-1)[0])


def hdf5_objects(h5: h5py.File) -> dict[str, str]:
    """key -> sha256 of every object the manifest names (module docstring)."""
    objects = {METADATA: _sha256(canonical_json(_root_metadata(h5)).encode())}

    def visit(name: str, node) -> None:
        if name == MANIFEST or is_dimension_only(node):  # netCDF bookkeeping, as SCALE_ATTRS
            return
        objects[f"{name}/{METADATA}"] = _sha256(canonical_json(_metadata(node)).encode())
        if not isinstance(node, h5py.Dataset):
            return
        if is_string(node.dtype):
            values = node.asstr()[()]
            values = values.tolist() if isinstance(values, np.ndarray) else values
            objects[f"{name}/{VALUES}"] = _sha256(canonical_json(values).encode())
        elif node.chunks is None:
            objects[f"{name}/{VALUES}"] = _sha256(np.ascontiguousarray(node[()]).tobytes())
        else:
            for index in range(node.id.get_num_chunks()):
                info = node.id.get_chunk_info(index)
                grid = [o // c for o, c in zip(info.chunk_offset, node.chunks)]
                _, raw = node.id.read_direct_chunk(info.chunk_offset)
                objects[f"{name}/c/" + "/".join(map(str, grid))] = _sha256(raw)

    h5.visititems(visit)
    return objects


def _root_metadata(h5: h5py.File) -> dict[str, Any]:
    return stable_attrs(decode_attrs(h5.attrs))


def _metadata(node) -> dict[str, Any]:
    attrs = decode_attrs(node.attrs)
    if "dimension_names" in node.attrs:
        attrs["dimension_names"] = [str(n) for n in node.attrs["dimension_names"]]
    if not isinstance(node, h5py.Dataset):
        return {"attrs": attrs}
    return {"attrs": attrs, "shape": list(node.shape), "dtype": str(node.dtype),
            "chunks": list(node.chunks or []), "compression": node.compression,
            "compression_opts": node.compression_opts, "shuffle": node.shuffle}


def _locate(key: str) -> tuple[str, str]:
    """(dataset or group path, "chunk c/0/1", "values" or "metadata") of a key."""
    if key == METADATA:
        return "", METADATA
    if key.endswith(f"/{METADATA}"):
        return key.removesuffix(f"/{METADATA}"), METADATA
    if "/c/" in key:
        path, _, grid = key.rpartition("/c/")
        return path, f"chunk c/{grid}"
    return key.removesuffix(f"/{VALUES}"), VALUES


def _sources(h5: h5py.File) -> dict[str, list[str]]:
    """``manifest.sources_of`` the file's root, read through the adapter (as the
    writer's: h5py's errors as they are, which ``file_errors`` names at close)."""
    return sources_of(Hdf5Group(h5, h5.filename, "w"))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
