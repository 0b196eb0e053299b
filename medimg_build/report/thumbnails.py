"""One PNG per plane of a case: the image in a fixed window, the mask in colour, boxes
and landmarks on top, the anatomical direction at each edge.

Figures are drawn with matplotlib's object API on an Agg canvas: no pyplot state, no
display, safe in any thread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import patheffects
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .reading import CaseImages, box_corners, landmark_points
from .views import Plane

THUMBNAIL_PIXELS = 256  # the longer side of a thumbnail
MASK_OPACITY = 0.45
# Colours of label values and annotation classes, in the order of their index.
PALETTE = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
           "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000",
           "#aaffc3", "#808000", "#ffd8b1", "#000075")
CT_WINDOW = (-160.0, 240.0)  # soft tissue: level 40 HU, width 400 HU
PERCENTILE_WINDOW = (0.5, 99.5)
WINDOW_NOTES = {
    "ct": "Grey levels: CT soft-tissue window (level 40 HU, width 400 HU).",
    "unit_range": "Grey levels: the stored range [0, 1] as it is.",
    None: "Grey levels: from the 0.5th to the 99.5th percentile of each plane.",
}
CHANNEL_NOTE = "Images of several channels (other than colour) show their first channel."


def colour_of(index: int) -> str:
    """The colour of mask value ``index`` (>= 1) or annotation class ``index`` (>= 0)."""
    return PALETTE[index % len(PALETTE)]


def window_notes(methods: set) -> list[str]:
    """What the grey levels of thumbnails mean, for the normalization methods shown."""
    notes = [WINDOW_NOTES[m if m in WINDOW_NOTES else None] for m in sorted(methods, key=str)]
    return list(dict.fromkeys(notes))


def display_window(values: np.ndarray, intensity: dict) -> tuple[float, float]:
    """The grey range a plane is shown in, from its case's normalization method."""
    method = (intensity or {}).get("method")
    if method == "ct":
        return CT_WINDOW
    if method == "unit_range":
        return 0.0, 1.0
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = (float(v) for v in np.percentile(finite, PERCENTILE_WINDOW))
    return (low, high) if high > low else (low, low + 1.0)  # a constant plane


def displayed_pixels(plane_image: np.ndarray, colour: bool) -> np.ndarray:
    """A plane of the image as drawn: RGB for colour images, else the first channel."""
    if plane_image.ndim == 2:
        return plane_image.astype(np.float32)
    return plane_image[..., :3].astype(np.float32) if colour else \
        plane_image[..., 0].astype(np.float32)


def mask_overlay(mask_plane: np.ndarray) -> np.ndarray:
    """RGBA of a label map: each non-zero value in its colour, background clear."""
    overlay = np.zeros((*mask_plane.shape, 4), np.float32)
    for value in np.unique(mask_plane):
        if value > 0:
            overlay[mask_plane == value] = to_rgba(colour_of(int(value) - 1), MASK_OPACITY)
    return overlay


def render_plane(path: Path, case: CaseImages, plane: Plane, pixels: np.ndarray,
                 window: tuple[float, float]) -> Path:
    """Write the thumbnail of ``plane`` of ``case`` (``pixels`` = its displayed image):
    a black square with the plane fitted inside at its physical aspect ratio, so that
    thin slabs and anisotropic voxels look as they are in the patient."""
    rows, cols = pixels.shape[:2]
    height, width = rows * plane.pixel_aspect(case.image.affine), cols
    fit = min(1.0 / height, 1.0 / width)
    dpi = 100
    figure = Figure(figsize=(THUMBNAIL_PIXELS / dpi, THUMBNAIL_PIXELS / dpi), dpi=dpi,
                    facecolor="black")
    axes = figure.add_axes(((1 - width * fit) / 2, (1 - height * fit) / 2,
                            width * fit, height * fit))
    axes.set_axis_off()
    image_kwargs = dict(aspect="auto", interpolation="antialiased")
    if pixels.ndim == 3:
        axes.imshow(np.clip(pixels, 0, 1), **image_kwargs)
    else:
        axes.imshow(pixels, cmap="gray", vmin=window[0], vmax=window[1], **image_kwargs)
    if case.mask is not None:
        axes.imshow(mask_overlay(plane.extract(case.mask.array)), interpolation="nearest",
                    aspect="auto")
    _draw_boxes(axes, case, plane)
    _draw_landmarks(axes, case, plane)
    axes.set_xlim(-0.5, cols - 0.5)
    axes.set_ylim(rows - 0.5, -0.5)
    _label_edges(figure, plane.view.edges)
    FigureCanvasAgg(figure).print_png(path)
    return path


def _draw_boxes(axes, case: CaseImages, plane: Plane) -> None:
    if not len(case.boxes):
        return
    low, high = box_corners(case.boxes, case.image.spatial_ndim)
    for (_, box), lo, hi in zip(case.boxes.iterrows(), low, high):
        if plane.slice_axis is not None and not plane.contains(lo[plane.slice_axis],
                                                               hi[plane.slice_axis]):
            continue
        corners = plane.to_screen(np.vstack([lo, hi]))
        (top, left), (bottom, right) = corners.min(axis=0), corners.max(axis=0)
        axes.add_patch(Rectangle((left, top), right - left, bottom - top, fill=False,
                                 linewidth=1.5, edgecolor=colour_of(int(box["label_index"]))))


def _draw_landmarks(axes, case: CaseImages, plane: Plane) -> None:
    if not len(case.landmarks):
        return
    points = landmark_points(case.landmarks, case.image.spatial_ndim)
    for (_, landmark), point in zip(case.landmarks.iterrows(), points):
        if plane.slice_axis is not None and not plane.contains(point[plane.slice_axis],
                                                               point[plane.slice_axis]):
            continue
        row, col = plane.to_screen(point)[0]
        axes.plot(col, row, marker="+", markersize=9, markeredgewidth=1.8,
                  color=colour_of(int(landmark["label_index"])))


def _label_edges(figure: Figure, edges: tuple[str, str, str, str]) -> None:
    """Anatomical direction letters at the middle of the left, right, top and bottom
    edges of the thumbnail, as viewers place them."""
    left, right, top, bottom = edges
    outline = [patheffects.withStroke(linewidth=2.5, foreground="black")]
    placements = ((left, 0.03, 0.5, "left", "center"), (right, 0.97, 0.5, "right", "center"),
                  (top, 0.5, 0.97, "center", "top"), (bottom, 0.5, 0.03, "center", "bottom"))
    for text, x, y, horizontal, vertical in placements:
        if text:
            figure.text(x, y, text, ha=horizontal, va=vertical,
                        color="#ffd84d", fontsize=11, fontweight="bold", path_effects=outline)
