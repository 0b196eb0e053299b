"""What a chunk may decode to, checked on its compressed bytes before zarr decodes it.

Blosc and zstd allocate the size their header declares before they decode, so a store
from another lab could make each chunk of a few MB decode to a gigabyte, and zarr
decodes chunks in parallel. For each array, ``chunk_bound`` says what one chunk may
decode to (exactly, for fixed-size values); ``size_problem`` reads a chunk's header and
compares. Codecs whose decoded size cannot be known before decoding (gzip inflates a
chunk whole) are refused outright (``check_codecs``). integrity.py applies both to
every chunk zarr-python reads, chunk_reads.py to the lean reader's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from zarr.abc.codec import BytesBytesCodec
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec, ZstdCodec
from zarr.core.metadata import ArrayV3Metadata

from ..errors import StoreError

BLOSC_HEADER_BYTES = 16
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class ChunkBound:
    """What one chunk of an array may decode to, checked on its compressed bytes before
    zarr decodes them: Blosc and zstd both allocate the size their header declares."""

    compressor: str  # "blosc" or "zstd"
    decoded_bytes: int  # exactly, for fixed-size values; at most, for variable-length
    exact: bool
    sharded: bool  # a chunk is a byte range of a shard, not an object


def chunk_bound(metadata, variable_bytes: int) -> ChunkBound | None:
    """The ChunkBound of ``metadata``'s chunks (sharding's inner ones), whatever their
    crc32c; ``variable_bytes`` bounds a chunk of variable-length strings."""
    if not isinstance(metadata, ArrayV3Metadata):
        return None
    codecs, shape = tuple(metadata.codecs), tuple(metadata.chunk_grid.chunk_shape)
    sharded = len(codecs) == 1 and isinstance(codecs[0], ShardingCodec)
    if sharded:
        codecs, shape = tuple(codecs[0].codecs), tuple(codecs[0].chunk_shape)
    codecs = codecs[:-1] if codecs and isinstance(codecs[-1], Crc32cCodec) else codecs
    if len(codecs) != 2 or not isinstance(codecs[1], (BloscCodec, ZstdCodec)):
        return None
    exact = isinstance(codecs[0], BytesCodec)
    size = int(np.prod(shape)) * metadata.data_type.to_native_dtype().itemsize if exact \
        else variable_bytes
    return ChunkBound("blosc" if isinstance(codecs[1], BloscCodec) else "zstd", size,
                      exact, sharded)


def size_problem(bound: ChunkBound, data) -> str | None:
    """What is wrong with the decoded size a chunk's header declares, or None."""
    declared = _blosc_declared_bytes(data) if bound.compressor == "blosc" \
        else _zstd_declared_bytes(data)
    if declared is None:
        return f"is not a {bound.compressor} frame that declares its decoded size"
    if declared > bound.decoded_bytes or (bound.exact and declared != bound.decoded_bytes):
        return f"declares {declared} decoded bytes where its shape holds " \
            f"{'' if bound.exact else 'at most '}{bound.decoded_bytes}"
    return None


def _zstd_declared_bytes(data) -> int | None:
    """Frame_Content_Size of a zstd frame header (RFC 8878, 3.1.1.1), None when the frame
    omits it (numcodecs would then grow its output without a bound) or is no frame."""
    head = np.frombuffer(data, dtype=np.uint8)[:18].tobytes()
    if len(head) < 6 or head[:4] != ZSTD_MAGIC:
        return None
    descriptor = head[4]
    single_segment = bool(descriptor & 0x20)
    start = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 3]
    width = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    if width == 0 or len(head) < start + width:
        return None
    return int.from_bytes(head[start:start + width], "little") + (256 if width == 2 else 0)


def unbounded_codecs(codecs) -> list[str]:
    """Names of the chunk compressors among ``codecs`` (sharding's inner ones too) whose
    decoded size a reader cannot know before decoding: zarr inflates gzip whole, so one
    small chunk could take gigabytes. medimg-build writes Blosc (images, masks) and
    zstd (tables, coordinates), whose headers declare it (``size_problem``)."""
    found = []
    for codec in codecs:
        if isinstance(codec, ShardingCodec):
            found += unbounded_codecs((*codec.codecs, *codec.index_codecs))
        elif isinstance(codec, BytesBytesCodec) and not isinstance(
                codec, (BloscCodec, ZstdCodec, Crc32cCodec)):
            found.append(str(codec.to_dict().get("name", type(codec).__name__)))
    return found


def check_codecs(location: str, array: str, metadata) -> None:
    """Refuse an array compressed by a codec in ``unbounded_codecs``, before any chunk."""
    names = unbounded_codecs(metadata.codecs) if isinstance(metadata, ArrayV3Metadata) \
        else []
    if names:
        raise StoreError(location, f"{array} is compressed with {', '.join(names)}, whose "
                         "decoded size cannot be checked before decoding (a chunk of a few "
                         "KB could decode to gigabytes)", hint="medimg-build reads stores "
                         "compressed with Blosc or zstd; rewrite the store with one of them")


def _blosc_declared_bytes(data) -> int | None:
    """The uncompressed size in a Blosc 1 header: bytes 4-7, little-endian (c-blosc's
    README_HEADER.rst); None if the chunk is shorter than a header."""
    view = np.frombuffer(data, dtype=np.uint8)
    if len(view) < BLOSC_HEADER_BYTES:
        return None
    return int.from_bytes(view[4:8].tobytes(), "little")
