"""CallLoad: calls at work in the process, not those waiting on their providers."""

from __future__ import annotations

import pytest

from app.services.load import CallLoad, default_busy_at


def test_counts_calls_at_work_not_those_waiting_on_a_provider() -> None:
    load = CallLoad(busy_at=2)
    assert not load.busy()
    with load.work():
        assert load.working == 1 and not load.busy()
        with load.work():
            assert load.busy()
            with load.waiting():  # the second call waits on its provider
                assert load.working == 1 and not load.busy()
            assert load.busy()
    assert load.working == 0


def test_a_failing_call_leaves_the_count_as_it_was() -> None:
    load = CallLoad(busy_at=1)
    with pytest.raises(RuntimeError), load.work(), load.waiting():
        raise RuntimeError("provider down")
    assert load.working == 0 and not load.busy()


def test_zero_is_never_busy_and_the_default_follows_the_cpus() -> None:
    load = CallLoad(busy_at=0)
    with load.work(), load.work(), load.work():
        assert not load.busy()
    assert default_busy_at() >= 2
