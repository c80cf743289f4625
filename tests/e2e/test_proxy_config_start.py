"""`contextgate serve` with a proxy TOML it cannot use: it stops at once, before touching
the database or listening, with exit status 2 and a message naming the offending key.

The database URL points at a port nothing listens on: a server that went past the
config check would fail there instead (another status, another message)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import CLI, free_port, server_env

UNREACHABLE_DB = "postgresql://contextgate:secret@127.0.0.1:9/never_used"

PROVIDER = """
[providers.fake]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
api_key_env = "FAKE_KEY"
"""


def model(extra_deployment: str = "", extra_alias: str = "") -> str:
    return (
        PROVIDER
        + f"\n[models.fast]\n{extra_alias}"
        + '[[models.fast.deployments]]\nprovider = "fake"\nmodel = "gpt-4o-mini"\n'
        + extra_deployment
    )


CASES = {
    "unknown-key-in-a-deployment": (
        model("temprature = 0.2\n"),
        ["unknown key 'models.fast.deployments[0].temprature'", "known keys here"],
    ),
    "unknown-key-in-a-model": (
        model(extra_alias='stratgy = "weighted"\n'),
        ["unknown key 'models.fast.stratgy'"],
    ),
    "negative-price": (
        model("price = { input = -1, output = 2 }\n"),
        ["models.fast.deployments[0].price.input", "must be a price of 0 or more, got -1"],
    ),
    "fallback-to-an-unknown-alias": (
        model(extra_alias='fallbacks = ["nowhere"]\n'),
        ["models.fast.fallbacks names 'nowhere'", "not an alias", "aliases: echo, fast"],
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_serve_refuses_a_bad_proxy_config(case: str, tmp_path: Path) -> None:
    text, expected = CASES[case]
    config = tmp_path / "contextgate.toml"
    config.write_text(text)
    port = free_port()
    env = server_env(UNREACHABLE_DB, CONTEXTGATE_CONFIG=str(config), FAKE_KEY="sk-fake")
    started = time.monotonic()
    r = subprocess.run(
        [CLI, "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith(f"contextgate: configuration error: {config}: "), r.stderr
    for words in expected:
        assert words in r.stderr, r.stderr
    assert "listening" not in r.stdout and "Traceback" not in r.stderr
    assert time.monotonic() - started < 30
    with pytest.raises(httpx.TransportError):  # nothing was ever bound to the port
        httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1)


def test_the_same_config_without_the_mistake_goes_past_the_check(tmp_path: Path) -> None:
    """The control: a good config passes the check and fails later, on the unreachable
    database (so the cases above did stop at the config)."""
    config = tmp_path / "contextgate.toml"
    config.write_text(model(extra_alias='fallbacks = ["echo"]\n'))
    env = server_env(UNREACHABLE_DB, CONTEXTGATE_CONFIG=str(config), FAKE_KEY="sk-fake")
    r = subprocess.run(
        [CLI, "serve", "--port", str(free_port())],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert "configuration error" not in r.stderr
    assert r.stderr.startswith("contextgate: cannot use the database at ")  # it went on
    assert "ConnectionRefusedError" in r.stderr
