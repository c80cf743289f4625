"""Liveness and readiness for load balancers and orchestrators (no auth)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from app.api.schemas import Health


@get("/healthz", summary="Liveness: the process answers", include_in_schema=True, tags=["health"])
async def healthz() -> Health:
    return Health("ok")


@get(
    "/readyz",
    summary="Readiness: the database answers and its schema is current (and whether the "
    "embedding model is loaded yet)",
    tags=["health"],
)
async def readyz(request: Request[Any, Any, Any]) -> Response[Health]:
    state = request.app.state
    try:
        async with state.db.connection() as conn:
            revision = await conn.fetchval("SELECT version_num FROM alembic_version")
    except Exception as exc:  # any failure to reach the database means not ready
        return Response(Health("unavailable", {"database": type(exc).__name__}), status_code=503)
    if revision != state.schema_head:
        checks = {"database": "ok", "schema": f"at {revision}, expected {state.schema_head}"}
        return Response(Health("unavailable", checks), status_code=503)
    # The model loads in the background after start (seconds; the first start also
    # exports it to ONNX): a call needing it meanwhile waits, so this stays ready.
    checks = {"database": "ok", "schema": str(revision), "models": state.get("models", "ok")}
    return Response(Health("ok", checks), status_code=200)
