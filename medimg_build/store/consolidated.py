"""The consolidated metadata of a Zarr store against each node's own ``zarr.json``.

``open_store`` reads every group and array through their copies in the root
``zarr.json`` (one read for the whole hierarchy); the manifest hashes, and ``validate``
checks, each node's own ``zarr.json``. Were the two allowed to differ, a reader could
see geometry that nothing checked (a case's affine edited in the root copy only). So
``verify`` and ``validate`` require them equal, node by node: what the content hash
covers is then what every reader reads.
"""

from __future__ import annotations

import json
from typing import Any

CONSOLIDATED = "consolidated_metadata"
ROOT_METADATA = "zarr.json"


def metadata_key(node: str) -> str:
    """The key of a node's own metadata ("" is the root)."""
    return f"{node}/{ROOT_METADATA}" if node else ROOT_METADATA


def consolidated_entries(root_metadata: bytes) -> dict[str, Any] | None:
    """node path -> its metadata as the root ``zarr.json`` consolidates it; None if the
    root holds no consolidated metadata. ValueError if the root is not JSON."""
    consolidated = json.loads(root_metadata).get(CONSOLIDATED)
    if not isinstance(consolidated, dict):
        return None
    entries = consolidated.get("metadata")
    return entries if isinstance(entries, dict) else {}


def differences(root_metadata: bytes,
                own_metadata: dict[str, bytes | None]) -> list[tuple[str, str]]:
    """(node, problem) for each node whose consolidated copy is not its own
    ``zarr.json``. ``own_metadata``: node path -> its zarr.json bytes (None: absent),
    for the nodes of the store and those the consolidated metadata lists."""
    entries = consolidated_entries(root_metadata)
    if entries is None:
        return [("", f"{ROOT_METADATA} has no consolidated metadata (every build writes it)")]
    found = []
    for node in sorted(set(entries) | {n for n, own in own_metadata.items() if own}):
        own = own_metadata.get(node)
        if node not in entries:
            found.append((node, f"missing from the consolidated metadata in the root "
                                f"{ROOT_METADATA}"))
        elif own is None:
            found.append((node, f"listed in the consolidated metadata of the root "
                                f"{ROOT_METADATA}, but its own {ROOT_METADATA} is absent"))
        elif _comparable(entries[node]) != _comparable(_parsed(own)):
            found.append((node, f"its copy in the consolidated metadata of the root "
                                f"{ROOT_METADATA} differs from its own {ROOT_METADATA}"))
    return found


def _parsed(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return None  # not JSON: differs from any consolidated copy


def _comparable(metadata: Any) -> Any:
    """A node's metadata but its own consolidated metadata: the root's copy of a group
    holds an empty stub there (the root flattens the whole hierarchy), and a copy a
    group's zarr.json may hold for its subtree (Zarr writes one on editing a group it
    opened through the root's copy) is in that zarr.json, which the manifest hashes."""
    if not isinstance(metadata, dict):
        return metadata
    return {k: v for k, v in metadata.items() if k != CONSOLIDATED}
