"""Deterministic patient-level splits: the same seed gives the same split everywhere.

Three sources of a split, in order of precedence:

1. a source's official split lists (ChestX-ray14's ``test_list.txt``): the images they
   name, and every other image of the same patients, take that split;
2. stratification by a classification label: patients are dealt into splits stratum by
   stratum, so that each split gets its share of every class (needs the labels and the
   patients at discovery, as image tables have them);
3. otherwise a hash of (seed, patient): needs no view of the whole dataset, so a series
   whose patient is known only from its DICOM header still gets its split.

A patient is never in two splits: lists that put one patient's images in two splits
are refused."""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RecipeError
from ..recipe.paths import inside
from ..recipe.sections import Split


def assign_split(patient_id: str, seed: int, fractions: dict[str, float]) -> str:
    """The split of one patient, from a hash of (seed, patient id) alone, so that every
    image of a patient lands in the same split whatever the order or machine."""
    total = sum(fractions.values())
    position = _unit_hash(seed, patient_id) * total
    cumulative = 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        if position < cumulative:
            return name
    return list(fractions)[-1]


@dataclass(frozen=True)
class SplitPlan:
    """Splits decided before harmonization; patients not in it fall back to the hash."""

    seed: int = 0
    fractions: dict[str, float] = field(default_factory=lambda: {"train": 1.0})
    by_patient: dict[str, str] = field(default_factory=dict)  # pseudonym -> split
    method: str = "hash"

    def split_of(self, patient_pseudonym: str) -> str:
        return self.by_patient.get(patient_pseudonym) or assign_split(
            patient_pseudonym, self.seed, self.fractions)

    def describe(self) -> dict[str, Any]:
        return {"method": self.method, "seed": self.seed, "fractions": self.fractions}


def plan_splits(spec: Split, cases: list[tuple[str, str | None, str, int | None]],
                source_dir: Path, official: list[Any] | None = None) -> SplitPlan:
    """The split plan of a recipe's ``split`` section for ``cases`` given as
    (case id, patient pseudonym or None, image file name, stratum or None);
    ``official``: each case's raw value of ``split.column``, if the recipe names one."""
    seed = int(spec.seed)
    fractions = dict(spec.fractions)
    fixed = _from_lists(spec.lists, cases, source_dir)
    if spec.column:
        fixed = {**_from_column(spec, cases, official or [None] * len(cases)), **fixed}
    method = "hash"
    if spec.stratify:
        method = f"stratified by {spec.stratify}"
        fixed = {**_stratified(cases, seed, fractions, fixed, spec.stratify), **fixed}
    if spec.lists:
        method = f"official lists ({', '.join(sorted(spec.lists))}) + {method}"
    if spec.column:
        method = f"official column {spec.column} + {method}"
    return SplitPlan(seed=seed, fractions=fractions, by_patient=fixed, method=method)


def _from_lists(lists: Mapping[str, str], cases, source_dir: Path) -> dict[str, str]:
    """patient pseudonym -> split, for the patients of images named in official lists."""
    named: dict[str, str] = {}
    for split, relative in lists.items():
        path = inside(source_dir, relative, f"split.lists.{split}")
        if not path.is_file():
            raise RecipeError(path, f"official split list for {split!r} not found",
                              hint="check the recipe's split.lists")
        for line in path.read_text().splitlines():
            if line.strip():
                named[line.strip()] = split
    by_patient: dict[str, str] = {}
    for case_id, patient, file_name, _ in cases:
        split = named.get(file_name) or named.get(case_id)
        if split is None:
            continue
        if patient is None:
            raise RecipeError(source_dir, "official split lists need patient ids at discovery",
                              hint="set the recipe's source.patient_column")
        if by_patient.setdefault(patient, split) != split:
            raise RecipeError(source_dir / lists[split], f"patient {patient} has images in "
                              f"both the {by_patient[patient]!r} and {split!r} lists",
                              hint="official lists must keep each patient in one split")
    return by_patient


def _from_column(spec: Split, cases, official: list[Any]) -> dict[str, str]:
    """patient pseudonym -> split, from each case's cell of ``split.column`` mapped by
    ``split.values`` (an empty cell leaves the case to the other rules)."""
    column, values = spec.column, spec.values
    by_patient: dict[str, str] = {}
    for (case_id, patient, _, _), raw in zip(cases, official):
        text = "" if raw is None else str(raw).strip()
        if not text:
            continue
        split = values.get(text, text if not values else None)
        if split is None:
            raise RecipeError(None, f"case {case_id}: {column}={text!r} is not one of "
                              f"split.values {sorted(values)}",
                              hint="add the value to the recipe's split.values")
        if patient is None:
            raise RecipeError(None, f"split.column={column!r} needs patient ids at discovery",
                              hint="the source must name each case's patient")
        if by_patient.setdefault(patient, split) != split:
            raise RecipeError(None, f"{column}: a patient has cases in both the "
                              f"{by_patient[patient]!r} and {split!r} splits (case {case_id})",
                              hint="official splits must keep each patient in one split")
    return by_patient


def _stratified(cases, seed: int, fractions: dict[str, float], fixed: dict[str, str],
                label: str) -> dict[str, str]:
    """Deal patients stratum by stratum (a patient's stratum: its most frequent class)
    in hash order, each split taking its share by largest remainder; patients already
    fixed by official lists count towards their split's share."""
    strata: dict[str, Counter] = defaultdict(Counter)
    for _, patient, _, stratum in cases:
        if patient is None:
            raise RecipeError(None, f"split.stratify={label!r} needs patient ids at discovery",
                              hint="use an image table with source.patient_column")
        strata[patient][stratum] += 1
    by_stratum: dict[Any, list[str]] = defaultdict(list)
    for patient, counts in strata.items():
        by_stratum[max(sorted(counts, key=str), key=counts.get)].append(patient)
    names = list(fractions)
    shares = np.array([fractions[n] for n in names], dtype=float) / sum(fractions.values())
    assigned: dict[str, str] = {}
    for stratum in sorted(by_stratum, key=str):
        patients = sorted(by_stratum[stratum], key=lambda p: _unit_hash(seed, p))
        taken = Counter(fixed[p] for p in patients if p in fixed)
        free = [p for p in patients if p not in fixed]
        quota = _largest_remainder(shares * len(patients)) - np.array([taken[n] for n in names])
        quota = np.maximum(quota, 0)
        position = 0
        for name, count in zip(names, quota):
            for patient in free[position:position + int(count)]:
                assigned[patient] = name
            position += int(count)
        for patient in free[position:]:  # lists overfilled a split: hash the rest
            assigned[patient] = assign_split(patient, seed, fractions)
    return assigned


def _largest_remainder(targets: np.ndarray) -> np.ndarray:
    counts = np.floor(targets).astype(int)
    order = np.argsort(-(targets - counts), kind="stable")
    counts[order[: int(round(targets.sum())) - counts.sum()]] += 1
    return counts


def _unit_hash(seed: int, text: str) -> float:
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


SPLIT_ORDER = ("train", "val", "test")  # as people say them


def ordered_splits(splits: Iterable[str]) -> list[str]:
    """train, val, test first, then any other split names alphabetically."""
    present = set(splits)
    return [s for s in SPLIT_ORDER if s in present] + sorted(present - set(SPLIT_ORDER))
