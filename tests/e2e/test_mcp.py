"""The MCP server, driven by the `mcp` client: over streamable HTTP at /mcp on the real
server process, and over stdio (`contextgate mcp`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import httpx2
import pytest
from mcp import ClientSession
from mcp.client.client import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, TextResourceContents

from domain.access import hash_key, new_key
from tests.conftest import ROOT
from tests.e2e.conftest import ADMIN_KEY, CLI, Server

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
TOOLS = {"get_context", "search_history", "append_turn", "list_sessions"}


@asynccontextmanager
async def mcp_http(server: Server, headers: dict[str, str]) -> AsyncIterator[ClientSession]:
    async with (
        httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60)) as http,
        streamable_http_client(f"{server.base_url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def new_session(
    client: httpx.AsyncClient, turns: list[tuple[str, str]], tenant: str | None = None
) -> str:
    sid = f"mcp-{uuid.uuid4().hex[:8]}"
    headers = {"X-Tenant-Id": tenant} if tenant else {}
    r = await client.post("/v1/sessions", json={"id": sid, "user_id": "ada"}, headers=headers)
    assert r.status_code == 201, r.text
    body = {"turns": [{"role": role, "content": content} for role, content in turns]}
    r = await client.post(f"/v1/sessions/{sid}/turns", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return sid


def structured(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error_text(result: CallToolResult) -> str:
    assert result.is_error
    return " ".join(getattr(c, "text", "") for c in result.content)


async def read_json(session: ClientSession, uri: str) -> Any:
    result = await session.read_resource(uri)
    content = result.contents[0]
    assert isinstance(content, TextResourceContents)
    assert content.mime_type == "application/json"
    return json.loads(content.text)


TURNS = [
    ("user", "We are planning a sailing trip to the Azores in June."),
    ("assistant", "Great: the Azores high usually brings steady winds in June."),
    ("user", "Which island has the best marina for a catamaran?"),
    ("assistant", "Horta on Faial is the classic stop for crossing yachts."),
]


async def test_tools_and_resources_over_http(client: httpx.AsyncClient, server: Server) -> None:
    await new_session(client, TURNS[:1])
    sid = await new_session(client, TURNS)
    async with mcp_http(server, AUTH) as mcp:
        tools = {t.name for t in (await mcp.list_tools()).tools}
        assert tools == TOOLS
        templates = {
            t.uri_template for t in (await mcp.list_resource_templates()).resource_templates
        }
        assert templates == {
            "contextgate://sessions/{session_id}/events{?after,limit}",
            "contextgate://sessions/{session_id}/context/{model}",
        }

        doc = structured(await mcp.call_tool("get_context", {"session_id": sid, "model": "gpt-4o"}))
        assert doc["version"] == "1" and doc["session_id"] == sid and doc["strategy"] == "hybrid"
        assert doc["sections"][-1]["kind"] == "current"
        assert doc["sections"][-1]["messages"][-1]["content"] == TURNS[-1][1]
        small = structured(
            await mcp.call_tool(
                "get_context",
                {"session_id": sid, "model": "gpt-4o", "strategy": "sliding_window",
                 "budget": 200, "query": "And the weather?"},
            )
        )  # fmt: skip
        assert small["strategy"] == "sliding_window" and small["budget_tokens"] == 200
        assert small["sections"][-1]["messages"][-1]["content"] == "And the weather?"

        listed = structured(await mcp.call_tool("list_sessions", {"limit": 200}))
        assert sid in [s["id"] for s in listed["data"]]
        mine = next(s for s in listed["data"] if s["id"] == sid)
        assert mine["turn_count"] == 4 and mine["tenant_id"] == "default"
        page = structured(await mcp.call_tool("list_sessions", {"limit": 1, "status": "open"}))
        assert len(page["data"]) == 1 and page["has_more"] and page["next_cursor"]

        appended = structured(
            await mcp.call_tool(
                "append_turn", {"session_id": sid, "role": "user", "content": "Book Horta, please."}
            )
        )
        assert appended["version"] == 6 and appended["position"] > 0  # 1 = SessionOpened
        assert appended["type"] == "UserMessage" and not appended["replayed"]
        events = (await client.get(f"/v1/sessions/{sid}/events")).json()["data"]
        assert events[-1]["global_position"] == appended["position"]
        assert events[-1]["data"]["content"] == "Book Horta, please."
        assert events[-1]["metadata"]["actor"] == "admin-env"  # the key's id

        body = await read_json(mcp, f"contextgate://sessions/{sid}/events")
        assert body["session_id"] == sid and not body["has_more"]
        assert [e["stream_version"] for e in body["data"]] == [1, 2, 3, 4, 5, 6]
        assert body["data"][0]["type"] == "SessionOpened" and len(body["data"][0]["hash"]) == 64
        body = await read_json(mcp, f"contextgate://sessions/{sid}/events?after=2&limit=2")
        assert [e["stream_version"] for e in body["data"]] == [3, 4]
        assert body["has_more"] and body["next_after"] == 4

        window = await read_json(mcp, f"contextgate://sessions/{sid}/context/gpt-4o-mini")
        assert window["strategy"] == "hybrid" and window["model"] == "gpt-4o-mini"
        assert window["sections"][-1]["messages"][-1]["content"] == "Book Horta, please."

        # The embeddings worker indexes new turns within a few seconds.
        hits: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = structured(
                await mcp.call_tool(
                    "search_history",
                    {"query": "marina for a catamaran", "session_id": sid, "limit": 3},
                )
            )
            hits = found["hits"]
            if hits:
                break
            await asyncio.sleep(0.5)
        assert hits, "no search hits within 60 s"
        top = hits[0]
        assert top["session_id"] == sid and top["seq"] == 3 and top["role"] == "user"
        assert top["content"] == TURNS[2][1] and top["score"] > 0
        assert top["stream_version"] == 4 and top["global_position"] > 0
        linked = await read_json(mcp, top["event_uri"])
        assert linked["data"][0]["global_position"] == top["global_position"]
        assert linked["data"][0]["event_id"] == top["event_id"]
        answers = structured(
            await mcp.call_tool(
                "search_history", {"query": "marina", "session_id": sid, "role": "assistant"}
            )
        )
        assert all(h["role"] == "assistant" for h in answers["hits"])


async def test_errors_come_back_as_tool_errors(client: httpx.AsyncClient, server: Server) -> None:
    sid = await new_session(client, TURNS[:2])
    async with mcp_http(server, AUTH) as mcp:
        missing = await mcp.call_tool(
            "append_turn", {"session_id": "no-such-session", "role": "user", "content": "hi"}
        )
        assert "session 'no-such-session' does not exist; create it first" in error_text(missing)
        strategy = await mcp.call_tool(
            "get_context", {"session_id": sid, "model": "gpt-4o", "strategy": "magic"}
        )
        assert "unknown context strategy 'magic'" in error_text(strategy)
        model = await mcp.call_tool("get_context", {"session_id": sid, "model": "gpt-99"})
        assert "gpt-99" in error_text(model)
        bad_id = await mcp.call_tool("get_context", {"session_id": "bad id!", "model": "gpt-4o"})
        assert "session_id" in error_text(bad_id)
        role = await mcp.call_tool(
            "append_turn", {"session_id": sid, "role": "wizard", "content": "x"}
        )
        assert role.is_error
        closed = await client.post(f"/v1/sessions/{sid}/close", json={})
        assert closed.status_code == 200
        late = await mcp.call_tool(
            "append_turn", {"session_id": sid, "role": "user", "content": "too late"}
        )
        assert "is closed" in error_text(late)
        with pytest.raises(MCPError, match="does not exist"):
            await mcp.read_resource("contextgate://sessions/no-such-session/events")
        with pytest.raises(MCPError, match="gpt-99"):
            await mcp.read_resource(f"contextgate://sessions/{sid}/context/gpt-99")


async def test_tenant_scoping(client: httpx.AsyncClient, server: Server) -> None:
    tenant_a, tenant_b = f"mcp-a-{uuid.uuid4().hex[:6]}", f"mcp-b-{uuid.uuid4().hex[:6]}"
    sid = await new_session(client, TURNS[:2], tenant=tenant_a)
    async with mcp_http(server, AUTH | {"X-Tenant-Id": tenant_b}) as other:
        listed = structured(await other.call_tool("list_sessions", {}))
        assert listed["data"] == []
        hidden = await other.call_tool("get_context", {"session_id": sid, "model": "gpt-4o"})
        assert "does not exist" in error_text(hidden)
        write = await other.call_tool(
            "append_turn", {"session_id": sid, "role": "user", "content": "from b"}
        )
        assert "does not exist" in error_text(write)
        with pytest.raises(MCPError, match="does not exist"):
            await other.read_resource(f"contextgate://sessions/{sid}/events")
    async with mcp_http(server, AUTH | {"X-Tenant-Id": tenant_a}) as own:
        listed = structured(await own.call_tool("list_sessions", {}))
        assert [s["id"] for s in listed["data"]] == [sid]
        assert listed["data"][0]["tenant_id"] == tenant_a
        appended = structured(
            await own.call_tool("append_turn", {"session_id": sid, "role": "user", "content": "a"})
        )
        assert appended["version"] == 4
    seen = await client.get(f"/v1/sessions/{sid}", headers={"X-Tenant-Id": tenant_a})
    assert seen.json()["turn_count"] == 3
    assert (await client.get(f"/v1/sessions/{sid}")).status_code == 404  # default tenant


async def add_key(server: Server, tenant: str, *roles: str) -> str:
    key = new_key()
    conn = await asyncpg.connect(server.database_url)
    try:
        await conn.execute(
            "INSERT INTO api_keys (tenant_id, key_id, key_hash, name, roles) "
            "VALUES ($1, $2, $3, 'test', $4)",
            tenant, f"k-{uuid.uuid4().hex[:8]}", hash_key(key), list(roles),
        )  # fmt: skip
    finally:
        await conn.close()
    return key


async def test_a_tenant_bound_key_keeps_its_tenant_and_roles(
    client: httpx.AsyncClient, server: Server
) -> None:
    tenant = f"mcp-k-{uuid.uuid4().hex[:6]}"
    sid = await new_session(client, TURNS[:2], tenant=tenant)
    auditor = {"Authorization": f"Bearer {await add_key(server, tenant, 'auditor')}"}
    async with mcp_http(server, auditor) as mcp:  # no X-Tenant-Id: the key's own tenant
        listed = structured(await mcp.call_tool("list_sessions", {}))
        assert [s["id"] for s in listed["data"]] == [sid]
        structured(await mcp.call_tool("get_context", {"session_id": sid, "model": "gpt-4o"}))
        refused = await mcp.call_tool(
            "append_turn", {"session_id": sid, "role": "user", "content": "x"}
        )
        assert "lacks the role" in error_text(refused)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as raw:
        other = await raw.post(
            "/mcp", json=INITIALIZE, headers=MCP_HEADERS | auditor | {"X-Tenant-Id": "default"}
        )
        assert other.status_code == 422 and tenant in other.json()["detail"]
    app_key = {"x-api-key": await add_key(server, tenant, "app")}
    async with mcp_http(server, app_key) as mcp:
        appended = structured(
            await mcp.call_tool("append_turn", {"session_id": sid, "role": "user", "content": "y"})
        )
        assert appended["version"] == 4


async def test_the_2026_protocol_acts_as_the_caller_too(
    client: httpx.AsyncClient, server: Server
) -> None:
    """A client that negotiates 2026-07-28 sends self-contained requests (no initialize)."""
    tenant = f"mcp-m-{uuid.uuid4().hex[:6]}"
    sid = await new_session(client, TURNS[:2], tenant=tenant)
    headers = AUTH | {"X-Tenant-Id": tenant}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60)) as http:
        transport = streamable_http_client(f"{server.base_url}/mcp", http_client=http)
        async with Client(transport, mode="auto") as mcp:
            assert mcp.protocol_version == "2026-07-28"
            listed = await mcp.call_tool("list_sessions", {})
            assert [s["id"] for s in structured(listed)["data"]] == [sid]
            events = await mcp.read_resource(f"contextgate://sessions/{sid}/events?limit=1")
            content = events.contents[0]
            assert isinstance(content, TextResourceContents)
            assert json.loads(content.text)["data"][0]["type"] == "SessionOpened"


INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "raw", "version": "0"},
    },
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}


async def test_a_missing_or_wrong_key_gets_401(server: Server) -> None:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as raw:
        for path in ("/mcp", "/mcp/"):
            for headers in ({}, {"Authorization": "Bearer cg_wrong"}, {"x-api-key": "cg_wrong"}):
                r = await raw.post(path, json=INITIALIZE, headers=MCP_HEADERS | headers)
                assert r.status_code == 401, (path, headers, r.text)
                assert r.headers["content-type"].startswith("application/problem+json")
                assert r.headers["www-authenticate"].startswith("Bearer")
                assert "key" in r.json()["detail"]
        bad_tenant = await raw.post(
            "/mcp", json=INITIALIZE, headers=MCP_HEADERS | AUTH | {"X-Tenant-Id": "no spaces"}
        )
        assert bad_tenant.status_code == 422 and bad_tenant.json()["field"] == "X-Tenant-Id"
        ok = await raw.post("/mcp", json=INITIALIZE, headers=MCP_HEADERS | AUTH)
        assert ok.status_code == 200, ok.text
        assert ok.json()["result"]["serverInfo"]["name"] == "contextgate"
    # The SDK's client reports the refusal too.
    with pytest.raises(BaseExceptionGroup) as refused:
        async with mcp_http(server, {"Authorization": "Bearer cg_wrong"}):
            pass
    assert refused.group_contains(MCPError)


async def test_stdio(client: httpx.AsyncClient, server: Server) -> None:
    sid = await new_session(client, TURNS[:2])
    params = StdioServerParameters(
        command=CLI, args=["mcp", "--tenant", "default"], env=server.env(), cwd=ROOT
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as mcp:
        info = await mcp.initialize()
        assert info.server_info.name == "contextgate"
        doc = structured(await mcp.call_tool("get_context", {"session_id": sid, "model": "gpt-4o"}))
        assert doc["sections"][-1]["messages"][-1]["content"] == TURNS[1][1]
        appended = structured(
            await mcp.call_tool(
                "append_turn", {"session_id": sid, "role": "user", "content": "Via stdio."}
            )
        )
        assert appended["version"] == 4
        missing = await mcp.call_tool("get_context", {"session_id": "nope-nope", "model": "gpt-4o"})
        assert "does not exist" in error_text(missing)
    events = (await client.get(f"/v1/sessions/{sid}/events")).json()["data"]
    assert events[-1]["data"]["content"] == "Via stdio."
    assert events[-1]["global_position"] == appended["position"]
    assert events[-1]["metadata"]["actor"] == "local:mcp-stdio"


def test_stdio_stdout_carries_only_protocol_messages(server: Server) -> None:
    """Migrations, model loading and logs must not reach stdout: every line is JSON-RPC."""
    sid = f"mcp-raw-{uuid.uuid4().hex[:6]}"
    headers = AUTH | {"X-Tenant-Id": "raw"}
    r = httpx.post(f"{server.base_url}/v1/sessions", json={"id": sid}, headers=headers)
    assert r.status_code == 201
    r = httpx.post(
        f"{server.base_url}/v1/sessions/{sid}/turns",
        json={"turns": [{"role": "user", "content": "Hello over a pipe"}]},
        headers=headers,
    )
    assert r.status_code == 201
    messages = [
        INITIALIZE,
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
         "params": {"name": "get_context", "arguments": {"session_id": sid, "model": "gpt-4o"}}},
    ]  # fmt: skip
    stdin = "".join(json.dumps(m) + "\n" for m in messages)
    # stdin stays open until the answer to the call is in: EOF ends the server.
    process = subprocess.Popen(
        [CLI, "mcp", "--tenant", "raw"],
        cwd=ROOT,
        env=server.env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    watchdog = threading.Timer(120, process.kill)  # a hung server ends the reads below
    watchdog.start()
    process.stdin.write(stdin)
    process.stdin.flush()
    lines = []
    for line in process.stdout:
        lines.append(line)
        if json.loads(line).get("id") == 2:
            break
    process.stdin.close()
    lines += process.stdout.readlines()
    code = process.wait(timeout=30)
    watchdog.cancel()
    errors = process.stderr.read() if process.stderr else ""
    assert code == 0, errors
    replies = [json.loads(line) for line in lines]  # nothing else on stdout
    assert [m.get("id") for m in replies] == [1, 2]
    doc = replies[1]["result"]["structuredContent"]
    assert doc["session_id"] == sid
    assert doc["sections"][-1]["messages"][-1]["content"] == "Hello over a pipe"


def test_stdio_refuses_a_bad_tenant(server: Server) -> None:
    done = subprocess.run(
        [CLI, "mcp", "--tenant", "no spaces"],
        cwd=ROOT, env=server.env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == ""
    assert "tenant must be 1-64 letters" in done.stderr
