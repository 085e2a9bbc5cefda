"""API keys: the admin key from settings, tenant keys stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool

KEY_PREFIX = "bk_"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the admin (any tenant) or one tenant."""

    tenant_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.tenant_id is None

    def may_act_for(self, tenant_id: object) -> bool:
        return self.is_admin or tenant_id == self.tenant_id


ADMIN = Principal(tenant_id=None)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_api_key(conn: psycopg.Connection, tenant_id: str) -> tuple[str, str]:
    """Create a tenant key; return (key_id, key). Only the key's hash is stored."""
    key_id = "key_" + secrets.token_hex(6)
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    conn.execute(
        "insert into app.api_keys (key_id, key_sha256, tenant_id) values (%s, %s, %s)",
        (key_id, hash_key(key), tenant_id),
    )
    return key_id, key


class KeyResolver:
    """Resolves bearer keys to principals, caching tenant keys for a short time."""

    def __init__(self, pool: ConnectionPool, admin_key: str | None, ttl: float = 30.0) -> None:
        self._pool = pool
        self._admin_key = admin_key
        self._ttl = ttl
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def cached(self, key: str) -> tuple[bool, Principal | None]:
        """(known, principal) from memory alone: the hot path never leaves the event loop."""
        if self._admin_key and hmac.compare_digest(key.encode(), self._admin_key.encode()):
            return True, ADMIN
        with self._lock:
            cached = self._cache.get(hash_key(key))
        if cached is not None and time.monotonic() - cached[0] < self._ttl:
            return True, cached[1]
        return False, None

    def resolve(self, key: str) -> Principal | None:
        known, principal = self.cached(key)
        if known:
            return principal
        digest = hash_key(key)
        now = time.monotonic()
        with self._pool.connection() as conn:
            row = conn.execute(
                "select tenant_id from app.api_keys where key_sha256 = %s and revoked_at is null",
                (digest,),
            ).fetchone()
        principal = Principal(tenant_id=row[0]) if row else None
        with self._lock:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[digest] = (now, principal)
        return principal
