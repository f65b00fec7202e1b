"""Credentials never reach a log line.

WebSocket and EventSource clients could only authenticate with `?token=<JWT>` in the URL, and
uvicorn writes every request line (``"GET /api/v1/jobs/3/stream?token=eyJ... HTTP/1.1" 200``,
``"WebSocket /ws/jobs/3?token=eyJ..." [accepted]``) to its access and error logs. Streams now take
single-use tickets (`tools.stream_tickets`), and `?token=` keeps working for one release; so
`install_log_redaction()` makes every log record of the process (uvicorn's access and error
loggers, ours, libraries') carry its message with

    * the values of credential-carrying query parameters (`SENSITIVE_PARAMS`: token, ticket,
      access_token, api_key, key, signature, X-Amz-Signature, ...) replaced by ``[REDACTED]``;
    * ``Bearer <anything>`` replaced by ``Bearer [REDACTED]``;
    * anything shaped like a JWT (``eyJ<b64>.<b64>.<b64>``) replaced by ``[REDACTED]``;
    * the token of a signed download link (``/dl/<signed>`` in a path) replaced by ``[REDACTED]``.

It wraps the log record factory, so it covers records of every logger whatever handlers and
formatters a logging configuration (uvicorn's `dictConfig`, the operator's) installs later; it is
installed once per process (`create_app` calls it) and a `RedactingFilter` is also put on the
handlers of the root and uvicorn loggers present at that time, for records made elsewhere.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

SENSITIVE_PARAMS = (
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "ticket",
    "api_key",
    "apikey",
    "key",
    "secret",
    "client_secret",
    "password",
    "signature",
    "sig",
    "code",
    "x-amz-signature",
    "x-amz-credential",
    "x-amz-security-token",
)
REDACTED = "[REDACTED]"

_PARAM_RE = re.compile(
    r"(?i)([?&;](?:" + "|".join(re.escape(p) for p in SENSITIVE_PARAMS) + r")=)[^&;\s\"'#]*",
)
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+")
_JWT_RE = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
# a signed download link carries its credential in the path: /api/v1/dl/<signed>
_DL_PATH_RE = re.compile(r"(/dl/)[^\s?\"'#/]+")

_lock = threading.Lock()
_installed = False


def redact(text: str) -> str:
    """`text` with credential query values, bearer tokens, JWTs and download-link tokens replaced by
    ``[REDACTED]``."""
    if not text:
        return text
    text = _PARAM_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER_RE.sub(lambda m: m.group(1) + REDACTED, text)
    text = _DL_PATH_RE.sub(lambda m: m.group(1) + REDACTED, text)
    return _JWT_RE.sub(REDACTED, text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float | bool) or value is None:
        return value
    try:
        text = str(value)
    except Exception:  # an unprintable argument: the handler reports it when it formats the record
        return value
    cleaned = redact(text)
    return cleaned if cleaned != text else value


def redact_record(record: logging.LogRecord) -> logging.LogRecord:
    """Redact the record's message and each of its arguments in place (the arguments keep their
    places: uvicorn's access formatter unpacks them), so its rendering carries no credential."""
    if isinstance(record.msg, str):
        record.msg = redact(record.msg)
    args = record.args
    if isinstance(args, tuple):
        record.args = tuple(_redact_value(a) for a in args)
    elif isinstance(args, dict):
        record.args = {k: _redact_value(v) for k, v in args.items()}
    return record


class RedactingFilter(logging.Filter):
    """A filter (for loggers or handlers) that redacts each record and lets it through."""

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(record)
        return True


def install_log_redaction() -> None:
    """Redact every log record of this process from now on (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            return redact_record(previous(*args, **kwargs))

        logging.setLogRecordFactory(factory)
        _installed = True
    for name in ("", "uvicorn", "uvicorn.access", "uvicorn.error"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())
