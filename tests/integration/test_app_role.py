"""The server's database role reads the log and appends only through cg_append."""

from __future__ import annotations

import asyncpg
import pytest

from adapters.postgres.audit import PostgresAuditLog, rebuild_projections
from adapters.postgres.database import Database
from adapters.postgres.session_repository import PostgresSessions
from adapters.tokenizers import CharEstimateCounter
from app.services import sessions as svc
from app.services.audit import verify_log
from app.settings import APP_ROLE


@pytest.fixture
async def app_db(database_url: str):
    database = Database(database_url, role=APP_ROLE)
    yield database
    await database.dispose()


async def test_the_app_role_appends_reads_and_replays(app_db: Database) -> None:
    repo = PostgresSessions(app_db)
    ctx = svc.RequestContext("acme", "k1")
    await svc.create_session(repo, ctx, session_id="r1")
    out = await svc.append_turns(
        repo, CharEstimateCounter(), ctx, "r1", [svc.TurnSpec("user", "hello")]
    )
    assert out.last_version == 2
    async with app_db.connection() as conn:
        assert await conn.fetchval("SELECT current_user") == APP_ROLE
    assert (await rebuild_projections(app_db))["sessions"] == 1
    assert (await verify_log(PostgresAuditLog(app_db))).ok


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE events SET type = 'X'",
        "DELETE FROM events",
        "TRUNCATE events",
        "INSERT INTO events (event_id, tenant_id, stream_id, stream_version, type,"
        " schema_version, data, recorded_at, prev_hash, hash) VALUES (gen_random_uuid(),"
        " 'acme', 'session:r1', 9, 'Forged', 1, '{}', now(), '\\x00', '\\x00')",
        "UPDATE streams SET version = 0",
    ],
)
async def test_the_app_role_cannot_touch_the_log(app_db: Database, sql: str) -> None:
    repo = PostgresSessions(app_db)
    await svc.create_session(repo, svc.RequestContext("acme", "k1"), session_id="r1")
    async with app_db.connection() as conn:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(sql)
        assert await conn.fetchval("SELECT count(*) FROM events") == 1
