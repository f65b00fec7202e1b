"""Runs a queued batch test run to its end in a background thread (`execute_test_run`): images
fetched ahead in batches, two batches in flight on the worker, metrics, report and predictions
stored in the internal store.

Events have the training event shape plus ``test_run_id``: ``{"job_id": <training job>,
"test_run_id", "seq", "ts", "type": "status"|"batch"|"done"|"error", "data"}``, ``seq`` gapless per
test run; kept on the TestRun row and published on the app's event bus on channel ``-test_run_id``
(negative ids never clash with job ids).
"""

from __future__ import annotations

import collections
import functools
import json
import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from tools.db.models import Dataset, DatasetImage, Job, JobCheckpoint, TestRun, utcnow
from tools.errors import ConflictError, ToolError
from tools.inference.access import model_key
from tools.inference.config import ensure_dir
from trainer_runtime.inference.protocol import WorkerError
from trainer_runtime.storage import dataset_annotations_key, dataset_image_key, snapshot_annotations_key

if TYPE_CHECKING:
    from sqlalchemy.orm import sessionmaker

    from tools.inference.config import InferenceConfig
    from trainer_runtime.inference.evaluate import DetectionEvaluator
    from trainer_runtime.storage import DualStorageClient


class InferenceService(Protocol):
    """What a test run uses of `tools.inference.service.InferenceService` (which imports this
    module to run test runs, so this one names only the part it needs)."""

    config: InferenceConfig
    storage: DualStorageClient
    session_factory: sessionmaker[Session] | None
    publish: Callable[[int, dict[str, Any]], None] | None

    def predict(
        self,
        framework: str,
        model_key: str,
        path: Path,
        images: Sequence[bytes],
        *,
        conf: float | None = None,
        iou: float | None = None,
        max_det: int | None = None,
        timeout: float | None = None,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]: ...

    def checkpoint_path(self, job: Job, ckpt: JobCheckpoint) -> Path: ...


log = logging.getLogger(__name__)


MAX_STORED_BATCH_EVENTS = 200


def test_run_prefix(run_id: int) -> str:
    """The storage prefix under which test run `run_id` keeps its report and predictions."""
    return f"results/test-runs/{run_id}/"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _emit(service: InferenceService, db: Session, row: TestRun, type_: str, data: dict[str, Any]) -> None:
    row.last_seq = (row.last_seq or 0) + 1
    event = {
        "job_id": row.job_id,
        "test_run_id": row.id,
        "seq": row.last_seq,
        "ts": _now_iso(),
        "type": type_,
        "data": data,
    }
    events = list(row.events or [])
    events.append(event)
    batch_idx = [i for i, e in enumerate(events) if e["type"] == "batch"]
    if len(batch_idx) > MAX_STORED_BATCH_EVENTS:
        drop = set(batch_idx[: len(batch_idx) - MAX_STORED_BATCH_EVENTS])
        events = [e for i, e in enumerate(events) if i not in drop]
    row.events = events
    db.commit()
    if service.publish is not None:
        try:
            service.publish(-row.id, event)
        except Exception:  # the store is the truth; a lost live event is read from there
            log.exception("publishing test-run event failed")


@dataclass
class _Item:
    name: str
    ann_image: dict[str, Any] | None
    fetch: Callable[[], bytes]


def _test_items(service: InferenceService, db: Session, row: TestRun) -> tuple[list[_Item], dict[str, Any] | None]:
    """(images to run, the DICE document or None when unlabeled)."""
    storage = service.storage
    doc: dict[str, Any] | None = None
    items: list[_Item] = []
    if row.source == "upload":
        root = Path(str((row.options or {}).get("upload_dir")))
        ann = root / "annotations.json"
        if ann.is_file():
            doc = json.loads(ann.read_text(encoding="utf-8"))
        names = sorted(p.relative_to(root / "images").as_posix() for p in (root / "images").rglob("*") if p.is_file())

        def local(n: str) -> Callable[[], bytes]:
            return lambda: (root / "images" / n).read_bytes()

        fetchers = {n: local(n) for n in names}
    else:
        assert row.dataset_id is not None
        ds_id = row.dataset_id
        if row.source == "snapshot" and row.snapshot_id:
            doc = json.loads(storage.external.get_bytes(snapshot_annotations_key(ds_id, row.snapshot_id)))
            names = [str(img["file_name"]) for img in doc.get("images") or []]
        else:
            ds = db.get(Dataset, ds_id)
            if ds is not None and ds.labeled:
                doc = json.loads(storage.external.get_bytes(dataset_annotations_key(ds_id)))
            names = list(
                db.scalars(
                    select(DatasetImage.file_name).where(DatasetImage.dataset_id == ds_id).order_by(DatasetImage.id)
                )
            )

        def remote(n: str) -> Callable[[], bytes]:
            return lambda: storage.external.get_bytes(dataset_image_key(ds_id, n))

        fetchers = {n: remote(n) for n in names}
    by_name = {str(img["file_name"]): img for img in (doc or {}).get("images") or []}
    for n, fetch in fetchers.items():
        items.append(_Item(n, by_name.get(n), fetch))
    return items, doc


def _prefetch(
    items: Sequence[_Item], batch: int, *, local: bool = False
) -> Iterator[list[tuple[_Item, bytes | Exception]]]:
    """Batches of (item, bytes or the error); the next batch is fetched while one is predicted.

    From an object store each image is its own task (4 at a time: the wait is the network's); from
    local files a whole batch is one task, read in order: a thread-pool task per small file costs
    ~0.1 ms of CPU, seven times the read itself, and that CPU is taken from the forward."""

    def fetch(it: _Item) -> bytes | Exception:
        try:
            return it.fetch()
        except Exception as exc:
            return exc

    def fetch_all(chunk: list[_Item]) -> list[bytes | Exception]:
        return [fetch(it) for it in chunk]

    chunks = [list(items[i : i + batch]) for i in range(0, len(items), batch)]
    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=1 if local else 4, thread_name_prefix="test-run-fetch") as pool:

        def submit(chunk: list[_Item]) -> Callable[[], list[bytes | Exception]]:
            if local:
                whole = pool.submit(fetch_all, chunk)
                return whole.result
            futures = [pool.submit(fetch, it) for it in chunk]
            return lambda: [f.result() for f in futures]

        upcoming = submit(chunks[0])
        for k, chunk in enumerate(chunks):
            current = upcoming
            if k + 1 < len(chunks):
                upcoming = submit(chunks[k + 1])
            yield list(zip(chunk, current(), strict=True))


def execute_test_run(service: InferenceService, run_id: int) -> None:
    """Run a queued test run to its end (a background thread; never raises)."""
    assert service.session_factory is not None
    with service.session_factory() as db:
        row = db.get(TestRun, run_id)
        if row is None or row.status != "queued":
            return
        try:
            _execute(service, db, row)
        except Exception as exc:
            db.rollback()
            row = db.get(TestRun, run_id)
            if row is None:
                return
            message = exc.message if isinstance(exc, ToolError) else f"{type(exc).__name__}: {exc}"
            if isinstance(exc, WorkerError):
                message = f"inference failed: {exc.message}"
            log.exception("test run %s failed", run_id)
            row.status = "failed"
            row.error = message
            row.finished_at = utcnow()
            db.commit()
            _emit(service, db, row, "error", {"message": message})
            _emit(service, db, row, "status", {"status": "failed", "message": message})
        finally:
            if row is not None and row.source == "upload":
                up = (row.options or {}).get("upload_dir")
                if up:
                    shutil.rmtree(str(up), ignore_errors=True)


def _predict_chunk(
    service: InferenceService,
    job: Job,
    key: str,
    path: Path,
    conf: Any,
    iou: Any,
    chunk: list[tuple[_Item, bytes | Exception]],
) -> tuple[list[tuple[_Item, dict[str, Any] | None, str | None]], dict[str, Any] | None]:
    """(item, result or None, error or None) per image, and the model info of the reply."""
    out_rows: list[tuple[_Item, dict[str, Any] | None, str | None]] = [
        (it, None, f"cannot read the image: {b}") for it, b in chunk if not isinstance(b, bytes)
    ]
    good = [(it, b) for it, b in chunk if isinstance(b, bytes)]
    info: dict[str, Any] | None = None
    if not good:
        return out_rows, info
    try:
        res, reply = service.predict(job.framework, key, path, [b for _, b in good], conf=conf, iou=iou)
        return out_rows + [(it, r, None) for (it, _), r in zip(good, res, strict=True)], reply.get("model")
    except WorkerError as exc:
        if exc.code != "invalid_image":
            raise
    for it, b in good:  # a bad image in the batch: run them one by one
        try:
            r1, reply = service.predict(job.framework, key, path, [b], conf=conf, iou=iou)
            out_rows.append((it, r1[0], None))
            info = reply.get("model") or info
        except WorkerError as exc1:
            if exc1.code != "invalid_image":
                raise
            out_rows.append((it, None, exc1.message))
    return out_rows, info


def _fill_result_line(
    line: dict[str, Any],
    it: _Item,
    res1: dict[str, Any],
    task: str,
    anns_by_image: dict[int, list[dict[str, Any]]],
    cat_names: dict[int, str],
    cls_records: list[tuple[str | None, list[str]]],
    det_eval: DetectionEvaluator | None,
) -> None:
    """An image's predictions line: its result, and with labels its ground truth, which also goes to
    the classification records or the detection evaluator."""
    from trainer_runtime.inference.evaluate import image_label

    anns = anns_by_image.get(int(it.ann_image["id"]), []) if it.ann_image else []
    line["result"] = res1
    if it.ann_image is not None:
        line["image_id"] = it.ann_image.get("id")
        if task == "image_classification":
            truth = image_label(anns, cat_names)
            line["ground_truth"] = truth
            cls_records.append((truth, [p["label"] for p in res1.get("predictions") or []]))
        else:
            line["ground_truth"] = len(anns)
            if det_eval is not None:
                det_eval.add(res1, anns, res1.get("image") or {})


def _test_metrics(
    items: list[_Item],
    processed: int,
    failed: int,
    started: float,
    times: list[float],
    doc: dict[str, Any] | None,
    class_names: list[str],
    task: str,
    cls_records: list[tuple[str | None, list[str]]],
    det_eval: DetectionEvaluator | None,
) -> dict[str, Any]:
    """The run's counts and speed, and with labels its accuracy (classification) or mAP (detection)."""
    from trainer_runtime.inference.evaluate import classification_metrics, finite

    metrics: dict[str, Any] = {
        "images": len(items),
        "processed": processed,
        "failed_images": failed,
        "elapsed_s": round(time.monotonic() - started, 3),
        "images_per_s": round(processed / max(time.monotonic() - started, 1e-9), 2),
        "mean_inference_time_ms": round(sum(times) / len(times), 3) if times else None,
    }
    if doc is not None and class_names:
        if task == "image_classification":
            metrics.update(classification_metrics(cls_records, class_names))
        elif det_eval is not None:
            metrics.update(det_eval.result())
    metrics = finite(metrics)
    return metrics


def _execute(service: InferenceService, db: Session, row: TestRun) -> None:
    from trainer_runtime.inference.evaluate import DETECTION_TASKS, DetectionEvaluator

    job = db.get(Job, row.job_id)
    ckpt = db.scalars(
        select(JobCheckpoint).where(JobCheckpoint.job_id == row.job_id, JobCheckpoint.name == f"{row.checkpoint}.pt")
    ).first()
    if job is None or ckpt is None:
        raise ConflictError(f"job {row.job_id} or its {row.checkpoint} checkpoint is gone")
    row.status = "running"
    row.started_at = utcnow()
    db.commit()
    _emit(service, db, row, "status", {"status": "running"})
    path = service.checkpoint_path(job, ckpt)
    items, doc = _test_items(service, db, row)
    row.total = len(items)
    row.labeled = doc is not None
    db.commit()
    opts = dict(row.options or {})
    task = job.task_type
    detection = task in DETECTION_TASKS
    conf = opts.get("conf")
    if conf is None:
        conf = 0.001 if detection else 0.25  # mAP wants the whole ranking (as Ultralytics' val)
    iou = opts.get("iou")
    cat_names: dict[int, str] = {}
    anns_by_image: dict[int, list[dict[str, Any]]] = {}
    if doc is not None:
        cat_names = {int(c["id"]): str(c["name"]) for c in doc.get("categories") or []}
        for a in doc.get("annotations") or []:
            anns_by_image.setdefault(int(a["image_id"]), []).append(a)
    key = model_key(job, ckpt)
    work = ensure_dir(service.config.cache_dir / "tmp" / f"test-run-{row.id}")
    lines_path = work / "predictions.jsonl"
    cls_records: list[tuple[str | None, list[str]]] = []
    # detection metrics are computed image by image in this loop while the worker predicts the next
    # batches (the evaluator needs the model's class names, which come with the first reply)
    det_eval: DetectionEvaluator | None = None
    class_names: list[str] = []
    model_info: dict[str, Any] = {}
    processed = failed = 0
    times: list[float] = []
    started = time.monotonic()
    last_event = 0.0
    batch = max(1, service.config.test_run_batch)
    try:
        run_chunk = functools.partial(_predict_chunk, service, job, key, path, conf, iou)

        # Two batches in flight: the worker computes one while this thread stores the other.
        with (
            open(lines_path, "w", encoding="utf-8") as out,
            ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-run-predict") as predict_pool,
        ):
            in_flight: collections.deque[Future[Any]] = collections.deque()
            local = row.source == "upload" or getattr(service.storage.external, "kind", "") == "local"
            chunk_iter = iter(_prefetch(items, batch, local=local))
            exhausted = False
            while True:
                while not exhausted and len(in_flight) < 2:
                    nxt = next(chunk_iter, None)
                    if nxt is None:
                        exhausted = True
                    else:
                        in_flight.append(predict_pool.submit(run_chunk, nxt))
                if not in_flight:
                    break
                rows_out, info = in_flight.popleft().result()
                if info:
                    model_info = dict(info)
                    class_names = list(model_info.get("class_names") or class_names)
                if det_eval is None and detection and doc is not None and class_names:
                    det_eval = DetectionEvaluator(class_names, cat_names, task)
                for it, res1, err in rows_out:
                    line: dict[str, Any] = {"file_name": it.name}
                    if res1 is None:
                        failed += 1
                        line["error"] = err
                        out.write(json.dumps(line, ensure_ascii=False) + "\n")
                        continue
                    processed += 1
                    times.append(float(res1.get("inference_time_ms") or 0.0))
                    _fill_result_line(line, it, res1, task, anns_by_image, cat_names, cls_records, det_eval)
                    out.write(json.dumps(line, ensure_ascii=False) + "\n")
                row.processed, row.failed_images = processed, failed
                now = time.monotonic()
                done = processed + failed
                if now - last_event >= 0.5 or done >= len(items):
                    last_event = now
                    elapsed = now - started
                    rate = done / elapsed if elapsed > 0 else 0.0
                    _emit(
                        service,
                        db,
                        row,
                        "batch",
                        {
                            "processed": processed,
                            "failed": failed,
                            "total": len(items),
                            "images_per_s": round(rate, 2),
                            "eta_s": round((len(items) - done) / rate, 1) if rate else None,
                        },
                    )

        metrics = _test_metrics(items, processed, failed, started, times, doc, class_names, task, cls_records, det_eval)
        prefix = test_run_prefix(row.id)
        pred_info = service.storage.internal.put_file(
            prefix + "predictions.jsonl", lines_path, content_type="application/x-ndjson"
        )
        report = {
            "test_run_id": row.id,
            "job_id": row.job_id,
            "framework": job.framework,
            "task_type": task,
            "model": model_info,
            "checkpoint": row.checkpoint,
            "source": {"kind": row.source, "dataset_id": row.dataset_id, "snapshot_id": row.snapshot_id},
            "options": {"conf": conf, "iou": iou},
            "labeled": doc is not None,
            "metrics": metrics,
            "predictions_key": pred_info.key,
            "finished_at": _now_iso(),
        }
        service.storage.internal.put_bytes(
            prefix + "report.json",
            json.dumps(report, ensure_ascii=False, indent=2).encode(),
            content_type="application/json",
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row.metrics = metrics
    row.predictions_key = prefix + "predictions.jsonl"
    row.report_key = prefix + "report.json"
    row.status = "completed"
    row.finished_at = utcnow()
    db.commit()
    # "done" before the terminal status, as a training job's: live streams end at the status event
    _emit(service, db, row, "done", {"status": "completed", "metrics": _headline(metrics)})
    _emit(service, db, row, "status", {"status": "completed"})


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "accuracy_top1",
        "accuracy_top5",
        "box_mAP50",
        "box_mAP50-95",
        "mask_mAP50",
        "mask_mAP50-95",
        "processed",
        "failed_images",
        "images_per_s",
    )
    return {k: metrics[k] for k in keys if k in metrics}
