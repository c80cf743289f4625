"""`replay` rebuilds projections identical to the incremental ones; `verify` finds tampering."""

from __future__ import annotations

import uuid

import asyncpg

from adapters.postgres.audit import PostgresAuditLog, rebuild_projections
from adapters.postgres.database import Database
from adapters.postgres.session_repository import PostgresSessions
from adapters.tokenizers import CharEstimateCounter
from app.services import sessions as svc
from app.services.audit import verify_log
from domain.events import NewEvent, SessionCompacted, SummaryRecorded

COUNTER = CharEstimateCounter()


async def seed(db: Database) -> None:
    repo = PostgresSessions(db)
    for tenant in ("acme", "globex"):
        ctx = svc.RequestContext(tenant, "test")
        for n in range(3):
            view, _ = await svc.create_session(
                repo, ctx, session_id=f"s{n}", title=f"session {n}", user_id="u1"
            )
            for k in range(4):
                await svc.append_turns(
                    repo,
                    COUNTER,
                    ctx,
                    view.session_id,
                    [
                        svc.TurnSpec("user", f"question {k} of {n} in {tenant}"),
                        svc.TurnSpec("assistant", f"answer {k}", cost=0.1 * (k + 1), model="m"),
                    ],
                )
        await svc.close_session(repo, ctx, "s1", "done")
        # A rolling summary and a compaction, as the scheduled jobs write them.
        await repo.events.append(
            tenant,
            "session:s0",
            [
                NewEvent.from_domain(
                    SummaryRecorded(
                        level=0,
                        from_version=2,
                        to_version=5,
                        text=f"summary in {tenant}",
                        tokens=4,
                        summarizer="extractive",
                    ),
                    uuid.uuid4(),
                ),
                NewEvent.from_domain(
                    SessionCompacted(up_to_version=5, summary_version=10), uuid.uuid4()
                ),
            ],
        )


async def dump(conn: asyncpg.Connection) -> tuple[list, list, list]:
    sessions = await conn.fetch("SELECT * FROM sessions ORDER BY tenant_id, session_id")
    turns = await conn.fetch("SELECT * FROM turns ORDER BY tenant_id, session_id, seq")
    summaries = await conn.fetch("SELECT * FROM summaries ORDER BY tenant_id, session_id, level")
    return [dict(r) for r in sessions], [dict(r) for r in turns], [dict(r) for r in summaries]


async def test_replay_rebuilds_identical_projections(
    db: Database, raw_conn: asyncpg.Connection
) -> None:
    await seed(db)
    before = await dump(raw_conn)
    assert len(before[0]) == 6 and len(before[1]) == 6 * 8
    assert [(r["text"], r["to_version"]) for r in before[2]] == [
        ("summary in acme", 5),
        ("summary in globex", 5),
    ]
    s0 = next(r for r in before[0] if r["tenant_id"] == "acme" and r["session_id"] == "s0")
    assert (s0["summarized_to_version"], s0["compacted_to_version"]) == (5, 5)
    assert s0["last_activity_at"] < s0["compacted_at"]  # summaries are not activity
    await raw_conn.execute("DELETE FROM turn_rows WHERE seq > 2")  # a damaged read model
    await raw_conn.execute("DELETE FROM summary_rows")
    await raw_conn.execute("UPDATE sessions SET turn_count = 0")

    result = await rebuild_projections(db)

    # No answer of the proxy's among these events: no calls in the usage per day.
    assert result == {"events": 6 * (1 + 8) + 2 + 4, "sessions": 6, "calls": 0}
    assert await dump(raw_conn) == before
    checkpoints = await raw_conn.fetch("SELECT name, global_position FROM projection_checkpoints")
    last = await raw_conn.fetchval("SELECT max(global_position) FROM events")
    assert {r["name"]: r["global_position"] for r in checkpoints} == {
        "sessions": last,
        "turns": last,
        "summaries": last,
        "usage": last,
    }


async def test_verify_accepts_an_untouched_log(db: Database) -> None:
    await seed(db)
    report = await verify_log(PostgresAuditLog(db))
    assert report.ok, report.first_break
    assert report.streams == 6 and report.events == 6 * 9 + 2 + 4


async def _tamper(conn: asyncpg.Connection, sql: str) -> None:
    # What a superuser could do: switch the immutability triggers off for one statement.
    async with conn.transaction():
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(sql)


async def test_verify_names_an_altered_event(db: Database, raw_conn: asyncpg.Connection) -> None:
    await seed(db)
    target = await raw_conn.fetchrow(
        "SELECT global_position, event_id FROM events WHERE tenant_id = 'globex' "
        "AND stream_id = 'session:s2' AND stream_version = 4"
    )
    await _tamper(
        raw_conn,
        "UPDATE events SET data = jsonb_set(data, '{content}', '\"I never said that\"') "
        f"WHERE global_position = {target['global_position']}",
    )
    report = await verify_log(PostgresAuditLog(db))
    assert not report.ok
    broken = report.first_break
    assert broken is not None
    assert (broken.tenant_id, broken.stream_id, broken.stream_version) == (
        "globex",
        "session:s2",
        4,
    )
    assert broken.global_position == target["global_position"]
    assert broken.event_id == str(target["event_id"])
    assert "altered" in broken.reason
    assert str(target["global_position"]) in broken.describe()


async def test_verify_finds_a_removed_event(db: Database, raw_conn: asyncpg.Connection) -> None:
    await seed(db)
    await _tamper(
        raw_conn,
        "DELETE FROM events WHERE tenant_id = 'acme' AND stream_id = 'session:s0' "
        "AND stream_version = 3",
    )
    broken = (await verify_log(PostgresAuditLog(db))).first_break
    assert broken is not None and broken.stream_id == "session:s0"
    assert broken.stream_version == 4 and "missing" in broken.reason


async def test_verify_finds_a_removed_last_event(
    db: Database, raw_conn: asyncpg.Connection
) -> None:
    await seed(db)
    await _tamper(
        raw_conn,
        "DELETE FROM events WHERE tenant_id = 'acme' AND stream_id = 'session:s2' "
        "AND stream_version = 9",
    )
    broken = (await verify_log(PostgresAuditLog(db))).first_break
    assert broken is not None and broken.stream_id == "session:s2"
    assert "head" in broken.reason


async def test_verify_finds_a_rehashed_event(db: Database, raw_conn: asyncpg.Connection) -> None:
    # Rewriting an event AND its own hash still breaks the link to the next event.
    await seed(db)
    await _tamper(
        raw_conn,
        "UPDATE events SET hash = sha256(hash) WHERE tenant_id = 'acme' "
        "AND stream_id = 'session:s1' AND stream_version = 2",
    )
    broken = (await verify_log(PostgresAuditLog(db))).first_break
    assert broken is not None and broken.stream_id == "session:s1"
    assert broken.stream_version == 2
