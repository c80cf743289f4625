"""The real `contextgate serve` process on a free port, against a fresh database."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import anthropic
import httpx
import openai
import pytest

from tests.conftest import ROOT, TEMPLATE, _admin, with_database
from tests.fakes.fake_upstream import FakeUpstream

ADMIN_KEY = "cg_test_admin_key_" + "x" * 24
MAX_BODY = 65_536
CLI = str(Path(sys.executable).parent / "contextgate")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    base_url: str
    database_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def env(self) -> dict[str, str]:
        return server_env(self.database_url)


def server_env(database_url: str, **extra: str) -> dict[str, str]:
    # Nothing from the ambient environment decides which providers exist.
    ambient = ("CONTEXTGATE_", "OPENAI_", "ANTHROPIC_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ambient)}
    env.pop("DATABASE_URL", None)
    env.update(
        CONTEXTGATE_DATABASE_URL=database_url,
        CONTEXTGATE_ADMIN_KEY=ADMIN_KEY,
        CONTEXTGATE_MAX_BODY_BYTES=str(MAX_BODY),
        CONTEXTGATE_LOG_LEVEL="warning",
        CONTEXTGATE_DB_ROLE="contextgate_app",
        **extra,
    )
    return env


def start_server(database_url: str, log: Path, **extra: str) -> Server:
    port = free_port()
    out = log.open("wb")
    process = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        cwd=ROOT,
        env=server_env(database_url, **extra),
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return Server(base, database_url, process, log)
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not become ready:\n{log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="module")
async def module_database_url(pg_admin_uri: str, template_uri: str) -> AsyncIterator[str]:
    name = f"cg_e2e_{uuid.uuid4().hex[:12]}"
    await _admin(pg_admin_uri, f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
    yield with_database(pg_admin_uri, name)
    await _admin(pg_admin_uri, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def server(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log = tmp_path_factory.mktemp("server") / "serve.log"
    srv = start_server(module_database_url, log)
    yield srv
    stop_server(srv)


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeUpstream]:
    """The fake provider (tests/fakes/fake_upstream.py), one per test module."""
    with FakeUpstream() as upstream:
        yield upstream


@pytest.fixture
async def client(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as c:
        yield c


# The proxy's clients, on the `proxy_server` fixture that each proxy test module starts
# with its own configuration (the fake's capture cleared for every test).


@pytest.fixture
async def oa(proxy_server: Server, fake: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    fake.clear()
    async with openai.AsyncOpenAI(
        base_url=proxy_server.base_url + "/v1", api_key=ADMIN_KEY, max_retries=0, timeout=30
    ) as client:
        yield client


@pytest.fixture
async def ant(proxy_server: Server, fake: FakeUpstream) -> AsyncIterator[anthropic.AsyncAnthropic]:
    fake.clear()
    async with anthropic.AsyncAnthropic(
        base_url=proxy_server.base_url, api_key=ADMIN_KEY, max_retries=0, timeout=30
    ) as client:
        yield client


@pytest.fixture
async def http(proxy_server: Server) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    async with httpx.AsyncClient(
        base_url=proxy_server.base_url, headers=headers, timeout=30
    ) as client:
        yield client
