"""What takes a store's location: ``open_store``, ``open_tree``, ``verify_store``,
``verified_summary`` and ``snapshot_store``. Each asks ``formats.pick_format`` which
format the location is, then that format (``formats/``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import StoreError
from .formats import pick_format
from .manifest import ManifestError, Mismatch
from .reader import MedimgStore, NotThisFormat
from .tree import GroupView


@contextmanager
def credentials_needed(location: str) -> Iterator[None]:
    """botocore's NoCredentialsError (s3fs passes it on unchanged, from deep inside its
    request signing) as one line naming the store and the ways to give credentials."""
    try:
        yield
    except Exception as error:
        from botocore.exceptions import NoCredentialsError  # s3fs's, a dependency

        if not isinstance(error, NoCredentialsError):
            raise
        raise StoreError(location, "no S3 credentials were found to read it",
                         hint="set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or "
                         "AWS_PROFILE; for a public bucket, pass --storage-options "
                         "'{\"anon\": true}'") from None


def open_store(path_or_url: str | os.PathLike,
               storage_options: dict | None = None) -> MedimgStore:
    """Open a store: a local directory, a ``.zip``, an HDF5 file (recognized by its
    signature), or any fsspec URL (s3://, https://, ...) with its ``storage_options``."""
    location = os.fspath(path_or_url)
    with credentials_needed(location):
        return _open_store(location, storage_options)


def _open_store(location: str, storage_options: dict | None) -> MedimgStore:
    # A URL is tried as Zarr first: asking whether it is another format costs requests
    # that a Zarr store (the common case) never needs.
    store_format = pick_format(location, storage_options=storage_options, probe_urls=False)
    try:
        return store_format.open_reader(location, storage_options)
    except NotThisFormat:
        other = pick_format(location, storage_options=storage_options)
        if other is store_format:
            raise
    return other.open_reader(location, storage_options)


@contextmanager
def open_tree(path_or_url: str | os.PathLike,
              storage_options: dict | None = None) -> Iterator[GroupView]:
    """The root of the store at ``path_or_url`` as it is on disk (for Zarr, not through
    its consolidated metadata, unless it cannot be listed), closed on exit."""
    location = os.fspath(path_or_url)
    with credentials_needed(location), pick_format(
            location, storage_options=storage_options).open(location, "r",
                                                            storage_options) as root:
        yield GroupView(root)


def verify_store(path_or_url: str | os.PathLike,
                 storage_options: dict | None = None) -> list[Mismatch]:
    """Re-read every object of a store (directory, .zip snapshot, HDF5 file or URL) and
    compare it with the manifest: one Mismatch per changed, missing or extra object,
    and one if the root attributes no longer give the recorded content hash. [] when
    intact."""
    location = os.fspath(path_or_url)
    with credentials_needed(location):
        return pick_format(location, storage_options=storage_options).verify(
            location, storage_options)


def verified_summary(path_or_url: str | os.PathLike,
                     storage_options: dict | None = None) -> dict[str, Any]:
    """The manifest summary of a store (after ``verify_store`` found nothing)."""
    location = os.fspath(path_or_url)
    with credentials_needed(location):
        return pick_format(location, storage_options=storage_options).manifest_summary(
            location, storage_options)


def snapshot_store(path_or_url: str | os.PathLike, out: str | os.PathLike,
                   storage_options: dict | None = None) -> int:
    """Pack a finished store with a manifest into the zip ``out`` (snapshot.py);
    returns the number of entries."""
    location, out = os.fspath(path_or_url), os.fspath(out)
    if not out.endswith(".zip"):
        raise ManifestError(out, "a snapshot must be a .zip file", hint="e.g. ds.zarr.zip")
    if os.path.isdir(out):
        raise ManifestError(out, "is a directory, not a file name for the snapshot",
                            hint="give OUT.zip the path of a new .zip file")
    with credentials_needed(location):
        return pick_format(location, storage_options=storage_options).snapshot(
            location, out, storage_options)
