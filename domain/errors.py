"""Errors the domain and its ports raise; the API maps each to one HTTP status."""

from __future__ import annotations


class DomainError(Exception):
    """Base class: a request the domain refuses, with a message that says what to fix."""


class ValidationError(DomainError):
    """An input breaks a rule of the domain (422)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class NotFound(DomainError):
    """The named session or stream does not exist (404)."""


class AlreadyExists(DomainError):
    """A session with that id already exists (409)."""


class WrongExpectedVersion(DomainError):
    """Optimistic concurrency: the stream is not at the version the caller expected (409)."""

    def __init__(self, stream_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"stream {stream_id!r} is at version {actual}, not the expected {expected}; "
            "read it again and retry with the current version"
        )
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual


class SessionClosed(DomainError):
    """Turns cannot be appended to a closed session (409)."""


class IdempotencyKeyReused(DomainError):
    """The idempotency key was already used for a different request (422)."""


class StreamNotFound(DomainError):
    """An append that requires an existing stream found none (404 once worded by a use case)."""


class StreamClosed(DomainError):
    """The stream was closed by an earlier append and accepts no more events (409)."""
