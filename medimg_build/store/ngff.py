"""OME-NGFF 0.5 metadata of one volumes-layout case, so OME-Zarr tools can open it.

A case group is an NGFF multiscales image; its mask is an NGFF label image in the
case's ``labels`` group::

    cases/<case_id>/             ome: multiscales (scale0/image, scale1/image...), omero
      scale<n>/image, z, y, x    (channel, [z,] y, x)   resolution level n, its positions
      labels/                    ome: labels ["mask"]
        mask/                    ome: multiscales, image-label
          mask, z, y, x          ([z,] y, x)   the mask, when the image has one level
          scale<n>/mask, z, y, x               level n of the mask, with a pyramid

Each image level is a group of its own (the layout ngff-zarr writes) because xarray
opens a Zarr group as one Dataset, where every ``z`` must have one length, and a
DataTree node must align with its parents: the levels of a pyramid can only live side
by side in groups of their own, and the case group holds no array.

Where the mask lies follows from the readers we answer to. ome-zarr-models 1.7 finds a
label image's levels only among the label image group's own members: its dtype check
(``ome_zarr_models/v05/labels.py``, ``_check_valid_dtypes``) looks up
``members[dataset.path]`` in the nested spec, so a path ``scale0/mask`` is a KeyError
(what the issue saw), where its image check (``v05/image.py``) walks the flat tree and
accepts nested paths. The NGFF spec allows either ("path ... relative to the current
zarr group"; its labels example has the levels ``labels/<name>/0``, ``1``... directly).
So a mask without a pyramid is the array ``labels/mask/mask``, its coordinates beside
it: xarray shows it as the image's ``scale0`` is shown, and all three readers pass. A
pyramid's mask levels cannot sit side by side in one group (one Dataset for xarray,
one ``z`` for netCDF in an HDF5 store), so with a pyramid they stay in ``scale<n>/``:
ome-zarr-py, ngff-zarr and xarray read those, ome-zarr-models 1.7 does not (its bug).
No layout satisfies both ome-zarr-models 1.7 and xarray: the first wants each level an
array of the label image group with dimension_names equal to the axes' names (z, y,
x: ``v05/image.py`` ``_check_arrays_compatible``), the second one length per dimension
name in a group -- tests/test_viewers_ngff.py rewrites the real CT's pyramid mask to
the flat layout (labels/mask/0, 1) and shows ome-zarr-models accept it and
``xr.open_datatree`` refuse it ("conflicting sizes for dimension 'z'").

OME-NGFF 0.5 requires the axes names to equal the arrays' ``dimension_names``; ours
are ``channel`` and the stored spatial axes, in millimeter (no unit for a picture whose
pixel size is unknown). Each level's scale and translation come from its affine
(``pyramid.level_affine``): NGFF transforms cannot express rotation, so the
translation is the RAS+ origin component along each axis, exact for the harmonized,
axis-aligned RAS+ grids; the full affine is in the case group's ``medimg_case``
attribute.

The ``omero`` attribute (NGFF 0.5 "omero": "transitional" display metadata; ome-zarr-py
turns each channel's ``window`` start/end into napari's contrast limits and ``color``
into its colormap, ``ome_zarr/reader.py`` class ``OMERO``) gives each channel a display
window computed from the stored values as they are written (``display_window``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..image import MedicalImage
from .axes import spatial_dims, stored_origin, stored_spacing
from .schema import CHANNEL, LABELS_GROUP, MASK, image_path, mask_level_path

NGFF_VERSION = "0.5"
BACKGROUND = 0  # the label value drawn transparent: no structure
PALETTE = "tab20"  # matplotlib's categorical colours, one per class value

# A CT stored in HU is shown through the soft-tissue window, level 40 HU and width
# 400 HU: -160 black, +240 white ("the soft tissue setting", radiology.expert, "X-ray &
# CT technique / Hounsfield units"), within the recipe's own clip window.
SOFT_TISSUE_HU = (-160.0, 240.0)
# Anything else (a z-scored MR, an X-ray in [0, 1], a photo) between these percentiles
# of its stored values, the MR preset's default clip (harmonize/normalize.py PRESETS):
# a few bright voxels do not stretch the window.
DISPLAY_PERCENTILES = (0.5, 99.5)
# The percentiles come from at most about this many voxels (a regular grid of every
# n-th voxel along each axis): a display window needs no more, and it is sampled by
# index, so it is the same for any memory order of the same array.
PERCENTILE_SAMPLE = 1 << 21
GREY, RGB = "FFFFFF", ("FF0000", "00FF00", "0000FF")
MILLIMETER = "millimeter"


def image_ome(case_id: str, level_affines: list[np.ndarray], spatial_ndim: int,
              omero: dict[str, Any] | None = None, unit: str | None = MILLIMETER
              ) -> dict[str, Any]:
    """The case group's ``ome`` attribute: the image at every level, and its display
    settings ``omero`` (``image_omero``) when given; ``unit`` that of its space axes
    (``space_unit``)."""
    axes = [{"name": CHANNEL, "type": "channel"}] + _space_axes(spatial_ndim, unit)
    paths = [image_path(level) for level in range(len(level_affines))]
    multiscale = _multiscale(case_id, axes, paths, level_affines, spatial_ndim,
                             channel=True)
    multiscale.update(type="mean", metadata={
        "method": "medimg_build.store.pyramid.image_levels",
        "description": "each level the mean of blocks of 2 voxels of the level above, "
                       "in-plane and along z while its spacing is at most twice the "
                       "in-plane spacing; a last odd row, column or slice dropped"})
    ome: dict[str, Any] = {"version": NGFF_VERSION, "multiscales": [multiscale]}
    if omero is not None:
        ome["omero"] = omero
    return ome


def labels_ome(label_names: list[str]) -> dict[str, Any]:
    """The ``labels`` group's ``ome`` attribute: the label images it holds."""
    return {"version": NGFF_VERSION, "labels": list(label_names)}


def label_image_ome(case_id: str, level_affines: list[np.ndarray], spatial_ndim: int,
                    values: list[int], class_names: Mapping[int, str],
                    unit: str | None = MILLIMETER) -> dict[str, Any]:
    """The mask group's ``ome`` attribute: the mask at every level (the image's grids),
    a colour per label value in ``values`` (background transparent), the class name of
    each value the vocabulary names, and the way back to the image."""
    pyramid = len(level_affines) > 1
    paths = [mask_level_path(level, pyramid) for level in range(len(level_affines))]
    multiscale = _multiscale(f"{case_id}/{MASK}", _space_axes(spatial_ndim, unit), paths,
                             level_affines, spatial_ndim, channel=False)
    multiscale.update(type="mode", metadata={
        "method": "medimg_build.store.pyramid.mask_levels",
        "description": "each level the most frequent value of the image's blocks "
                       "(ties: the smaller value), on the image's grids"})
    label: dict[str, Any] = {"colors": label_colors(values), "source": {"image": "../../"}}
    named = [{"label-value": v, "name": class_names[v]} for v in values if v in class_names]
    if named:
        label["properties"] = named
    return {"version": NGFF_VERSION, "multiscales": [multiscale], "image-label": label}


def label_colors(values: list[int]) -> list[dict[str, Any]]:
    """One RGBA colour per label value: transparent background, then the palette in
    value order, so a class keeps its colour in every case of a store."""
    from matplotlib import colormaps  # a dependency; imported only by writers

    palette = colormaps[PALETTE]
    colors = []
    for value in sorted(values):
        rgba = [0, 0, 0, 0] if value == BACKGROUND else [
            round(255 * c) for c in palette((value - 1) % palette.N)]
        colors.append({"label-value": int(value), "rgba": rgba})
    return colors


# -- display settings (omero) ------------------------------------------------------------
def image_omero(stored: np.ndarray, history: Sequence[Any], meta: Mapping[str, Any]
                ) -> dict[str, Any]:
    """The image's ``omero`` attribute, from its level 0 ``stored`` ``(c, [z,] y, x)``
    as written, its ``history`` (``AppliedStep``s: the normalization says what the
    values are) and ``meta``: per channel the range of its values (``min``, ``max``),
    the display window (``start``, ``end``: ``display_window``), a colour and a label."""
    n = stored.shape[0]
    rgb = n == 3 and _is_rgb(meta)
    colours = list(RGB) if rgb else [GREY] * n
    labels = ["red", "green", "blue"] if rgb else _channel_labels(meta, n)
    normalization = _normalization(history)
    # A colour picture's channels share one window, from all three: a window of each
    # channel's own would stretch each colour apart (a fundus photo's dim blue as far as
    # its bright red), and the picture would not be drawn in the colours it was taken.
    shared = display_window(stored, normalization, channel_axis=True) if rgb else None
    channels = []
    for index, (values, colour, label) in enumerate(zip(stored, colours, labels)):
        start, end = shared or display_window(values, normalization)
        window = {"min": _finite(np.min(values), 0.0), "max": _finite(np.max(values), 1.0),
                  "start": start, "end": end}
        # Grey channels (T2, ADC...) are looked at one at a time: ome-zarr-py draws each
        # white and napari adds an image's visible channels together, so all active
        # would show their sum. The first is shown, the others a click away.
        active = rgb or index == 0
        channels.append({"active": active, "color": colour, "label": label, "window": window})
    # ome-zarr-py draws every channel white under model "greyscale" (reader.py, OMERO).
    return {"channels": channels, "rdefs": {"model": "color" if rgb else "greyscale"}}


def display_window(values: np.ndarray, normalization: Mapping[str, Any] | None,
                   channel_axis: bool = False) -> tuple[float, float]:
    """Where the display of one channel's stored ``values`` starts and ends (of all
    channels together, the first axis, with ``channel_axis``). A CT
    stored in HU (``normalization`` method "ct"): the soft-tissue window within the
    recipe's clip window (the clip window itself if they do not overlap). Anything
    else -- z-scored MR, X-rays and photos in [0, 1], values as read -- the
    ``DISPLAY_PERCENTILES`` of the values, sampled on a grid (``PERCENTILE_SAMPLE``).
    Never empty: napari refuses contrast limits that do not increase (its
    ``IntensityVisualizationMixin.contrast_limits`` setter, ``_validate_increasing``),
    so where the percentiles meet (a channel of one value, or of one value but for a
    few voxels) the window is the values' range, or one unit around a single value."""
    if normalization is not None and normalization.get("method") == "ct":
        low, high = (float(v) for v in normalization["window"])
        start, end = max(SOFT_TISSUE_HU[0], low), min(SOFT_TISSUE_HU[1], high)
        return (start, end) if start < end else (low, high)
    sample = _grid_sample(values, whole=1 if channel_axis else 0)
    start, end = np.percentile(sample, DISPLAY_PERCENTILES)
    start, end = _finite(start, 0.0), _finite(end, 1.0)
    if start < end:
        return start, end
    low, high = _finite(np.nanmin(values), 0.0), _finite(np.nanmax(values), 1.0)
    return (low, high) if low < high else (start - 0.5, start + 0.5)


def _grid_sample(values: np.ndarray, whole: int) -> np.ndarray:
    """Every n-th value along each axis but the first ``whole`` ones (channels), at
    most about ``PERCENTILE_SAMPLE`` values."""
    sampled = values.ndim - whole
    step = max(1, math.ceil((values.size / PERCENTILE_SAMPLE) ** (1 / sampled)))
    return values[(slice(None),) * whole + (slice(None, None, step),) * sampled]


def _normalization(history: Sequence[Any]) -> Mapping[str, Any] | None:
    """The parameters of the image's (last) intensity normalization, if any."""
    steps = [step for step in history if step.name.startswith("normalize")]
    return steps[-1].params if steps else None


def _is_rgb(meta: Mapping[str, Any]) -> bool:
    intensity = meta.get("intensity") or {}
    return "RGB" in (intensity.get("photometric"), intensity.get("converted_to"))


def _channel_labels(meta: Mapping[str, Any], n: int) -> list[str]:
    """napari's layer names (ome-zarr-py's ``channel_names``): the names the source
    gives its stacked channels (``stack_channels``: an nnU-Net ``channel_names``, a
    Decathlon ``modality``), else the modality, numbered when there are several."""
    names = [str(name) for name in meta.get("channel_names") or []]
    if len(names) == n and all(names):
        return names
    modality = str(meta.get("modality") or "")
    if n == 1 and modality:
        return [modality]
    return [f"{modality or CHANNEL} {c}" for c in range(n)]


def _finite(value: Any, default: float) -> float:
    """A JSON number: NaN and infinities (an image holding them) give ``default``."""
    value = float(value)
    return value if math.isfinite(value) else default


def space_unit(image: MedicalImage) -> str | None:
    """The NGFF unit of an image's space axes: millimeter, or none for a picture whose
    pixel size is unknown (NGFF's ``unit`` is optional, and no UDUNITS-2 name means
    "source pixel")."""
    return MILLIMETER if image.spacing_unit == "mm" else None


def _space_axes(spatial_ndim: int, unit: str | None) -> list[dict[str, str]]:
    return [{"name": name, "type": "space", **({"unit": unit} if unit else {})}
            for name in spatial_dims(spatial_ndim)]


def _multiscale(name: str, axes: list[dict[str, str]], paths: list[str],
                level_affines: list[np.ndarray], spatial_ndim: int, channel: bool
                ) -> dict[str, Any]:
    datasets = [{"path": path,
                 "coordinateTransformations": _transforms(affine, spatial_ndim, channel)}
                for path, affine in zip(paths, level_affines, strict=True)]
    return {"name": name, "axes": axes, "datasets": datasets}


def _transforms(affine: np.ndarray, spatial_ndim: int, channel: bool
                ) -> list[dict[str, Any]]:
    """Scale then translation (the order NGFF requires), a channel's being 1 and 0."""
    scale = [float(s) for s in stored_spacing(affine, spatial_ndim)]
    translation = [float(t) for t in stored_origin(affine)[3 - spatial_ndim:]]
    if channel:
        scale, translation = [1.0] + scale, [0.0] + translation
    return [{"type": "scale", "scale": scale},
            {"type": "translation", "translation": translation}]


def ngff_problems(case_group, affine: np.ndarray, spatial_ndim: int
                  ) -> list[tuple[str, str]]:
    """What is wrong with the NGFF metadata of a case group (a ``tree.GroupView``), as
    (path in the case group, problem): every listed level must exist, level 0 must be
    the harmonized grid at the affine's scale and translation, and the mask must have
    the image's levels."""
    image_levels = _dataset_paths(case_group.attrs)
    if not image_levels or image_levels[0] != image_path():
        return [("", f"ome.multiscales does not list {image_path()} first")]
    problems = [(path, "listed in ome.multiscales but missing")
                for path in image_levels if path not in case_group]
    level_0 = case_group.attrs["ome"]["multiscales"][0]["datasets"][0]
    expected = _transforms(affine, spatial_ndim, channel=True)
    if not _same_transforms(level_0.get("coordinateTransformations"), expected):
        problems.append(("", "ome level-0 scale/translation disagree with the case's affine"))
    label_image = f"{LABELS_GROUP}/{MASK}"
    if label_image in case_group:
        mask_levels = _dataset_paths(case_group[label_image].attrs)
        if len(mask_levels) != len(image_levels):
            problem = f"{len(mask_levels)} levels where the image has {len(image_levels)}"
            problems.append((label_image, problem))
        problems += [(f"{label_image}/{path}", "listed in ome.multiscales but missing")
                     for path in mask_levels if f"{label_image}/{path}" not in case_group]
        listed = (case_group[LABELS_GROUP].attrs.get("ome") or {}).get("labels") or []
        if MASK not in listed:
            problems.append((LABELS_GROUP, f"ome.labels does not list {MASK!r}"))
    return problems


def _dataset_paths(attrs: Mapping[str, Any]) -> list[str]:
    try:
        return [str(d["path"]) for d in attrs["ome"]["multiscales"][0]["datasets"]]
    except (KeyError, IndexError, TypeError):
        return []


def _same_transforms(found: Any, expected: list[dict[str, Any]]) -> bool:
    try:
        return all(f["type"] == e["type"] and np.allclose(f[e["type"]], e[e["type"]],
                                                          atol=1e-6)
                   for f, e in zip(found, expected, strict=True))
    except (KeyError, TypeError, ValueError):
        return False
