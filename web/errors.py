"""The one place where domain errors become HTTP responses (and WebSocket close codes).

Body of every mapped error::

    {"detail": "<message>", "error": "<ClassName>", "location": {"file", "line", "field"}?, ...extra}

`location` is present when the error names a place (a dataset file/line/field, a request field);
extra keys come from `ToolError.detail` (they never overwrite `detail`, `error` or `location`).
`RequestValidationError` keeps FastAPI's own 422 shape (`{"detail": [...]}`). Any other exception
is a 500 ``{"detail": "Internal server error", "error": "InternalServerError", "error_id"}``; the
traceback is logged with the same `error_id`. Routes never map errors by hand: they raise.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from tools.errors import (
    AuthenticationError,
    ConflictError,
    InferenceFailedError,
    InferenceUnavailableError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RetryLaterError,
    ServiceBusyError,
    ToolError,
    TooManyRequestsError,
)
from trainer_runtime.errors import (
    DatasetFormatError,
    IncompatibleDatasetError,
    ObjectNotFoundError,
    StorageError,
    StorageUnavailableError,
    TrainerRuntimeError,
)

log = logging.getLogger(__name__)

# Most specific first: the first isinstance match wins.
_STATUS: list[tuple[type[BaseException], int]] = [
    (NotFoundError, 404),
    (PermissionDeniedError, 403),
    (AuthenticationError, 401),
    (ConflictError, 409),
    (InvalidInputError, 422),
    (PayloadTooLargeError, 413),
    (TooManyRequestsError, 429),
    (ServiceBusyError, 503),
    (InferenceUnavailableError, 503),
    (InferenceFailedError, 500),
    (DatasetFormatError, 422),  # UnsafePathError included
    (IncompatibleDatasetError, 422),
    (StorageUnavailableError, 503),
    (ObjectNotFoundError, 404),
    (StorageError, 502),
]

_LOCATION_KEYS = ("file", "line", "field")

WS_UNSUPPORTED_DATA = 1003  # the client sent something we cannot act on
WS_POLICY_VIOLATION = 1008  # authentication / permission
WS_INTERNAL_ERROR = 1011


POOL_RETRY_AFTER_S = 1


def _as_domain_error(exc: BaseException) -> BaseException:
    """Non-domain errors with a known cause, as the domain error they mean: no pooled database
    connection came free within DB_POOL_TIMEOUT_S -> ServiceBusyError (503 + Retry-After)."""
    if isinstance(exc, PoolTimeoutError):
        busy = ServiceBusyError(
            "the database is busy (no connection came free within DB_POOL_TIMEOUT_S); retry later",
            retry_after_s=POOL_RETRY_AFTER_S,
        )
        busy.__cause__ = exc
        return busy
    return exc


def status_for(exc: BaseException) -> int:
    """The HTTP status an exception maps to (500 when it is not a known domain error)."""
    exc = _as_domain_error(exc)
    for cls, status in _STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def ws_close_code(exc: BaseException) -> int:
    """WebSocket close code: 1008 auth/permission, 1003 other client errors, 1011 server errors."""
    status = status_for(exc)
    if status in (401, 403):
        return WS_POLICY_VIOLATION
    if 400 <= status < 500:
        return WS_UNSUPPORTED_DATA
    return WS_INTERNAL_ERROR


def _location(values: dict[str, Any]) -> dict[str, Any] | None:
    loc = {k: values.get(k) for k in _LOCATION_KEYS}
    return loc if any(v is not None for v in loc.values()) else None


def error_body(exc: BaseException) -> dict[str, Any]:
    """The JSON body for `exc` (also what a WebSocket sends before closing)."""
    exc = _as_domain_error(exc)
    body: dict[str, Any] = {}
    location: dict[str, Any] | None = None
    extra: dict[str, Any] = {}
    if isinstance(exc, ToolError):
        message = exc.message
        extra = dict(exc.detail)
        nested = extra.pop("location", None)
        if isinstance(nested, dict):
            location = _location(nested)
        if location is None:
            location = _location(extra)
        for key in _LOCATION_KEYS:
            extra.pop(key, None)
        cause = exc.__cause__
        if location is None and isinstance(cause, DatasetFormatError):
            location = _location(cause.to_dict())
    elif isinstance(exc, DatasetFormatError):
        message = str(exc)
        location = _location(exc.to_dict())
        extra = {"message": exc.message}
    elif isinstance(exc, IncompatibleDatasetError):
        message = exc.reason
        extra = {"reason": exc.reason, "task_type": exc.task_type}
    elif isinstance(exc, ObjectNotFoundError):
        message = str(exc)
        extra = {"store": exc.store, "key": exc.key}
    elif isinstance(exc, TrainerRuntimeError):
        message = str(exc) or type(exc).__name__
    else:
        message = "Internal server error"
    body["detail"] = message
    known = isinstance(exc, ToolError | TrainerRuntimeError)
    body["error"] = type(exc).__name__ if known else "InternalServerError"
    if location is not None:
        body["location"] = location
    for key, value in extra.items():
        body.setdefault(key, value)
    return body


def error_response(exc: BaseException) -> JSONResponse:
    """The JSON error response for `exc`: the status `status_for` maps it to, the body of `error_body`,
    plus `WWW-Authenticate` on a 401 and `Retry-After` when the caller should retry later."""
    exc = _as_domain_error(exc)
    status = status_for(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    if isinstance(exc, RetryLaterError):
        headers["Retry-After"] = str(exc.retry_after_s)
    return JSONResponse(error_body(exc), status_code=status, headers=headers or None)


async def _domain_error_handler(request: Request, exc: Exception) -> JSONResponse:
    status = status_for(exc)
    if status >= 500:
        log.warning("%s %s -> %s: %s", request.method, request.url.path, status, exc)
    return error_response(exc)


async def _unhandled_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A 500 for anything unmapped; its `error_id` finds the logged traceback."""
    error_id = uuid.uuid4().hex[:16]
    log.error("unhandled error %s on %s %s", error_id, request.method, request.url.path, exc_info=exc)
    body = {"detail": "Internal server error", "error": "InternalServerError", "error_id": error_id}
    return JSONResponse(body, status_code=500)


def _finite(value: Any) -> Any:
    """`value` with every non-finite float (JSON bodies may say NaN or Infinity) as a string."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


async def _request_validation_handler(_request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's own 422 body, except that an echoed `Infinity`/`NaN` input is written as a string
    (FastAPI's handler fails to render it: a 500 for `{"learning_rate": Infinity}`)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    return JSONResponse(status_code=422, content={"detail": _finite(jsonable_encoder(errors))})


def install_error_handlers(app: FastAPI) -> None:
    """Register the mapping on `app` (FastAPI's RequestValidationError body is kept; only a
    non-finite echoed input is written as a string)."""
    app.add_exception_handler(RequestValidationError, _request_validation_handler)
    app.add_exception_handler(ToolError, _domain_error_handler)
    app.add_exception_handler(TrainerRuntimeError, _domain_error_handler)
    app.add_exception_handler(PoolTimeoutError, _domain_error_handler)
    app.add_exception_handler(Exception, _unhandled_error_handler)
