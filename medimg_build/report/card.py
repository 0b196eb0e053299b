"""The dataset card: what the store is, how it was made, what went wrong, and how many
cases each split and class holds -- all from the root attributes and the tables."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import pandas as pd

from ..describe import counted
from ..store.classification import vocabulary_entry
from ..labels.splits import ordered_splits

LABEL_KINDS = ("classification", "segmentation", "boxes", "landmarks")
UNKNOWN = "unknown"  # the row of cases whose label the source does not give (-1)
NO_CLASS = "none of the classes"  # a known multi-label value with no class positive


@dataclass(frozen=True)
class Table:
    caption: str
    header: list[str]
    rows: list[list[Any]]
    note: str = ""


@dataclass(frozen=True)
class Card:
    title: str
    subtitle: str
    facts: list[tuple[str, str]]  # (name, value), in reading order
    provenance: list[tuple[str, str]]
    software: list[tuple[str, str]]
    built: int
    failures: list[tuple[str, str]] = field(default_factory=list)  # (case id, error)
    # (reason, number of files), as the build report stores them: by reason, no paths.
    skips: list[tuple[str, int]] = field(default_factory=list)
    incomplete: list[tuple[str, int]] = field(default_factory=list)  # (what, cases)

    @property
    def skipped_files(self) -> int:
        """Files skipped, as the build's summary counts them (one per file)."""
        return sum(n for _, n in self.skips)

    @property
    def incomplete_cases(self) -> int:
        return sum(n for _, n in self.incomplete)


def label_kinds(attrs: dict[str, Any]) -> list[str]:
    labels = attrs.get("labels") or {}
    return [kind for kind in LABEL_KINDS if labels.get(kind)]


def _label_facts(labels: dict[str, Any]) -> str:
    parts = [f"classification {name} ({spec.get('kind')}, {len(spec.get('classes', []))} "
             "classes)" for name, spec in (labels.get("classification") or {}).items()]
    for kind in LABEL_KINDS[1:]:
        if labels.get(kind):
            parts.append(f"{kind} ({len(labels[kind].get('classes', []))} classes)")
    return "; ".join(parts) or "none"


def _failures(entries: Any) -> list[tuple[str, str]]:
    """The build report's failed cases (``{case id: error}``) as sorted pairs."""
    if isinstance(entries, dict):
        return sorted((str(k), str(v)) for k, v in entries.items())
    return [(str(entry), "") for entry in entries or []]


def _by_reason(entries: Any) -> list[tuple[str, int]]:
    """(reason, count) pairs, the most frequent first, from what the build report
    stores: ``{reason: count}`` (``recipe.build.BuildReport.to_dict``: paths stay on the
    console), or from a store of another version ``{path: reason}`` or a list of paths."""
    if isinstance(entries, dict):
        if all(isinstance(v, int) and not isinstance(v, bool) for v in entries.values()):
            counts = Counter({str(k): int(v) for k, v in entries.items()})
        else:
            counts = Counter(str(v) for v in entries.values())
    else:
        counts = Counter(str(entry) for entry in entries or [])
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def store_name(location: str) -> str:
    """A local store by its name: a report is shared, the folders above the store (a
    user's home) are not; a URL as it is."""
    return location if "://" in location else (PurePath(location.rstrip("/")).name or location)


def dataset_card(attrs: dict[str, Any], cases: pd.DataFrame, location: str) -> Card:
    location = store_name(location)
    recipe = attrs.get("recipe") or {}
    provenance = attrs.get("provenance") or {}
    report = attrs.get("build_report") or {}
    manifest = attrs.get("manifest") or {}
    facts = [
        ("store", location),
        ("modality", str(attrs.get("modality", "?"))),
        ("organ", str(attrs.get("organ", "?"))),
        ("layout", str(attrs.get("layout", "?"))),
        ("cases", f"{len(cases)} readable of {attrs.get('n_cases', len(cases))}"),
        ("labels", _label_facts(attrs.get("labels") or {})),
        ("license", str(attrs.get("license", "not stated"))),
    ]
    if attrs.get("citation"):
        facts.append(("citation", str(attrs["citation"]).strip()))
    made = [
        ("recipe", f"{recipe.get('name', '?')} {recipe.get('version', '')}".strip()),
        ("recipe sha256", str(recipe.get("sha256", "?"))),
        ("built at", str(provenance.get("built_at", "?"))),
        ("build time", f"{report.get('seconds', '?')} s"),
        ("python", str(provenance.get("python", "?"))),
        ("platform", str(provenance.get("platform", "?"))),
        ("content sha256", str(manifest.get("content_sha256", "no manifest"))),
    ]
    return Card(
        title=str(attrs.get("title") or attrs.get("dataset") or location),
        subtitle=f"{attrs.get('dataset', '?')} · {attrs.get('modality', '?')} · "
                 f"{attrs.get('organ', '?')} · {counted(len(cases), 'case')}",
        facts=facts, provenance=made,
        software=sorted((str(k), str(v)) for k, v in (attrs.get("software") or {}).items()),
        built=int(report.get("built", len(cases))),
        failures=_failures(report.get("failed")),
        skips=_by_reason(report.get("skipped")),
        incomplete=_by_reason(report.get("incomplete")))


def split_table(cases: pd.DataFrame) -> Table:
    if "split" not in cases:
        return Table("Cases", ["all"], [[len(cases)]])
    counts = cases["split"].astype(str).value_counts()
    splits = ordered_splits(counts.index)
    return Table("Cases per split", [*splits, "total"],
                 [[int(counts[s]) for s in splits] + [len(cases)]])


def class_table(caption: str, counts: pd.DataFrame, note: str = "") -> Table:
    """A per-class table from ``sampling.counts_by_split`` (classes x splits)."""
    return Table(caption, ["class", *map(str, counts.columns)],
                 [[str(name), *map(int, row)] for name, row in counts.iterrows()], note)


def none_name(attrs: dict[str, Any], label: str) -> str | None:
    """What the recipe calls a known multi-label value with no class positive
    (ChestX-ray14's "No Finding": the first of the label's ``none`` values), or None.
    The store's vocabulary lists the classes only; the recipe, recorded as written in
    ``attrs["recipe"]["content"]``, says the rest."""
    content = (attrs.get("recipe") or {}).get("content") or {}
    declared = (content.get("labels") or {}).get("classification") or []
    none = vocabulary_entry(declared, label).get("none") or []
    return str(none[0]) if isinstance(none, list) and none else None


def label_states(values: pd.Series | pd.DataFrame, none: str | None,
                 classes: list[str]) -> dict[str, list[str]]:
    """Case ids of one classification label that are in no class: for a multi-label
    label, those known with no class positive (named ``none``, or ``NO_CLASS`` when the
    recipe names no such value), then those ``UNKNOWN`` (-1: the source gave no label).
    A case with a positive class is counted there, even if other entries of its vector
    are unknown. Names are kept apart from the class names (ISIC has a class "unknown")."""
    taken = set(classes)
    states: dict[str, list[str]] = {}
    if isinstance(values, pd.DataFrame):
        matrix = values.to_numpy()
        positive = (matrix == 1).any(axis=1)
        unknown = ~positive & (matrix < 0).any(axis=1)
        states[_apart(none or NO_CLASS, taken)] = values.index[~positive & ~unknown].tolist()
    else:
        unknown = values.to_numpy() < 0
    states[_apart(UNKNOWN, taken)] = values.index[unknown].tolist()
    return states


def states_note(states: dict[str, list[str]]) -> str:
    """What the rows of ``label_states`` mean, under the class table."""
    *none, unknown = states
    known = f"{none[0]}: labelled, no class positive; " if none else ""
    return (f"A case counts in each class it is positive for. {known}{unknown}: the "
            "source gives no label (stored as -1).")


def _apart(name: str, classes: set[str]) -> str:
    return name if name not in classes else f"{name} (not a class)"
