"""Test fixtures: the real reference data in ../shared/data, and generated images.

Tests that need the reference data skip when it is absent (a fresh clone), except
when MEDIMG_REQUIRE_SHARED_DATA=1 (CI), where its absence is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medimg_build.resources import find_shared_data


# CLI builds in tests run in-process (no Dask cluster per test); the tests of parallel
# builds ask for their workers explicitly.
os.environ.setdefault("MEDIMG_WORKERS", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = find_shared_data()
    if root is None:
        message = "reference data not found beside the project (set MEDIMG_SHARED_DATA)"
        if os.environ.get("MEDIMG_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return root
