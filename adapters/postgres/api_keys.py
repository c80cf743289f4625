"""API keys, stored as sha256 hashes only."""

from __future__ import annotations

from adapters.postgres.database import Database
from domain.access import ALL_TENANTS, Principal, hash_key, new_key

ENV_ADMIN_KEY_ID = "admin-env"
GENERATED_ADMIN_KEY_ID = "admin"

LOOKUP = """SELECT tenant_id, key_id, roles FROM api_keys
    WHERE key_hash = $1 AND revoked_at IS NULL"""
UPSERT = """INSERT INTO api_keys (tenant_id, key_id, key_hash, name, roles)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (tenant_id, key_id) DO UPDATE
    SET key_hash = EXCLUDED.key_hash, roles = EXCLUDED.roles, revoked_at = NULL"""
REVOKE = """UPDATE api_keys SET revoked_at = now()
    WHERE tenant_id = $1 AND key_id = $2 AND revoked_at IS NULL"""
HAS_ADMIN = """SELECT 1 FROM api_keys WHERE tenant_id = $1 AND key_id = $2
    AND revoked_at IS NULL"""


class PostgresApiKeys:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def lookup(self, key: str) -> Principal | None:
        async with self.db.connection() as conn:
            row = await conn.fetchrow(LOOKUP, hash_key(key))
        if row is None:
            return None
        return Principal(row["key_id"], row["tenant_id"], frozenset(row["roles"]))

    async def ensure_admin(self, env_key: str | None) -> str | None:
        """Make sure an admin key exists. With CONTEXTGATE_ADMIN_KEY set, register its hash
        and return None; otherwise create a key on first start and return it (once)."""
        async with self.db.transaction() as conn:
            if env_key is not None:
                await conn.execute(
                    UPSERT, ALL_TENANTS, ENV_ADMIN_KEY_ID, hash_key(env_key),
                    "admin key from CONTEXTGATE_ADMIN_KEY", ["admin"],
                )  # fmt: skip
                return None
            # An admin key from an environment variable that is no longer set stops working.
            await conn.execute(REVOKE, ALL_TENANTS, ENV_ADMIN_KEY_ID)
            # One creator at a time, or two replicas starting together could both make one.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('contextgate-admin-key'))")
            if await conn.fetchval(HAS_ADMIN, ALL_TENANTS, GENERATED_ADMIN_KEY_ID):
                return None
            key = new_key()
            await conn.execute(
                UPSERT, ALL_TENANTS, GENERATED_ADMIN_KEY_ID, hash_key(key),
                "admin key created on first start", ["admin"],
            )  # fmt: skip
            return key

    async def rotate_admin(self) -> str:
        """Replace the generated admin key with a new one and return it (once)."""
        key = new_key()
        async with self.db.transaction() as conn:
            await conn.execute(
                UPSERT, ALL_TENANTS, GENERATED_ADMIN_KEY_ID, hash_key(key),
                "admin key rotated", ["admin"],
            )  # fmt: skip
        return key
