"""Nothing that identifies a patient reaches a store.

* Patient IDs and DICOM UIDs are replaced by a keyed hash (HMAC-SHA256): the same
  input and key give the same pseudonym on every machine, and without the key the
  pseudonym cannot be recomputed from a guessed ID.
* DICOM attributes of the PS3.15 Annex E Basic Application Level Confidentiality
  Profile never reach a store, with one declared exception: the descriptors of the
  Clean Descriptors Option (series description, protocol name, contrast agent...) are
  kept after every identifying value of the same file has been scrubbed from them.
  The profile's attribute table is the one maintained by dicom-anonymizer (PS3.15
  2026c), not a hand-copied list.
* Text that comes from the user's folders (paths, case ids) is scrubbed the same way.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import pydicom
from dicomanonymizer.dicom_anonymization_databases import dicomfields_2026c as _ps315

from .errors import MedimgWarning

KEY_ENV = "MEDIMG_PSEUDONYM_KEY"
# Without a secret key, the hash still hides IDs from casual reading but can be
# reversed by trying candidate IDs; the store records which case applies.
DEFAULT_KEY = "medimg-build-default-key"

PROFILE = "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile"
PROFILE_TABLE = "PS3.15 2026c (dicom-anonymizer)"
PROFILE_TAGS = frozenset(_ps315.ALL_TAGS)
# Kept under the Clean Descriptors Option, after scrubbing (PS3.15 E.3.5).
CLEAN_DESCRIPTORS = ("SeriesDescription", "ProtocolName", "ContrastBolusAgent",
                     "StudyDescription", "ImageComments")
# Values too generic to identify anyone, which scrubbing would only mangle.
_GENERIC = {"", "anonymous", "anon", "none", "unknown", "n/a", "na"}
_TEXT_VRS = {"PN", "LO", "SH", "LT", "ST", "UT", "UC", "DA", "DT", "TM", "UI", "AE", "AS", "CS",
             "IS", "DS", "UR"}


class DefaultKeyWarning(MedimgWarning):
    """A build pseudonymizes with the built-in key, which anyone can use."""


warnings.simplefilter("always", DefaultKeyWarning)  # every build says it, not the first


def pseudonym_key(explicit: str | None = None) -> tuple[bytes, bool]:
    """The key and whether it is secret (given by the user)."""
    key = explicit or os.environ.get(KEY_ENV)
    return (key or DEFAULT_KEY).encode(), bool(key)


def warn_default_key() -> None:
    warnings.warn(f"no --key or ${KEY_ENV}: patient pseudonyms use the built-in key, so "
                  "anyone holding a patient ID can recompute its pseudonym; pass a secret "
                  "key for data you share (it is never written)", DefaultKeyWarning,
                  stacklevel=3)


def pseudonymize(value: str, key: bytes) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:16]


def identifying_values(dataset: pydicom.Dataset) -> set[str]:
    """The values of every Basic Profile attribute of ``dataset`` (sequences included),
    and the components of person names, except the retained clean descriptors."""
    keep = {pydicom.datadict.tag_for_keyword(k) for k in CLEAN_DESCRIPTORS}
    found: set[str] = set()
    for element in dataset.iterall():
        if (element.tag.group, element.tag.element) not in PROFILE_TAGS or element.tag in keep:
            continue
        if element.VR not in _TEXT_VRS or element.value is None:
            continue
        values = element.value if isinstance(element.value, (list, tuple,
                                              pydicom.multival.MultiValue)) else [element.value]
        for value in values:
            text = str(value).strip()
            found.add(text)
            if element.VR == "PN":
                found.update(part.strip() for part in re.split(r"[\^=]", text))
    return {v for v in found if v.lower() not in _GENERIC and not _is_number(v)}


def identifying_values_of_files(paths: Iterable[str | Path]) -> set[str]:
    """Identifying values of the first readable DICOM file among ``paths`` (patient and
    study attributes are the same in every file of a series), or an empty set."""
    for path in paths:
        try:
            return identifying_values(pydicom.dcmread(path, stop_before_pixels=True))
        except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError):
            continue
    return set()


def scrub(text: str, identifiers: set[str], key: bytes) -> str:
    """``text`` with every identifying value, as a whole token, replaced by its keyed
    hash in brackets. Tokens end at anything that is not a letter or digit, so that an
    ID "DEV" is scrubbed from "DEV_T1" but not from "DEVICE"."""
    for value in sorted(identifiers, key=len, reverse=True):
        if value and value in text:
            pattern = rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])"
            text = re.sub(pattern, f"[{pseudonymize(value, key)[:8]}]", text)
    return text


def _is_number(text: str) -> bool:
    """Weights, ages in years and counts: numbers shorter than a date are not IDs."""
    return bool(re.fullmatch(r"[-+]?\d{1,5}(\.\d*)?", text))


def deidentification_record(key_is_secret: bool) -> dict:
    """What the store says about how it was de-identified."""
    return {
        "profile": PROFILE,
        "profile_table": PROFILE_TABLE,
        "options": ["Clean Descriptors Option: " + ", ".join(CLEAN_DESCRIPTORS)
                    + " kept after scrubbing"],
        "patient_id": "HMAC-SHA256 keyed hash, first 16 hex digits",
        "uids": "StudyInstanceUID and SeriesInstanceUID as keyed hashes; other UIDs dropped",
        "key": "secret (given at build time)" if key_is_secret
               else "built-in default: not secret, IDs can be guessed",
        "paths": "relative to the source folder; identifying values scrubbed",
    }
