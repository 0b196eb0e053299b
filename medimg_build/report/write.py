"""``write_report``: sample a store, render its thumbnails and charts, write index.html.

The report directory holds ``index.html`` and ``images/``; it needs no server, no
network and no script. What is read from the store: its root attributes, the case
table, the label arrays, the box and landmark tables, and the pixels of the sampled
cases only (a fixed, seeded number per split and per class).
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import MedimgError
from ..store import open_store
from .card import Table, class_table, dataset_card, label_kinds, label_states
from .card import none_name, split_table, states_note
from .figures import axis_names, geometry_columns, geometry_figure, intensity_figure
from .figures import original_intensities, spacing_unit_label
from .html import write_html
from .reading import CaseImages, picture_cases, planes_of, read_case
from .sampling import annotation_members, class_members, counts_by_split
from .sampling import label_groups, split_groups
from .thumbnails import CHANNEL_NOTE, MASK_OPACITY, colour_of, display_window
from .thumbnails import displayed_pixels, render_plane, window_notes
from .views import CONVENTION, PICTURE

PER_GROUP = {2: 8, 3: 3}  # cases shown per split or class, by spatial dimensions
MAX_CLASSES = 24  # classes given a montage, the most frequent first
HISTOGRAM_VALUES_PER_PLANE = 1 << 16
# Characters a case id keeps in a thumbnail's file name, after the tile's number.
FILE_NAME_ID_CHARS = 40
_UNSAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9_+-]+")


@dataclass(frozen=True)
class Thumbnail:
    src: str  # relative to index.html
    view: str
    slice_note: str


@dataclass(frozen=True)
class Tile:
    case_id: str
    split: str
    thumbnails: list[Thumbnail]
    tags: list[tuple[str, str]]  # (text, colour): classes, mask values, annotations


@dataclass
class Montage:
    heading: str
    total: int
    tiles: list[Tile] = field(default_factory=list)


@dataclass
class Intensities:
    """Sampled voxel values of the shown planes, stored and as before normalization."""

    stored: list[np.ndarray] = field(default_factory=list)
    original: list[np.ndarray] = field(default_factory=list)

    def add(self, values: np.ndarray, intensity: dict) -> None:
        step = max(1, len(values) // HISTOGRAM_VALUES_PER_PLANE)
        values = values[::step]
        self.stored.append(values.astype(np.float32).ravel())
        self.original.append(original_intensities(values, intensity).ravel())


def default_out(location: str) -> Path:
    """``<STORE>.report`` beside a local store; in the working directory for a URL."""
    name = location.rstrip("/")
    return Path((posixpath.basename(name) if "://" in name else name) + ".report")


def write_report(location: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 seed: int = 0, per_group: int | None = None,
                 storage_options: dict | None = None) -> Path:
    """Write the QC report of the store at ``location`` into ``out``; the index.html."""
    store = open_store(location, storage_options)
    out = Path(out) if out is not None else default_out(os.fspath(location))
    return write_store_report(store, out, seed=seed, per_group=per_group)


def write_store_report(store, out: Path, *, seed: int = 0,
                       per_group: int | None = None) -> Path:
    """The report of an open store (see ``write_report``)."""
    if out.exists() and not out.is_dir():
        raise MedimgError(out, "is a file; the report needs a directory",
                          hint="give --out a new or existing directory")
    if (out / "zarr.json").exists():  # the store itself, say: writing there damages it
        raise MedimgError(out, "is a Zarr store (it holds zarr.json); the report needs a "
                          "directory of its own", hint="give --out a new directory")
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    attrs, cases = store.attrs, store.cases
    spatial_ndim = int((attrs.get("image") or {}).get("spatial_ndim", 3))
    per_group = per_group or PER_GROUP[spatial_ndim]
    kinds = label_kinds(attrs)
    boxes = store.boxes() if "boxes" in kinds else pd.DataFrame()
    landmarks = store.landmarks() if "landmarks" in kinds else pd.DataFrame()

    members, states = _class_members(store, attrs, boxes, landmarks)
    groups = split_groups(cases, per_group, seed) + [
        group for name, classes in members.items()
        for group in label_groups(name, classes, per_group, seed, MAX_CLASSES)]
    tagged = {name: {**classes, **states.get(name, {})} for name, classes in members.items()}
    renderer = _Renderer(store, cases, attrs, tagged, boxes, landmarks, images_dir)
    montages = [Montage(g.heading, g.total, [renderer.tile(i) for i in g.case_ids])
                for g in groups]
    context = {
        "card": dataset_card(attrs, cases, store.location),
        "tables": [split_table(cases), *_class_tables(cases, members, states)],
        "montages": montages,
        "anatomical": bool(renderer.views - {PICTURE.name}),
        "pictures": PICTURE.name in renderer.views,
        "volumes": spatial_ndim == 3,
        "convention": CONVENTION,
        "window_note": " ".join(window_notes(renderer.methods)
                                + ([CHANNEL_NOTE] if renderer.first_channel_only else [])),
        "overlay_note": overlay_note(kinds),
        "n_read": len(renderer.tiles),
        "per_group": per_group, "seed": seed, "max_classes": MAX_CLASSES,
        "figures": {name: path.relative_to(out).as_posix() for name, path in
                    _charts(images_dir, cases, attrs, spatial_ndim, renderer).items()},
    }
    return write_html(out / "index.html", context)


def overlay_note(kinds: list[str]) -> str:
    """How the store's kinds of annotation are drawn on the thumbnails."""
    drawn = {"segmentation": f"masks in colour at {round(MASK_OPACITY * 100)}% opacity",
             "boxes": "boxes as rectangles", "landmarks": "landmarks as crosses"}
    parts = [drawn[kind] for kind in kinds if kind in drawn]
    if not parts:
        return ""
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return f"Drawn on the images: {listed}, each class in its colour."


def _charts(images_dir: Path, cases: pd.DataFrame, attrs, spatial_ndim: int,
            renderer: _Renderer) -> dict[str, Path]:
    charts = {}
    intensities = renderer.intensities
    if intensities.stored:
        charts["intensity"] = intensity_figure(
            images_dir / "intensity.png", np.concatenate(intensities.original),
            np.concatenate(intensities.stored), *_intensity_units(attrs))
    if len(cases):
        picture = picture_cases(cases).all()
        charts["geometry"] = geometry_figure(
            images_dir / "geometry.png", geometry_columns(cases, spatial_ndim),
            axis_names(cases, spatial_ndim, picture), spacing_unit_label(cases))
    return charts


def _class_members(store, attrs, boxes, landmarks
                   ) -> tuple[dict[str, dict[str, list[str]]], dict[str, dict[str, list[str]]]]:
    """Case ids per class, for each classification label and annotation kind; and per
    classification label, the case ids in no class (``card.label_states``)."""
    members, states = {}, {}
    vocabulary = (attrs.get("labels") or {}).get("classification") or {}
    for name in store.label_names:
        spec = vocabulary[name]
        values, classes = store.labels(name), [str(c) for c in spec.get("classes", [])]
        members[name] = class_members(values, classes)
        states[name] = label_states(values, none_name(attrs, name), classes)
    for kind, table in (("boxes", boxes), ("landmarks", landmarks)):
        if len(table):
            members[kind] = annotation_members(table)
    return members, states


def _class_tables(cases, members, states) -> list[Table]:
    tables = []
    for name, classes in members.items():
        if name in ("boxes", "landmarks"):
            tables.append(class_table(f"cases with {name} of each class, per split",
                                      counts_by_split(cases, classes)))
        else:
            extra = states[name]
            tables.append(class_table(f"{name}: cases of each class, per split",
                                      counts_by_split(cases, {**classes, **extra}),
                                      states_note(extra)))
    return tables


def _intensity_units(attrs) -> tuple[str, str]:
    preset = ((attrs.get("harmonization") or {}).get("intensity") or {}).get("preset")
    before = {"ct": "HU", "mr": "scanner units"}.get(preset, "source units")
    after = {"ct": "HU (clipped to the window)", "mr": "z-score",
             "xray": "[0, 1]", "photo": "[0, 1]"}.get(preset, "stored units")
    return before, after


class _Renderer:
    """Reads each sampled case once, writes its thumbnails, collects its intensities."""

    def __init__(self, store, cases, attrs, members, boxes, landmarks, images_dir):
        self._store, self._boxes, self._landmarks = store, boxes, landmarks
        self._dir = images_dir
        table = cases.set_index("case_id")
        self._picture = picture_cases(cases).set_axis(table.index)
        self._split = table["split"].astype(str) if "split" in table else None
        self._intensity = table["intensity"] if "intensity" in table else None
        self._classes = {label: {name: set(ids) for name, ids in classes.items()}
                         for label, classes in members.items()
                         if label not in ("boxes", "landmarks")}
        segmentation = (attrs.get("labels") or {}).get("segmentation") or {}
        self._mask_names = {str(k): str(v) for k, v in (segmentation.get("classes") or {}).items()}
        self._colour = str((attrs.get("harmonization") or {}).get("channels")) in ("keep", "rgb")
        self.tiles: dict[str, Tile] = {}
        self.intensities = Intensities()
        self.methods: set = set()  # normalization methods of the cases shown
        self.views: set[str] = set()  # names of the views shown
        self.first_channel_only = False  # a multi-channel image shown by its channel 0

    def tile(self, case_id: str) -> Tile:
        if case_id not in self.tiles:
            self.tiles[case_id] = self._render(case_id)
        return self.tiles[case_id]

    def _render(self, case_id: str) -> Tile:
        case = read_case(self._store, case_id, self._boxes, self._landmarks,
                         bool(self._picture.get(case_id, False)))
        intensity = self._intensity.get(case_id) if self._intensity is not None else None
        intensity = intensity if isinstance(intensity, dict) else {}
        colour = self._colour and case.image.n_channels == 3
        self.methods.add(intensity.get("method"))
        self.first_channel_only |= case.image.has_channels and not colour
        thumbnails, mask_values = [], set()
        for plane in planes_of(case):
            values = plane.extract(case.image.array)
            pixels = displayed_pixels(values, colour)
            name = thumbnail_name(len(self.tiles), case_id, plane.view.name)
            render_plane(self._dir / name, case, plane, pixels,
                         display_window(pixels, intensity))
            # Channels last, as denormalize takes per-channel parameters.
            self.intensities.add(values.reshape(-1, case.image.n_channels)
                                 if case.image.has_channels else values.ravel(), intensity)
            if case.mask is not None:
                mask_values |= set(np.unique(plane.extract(case.mask.array)).tolist())
            note = "" if plane.slice_axis is None else \
                f"slice {plane.slice_index + 1} of {plane.spatial_shape[plane.slice_axis]}"
            thumbnails.append(Thumbnail(f"images/{name}", plane.view.name, note))
            self.views.add(plane.view.name)
        return Tile(case_id, "" if self._split is None else str(self._split.get(case_id, "")),
                    thumbnails, self._tags(case, mask_values))

    def _tags(self, case: CaseImages, mask_values: set) -> list[tuple[str, str]]:
        tags = [(f"{label}: {name}", "") for label, classes in self._classes.items()
                for name, ids in classes.items() if case.case_id in ids]
        tags += [(self._mask_names.get(str(v), f"label {v}"), colour_of(int(v) - 1))
                 for v in sorted(mask_values) if v > 0]
        for kind, table in (("box", case.boxes), ("landmark", case.landmarks)):
            tags += [(f"{kind} {row['label']}", colour_of(int(row["label_index"])))
                     for _, row in table.iterrows()]
        return tags


def thumbnail_name(number: int, case_id: str, view: str) -> str:
    """The file name of the thumbnail of the ``number``-th case rendered, in ``images/``.
    Case ids are read from the store, which may come from another lab, so an id never
    becomes a path: it is kept as letters, digits and _ + - only (no '.', no '/') and
    capped, for a reader; the number alone makes the name unique."""
    readable = _UNSAFE_FILE_CHARS.sub("_", str(case_id))[:FILE_NAME_ID_CHARS].strip("_")
    return f"{number:04d}_{readable or 'case'}_{_UNSAFE_FILE_CHARS.sub('_', view)}.png"
