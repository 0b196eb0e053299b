"""The dataset card: what the store is, how it was made, what went wrong, and how many
cases each split and class holds -- all from the root attributes and the tables."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any

import pandas as pd

from .sampling import ordered_splits

LABEL_KINDS = ("classification", "segmentation", "boxes", "landmarks")


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
    failures: list[tuple[str, str]] = field(default_factory=list)
    skips: list[tuple[str, str]] = field(default_factory=list)


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


def _build_entries(entries: Any) -> list[tuple[str, str]]:
    """Failures or skips of the build report (``{what: why}``) as sorted pairs."""
    if isinstance(entries, dict):
        return sorted((str(k), str(v)) for k, v in entries.items())
    return [(str(entry), "") for entry in entries or []]


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
                 f"{attrs.get('organ', '?')} · {len(cases)} cases",
        facts=facts, provenance=made,
        software=sorted((str(k), str(v)) for k, v in (attrs.get("software") or {}).items()),
        built=int(report.get("built", len(cases))),
        failures=_build_entries(report.get("failed")),
        skips=_build_entries(report.get("skipped")))


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
