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

import functools
import hashlib
import hmac
import itertools
import os
import re
import unicodedata
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
# Words that join a family name, ordinary words alone.
_PARTICLES = {"van", "von", "der", "den", "del", "della", "des", "dos", "das", "ter", "ten",
              "bin", "ibn", "abu", "zu", "st"}
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
    and the components of person names, except the retained clean descriptors. A name
    is given with '^' between its components (``scrub`` matches them in any order),
    also when the file wrote it with spaces ("DOE JANE"); a date-time's date is given
    alone too (``scrub`` matches a date in its common spellings)."""
    keep = {pydicom.datadict.tag_for_keyword(k) for k in CLEAN_DESCRIPTORS}
    found: set[str] = set()
    for element in dataset.iterall():
        # Private attributes are removed by the profile; a name among them may be the
        # patient's too (a vendor's copy), known as one only by its VR.
        private_name = element.tag.is_private and element.VR == "PN"
        if ((element.tag.group, element.tag.element) not in PROFILE_TAGS and not private_name) \
                or element.tag in keep:
            continue
        if element.VR not in _TEXT_VRS or element.value is None:
            continue
        values = element.value if isinstance(element.value, (list, tuple,
                                              pydicom.multival.MultiValue)) else [element.value]
        for value in values:
            text = str(value).strip()
            found.add(text)
            if element.VR == "PN":
                parts = [p.strip() for p in re.split(r"[\^=]", text) if p.strip()]
                found.update(parts)
                if "=" in text:  # alphabetic=ideographic=phonetic: each a whole name
                    found.update(g.strip("^ ") for g in text.split("=") if g.strip("^ "))
                # A component of several words ("van der Berg", "Anna Maria") of a
                # name of several components: each word is a name alone ("Berg Anna"),
                # not its particles.
                words = [part.split() for part in parts] if len(parts) > 1 else []
                found.update(word for split in words if len(split) > 1 for word in split
                             if word.casefold() not in _PARTICLES)
                # "DOE JANE" in one component: its words are a name in any order too,
                # but not values alone ("Patient 383": "Patient" is an ordinary word).
                found.add("^".join(parts if len(parts) > 1 else text.split()))
            elif element.VR == "DT":
                found.add(text[:8])
    return {v for v in found if v.lower() not in _GENERIC and not _is_number(v)}


def identifying_values_of_files(paths: Iterable[str | Path]) -> set[str]:
    """Identifying values of the first readable DICOM file among ``paths`` (patient and
    study attributes are the same in every file of a series), or an empty set."""
    return readable_identity(paths) or set()


def readable_identity(paths: Iterable[str | Path]) -> set[str] | None:
    """Like ``identifying_values_of_files``, but None when no file among ``paths`` has
    a readable header: then nothing can say whether their names identify someone."""
    for path in paths:
        try:
            return identifying_values(pydicom.dcmread(path, stop_before_pixels=True))
        except (pydicom.errors.InvalidDicomError, OSError, ValueError, EOFError,
                AttributeError, KeyError, TypeError):
            continue
    return None


def scrub(text: str, identifiers: Iterable[str], key: bytes) -> str:
    """``text`` with every identifying value, in any of its spellings, replaced by its
    keyed hash in brackets (``[1f0c...]``, the same for every spelling; ``[scrubbed]``
    under the built-in key: ``_token``).

    Text is compared as a sequence of chunks, a chunk being a run of letters or a run of
    digits, without regard to case; a value matches whole chunks only, so that an ID
    "DEV" is scrubbed from "DEV_T1" and "DEV2" but not from "DEVICE". Whatever separates
    two chunks (space . _ - ^ , / ...) or nothing between two runs of letters is the
    same spelling: "Doe^Jane" matches "JANE DOE", "jane.doe", "DOE-JANE", "Doe_Jane" and
    "janedoe"; "ALT7654321" matches "alt-7654321"; a date 19700101 matches 1970-01-01,
    01.01.1970, 1/1/1970, 01011970, Jan 1 1970, 1st January 1970 and 01-JAN-1970 (see
    ``_spellings``). The table of spellings is made once per set of identifiers."""
    table, longest, firsts = _spelling_table(frozenset(identifiers))
    if not table:
        return text
    chunks = [(m.start(), m.end(), _fold(m.group())) for m in _CHUNK.finditer(text)]
    pieces, done, i = [], 0, 0
    while i < len(chunks):
        # Most chunks start no spelling: one set lookup, not one per length.
        lengths = range(min(longest, len(chunks) - i), 0, -1) if chunks[i][2] in firsts \
            else ()
        for n in lengths:
            value = table.get(tuple(chunk for _, _, chunk in chunks[i:i + n]))
            if value is not None:
                pieces += [text[done:chunks[i][0]], _token(value, key)]
                done, i = chunks[i + n - 1][1], i + n
                break
        else:
            i += 1
    return "".join(pieces) + text[done:]


def _token(value: str, key: bytes) -> str:
    """What replaces ``value``: its keyed hash, or, under the built-in key, which anyone
    can use to hash every date of birth and common name and look the token up, a mark
    that tells nothing."""
    if key == DEFAULT_KEY.encode():
        return "[scrubbed]"
    return f"[{pseudonymize(value, key)[:8]}]"


# A chunk: a run of letters (any script, with the combining accents of a decomposed
# "u\u0308", as macOS writes file names) or a run of digits. An accent with no letter
# before it separates, as a space does.
_CHUNK = re.compile(r"[^\W\d_](?:[^\W\d_]|[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff"
                    r"\u20d0-\u20ff\ufe20-\ufe2f])*|\d+")
# Letters NFKD does not decompose, as an ASCII keyboard writes them.
_ASCII_LETTERS = str.maketrans({"ø": "o", "ł": "l", "đ": "d", "æ": "ae", "œ": "oe", "þ": "th",
                                "ı": "i", "ð": "d"})
# German umlauts are also written with an e ("Mueller" for "Müller").
_UMLAUTS_WITH_E = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue"})
# Shorter values (initials, a sex "M", "Li" of "Li^Xu" alone) would mangle ordinary
# words and units; they are scrubbed only as part of a longer value (the whole name).
MIN_CHARS = 3
# Spellings of a value with up to this many boundaries between chunks of one kind
# each written joined or not ("jane doe" and "janedoe"); past it (long UIDs), only
# fully separated or fully joined.
_MAX_JOINS = 6
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")


@functools.lru_cache(maxsize=32)
def _spelling_table(identifiers: frozenset[str]
                    ) -> tuple[dict[tuple[str, ...], str], int, set[str]]:
    """Every spelling (a tuple of chunks) of every identifier -> the value whose hash
    replaces it; the most chunks of a spelling; the chunks a spelling starts with.
    Longer values first: a spelling two values share names the longer."""
    table: dict[tuple[str, ...], str] = {}
    for value in sorted(identifiers, key=lambda v: (-len(v), v)):
        umlauts = unicodedata.normalize("NFC", value.casefold()).translate(_UMLAUTS_WITH_E)
        for spelling in _spellings(value) | _spellings(umlauts):
            table.setdefault(spelling, value)
    return table, max(map(len, table), default=0), {spelling[0] for spelling in table}


def _spellings(value: str) -> set[tuple[str, ...]]:
    """The spellings that ``scrub`` replaces by ``value``'s hash:

    * a person name ("Doe^Jane^A"): all its components in any order, and any two or
      more of its components of MIN_CHARS or more in any order ("jane doe" of a name
      with a middle initial); its components alone are values of their own;
    * a date (YYYYMMDD, years 1850-2099): year-month-day, day-month-year and
      month-day-year, with 1- or 2-digit day and month between separators; all 8
      digits joined as YYYYMMDD, DDMMYYYY or MMDDYYYY; the English month name or its
      3-letter abbreviation in those three orders, with or without an ordinal day
      ("1st"). Two-digit years and the year alone are not matched;
    * any other value: its chunks, in order.
    Each with chunks of one kind (letters, or digits) written together or apart."""
    if "^" in value:
        return _name_spellings(value)
    chunks = _chunks(value)
    if sum(map(len, chunks)) < MIN_CHARS:
        return set()
    dates = _date_spellings(value)
    # An ID's number is also written without its leading zeros ("12345-AB" for
    # "00012345-AB"), unless that leaves a short number: alone, or a number of 1-2
    # digits ("CT 1" of "CT-0001" would scrub "CT 1.25 mm").
    unpadded = [c.lstrip("0") or "0" if c.isdigit() else c for c in chunks]
    if _is_number("".join(unpadded)) or any(
            c.isdigit() and c != u and len(u) < MIN_CHARS for c, u in zip(chunks, unpadded)):
        unpadded = chunks
    return dates | _joined(chunks) | _joined(unpadded)


def _name_spellings(value: str) -> set[tuple[str, ...]]:
    parts = [_chunks(part) for part in value.split("^")]
    parts = [p for p in parts if p][:5]  # family, given, middle, prefix, suffix
    if sum(len(c) for p in parts for c in p) < MIN_CHARS:
        return set()
    spellings = {s for order in itertools.permutations(parts) for s in _joined(_flat(order))}
    long_parts = [p for p in parts if sum(map(len, p)) >= MIN_CHARS]
    for size in range(2, len(long_parts)):
        for order in itertools.permutations(long_parts, size):
            spellings |= _joined(_flat(order))
    return spellings


def _date_spellings(value: str) -> set[tuple[str, ...]]:
    match = re.fullmatch(r"(1[89]\d\d|20\d\d)(\d\d)(\d\d)", value)
    if match is None or not (1 <= int(match[2]) <= 12 and 1 <= int(match[3]) <= 31):
        return set()
    year, mm, dd = match.groups()
    days, months = {dd, str(int(dd))}, {mm, str(int(mm))}
    spellings = {(dd + mm + year,), (mm + dd + year,)}
    for d in days:
        for m in months:
            spellings |= {(year, m, d), (d, m, year), (m, d, year)}
    names = {_MONTHS[int(mm) - 1], _MONTHS[int(mm) - 1][:3]}
    ordinal = {"1": "st", "2": "nd", "3": "rd"}.get(dd[-1], "th") \
        if dd not in ("11", "12", "13") else "th"
    for d in days:
        for day in ((d,), (d, ordinal)):
            for name in names:
                spellings |= {(*day, name, year), (name, *day, year), (year, name, *day)}
    return spellings


def _chunks(text: str) -> list[str]:
    return [_fold(chunk) for chunk in _CHUNK.findall(text)]


@functools.lru_cache(maxsize=1 << 16)  # chunks of paths repeat: '1', 'dcm', 'ct'...
def _fold(chunk: str) -> str:
    """A chunk as it is compared: without case and accents ("JOSE" is "José", in its
    composed or decomposed form), "ß" as "ss", "ø" as "o"."""
    decomposed = unicodedata.normalize("NFKD", chunk.casefold()).translate(_ASCII_LETTERS)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _flat(parts: Iterable[list[str]]) -> list[str]:
    return [chunk for part in parts for chunk in part]


def _joined(chunks: list[str]) -> set[tuple[str, ...]]:
    """``chunks`` with each boundary between two chunks of one kind kept or joined
    (letters and digits always stay apart: ``_CHUNK`` splits them in any text)."""
    joinable = [i for i in range(1, len(chunks))
                if chunks[i - 1][-1].isdigit() == chunks[i][0].isdigit()]
    choices = [set()] + [set(joinable)] if len(joinable) > _MAX_JOINS else \
        [set(c) for n in range(len(joinable) + 1)
         for c in itertools.combinations(joinable, n)]
    spellings = set()
    for joins in choices:
        spelling: list[str] = []
        for i, chunk in enumerate(chunks):
            if i in joins:
                spelling[-1] += chunk
            else:
                spelling.append(chunk)
        spellings.add(tuple(spelling))
    return spellings


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
        "scrubbed": "every text stored (table, case ids, errors, skip reasons): identifying "
                    "values in any case, order of name parts, separator, and common date "
                    "format",
    }
