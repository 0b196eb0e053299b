"""What became of one case of a build, as the build loop keeps it: written, or failed.

Both travel between Dask workers and the build process (frozen, picklable, no pixels)
and both are what a store writer gives back, so the build loop never looks inside a
case or an error message. They live in ``store/`` beside the journal whose record a
``CaseWritten`` carries: ``recipe/`` imports ``store/``, never the reverse.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from ..case import Case
from ..errors import MedimgError
from .journal import annotation_from, case_record


@dataclass(frozen=True)
class CaseWritten:
    """A case the store holds. ``record`` is its journal record (``journal.case_record``
    as JSON reads it back): the table row, labels, boxes, landmarks, source files and
    the image ``template`` (shape, dtype, channels), never the pixels. A resumed build
    reads the journal into the same type (``recovered``)."""

    index: int
    record: dict[str, Any]

    @property
    def case_id(self) -> str:
        return self.record["case_id"]

    @property
    def row(self) -> dict[str, Any]:
        return self.record["row"]

    @property
    def template(self) -> dict[str, Any] | None:
        return self.record.get("template")

    def labels(self) -> dict[str, Any]:
        """The labels as the case gave them (ints and int lists, as JSON keeps them):
        not made int8 here, so that the writer's check refuses what it would refuse in
        the case itself (a vector of floats, say)."""
        return dict(self.record["labels"])

    def annotation(self, kind: str):
        """The case's ``boxes`` or ``landmarks`` (Boxes, Landmarks or None)."""
        return annotation_from(kind, self.record.get(kind))

    def with_record(self, **fields: Any) -> CaseWritten:
        return replace(self, record={**self.record, **fields})


@dataclass(frozen=True)
class CaseFailed:
    """A case the build could not make or the store refused: ``error`` keeps its path
    apart from its text (``MedimgError.given_path``), so that what the store keeps can
    name the file relative to the source folder without searching the message."""

    index: int
    case_id: str
    error: MedimgError

    @property
    def message(self) -> str:
        """The error as the console shows it."""
        return str(self.error)

    def __reduce__(self):
        # Distributed installs tblib, which pickles every exception with its cause,
        # context and traceback: a library's error behind a CaseError that does not
        # pickle would end the build, one quoting megabytes would ship them. Only the
        # error's own parts cross (``MedimgError.__reduce__``).
        rebuild, parts = self.error.__reduce__()
        return _case_failed, (self.index, self.case_id, rebuild, parts)


def _case_failed(index: int, case_id: str, rebuild, parts: tuple) -> CaseFailed:
    return CaseFailed(index, case_id, rebuild(*parts))


def case_written(index: int, case: Case) -> CaseWritten:
    """``case`` as the store will hold it, before its labels are checked (the writer
    puts the checked ones in). Through JSON, so that it equals what a resume reads."""
    record = case_record(index, case, case.labels)
    record["template"] = template_record(case)
    return CaseWritten(index, json.loads(json.dumps(record)))


def template_record(case: Case) -> dict[str, Any]:
    """What every case of a store must share with the first (``base.ImageTemplate``)."""
    image, mask = case.image, case.mask
    return {"spatial_ndim": image.spatial_ndim, "channel_axis": image.has_channels,
            "n_channels": image.n_channels, "dtype": str(image.array.dtype),
            "mask_dtype": None if mask is None else str(mask.array.dtype),
            "spatial_shape": [int(n) for n in image.spatial_shape]}
