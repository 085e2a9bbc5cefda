"""API keys: the admin key from settings, tenant keys stored only as SHA-256 hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

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
    """Resolves bearer keys to principals, remembering each answer for ``ttl`` seconds.

    The ttl is what a revocation waits for on every worker (CONTRACT: within a second).
    Known keys and unknown ones are remembered apart: a flood of random keys fills only
    its own bounded memory, oldest first, and never evicts a key that works."""

    def __init__(
        self,
        pool: ConnectionPool,
        admin_key: str | None,
        ttl: float = 1.0,
        max_unknown: int = 10_000,
    ) -> None:
        self._pool = pool
        self._admin_key = admin_key
        self._ttl = ttl
        self._max_unknown = max_unknown
        self._known: dict[str, tuple[float, Principal]] = {}
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, key: str) -> tuple[bool, Principal | None]:
        """(answered, principal) from memory alone: the hot path never leaves the event loop."""
        if self._admin_key and hmac.compare_digest(key.encode(), self._admin_key.encode()):
            return True, ADMIN
        digest = hash_key(key)
        now = time.monotonic()
        with self._lock:
            known = self._known.get(digest)
            if known is not None and now - known[0] < self._ttl:
                return True, known[1]
            refused = self._unknown.get(digest)
            if refused is not None and now - refused < self._ttl:
                return True, None
        return False, None

    def resolve(self, key: str) -> Principal | None:
        answered, principal = self.cached(key)
        if answered:
            return principal
        digest = hash_key(key)
        now = time.monotonic()
        with self._pool.connection() as conn:
            row = conn.execute(
                "select tenant_id from app.api_keys where key_sha256 = %s and revoked_at is null",
                (digest,),
            ).fetchone()
        with self._lock:
            if row is None:
                self._known.pop(digest, None)
                self._unknown[digest] = now
                self._unknown.move_to_end(digest)
                while len(self._unknown) > self._max_unknown:
                    self._unknown.popitem(last=False)
                return None
            self._unknown.pop(digest, None)
            principal = Principal(tenant_id=row[0])
            self._known[digest] = (now, principal)
            if len(self._known) > 100_000:  # only keys that exist, but not forever
                self._known = {d: v for d, v in self._known.items() if now - v[0] < self._ttl}
        return principal


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    tenant_id: str
    created_at: datetime
    revoked_at: datetime | None


def list_api_keys(conn: psycopg.Connection, tenant_id: str | None = None) -> list[ApiKey]:
    """Every tenant key (never the key itself), oldest first."""
    rows = conn.execute(
        """select key_id, tenant_id, created_at, revoked_at from app.api_keys
           where %(tenant)s::text is null or tenant_id = %(tenant)s
           order by created_at, key_id""",
        {"tenant": tenant_id},
    ).fetchall()
    return [ApiKey(*row) for row in rows]


class UnknownKey(LookupError):
    pass


def revoke_api_key(conn: psycopg.Connection, key_id: str) -> ApiKey:
    """Revoke a key from now on (a second more on a worker that remembers it); revoking it
    again changes nothing. Returns the key as it now is."""
    conn.execute(
        "update app.api_keys set revoked_at = now() where key_id = %s and revoked_at is null",
        (key_id,),
    )
    row = conn.execute(
        "select key_id, tenant_id, created_at, revoked_at from app.api_keys where key_id = %s",
        (key_id,),
    ).fetchone()
    if row is None:
        raise UnknownKey(key_id)
    return ApiKey(*row)
