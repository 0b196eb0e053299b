"""One case through the recipe's steps: read -> orient -> resample/resize -> normalize.

Every step is a small function of ``harmonize/`` that records itself in the image's
history; this module only decides which steps a recipe asks for, in which order."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from ..case import Case
from ..errors import GeometryError, ImageReadError, LabelError, RecipeError
from ..geometry import grid_offset_mm, ras_grid
from ..harmonize.convert import drop_singleton_slice, stack_channels, to_grayscale
from ..harmonize.normalize import normalize
from ..harmonize.orient import to_ras
from ..harmonize.resample import CONTINUOUS, resample_to_grid, resample_to_spacing
from ..harmonize.resize import resize_with_pad
from ..image import MedicalImage
from ..io import read_image
from ..io.dicom_discovery import read_dicom_series
from ..io.dicom_seg import place_on_grid
from ..io.read_options import picture_fit, read_options
from ..labels import classification
from ..labels.segmentation import (MASK_VALUES, check_declared, label_dtype,
                                   label_values)
from ..labels.splits import SplitPlan
from ..limits import OPTION, SETTING, max_voxels
from . import parsers
from .annotation_rows import case_annotations
from .case_table import case_row
from .model import Recipe
from .sections import GEOMETRY_TOLERANCE_MM, Harmonize
from .sources import CaseSource
from .table_spacing import require_pixel_size, with_table_pixel_spacing


@dataclass(frozen=True)
class BuildContext:
    """What every case of one build shares (picklable, sent once to each worker)."""

    recipe: Recipe
    source_dir: Path
    pseudonym_key: bytes = field(repr=False)  # never in a printed context or Dask error
    splits: SplitPlan = SplitPlan()
    # A stack store has one mask array: when some cases have masks, every case must.
    stack_masks: bool = False
    # The label table the cases' rows were read from (of a recipe's releases, the one
    # chosen when the source was listed), named in a case's errors; None without one.
    label_table: Path | None = None


def harmonize_case(source: CaseSource, context: BuildContext) -> Case:
    # Every reader and step of this case refuses images past the recipe's size limit,
    # and reads pixel values as the recipe's ``read`` section says.
    with max_voxels(recipe_max_voxels(context.recipe)), \
            read_options(context.recipe.read.philips_scaling):
        return _harmonize_case(source, context)


def recipe_max_voxels(recipe: Recipe) -> int:
    """The most values an image of this recipe's cases may hold (``limits.max_voxels``,
    which ``--max-voxels`` sets)."""
    return int(recipe.limits.max_voxels)


def check_planned_size(recipe: Recipe) -> None:
    """Refuse, before any case runs, a ``harmonize.shape`` that every case would be
    refused for (channels come on top of it, known only per case)."""
    shape = recipe.harmonize.shape
    limit = recipe_max_voxels(recipe)
    voxels = math.prod(int(n) for n in shape) if shape else 0
    if voxels > limit:
        raise RecipeError(recipe.path, f"harmonize.shape {list(shape)} = {voxels:,} voxels per "
                          f"case is over the size limit of {limit:,} values",
                          hint=f"give a smaller harmonize.shape, or raise the limit with "
                          f"{OPTION} N or the recipe's {SETTING}")


def _harmonize_case(source: CaseSource, context: BuildContext) -> Case:
    recipe = context.recipe
    if context.stack_masks and source.mask_path is None and not source.mask_loader:
        # Failed here, not by the writer: it would keep whichever kind of case it saw
        # first and fail the others (DRIVE's grand-challenge download has no test
        # tracings).
        raise LabelError(source.image_path, "no mask, where other cases of this stack store "
                         "have one: a stack store holds a mask for every case or for none",
                         hint="build the cases without masks as a store of their own "
                         "(--set source.images=...)")
    with picture_fit(_shrunk_to(recipe, source)):  # the image only: a mask is never averaged
        raw = _with_recipe_facts(read_source(source, recipe), recipe)
    where = _row_name(source, context)
    # A picture's pixel size from its table row (ChestX-ray14), its mask's likewise.
    in_mm = partial(with_table_pixel_spacing, spec=recipe.source.pixel_spacing,
                    row=source.fields, where=where)
    raw = in_mm(raw)
    require_pixel_size(raw, recipe.harmonize.spacing, source.image_path)
    require_finite(raw, source.image_path)
    image = harmonize_image(raw, recipe.harmonize, target_2d=_target_ndim(recipe) == 2)
    mask, mask_files = None, []
    if source.mask_path is not None or source.mask_loader:
        mask_raw = in_mm(read_mask_source(source))
        require_finite(mask_raw, source.mask_path)
        mask_files = [Path(f) for f in mask_raw.meta.get("source_files", [source.mask_path])]
        mask = harmonize_mask(mask_raw, raw, image, recipe, source)
    labels = {
        spec.name: classification.encode(
            spec, named_field(source, spec.column, "labels.classification", where), where)
        for spec in recipe.labels.classification
    }
    annotations = case_annotations(recipe.labels, source.annotations, raw, image,
                                   _annotation_rows_name(source, context) or where)
    row = case_row(
        case_id=source.case_id, raw=raw, image=image,
        patient=source.patient_id or raw.meta.get("patient_id") or source.case_id,
        image_path=source.image_path, mask_path=source.mask_path, mask_files=mask_files,
        extra={new: named_field(source, old, "source.columns", where)
               for old, new in recipe.source.columns.items()},
        recipe=recipe, splits=context.splits, source_dir=context.source_dir,
        key=context.pseudonym_key)
    if recipe.labels.segmentation:  # the store's classes, with from_data, are their union
        row[MASK_VALUES] = label_values(mask.array) if mask is not None else []
    return Case(case_id=source.case_id, image=image, mask=mask, labels=labels, row=row,
                **annotations)


def named_field(source: CaseSource, column: str, setting: str, where: str) -> Any:
    """The value of a column the recipe names (``setting``) in the case's table row, or
    path or parser fields. A column the source lacks is the recipe's error, never an
    empty value: NIH's 2020 table renamed "Patient Gender", and an empty stand-in
    left every case without its sex, silently."""
    if column not in source.fields:
        raise RecipeError(where, f"missing column {column!r} (named by the recipe's "
                          f"{setting}); it has {sorted(source.fields)}",
                          hint="fix the recipe's column name, or give the table's other "
                          "name in source.column_aliases")
    return source.fields[column]


def read_source(source: CaseSource, recipe: Recipe) -> MedicalImage:
    """The case's image as read: a discovered DICOM series, a parser's loader, several
    files stacked as channels, or one file or folder."""
    if source.series is not None:
        return read_dicom_series(source.series)
    if source.loader:
        return parsers.load(source.loader, source.image_path, source.loader_args)
    if source.channels:
        names = list(source.channel_names) or recipe.source.channel_names
        images = [read_image(path) for path in source.channels]
        if source.channels_onto_first:
            # Multi-parametric MR: each map onto the first sequence's grid, in mm.
            images[1:] = [resample_to_grid(i, images[0], "linear") for i in images[1:]]
        return stack_channels(images, names)
    return read_image(source.image_path)


def read_mask_source(source: CaseSource) -> MedicalImage:
    """The case's mask as read: one file or DICOM folder, or a parser's mask loader
    (several structure files combined into one label map)."""
    if source.mask_loader:
        return parsers.load(source.mask_loader, source.image_path, source.mask_loader_args)
    return read_image(source.mask_path)


def require_finite(image: MedicalImage, path: Path | None) -> None:
    """Refuse NaN and infinite voxels, with their count. Linear resampling spreads a NaN
    to its neighbours and percentile/min-max normalization turns one inf into a black
    image, so they cannot pass through; replacing them by a guessed value (0, the
    minimum) would store numbers nobody measured without a word. The user decides."""
    if image.array.dtype.kind not in "fc" or np.isfinite(image.array).all():
        return  # integers cannot hold either; one pass for the usual clean float image
    nan = int(np.isnan(image.array).sum())
    inf = int(np.isinf(image.array).sum())
    counts = " and ".join([f"{nan} NaN"] * (nan > 0) + [f"{inf} infinite"] * (inf > 0))
    if counts:
        raise ImageReadError(path, f"holds {counts} voxel value(s) (of {image.array.size})",
                             hint="replace them with a real value (e.g. the background) in "
                             "the source file, or leave the case out")


def _with_recipe_facts(image: MedicalImage, recipe: Recipe) -> MedicalImage:
    """Formats without a modality (NIfTI, PNG...) take the recipe's."""
    if image.meta.get("modality"):
        return image
    return image.replace(meta={**image.meta, "modality": recipe.modality})


def harmonize_image(image: MedicalImage, harmonize: Harmonize, target_2d: bool = False
                    ) -> MedicalImage:
    if harmonize.channels == "gray":
        image = to_grayscale(image)
    if target_2d:
        image = drop_singleton_slice(image)
    image = to_ras(image)
    interpolation = harmonize.interpolation
    if harmonize.spacing is not None:
        image = resample_to_spacing(image, harmonize.spacing, interpolation)
    if harmonize.shape is not None:
        image = resize_with_pad(image, harmonize.shape, interpolation)
    intensity = harmonize.intensity
    return normalize(image, intensity.preset, **intensity.parameters())


def harmonize_mask(mask: MedicalImage, raw_image: MedicalImage, image: MedicalImage,
                   recipe: Recipe, source: CaseSource) -> MedicalImage:
    """The mask on the harmonized image's grid, by nearest neighbour: labels stay labels."""
    spec = recipe.labels.segmentation  # None: masks of no declared classes
    tolerance = spec.geometry_tolerance_mm if spec else GEOMETRY_TOLERANCE_MM
    if mask.meta.get("format") == "dicom-seg":
        # A SEG stores only its non-empty frames: put it back on the whole image grid.
        mask = place_on_grid(mask, raw_image, tolerance)
    mask = _label_values(_one_channel(mask, source), dict(spec.map) if spec else {})
    _check_same_grid(mask, raw_image, tolerance, source)
    if image.spatial_ndim == 2:
        mask = drop_singleton_slice(mask)
    mask = resample_to_grid(to_ras(mask), image, "nearest")
    values = label_values(mask.array, source.mask_path)
    check_declared(values, spec, source.mask_path)
    return mask.replace(array=mask.array.astype(label_dtype(values, spec)))


def _one_channel(mask: MedicalImage, source: CaseSource) -> MedicalImage:
    """Masks saved as RGB pictures with equal channels (GIF/PNG exports) as one channel."""
    if not mask.has_channels:
        return mask
    first = mask.array[..., 0]
    if any(not np.array_equal(first, mask.array[..., c]) for c in range(1, mask.n_channels)):
        raise LabelError(source.mask_path, f"mask has {mask.n_channels} differing colour "
                         "channels", hint="masks must be label images (one value per voxel)")
    return mask.replace(array=np.asfortranarray(first))


def _label_values(mask: MedicalImage, mapping: dict[str, int]) -> MedicalImage:
    """Raw mask values into the recipe's label values (e.g. 255 -> 1)."""
    if not mapping:
        return mask
    array = mask.array.copy(order="K")
    for raw, label in mapping.items():
        array[mask.array == int(raw)] = label
    return mask.replace(array=array).recorded("map_label_values", mapping=mapping)


def _check_same_grid(mask: MedicalImage, image: MedicalImage, tolerance: float,
                     source: CaseSource) -> None:
    """Same voxel centres in mm, whatever the axis order each file was saved in
    (dcm2niix flips DICOM rows; a mask saved by another tool may not)."""
    offset = grid_offset_mm(mask, image)
    if offset is None:
        mask_shape = ras_grid(mask.spatial_shape, mask.affine)[0]
        image_shape = ras_grid(image.spatial_shape, image.affine)[0]
        raise GeometryError(source.mask_path, f"mask grid {mask_shape} differs from image "
                            f"{source.image_path} grid {image_shape} (in RAS+ axis order)",
                            hint="masks must be on their image's grid")
    if offset > tolerance:
        raise GeometryError(source.mask_path, f"mask grid is {offset:.3g} mm away from image "
                            f"{source.image_path} (tolerance {tolerance} mm)",
                            hint="masks must be on their image's grid; check the pairing")


def _shrunk_to(recipe: Recipe, source: CaseSource) -> tuple[int, ...] | None:
    """The shape a case's picture is resized to with an anti-aliasing interpolation, when
    that is the first step that changes its grid (``read_options.picture_fit``). None
    for a case with a mask or annotations: they are given on the picture's own pixels
    (the mask is checked against its grid), which a reduced decoding does not have."""
    harmonize = recipe.harmonize
    if harmonize.shape is None or harmonize.spacing is not None or \
            harmonize.interpolation not in CONTINUOUS:
        return None
    if source.mask_path is not None or source.mask_loader or \
            any(source.annotations.values()):
        return None
    return tuple(harmonize.shape)


def _target_ndim(recipe: Recipe) -> int | None:
    shape = recipe.harmonize.shape or recipe.harmonize.spacing
    return len(shape) if shape else None


def _row_name(source: CaseSource, context: BuildContext) -> str:
    if context.label_table is None:
        return source.case_id
    return f"{context.label_table} (row of {source.case_id})"


def _annotation_rows_name(source: CaseSource, context: BuildContext) -> str | None:
    """Where a case's box/landmark rows come from: the recipe's annotation tables (a box
    outside the image is a row of BBox_List_2017.csv, not of the image table)."""
    labels = context.recipe.labels
    tables = [str(context.source_dir / spec.table) for kind, spec in labels.annotations().items()
              if spec.table and source.annotations.get(kind)]
    return f"{', '.join(tables)} (rows of {source.image_path.name})" if tables else None
