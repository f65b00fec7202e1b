"""How long a training job will take, from what finished jobs measured on this machine.

    record_job_throughput(db, job, end_ts) -> JobThroughput | None   (when a job completes)
    estimate_duration(ctx, dataset, plan) -> Estimate                (before it is launched)

Recording (`tools.events` calls it in the transaction that marks a job ``completed``). From the
job's own events of one uninterrupted attempt (a job that was interrupted and resumed is not
recorded: its wall time mixes attempts):

* ``process start`` = the ts of the trainer's first status event less its ``process_s`` (the age
  of the trainer process then: interpreter start-up and imports);
* per epoch event: ``train_s`` and ``val_s`` as the trainer measured them (``val_s`` also holds
  checkpoint saving); an event without them (an older trainer) counts its whole gap to the event
  before as training;
* the *steady* epoch = the medians of ``train_s`` and ``val_s`` over the epochs after the first
  (the first pays for warm-up); with a single epoch, that epoch;
* ``train_ips`` = train images / steady train_s, ``val_ips`` = val images / steady val_s, where
  train images = N - max(1, round(N * val_fraction)) of the snapshot's N images (the same split
  size the estimate assumes);
* ``overhead_s`` = wall time (process start -> completion) - epochs * steady epoch: start-up,
  dataset fetch, model build, warm-up, final checkpoint upload.

Rows are kept per job with their kind: (framework, model, image size bucket, device kind).
Device kind is ``cpu``, ``cuda`` or ``mps`` from the trainer's ``running`` status.

Estimating a job (N images, E epochs, image size S) picks the closest evidence, in this order:

1. ``same``: earlier jobs of the same framework, model, size bucket and device kind (the latest
   10). Each predicts ``overhead + E * (train/train_ips + val/val_ips) * (S/S_row)**2``; the
   estimate is their median, the range their min / 1.25 .. max * 1.25 (one job: / 1.4 .. * 1.4).
2. ``size``: the same model on the device at another image size, scaled by the pixel ratio
   (S/S_row)**2; range / 2 .. * 2.
3. ``model``: other models of the same framework on the device, scaled by model size (the
   catalog's parameter count, relative) and pixels; range / 2.5 .. * 2.5.
4. ``calibrated``: no job of the framework yet: the framework's prior (`PRIORS`: images/s of a
   1M-parameter model at 224 px, validation speed, fixed cost), scaled by model size and pixels,
   times the ratio measured/prior of the jobs that did run on this device (any framework);
   range / 3 .. * 3.
5. ``prior``: nothing measured here at all: the prior times a quick probe of this machine (a
   float32 matrix product in numpy on one thread, times the cores this process may use, ~0.1 s, at
   most every 5 minutes, against `REFERENCE_CPU_GFLOPS` for which the priors were set); a GPU gets
   `GPU_SPEEDUP` instead, times the share of the CPUs that is free (cores / load average, at
   most 1); range / 3 .. * 3. One thread because a multi-threaded BLAS product on a
   busy machine measured anything from 2 to 77 GFLOP/s within a minute here (its threads wait on
   each other), while one thread stayed within 50-61.

The estimate covers the trainer's run (start-up to completion), not the wait in the queue.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from tools.context import ToolContext
from tools.db.models import DatasetSnapshot, Job, JobEvent, JobThroughput

Basis = Literal["same", "size", "model", "calibrated", "prior"]

SIZE_BUCKETS = (32, 64, 128, 224, 320, 480, 640, 960, 1280)
RECENT_ROWS = 10
# the probe on the 2-core machine the priors were set on (2 cores x ~55 GFLOP/s single-threaded)
REFERENCE_CPU_GFLOPS = 110.0
GPU_SPEEDUP = 25.0  # a GPU against that CPU, for the priors only (measured jobs replace it)
PROBE_SECONDS = 0.03
PROBE_MAX_AGE_S = 300.0


@dataclass(frozen=True)
class Prior:
    """Per framework, on `REFERENCE_CPU_GFLOPS`: training images/s of a model with 1M parameters
    at 224 px (scaled by 1/params and 1/pixels), validation images/s as a multiple of that, and
    the fixed cost in seconds (process start-up, imports, setup, final upload)."""

    ips_1m_224: float
    val_speedup: float
    overhead_s: float


PRIORS: dict[str, Prior] = {
    # resnet18 (11.7M) at 32 px trains ~470 img/s on the reference machine (docs/benchmarks.md)
    "timm": Prior(ips_1m_224=110.0, val_speedup=3.0, overhead_s=8.0),
    # yolo11n (2.6M) at 160 px trains ~60 img/s there; validation pays for NMS and mAP
    "ultralytics": Prior(ips_1m_224=80.0, val_speedup=2.0, overhead_s=10.0),
    "transformers": Prior(ips_1m_224=60.0, val_speedup=3.0, overhead_s=12.0),
}
DEFAULT_PRIOR = Prior(ips_1m_224=60.0, val_speedup=2.5, overhead_s=12.0)
RANGE_FACTOR: dict[str, float] = {"size": 2.0, "model": 2.5, "calibrated": 3.0, "prior": 3.0}

_DEVICE_WORDS = {
    "cpu": ("this CPU", "이 CPU"),
    "cuda": ("the GPU", "GPU"),
    "mps": ("the Apple GPU", "Apple GPU"),
}


class Estimate(BaseModel):
    """A duration estimate: a range, the most likely value, and what it rests on (`basis` and
    `basis_ko` say it in words; `kind` names the rule of the module doc, `jobs` how many earlier
    jobs it used)."""

    low_s: float
    high_s: float
    expected_s: float
    kind: Basis
    jobs: int
    device_kind: str
    basis: str
    basis_ko: str

    def basis_text(self, lang: str | None) -> str:
        return self.basis_ko if lang == "ko" else self.basis


# ------------------------------------------------------------------------------------ helpers


def size_bucket(image_size: int) -> int:
    """The smallest bucket at least `image_size` (the largest bucket for anything above it)."""
    for b in SIZE_BUCKETS:
        if image_size <= b:
            return b
    return SIZE_BUCKETS[-1]


def device_kind(device: str | None) -> str:
    """cpu | cuda | mps from a torch device string ("cuda:0" -> cuda); "" when unknown/auto."""
    d = (device or "").strip().lower()
    if d.startswith("cuda"):
        return "cuda"
    if d in ("cpu", "mps"):
        return d
    return ""


def split_sizes(num_images: int, val_fraction: float) -> tuple[int, int]:
    """(train, val) images of a dataset of `num_images` (the trainer's split size)."""
    n = max(0, int(num_images))
    if n <= 1:
        return n, 0
    val = max(1, round(n * val_fraction))
    return max(1, n - val), val


def _ts(value: str) -> float | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) and f >= 0 else None


def _params(model_name: str) -> float | None:
    from tools import catalog  # the catalog imports the adapters' model lists: only when needed

    info = catalog.find_model(model_name)
    return float(info.params_m) if info is not None and info.params_m else None


_probe_cache: list[tuple[float, float]] = []  # (monotonic time, GFLOP/s) of the latest probe


def cpu_probe_gflops() -> float:
    """This machine's float32 matrix-product speed (GFLOP/s, best of a few ~30 ms windows): how
    much faster or slower than the reference machine a job without any measured job should be.
    Measured again when the last probe is older than `PROBE_MAX_AGE_S` (the load changes)."""
    now = time.monotonic()
    if _probe_cache and now - _probe_cache[-1][0] < PROBE_MAX_AGE_S:
        return _probe_cache[-1][1]
    value = _measure_gflops()
    _probe_cache[:] = [(now, value)]
    return value


def latest_device_kind(db: Session) -> str:
    """Where the latest measured job ran (cpu | cuda | mps); "cpu" when nothing was measured."""
    return db.scalar(select(JobThroughput.device_kind).order_by(JobThroughput.id.desc()).limit(1)) or "cpu"


def cpu_share() -> float:
    """The share of this machine's CPUs a new trainer can expect: cores / 1-minute load average,
    at most 1 (a one-thread probe does not see other processes; a trainer shares the cores)."""
    try:
        cores = len(os.sched_getaffinity(0))
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return 1.0
    return min(1.0, cores / load) if load > 0 else 1.0


def _measure_gflops() -> float:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        one = _measure_one_thread()
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return one * max(1, cores)


def _measure_one_thread() -> float:
    import numpy as np

    n = 256
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    best = 0.0
    for _ in range(3):
        count = 0
        start = time.perf_counter()
        while True:
            a @ a
            count += 1
            elapsed = time.perf_counter() - start
            if elapsed >= PROBE_SECONDS:
                break
        best = max(best, 2 * n**3 * count / elapsed / 1e9)
    return best


# ------------------------------------------------------------------------------------ recording


def record_job_throughput(db: Session, job: Job, end_ts: str) -> JobThroughput | None:
    """Measure the job's speed from its events (module doc) and add a row (not committed: the
    caller's transaction). None when the events do not allow it (no timed epoch, no dataset
    size, an interrupted attempt, already recorded)."""
    if job.id is None or db.scalar(select(JobThroughput.id).where(JobThroughput.job_id == job.id)) is not None:
        return None
    rows = db.execute(
        select(JobEvent.ts, JobEvent.type, JobEvent.data)
        .where(JobEvent.job_id == job.id, JobEvent.type.in_(("status", "epoch")))
        .order_by(JobEvent.seq)
    ).all()
    start: float | None = None
    running_ts: float | None = None
    device = ""
    epochs: list[tuple[float, float]] = []  # (train_s, val_s)
    prev_ts: float | None = None
    for ts_text, type_, data in rows:
        data = data or {}
        ts = _ts(ts_text)
        if ts is None:
            continue
        if type_ == "status":
            status = data.get("status")
            if status in ("interrupted", "resuming"):
                return None
            if status == "preparing" and start is None:
                start = ts - (_num(data.get("process_s")) or 0.0)
            if status == "running":
                running_ts = ts
                device = device_kind(data.get("device")) or device
                prev_ts = ts
            continue
        if data.get("recovered"):
            return None
        train_s, val_s, epoch_s = _num(data.get("train_s")), _num(data.get("val_s")), _num(data.get("epoch_s"))
        if train_s is None:
            gap = epoch_s if epoch_s is not None else (ts - prev_ts if prev_ts is not None else None)
            if gap is None:
                return None
            train_s, val_s = gap, 0.0
        epochs.append((train_s, val_s or 0.0))
        prev_ts = ts
    end = _ts(end_ts)
    if start is None:
        start = running_ts
    if not epochs or start is None or end is None or end <= start:
        return None
    num_images = 0
    if job.snapshot_id:
        num_images = int(
            db.scalar(select(DatasetSnapshot.num_images).where(DatasetSnapshot.id == job.snapshot_id)) or 0
        )
    hp = dict(job.hyperparameters or {})
    train_images, val_images = split_sizes(num_images, float(hp.get("val_fraction") or 0.2))
    steady = epochs[1:] or epochs
    train_s = statistics.median(t for t, _ in steady)
    val_s = statistics.median(v for _, v in steady)
    if train_images <= 0 or train_s <= 0:
        return None
    wall = end - start
    image_size = int(hp.get("image_size") or 0) or 224
    row = JobThroughput(
        job_id=job.id,
        framework=job.framework,
        model_name=job.model_name,
        task_type=job.task_type,
        image_size=image_size,
        size_bucket=size_bucket(image_size),
        device_kind=device or device_kind(hp.get("device")) or "cpu",
        epochs=len(epochs),
        batch_size=int(hp["batch_size"]) if hp.get("batch_size") else None,
        train_images=train_images,
        val_images=val_images,
        train_ips=train_images / train_s,
        val_ips=(val_images / val_s) if val_images and val_s > 0 else None,
        overhead_s=max(0.0, wall - len(epochs) * (train_s + val_s)),
        wall_s=wall,
    )
    db.add(row)
    return row


# ------------------------------------------------------------------------------------ estimating


def _predict(row: JobThroughput, train: int, val: int, epochs: int, size: int, scale: float = 1.0) -> float:
    """The duration `row`'s speed predicts, its per-image cost multiplied by `scale` and by the
    pixel ratio to `size`."""
    pixels = (size / max(row.image_size, 1)) ** 2
    per_epoch = train / row.train_ips
    if val:
        per_epoch += val / row.val_ips if row.val_ips else 0.0
    return row.overhead_s + epochs * per_epoch * pixels * scale


def _prior_duration(framework: str, params_m: float, train: int, val: int, size: int) -> tuple[float, float]:
    """(fixed cost, per-epoch seconds) of the framework's prior on the reference machine."""
    p = PRIORS.get(framework, DEFAULT_PRIOR)
    ips = p.ips_1m_224 / max(params_m, 0.5) / ((size / 224) ** 2)
    return p.overhead_s, train / ips + val / (ips * p.val_speedup)


def _words(model: str, size: int, device: str) -> tuple[str, str, str, str]:
    dev_en, dev_ko = _DEVICE_WORDS.get(device, (device, device))
    return model, f"{size} px", dev_en, dev_ko


def _size_list(rows: list[JobThroughput]) -> str:
    return "/".join(str(s) for s in sorted({r.image_size for r in rows}))


def estimate_duration(
    ctx: ToolContext,
    dataset: dict[str, Any],
    plan: dict[str, Any],
) -> Estimate:
    """The duration of the job `plan` describes on `dataset` ({"num_images", ...}).

    `plan`: the job resolved by the caller (`tools.jobs.create_job(ctx, intent, launch=False)`;
    resolving it here would make this module import `tools.jobs`, which imports it through
    `tools.events`). See the module doc for the rules, the range and the basis text."""
    hp = dict(plan.get("hyperparameters") or {})
    framework = str(plan["framework"])
    model = str(plan["model_name"])
    epochs = max(1, int(hp.get("epochs") or plan.get("epochs") or 1))
    size = int(hp.get("image_size") or 224)
    train, val = split_sizes(int(dataset.get("num_images") or 0), float(hp.get("val_fraction") or 0.2))
    db = ctx.db
    device = device_kind(str(hp.get("device") or "auto"))
    if not device:  # auto: where the latest jobs ran
        device = latest_device_kind(db)
    bucket = size_bucket(size)

    def recent(*conds: Any) -> list[JobThroughput]:
        q = select(JobThroughput).where(JobThroughput.device_kind == device, *conds)
        return list(db.scalars(q.order_by(JobThroughput.id.desc()).limit(RECENT_ROWS)))

    m, s, dev_en, dev_ko = _words(model, size, device)

    same = recent(
        JobThroughput.framework == framework, JobThroughput.model_name == model, JobThroughput.size_bucket == bucket
    )
    if same:
        preds = [_predict(r, train, val, epochs, size) for r in same]
        n = len(preds)
        slack = 1.4 if n == 1 else 1.25
        jobs_en = "job" if n == 1 else "jobs"
        return _make(
            statistics.median(preds),
            min(preds) / slack,
            max(preds) * slack,
            "same",
            n,
            device,
            f"based on {n} earlier {m} {jobs_en} at {_size_list(same)} px on {dev_en}",
            f"{dev_ko}에서 {_size_list(same)} px로 학습한 {m} 작업 {n}개 기준",
        )

    same_model = recent(JobThroughput.framework == framework, JobThroughput.model_name == model)
    if same_model:
        preds = [_predict(r, train, val, epochs, size) for r in same_model]
        sizes = _size_list(same_model)
        return _ranged(
            statistics.median(preds),
            "size",
            len(preds),
            device,
            f"no earlier {m} job at {s}: scaled by image area from {len(preds)} {m} job(s) at {sizes} px on {dev_en}",
            f"{s}로 학습한 {m} 작업이 없어 {sizes} px {m} 작업 {len(preds)}개에서 이미지 면적 비율로 환산",
        )

    params = _params(model) or 5.0
    same_fw = recent(JobThroughput.framework == framework)
    if same_fw:
        preds = []
        for r in same_fw:
            scale = params / (_params(r.model_name) or params)
            preds.append(_predict(r, train, val, epochs, size, scale))
        refs = ", ".join(dict.fromkeys(r.model_name for r in same_fw))
        return _ranged(
            statistics.median(preds),
            "model",
            len(preds),
            device,
            f"no earlier {m} job: rough estimate from {refs} job(s) on {dev_en}, scaled by model size and image area",
            f"{m} 작업 기록이 없어 {dev_ko}의 {refs} 작업에서 모델 크기와 이미지 면적으로 환산한 대략적인 추정",
        )

    overhead, per_epoch = _prior_duration(framework, params, train, val, size)
    others = recent()
    if others:
        ratios_speed: list[float] = []
        ratios_overhead: list[float] = []
        for r in others:
            r_overhead, r_epoch = _prior_duration(
                r.framework, _params(r.model_name) or 5.0, r.train_images, r.val_images, r.image_size
            )
            measured = _predict(r, r.train_images, r.val_images, 1, r.image_size) - r.overhead_s
            ratios_speed.append(measured / r_epoch if r_epoch > 0 else 1.0)
            ratios_overhead.append(r.overhead_s / r_overhead if r_overhead > 0 else 1.0)
        refs = ", ".join(dict.fromkeys(f"{r.framework} {r.model_name}" for r in others))
        expected = overhead * statistics.median(ratios_overhead) + epochs * per_epoch * statistics.median(ratios_speed)
        return _ranged(
            expected,
            "calibrated",
            len(others),
            device,
            f"no earlier {framework} job here: rough prior for {framework} scaled by model size, "
            f"calibrated with {len(others)} {refs} job(s) on {dev_en}",
            f"{framework} 작업 기록이 없어 모델 크기로 환산한 {framework} 기본값을 {dev_ko}의 {refs} 작업 "
            f"{len(others)}개로 보정한 대략적인 추정",
        )

    if device == "cpu":
        gflops, share = cpu_probe_gflops(), cpu_share()
        speed = gflops * share / REFERENCE_CPU_GFLOPS
        busy_en = f", {share:.0%} of it free" if share < 1 else ""
        busy_ko = f", 여유 {share:.0%}" if share < 1 else ""
        how_en = f"a quick speed probe of this CPU ({gflops:.0f} GFLOP/s{busy_en})"
        how_ko = f"이 CPU 속도 측정({gflops:.0f} GFLOP/s{busy_ko})"
    else:
        speed = GPU_SPEEDUP
        how_en, how_ko = f"an assumed {dev_en} speed", f"{dev_ko} 속도 가정"
    expected = overhead + epochs * per_epoch / max(speed, 0.05)
    return _ranged(
        expected,
        "prior",
        0,
        device,
        f"no earlier job on this machine: rough prior for {framework} scaled by model size and image area, "
        f"and {how_en}",
        f"이 장비의 작업 기록이 없어 모델 크기와 이미지 면적으로 환산한 {framework} 기본값과 "
        f"{how_ko}에 따른 대략적인 추정",
    )


def _ranged(expected: float, kind: Basis, jobs: int, device: str, basis: str, basis_ko: str) -> Estimate:
    f = RANGE_FACTOR[kind]
    return _make(expected, expected / f, expected * f, kind, jobs, device, basis, basis_ko)


def _make(
    expected: float, low: float, high: float, kind: Basis, jobs: int, device: str, basis: str, basis_ko: str
) -> Estimate:
    low = min(low, expected)
    high = max(high, expected)
    return Estimate(
        low_s=round(low, 1),
        high_s=round(high, 1),
        expected_s=round(expected, 1),
        kind=kind,
        jobs=jobs,
        device_kind=device,
        basis=basis,
        basis_ko=basis_ko,
    )
