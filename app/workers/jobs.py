"""Wiring of the scheduled jobs: the summarizer the settings choose, the compaction
policy, and the scheduler that runs them on the leader replica."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import timedelta

from adapters.postgres.database import Database
from adapters.summarizers import ExtractiveSummarizer, LLMSummarizer
from app.services.compaction import (
    CompactionPolicy,
    CompactionPorts,
    run_idle_compaction,
    run_summaries,
)
from app.settings import Settings
from app.workers.leader import LeaderLock
from app.workers.scheduler import JobScheduler, ScheduledJob
from domain.ports import EventStore, TokenCounter
from domain.summaries.ports import Summarizer


def summarizer_for(settings: Settings, counter: TokenCounter) -> Summarizer:
    if settings.summarizer == "llm":
        assert settings.summarizer_base_url is not None  # validated with the settings
        key_env = settings.summarizer_api_key_env
        return LLMSummarizer(
            base_url=settings.summarizer_base_url,
            count_tokens=counter.count,
            model=settings.summarizer_model,
            api_key=os.environ.get(key_env) if key_env else None,
        )
    return ExtractiveSummarizer(counter.count)


def policy_for(settings: Settings) -> CompactionPolicy:
    return CompactionPolicy(
        keep_recent_turns=settings.keep_recent_turns,
        summarize_after=settings.summarize_after,
        summary_max_tokens=settings.summary_max_tokens,
        idle_after=timedelta(seconds=settings.idle_after_s),
    )


def compaction_ports(
    settings: Settings, db: Database, events: EventStore, counter: TokenCounter
) -> CompactionPorts:
    return CompactionPorts(db, events, summarizer_for(settings, counter), counter)


def build_scheduler(
    settings: Settings,
    database_url: str,
    ports: CompactionPorts,
    extra_jobs: Sequence[ScheduledJob] = (),
) -> JobScheduler:
    policy = policy_for(settings)

    async def summaries() -> int:
        return await run_summaries(ports, policy)

    async def idle() -> int:
        return await run_idle_compaction(ports, policy)

    return JobScheduler(
        LeaderLock(database_url),
        [
            ScheduledJob("summarize", settings.summarize_every_s, summaries),
            ScheduledJob("compact-idle", settings.compact_every_s, idle),
            *extra_jobs,
        ],
        leader_interval_s=settings.leader_every_s,
    )
