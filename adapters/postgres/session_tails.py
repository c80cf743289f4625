"""The newest turns of recently read sessions, kept in this process.

Every stateful call reads its session's newest turns (the recent window: up to 200),
and the next call on that session reads them again plus the two turns the last call
stored. A turn never changes once stored (the log is append-only, and a session's turns
are numbered 1, 2, 3, ... without gaps), so a kept tail extended by the turns numbered
after its newest equals a fresh read: that is all a call reads once its session's tail
is here (a read of 200 turns was ~9% of a stateful call's event loop, and PostgreSQL's
work to match). Replicas each keep their own: what another one stored is read as any
newer turn is. Bounded by the text it holds; the least recently read go first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from domain.context.inputs import Turn

# (newer than this seq, at most this many) -> those turns, newest first
FetchNewest = Callable[[int, int], Awaitable[Sequence[Turn]]]

# What a kept turn costs beyond its text, counted as characters: the Turn (~300) and
# what the window keeps on it (~350: its recent message, that message's provider Message
# and its part of the prompt hash, strategies.recent_message). That prompt-hash part
# holds the text once more, so a kept turn counts its text twice.
TURN_OVERHEAD_CHARS = 650


@dataclass
class _Tail:
    turns: list[Turn]  # newest first, consecutive seqs
    whole: bool  # the session's first turn is among them (nothing older exists)
    size: int  # in characters, with TURN_OVERHEAD_CHARS a turn


class SessionTails:
    """Newest turns by (tenant, session). `max_keep`: the largest read kept (a longer
    one, the `full` strategy's, goes to the database every time); `max_chars`: the bound
    on what is kept over all sessions (32 M characters by default, each turn's text
    counted twice and TURN_OVERHEAD_CHARS more: 32-128 MB, by how wide the text's
    characters are)."""

    def __init__(self, *, max_keep: int = 256, max_chars: int = 32_000_000) -> None:
        self.max_keep = max_keep
        self.max_chars = max_chars
        self.size = 0
        self._tails: OrderedDict[tuple[str, str], _Tail] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tails)

    async def newest(
        self,
        tenant_id: str,
        session_id: str,
        limit: int,
        fetch: FetchNewest,
        known_count: int | None = None,
    ) -> list[Turn]:
        """The newest `limit` turns, newest first: what `fetch(0, limit)` would return.
        `known_count`: the caller read the session's turn count a moment ago and does not
        care for turns stored since; a kept tail that reaches it is the answer."""
        if limit <= 0:
            return []
        if limit > self.max_keep:
            return list(await fetch(0, limit))
        key = (tenant_id, session_id)
        tail = self._tails.get(key)
        if tail is None or (len(tail.turns) < limit and not tail.whole):
            turns = list(await fetch(0, limit))
            self._keep(key, turns, whole=len(turns) < limit)
            return turns
        newest_seq = tail.turns[0].seq if tail.turns else 0
        if known_count is not None and newest_seq >= known_count:
            self._tails.move_to_end(key)
            return tail.turns[:limit]
        newer = list(await fetch(newest_seq, limit))
        # Another read may have moved the tail meanwhile: merge with the current one. If
        # more than `limit` turns came since, the merge stops at the gap: `newer` alone.
        current = self._tails.get(key, tail)
        turns = _merge(newer, current.turns)
        whole = current.whole and turns[-1].seq == 1 if turns else current.whole
        if len(turns) < limit and not whole:  # a gap (never seen): read afresh
            turns = list(await fetch(0, limit))
            whole = len(turns) < limit
        self._keep(key, turns, whole=whole)
        return turns[:limit]

    def newest_seq(self, tenant_id: str, session_id: str) -> int | None:
        """The newest kept turn's seq (the session's turn count when it was read), or
        None when nothing of the session is kept."""
        tail = self._tails.get((tenant_id, session_id))
        return tail.turns[0].seq if tail is not None and tail.turns else None

    def _keep(self, key: tuple[str, str], turns: list[Turn], *, whole: bool) -> None:
        turns = turns[: self.max_keep]
        whole = whole and (not turns or turns[-1].seq == 1)
        old = self._tails.pop(key, None)
        if old is not None:
            self.size -= old.size
        size = sum(2 * len(t.content) + TURN_OVERHEAD_CHARS for t in turns)
        self._tails[key] = _Tail(turns, whole, size)
        self.size += size
        while self.size > self.max_chars and len(self._tails) > 1:
            _, dropped = self._tails.popitem(last=False)
            self.size -= dropped.size


def _merge(newer: list[Turn], older: list[Turn]) -> list[Turn]:
    """Both newest first; the result newest first, each seq once, cut at the first gap."""
    if not newer:
        return older
    if not older or newer[-1].seq == older[0].seq + 1:  # the usual case: they join
        return newer + older
    by_seq = {t.seq: t for t in older}
    by_seq.update((t.seq, t) for t in newer)
    out: list[Turn] = []
    for seq in sorted(by_seq, reverse=True):
        if out and seq != out[-1].seq - 1:
            break
        out.append(by_seq[seq])
    return out
