"""GET /v1/sessions/{id}/context on the real server."""

from __future__ import annotations

import uuid

import httpx


async def session_with_turns(client: httpx.AsyncClient, n: int) -> str:
    sid = f"ctx-{uuid.uuid4().hex[:8]}"
    assert (await client.post("/v1/sessions", json={"id": sid})).status_code == 201
    turns = []
    for i in range(n):
        turns.append({"role": "user", "content": f"Question {i}: what about topic {i}?"})
        turns.append({"role": "assistant", "content": f"Answer {i}: topic {i} is fine."})
    r = await client.post(f"/v1/sessions/{sid}/turns", json={"turns": turns})
    assert r.status_code == 201, r.text
    return sid


async def test_the_document_holds_the_current_turn_within_budget(
    client: httpx.AsyncClient,
) -> None:
    sid = await session_with_turns(client, 20)
    for strategy in ("full", "sliding_window", "summary", "retrieval", "hybrid"):
        r = await client.get(
            f"/v1/sessions/{sid}/context",
            params={"model": "gpt-4o-mini", "strategy": strategy, "budget": 150},
        )
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["version"] == "1" and doc["strategy"] == strategy
        assert doc["used_tokens"] <= doc["budget_tokens"] == 150
        kinds = [s["kind"] for s in doc["sections"]]
        assert kinds[-1] == "current"
        current = doc["sections"][-1]["messages"]
        assert current[-1]["content"] == "Answer 19: topic 19 is fine."
        versions = [m["stream_version"] for s in doc["sections"] for m in s["messages"]]
        assert versions == sorted(versions)  # time order
        assert len(doc["prompt_hash"]) == 64


async def test_a_query_is_the_current_turn(client: httpx.AsyncClient) -> None:
    sid = await session_with_turns(client, 3)
    r = await client.get(
        f"/v1/sessions/{sid}/context", params={"model": "claude-3-5-haiku", "query": "And now?"}
    )
    assert r.status_code == 200
    doc = r.json()
    assert doc["sections"][-1]["messages"][-1]["content"] == "And now?"
    recent = next(s for s in doc["sections"] if s["kind"] == "recent")
    assert len(recent["messages"]) == 6  # the whole short session fits
    # Reading a window records nothing.
    events = (await client.get(f"/v1/sessions/{sid}/events")).json()["data"]
    assert [e["type"] for e in events].count("ContextAssembled") == 0


async def test_context_errors(client: httpx.AsyncClient) -> None:
    sid = await session_with_turns(client, 2)
    url = f"/v1/sessions/{sid}/context"
    unknown_model = await client.get(url, params={"model": "gpt-99"})
    assert unknown_model.status_code == 422 and unknown_model.json()["field"] == "model"
    unknown_strategy = await client.get(url, params={"model": "gpt-4o", "strategy": "magic"})
    assert unknown_strategy.status_code == 422 and "hybrid" in unknown_strategy.json()["detail"]
    too_small = await client.get(url, params={"model": "gpt-4o", "budget": 3})
    assert too_small.status_code == 422 and too_small.json()["field"] == "budget"
    assert "needs at least" in too_small.json()["detail"]
    too_big = await client.get(url, params={"model": "gpt-4", "budget": 10_000_000})
    assert too_big.status_code == 422
    no_model = await client.get(url)
    assert no_model.status_code in (400, 422)
    missing = await client.get("/v1/sessions/nope-nope/context", params={"model": "gpt-4o"})
    assert missing.status_code == 404
    empty = f"ctx-{uuid.uuid4().hex[:8]}"
    await client.post("/v1/sessions", json={"id": empty})
    no_turns = await client.get(f"/v1/sessions/{empty}/context", params={"model": "gpt-4o"})
    assert no_turns.status_code == 422 and "query" in no_turns.json()["detail"]


async def wait_for_embeddings(client: httpx.AsyncClient) -> None:
    import asyncio

    for _ in range(150):
        lag = (await client.get("/v1/projections")).json()
        if lag[0]["name"] == "embeddings" and lag[0]["events_behind"] == 0:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"embeddings still behind: {lag}")


async def test_projection_lag_and_retrieval_by_meaning(client: httpx.AsyncClient) -> None:
    sid = f"ctx-{uuid.uuid4().hex[:8]}"
    other = f"ctx-{uuid.uuid4().hex[:8]}"
    user = f"user-{uuid.uuid4().hex[:6]}"
    for s in (sid, other):
        r = await client.post("/v1/sessions", json={"id": s, "user_id": user})
        assert r.status_code == 201
    filler = [{"role": "user", "content": f"Small talk number {i} about the weather."}
              for i in range(30)]  # fmt: skip
    fact = {"role": "user", "content": "My sister Maren lives in Trondheim and teaches violin."}
    r = await client.post(f"/v1/sessions/{sid}/turns", json={"turns": [fact, *filler]})
    assert r.status_code == 201
    r = await client.post(
        f"/v1/sessions/{other}/turns",
        json={"turns": [{"role": "user", "content": "My favourite food is Ethiopian injera."}]},
    )
    assert r.status_code == 201
    await wait_for_embeddings(client)

    # A small budget: the fact is far outside the recent window, found by retrieval.
    r = await client.get(
        f"/v1/sessions/{sid}/context",
        params={"model": "gpt-4o-mini", "budget": 200, "query": "Where does my sibling live?"},
    )
    assert r.status_code == 200, r.text
    retrieved = next(s for s in r.json()["sections"] if s["kind"] == "retrieved")
    assert any("Trondheim" in m["content"] for m in retrieved["messages"])

    # The same user's other session, only when asked for.
    params: dict[str, str | int] = {
        "model": "gpt-4o-mini",
        "budget": 200,
        "query": "What dish do I like to eat?",
    }
    without = (await client.get(f"/v1/sessions/{sid}/context", params=params)).json()
    assert "injera" not in str(without)
    across = await client.get(
        f"/v1/sessions/{sid}/context", params={**params, "across_sessions": "true"}
    )
    found = [
        m
        for s in across.json()["sections"]
        if s["kind"] == "retrieved"
        for m in s["messages"]
        if "injera" in m["content"]
    ]
    assert found and found[0]["session_id"] == other


async def test_budget_shares_are_settable(client: httpx.AsyncClient) -> None:
    sid = await session_with_turns(client, 10)
    url = f"/v1/sessions/{sid}/context"
    r = await client.get(
        url, params={"model": "gpt-4o", "budget": 300, "shares": "1,0,0", "query": "x"}
    )
    assert r.status_code == 200
    assert [s["kind"] for s in r.json()["sections"]] == ["recent", "current"]
    bad = await client.get(url, params={"model": "gpt-4o", "shares": "0.9,0.9,0.9"})
    assert bad.status_code == 422 and "shares" in bad.json()["detail"]
    garbage = await client.get(url, params={"model": "gpt-4o", "shares": "lots"})
    assert garbage.status_code == 422 and garbage.json()["field"] == "shares"
