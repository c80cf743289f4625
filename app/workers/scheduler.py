"""The scheduled jobs inside `serve`, run by APScheduler on one replica at a time.

Every replica runs the scheduler; each job first confirms that this replica holds the
leader lock (app/workers/leader.py), so exactly one replica does the work, and another
takes over within `leader_interval_s` of the leader's death.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from app.workers.leader import LeaderLock

log = logging.getLogger("contextgate.jobs")

Job = Callable[[], Awaitable[object]]


@dataclass(frozen=True)
class ScheduledJob:
    name: str
    every_s: float
    run: Job


class JobScheduler:
    def __init__(
        self, leader: LeaderLock, jobs: list[ScheduledJob], leader_interval_s: float = 5.0
    ):
        self.leader = leader
        self.jobs = jobs
        self.leader_interval_s = leader_interval_s
        self.runs: dict[str, int] = {job.name: 0 for job in jobs}
        self._scheduler = AsyncIOScheduler()

    async def start(self) -> None:
        await self.leader.try_lead()
        self._scheduler.add_job(
            self.leader.try_lead, "interval", seconds=self.leader_interval_s, id="leader",
            max_instances=1, coalesce=True,
        )  # fmt: skip
        for job in self.jobs:
            self._scheduler.add_job(
                self._guarded(job), "interval", seconds=job.every_s, id=job.name,
                max_instances=1, coalesce=True,
            )  # fmt: skip
        self._scheduler.start()

    async def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        await self.leader.release()

    def _guarded(self, job: ScheduledJob) -> Job:
        async def run() -> None:
            if not await self.leader.try_lead():
                return
            try:
                await job.run()
                self.runs[job.name] += 1
            except Exception:  # a failed run is logged and retried at the next tick
                log.exception("scheduled job %s failed", job.name)

        return run
