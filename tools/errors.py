"""Domain errors raised by `tools` operations.

    ToolError
    ├── NotFoundError          the thing does not exist, or the caller may not know it exists (-> 404)
    ├── PermissionDeniedError  the caller can see the thing but may not change it (-> 403)
    ├── AuthenticationError    bad credentials or token (-> 401)
    ├── ConflictError          the request clashes with current state: duplicate name, labeled
    │                          folder into a labeled dataset, ... (-> 409)
    ├── InvalidInputError      the request's content is wrong (-> 422); wraps the
    │                          `trainer_runtime.errors.DatasetFormatError` location when there is one
    ├── PayloadTooLargeError   over an upload limit (-> 413)
    ├── RetryLaterError        try again after `retry_after_s` seconds (`Retry-After` header)
    │   ├── TooManyRequestsError   a rate limit or login throttle hit (-> 429)
    │   └── ServiceBusyError       the server is at a capacity bound (-> 503)
    ├── InferenceUnavailableError  an inference worker crashed, hung past its timeout (and was
    │                          killed) or cannot start; the next request starts a new one (-> 503)
    └── InferenceFailedError   an inference worker answered with an internal error (-> 500 naming
                               the reason); a bad image is InvalidInputError, an unloadable
                               checkpoint ConflictError

`web.errors` maps each class to its HTTP status (and WebSocket close code) in one place; any
other exception is a 500 whose body carries an `error_id` that is also logged.
"""

from __future__ import annotations

from typing import Any


class ToolError(Exception):
    """Base class of every domain error. `detail` is extra structured information."""

    def __init__(self, message: str, *, detail: dict[str, Any] | None = None) -> None:
        self.message = message
        self.detail = detail or {}
        super().__init__(message)


class NotFoundError(ToolError):
    """Missing, or hidden from the caller (private things of other users answer 404, not 403)."""


class PermissionDeniedError(ToolError):
    """Visible to the caller but not theirs to change."""


class AuthenticationError(ToolError):
    """Wrong credentials, or a missing, expired or malformed token."""


class ConflictError(ToolError):
    """Clashes with the current state."""


class InvalidInputError(ToolError):
    """The request's content is wrong; `detail` names the file/line/field when known."""


class PayloadTooLargeError(ToolError):
    """An upload exceeds a configured limit."""


class RetryLaterError(ToolError):
    """The request may succeed later; `retry_after_s` (whole seconds, >= 1) becomes `Retry-After`."""

    def __init__(self, message: str, *, retry_after_s: float, detail: dict[str, Any] | None = None) -> None:
        self.retry_after_s = max(1, int(-(-retry_after_s // 1)))  # ceil, at least one second
        super().__init__(message, detail={**(detail or {}), "retry_after_s": self.retry_after_s})


class TooManyRequestsError(RetryLaterError):
    """A rate limit (e.g. the login throttle of `tools.throttle`) was hit."""


class ServiceBusyError(RetryLaterError):
    """A capacity bound (e.g. concurrent password hashing) is full; nothing was done."""


class InferenceUnavailableError(ToolError):
    """The inference worker crashed, hung past the timeout, or cannot start (HTTP 503)."""


class InferenceFailedError(ToolError):
    """The inference worker answered with an internal error (HTTP 500 with the reason)."""
