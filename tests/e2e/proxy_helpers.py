"""What the proxy's end-to-end tests share: reading a session's log back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

# A stateless call (`call_...`) is recorded just after its answer is sent: its session
# appears within moments of the answer, all of it at once (one append).
RECORD_WAIT_S = 5.0


async def events(http: httpx.AsyncClient, session_id: str) -> list[dict[str, Any]]:
    """Every event of a session, in order (through the paginated events endpoint)."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + RECORD_WAIT_S
    while True:
        r = await http.get(
            f"/v1/sessions/{session_id}/events", params={"after": len(out), "limit": 200}
        )
        recording = not out and session_id.startswith("call_")
        if recording and (r.status_code == 404 or not r.json()["data"]):
            # Not there yet (or committed while an older transaction is still open: the
            # log is read up to the oldest one running, as its readers all do).
            assert time.monotonic() < deadline, f"{session_id} was not recorded: {r.text}"
            await asyncio.sleep(0.02)
            continue
        assert r.status_code == 200, r.text
        page = r.json()
        out.extend(page["data"])
        if not page["has_more"]:
            return out
