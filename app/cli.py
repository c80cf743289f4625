"""The `contextgate` command: serve, migrate, replay, verify, compact, mcp, db, admin-key."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from app import settings as settings_module
from app.settings import Settings, SettingsError


def _settings(args: argparse.Namespace) -> Settings:
    return settings_module.load(getattr(args, "config", None))


# The database a command uses, once chosen: named in the one-line error when it cannot
# be reached (see main).
_chosen_database: str | None = None


def _database_url(settings: Settings, *, stop_at_exit: bool = False) -> str:
    """DATABASE_URL if set, else the embedded server (started if it is not running)."""
    global _chosen_database
    if settings.database_url:
        _chosen_database = settings.database_url
        return settings.database_url
    from adapters import embedded_pg

    _chosen_database = embedded_pg.start(settings.data_dir, stop_at_exit=stop_at_exit)
    return _chosen_database


def _migrate(url: str) -> None:
    from adapters.postgres import migrate

    migrate.upgrade(url)


async def _ensure_admin_key(url: str, env_key: str | None) -> str | None:
    from adapters.postgres.api_keys import PostgresApiKeys
    from adapters.postgres.database import Database

    db = Database(url, pool_size=1)
    try:
        return await PostgresApiKeys(db).ensure_admin(env_key)
    finally:
        await db.dispose()


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    overrides: dict[str, Any] = {}
    for name in ("host", "port", "workers"):
        value = getattr(args, name)
        if value is not None:
            overrides[name] = value
    settings = settings_module.validate(replace(settings, **overrides))
    # The proxy's providers and models: checked now, so a mistake stops the start.
    from app.proxy_config import load_proxy_config

    if getattr(args, "config", None):
        os.environ["CONTEXTGATE_CONFIG"] = str(args.config)  # for the app and its workers
    proxy_config = load_proxy_config(None, os.environ)

    from adapters import embedded_pg

    was_running = settings.embedded and embedded_pg.status(settings.data_dir)["running"]
    url = _database_url(settings, stop_at_exit=not was_running)
    _migrate(url)
    new_key = asyncio.run(_ensure_admin_key(url, settings.admin_key))

    from adapters.postgres.database import redact_url
    from app.main import DATABASE_URL_ENV

    where = f"http://{settings.host}:{settings.port}"
    print(f"Contextgate listening on {where}  (OpenAPI: {where}/schema)", flush=True)
    db_label = "embedded PostgreSQL in " + str(settings.data_dir) if settings.embedded else ""
    print(f"database: {db_label or redact_url(url)}", flush=True)
    providers = ", ".join(f"{p.name} ({p.kind})" for p in proxy_config.providers.values())
    print(f"providers: {providers}; default: {proxy_config.default_provider}", flush=True)
    if new_key:
        print(f"admin key (shown once, stored hashed): {new_key}", flush=True)
    elif settings.admin_key:
        print("admin key: the value of CONTEXTGATE_ADMIN_KEY", flush=True)
    else:
        print(
            "admin key: created on first start and shown then; "
            "`contextgate admin-key rotate` makes a new one",
            flush=True,
        )
    os.environ[DATABASE_URL_ENV] = url
    # Model loading draws progress bars on stderr; a server's log is no terminal.
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

    import uvicorn

    # uvicorn shuts down gracefully on SIGTERM and then raises the signal again; with the
    # default handler the process would die there, before the exit handlers that stop
    # the embedded PostgreSQL it started. This one makes that a normal exit.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    uvicorn.run(
        "app.main:create_app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=False,
        server_header=False,
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    url = _database_url(_settings(args))
    _migrate(url)
    print("migrations applied")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from adapters.postgres.audit import rebuild_projections
    from adapters.postgres.database import Database

    settings = _settings(args)
    url = _database_url(settings)
    _migrate(url)

    async def run() -> dict[str, Any]:
        db = Database(url, pool_size=1, role=settings.effective_db_role)
        try:
            return await rebuild_projections(db)
        finally:
            await db.dispose()

    result = asyncio.run(run())
    events, sessions, calls = result["events"], result["sessions"], result["calls"]
    print(
        f"rebuilt sessions and turns from {events} events of {sessions} sessions, "
        f"and the usage per day from {calls} answered calls"
    )
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from adapters.postgres.audit import PostgresAuditLog
    from adapters.postgres.database import Database
    from app.services.audit import VerifyReport, verify_log

    settings = _settings(args)
    url = _database_url(settings)

    async def run() -> VerifyReport:
        db = Database(url, pool_size=1, role=settings.effective_db_role)
        try:
            return await verify_log(PostgresAuditLog(db))
        finally:
            await db.dispose()

    report = asyncio.run(run())
    if report.first_break is not None:
        print(f"BROKEN: {report.first_break.describe()}", file=sys.stderr)
        print(f"checked {report.events} events in {report.streams} streams before the break")
        return 1
    print(f"ok: {report.events} events in {report.streams} streams, every hash chain holds")
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    from adapters.postgres.database import Database
    from adapters.postgres.session_repository import PostgresSessions
    from adapters.tokenizers import TiktokenCounter
    from app.services.compaction import compact_session, run_idle_compaction, run_summaries
    from app.workers.jobs import compaction_ports, policy_for

    settings = _settings(args)
    url = _database_url(settings)
    _migrate(url)

    async def run() -> str:
        db = Database(url, pool_size=2, role=settings.effective_db_role)
        try:
            counter = TiktokenCounter(settings.tokenizer)
            ports = compaction_ports(settings, db, PostgresSessions(db).events, counter)
            policy = policy_for(settings)
            if args.session:
                done = await compact_session(ports, args.tenant, args.session, policy)
                return f"session {args.session!r}: " + (
                    "compacted" if done else "not found or closed"
                )
            summarized = await run_summaries(ports, policy)
            compacted = await run_idle_compaction(ports, policy)
            return f"recorded {summarized} summaries, compacted {compacted} idle sessions"
        finally:
            await db.dispose()

    print(asyncio.run(run()))
    return 0


def cmd_mcp(args: argparse.Namespace) -> int:
    """MCP over stdio, as an admin of one tenant: stdout carries only protocol messages."""
    import contextlib
    import logging

    # Model loading would draw progress bars; logs go to stderr.
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    settings = _settings(args)
    logging.basicConfig(stream=sys.stderr, level=settings.log_level.upper())
    with contextlib.redirect_stdout(sys.stderr):  # until the transport takes stdout over
        from app.mcp_server import local_caller, serve_stdio
        from domain.errors import ValidationError

        try:
            caller = local_caller(args.tenant or settings.default_tenant)
        except ValidationError as exc:
            print(f"contextgate: {exc} (--tenant)", file=sys.stderr)
            return 2
        url = _database_url(settings)
        _migrate(url)

    asyncio.run(serve_stdio(settings, url, caller))
    return 0


def cmd_db(args: argparse.Namespace) -> int:
    from adapters import embedded_pg

    settings = _settings(args)
    if args.action == "url" and settings.database_url:
        from adapters.postgres.database import redact_url

        print(redact_url(settings.database_url))
        return 0
    if args.action == "start":
        url = embedded_pg.start(settings.data_dir)
        print(f"embedded PostgreSQL running: {url}")
        return 0
    if args.action == "stop":
        stopped = embedded_pg.stop(settings.data_dir)
        print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
        return 0
    current = embedded_pg.status(settings.data_dir)
    if args.action == "status":
        print(json.dumps(current, indent=2))
        return 0 if current["running"] else 3
    # url
    if not current["running"]:
        print("embedded PostgreSQL is not running; `contextgate db start`", file=sys.stderr)
        return 3
    print(current["url"])
    return 0


def cmd_admin_key(args: argparse.Namespace) -> int:
    from adapters.postgres.api_keys import PostgresApiKeys
    from adapters.postgres.database import Database

    url = _database_url(_settings(args))
    _migrate(url)

    async def run() -> str:
        db = Database(url, pool_size=1)
        try:
            return await PostgresApiKeys(db).rotate_admin()
        finally:
            await db.dispose()

    print(f"new admin key (shown once, stored hashed): {asyncio.run(run())}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="contextgate", description="The LLM gateway that remembers.")
    p.add_argument("--config", help="a TOML settings file (default: $CONTEXTGATE_CONFIG)")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="migrate and start the HTTP server")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=None, help="worker processes")
    serve.set_defaults(func=cmd_serve)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    sub.add_parser("replay", help="rebuild every projection from the event log").set_defaults(
        func=cmd_replay
    )
    sub.add_parser("verify", help="recompute every hash chain").set_defaults(func=cmd_verify)

    compact = sub.add_parser("compact", help="summarize and compact sessions now")
    compact.add_argument("--session", help="one session (default: every session that is due)")
    compact.add_argument("--tenant", default="default", help="the session's tenant")
    compact.set_defaults(func=cmd_compact)

    mcp = sub.add_parser("mcp", help="serve MCP over stdio (as an admin of one tenant)")
    mcp.add_argument("--tenant", default=None, help="the tenant (default: the default tenant)")
    mcp.set_defaults(func=cmd_mcp)

    db = sub.add_parser("db", help="the embedded PostgreSQL")
    db.add_argument("action", choices=["start", "stop", "status", "url"])
    db.set_defaults(func=cmd_db)

    key = sub.add_parser("admin-key", help="admin key management")
    key.add_argument("action", choices=["rotate"])
    key.set_defaults(func=cmd_admin_key)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except SettingsError as exc:
        print(f"contextgate: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        reason = _unreachable(exc)
        if reason is None or _chosen_database is None:
            raise
        from adapters.postgres.database import redact_url

        print(
            f"contextgate: cannot use the database at {redact_url(_chosen_database)}: "
            f"{reason}. Check DATABASE_URL (unset, the embedded PostgreSQL is used).",
            file=sys.stderr,
        )
        return 1
    return code


def _unreachable(exc: BaseException) -> str | None:
    """Why the database could not be used, when `exc` (or its cause, which SQLAlchemy
    wraps) is a failure to connect or log in; else None (a bug: its traceback stays)."""
    import asyncpg

    refused = (
        asyncpg.InvalidAuthorizationSpecificationError,  # no such role, bad password
        asyncpg.InvalidCatalogNameError,  # no such database
        asyncpg.CannotConnectNowError,  # starting up or shutting down
    )
    seen: BaseException | None = exc
    for _ in range(4):
        if seen is None:
            return None
        # Refused, no such host, no route, a timeout (TimeoutError is an OSError): only
        # from asyncpg's connect, as a full disk or a missing model file is no database's
        # fault and keeps its traceback.
        if isinstance(seen, refused) or (isinstance(seen, OSError) and _in_connect(seen)):
            return f"{type(seen).__name__}: {seen}"
        seen = seen.__cause__ or getattr(seen, "orig", None)
    return None


def _in_connect(exc: BaseException) -> bool:
    """Whether `exc` was raised in (or under) asyncpg's connection set-up."""
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(os.path.join("asyncpg", "connect_utils.py")):
            return True
        tb = tb.tb_next
    return False


if __name__ == "__main__":
    sys.exit(main())
