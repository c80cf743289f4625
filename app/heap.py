"""The garbage collector and a long-lived server process.

Loading torch, transformers and two copies of the model leaves ~500,000 objects that
live as long as the process. CPython's collector walks them all at every full
collection, and on the request path that showed as a latency tail: at p95 even a
one-row query of the context endpoint took 6 ms instead of 1.4 (10,000-turn session,
ops/bench/context_latency.py; p95 22.5 ms -> 17.2 ms once frozen). Freezing moves what
exists after start-up out of the collector's sight; later garbage is collected as usual.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger("contextgate")


def freeze_startup_heap() -> int:
    """Collect once, then freeze what is left; returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    frozen = gc.get_freeze_count()
    log.info("froze %d start-up objects out of the garbage collector's scans", frozen)
    return frozen
