"""MetaImage (.mha/.mhd), NRRD (.nrrd/.nhdr) and Analyze (.hdr/.img) through SimpleITK.

ITK keeps geometry in LPS+ with its own axis order; geometry.affine_from_sitk and
array_from_sitk are the only bridge to our RAS+/(i, j, k) convention.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import ImageReadError
from ..geometry import LPS_TO_RAS, affine_from_geometry, affine_from_sitk, array_from_sitk
from ..image import MedicalImage
from ..limits import check_size
from .detached import data_files

SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr", ".hdr", ".img")

_FORMATS = {".mha": "metaimage", ".mhd": "metaimage", ".nrrd": "nrrd", ".nhdr": "nrrd",
            ".hdr": "analyze", ".img": "analyze"}


def read_itk(path: Path) -> MedicalImage:
    # Checked before SimpleITK opens the header, which would follow any name it holds.
    detached = data_files(path)
    try:
        image = _read_within_limit(path)
    except RuntimeError as error:
        # ITK's message spans many lines with its C++ source location; keep the gist.
        raise ImageReadError(
            path, f"cannot read with SimpleITK ({itk_gist(error)})",
            hint="the file may be truncated, its data file missing, or not what its "
            "suffix says",
        ) from error
    fmt = _FORMATS[path.suffix.lower()]
    dimension = image.GetDimension()
    if dimension not in (2, 3, 4):
        raise ImageReadError(path, f"{dimension}D image is not supported",
                             hint="only 2D, 3D and 4D (time as channels) images are read")
    array = array_from_sitk(image)
    if dimension == 4:
        if image.GetNumberOfComponentsPerPixel() > 1:
            raise ImageReadError(path, "4D image with vector pixels has two non-spatial axes",
                                 hint="split the file into one 3D volume per time point")
        affine = _affine_4d(path, image)
        spatial_ndim = 3
    else:
        affine = affine_from_sitk(image)
        spatial_ndim = dimension
    space, spacing_known = "patient", True
    if spatial_ndim == 2 and _is_plain_picture(image):
        # A 2D file with default direction and origin is a picture, not a patient
        # plane: say so, and keep its spacing without the LPS sign flip.
        affine = np.diag([*image.GetSpacing(), 1.0, 1.0])
        space = "image"
        spacing_known = any(s != 1.0 for s in image.GetSpacing())
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))

    meta = {
        "format": fmt,
        "source_files": _source_files(path, detached),
        "space": space,
        "modality": _modality(image),
        "intensity": {"pixel_type": image.GetPixelIDTypeAsString(),
                      "components": image.GetNumberOfComponentsPerPixel()},
        "pixel_spacing_known": spacing_known,
        "itk": {"spacing": list(image.GetSpacing()), "origin": list(image.GetOrigin()),
                "direction": list(image.GetDirection()), "frame": "LPS"},
    }
    result = MedicalImage(array=array, affine=affine, spatial_ndim=spatial_ndim, meta=meta)
    return result.recorded("read", reader="simpleitk", path=str(path), format=fmt,
                           dimension=dimension, space=space)


def _read_within_limit(path: Path) -> sitk.Image:
    """The image, read once its header's size x components passed ``check_size``. (ITK
    inflates a compressed MetaImage into the declared size only: a longer stream costs
    nothing, tests/test_size_bombs.py shows it.)"""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    check_size(path, (*reader.GetSize(), reader.GetNumberOfComponents()), "image")
    return reader.Execute()


def itk_gist(error: RuntimeError) -> str:
    """ITK's exception text without its source paths and class names: what went wrong."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("/", "itk::", "Exception"))]
    text = " ".join(useful or lines)
    text = re.sub(r"\S*\.(cxx|h|hxx):\d+:?", "", text)
    return " ".join(text.split())[:300]


def _affine_4d(path: Path, image: sitk.Image) -> np.ndarray:
    """RAS affine of the first three axes of a 4D image whose 4th axis is time."""
    direction = np.array(image.GetDirection()).reshape(4, 4)
    if not (np.allclose(direction[3, :3], 0) and np.allclose(direction[:3, 3], 0)):
        raise ImageReadError(path, "4D image whose 4th axis mixes with space",
                             hint="only 4D images with a separate time axis are supported")
    lps = affine_from_geometry(image.GetSpacing()[:3], image.GetOrigin()[:3], direction[:3, :3])
    return LPS_TO_RAS @ lps


def _is_plain_picture(image: sitk.Image) -> bool:
    return (np.allclose(image.GetDirection(), np.eye(2).ravel())
            and np.allclose(image.GetOrigin(), 0.0))


def _modality(image: sitk.Image) -> str | None:
    for key in ("Modality", "modality"):
        if image.HasMetaDataKey(key):
            value = image.GetMetaData(key).strip()
            # MetaImage writes e.g. "MET_MOD_CT"
            return value.removeprefix("MET_MOD_") or None
    return None


def _source_files(path: Path, detached: list[Path]) -> list[str]:
    """The header and, for two-file formats, the data file(s) it points to."""
    files = {path.resolve(), *(f.resolve() for f in detached)}
    if path.suffix.lower() in (".hdr", ".img"):
        for other in (path.with_suffix(".img"), path.with_suffix(".hdr")):
            if other.exists():
                files.add(other.resolve())
    return sorted(str(f) for f in files)

