"""What each harmonization step did, in a form that can be stored and undone."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def to_jsonable(value: Any) -> Any:
    """Numpy scalars and arrays, tuples and paths into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


@dataclass(frozen=True)
class AppliedStep:
    """One step applied to an image: its name and JSON-serializable parameters."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": to_jsonable(self.params)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
