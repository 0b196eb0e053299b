"""NIfTI-1/2 (and FreeSurfer MGH/MGZ) through nibabel, whose conventions MedicalImage uses.

The affine is ``img.affine`` exactly as nibabel reports it (sform, else qform, else the
fallback from the voxel sizes) so that a volume reads the same here and in nibabel.
"""

from __future__ import annotations

import gzip
import io
import json
import math
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from isal import igzip
from isal.isal_zlib import IsalError
from nibabel.filebasedimages import ImageFileError
from nibabel.fileholders import FileHolder

from ..errors import ImageReadError
from ..image import MedicalImage
from ..limits import check_size
from ..provenance import AppliedStep

SUFFIXES = (".nii", ".nii.gz", ".mgz", ".mgh")
_NIFTI2_HEADER_BYTES = 540  # the larger of the two headers
_CIFTI_EXTENSION = 32  # NIfTI extension code of CIFTI-2's XML
# What `medimg-build export` writes into a NIfTI header (medimg_build/export/nifti.py):
# a "comment" extension, code 6 (NIFTI_ECODE_COMMENT of nifti1_io.h; nibabel/nifti1.py
# extension_codes), holding JSON whose one key is EXPORT_KEY: the case's steps and
# modality, given back to the image read from it. Any other comment is left alone.
EXPORT_ECODE = 6
EXPORT_KEY = "medimg_build_export"
# Bytes a compressed stream may hold past the voxels its header declares: MGH's footer
# (scan parameters, tags) lives there, and some writers pad. More is a gzip bomb.
_TRAILING_BYTES_ALLOWED = 2**20
_INFLATE_BYTES = 2**20  # inflated at a time into a NIfTI's voxels, without _buffer
_SLAB_VALUES = 2**22  # voxels scaled at a time (32 MiB of float64)
# Bytes of header extensions (between the header and vox_offset) a NIfTI may hold:
# nibabel reads every extension whole into memory, and keeps it, before the voxels, so a
# .nii.gz could inflate gigabytes of "comments" from a few MB. Real extensions (AFNI
# XML, a DICOM header from dcm2niix, CIFTI's XML) are kilobytes to a few MB.
_EXTENSION_BYTES_ALLOWED = 64 * 2**20

# Every way nibabel (and gzip/zlib/ISA-L below it) reports a damaged or foreign file.
_INFLATE_ERRORS = (zlib.error, IsalError, gzip.BadGzipFile)
_READ_ERRORS = (ImageFileError, OSError, EOFError, ValueError,
                nib.spatialimages.HeaderDataError) + _INFLATE_ERRORS


def read_nifti(path: Path) -> MedicalImage:
    try:
        img, raw = _load(path)
        slope, inter = _scaling(img)
    except _READ_ERRORS as error:
        raise ImageReadError(
            path, f"{_what_failed(error)} ({type(error).__name__}: {error})",
            hint="the file may be truncated or not what its suffix says",
        ) from error

    _check_voxel_sizes(path, img)
    intensity: dict[str, Any] = {}
    array = raw
    if array.dtype.names:  # RGB24/RGBA32 voxels are structured: make a channel axis
        array, dropped_alpha = _structured_to_channels(array)
        intensity.update(photometric="RGB", alpha_dropped=dropped_alpha)
    if slope is not None:
        array = _scaled(array, slope, inter)
        intensity.update(rescale_slope=slope, rescale_intercept=inter)
    array, spatial_ndim = _fit_axes(path, array, has_rgb=bool(raw.dtype.names))
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    array = np.ascontiguousarray(array) if not (
        array.flags.c_contiguous or array.flags.f_contiguous) else array

    fmt = "mgh" if isinstance(img, nib.MGHImage) else "nifti"
    exported = exported_record(img.header)
    meta = {
        "format": fmt,
        "source_files": [str(path.resolve())],
        # NIfTI voxels live in scanner/template space by definition; the codes below say
        # how trustworthy that frame is (0/0 = only voxel sizes were known).
        "space": "patient",
        "modality": exported["modality"] if isinstance(exported.get("modality"), str) else None,
        "intensity": intensity,
        "pixel_spacing_known": True,
        fmt: _header_facts(img),
    }
    image = MedicalImage(array=array, affine=np.array(img.affine, dtype=np.float64),
                         spatial_ndim=spatial_ndim, meta=meta,
                         history=exported_steps(exported))
    return image.recorded("read", reader=fmt, path=str(path), shape=list(raw.shape),
                          scaled=slope is not None)


def _scaled(array: np.ndarray, slope: float, inter: float) -> np.ndarray:
    """``array * slope + inter`` as float32: the same values as nibabel's scaling
    (float64, then stored as float32), one slab of at most ``_SLAB_VALUES`` values at a
    time along the slowest axis. Whole, the float64 copy and its temporaries cost 16
    bytes per voxel: a 1 MB .nii.gz of 2**29 zeros with scl_slope peaked at 7.3 GB."""
    out = np.empty_like(array, dtype=np.float32)  # keeps nibabel's (Fortran) order
    if array.ndim == 0 or array.size == 0:
        out[...] = array.astype(np.float64) * slope + inter
        return out
    axis = array.ndim - 1 if array.flags.f_contiguous and not array.flags.c_contiguous else 0
    step = max(1, _SLAB_VALUES * array.shape[axis] // array.size)
    for start in range(0, array.shape[axis], step):
        slab = (slice(None),) * axis + (slice(start, start + step),)
        out[slab] = array[slab].astype(np.float64) * slope + inter
    return out


def _load(path: Path) -> tuple[Any, np.ndarray]:
    """The nibabel image and its unscaled voxels, read whole (the pixels must not stay
    tied to an open file), once the header's size is within the limit. A .nii.gz or
    .mgz is inflated by ISA-L (isal), twice as fast as zlib for the same bytes (0.23 vs
    0.44 s on a 512x512x200 int16 CT, `make bench`): decompression is most of a NIfTI
    build's reading. Only the bytes the header declares are inflated, plus a small
    margin to prove the stream ends there."""
    if path.name.lower().endswith((".nii.gz", ".mgz")):
        with igzip.open(path, "rb") as handle:
            head = handle.read(_NIFTI2_HEADER_BYTES)
            klass = nib.MGHImage if path.name.lower().endswith(".mgz") else \
                _nifti_class(path, head)
            _refuse_large_extensions(path, klass, head)
            handle.seek(0)
            img = klass.from_file_map({"image": FileHolder(fileobj=_InflatedInto(handle))},
                                      mmap=False)  # no memmap of a gzip stream
            raw = _voxels(path, img)
            _refuse_trailing_bytes(path, handle, _data_end(img))
            return img, raw
    if path.name.lower().endswith(".nii"):
        with open(path, "rb") as handle:
            head = handle.read(_NIFTI2_HEADER_BYTES)
        _refuse_large_extensions(path, _nifti_class(path, head), head)
    img = nib.load(path, mmap=False)
    return img, _voxels(path, img)


class _InflatedInto:
    """A gzip file whose ``readinto`` inflates straight into the caller's buffer.
    GzipFile's own (io.BufferedIOBase's) inflates the whole request into a temporary
    ``bytes`` and copies it over: nibabel reads the voxels with one ``readinto``, so a
    CT's voxels were in memory twice at the read's peak. The file's BufferedReader
    (``_buffer``, where GzipFile itself reads) hands a large request to the inflating
    reader's own ``readinto``; without it, slabs of ``_INFLATE_BYTES`` bound the copy."""

    def __init__(self, handle) -> None:
        self._handle = handle

    def readinto(self, buffer) -> int:
        reader = getattr(self._handle, "_buffer", None)
        if isinstance(reader, io.BufferedReader):
            return reader.readinto(buffer)
        with memoryview(buffer) as view, view.cast("B") as target:
            done = 0
            while done < len(target):
                count = self._handle.readinto(target[done:done + _INFLATE_BYTES])
                if not count:
                    break
                done += count
            return done

    def __getattr__(self, name: str):
        return getattr(self._handle, name)


def _refuse_large_extensions(path: Path, klass, head: bytes) -> None:
    """Refuse a NIfTI whose vox_offset leaves more than ``_EXTENSION_BYTES_ALLOWED``
    for header extensions, before nibabel reads them (MGH has none)."""
    if klass is nib.MGHImage:
        return
    header_class = klass.header_class
    size = header_class.template_dtype.itemsize
    header = header_class(head[:size], check=False)
    extension_bytes = float(header["vox_offset"]) - size
    if extension_bytes > _EXTENSION_BYTES_ALLOWED:
        raise ImageReadError(
            path, f"header extensions of {extension_bytes:,.0f} bytes (vox_offset "
            f"{float(header['vox_offset']):,.0f}) are over the {_EXTENSION_BYTES_ALLOWED:,} "
            "bytes allowed before the voxels", hint="the file is forged or damaged; "
            "re-export it (real header extensions are a few MB at most)")


def _voxels(path: Path, img) -> np.ndarray:
    """The unscaled voxels, read only after the header passed every check."""
    _refuse_cifti(path, img)
    check_size(path, _declared_shape(img), "image")
    return np.asarray(img.dataobj.get_unscaled())


def _declared_shape(img) -> tuple[int, ...]:
    """Dimensions as the header states them, with RGB24/RGBA32 fields as a channel axis."""
    dtype = img.header.get_data_dtype()
    return tuple(img.header.get_data_shape()) + ((len(dtype.names),) if dtype.names else ())


def _data_end(img) -> int:
    """Offset of the byte after the voxels the header declares (the image's own header
    copy has vox_offset reset to 0; the array proxy keeps the file's)."""
    proxy = img.dataobj
    return int(proxy.offset) + math.prod(int(n) for n in proxy.shape) * proxy.dtype.itemsize


def _refuse_trailing_bytes(path: Path, handle, data_end: int) -> None:
    """A gzip stream that inflates past the declared voxels: a few GB of zeros behind a
    small header are a few MB of gzip. Inflate only the allowed margin to find out."""
    handle.seek(data_end)
    if len(handle.read(_TRAILING_BYTES_ALLOWED + 1)) > _TRAILING_BYTES_ALLOWED:
        raise ImageReadError(
            path, f"compressed stream holds more than {_TRAILING_BYTES_ALLOWED:,} bytes "
            f"past the {data_end:,} bytes its header declares (a gzip bomb, or a header "
            "whose dims are too small)", hint="the file is forged or damaged; re-export it")


def _refuse_cifti(path: Path, img) -> None:
    """CIFTI-2 (brain-ordinate matrices in a NIfTI-2 file) has no voxel grid."""
    cifti = isinstance(img, nib.Cifti2Image) or any(
        extension.get_code() == _CIFTI_EXTENSION
        for extension in getattr(img.header, "extensions", ()))
    if cifti or not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image, nib.MGHImage)):
        name = "Cifti2Image" if cifti else type(img).__name__
        raise ImageReadError(path, f"{name} is not a voxel image",
                             hint="only NIfTI-1/2 and MGH volumes are read")


def _nifti_class(path: Path, head: bytes):
    """Nifti1Image or Nifti2Image by the header's own signature, as nib.load decides."""
    for klass in (nib.Nifti1Image, nib.Nifti2Image):
        if klass.header_class.may_contain_header(head[:klass.header_class.template_dtype.itemsize]):
            return klass
    raise ImageFileError(f"{path.name}: no NIfTI-1 or NIfTI-2 header")


def _what_failed(error: Exception) -> str:
    """The failure in words, from what nibabel and gzip raise: a truncated download, a
    file that is not gzip, a header whose dims promise more voxels than the file holds."""
    if isinstance(error, EOFError):
        return "truncated: the compressed stream ends early"
    if isinstance(error, _INFLATE_ERRORS):
        return "not a valid gzip stream (damaged, or not gzip-compressed)"
    if isinstance(error, OSError) and "Expected" in str(error) and "bytes" in str(error):
        return "truncated, or its header's dim is wrong: fewer voxel bytes than the " \
            "header's dimensions require"
    if isinstance(error, ImageFileError):
        return "not a NIfTI/MGH file (no valid header)"
    return "cannot read as NIfTI/MGH"


def _check_voxel_sizes(path: Path, img) -> None:
    """Refuse a zero, negative or non-finite voxel size in pixdim when the affine is
    built from pixdim (no sform). nibabel silently repairs such headers (abs() of a
    negative size, 1 mm for a zero one), which would invent a geometry: a negative size
    may be meant as a flip (ANALYZE habits) or not, so which side is left is a guess.
    With an sform, the sform alone places the voxels (a flip there is legitimate)."""
    if not isinstance(img.header, nib.Nifti1Header) or int(img.header["sform_code"]) > 0:
        return
    try:
        with nib.openers.ImageOpener(path) as handle:  # the header as written, unrepaired
            header = type(img.header).from_fileobj(handle, check=False)
    except Exception:  # noqa: BLE001 - nibabel has read it once already; keep its view
        return
    ndim = min(int(header["dim"][0]), 3)
    for axis in range(1, ndim + 1):
        size, n = float(header["pixdim"][axis]), int(header["dim"][axis])
        if n > 1 and not np.isfinite(size):
            raise ImageReadError(path, f"voxel size pixdim[{axis}] is {size}",
                                 hint="the header is damaged; rewrite it with the true sizes")
        if n > 1 and size == 0:
            raise ImageReadError(path, f"voxel size pixdim[{axis}] is zero and there is no "
                                 "sform to place the voxels", hint="rewrite the header with "
                                 "the true voxel sizes (e.g. nibabel set_zooms)")
        if n > 1 and size < 0:
            raise ImageReadError(path, f"negative voxel size pixdim[{axis}] = {size:g} with "
                                 "no sform: the NIfTI standard gives it no meaning, so the "
                                 "orientation is ambiguous", hint="rewrite the file with an "
                                 "sform stating the orientation (flips belong in the affine)")


def _scaling(img) -> tuple[float | None, float | None]:
    """(slope, intercept) when the header asks for non-trivial scaling, else (None, None)."""
    slope = getattr(img.dataobj, "slope", 1.0)
    inter = getattr(img.dataobj, "inter", 0.0)
    slope = 1.0 if slope is None or not np.isfinite(slope) or slope == 0 else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    if slope == 1.0 and inter == 0.0:
        return None, None
    return slope, inter


def _structured_to_channels(array: np.ndarray) -> tuple[np.ndarray, bool]:
    names = [n for n in array.dtype.names if n.upper() != "A"]
    channels = np.stack([array[n] for n in names], axis=-1)
    return channels, len(names) < len(array.dtype.names)


def _fit_axes(path: Path, array: np.ndarray, has_rgb: bool) -> tuple[np.ndarray, int]:
    """Spatial axes, then at most one channel axis (time points, echoes, RGB)."""
    if array.ndim - has_rgb < 2:
        raise ImageReadError(path, f"{array.ndim - has_rgb}D data of shape {array.shape} "
                             "is not an image", hint="expected a 2D, 3D or 4D image")
    spatial = 2 if array.ndim - has_rgb == 2 else 3
    # Singleton axes after the spatial ones (e.g. a 4D file with one volume, or the
    # unused 4th axis of a 5D vector file) carry nothing: drop them.
    extra = [ax for ax in range(spatial, array.ndim) if array.shape[ax] == 1]
    if array.ndim - len(extra) > spatial + 1:
        raise ImageReadError(
            path, f"{array.ndim}D image of shape {array.shape} has more than one "
            "non-spatial axis",
            hint="only 2D/3D images with at most one channel/time axis are supported",
        )
    return np.squeeze(array, axis=tuple(extra)) if extra else array, spatial


def _header_facts(img) -> dict[str, Any]:
    header = img.header
    facts: dict[str, Any] = {"shape": [int(n) for n in img.shape],
                             "dtype": str(header.get_data_dtype())}
    if isinstance(header, nib.Nifti1Header):  # also Nifti2Header
        sform, qform = int(header["sform_code"]), int(header["qform_code"])
        spatial_unit, time_unit = header.get_xyzt_units()
        facts.update(sform_code=sform, qform_code=qform, spatial_unit=spatial_unit,
                     time_unit=time_unit, intent=header.get_intent()[0],
                     version=2 if isinstance(header, nib.Nifti2Header) else 1)
    return facts


def exported_record(header) -> dict[str, Any]:
    """What ``medimg-build export`` recorded in this header (``EXPORT_KEY``'s value),
    or {} for any other NIfTI (a comment of another tool, or text that is not ours)."""
    for extension in getattr(header, "extensions", None) or ():
        if extension.get_code() != EXPORT_ECODE:
            continue
        try:
            value = json.loads(extension.content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            continue
        if isinstance(value, dict) and isinstance(value.get(EXPORT_KEY), dict):
            return value[EXPORT_KEY]
    return {}


def exported_steps(record: dict[str, Any]) -> tuple[AppliedStep, ...]:
    """The history an exported image had in its store, as one step ``exported`` whose
    ``steps`` are that history: kept whole, and not mistaken for this read's own steps
    (``image_source`` takes the first ``read`` step's path as the file's)."""
    steps = record.get("steps")
    if not isinstance(steps, list):
        return ()
    return (AppliedStep("exported", {"store": record.get("store"),
                                     "case_id": record.get("case_id"), "steps": steps}),)
