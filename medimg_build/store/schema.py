"""Names, versions and checks shared by the store writers and the reader.

Every name here is part of the store contract (see the package docstring): renaming one
breaks every store already written, so change ``SCHEMA_VERSION`` with it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from zarr.codecs import BloscCodec, Crc32cCodec

from ..errors import StoreError

# 2.0: a volumes case became an OME-NGFF image (levels in scale<n>/, the mask in labels/).
# 3.0: a mask without a pyramid lies in its label image group (labels/mask/mask) with its
# z/y/x, the image has an omero display window, the manifest is a 0-d array. A 2.x
# reader would find no mask there and read every case as maskless: a new major, which
# it refuses. 3.x readers read 2.x stores (level_0_mask_path finds the mask of either).
SCHEMA_VERSION = "3.0"
READABLE_MAJORS = ("2", "3")  # the schema majors this version reads
LAYOUTS = ("stack", "volumes")

CASE = "case"  # the case dimension, and the array of case ids (so xarray indexes by id)
CHANNEL = "channel"
CASES_GROUP = "cases"  # volumes: one subgroup per case under it
IMAGE = "image"
MASK = "mask"
LABELS_GROUP = "labels"  # volumes: the case's OME-NGFF labels group (its masks)
CASE_ATTRS = "medimg_case"  # volumes: each case group's attribute (id, shape, affine...)
LEVEL_PREFIX = "scale"  # volumes: resolution level n of an image or mask is group scale<n>
COMPLETE = "complete"
AFFINE = "affine"
SPACING = "spacing"
ORIGIN = "origin"
SPATIAL = "spatial"  # dimension (and coordinate) of `spacing`: the stored spatial axes
WORLD = "world"  # dimension (and coordinate) of `origin`: ("S", "A", "R")
AFFINE_DIMS = ("affine_row", "affine_col")
LABEL_PREFIX = "label_"
CLASS_SUFFIX = "_class"
MISSING_LABEL = -1

MANIFEST = "manifest"  # the root array holding the content manifest (manifest.py)

# Root names a table column cannot take (label arrays are added to these).
STACK_ROOT_NAMES = frozenset(
    {CASE, CASES_GROUP, IMAGE, MASK, COMPLETE, AFFINE, SPACING, ORIGIN, SPATIAL, WORLD}
)
VOLUMES_ROOT_NAMES = frozenset({CASE, CASES_GROUP})

# Each 1-D per-case array (table columns, labels) is one chunk up to this many cases:
# a column is then read in one request, yet a 2M-image dataset is not one 100 MB chunk.
COLUMN_CHUNK = 1 << 20

# The stack's default shard holds about this many uncompressed bytes of image.
TARGET_SHARD_BYTES = 64 * 1024 * 1024


def default_compressor() -> BloscCodec:
    """Lossless and fast to decode. Chosen by ``make bench`` (benchmarks/storage.py):
    on real CT, zstd-3 with byte shuffle stores int16 HU 1% smaller than zstd-5 with
    bit-shuffle at the same write and read speed, and z-scored float32/float16 23%
    smaller (read ~40% slower, still ~1 GB/s on one core)."""
    return BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


# Image and mask chunks are written even when they hold only the fill value, so that a
# chunk missing from a finished store always means damage (integrity.py), never "zero".
WHOLE_ARRAY_CONFIG = {"write_empty_chunks": True}


def checksummed(compressor) -> tuple:
    """The bytes-to-bytes codecs of a chunk: ``compressor`` (one codec or several), then
    the crc32c of the compressed bytes, which every reader checks (integrity.py)."""
    codecs = tuple(compressor) if isinstance(compressor, (list, tuple)) else (compressor,)
    return codecs + (Crc32cCodec(),)


def check_node_name(name: Any, what: str, where: str | None = None) -> str:
    """A name that becomes a Zarr node (group or array) name, or a StoreError.

    Zarr forbids "/" inside a name, "." and ".." as names, and reserves a leading "__";
    we also refuse "\\", "..", and a leading "." so that a name is never a path trick
    on any filesystem or object store.
    """
    text = name if isinstance(name, str) else None
    bad = (
        text is None
        or text.strip() == ""
        or any(c in text for c in "/\\")
        or ".." in text
        or text.startswith((".", "__"))
    )
    if bad:
        raise StoreError(where, f"{what} {name!r} cannot name a store entry",
                         hint="use a non-empty name without '/', '\\', '..' or a leading '.'")
    return text


def check_case_id(case_id: Any, where: str | None = None) -> str:
    return check_node_name(case_id, "case id", where)


def level_group(level: int) -> str:
    return f"{LEVEL_PREFIX}{level}"


def image_path(level: int = 0) -> str:
    """Where a volumes case's image of resolution ``level`` is, in the case group."""
    return f"{level_group(level)}/{IMAGE}"


def mask_level_path(level: int, pyramid: bool) -> str:
    """Where level ``level`` of a mask is in its label image group (``labels/mask``):
    the group itself holds the array when the image has one level, else each level is
    in ``scale<n>/``. Why the two: ``ngff.py``."""
    return f"{level_group(level)}/{MASK}" if pyramid else MASK


def mask_path(level: int = 0, pyramid: bool = False) -> str:
    """Where a volumes case's mask of resolution ``level`` is, in the case group."""
    return f"{LABELS_GROUP}/{MASK}/{mask_level_path(level, pyramid)}"


def level_0_mask_path(case_group) -> str | None:
    """Where the level-0 mask of a volumes case group is (a ``zarr.Group`` or an adapter
    with its ``in``), whether the case has a pyramid or not (and in a schema 2.0 store,
    where it is always in ``scale0/``); None for a case without a mask."""
    return next((path for path in (mask_path(), mask_path(pyramid=True))
                 if path in case_group), None)


def label_array_name(label: str) -> str:
    return LABEL_PREFIX + label


def class_coord_name(label: str) -> str:
    return label + CLASS_SUFFIX


def array_info(array) -> dict[str, Any]:
    """What the root attributes record about one stored array."""
    meta = array.metadata
    return {
        "dims": list(meta.dimension_names or ()),
        "dtype": str(meta.data_type.to_json(zarr_format=3)),
        "shape": [int(n) for n in array.shape],
        "chunks": [int(n) for n in array.chunks],
        "shards": None if array.shards is None else [int(n) for n in array.shards],
        "codecs": [codec.to_dict() for codec in array.compressors],
    }


def is_integer(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))
