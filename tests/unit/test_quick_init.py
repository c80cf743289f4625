"""domain.quick_init: the same objects as dataclasses' own __init__, built faster."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from domain.context.inputs import Candidate, Turn
from domain.context.window import ContextMessage, Section, ToolCallRef
from domain.proxy.chat import Message, ToolCall
from domain.quick_init import quick_init


@quick_init
@dataclasses.dataclass(frozen=True)
class Sample:
    a: int
    b: str = "b"
    c: list[int] = dataclasses.field(default_factory=list)
    d: int = dataclasses.field(default=4, kw_only=True)


@dataclasses.dataclass(frozen=True)
class Reference:  # the same class without quick_init
    a: int
    b: str = "b"
    c: list[int] = dataclasses.field(default_factory=list)
    d: int = dataclasses.field(default=4, kw_only=True)


@quick_init
@dataclasses.dataclass(frozen=True, slots=True)
class SlottedSample:
    a: int
    b: str = "b"
    c: list[int] = dataclasses.field(default_factory=list)
    d: int = dataclasses.field(default=4, kw_only=True)


@pytest.mark.parametrize("cls", [Sample, SlottedSample])
def test_it_builds_what_dataclasses_would(cls: type[Sample]) -> None:
    for args, kwargs in (((1,), {}), ((1, "x"), {}), ((1, "x", [2]), {"d": 5}), ((), {"a": 3})):
        quick, ref = cls(*args, **kwargs), Reference(*args, **kwargs)  # type: ignore[arg-type]
        assert dataclasses.astuple(quick) == dataclasses.astuple(ref)
    assert cls(1) == cls(1) and cls(1) != cls(1, d=5)
    assert hash(cls(1, c=())) == hash(cls(1, c=()))  # type: ignore[arg-type]
    assert cls(1).c is not cls(1).c  # a fresh list from the factory each time
    assert repr(cls(1)) == f"{cls.__name__}(a=1, b='b', c=[], d=4)"


@pytest.mark.parametrize("cls", [Sample, SlottedSample])
def test_it_stays_frozen_and_keeps_the_signature_errors(cls: type[Sample]) -> None:
    sample = cls(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.a = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        cls()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        cls(1, "x", [], 5)  # type: ignore[call-arg]  # d is keyword-only
    with pytest.raises(TypeError):
        cls(1, e=2)  # type: ignore[call-arg]
    assert getattr(cls.__init__, "quick_init", False)


def test_a_slotted_instance_stays_without_a_dict() -> None:
    assert not hasattr(SlottedSample(1), "__dict__")
    assert SlottedSample.__slots__ == ("a", "b", "c", "d")


def test_post_init_still_runs() -> None:
    @quick_init
    @dataclasses.dataclass(frozen=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("negative")

    assert Checked(1).n == 1
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)


def test_classes_it_cannot_speed_up_are_refused_when_decorated() -> None:
    @dataclasses.dataclass
    class Mutable:
        n: int

    @dataclasses.dataclass(frozen=True)
    class Hidden:
        n: int
        m: int = dataclasses.field(default=0, init=False)

    @dataclasses.dataclass(frozen=True)
    class WithInitVar:
        n: int
        scale: dataclasses.InitVar[int] = 1

    for cls in (Mutable, Hidden, WithInitVar):
        with pytest.raises(TypeError, match=cls.__name__):
            quick_init(cls)


def test_the_request_path_classes_use_it() -> None:
    now = datetime.now(UTC)
    turn = Turn(seq=1, stream_version=2, global_position=3, role="user", content="hi",
                tokens=1, created_at=now)  # fmt: skip
    assert (turn.session_id, turn.tool_calls) == (None, ())
    assert hash(turn) == hash(dataclasses.replace(turn)) and turn == dataclasses.replace(turn)
    message = ContextMessage("user", "hi", 2, "recent", source=3)
    assert Section("recent", (message,), 2, (3,)).messages == (message,)
    assert Candidate(turn, 1, None).embedding is None
    assert Message("tool", "42", tool_call_id="c1") == Message("tool", "42", (), "c1", None)
    for cls in (Turn, Candidate, ContextMessage, Section, ToolCallRef, Message, ToolCall):
        assert getattr(cls.__init__, "quick_init", False), cls
