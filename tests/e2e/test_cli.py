"""The `contextgate` command itself: verify, replay, db, settings errors."""

from __future__ import annotations

import shutil
import signal
import subprocess
import time

import asyncpg
import httpx

from tests.conftest import ROOT
from tests.e2e.conftest import CLI, Server, free_port, server_env


def run(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


async def test_verify_and_replay_commands(client: httpx.AsyncClient, server: Server) -> None:
    r = await client.post("/v1/sessions", json={"id": "cli-verify"})
    assert r.status_code == 201
    r = await client.post(
        "/v1/sessions/cli-verify/turns",
        json={"turns": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]},
    )
    assert r.status_code == 201

    ok = run("verify", env=server.env())
    assert ok.returncode == 0, ok.stderr
    assert "every hash chain holds" in ok.stdout

    replay = run("replay", env=server.env())
    assert replay.returncode == 0, replay.stderr
    after = (await client.get("/v1/sessions/cli-verify")).json()
    assert after["turn_count"] == 2 and after["version"] == 3

    conn = await asyncpg.connect(server.database_url)
    try:
        position = await conn.fetchval(
            "SELECT global_position FROM events WHERE stream_id = 'session:cli-verify' "
            "AND stream_version = 2"
        )
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute(
                'UPDATE events SET metadata = \'{"actor": "mallory"}\' WHERE global_position = $1',
                position,
            )
    finally:
        await conn.close()
    broken = run("verify", env=server.env())
    assert broken.returncode == 1
    assert "BROKEN" in broken.stderr and f"global position {position}" in broken.stderr
    assert "session:cli-verify" in broken.stderr


def test_settings_errors_are_clear(server: Server) -> None:
    env = server_env(server.database_url, CONTEXTGATE_PORT="eighty")
    r = run("serve", env=env, timeout=60)
    assert r.returncode == 2
    assert "CONTEXTGATE_PORT" in r.stderr and "integer" in r.stderr
    bad_toml = ROOT / ".contextgate" / "bad-settings.toml"
    bad_toml.parent.mkdir(exist_ok=True)
    bad_toml.write_text("prot = 8080\n")
    r = run("--config", str(bad_toml), "migrate", env=server.env(), timeout=60)
    assert r.returncode == 2 and "unknown setting 'prot'" in r.stderr


def test_a_database_that_cannot_be_used_is_one_clear_line(server: Server) -> None:
    """Refused, an unknown host, an unknown database: exit 1 and one line that names
    the database (its password hidden) and the cause; no traceback, nothing served."""
    refused = f"postgresql://contextgate:s3cret@127.0.0.1:{free_port()}/contextgate"
    no_host = "postgresql://contextgate:s3cret@db.invalid:5432/contextgate"
    base, _, query = server.database_url.partition("?")
    no_db = f"{base.rsplit('/', 1)[0]}/no_such_db?{query}"
    cases = [
        (refused, "serve", "ConnectionRefusedError"),
        (no_host, "migrate", "gaierror"),
        (no_db, "migrate", 'database "no_such_db" does not exist'),
    ]
    for url, command, cause in cases:
        r = run(command, env=server_env(url), timeout=60)
        assert r.returncode == 1, (url, r.returncode, r.stderr)
        line = r.stderr.strip()
        assert line.startswith("contextgate: cannot use the database at "), line
        assert cause in line and "DATABASE_URL" in line and "\n" not in line, line
        assert "s3cret" not in line and "Traceback" not in r.stderr, line
        assert "listening" not in r.stdout


def test_embedded_db_commands() -> None:
    data_dir = ROOT / ".contextgate" / "cli-db-test"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = server_env("unused")
    env.pop("CONTEXTGATE_DATABASE_URL")
    env["CONTEXTGATE_DATA_DIR"] = str(data_dir)
    try:
        assert run("db", "status", env=env).returncode == 3
        started = run("db", "start", env=env)
        assert started.returncode == 0, started.stderr
        status = run("db", "status", env=env)
        assert status.returncode == 0 and '"running": true' in status.stdout
        url = run("db", "url", env=env)
        assert url.returncode == 0 and url.stdout.startswith("postgresql+asyncpg://")
        migrated = run("migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
        stopped = run("db", "stop", env=env)
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert run("db", "status", env=env).returncode == 3
    finally:
        run("db", "stop", env=env)
        shutil.rmtree(data_dir, ignore_errors=True)


def test_sigterm_stops_the_embedded_database_serve_started() -> None:
    data_dir = ROOT / ".contextgate" / "cli-serve-test"
    shutil.rmtree(data_dir, ignore_errors=True)
    env = server_env("unused", CONTEXTGATE_DATA_DIR=str(data_dir), CONTEXTGATE_JOBS="false")
    env.pop("CONTEXTGATE_DATABASE_URL")
    port = free_port()
    serve = subprocess.Popen(
        [CLI, "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert run("db", "status", env=env).returncode == 0, "serve started the database"
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=60) in (0, 128 + signal.SIGTERM)
        assert run("db", "status", env=env).returncode == 3, "and stopped it on SIGTERM"
    finally:
        if serve.poll() is None:
            serve.kill()
        run("db", "stop", env=env)
        shutil.rmtree(data_dir, ignore_errors=True)
