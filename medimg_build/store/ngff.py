"""OME-NGFF 0.5 metadata of one volumes-layout case, so OME-Zarr tools can open it.

A case group is an NGFF multiscales image; its mask is an NGFF label image in the
case's ``labels`` group::

    cases/<case_id>/             ome: multiscales (datasets scale0/image, scale1/image...)
      scale<n>/image             (channel, [z,] y, x)   resolution level n
      labels/                    ome: labels ["mask"]
        mask/                    ome: multiscales (scale0/mask...), image-label
          scale<n>/mask          ([z,] y, x)

Each level is a group of its own (the layout ngff-zarr writes) because xarray opens a
Zarr group as one Dataset, where every ``z`` must have one length: the levels of a
pyramid can only live side by side in groups of their own, and the case group holds no
array, so that ``xarray.open_datatree`` aligns nothing across levels.

OME-NGFF 0.5 requires the axes names to equal the arrays' ``dimension_names``; ours
are ``channel`` and the stored spatial axes, in millimeter. Each level's scale and
translation come from its affine (``pyramid.level_affine``): NGFF transforms cannot
express rotation, so the translation is the RAS+ origin component along each axis,
exact for the harmonized, axis-aligned RAS+ grids; the full affine is in the case
group's ``medimg_case`` attribute.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .axes import spatial_dims, stored_origin, stored_spacing
from .schema import CHANNEL, IMAGE, LABELS_GROUP, MASK, level_group

NGFF_VERSION = "0.5"
BACKGROUND = 0  # the label value drawn transparent: no structure
PALETTE = "tab20"  # matplotlib's categorical colours, one per class value


def image_ome(case_id: str, level_affines: list[np.ndarray], spatial_ndim: int
              ) -> dict[str, Any]:
    """The case group's ``ome`` attribute: the image at every level."""
    axes = [{"name": CHANNEL, "type": "channel"}] + _space_axes(spatial_ndim)
    multiscale = _multiscale(case_id, axes, IMAGE, level_affines, spatial_ndim,
                             channel=True)
    multiscale.update(type="mean", metadata={
        "method": "medimg_build.store.pyramid.image_levels",
        "description": "each level the mean of blocks of 2 voxels of the level above, "
                       "in-plane and along z while its spacing is at most twice the "
                       "in-plane spacing; a last odd row, column or slice dropped"})
    return {"version": NGFF_VERSION, "multiscales": [multiscale]}


def labels_ome(label_names: list[str]) -> dict[str, Any]:
    """The ``labels`` group's ``ome`` attribute: the label images it holds."""
    return {"version": NGFF_VERSION, "labels": list(label_names)}


def label_image_ome(case_id: str, level_affines: list[np.ndarray], spatial_ndim: int,
                    values: list[int], class_names: Mapping[int, str]) -> dict[str, Any]:
    """The mask group's ``ome`` attribute: the mask at every level (the image's grids),
    a colour per label value in ``values`` (background transparent), the class name of
    each value the vocabulary names, and the way back to the image."""
    multiscale = _multiscale(f"{case_id}/{MASK}", _space_axes(spatial_ndim), MASK,
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


def _space_axes(spatial_ndim: int) -> list[dict[str, str]]:
    return [{"name": name, "type": "space", "unit": "millimeter"}
            for name in spatial_dims(spatial_ndim)]


def _multiscale(name: str, axes: list[dict[str, str]], array: str,
                level_affines: list[np.ndarray], spatial_ndim: int, channel: bool
                ) -> dict[str, Any]:
    datasets = [{"path": f"{level_group(level)}/{array}",
                 "coordinateTransformations": _transforms(affine, spatial_ndim, channel)}
                for level, affine in enumerate(level_affines)]
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
    if not image_levels or image_levels[0] != f"{level_group(0)}/{IMAGE}":
        return [("", f"ome.multiscales does not list {level_group(0)}/{IMAGE} first")]
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
