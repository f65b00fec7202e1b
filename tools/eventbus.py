"""Fan-out of stored progress events to live watchers (WebSocket, SSE), behind one interface.

    EventBus                     base: ``await publish(job_id, event)``, ``subscribe(job_id)`` (an async
    │                            context manager yielding a `Subscription`), ``await start()``,
    │                            ``await close()``, ``publish_threadsafe(job_id, event)`` for threads
    ├── InProcessBus             one server process (the default)
    └── RedisBus                 Redis pub/sub, channel ``<prefix>:job:<id>``, for several replicas

A `Subscription` is an async iterator of event dicts with a bounded queue (`maxsize`). When a
publish finds the queue full, the subscriber is marked slow: its queue is emptied (memory is
released at once), `slow` becomes true, `wait_slow()` returns, and the iterator raises
`SlowConsumer`. Nothing ever grows without bound.

The bus is a live channel only: the store (`tools.events`) is the truth. A subscriber may see an
event twice or miss one (Redis reconnecting); readers deduplicate by `seq` and fill gaps from the
store. After the Redis connection comes back, every local subscriber receives `RESYNC` (a marker
dict ``{"type": "_resync"}``): events may have been missed, read the store.

RedisBus design: ONE pub/sub connection per server process, subscribed to the pattern
``<prefix>:job:*``, dispatches to the local subscribers of each job (so subscribing locally costs no
Redis round trip and cannot race with a publish: the pattern is active once `start()` returns).
Every replica receives every job's events; progress events are a few per second per job, so this
is cheap. Publishing uses a separate pooled connection. The reader reconnects with exponential
backoff (0.1 s doubling to 5 s). A publish that fails after retries is delivered to this process's
own subscribers so at least they see it, and logged; other replicas catch up from the store on
their next event or RESYNC.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import os
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE = 1000
RESYNC_TYPE = "_resync"
RESYNC: dict[str, Any] = {"type": RESYNC_TYPE}


class SlowConsumer(Exception):
    """The subscriber did not keep up: its bounded queue overflowed."""


class Subscription:
    """Events of one job for one watcher, in publish order (see the module doc).

    A deque and one waiter future rather than an asyncio.Queue: delivery to thousands of watchers
    per event is the hot path of the fan-out."""

    def __init__(self, job_id: int, maxsize: int = DEFAULT_QUEUE_SIZE) -> None:
        self.job_id = job_id
        self.maxsize = maxsize
        self._items: deque[dict[str, Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._slow = asyncio.Event()
        self.closed = False

    @property
    def slow(self) -> bool:
        return self._slow.is_set()

    async def wait_slow(self) -> None:
        await self._slow.wait()

    def qsize(self) -> int:
        return len(self._items)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def deliver(self, event: dict[str, Any]) -> bool:
        """Queue `event` (from the loop's thread). False when the subscriber is (now) slow."""
        if self.closed or self._slow.is_set():
            return False
        if len(self._items) >= self.maxsize:
            self._items.clear()  # release the memory at once
            self._slow.set()
            self._wake()
            return False
        self._items.append(event)
        self._wake()
        return True

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        """The next event; SlowConsumer once marked slow; StopAsyncIteration once closed and empty."""
        items = self._items
        while not items:
            if self._slow.is_set():
                raise SlowConsumer(f"subscriber of job {self.job_id} fell more than {self.maxsize} events behind")
            if self.closed:
                raise StopAsyncIteration
            waiter = self._waiter = asyncio.get_running_loop().create_future()
            try:
                await waiter
            finally:
                self._waiter = None
        if self._slow.is_set():
            raise SlowConsumer(f"subscriber of job {self.job_id} fell more than {self.maxsize} events behind")
        return items.popleft()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._wake()


class EventBus(abc.ABC):
    """Publish/subscribe of event dicts per job; subscribers are local to this process."""

    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self.queue_size = queue_size
        self._subscribers: dict[int, set[Subscription]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    # lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def close(self) -> None:
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                sub.close()
        self._subscribers.clear()

    # publishing ----------------------------------------------------------------------------------
    @abc.abstractmethod
    async def publish(self, job_id: int, event: dict[str, Any]) -> None:
        """Send `event` (already stored) to every subscriber of `job_id`, in any process."""

    def publish_threadsafe(self, job_id: int, event: dict[str, Any]) -> None:
        """`publish` from a thread other than the bus's loop (fire and forget, order kept)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            log.warning("event bus not started; event %s of job %s not published", event.get("seq"), job_id)
            return
        if _running_loop() is loop:
            loop.create_task(self.publish(job_id, event)).add_done_callback(_log_failure)
            return
        asyncio.run_coroutine_threadsafe(self.publish(job_id, event), loop).add_done_callback(_log_failure)

    # subscribing ---------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def subscribe(self, job_id: int, *, queue_size: int | None = None) -> AsyncIterator[Subscription]:
        sub = Subscription(job_id, queue_size or self.queue_size)
        self._subscribers.setdefault(job_id, set()).add(sub)
        try:
            yield sub
        finally:
            sub.close()
            subs = self._subscribers.get(job_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subscribers[job_id]

    def subscriber_count(self, job_id: int | None = None) -> int:
        if job_id is not None:
            return len(self._subscribers.get(job_id, ()))
        return sum(len(s) for s in self._subscribers.values())

    def _dispatch(self, job_id: int, event: dict[str, Any]) -> None:
        """Deliver to this process's subscribers of `job_id` (on the loop's thread)."""
        for sub in list(self._subscribers.get(job_id, ())):
            sub.deliver(event)

    def _dispatch_all(self, event: dict[str, Any]) -> None:
        for subs in list(self._subscribers.values()):
            for sub in list(subs):
                sub.deliver(event)


def _log_failure(future: Any) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("publishing an event failed: %r", future.exception())


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class InProcessBus(EventBus):
    """Subscribers and publishers in one process."""

    async def publish(self, job_id: int, event: dict[str, Any]) -> None:
        self._dispatch(job_id, event)


class RedisBus(EventBus):
    """Redis pub/sub across server replicas (see the module doc)."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "vta",
        queue_size: int = DEFAULT_QUEUE_SIZE,
        backoff_base_s: float = 0.1,
        backoff_max_s: float = 5.0,
        publish_retries: int = 3,
        client_name: str | None = None,
    ) -> None:
        super().__init__(queue_size=queue_size)
        self.url = url
        self.prefix = prefix
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.publish_retries = publish_retries
        self.client_name = client_name or f"vta-eventbus-{os.getpid()}"
        self._client: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self.reconnects = 0

    def channel(self, job_id: int) -> str:
        return f"{self.prefix}:job:{job_id}"

    @property
    def pattern(self) -> str:
        return f"{self.prefix}:job:*"

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, *, wait_s: float = 5.0) -> None:
        """Connect and subscribe; waits up to `wait_s` for the subscription (else keeps trying in
        the background and logs)."""
        import redis.asyncio as aioredis

        await super().start()
        self._connected = asyncio.Event()
        self._client = aioredis.Redis.from_url(self.url, socket_keepalive=True, client_name=self.client_name)
        self._reader = asyncio.create_task(self._read_loop(), name="redis-bus-reader")
        try:
            await asyncio.wait_for(self._connected.wait(), wait_s)
        except TimeoutError:
            log.error("Redis at %s not reachable yet; progress fan-out keeps retrying", self.url)

    async def wait_connected(self, timeout: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def close(self) -> None:
        self._closing = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.aclose()
            self._client = None
        await super().close()

    async def publish(self, job_id: int, event: dict[str, Any]) -> None:
        if self._client is None:
            raise RuntimeError("RedisBus.publish before start()")
        payload = json.dumps(event, separators=(",", ":"))
        delay = self.backoff_base_s
        for attempt in range(self.publish_retries + 1):
            try:
                await self._client.publish(self.channel(job_id), payload)
                return
            except Exception as exc:  # redis.ConnectionError, TimeoutError, OSError
                if attempt == self.publish_retries:
                    log.warning("could not publish event %s of job %s to Redis: %s", event.get("seq"), job_id, exc)
                    break
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
        self._dispatch(job_id, event)

    async def _read_loop(self) -> None:
        delay = self.backoff_base_s
        ever_connected = False
        prefix = f"{self.prefix}:job:".encode()
        while not self._closing:
            pubsub = self._client.pubsub()
            try:
                await pubsub.psubscribe(self.pattern)
                while True:  # wait for the confirmation: from here on nothing published is missed
                    msg = await pubsub.get_message(timeout=None)
                    if msg is not None and msg.get("type") == "psubscribe":
                        break
                self._connected.set()
                if ever_connected:
                    self.reconnects += 1
                    log.info("Redis event bus reconnected; subscribers resync from the store")
                    self._dispatch_all(RESYNC)
                ever_connected = True
                delay = self.backoff_base_s
                while True:
                    msg = await pubsub.get_message(timeout=None)
                    if msg is None or msg.get("type") != "pmessage":
                        continue
                    channel = msg.get("channel") or b""
                    if isinstance(channel, str):
                        channel = channel.encode()
                    if not channel.startswith(prefix):
                        continue
                    try:
                        job_id = int(channel[len(prefix) :])
                        event = json.loads(msg["data"])
                    except (ValueError, TypeError):
                        log.warning("ignoring a malformed message on %r", channel)
                        continue
                    self._dispatch(job_id, event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._connected.clear()
                if self._closing:
                    break
                log.warning("Redis event bus connection lost (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max_s)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()


def create_event_bus(redis_url: str | None, *, prefix: str = "vta", queue_size: int = DEFAULT_QUEUE_SIZE) -> EventBus:
    """RedisBus when `redis_url` is set, else InProcessBus."""
    if redis_url:
        return RedisBus(redis_url, prefix=prefix, queue_size=queue_size)
    return InProcessBus(queue_size=queue_size)


__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "RESYNC",
    "RESYNC_TYPE",
    "EventBus",
    "InProcessBus",
    "RedisBus",
    "SlowConsumer",
    "Subscription",
    "create_event_bus",
]
