"""Content checksums of a Zarr store: the manifest written at close and its verification
(``opening.verify_store`` and ``snapshot_store`` choose the format), and
the content hash formula every format shares (``content_sha256``, ``compare``).

What is checksummed: every object of the store by its key -- each chunk/shard file,
each ``zarr.json`` and the case table's ``cases.parquet`` (table_arrow.py: no Zarr node,
so only its digest here says it is the table the arrays hold; ``verify`` names it
"object cases.parquet") -- except the root ``zarr.json`` (it holds the provenance, which
differs between equal builds by design, and the manifest summary itself), the
``manifest`` array (it holds the list) and the build lock and journal (journal.py;
they are not data). The root attributes take part in the content hash instead, in
canonical JSON (sorted keys, no spaces) and without what is time- or host-dependent:
``medimg.provenance``, ``medimg.build_report.seconds`` (and ``medimg.manifest``).
The rest of the root ``zarr.json``, its consolidated metadata, is a copy of every
node's own ``zarr.json``: ``verify`` requires each copy to equal its hashed original
(consolidated.py), so readers of either read what the hash covers.

Where it is stored:

- ``attrs["medimg"]["manifest"]`` = {algorithm, content_sha256, n_objects}: what two labs
  compare; it is in the root ``zarr.json``, so it comes with opening the store.
- the root array ``manifest`` (0-d, str; shape (1,) with dims ``("manifest",)`` before
  schema 3.0, which xarray made an indexed coordinate of every DataTree node): one JSON
  document {algorithm, objects: {key: sha256}, sources: {case_id: [source sha256...]}}.
  An array rather than a loose ``manifest.json`` key because Zarr warns about every
  object it does not recognize when it lists a group (xarray, ``members()``, a store
  opened without consolidated metadata), and because an array is part of the
  hierarchy: consolidated metadata lists it and stays valid, and any Zarr client
  (zip, S3, HTTP) reads it with one request, without listing the store.

``content_sha256`` = sha256 of the canonical JSON of {algorithm, attrs (root attributes
minus the above), objects (sorted [key, sha256] pairs), sources}. Equal inputs, recipe
and versions give equal hashes on any machine, at any time, in any directory.

Snapshots (a zip of the store that verifies) are made by ``snapshot.py``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from ..errors import StoreError
from ..provenance import to_jsonable
from .consolidated import ROOT_METADATA, consolidated_entries, differences, metadata_key
from .journal import JOURNAL_DIR, LOCK_NAME
from .schema import MANIFEST  # the root array holding the manifest document

ALGORITHM = "sha256"
# Root-attribute entries that may differ between two builds of the same inputs.
VOLATILE = (("provenance",), ("build_report", "seconds"), ("manifest",))


RESTORE_HINT = "restore the store from a snapshot, or rebuild it"  # verify found damage

class ManifestError(StoreError):
    """A store without a content manifest, or a snapshot that cannot be written."""


@dataclass(frozen=True)
class Mismatch:
    where: str  # an array or group path ("" for the root), or a key outside any node
    problem: str

    def __str__(self) -> str:
        return f"{self.where or '/'}: {self.problem}"


# -- writing (at close) ----------------------------------------------------------------
def write_manifest(root: zarr.Group) -> dict[str, Any]:
    """Checksum every object of the closed store ``root``, store the manifest and add
    its summary to ``attrs["medimg"]``; call after the root attributes are final and
    before consolidating. Returns the summary."""
    if MANIFEST in root:  # left by a killed close; resume normally removes it first
        del root[MANIFEST]
    objects = zarr_objects(root.store)
    sources = sources_of(root)
    medimg = dict(root.attrs["medimg"])
    summary = {"algorithm": ALGORITHM,
               "content_sha256": content_sha256(dict(root.attrs), objects, sources),
               "n_objects": len(objects)}
    document = {"algorithm": ALGORITHM, "objects": dict(sorted(objects.items())),
                "sources": sources}
    # 0-d: no dimension, so xarray shows a variable of the root only (a dimension of its
    # own name made it a coordinate, which a DataTree repeats in every node).
    array = root.create_array(MANIFEST, shape=(), dtype=str)
    array[()] = canonical_json(document)
    array.attrs["description"] = "medimg content manifest (medimg_build/store/manifest.py)"
    medimg["manifest"] = summary
    root.attrs["medimg"] = medimg
    return summary


def content_sha256(attrs: dict[str, Any], objects: dict[str, str],
                   sources: dict[str, list[str]]) -> str:
    """The one hash two labs compare (see the module docstring)."""
    document = {"algorithm": ALGORITHM, "attrs": stable_attrs(attrs),
                "objects": sorted(objects.items()), "sources": sources}
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


def stable_attrs(attrs: dict[str, Any]) -> dict[str, Any]:
    """The root attributes without what differs between equal builds (a deep copy)."""
    attrs = json.loads(json.dumps(attrs))
    for path in VOLATILE:
        node = attrs.get("medimg")
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return attrs


def canonical_json(value: Any) -> str:
    """One text for one value: sorted keys, no spaces, NumPy values as plain ones."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=to_jsonable)


def sources_of(root) -> dict[str, list[str]]:
    """case id -> digests of its source files, from the case table's ``source_sha256``
    column (a JSON column) where the recipe recorded them; ``root``: a ``zarr.Group``
    or a format's adapter with its API."""
    if "source_sha256" not in root or "case" not in root:
        return {}
    sources = {}
    for case_id, value in zip(root["case"][:].tolist(), root["source_sha256"][:].tolist()):
        if isinstance(value, str) and value:
            value = json.loads(value)
        if value:
            sources[str(case_id)] = list(value)
    return dict(sorted(sources.items()))


# -- reading a store's objects ---------------------------------------------------------
def all_keys(store) -> list[str]:
    """Every key of the store but the build lock and journal, sorted."""
    async def collect() -> list[str]:
        # Zarr's ZipStore opens its file on the first get, not on list.
        await store._ensure_open()
        return [key async for key in store.list()]

    return sorted(key for key in sync(collect())
                  if key != LOCK_NAME and not key.startswith(JOURNAL_DIR + "/"))


def zarr_objects(store) -> dict[str, str]:
    """key -> sha256 of every object the manifest lists (the module docstring)."""
    return _digests(store, _content_keys(store))


def _content_keys(store) -> list[str]:
    return [key for key in all_keys(store)
            if key != ROOT_METADATA and not key.startswith(MANIFEST + "/")]


def read_object(store, key: str) -> bytes | None:
    buffer = sync(store.get(key, prototype=default_buffer_prototype()))
    return None if buffer is None else buffer.to_bytes()


CONCURRENT_READS = 16  # enough to hide a remote store's latency, few objects in memory


def _digests(store, keys, metadata: dict[str, bytes] | None = None) -> dict[str, str]:
    """sha256 of each object of ``keys`` that exists; with ``metadata``, the bytes of
    each zarr.json read go there too (small, and compared with the consolidated copy:
    read once)."""
    def digest(key: str, data: bytes) -> str:
        if metadata is not None and key.endswith(ROOT_METADATA):
            metadata[key] = data
        return hashlib.sha256(data).hexdigest()

    digests = _read_each(store, keys, digest)
    return {key: value for key, value in digests.items() if value is not None}


def _read_each(store, keys, transform: Callable[[str, bytes], Any]) -> dict[str, Any]:
    """key -> ``transform(key, bytes)`` of each object of ``keys`` (None if absent), read
    a few at a time concurrently (one by one, a remote store would cost a round trip per
    object) and transformed as read (only a few objects are in memory at a time)."""
    limit = asyncio.Semaphore(CONCURRENT_READS)

    async def read(key: str) -> tuple[str, Any]:
        async with limit:
            buffer = await store.get(key, prototype=default_buffer_prototype())
        return key, None if buffer is None else transform(key, buffer.to_bytes())

    async def read_all() -> list[tuple[str, Any]]:
        return await asyncio.gather(*(read(key) for key in keys))

    return dict(sync(read_all()))


def consolidated_problems(store, nodes: set[str] | None = None,
                          read: dict[str, bytes] | None = None) -> list[Mismatch]:
    """One Mismatch per node whose copy in the root zarr.json's consolidated metadata
    (what ``open_store`` reads) is not its own zarr.json (what the manifest hashes);
    ``nodes``: the group and array paths found on the store, by default those its
    listing shows; ``read``: the zarr.json objects read already, by key
    (consolidated.py)."""
    if nodes is None:
        nodes = _node_paths(set(all_keys(store)))
    root = read_object(store, ROOT_METADATA) or b"{}"
    try:
        listed = set(consolidated_entries(root) or {})
    except ValueError:
        return [Mismatch("", f"metadata {ROOT_METADATA} is not JSON")]
    keys = {node: metadata_key(node) for node in sorted((set(nodes) | listed) - {""})}
    own = dict(read or {})
    own.update(_read_each(store, [k for k in keys.values() if k not in own],
                          lambda key, data: data))
    return [Mismatch(node, problem) for node, problem in
            differences(root, {node: own.get(key) for node, key in keys.items()})]


def open_root(store, location: str) -> zarr.Group:
    """The root group of a store verify or snapshot reads; StoreError naming the file
    when there is none or its metadata is damaged."""
    try:
        # Its own metadata, not the consolidated copy: that copy is what verify checks.
        return zarr.open_group(store, mode="r", zarr_format=3, use_consolidated=False)
    # JSONDecodeError is a ValueError; RecursionError: JSON nested past Python's stack.
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError, KeyError,
            TypeError, RecursionError) as err:
        if read_object(store, ROOT_METADATA) is None:
            raise ManifestError(location, f"is not a store (no {ROOT_METADATA} at its top)",
                                hint="give a store directory, a .zip snapshot or an HDF5 "
                                     "file built by medimg-build") from None
        raise ManifestError(_key_location(location, ROOT_METADATA),
                            f"the store's root metadata is damaged ({_first_line(err)})",
                            hint=RESTORE_HINT) from None


def read_manifest(root: zarr.Group, location: str) -> dict[str, Any]:
    summary = _manifest_summary(root, location)
    try:
        # 0-d, or one element in stores before schema 3.0
        document = json.loads(str(np.asarray(root[MANIFEST][...]).reshape(-1)[0]))
        if not isinstance(document.get("objects"), dict):
            raise ValueError("no 'objects' mapping")
    except (KeyError, IndexError, ValueError, TypeError, AttributeError) as err:
        # The root attributes say a manifest was written: it was deleted or damaged.
        raise ManifestError(
            _key_location(location, MANIFEST),
            f"the content manifest is missing or damaged ({_first_line(err)}); the root "
            f"{ROOT_METADATA} records content sha256 {summary.get('content_sha256')}",
            hint=RESTORE_HINT) from None
    return {"summary": summary, **document}


def _manifest_summary(root: zarr.Group, location: str) -> dict[str, Any]:
    """The root attributes' record of the manifest (its content sha256); a
    ManifestError if there is none or it is not a mapping (an edited root zarr.json)."""
    medimg = root.attrs.get("medimg")
    summary = medimg.get("manifest") if isinstance(medimg, dict) else None
    if isinstance(summary, dict) and summary:
        return summary
    refuse_unfinished(medimg, location, "--resume")
    if medimg is None or (summary is None and MANIFEST not in root):
        raise ManifestError(location, "has no content manifest",
                            hint="built by an older medimg-build, or an HDF5 file; rebuild it")
    damaged = "'medimg'" if not isinstance(medimg, dict) else "'medimg.manifest'"
    raise ManifestError(_key_location(location, ROOT_METADATA),
                        f"the root attribute {damaged} is missing or damaged, so the "
                        "recorded content sha256 is unknown",
                        hint=RESTORE_HINT)


def refuse_unfinished(medimg: Any, location: str, again: str) -> None:
    """A ManifestError if the root attributes ``medimg`` are those of a build that has
    not finished (still running, or killed); ``again``: how to finish it."""
    if isinstance(medimg, dict) and medimg.get("finished") is False:
        raise ManifestError(location, "the build that writes this store has not finished "
                            "(the content manifest is written at its end)",
                            hint=f"wait for it to end, or if it was killed, run it again "
                                 f"with {again}")


def _key_location(location: str, key: str) -> str:
    """A key of the store, named as the user would find it."""
    return f"{location.rstrip('/')}/{key}" if not location.endswith(".zip") \
        else f"{location} ({key})"


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:200]}" if text else type(err).__name__


# -- verifying -------------------------------------------------------------------------
def verify_zarr(location: str, storage_options: dict | None = None) -> list[Mismatch]:
    """``opening.verify_store`` of a Zarr store (directory, .zip snapshot or URL): one
    Mismatch per changed, missing or extra object, and one if the root attributes no
    longer give the recorded content hash. [] when intact. Extra objects are found
    where the store can be listed (not over plain HTTP)."""
    from .reader import zarr_store

    store = zarr_store(location, storage_options)
    root = open_root(store, location)
    manifest = read_manifest(root, location)
    recorded: dict[str, str] = manifest["objects"]
    # The recorded keys are read whether or not the store lists them: a plain HTTP
    # server cannot list, and there only extra objects go unnoticed.
    metadata: dict[str, bytes] = {}
    actual = _digests(store, sorted(set(_content_keys(store)) | set(recorded)), metadata)
    nodes = _node_paths(set(recorded) | set(actual))
    problems = compare(recorded, actual, lambda key: _locate(key, nodes))
    problems += consolidated_problems(store, nodes, metadata)
    if not problems:
        digest = content_sha256(dict(root.attrs), actual, sources_of(root))
        problems += hash_problem(digest, manifest["summary"]["content_sha256"])
    return problems


def compare(recorded: dict[str, str], actual: dict[str, str],
            locate: Callable[[str], tuple[str, str]]) -> list[Mismatch]:
    """One Mismatch per changed, missing or extra object; ``locate(key)`` names it as
    (node path, what)."""
    problems = []
    for key in sorted(set(recorded) | set(actual)):
        if key not in actual:
            problem = "missing"
        elif key not in recorded:
            problem = "extra (not in the manifest)"
        elif actual[key] != recorded[key]:
            problem = f"{ALGORITHM} differs"
        else:
            continue
        where, what = locate(key)
        problems.append(Mismatch(where, f"{what} {problem}"))
    return problems


def hash_problem(digest: str, recorded: str) -> list[Mismatch]:
    """[] when the recomputed content hash is the recorded one (every object matched,
    so only the root attributes can differ)."""
    if digest == recorded:
        return []
    return [Mismatch("", f"root attributes changed: content sha256 {digest} is not the "
                         f"recorded {recorded}")]


def zarr_summary(location: str, storage_options: dict | None = None) -> dict[str, Any]:
    """The manifest summary of a Zarr store (after ``verify_zarr`` found nothing)."""
    from .reader import zarr_store

    root = open_root(zarr_store(location, storage_options), location)
    return read_manifest(root, location)["summary"]


def _node_paths(keys: set[str]) -> set[str]:
    """Paths of every group and array ("" = root), from their zarr.json keys."""
    return {key[:-len(ROOT_METADATA)].rstrip("/") for key in keys
            if key == ROOT_METADATA or key.endswith("/" + ROOT_METADATA)} | {""}


def _locate(key: str, nodes: set[str]) -> tuple[str, str]:
    """(node path, "chunk c/0/0" or "metadata zarr.json") for an object key: the
    deepest node whose path prefixes the key (a case id may itself be "c")."""
    if key == ROOT_METADATA or key.endswith("/" + ROOT_METADATA):
        return key[:-len(ROOT_METADATA)].rstrip("/"), f"metadata {ROOT_METADATA}"
    owner = max((n for n in nodes if not n or key.startswith(n + "/")), key=len)
    rest = key[len(owner) + 1:] if owner else key
    return owner, (f"chunk {rest}" if rest.startswith("c/") or rest == "c" else f"object {rest}")
