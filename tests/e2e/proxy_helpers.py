"""What the proxy's end-to-end tests share: reading a session's log back."""

from __future__ import annotations

from typing import Any

import httpx


async def events(http: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    """Every event of a session, in order (through the paginated events endpoint)."""
    out: list[dict[str, Any]] = []
    while True:
        r = await http.get(
            f"/v1/sessions/{session_id}/events", params={"after": len(out), "limit": 200}
        )
        assert r.status_code == 200, r.text
        page = r.json()
        out.extend(page["data"])
        if not page["has_more"]:
            return out
