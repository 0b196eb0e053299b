"""Frames of a DICOM series: each 2D image with its position, orientation and scaling.

A frame is a classic single-frame file, one frame of an enhanced multi-frame file
(geometry from its functional groups, frames of several files pooled), or one tile of
a Siemens mosaic; each carries its part (dicom_parts). dicom_geometry turns the frames
of one image into its volume geometry.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from ..errors import DicomSeriesError
from .dicom_parts import ImagePart, classic_part, enhanced_part



@dataclass
class Frame:
    """One 2D image: a classic file, a frame of a multi-frame file, or a mosaic tile."""

    path: Path
    dataset: Dataset
    index: int | None  # frame (or mosaic tile) number inside its file; None: classic file
    position: np.ndarray | None  # IPP, LPS mm
    orientation: np.ndarray | None  # IOP, six direction cosines
    pixel_spacing: tuple[float, float] | None  # (between rows, between columns) mm
    thickness: float | None
    slope: float
    intercept: float
    # Enhanced multi-frame: this frame's per-frame functional group item (temporal
    # position, diffusion); None for classic files and mosaic tiles.
    item: Dataset | None = None
    # The image it belongs to among those dcm2niix writes separately (dicom_parts).
    part: ImagePart = ImagePart()


def floats(value, count: int) -> np.ndarray | None:
    try:
        array = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.size == count else None


def frames_of(folder: Path, members: list[tuple[Path, Dataset]]) -> list[Frame]:
    frames: list[Frame] = []
    for path, dataset in members:
        n_frames = int(dataset.get("NumberOfFrames", 1) or 1)
        if "PerFrameFunctionalGroupsSequence" in dataset:
            # Several enhanced files (Siemens XA writes one per volume) pool their frames:
            # each frame carries its own position and per-frame items, which order it.
            frames.extend(_enhanced_frames(path, dataset))
        elif n_frames > 1:
            raise DicomSeriesError(
                path, f"multi-frame image ({n_frames} frames, "
                f"{dataset.get('SOPClassUID', 'unknown SOP class')}) without "
                "per-frame functional groups is not supported yet",
                hint="cine/ultrasound/nuclear multi-frame files have no volume geometry; "
                "convert them with dcm2niix",
            )
        elif _is_uih_grid(dataset):
            raise DicomSeriesError(
                path, "UIH mosaic (tile geometry in private 0065,1051) not supported",
                hint="convert with dcm2niix")
        elif _is_mosaic(dataset):
            frames.extend(_mosaic_frames(path, dataset))
        else:
            frames.append(_classic_frame(path, dataset))
    _check_pooled_frames(folder, frames)
    return frames


def _check_pooled_frames(folder: Path, frames: list[Frame]) -> None:
    """Frames pooled from several enhanced files are told apart by their per-frame
    items (TemporalPositionIndex, DimensionIndexValues), never by their frame numbers,
    which count within one file only. Two frames of different files at one position
    with the same items are copies, or volumes whose order the files do not record
    (dcm2niix then falls back on acquisition times): refused rather than guessed."""
    seen: dict[tuple, Frame] = {}
    for frame in frames:
        if frame.item is None or frame.position is None:
            continue
        contents = frame.item.get("FrameContentSequence")
        content = contents[0] if contents else Dataset()
        dimensions = content.get("DimensionIndexValues")
        # Positions to 0.1 mm: one slice's IPP is rewritten with ~1e-4 mm jitter.
        key = (tuple(np.round(frame.position, 1)), content.get("TemporalPositionIndex"),
               tuple(np.atleast_1d(dimensions)) if dimensions is not None else ())
        other = seen.setdefault(key, frame)
        if other.path != frame.path:
            raise DicomSeriesError(
                folder, f"{_shown(other, folder)} and {_shown(frame, folder)} "
                "share position, TemporalPositionIndex and "
                "DimensionIndexValues: duplicated files, or volumes whose order the "
                "files do not record", hint="remove duplicates, or convert with dcm2niix")


def _shown(frame: Frame, folder: Path) -> str:
    """The frame's file relative to the folder read (or its name), and its number."""
    try:
        name = frame.path.relative_to(folder).as_posix()
    except ValueError:
        name = frame.path.name
    return f"{name} frame {frame.index + 1}"


def _classic_frame(path: Path, dataset: Dataset) -> Frame:
    spacing = floats(dataset.get("PixelSpacing"), 2)
    return Frame(
        path=path,
        dataset=dataset,
        index=None,
        position=floats(dataset.get("ImagePositionPatient"), 3),
        orientation=floats(dataset.get("ImageOrientationPatient"), 6),
        pixel_spacing=None if spacing is None else (spacing[0], spacing[1]),
        thickness=optional_float(dataset.get("SliceThickness")),
        slope=optional_float(dataset.get("RescaleSlope")) or 1.0,
        intercept=optional_float(dataset.get("RescaleIntercept")) or 0.0,
        part=classic_part(dataset),
    )


def _enhanced_frames(path: Path, dataset: Dataset) -> list[Frame]:
    # A functional group holds for one frame when present in its per-frame item, and for
    # all frames when present in the shared item (PS3.3 C.7.6.16).
    shared = dataset.get("SharedFunctionalGroupsSequence")
    shared_item = shared[0] if shared else Dataset()
    frames = []
    for index, item in enumerate(dataset.PerFrameFunctionalGroupsSequence):

        def group(name: str, item=item) -> Dataset:
            for source in (item, shared_item):
                if name in source and len(source[name].value):
                    return source[name].value[0]
            return dataset  # old converters leave the attribute at the top level

        measures = group("PixelMeasuresSequence")
        transform = group("PixelValueTransformationSequence")
        spacing = floats(measures.get("PixelSpacing"), 2)
        frames.append(
            Frame(
                path=path,
                dataset=dataset,
                index=index,
                position=floats(group("PlanePositionSequence").get("ImagePositionPatient"), 3),
                orientation=floats(
                    group("PlaneOrientationSequence").get("ImageOrientationPatient"), 6
                ),
                pixel_spacing=None if spacing is None else (spacing[0], spacing[1]),
                thickness=optional_float(measures.get("SliceThickness")),
                slope=optional_float(transform.get("RescaleSlope")) or 1.0,
                intercept=optional_float(transform.get("RescaleIntercept")) or 0.0,
                item=item,
                part=enhanced_part(dataset, item, shared_item),
            )
        )
    return frames


def _is_uih_grid(dataset: Dataset) -> bool:
    """A United Imaging mosaic ("grid"): ImageType VFRAME, or the private number of
    tiles (0065,1050) above 1, which dcm2niix keys on (nii_dicom.cpp readDICOMx,
    kNumberOfImagesInGridUIH). Its slice positions sit in the private MR VFrame Sequence
    (0065,1051). The only public description is a table UIH gave dcm2niix (its
    UIH/README.md): it lists the item attributes but not which tile an item belongs to,
    what point its ImagePositionPatient names, nor how a slice normal is signed. Without
    that, or a sample to check against dcm2niix, the file is refused, not guessed."""
    image_type = [str(v).upper() for v in (dataset.get("ImageType") or [])]
    if "VFRAME" in image_type:
        return True
    manufacturer = str(dataset.get("Manufacturer", "")).strip().upper()
    tiles = dataset.get((0x0065, 0x1050))
    return manufacturer.startswith("UI") and tiles is not None and \
        (optional_float(_raw_text(tiles.value)) or 0) > 1


def _raw_text(value):
    # Implicit VR files leave private values as undecoded bytes.
    return value.decode("ascii", "replace").strip("\x00 ") if isinstance(value, bytes) else value


def _is_mosaic(dataset: Dataset) -> bool:
    image_type = [str(v).upper() for v in (dataset.get("ImageType") or [])]
    return "MOSAIC" in image_type


def _mosaic_layout(path: Path, dataset: Dataset):
    """(tiles, tiles per side, tile rows, tile cols, CSA slice normal or None)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel.nicom announces itself as experimental
        from nibabel.nicom import csareader

    try:
        csa = csareader.get_csa_header(dataset, "image")
    except Exception:  # noqa: BLE001 - damaged or stripped private header
        csa = None
    count = csareader.get_n_mosaic(csa) if csa else None
    if not count and (0x0019, 0x100A) in dataset:  # Siemens NumberOfImagesInMosaic
        count = dataset[0x0019, 0x100A].value
    if not count:
        raise DicomSeriesError(
            path, "Siemens mosaic without NumberOfImagesInMosaic (private tags removed?)",
            hint="convert the original, non-anonymized files with dcm2niix",
        )
    count = int(count)
    per_side = int(np.ceil(np.sqrt(count)))
    normal = csareader.get_slice_normal(csa) if csa else None
    return count, per_side, int(dataset.Rows) // per_side, int(dataset.Columns) // per_side, (
        None if normal is None else np.asarray(normal, dtype=np.float64))


def _mosaic_frames(path: Path, dataset: Dataset) -> list[Frame]:
    """The slices tiled in a Siemens mosaic, each with its own position.

    The mosaic's IPP is that of a slice as large as the whole mosaic, centred where the
    real slices are: shift it by half the size difference (dcm2niix, nibabel do the same).
    Tiles are stacked along CSA's SliceNormalVector, SpacingBetweenSlices apart.
    """
    count, _, tile_rows, tile_cols, normal = _mosaic_layout(path, dataset)
    template = _classic_frame(path, dataset)
    if template.orientation is None or template.position is None:
        raise DicomSeriesError(path, "Siemens mosaic without ImagePositionPatient/"
                               "ImageOrientationPatient", hint="convert it with dcm2niix")
    row_spacing, col_spacing = template.pixel_spacing or (1.0, 1.0)
    row_cosine, col_cosine = template.orientation[:3], template.orientation[3:]
    first = (template.position
             + row_cosine * col_spacing * (int(dataset.Columns) - tile_cols) / 2
             + col_cosine * row_spacing * (int(dataset.Rows) - tile_rows) / 2)
    if normal is None:
        normal = np.cross(row_cosine, col_cosine)  # no CSA: assume the right-handed normal
    gap = (optional_float(dataset.get("SpacingBetweenSlices"))
           or template.thickness or 1.0)
    return [
        Frame(path=path, dataset=dataset, index=k, position=first + k * gap * normal,
               orientation=template.orientation, pixel_spacing=template.pixel_spacing,
               thickness=template.thickness, slope=template.slope,
               intercept=template.intercept, part=template.part)
        for k in range(count)
    ]


def _mosaic_tiles(path: Path, dataset: Dataset, pixels: np.ndarray) -> np.ndarray:
    """``(rows, cols)`` mosaic to ``(tiles, tile_rows, tile_cols)``, row-major tile order."""
    count, per_side, tile_rows, tile_cols, _ = _mosaic_layout(path, dataset)
    if pixels.ndim != 2 or pixels.shape != (per_side * tile_rows, per_side * tile_cols):
        raise DicomSeriesError(path, f"mosaic of shape {pixels.shape} cannot hold {count} "
                               "tiles", hint="the mosaic header is inconsistent")
    tiles = pixels.reshape(per_side, tile_rows, per_side, tile_cols).transpose(0, 2, 1, 3)
    return tiles.reshape(per_side * per_side, tile_rows, tile_cols)[:count]


def optional_float(value) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple, MultiValue)):
        value = value[0] if len(value) else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def frame_stack(path: Path, dataset: Dataset, pixels: np.ndarray) -> np.ndarray:
    """A file's decoded pixels as ``(frames, rows, cols[, samples])``, indexed like its frames."""
    if "PerFrameFunctionalGroupsSequence" in dataset:
        return _frames_first(path, dataset, pixels)
    return _mosaic_tiles(path, dataset, pixels)


def _frames_first(path: Path, dataset: Dataset, pixels: np.ndarray) -> np.ndarray:
    # pydicom drops the frame axis of a one-frame file; put it back.
    samples = int(dataset.get("SamplesPerPixel", 1) or 1)
    if pixels.ndim == (2 if samples == 1 else 3):
        pixels = pixels[np.newaxis]
    n_items = len(dataset.PerFrameFunctionalGroupsSequence)
    if pixels.shape[0] != n_items:
        raise DicomSeriesError(
            path, f"pixel data holds {pixels.shape[0]} frames but the header describes "
            f"{n_items}", hint="the multi-frame file is inconsistent or truncated",
        )
    return pixels
