"""The sessions API over HTTP, against the real server process."""

from __future__ import annotations

import asyncio
import itertools
import uuid

import httpx

from tests.e2e.conftest import ADMIN_KEY, MAX_BODY, Server

PROBLEM = "application/problem+json"


def sid() -> str:
    return f"e2e-{uuid.uuid4().hex[:10]}"


async def create(client: httpx.AsyncClient, session_id: str, **body: object) -> dict:
    r = await client.post("/v1/sessions", json={"id": session_id, **body})
    assert r.status_code == 201, r.text
    return r.json()


async def all_events(client: httpx.AsyncClient, session_id: str) -> list[dict]:
    out: list[dict] = []
    after = 0
    while True:
        r = await client.get(
            f"/v1/sessions/{session_id}/events", params={"after": after, "limit": 50}
        )
        assert r.status_code == 200, r.text
        page = r.json()
        out.extend(page["data"])
        if not page["has_more"]:
            return out
        after = page["next_after"]


async def test_health_and_schema(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url) as c:
        assert (await c.get("/healthz")).json()["status"] == "ok"
        ready = await c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"
        # The embedding model loads in the background: ready meanwhile, and says so.
        for _ in range(600):
            models = (await c.get("/readyz")).json()["checks"]["models"]
            assert models in ("loading", "ok")
            if models == "ok":
                break
            await asyncio.sleep(0.1)
        assert models == "ok"
        schema = (await c.get("/schema/openapi.json")).json()
        assert "/v1/sessions/{session_id}/turns" in schema["paths"]
        assert "/v1/sessions/{session_id}/events" in schema["paths"]


async def test_conversation_round_trip(client: httpx.AsyncClient) -> None:
    s = sid()
    created = await create(client, s, title="Trip planning", user_id="u-1", metadata={"app": "t"})
    assert created["version"] == 1 and created["status"] == "open"
    r = await client.post(
        f"/v1/sessions/{s}/turns",
        json={
            "turns": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Book Lisbon for 3 nights from 2026-05-04."},
                {
                    "role": "assistant",
                    "content": "Done: 3 nights in Lisbon.",
                    "model": "gpt-x",
                    "usage": {"input_tokens": 12, "output_tokens": 7},
                    "cost": 0.00042,
                },
            ]
        },
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["first_version"], body["last_version"], body["replayed"]) == (2, 4, False)
    assert [e["type"] for e in body["events"]] == [
        "SystemMessage",
        "UserMessage",
        "AssistantMessage",
    ]
    assert all(e["tokens"] > 0 for e in body["events"])

    session = (await client.get(f"/v1/sessions/{s}")).json()
    assert session["turn_count"] == 3 and session["version"] == 4
    assert session["tokens_total"] == sum(e["tokens"] for e in body["events"])
    assert session["cost_total"] == "0.00042"
    assert session["title"] == "Trip planning" and session["user_id"] == "u-1"

    events = await all_events(client, s)
    assert [e["stream_version"] for e in events] == [1, 2, 3, 4]
    assert events[0]["type"] == "SessionOpened"
    assert events[2]["data"]["content"] == "Book Lisbon for 3 nights from 2026-05-04."
    assert events[0]["prev_hash"] == "0" * 64
    for before, after in itertools.pairwise(events):
        assert after["prev_hash"] == before["hash"]
        assert after["global_position"] > before["global_position"]


async def test_idempotent_append(client: httpx.AsyncClient) -> None:
    s = sid()
    await create(client, s)
    body = {"turns": [{"role": "user", "content": "only once"}]}
    headers = {"Idempotency-Key": f"k-{s}"}
    first = await client.post(f"/v1/sessions/{s}/turns", json=body, headers=headers)
    second = await client.post(f"/v1/sessions/{s}/turns", json=body, headers=headers)
    assert first.status_code == 201 and second.status_code == 200
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["events"] == first.json()["events"]
    assert second.json()["replayed"] is True
    assert len(await all_events(client, s)) == 2

    other = await client.post(
        f"/v1/sessions/{s}/turns",
        json={"turns": [{"role": "user", "content": "something else"}]},
        headers=headers,
    )
    assert other.status_code == 422
    assert "already used" in other.json()["detail"]
    assert len(await all_events(client, s)) == 2


async def test_concurrent_http_appends_keep_every_turn(client: httpx.AsyncClient) -> None:
    s = sid()
    await create(client, s)

    async def one(i: int) -> int:
        r = await client.post(
            f"/v1/sessions/{s}/turns", json={"turns": [{"role": "user", "content": f"turn {i}"}]}
        )
        return r.status_code

    codes = await asyncio.gather(*(one(i) for i in range(20)))
    assert codes == [201] * 20
    events = await all_events(client, s)
    assert [e["stream_version"] for e in events] == list(range(1, 22))
    contents = sorted(e["data"]["content"] for e in events[1:])
    assert contents == sorted(f"turn {i}" for i in range(20))


async def test_multi_turn_append_is_all_or_nothing(client: httpx.AsyncClient) -> None:
    s = sid()
    await create(client, s)
    r = await client.post(
        f"/v1/sessions/{s}/turns",
        json={"turns": [{"role": "user", "content": "fine"}, {"role": "tool", "content": "x"}]},
    )
    assert r.status_code == 422
    assert r.json()["field"] == "turns[1].tool_call_id"
    assert len(await all_events(client, s)) == 1


async def test_errors_are_problem_details(client: httpx.AsyncClient, server: Server) -> None:
    s = sid()
    await create(client, s)
    turns = f"/v1/sessions/{s}/turns"

    bad_json = await client.post(
        turns, content=b'{"turns": [', headers={"content-type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert bad_json.headers["content-type"].startswith(PROBLEM)
    assert "not valid JSON" in bad_json.json()["detail"]

    invalid = await client.post(turns, json={"turns": [{"role": "usr", "content": "x"}]})
    assert invalid.status_code == 422 and invalid.json()["field"] == "turns[0].role"

    unknown_field = await client.post(turns, json={"turns": [{"role": "user", "text": "x"}]})
    assert unknown_field.status_code == 422 and "text" in unknown_field.json()["detail"]

    missing = await client.get(f"/v1/sessions/{sid()}")
    assert missing.status_code == 404 and "does not exist" in missing.json()["detail"]
    missing_append = await client.post(
        f"/v1/sessions/{sid()}/turns", json={"turns": [{"role": "user", "content": "x"}]}
    )
    assert missing_append.status_code == 404

    conflict = await client.post(
        turns, json={"turns": [{"role": "user", "content": "x"}], "expected_version": 7}
    )
    assert conflict.status_code == 409
    assert conflict.json()["current_version"] == 1 and conflict.json()["expected_version"] == 7

    duplicate = await client.post("/v1/sessions", json={"id": s})
    assert duplicate.status_code == 409

    big = "a" * (MAX_BODY + 10)
    too_big = await client.post(turns, json={"turns": [{"role": "user", "content": big}]})
    assert too_big.status_code == 413 and str(MAX_BODY) in too_big.json()["detail"]

    no_body = await client.post(turns)
    assert no_body.status_code == 400

    bad_limit = await client.get("/v1/sessions", params={"limit": 0})
    assert bad_limit.status_code == 422 and bad_limit.json()["field"] == "limit"

    bad_id = await client.get("/v1/sessions/" + "x" * 200)
    assert bad_id.status_code == 422

    async with httpx.AsyncClient(base_url=server.base_url) as anon:
        no_key = await anon.get("/v1/sessions")
        assert no_key.status_code == 401 and no_key.headers["content-type"].startswith(PROBLEM)
        assert "WWW-Authenticate" in no_key.headers
        wrong = await anon.get("/v1/sessions", headers={"Authorization": "Bearer nope-nope"})
        assert wrong.status_code == 401
        x_api_key = await anon.get("/v1/sessions", headers={"x-api-key": ADMIN_KEY})
        assert x_api_key.status_code == 200

    # Nothing above wrote anything to the session.
    assert len(await all_events(client, s)) == 1


async def test_closed_session_refuses_turns(client: httpx.AsyncClient) -> None:
    s = sid()
    await create(client, s)
    closed = await client.post(f"/v1/sessions/{s}/close", json={"reason": "done"})
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    r = await client.post(
        f"/v1/sessions/{s}/turns", json={"turns": [{"role": "user", "content": "x"}]}
    )
    assert r.status_code == 409 and "closed" in r.json()["detail"]


async def test_list_sessions_paginates_and_filters(client: httpx.AsyncClient) -> None:
    tenant = {"X-Tenant-Id": f"t-{uuid.uuid4().hex[:8]}"}
    ids = [sid() for _ in range(7)]
    for i in ids:
        assert (
            await client.post("/v1/sessions", json={"id": i}, headers=tenant)
        ).status_code == 201
    await client.post(f"/v1/sessions/{ids[0]}/close", headers=tenant)

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/sessions", params=params, headers=tenant)).json()
        seen.extend(s["id"] for s in page["data"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert seen == list(reversed(ids))  # newest first, each exactly once

    closed = (await client.get("/v1/sessions", params={"status": "closed"}, headers=tenant)).json()
    assert [s["id"] for s in closed["data"]] == [ids[0]]
    future = (
        await client.get(
            "/v1/sessions", params={"created_after": "2100-01-01T00:00:00Z"}, headers=tenant
        )
    ).json()
    assert future["data"] == []
    naive = await client.get(
        "/v1/sessions", params={"created_after": "2020-01-01T00:00:00"}, headers=tenant
    )
    assert naive.status_code == 422
    bad_cursor = await client.get("/v1/sessions", params={"cursor": "garbage"}, headers=tenant)
    assert bad_cursor.status_code == 422 and bad_cursor.json()["field"] == "cursor"


async def test_tenants_are_isolated(client: httpx.AsyncClient) -> None:
    s = sid()
    await create(client, s)
    other = {"X-Tenant-Id": "other-tenant"}
    assert (await client.get(f"/v1/sessions/{s}", headers=other)).status_code == 404
    assert (await client.get(f"/v1/sessions/{s}/events", headers=other)).status_code == 404
    listed = (await client.get("/v1/sessions", headers=other)).json()
    assert s not in [x["id"] for x in listed["data"]]
    # The same id can exist in another tenant, as a separate session.
    assert (await client.post("/v1/sessions", json={"id": s}, headers=other)).status_code == 201


async def test_imported_turns_keep_their_times(client: httpx.AsyncClient) -> None:
    s = sid()
    await create(client, s)
    said = "2023-05-08T13:56:00+02:00"
    r = await client.post(
        f"/v1/sessions/{s}/turns",
        json={"turns": [{"role": "user", "content": "I adopted a dog.", "occurred_at": said}]},
    )
    assert r.status_code == 201, r.text
    events = await all_events(client, s)
    assert events[1]["data"]["occurred_at"] == "2023-05-08T11:56:00+00:00"
    r = await client.post(
        f"/v1/sessions/{s}/turns",
        json={"turns": [{"role": "user", "content": "x", "occurred_at": "2023-05-08T13:56:00"}]},
    )
    assert r.status_code == 422
    assert r.json()["field"] == "turns[0].occurred_at" and "time zone" in r.json()["detail"]
    r = await client.post(
        f"/v1/sessions/{s}/turns",
        json={"turns": [{"role": "user", "content": "x", "occurred_at": "yesterday"}]},
    )
    assert r.status_code in (400, 422) and "occurred_at" in r.text
    assert len(await all_events(client, s)) == 2
