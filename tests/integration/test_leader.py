"""Only one replica leads the scheduled jobs; another takes over when it dies."""

from __future__ import annotations

import asyncio

from app.workers.leader import LeaderLock
from app.workers.scheduler import JobScheduler, ScheduledJob


async def test_one_leader_and_takeover(database_url: str) -> None:
    a, b = (
        LeaderLock(database_url, lock_id=777, name="a"),
        LeaderLock(database_url, lock_id=777, name="b"),
    )
    try:
        assert await a.try_lead() is True
        assert await b.try_lead() is False
        assert await a.try_lead() is True  # confirms, stays leader
        # The leader's process dies: its connection goes away without unlocking. The
        # server frees the lock once it sees the socket close; b retries, as the
        # scheduler does every interval.
        a._conn.terminate()
        for _ in range(50):
            if await b.try_lead():
                break
            await asyncio.sleep(0.1)
        assert b.is_leader
        assert await a.try_lead() is False  # a reconnects and finds b leading
    finally:
        await a.release()
        await b.release()


async def test_only_the_leader_runs_jobs_and_a_follower_takes_over(database_url: str) -> None:
    ran = {"a": 0, "b": 0}

    def job(name: str) -> ScheduledJob:
        async def run() -> None:
            ran[name] += 1

        return ScheduledJob("tick", 0.05, run)

    sa = JobScheduler(LeaderLock(database_url, lock_id=778, name="a"), [job("a")], 0.05)
    sb = JobScheduler(LeaderLock(database_url, lock_id=778, name="b"), [job("b")], 0.05)
    await sa.start()
    await sb.start()
    try:
        await asyncio.sleep(0.6)
        assert ran["a"] > 0 and ran["b"] == 0
        await sa.stop()  # the leader goes away
        before = ran["b"]
        await asyncio.sleep(0.6)
        assert ran["b"] > before
    finally:
        await sa.stop()
        await sb.stop()
