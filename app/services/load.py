"""How busy this process is with proxy calls, for background work that should give way.

Measured with 16 clients on 2 cores (sessions of ~1,600 turns): with the embeddings
worker held back the gateway served 128-132 calls/s, with it running 108-113, though its
model runs at idle priority. What still competes is its PostgreSQL backend (each row's
HNSW insert, ~0.6 ms at normal priority), its wake-ups and the caches it sweeps (~90 MB
of weights a batch): the calls' own CPU went up ~15%. And under such a load it fell
behind anyway (100,000 events and more in the benchmark's memory phase).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager


def default_busy_at() -> int:
    """Twice the CPUs: more calls than that doing this process's work means a queue for
    the CPU, not calls waiting on their providers."""
    return 2 * (os.cpu_count() or 1)


class CallLoad:
    """Proxy calls doing this process's work right now (reading, building the window,
    recording), not those waiting on a provider: a gateway whose calls mostly wait on
    slow providers has CPU to spare, one whose calls queue for the CPU has not.
    `busy_at`: that many such calls or more make the process busy (0: never)."""

    def __init__(self, busy_at: int) -> None:
        self.busy_at = busy_at
        self.working = 0

    def busy(self) -> bool:
        return 0 < self.busy_at <= self.working

    @contextmanager
    def work(self) -> Iterator[None]:
        """Around a call."""
        self.working += 1
        try:
            yield
        finally:
            self.working -= 1

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a call's wait on its provider (inside `work`)."""
        self.working -= 1
        try:
            yield
        finally:
            self.working += 1
