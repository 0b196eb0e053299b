"""The data files a MetaImage (.mha/.mhd) or NRRD (.nrrd/.nhdr) header names, read from
the header by us before SimpleITK opens anything, so that a header cannot send the
reader outside its folder and ``source_files`` lists the files really read.

**Rule:** every data file lies in the header's own folder or below it. The reader knows
nothing of a build's source folder, so this is the rule it can check: a header inside
the source folder then stays inside it. A name is checked as text by the one rule of
``recipe/paths.outside_problem`` (absolute, ``~``, a drive or a ``..`` component is
refused); a symbolic link inside the folder is followed, as everywhere.

MetaIO (ITK's ``metaImage.cxx``, ``MetaImage::ReadStream``) reads ``Key = Value`` lines
(``=`` or ``:``; keys compared with their case) until ``ElementDataFile``, always the
last field. Its value is one of:

- ``LOCAL`` (or ``Local``, ``local``): the data follows the header in the same file;
- ``LIST [n]``: the next lines of the header file name one file each (MetaIO reads
  as many as the axes from ``n`` on hold slices; every line is checked here);
- a printf pattern with ``%`` and up to three numbers ``min max step`` (defaults 1,
  the last axis's size, 1): one file per number, ``pattern % i``;
- one file name (ITK also tries it with ``.gz`` and ``.Z`` appended).

NRRD (teem's ``nrrd`` format, NRRD0004+) says ``data file:`` (or ``datafile:``) as one
name, ``LIST [subdim]`` followed by one name per line to the end of the header file,
or ``<pattern> <min> <max> <step> [<subdim>]``.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import ImageReadError
from ..recipe.paths import outside_problem

# A real header is a few hundred bytes (a LIST of slice names a few kilobytes per 100
# slices); nothing past this is read as header.
HEADER_BYTES = 1 << 20
# A pattern or a LIST naming more files than this is refused before any is listed.
MAX_DATA_FILES = 100_000
_LOCAL = ("LOCAL", "Local", "local")
_CUT = "\0cut"  # marks a header longer than HEADER_BYTES (no text line holds a NUL)
# One integer conversion (what MetaIO and teem give the slice number to); a '%s' or two
# conversions would make the C library read memory it was not given.
_INTEGER = r"%[-+ 0#]*\d*(?:\.\d*)?[diuoxX]"
_ONE_INTEGER = re.compile(rf"^(?:[^%]|%%)*{_INTEGER}(?:[^%]|%%)*$")
_HINT = ("a header's data files must lie in its own folder or below it: move them "
         "there, or put a symbolic link to them there")


def data_files(path: Path) -> list[Path]:
    """The existing data files ``path``'s header names besides itself (empty for an
    image in one file); ImageReadError when a name could lead outside its folder."""
    suffix = path.suffix.lower()
    if suffix in (".mha", ".mhd"):
        names = _metaimage_names(path)
    elif suffix in (".nrrd", ".nhdr"):
        names = _nrrd_names(path)
    else:
        return []
    for name in names:
        if (problem := outside_problem(name)) is not None:
            field = "ElementDataFile" if suffix in (".mha", ".mhd") else "data file"
            raise ImageReadError(path, f"{field} {name!r} {problem}", hint=_HINT)
    return [found for name in names if (found := _existing(path, name, suffix)) is not None]


def _existing(header: Path, name: str, suffix: str) -> Path | None:
    candidates = [name] + ([name + ".gz", name + ".Z"] if suffix in (".mha", ".mhd") else [])
    return next((header.parent / c for c in candidates if (header.parent / c).is_file()), None)


def _header_lines(path: Path) -> list[str]:
    """The lines of the first HEADER_BYTES of ``path``, and a last ``_CUT`` line when
    the file goes on: a LIST cut short by the limit is refused, not half checked."""
    with open(path, "rb") as handle:
        head = handle.read(HEADER_BYTES + 1)
    lines = head[:HEADER_BYTES].decode("latin-1").split("\n")
    return lines if len(head) <= HEADER_BYTES else [*lines, _CUT]


def _metaimage_names(path: Path) -> list[str]:
    lines = _header_lines(path)
    fields: dict[str, str] = {}
    for number, line in enumerate(lines):
        key, separator, value = _split_field(line)
        if not separator:
            continue
        fields[key] = value  # a repeated key: the last one counts, as in MetaIO
        if key == "ElementDataFile":
            return _metaimage_forms(path, value, fields, lines[number + 1:])
    raise ImageReadError(path, f"no ElementDataFile line in its first {HEADER_BYTES} bytes",
                         hint="a MetaImage header ends with ElementDataFile = <data file>")


def _split_field(line: str) -> tuple[str, str, str]:
    """(key, separator, value) as MetaIO reads a header line: the key up to the first
    '=' or ':', the value after any run of separators and blanks, both stripped."""
    match = re.match(r"\s*([^=:\r]*?)\s*([=:])[=:\s]*(.*)$", line)
    if match is None:
        return line.strip(), "", ""
    return match.group(1), match.group(2), match.group(3).rstrip()


def _metaimage_forms(path: Path, value: str, fields: dict[str, str],
                     following: list[str]) -> list[str]:
    if value in _LOCAL:
        return []
    if value.startswith("LIST"):
        return _listed(path, following)
    sizes = _integers(fields.get("DimSize", ""))
    sizes = sizes[:_integer(fields.get("NDims", ""), len(sizes))]
    if "%" in value:
        return _pattern_names(path, value, sizes[-1] if sizes else 1)
    return [value]


def _pattern_names(path: Path, value: str, last_size: int) -> list[str]:
    """MetaIO's slice pattern: ``pattern [min [max [step]]]``, or with five words or
    more a pattern with spaces followed by exactly min max step."""
    words = value.split()
    if len(words) >= 5:
        if not all(w.isdigit() for w in words[-3:]):
            raise ImageReadError(path, f"ElementDataFile {value!r}: the last three words of "
                                 "a file pattern must be numbers", hint=_HINT)
        pattern = " ".join(words[:-3])
        first, last, step = (int(w) for w in words[-3:])
    else:
        pattern, first, last, step = words[0], 1, last_size, 1
        if len(words) >= 2:
            first = int(_number(words[1]))
            last = first + last_size - 1
        if len(words) >= 3:
            last = int(_number(words[2]))
            step = int((last - first) / last_size) if last_size else 0
        if len(words) >= 4:
            step = int(_number(words[3]))
    if step <= 0:
        raise ImageReadError(path, f"ElementDataFile {value!r}: file pattern step {step} "
                             "is not positive", hint="the pattern's step must be 1 or more")
    if 1 + (last - first) // step > last_size:  # MetaIO reads no more than the last axis
        last = (last_size - 1) * step + first
    return _formatted(path, pattern, range(first, last + 1, step), "ElementDataFile")


def _nrrd_names(path: Path) -> list[str]:
    lines = _header_lines(path)
    for number, line in enumerate(lines[1:], start=1):
        if not line.strip():
            break  # the blank line ends a NRRD header
        if line.startswith("#") or ":=" in line:
            continue  # comments and key/value pairs
        key, _, value = line.partition(":")
        if key.strip().lower() not in ("data file", "datafile"):
            continue
        value = value.strip()
        words = value.split()
        if words and words[0] == "LIST":
            return _listed(path, lines[number + 1:])
        if len(words) in (4, 5) and "%" in words[0] and \
                all(re.fullmatch(r"-?\d+", w) for w in words[1:4]):
            first, last, step = (int(w) for w in words[1:4])
            if step == 0:
                raise ImageReadError(path, f"data file {value!r}: step 0",
                                     hint="a NRRD file pattern's step is not 0")
            numbers = range(first, last + (1 if step > 0 else -1), step)
            return _formatted(path, words[0], numbers, "data file")
        return [value]
    return []


def _listed(path: Path, lines: list[str]) -> list[str]:
    """The names of a LIST form: every line to the end of the header file, each without
    its trailing blanks and unprintable bytes, as MetaIO reads them."""
    if lines and lines[-1] == _CUT:
        raise ImageReadError(path, f"lists data files past its first {HEADER_BYTES} bytes",
                             hint="is this a real image header?")
    names = [name for line in lines if (name := re.sub(r"[^\x21-\x7e]+$", "", line))]
    if len(names) > MAX_DATA_FILES:
        raise ImageReadError(path, f"lists {len(names)} data files, more than "
                             f"{MAX_DATA_FILES}", hint="is this a real image header?")
    return names


def _formatted(path: Path, pattern: str, numbers: range, field: str) -> list[str]:
    if not _ONE_INTEGER.match(pattern):
        raise ImageReadError(path, f"{field} pattern {pattern!r} is not a name with one "
                             "integer conversion (like %03d)", hint=_HINT)
    if len(numbers) > MAX_DATA_FILES:
        raise ImageReadError(path, f"{field} pattern {pattern!r} names {len(numbers)} "
                             f"files, more than {MAX_DATA_FILES}",
                             hint="is this a real image header?")
    # C prints nothing for 0 with precision 0 ('%.0d'), Python prints '0': the pattern
    # is checked with its conversion empty too, so that '..%.0d' cannot become '..'.
    # Digits, signs and hex letters cannot make '..' or '/': other names are checked
    # as Python fills them.
    names = [pattern % n for n in numbers]
    bare = re.sub(rf"%%|{_INTEGER}", lambda m: "%" if m.group() == "%%" else "", pattern)
    if (problem := outside_problem(bare)) is not None and \
            not any(outside_problem(name) for name in names):  # else: refused by name
        raise ImageReadError(path, f"{field} pattern {pattern!r} {problem} when its number "
                             "prints as nothing", hint=_HINT)
    return names


def _number(text: str) -> float:
    """C's atof: the leading number of ``text``, 0 when there is none."""
    match = re.match(r"\s*[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", text)
    return float(match.group(0)) if match else 0.0


def _integers(text: str) -> list[int]:
    return [int(_number(word)) for word in text.split()]


def _integer(text: str, default: int) -> int:
    return int(_number(text)) if text.strip() else default
