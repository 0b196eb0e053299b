"""Patient identifiers never reach a store: they are replaced by a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
import os

KEY_ENV = "MEDIMG_PSEUDONYM_KEY"
# Without a secret key, the hash still hides IDs from casual reading but can be
# reversed by trying candidate IDs; the store records which case applies.
DEFAULT_KEY = "medimg-build-default-key"


def pseudonym_key(explicit: str | None = None) -> tuple[bytes, bool]:
    """The key and whether it is secret (given by the user)."""
    key = explicit or os.environ.get(KEY_ENV)
    return (key or DEFAULT_KEY).encode(), bool(key)


def pseudonymize(patient_id: str, key: bytes) -> str:
    return hmac.new(key, patient_id.encode(), hashlib.sha256).hexdigest()[:16]
