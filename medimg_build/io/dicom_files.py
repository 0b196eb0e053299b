"""Which files are DICOM, each parsed once (pydicom), whatever the vendor wrote.

``read_folder`` and ``read_file`` give the datasets the DICOM reader assembles (dicom.py).
A Part 10 file is parsed with its uncompressed pixel data left in the file (read once,
when decoded, by dicom_pixels); a deflated dataset is measured before pydicom inflates
it; an old ACR-NEMA style file (no preamble, no file meta) is read as dcm2niix reads it.
"""

from __future__ import annotations

import os
import warnings
import zlib
from io import BytesIO
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import _read_file_meta_info, read_dataset, read_preamble
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from ..errors import ImageReadError
from ..limits import OPTION, SETTING, ImageTooLargeError, current_max_voxels

SUFFIXES = (".dcm", ".dicom", ".ima")

DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"
_INFLATE_STEP = 2**24
# Values longer than this (in practice: uncompressed pixel data) stay in the file when
# the header is parsed; dicom_pixels reads them when it decodes.
DEFERRED_BYTES = 2**16


def files_under(folder: Path) -> list[Path]:
    """Every file below ``folder``, sorted, following symbolic links to folders (data
    trees on clusters are often link farms) but visiting each real folder once, so that
    a link loop ends instead of recursing forever."""
    seen: set[str] = set()
    found = []
    for directory, subdirectories, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(directory)
        if real in seen:
            subdirectories.clear()
            continue
        seen.add(real)
        found += [Path(directory) / name for name in files]
    return sorted(p for p in found if p.is_file())


def is_dicom_file(path: Path) -> bool:
    """True when the file starts with the DICOM preamble ('DICM' at byte 128)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _without_preamble(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return starts_without_preamble(handle.read(4))
    except OSError:
        return False


def _parse(path: Path) -> Dataset:
    """The file's dataset; the pixels are decoded later, for the chosen series only.

    Uncompressed pixel data is left in the file (pydicom's deferred read: the element
    holds its offset and is read when accessed), so that it is read once, when decoded,
    and never copied along with the header. Other files are parsed from memory:
    pydicom asks a file for its position at every element, a system call each, which
    costs more than reading the bytes along for a small file or compressed pixels."""
    with open(path, "rb") as handle:
        preamble, file_meta = _checked_meta(path, handle)
        syntax = None if file_meta is None else file_meta.get("TransferSyntaxUID")
        dataset = None
        if _leaves_pixels_in_file(syntax, os.fstat(handle.fileno()).st_size):
            dataset = _dataset_after_meta(handle, preamble, file_meta, syntax)
        if dataset is None:
            handle.seek(0)
            dataset = pydicom.dcmread(BytesIO(handle.read()), force=False)
    dataset.filename = str(path)
    return dataset


def _dataset_after_meta(handle: BinaryIO, preamble: bytes | None, file_meta: FileMetaDataset,
                        syntax: UID) -> Dataset | None:
    """The dataset that follows the file meta just read, its large values left in the
    file: what pydicom's dcmread builds (its read_partial), without parsing the file
    meta a second time, which cost a tenth of a series read. None for anything but a
    plain dataset after the meta (a command set, a damaged file): dcmread then reads
    the file as before, and fails in its own words."""
    start = handle.tell()
    if handle.read(2) in (b"", b"\x00\x00"):  # nothing more, or DIMSE command elements
        return None
    handle.seek(start)
    try:
        dataset = read_dataset(handle, syntax.is_implicit_VR, syntax.is_little_endian,
                               defer_size=DEFERRED_BYTES)
    except Exception:  # noqa: BLE001 - dcmread re-reads and says what is wrong
        return None
    parsed = FileDataset(handle, dataset, preamble, file_meta, syntax.is_implicit_VR,
                         syntax.is_little_endian)
    parsed.set_original_encoding(syntax.is_implicit_VR, syntax.is_little_endian,
                                 dataset._character_set)
    return parsed


def _leaves_pixels_in_file(syntax: UID | None, size: int) -> bool:
    # Deflated datasets are inflated in memory, where a deferred value cannot be found
    # again; compressed pixels (undefined length) would be read twice to find their end.
    return (isinstance(syntax, UID) and syntax.is_transfer_syntax and not syntax.is_deflated
            and not syntax.is_encapsulated and size > DEFERRED_BYTES)


def refuse_deflate_bomb(path: Path, source: BinaryIO) -> UID | None:
    """Refuse a deflated dataset that inflates past the size limit (``_checked_meta``).
    ``source``: the file ``path`` or its bytes, at their start. Returns the transfer
    syntax of the file meta (None: not Part 10, or damaged)."""
    file_meta = _checked_meta(path, source)[1]
    return None if file_meta is None else file_meta.get("TransferSyntaxUID")


def _checked_meta(path: Path, source: BinaryIO) -> tuple[bytes | None, FileMetaDataset | None]:
    """The preamble and file meta of a Part 10 file, ``source`` left where the dataset
    starts; (None, None) when it is not Part 10 or is damaged (pydicom then says so in
    its own words).

    pydicom inflates a Deflated Explicit VR Little Endian dataset in one
    zlib.decompress, whatever it holds: 4 MB of file can inflate to 4 GB before any
    Rows or Columns is known. So count the inflated bytes first, 16 MiB at a time, up to
    4 bytes per value of the size limit (an image within the limit, as float32)."""
    budget, inflated = 4 * current_max_voxels(), 0
    try:
        preamble = read_preamble(source, False)
        # pydicom's own meta reader (private; the public one opens the file itself):
        # it leaves the source where the dataset starts.
        file_meta = _read_file_meta_info(source)
        if file_meta.get("TransferSyntaxUID") != DeflatedExplicitVRLittleEndian:
            return preamble, file_meta
        inflate = zlib.decompressobj(-zlib.MAX_WBITS)
        while inflated <= budget and (pending := source.read(_INFLATE_STEP)):
            while pending and inflated <= budget:
                inflated += len(inflate.decompress(pending, _INFLATE_STEP))
                pending = inflate.unconsumed_tail
    except (InvalidDicomError, zlib.error, ValueError, EOFError, KeyError, TypeError):
        return None, None
    if inflated > budget:
        raise ImageTooLargeError(
            path, f"deflated DICOM dataset inflates past {budget:,} bytes (4 bytes per "
            f"value of the limit of {current_max_voxels():,})",
            hint=f"if the file is real, raise the limit with {OPTION} N or the recipe's "
            f"{SETTING}")
    return preamble, file_meta


def read_file(path: Path) -> Dataset:
    try:
        dataset = _parse(path)
    except InvalidDicomError:
        dataset = _read_without_preamble(path)
    except (OSError, EOFError, ValueError, KeyError, TypeError) as error:
        raise ImageReadError(
            path, f"cannot read DICOM file ({type(error).__name__}: {error})",
            hint="the file may be truncated or corrupt",
        ) from error
    if not _is_image(dataset) and not _has_header(dataset):
        raise _no_header(path)
    if not _is_image(dataset) and _claims_image(dataset):
        # pydicom drops encapsulated pixel data cut short before its end delimiter
        raise _image_without_pixels(path)
    if not _is_image(dataset):
        raise ImageReadError(
            path, "DICOM file holds no image (no PixelData)",
            hint="point at an image file, not a report, structure set or DICOMDIR",
        )
    return dataset


def _image_without_pixels(path: Path) -> ImageReadError:
    return ImageReadError(path, "damaged DICOM file: an image SOP class without pixel "
                          "data (truncated?)", hint="replace or remove the file")


def _has_header(dataset: Dataset) -> bool:
    """A Part 10 file names its SOP class (file meta or dataset); bytes after the 'DICM'
    marker that parse into no known attribute are garbage, not a report or a plan."""
    file_meta = getattr(dataset, "file_meta", None) or Dataset()
    try:
        return any(k in dataset for k in ("SOPClassUID", "Modality", "DirectoryRecordSequence")) \
            or "MediaStorageSOPClassUID" in file_meta
    except Exception:  # noqa: BLE001 - a lazily parsed garbage element fails on access
        return False


def _no_header(path: Path) -> ImageReadError:
    return ImageReadError(path, "damaged DICOM file: the 'DICM' marker is followed by no "
                          "readable DICOM header (no SOP class, no modality)",
                          hint="replace the file: it is corrupt")


def starts_without_preamble(head: bytes) -> bool:
    """The first bytes of an old ACR-NEMA style file (no preamble, no 'DICM'): a little
    endian element of group 0008 (dcm2niix's isDICOMfile, nii_dicom.cpp) or of the file
    meta group 0002, whose element number is below 0x0100."""
    return head[:2] in (b"\x02\x00", b"\x08\x00") and head[3:4] == b"\x00"


def _parse_without_preamble(path: Path) -> Dataset:
    """A file without preamble, parsed the way dcm2niix and pydicom's force=True do:
    without file meta, implicit VR little endian unless the first element spells a VR
    (then explicit VR). The transfer syntax so chosen is written into the file meta,
    which the pixel decoder needs, and recorded (see _facts). InvalidDicomError when
    it does not parse."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = pydicom.dcmread(path, defer_size="64 KB", force=True)
    except Exception as error:  # noqa: BLE001 - any parse failure means "not DICOM"
        raise InvalidDicomError(f"{type(error).__name__}: {error}") from error
    if "TransferSyntaxUID" not in (getattr(dataset, "file_meta", None) or Dataset()):
        implicit, little = dataset.original_encoding
        syntax = (ImplicitVRLittleEndian if implicit else
                  ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
        if getattr(dataset, "file_meta", None) is None:
            dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = syntax
        dataset.read_without_file_meta = syntax.name  # recorded in meta["dicom"]
    return dataset


def _read_without_preamble(path: Path) -> Dataset:
    # Old ACR-NEMA style files have no 'DICM' preamble; accept one only when it parses
    # into something with pixels, so that a text file named .dcm is still refused.
    try:
        dataset = _parse_without_preamble(path)
    except InvalidDicomError:
        dataset = None
    if dataset is not None and _is_image(dataset):
        return dataset
    if dataset is not None and ("SOPClassUID" in dataset or "Modality" in dataset):
        raise ImageReadError(path, "DICOM file holds no image (no PixelData)",
                             hint="point at an image file, not a plan, report or DICOMDIR")
    raise ImageReadError(
        path, "not a DICOM file (no 'DICM' marker and no readable image header)",
        hint="check that the file is DICOM; other formats need their own suffix",
    )


def _is_image(dataset: Dataset) -> bool:
    if "DirectoryRecordSequence" in dataset:
        return False
    file_meta = getattr(dataset, "file_meta", None) or Dataset()
    if file_meta.get("MediaStorageSOPClassUID") == DICOMDIR_SOP_CLASS:
        return False
    return "PixelData" in dataset and "Rows" in dataset and "Columns" in dataset


def _claims_image(dataset: Dataset) -> bool:
    """The SOP class is an image storage class (reports, plans, structure sets are not)."""
    file_meta = getattr(dataset, "file_meta", None) or Dataset()
    uid = dataset.get("SOPClassUID") or file_meta.get("MediaStorageSOPClassUID")
    return uid is not None and "Image Storage" in str(getattr(uid, "name", ""))


def read_folder(folder: Path) -> list[tuple[Path, Dataset]]:
    found = []
    for path in files_under(folder):
        part10 = is_dicom_file(path)
        if path.name.upper() == "DICOMDIR" or not (part10 or _without_preamble(path)):
            continue  # READMEs, JSON sidecars, thumbnails, DICOMDIR indexes
        try:
            dataset = _parse(path) if part10 else _parse_without_preamble(path)
        except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as error:
            # It starts like DICOM, so it is a damaged slice, not a stray file:
            # skipping it would only turn into a vaguer "missing slice" later.
            raise ImageReadError(
                path, f"damaged DICOM file in the series ({type(error).__name__}: {error})",
                hint="replace or remove the file",
            ) from error
        if _is_image(dataset):
            found.append((path, dataset))
        elif not _has_header(dataset):
            raise _no_header(path)
        elif _claims_image(dataset):
            raise ImageReadError(
                path, "damaged DICOM file in the series: an image SOP class without "
                "pixel data (truncated?)", hint="replace or remove the file",
            )
    if not found:
        raise ImageReadError(
            folder, "contains no DICOM image files",
            hint="point at a folder of DICOM files",
        )
    return found
