"""Errors as RFC 9457 problem details (application/problem+json), each saying what to fix."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, SerializationException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR

from domain import errors

PROBLEM = "application/problem+json"
log = logging.getLogger("contextgate.api")

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

DOMAIN_STATUS: dict[type[Exception], int] = {
    errors.ValidationError: 422,
    errors.NotFound: 404,
    errors.AlreadyExists: 409,
    errors.WrongExpectedVersion: 409,
    errors.SessionClosed: 409,
    errors.IdempotencyKeyReused: 422,
}


def problem(
    status: int,
    detail: str,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response[bytes]:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update({k: v for k, v in extra.items() if v is not None})
    return Response(
        content=msgspec.json.encode(body), status_code=status, media_type=PROBLEM, headers=headers
    )


def on_domain_error(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    status = next((s for t, s in DOMAIN_STATUS.items() if isinstance(exc, t)), 400)
    extra: dict[str, Any] = {}
    if isinstance(exc, errors.ValidationError):
        extra["field"] = exc.field
    if isinstance(exc, errors.WrongExpectedVersion):
        extra["expected_version"] = exc.expected
        extra["current_version"] = exc.actual
    return problem(status, str(exc), request.url.path, **extra)


def on_validation_error(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[bytes]:
    items = exc.extra if isinstance(exc.extra, list) else []
    fields = [
        {"field": str(i.get("key") or "body"), "message": str(i.get("message"))}
        for i in items
        if isinstance(i, dict)
    ]
    if not fields:
        # msgspec could not parse the body at all.
        return problem(400, f"the body is not valid JSON: {exc.detail}", request.url.path)
    if fields[0]["field"] == "data" and fields[0]["message"] == "'data'":
        return problem(
            400, "this call needs a JSON body (Content-Type: application/json)", request.url.path
        )
    detail = "; ".join(f"{f['field']}: {f['message']}" for f in fields)
    return problem(422, detail, request.url.path, field=fields[0]["field"], errors=fields)


def on_http_exception(request: Request[Any, Any, Any], exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    detail = exc.detail
    if isinstance(exc.__cause__, SerializationException):
        detail = f"the body is not valid JSON: {exc.detail}"
    elif status == 413:
        limit = request.app.state.get("max_body_bytes")
        detail = f"the body is larger than the limit of {limit} bytes; send less per request"
    elif status == 405:
        detail = f"{request.method} is not allowed on {request.url.path}"
    elif status == 404 and detail == "Not Found":
        detail = f"no route for {request.method} {request.url.path}"
    return problem(status, detail, request.url.path, headers=exc.headers)


def on_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[bytes]:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem(
        HTTP_500_INTERNAL_SERVER_ERROR,
        "an unexpected error occurred; nothing was half-written, and the request can be retried",
        request.url.path,
    )


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    errors.DomainError: on_domain_error,
    ValidationException: on_validation_error,
    HTTPException: on_http_exception,
    Exception: on_unexpected,
}
