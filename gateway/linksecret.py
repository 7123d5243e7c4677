"""A link-signing secret made at first use and kept in the store (portal, survey and file
links): links stay valid across restarts, and instances started together agree on it."""

from __future__ import annotations

import secrets

from gateway.store.base import KeyValueStore


async def kept_secret(store: KeyValueStore, namespace: str, key: str) -> bytes:
    """The secret kept under `namespace`/`key`; a new one is stored only if none is
    (`kv_setdefault`: of two instances making one at once, both get the one that won)."""
    return (await store.kv_setdefault(namespace, key, secrets.token_urlsafe(32))).encode()
