"""Request bodies: authenticate before reading one, and bound its size.

FastAPI reads (and spools to disk) a form or JSON body before a route's dependencies run, so an
anonymous 200 MiB upload used to be received in full and only then refused with 401.
`BodyGuardMiddleware` (pure ASGI, installed by `web.main.create_app`) looks at the headers of every
HTTP request that carries a body (`Content-Length` > 0 or `Transfer-Encoding`) before anything
reads it:

- under `/api/v1/`, except the routes that are meant for anonymous callers (`ANONYMOUS_PATHS`:
  sign-in, registration, the stateless intent parser), the request must carry
  `Authorization: Bearer <token>` with a valid, unexpired access token (`tools.auth.
  decode_access_token`, signature and claims only; the route's own dependency still checks that
  the user exists and is active). Otherwise: 401 without reading a byte of the body;
- a body is bounded by `MAX_REQUEST_BODY_BYTES` when the token checked out, else (anonymous API
  routes, the Slack endpoints, the trainers' `/internal` events route with its per-job tokens) by
  `MAX_UNAUTHENTICATED_BODY_BYTES`. A declared `Content-Length` over the bound is answered 413 at
  once; a chunked body is counted as it streams, and the request is answered 413 as soon as it
  passes the bound (whatever the route was doing with it: what it staged is cleaned up by the
  route, as for any failed upload).

The early answers carry `Connection: close`, so the server stops receiving the rest of the body.
Bodies are never buffered here: the route still streams what it accepts.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tools.auth import decode_access_token
from tools.errors import AuthenticationError, PayloadTooLargeError
from web.errors import error_response

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1/"
# The /api/v1 routes that take a body from anonymous callers (each body is small).
ANONYMOUS_PATHS = frozenset({"/api/v1/auth/token", "/api/v1/auth/register", "/api/v1/agent/parse"})


class BodyGuardMiddleware:
    """401 before the body on authenticated API routes; 413 over the size bounds."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        max_unauthenticated_body_bytes: int,
        anonymous_paths: frozenset[str] = ANONYMOUS_PATHS,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_unauthenticated_body_bytes = min(max_unauthenticated_body_bytes, max_body_bytes)
        self.anonymous_paths = anonymous_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        streamed = False
        authorization = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    length = None  # the server rejects a malformed length; count what arrives
                    streamed = True
            elif name == b"transfer-encoding":
                streamed = True
            elif name == b"authorization":
                authorization = value
        if not streamed and not length:
            await self.app(scope, receive, send)  # no body: nothing to guard
            return

        path: str = scope["path"]
        if path.startswith(API_PREFIX) and path not in self.anonymous_paths:
            try:
                decode_access_token(_bearer(authorization), _secret(scope))
            except AuthenticationError as exc:
                await _answer(exc, scope, receive, send)
                return
            limit = self.max_body_bytes
        else:
            limit = self.max_unauthenticated_body_bytes
        if length is not None and length > limit:
            await _answer(_too_large(limit, length), scope, receive, send)
            return
        await self._guarded(scope, receive, send, limit)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        exceeded = False
        started = False  # a response start went out (the app's or ours)
        replaced = False  # ours replaced the app's: drop what the app still sends

        async def counting_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _too_large(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return
            if message["type"] == "http.response.start" and not started:
                started = True
                if exceeded:  # the app answered the failed read its own way (e.g. FastAPI's 400)
                    replaced = True
                    await _answer(_too_large(limit), scope, receive, send)
                    return
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except Exception:
            if not exceeded:
                raise
            # The over-limit read ended the request; whatever it raised on the way is its echo.
            log.debug("%s %s: body over %d bytes", scope.get("method"), scope["path"], limit, exc_info=True)
            if not started:
                await _answer(_too_large(limit), scope, receive, send)


def _bearer(authorization: bytes) -> str:
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _secret(scope: Scope) -> str:
    state: Any = scope["app"].state
    secret: str | None = getattr(state, "secret_key", None)
    if secret is None:
        secret = state.settings.resolved_secret_key()
    return secret


def _too_large(limit: int, length: int | None = None) -> PayloadTooLargeError:
    declared = f" (Content-Length {length})" if length is not None else ""
    return PayloadTooLargeError(
        f"the request body is over the limit of {limit} bytes{declared}",
        detail={"limit_bytes": limit},
    )


async def _answer(exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
    response = error_response(exc)
    response.headers["Connection"] = "close"  # stop receiving the rest of the body
    await response(scope, receive, send)
