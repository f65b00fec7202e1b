"""tools.eventbus: InProcessBus and RedisBus (real Redis at TEST_REDIS_URL), bounded subscribers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from tests.event_helpers import redis_url, unique_prefix
from tools.eventbus import (
    RESYNC_TYPE,
    EventBus,
    InProcessBus,
    RedisBus,
    SlowConsumer,
    Subscription,
    create_event_bus,
)


def run(coro_fn: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), 30))


def ev(job_id: int, seq: int) -> dict[str, Any]:
    return {"job_id": job_id, "seq": seq, "ts": "t", "type": "log", "data": {}, "event_id": f"e{seq}"}


async def take(sub: Subscription, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        async for item in sub:
            out.append(item)
            if len(out) == n:
                break
    return out


class RecordingBus(EventBus):
    """A test double on the same base: records what is published, delivers locally."""

    def __init__(self) -> None:
        super().__init__(queue_size=10)
        self.published: list[tuple[int, dict[str, Any]]] = []

    async def publish(self, job_id: int, event: dict[str, Any]) -> None:
        self.published.append((job_id, event))
        self._dispatch(job_id, event)


@pytest.mark.parametrize("factory", [InProcessBus, RecordingBus])
def test_publish_reaches_every_subscriber_of_the_job_in_order(factory: Callable[[], EventBus]) -> None:
    async def main() -> None:
        bus = factory()
        await bus.start()
        async with bus.subscribe(1) as a, bus.subscribe(1) as b, bus.subscribe(2) as other:
            assert bus.subscriber_count(1) == 2 and bus.subscriber_count() == 3
            for seq in range(1, 6):
                await bus.publish(1, ev(1, seq))
            await bus.publish(2, ev(2, 1))
            assert [e["seq"] for e in await take(a, 5)] == [1, 2, 3, 4, 5]
            assert [e["seq"] for e in await take(b, 5)] == [1, 2, 3, 4, 5]
            assert [e["job_id"] for e in await take(other, 1)] == [2]
        assert bus.subscriber_count() == 0  # leaving the context unsubscribes
        await bus.publish(1, ev(1, 6))  # nobody listens: nothing kept
        await bus.close()

    run(main)


def test_slow_consumer_is_bounded_and_dropped() -> None:
    async def main() -> None:
        bus = InProcessBus(queue_size=3)
        await bus.start()
        async with bus.subscribe(1) as slow, bus.subscribe(1, queue_size=100) as fast:
            for seq in range(1, 11):
                await bus.publish(1, ev(1, seq))
            assert slow.slow and slow.qsize() == 0  # emptied at once
            await asyncio.wait_for(slow.wait_slow(), 1)
            with pytest.raises(SlowConsumer):
                await slow.__anext__()
            with pytest.raises(SlowConsumer):  # and stays dropped
                await slow.__anext__()
            assert not fast.slow
            assert [e["seq"] for e in await take(fast, 10)] == list(range(1, 11))
        await bus.close()

    run(main)


def test_a_waiting_reader_wakes_up_when_marked_slow() -> None:
    async def main() -> None:
        bus = InProcessBus(queue_size=2)
        await bus.start()
        async with bus.subscribe(1) as sub:
            await bus.publish(1, ev(1, 1))
            assert (await sub.__anext__())["seq"] == 1
            reader = asyncio.create_task(take(sub, 100))
            await asyncio.sleep(0)
            for seq in range(2, 50):  # the reader gets a chance only after all of these
                bus._dispatch(1, ev(1, seq))
            with pytest.raises(SlowConsumer):
                await reader

    run(main)


def test_publish_threadsafe_from_a_worker_thread() -> None:
    async def main() -> None:
        bus = InProcessBus()
        await bus.start()
        async with bus.subscribe(7) as sub:

            def worker() -> None:
                for seq in range(1, 4):
                    bus.publish_threadsafe(7, ev(7, seq))

            t = threading.Thread(target=worker)
            t.start()
            got = await take(sub, 3)
            t.join()
            assert [e["seq"] for e in got] == [1, 2, 3]

    run(main)


def test_create_event_bus_picks_the_implementation() -> None:
    assert isinstance(create_event_bus(None), InProcessBus)
    assert isinstance(create_event_bus("redis://127.0.0.1:1/0", prefix="p"), RedisBus)


# -------------------------------------------------------------------------------------------------
# Redis (real server)


@pytest.fixture
def redis() -> str:
    return redis_url()


def test_redis_bus_fans_out_across_bus_instances(redis: str) -> None:
    async def main() -> None:
        prefix = unique_prefix()
        a, b = RedisBus(redis, prefix=prefix), RedisBus(redis, prefix=prefix)
        await a.start()
        await b.start()
        assert a.connected and b.connected
        try:
            async with a.subscribe(5) as on_a, b.subscribe(5) as on_b, b.subscribe(6) as other:
                for seq in range(1, 21):
                    await a.publish(5, ev(5, seq))
                await b.publish(6, ev(6, 1))
                assert [e["seq"] for e in await take(on_a, 20)] == list(range(1, 21))
                assert [e["seq"] for e in await take(on_b, 20)] == list(range(1, 21))
                got = await take(other, 1)
                assert got == [ev(6, 1)]
            # another prefix does not hear it
            c = RedisBus(redis, prefix=unique_prefix())
            await c.start()
            try:
                async with c.subscribe(5) as isolated:
                    await a.publish(5, ev(5, 99))
                    with pytest.raises(TimeoutError):
                        await take(isolated, 1, timeout=0.3)
            finally:
                await c.close()
        finally:
            await a.close()
            await b.close()

    run(main)


def test_redis_bus_slow_consumer_is_bounded(redis: str) -> None:
    async def main() -> None:
        bus = RedisBus(redis, prefix=unique_prefix(), queue_size=5)
        await bus.start()
        try:
            async with bus.subscribe(1) as sub:
                for seq in range(1, 31):
                    await bus.publish(1, ev(1, seq))
                await asyncio.wait_for(sub.wait_slow(), 5)
                assert sub.qsize() == 0
                with pytest.raises(SlowConsumer):
                    await take(sub, 30)
        finally:
            await bus.close()

    run(main)


def test_redis_bus_reconnects_and_asks_subscribers_to_resync(redis: str) -> None:
    import redis.asyncio as aioredis

    async def main() -> None:
        name = f"vtatest-{unique_prefix()}"
        bus = RedisBus(redis, prefix=unique_prefix(), client_name=name, backoff_base_s=0.05)
        await bus.start()
        admin = aioredis.Redis.from_url(redis)
        try:
            async with bus.subscribe(3) as sub:
                clients = await admin.client_list()
                mine = [c for c in clients if c.get("name") == name and "psubscribe" in str(c.get("cmd", ""))]
                if not mine:  # older servers report the last command differently
                    mine = [c for c in clients if c.get("name") == name and int(c.get("psub", 0)) > 0]
                assert mine, clients
                for c in mine:
                    await admin.client_kill_filter(_id=c["id"])
                got = await take(sub, 1, timeout=10)
                assert got[0]["type"] == RESYNC_TYPE
                assert bus.reconnects == 1 and bus.connected
                await bus.publish(3, ev(3, 1))  # and it works again
                assert (await take(sub, 1))[0]["seq"] == 1
        finally:
            await admin.aclose()
            await bus.close()

    run(main)
