"""Deterministic patient-level splits: the same seed gives the same split everywhere."""

from __future__ import annotations

import hashlib


def assign_split(patient_id: str, seed: int, fractions: dict[str, float]) -> str:
    """The split of one patient, from a hash of (seed, patient id) alone, so that every
    image of a patient lands in the same split whatever the order or machine."""
    total = sum(fractions.values())
    digest = hashlib.sha256(f"{seed}:{patient_id}".encode()).digest()
    position = int.from_bytes(digest[:8], "big") / 2**64 * total
    cumulative = 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        if position < cumulative:
            return name
    return list(fractions)[-1]
