"""Kept session tails (adapters/postgres/session_tails.py) against the real PostgreSQL:
a read through a kept tail returns what a fresh read returns, and reads only what is new."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import astuple

import asyncpg

from adapters.postgres.context_inputs import PostgresContextReader, newest_turns
from adapters.postgres.database import Database
from adapters.postgres.session_repository import PostgresSessions
from adapters.postgres.session_tails import SessionTails
from adapters.tokenizers import TiktokenCounter
from app.services import sessions as svc
from domain.context.inputs import Turn

CTX = svc.RequestContext("acme", "test")
COUNTER = TiktokenCounter()


async def add(repo: PostgresSessions, session: str, start: int, n: int) -> None:
    turns = [
        svc.TurnSpec("user" if i % 2 == 0 else "assistant", f"{session} turn {i}")
        for i in range(start, start + n)
    ]
    await svc.append_turns(repo, COUNTER, CTX, session, turns)


async def fresh(db: Database, session: str, limit: int) -> list[tuple[object, ...]]:
    async with db.connection() as conn:
        return [astuple(t) for t in await newest_turns(conn, "acme", session, limit)]


def rows(turns: Sequence[Turn]) -> list[tuple[object, ...]]:
    return [astuple(t) for t in turns]


class Counting:
    """Wraps the reader's fetch to count the rows each read brings back."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.fetched: list[int] = []

    async def __call__(self, after_seq: int, limit: int) -> list[Turn]:
        async with self.db.connection() as conn:
            found = await newest_turns(conn, "acme", "s", limit, after_seq)
        self.fetched.append(len(found))
        return found


async def test_a_kept_tail_reads_only_the_new_turns_and_matches_a_fresh_read(
    db: Database,
) -> None:
    repo = PostgresSessions(db)
    await svc.create_session(repo, CTX, session_id="s")
    tails, fetch = SessionTails(max_keep=50), Counting(db)
    assert await tails.newest("acme", "s", 20, fetch) == []  # an empty session: whole
    await add(repo, "s", 0, 7)
    got = await tails.newest("acme", "s", 20, fetch)
    assert rows(got) == await fresh(db, "s", 20) and len(got) == 7
    for start in range(7, 60, 2):  # a call's question and answer, then the next call
        await add(repo, "s", start, 2)
        got = await tails.newest("acme", "s", 20, fetch)
        assert rows(got) == await fresh(db, "s", 20)
    assert fetch.fetched[-5:] == [2] * 5  # only what the last call stored
    assert [t.seq for t in got] == list(range(61, 41, -1))
    # The tail grew with each call, up to max_keep: any read up to that is served from
    # it; a longer one goes to the database and is not kept.
    assert len(tails._tails["acme", "s"].turns) == 50
    for limit in (3, 40, 50):
        assert rows(await tails.newest("acme", "s", limit, fetch)) == await fresh(db, "s", limit)
        assert fetch.fetched[-1] == 0
    assert rows(await tails.newest("acme", "s", 60, fetch)) == await fresh(db, "s", 60)
    assert fetch.fetched[-1] == 60 and len(tails._tails["acme", "s"].turns) == 50
    # A tail shorter than asked (and not the whole session) is read afresh.
    short = SessionTails(max_keep=50)
    await short.newest("acme", "s", 5, fetch)
    assert rows(await short.newest("acme", "s", 30, fetch)) == await fresh(db, "s", 30)
    assert fetch.fetched[-2:] == [5, 30]


async def test_a_short_read_between_long_ones_keeps_the_tail(db: Database) -> None:
    """A stateful call reads its newest 2 turns (is the request new?), then its window's
    200: the short read, finding two new turns, must extend the tail, not replace it."""
    repo = PostgresSessions(db)
    await svc.create_session(repo, CTX, session_id="s")
    await add(repo, "s", 0, 40)
    tails, fetch = SessionTails(), Counting(db)
    await tails.newest("acme", "s", 30, fetch)
    for start in range(40, 60, 2):
        await add(repo, "s", start, 2)
        assert rows(await tails.newest("acme", "s", 2, fetch)) == await fresh(db, "s", 2)
        assert rows(await tails.newest("acme", "s", 30, fetch)) == await fresh(db, "s", 30)
    assert fetch.fetched[1:] == [2, 0] * 10
    # More new turns than a short read asks for: it returns the newest, and the next
    # long read (the tail no longer reaches them) reads afresh.
    await add(repo, "s", 60, 5)
    assert rows(await tails.newest("acme", "s", 2, fetch)) == await fresh(db, "s", 2)
    assert rows(await tails.newest("acme", "s", 30, fetch)) == await fresh(db, "s", 30)
    assert fetch.fetched[-2:] == [2, 30]


async def test_a_caller_that_knows_the_turn_count_is_answered_from_the_tail(
    db: Database,
) -> None:
    """The proxy builds a window from facts it read a moment ago (while storing the new
    turn, which the window leaves out): a tail that reaches the known count is enough."""
    repo = PostgresSessions(db)
    await svc.create_session(repo, CTX, session_id="s")
    await add(repo, "s", 0, 12)
    tails, fetch = SessionTails(), Counting(db)
    await tails.newest("acme", "s", 10, fetch)
    await add(repo, "s", 12, 1)  # the call's own new turn, stored meanwhile
    known = await tails.newest("acme", "s", 10, fetch, known_count=12)
    assert fetch.fetched == [10] and [t.seq for t in known] == list(range(12, 2, -1))
    # A count past what the tail holds: read as usual.
    assert rows(await tails.newest("acme", "s", 10, fetch, known_count=13)) == await fresh(
        db, "s", 10
    )
    assert fetch.fetched == [10, 1]


async def test_two_replicas_each_see_the_turns_the_other_stored(db: Database) -> None:
    repo = PostgresSessions(db)
    await svc.create_session(repo, CTX, session_id="s")
    first, second = PostgresContextReader(db), PostgresContextReader(db)
    await add(repo, "s", 0, 4)
    for i, reader in enumerate([first, second] * 6):
        await add(repo, "s", 4 + 3 * i, 3)  # stored through "the other" replica
        got = await reader.newest_turns("acme", "s", 10)
        assert rows(got) == await fresh(db, "s", 10)
    assert len(first.tails) == len(second.tails) == 1


async def test_the_kept_text_is_bounded_and_the_least_recent_sessions_go_first(
    db: Database, raw_conn: asyncpg.Connection
) -> None:
    repo = PostgresSessions(db)
    reader = PostgresContextReader(db)
    reader.tails = SessionTails(max_keep=10, max_chars=10 * 750)  # about ten turns in all
    for name in ("a", "b", "c"):
        await svc.create_session(repo, CTX, session_id=name)
        await add(repo, name, 0, 6)
        assert rows(await reader.newest_turns("acme", name, 5)) == await fresh(db, name, 5)
    assert list(reader.tails._tails) == [("acme", "b"), ("acme", "c")]  # "a" dropped
    assert reader.tails.size <= reader.tails.max_chars
    # A dropped session reads afresh, correctly.
    await add(repo, "a", 6, 2)
    assert rows(await reader.newest_turns("acme", "a", 5)) == await fresh(db, "a", 5)
    # Tenants never share a tail: the same session id elsewhere is another session.
    other = svc.RequestContext("other", "test")
    await svc.create_session(repo, other, session_id="a")
    assert await reader.newest_turns("other", "a", 5) == []
    assert await raw_conn.fetchval("SELECT count(*) FROM turn_rows WHERE tenant_id = 'other'") == 0


async def test_reads_racing_appends_on_one_session_stay_exact(db: Database) -> None:
    """Reads overlap appends (as a window is built while its turn is stored): each read
    returns a consecutive run of the newest turns as of some moment, and once the
    appends are done every read matches a fresh one."""
    repo = PostgresSessions(db)
    reader = PostgresContextReader(db)
    await svc.create_session(repo, CTX, session_id="s")
    await add(repo, "s", 0, 30)
    for start in range(30, 90, 6):
        results = await asyncio.gather(
            reader.newest_turns("acme", "s", 20),
            add(repo, "s", start, 3),
            reader.newest_turns("acme", "s", 20),
            add(repo, "s", start + 3, 3),
            reader.newest_turns("acme", "s", 20),
        )
        for got in (results[0], results[2], results[4]):
            assert got is not None
            seqs = [t.seq for t in got]
            assert len(seqs) == 20 and seqs == list(range(seqs[0], seqs[0] - 20, -1))
            assert start - 2 <= seqs[0] <= start + 6
        assert rows(await reader.newest_turns("acme", "s", 20)) == await fresh(db, "s", 20)
