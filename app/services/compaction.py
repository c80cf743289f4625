"""Rolling summaries and the compaction of idle sessions, off the request path.

A session's rolling summary is cumulative: each new one summarizes the previous summary
(as one item) plus the turns after it, and so covers everything from the session's
start to `to_version`. Its level counts how many summaries it folds in (0: turns only,
n: built on a level n-1 summary): summaries of summaries, without ever re-reading turns
that were summarized already. The newest `keep_recent_turns` turns are never
summarized: the recent window shows them verbatim.

Events are never deleted: a summary is a SummaryRecorded event, a compaction a
SessionCompacted event, both in the session's stream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from adapters.postgres import compaction as q
from adapters.postgres.context_inputs import newest_summary
from adapters.postgres.database import Database
from domain.errors import StreamClosed, WrongExpectedVersion
from domain.events import NewEvent, SessionCompacted, SummaryRecorded
from domain.ids import uuid7
from domain.ports import EventStore, TokenCounter
from domain.session import stream_id_for
from domain.summaries.ports import Summarizer, SummaryItem

log = logging.getLogger("contextgate.compaction")


@dataclass(frozen=True)
class CompactionPolicy:
    keep_recent_turns: int = 20  # never summarized: the recent window shows them verbatim
    summarize_after: int = 40  # events past the last summary before a new one is due
    max_turns_per_summary: int = 400  # bounds one summary's input; the next run goes on
    summary_max_tokens: int = 400
    idle_after: timedelta = timedelta(minutes=30)
    sessions_per_run: int = 50


@dataclass(frozen=True)
class CompactionPorts:
    db: Database
    events: EventStore
    summarizer: Summarizer
    counter: TokenCounter


async def summarize_session(
    ports: CompactionPorts, tenant_id: str, session_id: str, policy: CompactionPolicy
) -> SummaryRecorded | None:
    """Record a new rolling summary if turns older than the recent window are not yet
    covered; None if there is nothing to do."""
    async with ports.db.connection() as conn:
        keep_from = await q.keep_from_version(conn, tenant_id, session_id, policy.keep_recent_turns)
        if keep_from is None:
            return None
        previous = await newest_summary(conn, tenant_id, session_id)
        first = previous.to_version + 1 if previous else 1
        last = keep_from - 1
        if last < first:
            return None
        turns = await q.turns_between(
            conn, tenant_id, session_id, first, last, policy.max_turns_per_summary
        )
    if not turns:
        return None
    items: list[SummaryItem] = []
    if previous is not None:
        items.append(SummaryItem("summary", previous.text, previous.to_version))
    items.extend(
        SummaryItem(t["role"], t["content"], t["stream_version"], t["created_at"], t["name"])
        for t in turns
    )
    level = previous.level + 1 if previous else 0
    to_version = turns[-1]["stream_version"]
    summary = await ports.summarizer.summarize(
        items, max_tokens=policy.summary_max_tokens, level=level
    )
    event = SummaryRecorded(
        level=level,
        from_version=previous.from_version if previous else turns[0]["stream_version"],
        to_version=to_version,
        text=summary.text,
        tokens=ports.counter.count(summary.text),
        summarizer=summary.summarizer,
    )
    try:
        await ports.events.append(
            tenant_id,
            stream_id_for(session_id),
            [NewEvent.from_domain(event, uuid7(), {"actor": "compaction"})],
            must_exist=True,
        )
    except (StreamClosed, WrongExpectedVersion):
        return None  # closed meanwhile: nothing more will be asked of it
    return event


async def compact_session(
    ports: CompactionPorts, tenant_id: str, session_id: str, policy: CompactionPolicy
) -> bool:
    """Summarize what is left and mark the session compacted at its current version."""
    while await summarize_session(ports, tenant_id, session_id, policy) is not None:
        pass  # long sessions take several bounded summaries
    async with ports.db.connection() as conn:
        summary = await newest_summary(conn, tenant_id, session_id)
        version = await conn.fetchval(
            "SELECT version FROM sessions WHERE tenant_id = $1 AND session_id = $2",
            tenant_id,
            session_id,
        )
    if version is None:
        return False
    event = SessionCompacted(
        up_to_version=summary.to_version if summary else 0, summary_version=int(version)
    )
    try:
        await ports.events.append(
            tenant_id,
            stream_id_for(session_id),
            [NewEvent.from_domain(event, uuid7(), {"actor": "compaction"})],
            must_exist=True,
        )
    except StreamClosed:
        return False
    return True


async def run_summaries(ports: CompactionPorts, policy: CompactionPolicy) -> int:
    """The scheduled job: summarize sessions whose unsummarized part passed the threshold."""
    async with ports.db.connection() as conn:
        due = await q.sessions_needing_summary(
            conn, policy.summarize_after + policy.keep_recent_turns, policy.sessions_per_run
        )
    done = 0
    for ref in due:
        if await summarize_session(ports, ref.tenant_id, ref.session_id, policy) is not None:
            done += 1
    if done:
        log.info("recorded %d rolling summaries", done)
    return done


async def run_idle_compaction(
    ports: CompactionPorts, policy: CompactionPolicy, now: datetime | None = None
) -> int:
    """The scheduled job: compact sessions idle for longer than `policy.idle_after`."""
    before = (now or datetime.now(UTC)) - policy.idle_after
    async with ports.db.connection() as conn:
        idle = await q.idle_sessions(conn, before, policy.sessions_per_run)
    done = 0
    for ref in idle:
        if await compact_session(ports, ref.tenant_id, ref.session_id, policy):
            done += 1
    if done:
        log.info("compacted %d idle sessions", done)
    return done
