"""Authentication: API keys from `Authorization: Bearer` or `x-api-key`, resolved through a
short in-process cache so most requests never query the keys table."""

from __future__ import annotations

import time
from typing import Any, Protocol

from litestar import Request
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException

from domain.access import Principal

POSITIVE_TTL_S = 30.0
NEGATIVE_TTL_S = 2.0
MAX_ENTRIES = 10_000
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="contextgate"'}


class KeyLookup(Protocol):
    async def lookup(self, key: str) -> Principal | None: ...


class KeyCache:
    """Maps a presented key to its principal for a few seconds. A revoked key stops
    working within POSITIVE_TTL_S; a wrong key is looked up again after NEGATIVE_TTL_S."""

    def __init__(self, keys: KeyLookup) -> None:
        self.keys = keys
        self._entries: dict[str, tuple[float, Principal | None]] = {}

    async def resolve(self, key: str) -> Principal | None:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = await self.keys.lookup(key)
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        ttl = POSITIVE_TTL_S if principal is not None else NEGATIVE_TTL_S
        self._entries[key] = (now + ttl, principal)
        return principal


def presented_key(request: Request[Any, Any, Any]) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    return request.headers.get("x-api-key") or None


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    key = presented_key(request)
    if key is None:
        raise NotAuthorizedException(
            "missing API key: send 'Authorization: Bearer <key>' (or 'x-api-key: <key>')",
            headers=CHALLENGE,
        )
    principal: Principal | None = await request.app.state.key_cache.resolve(key)
    if principal is None:
        raise NotAuthorizedException("the API key is not valid or was revoked", headers=CHALLENGE)
    return principal


def require(principal: Principal, *roles: str) -> None:
    if "admin" in principal.roles or principal.roles.intersection(roles):
        return
    raise PermissionDeniedException(
        f"this key lacks the role for this call (needs one of: {', '.join(roles)})"
    )


async def provide_tenant(request: Request[Any, Any, Any], principal: Principal) -> str:
    requested = request.headers.get("x-tenant-id")
    tenant: str = principal.tenant_for(requested, request.app.state.settings.default_tenant)
    return tenant
