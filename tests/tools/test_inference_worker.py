"""The inference worker process through `tools.inference.WorkerClient`: protocol, LRU cache with a
memory limit, micro-batching, a crash answered with an error and a restart, timeouts."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.inference_models import TrainedModel, models_root, trained_model
from tools.inference import InferenceConfig, InferenceUnavailableError, WorkerClient
from trainer_runtime.inference.protocol import WorkerError, encode_frame, read_frame

pytest.importorskip("timm")
pytestmark = pytest.mark.slow


def _png(color: tuple[int, int, int] = (200, 30, 30), size: int = 32) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def timm_model(request: pytest.FixtureRequest) -> TrainedModel:
    root = models_root(request.config)
    return trained_model("timm-digits", root, root / "demo")


@pytest.fixture(scope="module")
def vit_model(request: pytest.FixtureRequest) -> TrainedModel:
    root = models_root(request.config)
    return trained_model("hf-vit-digits", root, root / "demo")


def _client(framework: str, tmp: Path, **cfg: Any) -> WorkerClient:
    config = InferenceConfig(cache_dir=tmp, device="cpu", threads=1, **cfg)
    return WorkerClient(framework, config)


@pytest.fixture
def timm_client(tmp_path: Path) -> Iterator[WorkerClient]:
    c = _client("timm", tmp_path, batch_window_ms=300, batch_wait="always", request_timeout_s=60)
    yield c
    c.close()


def _predict(c: WorkerClient, m: TrainedModel, key: str, images: list[bytes], **kw: Any) -> dict[str, Any]:
    msg = {"op": "predict", "framework": m.framework, "model_key": key, "path": str(m.last), **kw}
    reply, _ = c.request(msg, images)
    return reply


def test_protocol_round_trip() -> None:
    parts = encode_frame({"id": 3, "op": "predict", "text": "한글"}, [b"abc", b"", b"de"])
    msg, blobs = read_frame(io.BytesIO(b"".join(parts)))  # type: ignore[misc]
    assert msg == {"id": 3, "op": "predict", "text": "한글"} and blobs == [b"abc", b"", b"de"]
    assert read_frame(io.BytesIO(b"")) is None


def test_predict_and_bad_images(timm_client: WorkerClient, timm_model: TrainedModel) -> None:
    reply = _predict(timm_client, timm_model, "m1", [_png(), _png((0, 0, 255))])
    assert len(reply["results"]) == 2 and reply["model"]["framework"] == "timm"
    assert reply["results"][0]["predicted_label"] in timm_model.class_names
    with pytest.raises(WorkerError) as exc:
        _predict(timm_client, timm_model, "m1", [b"not an image"])
    assert exc.value.code == "invalid_image"
    with pytest.raises(WorkerError) as exc:  # images are decoded on arrival: the bad one is named
        _predict(timm_client, timm_model, "m1", [_png(), b"\x89PNG\r\n\x1a\n truncated"])
    assert exc.value.code == "invalid_image" and exc.value.message.startswith("image 2: ")
    with pytest.raises(WorkerError) as exc:
        _predict(timm_client, timm_model, "m1", [_png(size=64)], max_pixels=100)
    assert exc.value.code == "invalid_image" and "over the limit" in exc.value.message
    with pytest.raises(WorkerError) as exc:
        timm_client.request({"op": "predict", "framework": "timm", "model_key": "x", "path": "/nope.pt"}, [_png()])
    assert exc.value.code == "checkpoint"
    with pytest.raises(WorkerError) as exc:
        timm_client.request({"op": "frobnicate"})
    assert exc.value.code == "bad_request"


def test_concurrent_requests_share_one_forward(timm_client: WorkerClient, timm_model: TrainedModel) -> None:
    _predict(timm_client, timm_model, "mb", [_png()])  # load the model first
    before, _ = timm_client.request({"op": "stats"})
    replies: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def call(i: int) -> None:
        try:
            replies.append(_predict(timm_client, timm_model, "mb", [_png((i * 40, 10, 10))]))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(replies) == 4
    after, _ = timm_client.request({"op": "stats"})
    assert after["images"] - before["images"] == 4
    assert after["forwards"] - before["forwards"] == 1, after["batches"]
    assert all(r["forward_batch"] == 4 for r in replies)
    assert all(len(r["results"]) == 1 for r in replies)


def test_a_bad_image_fails_alone_in_a_shared_forward(timm_client: WorkerClient, timm_model: TrainedModel) -> None:
    _predict(timm_client, timm_model, "mc", [_png()])
    outcomes: dict[int, Any] = {}

    def call(i: int) -> None:
        data = b"not an image" if i == 2 else _png((i * 40, 10, 10))
        try:
            outcomes[i] = _predict(timm_client, timm_model, "mc", [data])
        except WorkerError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(outcomes[2], WorkerError) and outcomes[2].code == "invalid_image"
    assert all(len(outcomes[i]["results"]) == 1 for i in (0, 1, 3))


def test_lone_request_is_not_delayed_in_adaptive_mode(tmp_path: Path, timm_model: TrainedModel) -> None:
    # a window far longer than one prediction, so that a busy machine cannot blur the difference;
    # adaptive mode waits only for a request that follows the previous one within the window
    c = _client("timm", tmp_path, batch_window_ms=3000, batch_wait="adaptive")
    try:
        _predict(c, timm_model, "a", [_png()])
        time.sleep(3.1)
        t0 = time.perf_counter()
        _predict(c, timm_model, "a", [_png()])
        assert time.perf_counter() - t0 < 2.5  # did not wait the 3 s window
    finally:
        c.close()


def test_lru_eviction_and_memory_limit(tmp_path: Path, timm_model: TrainedModel, vit_model: TrainedModel) -> None:
    c = _client("timm", tmp_path, max_models=2, max_memory_mb=4096)
    try:
        for key in ("a", "b", "a", "c"):  # a is used again, so b is the least recently used
            _predict(c, timm_model, key, [_png()])
        stats, _ = c.request({"op": "stats"})
        cache = stats["cache"]
        assert cache["models"] == ["a", "c"] and cache["evicted"] == ["b"]
        assert cache["loads"] == 3 and cache["hits"] == 1 and cache["evictions"] == 1
    finally:
        c.close()
    # memory limit: resnet18 is ~45 MB, the tiny ViT ~60 kB; a 50 MB limit holds one resnet at most
    c = _client("transformers", tmp_path, max_models=10, max_memory_mb=50)
    try:
        reply, _ = c.request({"op": "load", "framework": "timm", "model_key": "r1", "path": str(timm_model.last)})
        assert 40e6 < reply["memory_bytes"] < 50e6
        c.request({"op": "load", "framework": "transformers", "model_key": "v1", "path": str(vit_model.last)})
        c.request({"op": "load", "framework": "timm", "model_key": "r2", "path": str(timm_model.last)})
        stats, _ = c.request({"op": "stats"})
        assert stats["cache"]["models"] == ["v1", "r2"] and stats["cache"]["evicted"] == ["r1"]
        assert stats["cache"]["bytes"] <= 50 * 1024**2
    finally:
        c.close()


def test_crash_answers_in_flight_requests_and_restarts(tmp_path: Path, timm_model: TrainedModel) -> None:
    c = _client("timm", tmp_path, request_timeout_s=60)
    try:
        _predict(c, timm_model, "m", [_png()])
        pid = c.pid
        assert pid is not None
        result: dict[str, Any] = {}

        def slow() -> None:
            try:
                c.request({"op": "_sleep", "seconds": 30})
            except BaseException as exc:
                result["exc"] = exc

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.3)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        t.join(timeout=10)
        assert not t.is_alive() and time.monotonic() - t0 < 5
        assert isinstance(result.get("exc"), InferenceUnavailableError)
        assert "exited with code" in result["exc"].message
        reply = _predict(c, timm_model, "m", [_png()])  # a fresh worker answers
        assert reply["results"] and c.pid not in (None, pid) and c.restarts == 1
    finally:
        c.close()


def test_timeout_kills_a_hung_worker(tmp_path: Path, timm_model: TrainedModel) -> None:
    c = _client("timm", tmp_path, request_timeout_s=1.0)
    try:
        c.request({"op": "ping"}, timeout=60)  # started (the 1 s limit is for what follows)
        pid = c.pid
        t0 = time.monotonic()
        with pytest.raises(InferenceUnavailableError, match="did not answer within 1s"):
            c.request({"op": "_sleep", "seconds": 20})
        assert time.monotonic() - t0 < 10  # the 1 s limit, not the 20 s sleep (slack for a busy machine)
        reply, _ = c.request({"op": "ping"}, timeout=60)
        assert reply["pid"] != pid
    finally:
        c.close()


def test_awaited_requests_get_the_crash_and_the_timeout_too(tmp_path: Path, timm_model: TrainedModel) -> None:
    """`request_async` (the web route's hot path) fails like `request`: a killed worker answers the
    awaiting request with InferenceUnavailableError, a hung one is killed at the timeout."""
    import asyncio

    c = _client("timm", tmp_path, request_timeout_s=60)

    async def scenario() -> None:
        msg = {"op": "predict", "framework": "timm", "model_key": "m", "path": str(timm_model.last)}
        reply, _ = await c.request_async(msg, [_png()])
        assert reply["results"]
        pid = c.pid
        assert pid is not None
        sleeper = asyncio.ensure_future(c.request_async({"op": "_sleep", "seconds": 30}))
        await asyncio.sleep(0.3)
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(InferenceUnavailableError, match="exited with code"):
            await asyncio.wait_for(sleeper, 10)
        assert time.monotonic() - t0 < 5
        reply, _ = await c.request_async(msg, [_png()])  # a fresh worker
        assert reply["results"] and c.pid not in (None, pid)
        t0 = time.monotonic()
        with pytest.raises(InferenceUnavailableError, match="did not answer within 1s"):
            await c.request_async({"op": "_sleep", "seconds": 20}, timeout=1.0)
        assert time.monotonic() - t0 < 10  # the 1 s limit, not the 20 s sleep (slack for a busy machine)
        with pytest.raises(WorkerError) as exc:
            await c.request_async(msg, [b"not an image"])
        assert exc.value.code == "invalid_image"

    try:
        asyncio.run(scenario())
    finally:
        c.close()
