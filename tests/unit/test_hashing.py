"""The canonical encoding and the per-stream hash chain."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from domain.errors import ValidationError
from domain.events import RecordedEvent
from domain.hashing import (
    GENESIS_HASH,
    canonical_json,
    chain_break,
    event_hash,
    fingerprint,
    format_time,
    normalize_json,
)

WHEN = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def make_chain(
    datas: list[dict[str, Any]], metadata: dict[str, Any] | None = None
) -> list[RecordedEvent]:
    """A stream of events hashed exactly the way the stores hash them."""
    prev = GENESIS_HASH
    out = []
    for version, data in enumerate(datas, start=1):
        fields: dict[str, Any] = {
            "event_id": uuid.UUID(int=version),
            "tenant_id": "t",
            "stream_id": "session:s",
            "stream_version": version,
            "type": "UserMessage",
            "schema_version": 1,
            "data": normalize_json(data),
            "metadata": normalize_json(metadata or {}),
            "recorded_at": WHEN,
        }
        h = event_hash(prev, **fields)
        out.append(
            RecordedEvent(
                global_position=version, transaction_id=1, prev_hash=prev, hash=h, **fields
            )
        )
        prev = h
    return out


def first_break(events: list[RecordedEvent]) -> tuple[int, str] | None:
    prev = GENESIS_HASH
    for version, event in enumerate(events, start=1):
        why = chain_break(prev, version, event)
        if why is not None:
            return version, why
        prev = event.hash
    return None


# --- canonical JSON -----------------------------------------------------------------------


def test_canonical_json_is_key_order_independent() -> None:
    a = {"b": 1, "a": {"y": [1, 2], "x": None}, "c": "ü"}
    b = {"c": "ü", "a": {"x": None, "y": [1, 2]}, "b": 1}
    assert list(a) != list(b)
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) == '{"a":{"x":null,"y":[1,2]},"b":1,"c":"ü"}'.encode()


def test_canonical_json_keeps_list_order() -> None:
    assert canonical_json([1, 2]) != canonical_json([2, 1])


def test_integral_floats_are_written_as_ints() -> None:
    assert normalize_json(2.0) == 2 and isinstance(normalize_json(2.0), int)
    assert normalize_json({"x": [1e20, -3.0, 0.5]}) == {"x": [10**20, -3, 0.5]}
    assert canonical_json(normalize_json({"v": 1e20})) == b'{"v":100000000000000000000}'
    assert canonical_json(normalize_json(1.5e-7)) == b"1.5e-07"


def test_integral_floats_hash_like_ints() -> None:
    as_float = make_chain([{"n": 2.0, "big": 1e20, "nested": [3.0]}])
    as_int = make_chain([{"n": 2, "big": 10**20, "nested": [3]}])
    assert as_float[0].hash == as_int[0].hash
    different = make_chain([{"n": 2.5, "big": 10**20, "nested": [3]}])
    assert different[0].hash != as_int[0].hash


def test_normalize_keeps_bools_none_and_strings() -> None:
    value = {"t": True, "f": False, "n": None, "s": "x", "l": (1, "a")}
    assert normalize_json(value) == {"t": True, "f": False, "n": None, "s": "x", "l": [1, "a"]}
    assert normalize_json(True) is True  # not turned into 1


def test_normalize_takes_lists_of_ints_as_they_are() -> None:
    """The fast path (a window's positions): a list, equal, and a copy; anything else in
    the list still goes through the checks."""
    sources = (3, 1, 2)
    out = normalize_json({"sources": sources})["sources"]
    assert out == [3, 1, 2] and type(out) is list
    listed = [1, 2]
    assert normalize_json(listed) is not listed
    assert normalize_json([1, True, 2.0]) == [1, True, 2]  # bools kept, floats made ints
    assert [type(v) for v in normalize_json([1, True, 2.0])] == [int, bool, int]
    with pytest.raises(ValidationError) as info:
        normalize_json({"x": [1, 2, float("nan")]})
    assert info.value.field == "$.x[2]"


@pytest.mark.parametrize(
    ("value", "path"),
    [
        (float("nan"), "$.x"),
        (float("inf"), "$.x"),
        (float("-inf"), "$.x"),
        ("a\x00b", "$.x"),
        ([1, "\x00"], "$.x[1]"),
        ({"deep": {"k": float("nan")}}, "$.x.deep.k"),
        ("\ud800", "$.x"),
        (b"bytes", "$.x"),
        ({1: "int key"}, "$.x"),
        (datetime.now(UTC), "$.x"),
    ],
)
def test_values_jsonb_cannot_store_are_rejected(value: Any, path: str) -> None:
    with pytest.raises(ValidationError) as info:
        normalize_json({"x": value})
    assert info.value.field == path
    assert path in str(info.value)


def test_nul_in_a_key_is_rejected() -> None:
    with pytest.raises(ValidationError, match="NUL"):
        normalize_json({"a\x00": 1})


def test_format_time_is_utc_with_microseconds() -> None:
    plus_two = WHEN.astimezone(timezone(timedelta(hours=2)))
    assert format_time(WHEN) == "2026-01-02T03:04:05.678901+00:00"
    assert format_time(plus_two) == format_time(WHEN)
    assert format_time(WHEN.replace(microsecond=0)) == "2026-01-02T03:04:05.000000+00:00"


def test_event_hash_is_sha256_of_prev_and_canonical_body() -> None:
    event = make_chain([{"content": "hi"}])[0]
    body = canonical_json(
        {
            "event_id": str(event.event_id),
            "tenant_id": "t",
            "stream_id": "session:s",
            "stream_version": 1,
            "type": "UserMessage",
            "schema_version": 1,
            "data": {"content": "hi"},
            "metadata": {},
            "recorded_at": "2026-01-02T03:04:05.678901+00:00",
        }
    )
    assert event.hash == hashlib.sha256(GENESIS_HASH + body).digest()
    assert len(event.hash) == 32


def test_fingerprint_depends_on_stream_and_events() -> None:
    base = fingerprint("s", [("T", 1, {"a": 1, "b": 2})])
    assert base == fingerprint("s", [("T", 1, {"b": 2, "a": 1})])
    assert base != fingerprint("other", [("T", 1, {"a": 1, "b": 2})])
    assert base != fingerprint("s", [("U", 1, {"a": 1, "b": 2})])
    assert base != fingerprint("s", [("T", 2, {"a": 1, "b": 2})])
    assert base != fingerprint("s", [("T", 1, {"a": 1, "b": 3})])


# --- chain_break --------------------------------------------------------------------------


def test_an_intact_chain_has_no_break() -> None:
    chain = make_chain([{"content": f"m{i}"} for i in range(4)], {"actor": "a"})
    assert chain[0].prev_hash == GENESIS_HASH
    assert first_break(chain) is None


def test_chain_break_detects_a_changed_data_field() -> None:
    chain = make_chain([{"content": "one"}, {"content": "two"}, {"content": "three"}])
    chain[1] = dataclasses.replace(chain[1], data={"content": "TWO"})
    found = first_break(chain)
    assert found is not None
    assert found[0] == 2
    assert "hash differs" in found[1] and "altered" in found[1]


@pytest.mark.parametrize(
    "change",
    [
        {"metadata": {"actor": "mallory"}},
        {"type": "AssistantMessage"},
        {"tenant_id": "other"},
        {"event_id": uuid.UUID(int=999)},
        {"recorded_at": WHEN + timedelta(microseconds=1)},
        {"schema_version": 2},
    ],
)
def test_chain_break_detects_other_changed_fields(change: dict[str, Any]) -> None:
    chain = make_chain([{"content": "one"}, {"content": "two"}], {"actor": "a"})
    chain[0] = dataclasses.replace(chain[0], **change)
    assert first_break(chain) == (
        1,
        "hash differs from the sha256 of the event's contents (the event was altered)",
    )


def test_chain_break_detects_a_changed_prev_hash() -> None:
    chain = make_chain([{"content": "one"}, {"content": "two"}, {"content": "three"}])
    chain[2] = dataclasses.replace(chain[2], prev_hash=b"\x01" * 32)
    found = first_break(chain)
    assert found is not None
    assert found[0] == 3
    assert "prev_hash differs" in found[1]


def test_chain_break_detects_a_rehashed_event_by_the_next_link() -> None:
    """Rewriting an event and recomputing its own hash still breaks the next link."""
    chain = make_chain([{"content": "one"}, {"content": "two"}])
    forged = make_chain([{"content": "ONE"}])[0]
    assert first_break([forged]) is None
    found = first_break([forged, chain[1]])
    assert found is not None
    assert found[0] == 2 and "prev_hash differs" in found[1]


def test_chain_break_detects_a_wrong_version() -> None:
    chain = make_chain([{"content": "one"}, {"content": "two"}, {"content": "three"}])
    # A missing event: the third follows the first.
    found = first_break([chain[0], chain[2]])
    assert found is not None
    assert found[0] == 2
    assert "stream version 3 where 2 was expected" in found[1]
    # An event claiming another version than the one it was hashed with.
    assert chain_break(GENESIS_HASH, 1, dataclasses.replace(chain[0], stream_version=7)) == (
        "stream version 7 where 1 was expected (an event is missing or out of place)"
    )
    renumbered = dataclasses.replace(chain[1], stream_version=5)
    why = chain_break(chain[0].hash, 5, renumbered)
    assert why is not None and "hash differs" in why


def test_envelope_is_the_canonical_json_cut_at_the_version() -> None:
    import uuid as _uuid
    from datetime import UTC, datetime

    from domain.hashing import canonical_json, envelope, event_hash, format_time

    event_id = _uuid.UUID("01a212c6-62eb-7469-a615-960ce77a35ea")
    at = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)
    data = {"content": 'Olá "quoted" \\ \n\t\u2028 é', "n": [1, 2.5, {"b": None, "a": True}]}
    metadata = {"actor": "k", "request_id": "r-1"}
    fields = dict(
        event_id=event_id,
        tenant_id="ténant",
        stream_id="session:s/1",
        type="UserMessage",
        schema_version=3,
        data=data,
        metadata=metadata,
        recorded_at=at,
    )
    before, after = envelope(**fields)  # type: ignore[arg-type]
    whole = canonical_json(
        {
            "event_id": str(event_id),
            "tenant_id": "ténant",
            "stream_id": "session:s/1",
            "stream_version": 42,
            "type": "UserMessage",
            "schema_version": 3,
            "data": data,
            "metadata": metadata,
            "recorded_at": format_time(at),
        }
    )
    assert before + b"42" + after == whole
    import hashlib

    prev = bytes(range(32))
    assert event_hash(prev, stream_version=42, **fields) == hashlib.sha256(prev + whole).digest()  # type: ignore[arg-type]


class _Color(str, enum.Enum):  # noqa: UP042 (a mixin, whose str() is not its value)
    RED = "red"


@pytest.mark.parametrize(
    "value",
    [
        {"content": "plain ascii", "tokens": 12, "name": None, "cached": False},
        {"content": "naïve café ✓ 😀", "nested": {"z": [1, 2.5, "x"], "a": {"b": 2.0}}},
        {"tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}]},
        {"color": _Color.RED, "list": (1, 2), "f": 1e20, "g": -0.0, "t": True},
        ["a", 1, None, [{"k": "v"}], 3.25],
        "just a string",
        7,
    ],
)
def test_canonical_json_is_json_dumps_with_sorted_keys(value: Any) -> None:
    # The hash chain's bytes: whatever the fast paths do, they must write what this
    # reference writes (the stored chains were hashed so, and verify rebuilds them so).
    reference = json.dumps(
        normalize_json(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert canonical_json(normalize_json(value)) == reference
    assert json.loads(reference) == json.loads(canonical_json(normalize_json(value)))


def test_non_ascii_strings_are_checked_for_surrogates_in_flat_dicts() -> None:
    with pytest.raises(ValidationError) as info:
        normalize_json({"content": "caf\u00e9 \ud800"}, "$.data")
    assert info.value.field == "$.data.content"
    with pytest.raises(ValidationError, match="NUL") as info:
        normalize_json({"content": "ok", "name": "a\x00b"}, "$.data")
    assert info.value.field == "$.data.name"
