"""What a test needs but a user's machine may lack (the shared data, dcm2niix, a
browser): the test skips there, and fails in CI, which sets the variable to 1."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def missing(message: str, required_by: str = "MEDIMG_REQUIRE_SHARED_DATA") -> NoReturn:
    if os.environ.get(required_by) == "1":
        pytest.fail(message)
    pytest.skip(message)
