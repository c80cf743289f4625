"""Which failures the command line reports as 'cannot use the database' (one line, exit
1) and which keep their traceback: an OSError counts only when asyncpg's connect raised
it."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from app.cli import _unreachable
from tests.e2e.conftest import free_port


def _refused() -> OSError:
    async def connect() -> None:
        await asyncpg.connect(host="127.0.0.1", port=free_port(), user="x", database="x", timeout=5)

    with pytest.raises(OSError) as info:
        asyncio.run(connect())
    return info.value


def test_a_refused_connection_is_named() -> None:
    reason = _unreachable(_refused())
    assert reason is not None and reason.startswith("ConnectionRefusedError: "), reason


def test_a_refusal_wrapped_by_another_error_is_found_through_its_cause() -> None:
    refused = _refused()
    try:
        raise RuntimeError("engine failed") from refused
    except RuntimeError as wrapped:
        reason = _unreachable(wrapped)
    assert reason is not None and reason.startswith("ConnectionRefusedError: "), reason


def test_an_os_error_raised_elsewhere_keeps_its_traceback() -> None:
    with pytest.raises(OSError) as missing:
        open("/nonexistent-contextgate-dir/model.onnx", "rb")  # noqa: SIM115
    assert _unreachable(missing.value) is None
    assert _unreachable(OSError(28, "No space left on device")) is None
    assert _unreachable(TimeoutError("an upstream call")) is None
