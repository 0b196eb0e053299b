"""Errors a user can cause: one line naming the file, the problem and the fix."""

from __future__ import annotations

import re
from os import PathLike

# A problem quotes values from the input (a cell, a header field, a YAML node); a hostile
# one can be megabytes long, and the message goes into a terminal and a table cell.
MAX_PROBLEM_CHARS = 600
# Control characters (a terminal's escape sequences, NUL, line breaks) and the Unicode
# direction overrides that make a name display as another ("Trojan source").
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


class MedimgError(Exception):
    """Base class of every error this package raises on purpose.

    The message is one line: ``<path>: <problem> (<hint>)``, so that the CLI can print
    it as is and a build report can store it in one cell.
    """

    def __init__(self, path: str | PathLike | None, problem: str, hint: str | None = None):
        self._set(path, one_line(str(problem)), hint)

    def _set(self, path: str | PathLike | None, problem: str, hint: str | None) -> None:
        # The path as given, apart from the text: a build stores it relative to the
        # source folder (``recipe.paths.stored_path``) without searching the message.
        self.given_path = path
        self.path = None if path is None else printable(str(path))
        self.problem = problem
        self.hint = hint
        super().__init__(self._format())

    def __reduce__(self):
        # Exceptions pickle as ``cls(*args)``, and args holds only the message: rebuilt
        # from its parts instead (the problem as cut), so it crosses to and from Dask
        # workers.
        return _unpickled, (type(self), self.given_path, self.problem, self.hint)

    def _format(self) -> str:
        return located(self.path, self.detail())

    def detail(self) -> str:
        """The message without its path: the problem and the hint."""
        fix = f" ({self.hint})" if self.hint else ""
        return f"{self.problem}{fix}"


def _unpickled(cls: type[MedimgError], path: str | PathLike | None, problem: str,
               hint: str | None) -> MedimgError:
    error = cls.__new__(cls)
    error._set(path, problem, hint)
    return error


def located(path: str | None, detail: str) -> str:
    """An error's message: ``detail`` (problem and hint) after the path it is about."""
    return f"{path}: {detail}" if path else detail


class ImageReadError(MedimgError):
    """A file or folder could not be read as an image (missing, corrupt, unsupported)."""


class DicomSeriesError(ImageReadError):
    """DICOM files that do not form one clean volume (gaps, mixed series, tilt...)."""


class GeometryError(MedimgError):
    """Images whose geometry does not fit (a mask on another grid, a bad spacing)."""


class RecipeError(MedimgError):
    """A recipe that does not validate, or that does not fit its source folder."""


class StoreError(MedimgError):
    """A store that is missing, incomplete or not a medimg store."""


class LabelError(MedimgError):
    """Labels that do not fit the vocabulary or the image they describe."""


class CaseError(MedimgError):
    """A case that could not be built for a reason no other error names: a library's
    unexpected error on its file, memory run out, its Dask worker dead."""


class MedimgWarning(UserWarning):
    """Something a user should know that does not stop the work; the CLI prints it as
    one line (``medimg-build: warning: ...``)."""


def printable(text: str) -> str:
    """``text`` with each unprintable character written as its escape (``\\x1b``): file
    names and cells come from strangers, and an error goes to a terminal."""
    return _UNPRINTABLE.sub(lambda m: m.group().encode("unicode_escape").decode(), text)


def one_line(text: str, limit: int = MAX_PROBLEM_CHARS) -> str:
    """``text`` as one printable line (whitespace runs as one space) of at most about
    ``limit`` characters."""
    line = printable(" ".join(text.split()))
    if len(line) <= limit:
        return line
    return f"{line[:limit]}... ({len(line) - limit:,} more characters not shown)"


def shown_items(items, limit: int = 10, separator: str = ", ") -> str:
    """The first ``limit`` of ``items`` (as text) joined by ``separator``, and how many
    more there are: a list cut short in a message always says so."""
    texts = [str(item) for item in items]
    rest = len(texts) - limit
    return separator.join(texts[:limit]) + (f"{separator}... ({rest} more)" if rest > 0 else "")
