"""Test fixtures: the real reference data in ../shared/data, and generated images.

Tests that need the reference data skip when it is absent (a fresh clone), except
when MEDIMG_REQUIRE_SHARED_DATA=1 (CI), where its absence is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# CLI builds in tests run in-process (no Dask cluster per test); the tests of parallel
# builds ask for their workers explicitly.
os.environ.setdefault("MEDIMG_WORKERS", "1")


def shared_data_dir() -> Path:
    configured = os.environ.get("MEDIMG_SHARED_DATA")
    return Path(configured) if configured else PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = shared_data_dir()
    if not root.is_dir():
        message = f"reference data not found at {root} (set MEDIMG_SHARED_DATA)"
        if os.environ.get("MEDIMG_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return root
