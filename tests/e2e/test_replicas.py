"""Two server processes on one database: one runs the jobs; the other takes over."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import TEMPLATE, _admin, with_database
from tests.e2e.conftest import ADMIN_KEY, start_server, stop_server

JOB_SETTINGS = {
    "CONTEXTGATE_LEADER_EVERY_S": "1",
    "CONTEXTGATE_SUMMARIZE_EVERY_S": "1",
    "CONTEXTGATE_KEEP_RECENT_TURNS": "2",
    "CONTEXTGATE_SUMMARIZE_AFTER": "3",
}
LEADER = """SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)
    WHERE l.locktype = 'advisory' AND l.granted AND a.datname = current_database()
      AND a.application_name LIKE 'contextgate-leader-%'"""


async def leader_pid(conn: asyncpg.Connection) -> int | None:
    rows = await conn.fetch(LEADER)
    assert len(rows) <= 1, rows  # never two leaders
    return int(rows[0]["application_name"].rsplit("-", 1)[1]) if rows else None


async def wait_for(predicate, seconds: float = 20.0):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.2)
    pytest.fail("condition not met in time")


async def test_one_replica_runs_the_jobs_and_another_takes_over(
    pg_admin_uri: str, template_uri: str, tmp_path: Path
) -> None:
    name = f"cg_e2e_{uuid.uuid4().hex[:12]}"
    await _admin(pg_admin_uri, f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    url = with_database(pg_admin_uri, name)
    a = start_server(url, tmp_path / "a.log", **JOB_SETTINGS)
    b = start_server(url, tmp_path / "b.log", **JOB_SETTINGS)
    conn = await asyncpg.connect(url)
    try:
        first = await wait_for(lambda: leader_pid(conn))
        assert first in (a.process.pid, b.process.pid)
        leader, follower = (a, b) if first == a.process.pid else (b, a)

        # The leader's jobs run: a session past the threshold gets a rolling summary.
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        async with httpx.AsyncClient(base_url=follower.base_url, headers=headers) as client:
            assert (await client.post("/v1/sessions", json={"id": "r1"})).status_code == 201
            turns = [{"role": "user", "content": f"fact number {i}"} for i in range(8)]
            r = await client.post("/v1/sessions/r1/turns", json={"turns": turns})
            assert r.status_code == 201

        async def summarized() -> bool:
            return bool(
                await conn.fetchval("SELECT count(*) FROM events WHERE type = 'SummaryRecorded'")
            )

        await wait_for(summarized)

        # The leader dies without a word; the follower takes the jobs over.
        os.kill(leader.process.pid, signal.SIGKILL)
        leader.process.wait(timeout=10)

        async def taken_over() -> bool:
            return await leader_pid(conn) == follower.process.pid

        await wait_for(taken_over)
    finally:
        await conn.close()
        stop_server(a)
        stop_server(b)
        await _admin(pg_admin_uri, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
