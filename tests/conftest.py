"""Test fixtures: the real reference data in ../shared/data, and generated images.

Tests that need the reference data skip when it is absent (a fresh clone), except
when MEDIMG_REQUIRE_SHARED_DATA=1 (CI), where its absence is a failure.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medimg_build.resources import find_shared_data
from required import missing
from servers import http, s3  # noqa: F401  (fixtures: local S3 and HTTP servers)


# CLI builds in tests run in-process (no Dask cluster per test); the tests of parallel
# builds ask for their workers explicitly.
os.environ.setdefault("MEDIMG_WORKERS", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    root = find_shared_data()
    if root is None:
        missing("reference data not found beside the project (set MEDIMG_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def reference_stores(tmp_path_factory, shared_data):
    """A volumes store of the real CT with its segmentation and a stack store of X-rays
    (tests/reference_stores.py), built once."""
    from reference_stores import build_reference_stores

    return build_reference_stores(tmp_path_factory.mktemp("reference"), shared_data)
