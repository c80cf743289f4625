"""Who a request acts as: a principal with roles, bound to a tenant or to all of them."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from domain.errors import ValidationError

ALL_TENANTS = "*"
ROLES = frozenset({"app", "auditor", "analyst", "admin"})
TENANT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]{0,63}")
KEY_PREFIX = "cg_"


@dataclass(frozen=True)
class Principal:
    key_id: str
    tenant_id: str  # ALL_TENANTS for a global admin key
    roles: frozenset[str]

    def tenant_for(self, requested: str | None, default: str) -> str:
        """The tenant this request acts on: a tenant-bound key keeps its own."""
        if self.tenant_id != ALL_TENANTS:
            if requested is not None and requested != self.tenant_id:
                raise ValidationError(
                    f"this key belongs to tenant {self.tenant_id!r}; omit X-Tenant-Id or send "
                    "that tenant",
                    "X-Tenant-Id",
                )
            return self.tenant_id
        tenant = requested if requested is not None else default
        if not TENANT_RE.fullmatch(tenant):
            raise ValidationError(
                "X-Tenant-Id must be 1-64 letters, digits, '.', '_' or '-'", "X-Tenant-Id"
            )
        return tenant


def new_key() -> str:
    """A random API key: 256 bits, URL-safe. Shown once, stored only as its hash."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> bytes:
    # Keys are 256-bit random, so a fast hash is enough (no dictionary to guess from).
    return hashlib.sha256(key.encode("utf-8")).digest()
