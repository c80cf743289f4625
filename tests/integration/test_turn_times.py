"""A turn may say when it was said (`occurred_at`): imported conversations keep their
times in the turns read model, also after a replay; bad times are refused whole."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from adapters.postgres.audit import rebuild_projections
from adapters.postgres.database import Database
from adapters.postgres.session_repository import PostgresSessions
from adapters.tokenizers import CharEstimateCounter
from app.services import sessions as svc
from domain.errors import ValidationError

COUNTER = CharEstimateCounter()
CTX = svc.RequestContext("acme", "test")
SAID = datetime(2023, 5, 8, 13, 56, tzinfo=timezone(timedelta(hours=2)))


async def turn_times(raw_conn: asyncpg.Connection) -> list[tuple[int, datetime]]:
    rows = await raw_conn.fetch(
        "SELECT seq, created_at FROM turns WHERE tenant_id = 'acme' AND session_id = 's' "
        "ORDER BY seq"
    )
    return [(r["seq"], r["created_at"]) for r in rows]


async def test_occurred_at_becomes_the_turns_time(
    db: Database, raw_conn: asyncpg.Connection
) -> None:
    repo = PostgresSessions(db)
    await svc.create_session(repo, CTX, session_id="s")
    before = datetime.now(UTC)
    out = await svc.append_turns(
        repo,
        COUNTER,
        CTX,
        "s",
        [
            svc.TurnSpec("user", "I adopted a dog last week.", occurred_at=SAID),
            svc.TurnSpec("assistant", "Congratulations!", occurred_at=SAID + timedelta(minutes=1)),
            svc.TurnSpec("user", "And today?"),  # no time given: when it was recorded
        ],
    )
    assert out.events[0].data["occurred_at"] == "2023-05-08T11:56:00+00:00"
    assert "occurred_at" not in out.events[2].data
    times = await turn_times(raw_conn)
    assert times[0] == (1, SAID) and times[1] == (2, SAID + timedelta(minutes=1))
    assert times[2][1] >= before
    # A replay rebuilds the same times from the log.
    await raw_conn.execute("UPDATE turn_rows SET created_at = now()")
    await rebuild_projections(db)
    assert await turn_times(raw_conn) == times


@pytest.mark.parametrize(
    ("when", "message"),
    [
        (datetime(2023, 5, 8, 13, 56), "needs a time zone"),
        (datetime.now(UTC) + timedelta(hours=1), "in the future"),
    ],
)
async def test_bad_times_are_refused_and_nothing_is_stored(
    db: Database, raw_conn: asyncpg.Connection, when: datetime, message: str
) -> None:
    repo = PostgresSessions(db)
    await svc.create_session(repo, CTX, session_id="s")
    with pytest.raises(ValidationError, match=message) as caught:
        await svc.append_turns(
            repo,
            COUNTER,
            CTX,
            "s",
            [svc.TurnSpec("user", "fine"), svc.TurnSpec("user", "when?", occurred_at=when)],
        )
    assert caught.value.field == "turns[1].occurred_at"
    assert await turn_times(raw_conn) == []
