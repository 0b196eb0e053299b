"""Which cases the report shows: a fixed, seeded number per split and per class.

Only tables are read here (the case table, label arrays, box and landmark tables), so
the number of images the report reads is bounded by ``per_group`` times the number of
groups, whatever the size of the store.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..labels.splits import ordered_splits

@dataclass(frozen=True)
class Group:
    """Cases shown together: ``heading`` names what they share, ``total`` is how many
    cases of the store share it, ``case_ids`` the sample shown."""

    heading: str
    total: int
    case_ids: tuple[str, ...]


def sample(ids: Sequence[str], per_group: int, seed: int, name: str) -> tuple[str, ...]:
    """Up to ``per_group`` of ``ids``, the same ones for the same seed, group name and
    ids on every machine (kept in their store order)."""
    ids = list(ids)
    if len(ids) <= per_group:
        return tuple(ids)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    chosen = np.sort(rng.choice(len(ids), size=per_group, replace=False))
    return tuple(ids[i] for i in chosen)


def split_groups(cases: pd.DataFrame, per_group: int, seed: int) -> list[Group]:
    """One group per split of the case table (one group of every case if no split)."""
    if "split" not in cases:
        return [Group("all cases", len(cases),
                      sample(cases["case_id"].tolist(), per_group, seed, "all"))]
    groups = []
    for split in ordered_splits(cases["split"].astype(str)):
        ids = cases.loc[cases["split"].astype(str) == split, "case_id"].tolist()
        groups.append(Group(f"split {split}", len(ids), sample(ids, per_group, seed, split)))
    return groups


def class_members(values: pd.Series | pd.DataFrame, classes: Sequence[str]) -> dict[str, list[str]]:
    """Case ids of each class of one classification label, indexed by case_id: a
    multi-label DataFrame (1 = positive) or a single-label Series of class indices
    (-1 = unknown, in no class)."""
    if isinstance(values, pd.DataFrame):
        return {str(c): values.index[values[c] == 1].tolist() for c in values.columns}
    return {name: values.index[values == k].tolist() for k, name in enumerate(classes)}


def label_groups(label: str, members: dict[str, list[str]], per_group: int, seed: int,
                 max_classes: int) -> list[Group]:
    """A group per class with cases in it, the ``max_classes`` most frequent first."""
    present = [(name, ids) for name, ids in members.items() if ids]
    present.sort(key=lambda item: -len(item[1]))  # stable: vocabulary order on ties
    return [Group(f"{label}: {name}", len(ids),
                  sample(ids, per_group, seed, f"{label}/{name}"))
            for name, ids in present[:max_classes]]


def annotation_members(table: pd.DataFrame) -> dict[str, list[str]]:
    """Case ids having at least one box (landmark) of each label, in case order."""
    ordered = table.sort_values("case_index")
    return {str(label): list(dict.fromkeys(rows["case_id"]))
            for label, rows in ordered.groupby("label", sort=True)}


def counts_by_split(cases: pd.DataFrame, members: dict[str, list[str]]) -> pd.DataFrame:
    """Cases of each class (rows) in each split (columns), with a total column."""
    split_of = cases.set_index("case_id")["split"].astype(str) if "split" in cases else None
    splits = ordered_splits(split_of) if split_of is not None else []
    rows = {}
    for name, ids in members.items():
        per_split = split_of.reindex(ids).value_counts() if split_of is not None else {}
        rows[name] = [int(per_split.get(s, 0)) for s in splits] + [len(ids)]
    return pd.DataFrame.from_dict(rows, orient="index", columns=[*splits, "total"])
