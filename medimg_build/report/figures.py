"""The report's charts: intensities before and after normalization, and voxel spacing
and grid shape before and after resampling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..harmonize.normalize import denormalize
from .views import axis_directions

BEFORE, AFTER = "#8c8c8c", "#1f77b4"
WORLD_AXIS_NAMES = ("R–L", "A–P", "S–I")
HISTOGRAM_BINS = 100


def original_intensities(stored: np.ndarray, intensity: dict) -> np.ndarray:
    """The values a case had before normalization, from its stored values ``(n[, c])``
    and its table's ``intensity`` parameters (channels last, as ``denormalize`` wants);
    stored values as they are when the case records no normalization."""
    if not intensity or intensity.get("method") in (None, "none"):
        return stored.astype(np.float32)
    return denormalize(stored, intensity)


def world_ordered(values: np.ndarray, affine: np.ndarray, spatial_ndim: int) -> np.ndarray:
    """Per-index-axis ``values`` (spacing, shape) listed in the order of the world axes
    the index axes run along (R, A, S; a 2D grid's two spanned axes in that order)."""
    directions = axis_directions(affine, spatial_ndim)
    order = np.argsort(directions[:, 0])
    return np.asarray(values, dtype=np.float64)[:spatial_ndim][order]


def geometry_columns(cases: pd.DataFrame, spatial_ndim: int) -> dict[str, np.ndarray]:
    """``(n_cases, spatial_ndim)`` arrays of the original and harmonized spacing and
    shape, each in world-axis order. Originals are listed in the source's own index
    order in the table, so they are reordered through each case's original affine;
    harmonized grids are RAS+ already."""
    def spatial(column: str) -> np.ndarray:
        return np.array([np.asarray(v, dtype=np.float64)[:spatial_ndim]
                         for v in cases[column]]).reshape(len(cases), spatial_ndim)

    affines = [np.asarray(a, dtype=np.float64) for a in cases["original_affine"]]
    def reordered(column: str) -> np.ndarray:
        return np.array([world_ordered(v, a, spatial_ndim)
                         for v, a in zip(spatial(column), affines)]).reshape(
                             len(cases), spatial_ndim)

    return {"original_spacing": reordered("original_spacing"),
            "harmonized_spacing": spatial("harmonized_spacing"),
            "original_shape": reordered("original_shape"),
            "harmonized_shape": spatial("harmonized_shape")}


def axis_names(cases: pd.DataFrame, spatial_ndim: int, picture: bool) -> list[str]:
    if picture:
        return ["columns", "rows"]
    if spatial_ndim == 3:
        return list(WORLD_AXIS_NAMES)
    spanned = axis_directions(np.asarray(cases["original_affine"].iloc[0]), 2)[:, 0]
    return [WORLD_AXIS_NAMES[a] for a in sorted(spanned)]


def spacing_unit_label(cases: pd.DataFrame) -> str:
    """The unit of the spacing charts, from the case table's ``spacing_unit``: mm, or
    pixel for pictures whose pixel size the source does not give, or both named when a
    store holds both kinds (never a guessed conversion)."""
    units = set(cases["spacing_unit"]) if "spacing_unit" in cases else {"mm"}
    if units == {"pixel"}:
        return "pixel"
    return "mm; pixel where the pixel size is unknown" if "pixel" in units else "mm"


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    FigureCanvasAgg(figure).print_png(path)
    return path


def _histogram(axes, values: np.ndarray, colour: str, title: str, xlabel: str) -> None:
    finite = values[np.isfinite(values)]
    axes.hist(finite, bins=HISTOGRAM_BINS, color=colour, log=True)
    axes.set_title(title, fontsize=10)
    axes.set_xlabel(xlabel, fontsize=9)
    axes.set_ylabel("voxels (log)", fontsize=9)
    axes.tick_params(labelsize=8)


def intensity_figure(path: Path, before: np.ndarray, after: np.ndarray,
                     before_unit: str, after_unit: str) -> Path:
    figure = Figure(figsize=(9, 3), dpi=100)
    left, right = figure.subplots(1, 2)
    _histogram(left, before, BEFORE, "before normalization", before_unit)
    _histogram(right, after, AFTER, "after normalization (as stored)", after_unit)
    return _save(figure, path)


def geometry_figure(path: Path, columns: dict[str, np.ndarray], names: list[str],
                    spacing_unit: str) -> Path:
    """Spacing (top row) and shape (bottom row) per axis, original over harmonized."""
    figure = Figure(figsize=(3 * len(names), 5), dpi=100)
    grid = figure.subplots(2, len(names), squeeze=False)
    for row, (what, unit) in enumerate((("spacing", spacing_unit), ("shape", "voxels"))):
        for column, name in enumerate(names):
            axes = grid[row][column]
            original = columns[f"original_{what}"][:, column]
            harmonized = columns[f"harmonized_{what}"][:, column]
            bins = np.histogram_bin_edges(np.concatenate([original, harmonized]), bins=30)
            axes.hist(original, bins=bins, color=BEFORE, alpha=0.7, label="original")
            axes.hist(harmonized, bins=bins, color=AFTER, alpha=0.7, label="harmonized")
            axes.set_title(f"{what} {name}", fontsize=10)
            axes.set_xlabel(unit, fontsize=9)
            axes.tick_params(labelsize=8)
    grid[0][0].set_ylabel("cases", fontsize=9)
    grid[1][0].set_ylabel("cases", fontsize=9)
    grid[0][-1].legend(fontsize=8, frameon=False)
    return _save(figure, path)
