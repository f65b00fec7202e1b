"""The inference worker: ``python -m trainer_runtime.inference.worker --framework ultralytics``.

A long-lived process that owns torch for the server. It reads frames (`protocol`) on stdin and
writes responses on stdout; everything else the frameworks print goes to stderr (fd 1 is pointed
at fd 2 at start, the protocol keeps a private duplicate of the original stdout). The worker ends
at end of stdin, so it never outlives the server that spawned it.

Ops (request fields -> response fields):

    ping                                        -> pid, framework, device
    stats                                       -> cache {models, bytes, max_models, max_bytes,
                                                   hits, loads, evictions}, forwards, images,
                                                   batches [sizes of the last forwards]
    predict  framework, model_key, path,        -> results [one per image blob], model {info},
             conf, iou, max_det, max_pixels        forward_batch (images in the forward it joined)
             + image blobs
    load     framework, model_key, path         -> model {info}, memory_bytes
    export   format, framework, path, dest,     -> report (export.export_model); optional sample blob
             tolerance
    _sleep   seconds (<= 60)                    -> slept (tests: a request that stays in flight)

Cache: an LRU of loaded predictors keyed by ``model_key`` (the server makes it from job,
checkpoint name and sha256, so a new checkpoint never hits a stale model), bounded by
``--max-models`` and ``--max-memory-mb`` (parameters + buffers); the least recently used models
are dropped until both hold (the model just loaded always stays).

Micro-batching: the compute loop (the main thread; a reader thread takes the frames and decodes
the images) runs the queue. A predict request is grouped with the queued
predict requests for the same model and options, up to ``--max-batch`` images; with
``--batch-window-ms`` > 0 it also waits up to that long for more to arrive, when the requests are
coming in close together (another one arrived within the window before it) or always with
``--batch-wait always``. So a lone request is never delayed, and concurrent ones share a forward.
Requests that cannot join (another model, export, ...) keep their order.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import os
import queue
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from trainer_runtime.inference.protocol import ProtocolError, read_frame, write_frame

log = logging.getLogger("trainer_runtime.inference.worker")

IMMEDIATE_OPS = ("ping", "stats")
QUEUED_OPS = ("predict", "load", "export", "_sleep")


@dataclass
class Request:
    """One request frame as the worker queues it: the message, its image blobs, and when it arrived."""

    msg: dict[str, Any]
    blobs: list[bytes]
    arrived: float
    gap: float  # seconds since the previous request arrived
    images: list[Any] = field(default_factory=list)  # predict: the blobs decoded on arrival
    error: str | None = None  # predict: why the blobs cannot be decoded (invalid_image)

    @property
    def id(self) -> Any:
        return self.msg.get("id")

    @property
    def n_images(self) -> int:
        return len(self.images) or len(self.blobs)

    @property
    def op(self) -> str:
        return str(self.msg.get("op") or "")

    def group(self) -> tuple[Any, ...]:
        m = self.msg
        return (m.get("model_key"), m.get("conf"), m.get("iou"), m.get("max_det"), m.get("max_pixels"))


@dataclass
class ModelCache:
    """LRU of loaded predictors bounded by count and bytes."""

    max_models: int = 4
    max_bytes: int = 2 * 1024**3
    entries: collections.OrderedDict[str, tuple[Any, int]] = field(default_factory=collections.OrderedDict)
    hits: int = 0
    loads: int = 0
    evictions: int = 0
    evicted: list[str] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(size for _, size in self.entries.values())

    def get(self, key: str, load: Any) -> Any:
        if key in self.entries:
            self.entries.move_to_end(key)
            self.hits += 1
            return self.entries[key][0]
        model = load()
        size = int(model.memory_bytes())
        self.entries[key] = (model, size)
        self.loads += 1
        dropped = 0
        while len(self.entries) > 1 and (len(self.entries) > self.max_models or self.bytes > self.max_bytes):
            old_key, _ = self.entries.popitem(last=False)
            dropped += 1
            self.evicted.append(old_key)
            del self.evicted[:-50]
        if dropped:
            self.evictions += dropped
            _free_memory()
        return model

    def stats(self) -> dict[str, Any]:
        return {
            "models": list(self.entries),
            "bytes": self.bytes,
            "max_models": self.max_models,
            "max_bytes": self.max_bytes,
            "hits": self.hits,
            "loads": self.loads,
            "evictions": self.evictions,
            "evicted": list(self.evicted),
        }


def _free_memory() -> None:
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class Worker:
    """Serves the protocol: answers ping/stats at once and runs the queued requests (predict, load, export)
    on one thread, micro-batching predicts and caching loaded models."""

    def __init__(
        self,
        out: BinaryIO,
        *,
        framework: str = "",
        device: str = "auto",
        max_models: int = 4,
        max_memory_mb: float = 2048,
        batch_window_ms: float = 2.0,
        batch_wait: str = "adaptive",
        max_batch: int = 32,
        max_pixels: int = 50_000_000,
    ) -> None:
        self.out = out
        self.write_lock = threading.Lock()
        self.framework = framework
        self._device = device
        self.cache = ModelCache(max_models=max_models, max_bytes=int(max_memory_mb * 1024**2))
        self.window = max(0.0, batch_window_ms) / 1000.0
        self.batch_wait = batch_wait
        self.max_batch = max(1, max_batch)
        self.max_pixels = max_pixels
        self.q: queue.Queue[Request | None] = queue.Queue()
        self.backlog: collections.deque[Request] = collections.deque()
        self.forwards = 0
        self.images = 0
        self.batches: collections.deque[int] = collections.deque(maxlen=100)
        self._last_arrival = 0.0

    # ------------------------------------------------------------------------------ io
    def send(self, msg: dict[str, Any]) -> None:
        with self.write_lock:
            try:
                write_frame(self.out, msg)
            except (BrokenPipeError, ValueError, OSError):  # the server went away
                os._exit(0)

    def ok(self, req_id: Any, **fields: Any) -> None:
        self.send({"id": req_id, "ok": True, **fields})

    def fail(self, req_id: Any, code: str, message: str) -> None:
        self.send({"id": req_id, "ok": False, "error": {"code": code, "message": message}})

    @property
    def device(self) -> str:
        if self._device == "auto":
            from trainer_runtime.inference.predictors import default_device

            self._device = default_device()
        return self._device

    # ---------------------------------------------------------------------------- reader
    def serve(self, inp: BinaryIO) -> None:
        """Read requests on a thread, compute on the calling (main) thread until the input ends.

        The forwards run on the main thread because torch's CPU kernels are markedly slower when
        their parallel regions start from another thread (resnet18 at 32 px: 4.8 ms against 3.7 ms
        on the same 2-core machine; docs/benchmarks.md)."""
        reader = threading.Thread(target=self._read_loop, args=(inp,), name="reader", daemon=True)
        reader.start()
        self.compute_loop()

    def _read_loop(self, inp: BinaryIO) -> None:
        try:
            while True:
                try:
                    frame = read_frame(inp)
                except ProtocolError as exc:
                    log.error("protocol error, stopping: %s", exc)
                    break
                if frame is None:
                    break
                msg, blobs = frame
                now = time.monotonic()
                req = Request(msg, blobs, now, now - self._last_arrival if self._last_arrival else 1e9)
                self._last_arrival = now
                op = req.op
                if op == "ping":
                    self.ok(req.id, pid=os.getpid(), framework=self.framework, device=self._device)
                elif op == "stats":
                    self.ok(
                        req.id,
                        cache=self.cache.stats(),
                        forwards=self.forwards,
                        images=self.images,
                        batches=list(self.batches),
                        pid=os.getpid(),
                    )
                elif op == "shutdown":
                    self.ok(req.id)
                    break
                elif op in QUEUED_OPS:
                    if op == "predict":
                        self._decode(req)
                    self.q.put(req)
                else:
                    self.fail(req.id, "bad_request", f"unknown op {op!r}")
        finally:
            self.q.put(None)  # ends compute_loop once what is queued is done

    def _decode(self, req: Request) -> None:
        """Decode a predict request's images here, on arrival, so that the next request's decoding
        overlaps the compute loop's forward (a test run keeps two batches in flight); Pillow
        releases the GIL while it inflates. A lone request costs the same either way."""
        from trainer_runtime.inference.predictors import InvalidImageError, decode_image

        max_pixels = int(req.msg.get("max_pixels") or self.max_pixels)
        if not req.blobs:
            req.error = "no image in the request"
            return
        for i, blob in enumerate(req.blobs):
            try:
                req.images.append(decode_image(blob, max_pixels=max_pixels))
            except InvalidImageError as exc:
                prefix = f"image {i + 1}: " if len(req.blobs) > 1 else ""
                req.error = prefix + str(exc)
                req.images.clear()
                return
        req.blobs = []  # the decoded images are what is kept

    # --------------------------------------------------------------------------- compute
    def _next(self, timeout: float | None = None) -> Request | None:
        if self.backlog:
            return self.backlog.popleft()
        if timeout is None:
            return self.q.get()
        return self.q.get(timeout=timeout)

    def compute_loop(self) -> None:
        while True:
            req = self._next()
            if req is None:
                return
            try:
                if req.op == "predict":
                    self._predict_batch(self._collect(req))
                elif req.op == "load":
                    self._load(req)
                elif req.op == "export":
                    self._export(req)
                elif req.op == "_sleep":
                    time.sleep(min(float(req.msg.get("seconds") or 0), 60.0))
                    self.ok(req.id, slept=True)
            except Exception as exc:  # never let one request kill the loop
                log.error("request %s failed: %s", req.id, traceback.format_exc())
                self.fail(req.id, "internal", f"{type(exc).__name__}: {exc}")

    def _collect(self, first: Request) -> list[Request]:
        """`first` plus the queued predict requests that can share its forward."""
        group = first.group()
        batch = [first]
        n_images = first.n_images
        held: list[Request] = []
        # what is queued already (backlog first, then the queue) joins without waiting
        pending = list(self.backlog)
        self.backlog.clear()
        while True:
            try:
                item = self.q.get_nowait()
            except queue.Empty:
                break
            if item is None:
                self.q.put(None)
                break
            pending.append(item)
        for item in pending:
            if item.op == "predict" and item.group() == group and n_images + item.n_images <= self.max_batch:
                batch.append(item)
                n_images += item.n_images
            else:
                held.append(item)
        wait = self.window > 0 and (self.batch_wait == "always" or first.gap < self.window or len(batch) > 1)
        if wait and not held:
            deadline = first.arrived + self.window if self.batch_wait != "always" else time.monotonic() + self.window
            while n_images < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self.q.get(timeout=remaining)
                except queue.Empty:
                    break
                if item is None:
                    self.q.put(None)
                    break
                if item.op == "predict" and item.group() == group and n_images + item.n_images <= self.max_batch:
                    batch.append(item)
                    n_images += item.n_images
                else:
                    held.append(item)
                    break
        self.backlog.extend(held)
        return batch

    def _model(self, msg: dict[str, Any]) -> Any:
        from trainer_runtime.inference.predictors import load_predictor

        key = str(msg.get("model_key") or msg.get("path"))
        framework = str(msg.get("framework") or self.framework)
        return self.cache.get(key, lambda: load_predictor(framework, str(msg.get("path")), self.device))

    def _load(self, req: Request) -> None:
        from trainer_runtime.inference.predictors import CheckpointLoadError

        try:
            model = self._model(req.msg)
        except CheckpointLoadError as exc:
            self.fail(req.id, "checkpoint", str(exc))
            return
        self.ok(req.id, model=model.info(), memory_bytes=model.memory_bytes())

    def _predict_batch(self, batch: list[Request]) -> None:
        from trainer_runtime.inference.predictors import CheckpointLoadError

        first = batch[0].msg
        try:
            model = self._model(first)
        except CheckpointLoadError as exc:
            for r in batch:
                self.fail(r.id, "checkpoint", str(exc))
            return
        images: list[Any] = []
        owners: list[tuple[Request, int, int]] = []  # request, start, count
        for r in batch:
            if r.error is not None:  # set by `_decode` when the images cannot be used
                self.fail(r.id, "invalid_image", r.error)
                continue
            owners.append((r, len(images), len(r.images)))
            images.extend(r.images)
            r.images = []
        if not images:
            return
        conf, iou = first.get("conf"), first.get("iou")
        kwargs: dict[str, Any] = {
            "conf": float(conf) if conf is not None else 0.25,
            "iou": float(iou) if iou is not None else 0.7,
            "max_det": int(first.get("max_det") or 300),
        }
        try:
            results = model.predict(images, **kwargs)
        except Exception as exc:
            log.error("forward failed: %s", traceback.format_exc())
            for r, _, _ in owners:
                self.fail(r.id, "internal", f"prediction failed: {type(exc).__name__}: {exc}")
            return
        self.forwards += 1
        self.images += len(images)
        self.batches.append(len(images))
        info = model.info()
        extra = {"num_keypoints": model.num_keypoints} if model.num_keypoints else {}
        for r, start, count in owners:
            self.ok(r.id, results=results[start : start + count], model=info, forward_batch=len(images), **extra)

    def _export(self, req: Request) -> None:
        from trainer_runtime.inference.export import ExportError, export_model
        from trainer_runtime.inference.predictors import InvalidImageError, decode_image

        msg = req.msg
        sample = None
        if req.blobs:
            try:
                sample = decode_image(req.blobs[0], max_pixels=self.max_pixels)
            except InvalidImageError as exc:
                self.fail(req.id, "invalid_image", str(exc))
                return
        try:
            report = export_model(
                str(msg.get("format") or "onnx"),
                str(msg.get("framework") or self.framework),
                str(msg["path"]),
                str(msg["dest"]),
                sample=sample,
                tolerance=float(msg.get("tolerance") or 1e-3),
            )
        except ExportError as exc:
            self.send(
                {"id": req.id, "ok": False, "error": {"code": "export", "message": str(exc)}, "report": exc.report}
            )
            return
        self.ok(req.id, report=report)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: serve requests on stdin until it closes; returns 0."""
    ap = argparse.ArgumentParser(prog="python -m trainer_runtime.inference.worker")
    ap.add_argument("--framework", default="", help="default framework of requests (informational)")
    ap.add_argument(
        "--device", default="auto", help="auto | cpu | cuda | cuda:N (the server passes VTA_INFERENCE_DEVICE)"
    )
    ap.add_argument("--max-models", type=int, default=4)
    ap.add_argument("--max-memory-mb", type=float, default=2048)
    ap.add_argument("--batch-window-ms", type=float, default=2.0)
    ap.add_argument("--batch-wait", choices=("adaptive", "always"), default="adaptive")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-pixels", type=int, default=50_000_000)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="[inference-worker %(process)d] %(message)s")
    # the protocol gets the real stdout; anything printed by libraries goes to stderr
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if args.threads > 0:
        with contextlib.suppress(Exception):
            import torch

            torch.set_num_threads(args.threads)
    worker = Worker(
        proto_out,
        framework=args.framework,
        device=args.device,
        max_models=args.max_models,
        max_memory_mb=args.max_memory_mb,
        batch_window_ms=args.batch_window_ms,
        batch_wait=args.batch_wait,
        max_batch=args.max_batch,
        max_pixels=args.max_pixels,
    )
    worker.serve(sys.stdin.buffer)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
