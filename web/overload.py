"""A bound on the HTTP requests the server works on at once.

`OverloadMiddleware` (pure ASGI, installed by `web.main.create_app`) lets at most
`MAX_REQUESTS_IN_FLIGHT` HTTP requests run at the same time. A request that finds them all busy
waits up to `REQUEST_QUEUE_TIMEOUT_S` for one to finish; after that it is answered at once with
503, `Retry-After` and the error body of `web.errors` (`ServiceBusyError`), instead of queueing
into the database pool's or the client's timeout.

Why it also prevents pool deadlocks: a request holds at most one pooled connection at a time
(`web.deps`: authentication uses a short session of its own, the request's session is closed when
the route returns), but a connection can be held while its request waits for a worker thread (a
synchronous route's response is validated in a second thread step). With T worker threads and C
pooled connections, all threads can only be stuck waiting for connections held by requests that
wait for a thread when T + C requests are in flight. So the bound is at most T + C - 1 (given C,
`db_connections`, T read from anyio's default thread limiter): with the defaults 64 < 40 + 40.

A request counts from arrival until its response *starts*: a streamed answer (Server-Sent Events,
file downloads) no longer does request work once its headers are out, and must not hold a slot for
its whole life. `/health` and `/metrics` are never bounded (probes must see an overloaded server),
and neither are WebSockets (`web.routes.ws` / chat have their own bounds).
"""

from __future__ import annotations

import asyncio
import logging
import time

import anyio.to_thread
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tools.errors import ServiceBusyError
from web.errors import error_response

log = logging.getLogger(__name__)

EXEMPT_PATHS = frozenset({"/health", "/metrics"})
RETRY_AFTER_S = 1


class OverloadMiddleware:
    """At most `max_in_flight` HTTP requests at once; the next waits `queue_timeout_s`, then 503."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int,
        queue_timeout_s: float,
        db_connections: int | None = None,
        exempt_paths: frozenset[str] = EXEMPT_PATHS,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.app = app
        self.max_in_flight = max_in_flight  # lowered to threads + db_connections - 1 at the first request
        self.db_connections = db_connections
        self.queue_timeout_s = max(0.0, queue_timeout_s)
        self.exempt_paths = exempt_paths
        self.in_flight = 0  # requests holding a slot now
        self.rejected = 0  # requests answered 503 since start (tests, logs)
        self._slots: asyncio.Semaphore | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_warning = 0.0

    def _semaphore(self) -> asyncio.Semaphore:
        # One per event loop: a test may serve the same app from a second loop after the first ended.
        loop = asyncio.get_running_loop()
        if self._slots is None or self._loop is not loop:
            if self.db_connections is not None:
                threads = int(anyio.to_thread.current_default_thread_limiter().total_tokens)
                self.max_in_flight = max(1, min(self.max_in_flight, threads + self.db_connections - 1))
            self._slots = asyncio.Semaphore(self.max_in_flight)
            self._loop = loop
            self.in_flight = 0
        return self._slots

    async def _acquire(self, slots: asyncio.Semaphore) -> bool:
        if not slots.locked():
            await slots.acquire()  # a free slot: returns without waiting
            return True
        if self.queue_timeout_s <= 0:
            return False
        try:
            await asyncio.wait_for(slots.acquire(), self.queue_timeout_s)
        except TimeoutError:
            return False
        return True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt_paths:
            await self.app(scope, receive, send)
            return
        slots = self._semaphore()
        if not await self._acquire(slots):
            await self._reject(scope, receive, send)
            return
        self.in_flight += 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.in_flight -= 1
                slots.release()

        async def send_and_release(message: Message) -> None:
            if message["type"] == "http.response.start":
                release()  # the request's work is done; a streamed body needs no slot
            await send(message)

        try:
            await self.app(scope, receive, send_and_release)
        finally:
            release()

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.rejected += 1
        now = time.monotonic()
        if now - self._last_warning > 10.0:  # one line per 10 s, not one per refused request
            self._last_warning = now
            log.warning(
                "overloaded: %d requests in flight (MAX_REQUESTS_IN_FLIGHT), %d answered 503 so far",
                self.max_in_flight,
                self.rejected,
            )
        exc = ServiceBusyError(
            f"the server is busy ({self.max_in_flight} requests in flight); retry after {RETRY_AFTER_S} s",
            retry_after_s=RETRY_AFTER_S,
            detail={"max_in_flight": self.max_in_flight},
        )
        await error_response(exc)(scope, receive, send)
