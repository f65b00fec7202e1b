"""Overhead of serving inference: the same model through the HTTP API vs in-process.

Cases (the tiny models of the test suite, `tests.inference_models`, trained once and cached):

* ``yolo``: yolo11n detection (64 px) on ``shapes-demo`` images (128x128). In-process reference =
  Ultralytics' own ``YOLO(best.pt).predict(image)``; batched reference = ``predict(list, batch=B)``.
* ``timm``: resnet18 (32 px) on ``digits`` images. timm has no predict API; the in-process
  reference is the checkpoint's model with timm's eval transform (``create_transform``), one image
  per forward; batched reference = the same in batches of B.
* ``yolo:320``, ``timm:224`` (any ``case:SIZE``): the same weights run at the model's usual input
  size (a copy of the checkpoint with Ultralytics' ``train_args.imgsz`` / timm's ``image_size``
  set to SIZE, which both the server's predictor and the reference read) on the dataset images
  upscaled to SIZE x SIZE PNGs, with ``--sized-images`` test-run images. This is what users run;
  the tiny rows show the fixed serving cost at its worst.

Single image: a real uvicorn server (``--server process``, the default: ``uvicorn --factory
web.main:app_factory`` in its own process, as deployed; ``--server thread``: in this process,
``tests.live_server.LiveServer``, sharing the GIL with the client; the model runs in the server's
worker process either way) gets ``POST /api/v1/jobs/{id}/inference`` with the image file; after a
warm-up (worker started, checkpoint fetched, model cached), N sequential requests are timed
end to end (multipart PNG upload, JSON answer decoded) with the standard library's keep-alive
``http.client`` (``--client httpx``: httpx, which adds ~0.5 ms of client CPU per request). The
in-process reference calls the already loaded model in this process. After ``--warmup`` untimed
calls of each, HTTP and in-process calls alternate in blocks of ``--block`` until each has
``--requests``, so a change of the machine's load during the run hits both sides; each block starts
with ``--block-warmup`` untimed calls (right after a switch both sides are slow for a few calls:
the other process just had the cores and caches). Printed: p50 /
p95 of both and the p50 ratio HTTP / in-process (goal <= 1.5).

Batch: ``POST /api/v1/test-runs`` over a dataset of M images, timed from the POST to the run's final
status event on its live stream (``GET /test-runs/{id}/stream``), vs the framework's batched predict
over the same files with the test run's settings (decode included on both sides; a detection test
run keeps boxes down to conf 0.001 for its mAP, so the Ultralytics reference predicts at 0.001 too).
Printed: images/s of both and the ratio (goal >= 0.9).

    .venv/bin/python bench/inference_overhead.py [--requests 100] [--images 400] [--batch 16]
                                                 [--cases yolo,timm,yolo:320,timm:224]
                                                 [--sized-images 200] [--device cpu|cuda]
                                                 [--server process|thread]
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

API = "/api/v1"
BOUNDARY = "vta-bench-boundary-7f3a9c"


def _multipart(field: str, filename: str, content_type: str, data: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def _dataset_folder(src_dir: Path, dest: Path, n: int, size: int = 0) -> Path:
    """A real DICE folder with n images of `src_dir` (repeated when it has fewer); with `size`,
    the images are upscaled to size x size (boxes scaled), so decoding costs what it does at the
    model's usual input size."""
    doc = json.loads((src_dir / "annotations.json").read_text(encoding="utf-8"))
    images: list[dict[str, Any]] = []
    anns: list[dict[str, Any]] = []
    by_img: dict[int, list[dict[str, Any]]] = {}
    for a in doc["annotations"]:
        by_img.setdefault(a["image_id"], []).append(a)
    k = 0
    while len(images) < n:
        img = doc["images"][k % len(doc["images"])]
        new_id = len(images) + 1
        name = f"r{k // len(doc['images'])}/{img['file_name']}"
        target = dest / "images" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        sx = sy = 1.0
        if size:
            from PIL import Image

            with Image.open(src_dir / "images" / img["file_name"]) as im:
                sx, sy = size / im.width, size / im.height
                im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR).save(target, compress_level=1)
            img = {k: v for k, v in img.items() if k not in ("sha256", "file_size", "bytes")}
            img.update(width=size, height=size)
        else:
            shutil.copyfile(src_dir / "images" / img["file_name"], target)
        images.append({**img, "id": new_id, "file_name": name})
        for a in by_img.get(img["id"], []):
            b = dict(a)
            if size and b.get("bbox"):
                x, y, w, h = b["bbox"]
                b["bbox"] = [x * sx, y * sy, w * sx, h * sy]
                b.pop("segmentation", None)
                b["area"] = b["bbox"][2] * b["bbox"][3]
            anns.append({**b, "id": len(anns) + 1, "image_id": new_id})
        k += 1
    doc["images"], doc["annotations"] = images, anns
    (dest / "annotations.json").write_text(json.dumps(doc), encoding="utf-8")
    return dest


def _resized_checkpoint(m: Any, size: int, dest: Path) -> Path:
    """A copy of the checkpoint that runs at `size` px (what the predictor and the reference read:
    Ultralytics' ``train_args.imgsz``, the timm checkpoint's ``image_size``). Same weights: the
    timing, not the accuracy, is what matters here."""
    import torch

    ckpt = torch.load(m.best, map_location="cpu", weights_only=False)
    if m.framework == "ultralytics":
        ckpt["train_args"] = {**(ckpt.get("train_args") or {}), "imgsz": size}
    else:
        ckpt["image_size"] = size
    dest.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, dest)
    return dest


def _job(state: Any, owner_id: int, m: Any) -> int:
    from tools.db.models import Job, JobCheckpoint
    from trainer_runtime.storage import checkpoint_key

    with state.session_factory() as db:
        job = Job(
            owner_id=owner_id, framework=m.framework, model_name=m.model_name, task_type=m.task_type, status="completed"
        )
        db.add(job)
        db.commit()
        key = checkpoint_key(job.id, None, "best.pt")
        info = state.storage.internal.put_file(key, m.best)
        db.add(JobCheckpoint(job_id=job.id, name="best.pt", key=key, size=info.size, sha256=info.sha256, epoch=1))
        db.commit()
        return int(job.id)


def _upload(state: Any, owner_id: int, folder: Path, name: str) -> str:
    from tools.context import ToolContext
    from tools.datasets import create_dataset, upload_path
    from tools.db.models import User

    with state.session_factory() as db:
        ctx = ToolContext(db=db, user=db.get(User, owner_id), storage=state.storage, work_dir=state.work_dir)
        ds = create_dataset(ctx, name)
        upload_path(ctx, ds.id, folder, format="dice")
        return ds.id


class ServerProcess:
    """The server as deployed: ``uvicorn --factory web.main:app_factory`` in its own process with
    `settings` passed through the environment. `state()` opens the same database and stores from
    this process (after the server migrated them) to set up the job and the dataset."""

    def __init__(self, settings: Any, tmp: Path) -> None:
        self.settings = settings
        self.tmp = tmp
        self.port = 0
        self.proc: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerProcess:
        import subprocess
        import urllib.request

        from tests.live_server import free_port

        s = self.settings
        self.port = free_port()
        env = dict(os.environ)
        for k in ("EXTERNAL_STORAGE_ENDPOINT", "INTERNAL_STORAGE_ENDPOINT", "S3_ENDPOINT", "REDIS_URL"):
            env.pop(k, None)
        env.update(
            VTA_DATA_DIR=str(s.data_dir),
            DATABASE_URL=s.resolved_database_url,
            SECRET_KEY=s.resolved_secret_key(),
            CREATE_DEMO_DATASETS="false",
        )
        self.tmp.mkdir(parents=True, exist_ok=True)
        log = open(self.tmp / "server.log", "wb")
        cmd = [sys.executable, "-m", "uvicorn", "--factory", "web.main:app_factory", "--host", "127.0.0.1"]
        cmd += ["--port", str(self.port), "--log-level", "warning"]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(self.tmp / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("the server did not become healthy in 120 s")

    def state(self) -> Any:
        from types import SimpleNamespace

        from tools.db import create_engine_for_url, make_session_factory
        from trainer_runtime.storage import DualStorageClient
        from web.main import storage_config_from_settings

        s = self.settings
        engine = create_engine_for_url(s.resolved_database_url)
        return SimpleNamespace(
            session_factory=make_session_factory(engine),
            storage=DualStorageClient.from_config(storage_config_from_settings(s)),
            work_dir=s.data_dir / "work",
        )

    def __exit__(self, *exc: object) -> None:
        import signal
        import subprocess

        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Reference:
    """The framework's own API on a loaded model, in this process."""

    def __init__(self, m: Any, device: str) -> None:
        self.m = m
        self.device = device
        self.imgsz: Any = None
        if m.framework == "ultralytics":
            from trainer_runtime.adapters._ultralytics_env import prepare_ultralytics

            prepare_ultralytics()
            from ultralytics import YOLO

            self.model: Any = YOLO(str(m.best))
            self.imgsz = self.model.overrides.get("imgsz")
        else:
            import torch
            from timm.data import create_transform

            from trainer_runtime.adapters.timm_adapter import TimmAdapter

            model, meta = TimmAdapter.build_model_from_checkpoint(m.best)
            self.model = model.to(device).eval()
            self.tf = create_transform(int(meta["image_size"]), is_training=False, crop_pct=1.0)
            self.torch = torch

    def predict(self, images: list[Any], batch: int, conf: float | None = None) -> Any:
        if self.m.framework == "ultralytics":
            dev = "cpu" if self.device == "cpu" else "0"
            kw = {"conf": conf} if conf is not None else {}
            out = []
            for i in range(0, len(images), batch):
                out += self.model.predict(images[i : i + batch], imgsz=self.imgsz, device=dev, verbose=False, **kw)
            return out
        torch = self.torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), batch):
                x = torch.stack([self.tf(im) for im in images[i : i + batch]]).to(self.device)
                out.append(self.model(x).softmax(-1).cpu())
        return out


def run_case(case: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import httpx
    from PIL import Image

    from tests.conftest import make_settings
    from tests.inference_models import trained_model
    from tests.live_server import LiveServer, register
    from web.main import create_app

    cache = ROOT / ".pytest_cache" / "d" / "inference-models-v1"
    name, _, size_s = case.partition(":")
    size = int(size_s or 0)
    kind = {"yolo": "yolo-detect", "timm": "timm-digits"}[name]
    m = trained_model(kind, cache, cache / "demo")
    src = m.dataset_dir.resolve()
    n_images = args.images if not size else args.sized_images
    if size:
        m = dataclasses.replace(m, best=_resized_checkpoint(m, size, work / f"{name}-{size}" / "best.pt"))
    folder = _dataset_folder(src, work / f"{name}-{size}-data", n_images, size)
    files = sorted((folder / "images").rglob("*.png"))
    one = files[0].read_bytes()

    os.environ["VTA_INFERENCE_DEVICE"] = args.device
    os.environ["VTA_INFERENCE_TEST_RUN_BATCH"] = str(args.batch)
    tmp = work / f"{name}-{size}-server"
    settings = make_settings(f"sqlite:///{tmp / 'app.db'}", tmp)
    result: dict[str, Any] = {
        "case": case,
        "model": m.model_name,
        "framework": m.framework,
        "size": size or None,
        "server": args.server,
        "client": args.client,
    }
    if args.server == "thread":
        app = create_app(settings)
        server_cm: Any = LiveServer(app)
    else:
        server_cm = ServerProcess(settings, tmp)
        app = None
    with server_cm as server, httpx.Client(base_url=server.url, timeout=120) as client:
        state = app.state if app is not None else server.state()
        headers = register(client, f"bench-{name}-{size}@example.com")
        me = client.get(f"{API}/auth/me", headers=headers).json()
        job = _job(state, int(me["id"]), m)
        dataset_id = _upload(state, int(me["id"]), folder, f"bench-{name}-{size}")

        conn = http.client.HTTPConnection("127.0.0.1", int(server.url.rsplit(":", 1)[1]), timeout=120)

        def http_one() -> float:
            t0 = time.perf_counter()
            if args.client == "httpx":
                r = client.post(
                    f"{API}/jobs/{job}/inference", headers=headers, files={"file": ("x.png", one, "image/png")}
                )
                status, text = r.status_code, r.text
            else:  # a lean keep-alive client: what is timed is the server, not httpx's ~0.5 ms per request
                body = _multipart("file", "x.png", "image/png", one)
                conn.request(
                    "POST",
                    f"{API}/jobs/{job}/inference",
                    body=body,
                    headers={**headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
                )
                resp = conn.getresponse()
                status, raw = resp.status, resp.read()
                text = raw.decode()
                json.loads(raw)
            dt = time.perf_counter() - t0
            assert status == 200, text
            return dt

        # Interleaved blocks (HTTP, then in-process, alternating) so that a change in the machine's
        # load during the run hits both sides alike; the reference model lives in this process.
        ref = Reference(m, args.device)
        im = Image.open(io.BytesIO(one)).convert("RGB")

        def inproc_one() -> float:
            t0 = time.perf_counter()
            ref.predict([Image.open(io.BytesIO(one)).convert("RGB")], 1)  # decode included, as the server does
            return time.perf_counter() - t0

        for _ in range(args.warmup):
            http_one()
            ref.predict([im], 1)
        http_times: list[float] = []
        inproc: list[float] = []
        block = max(1, args.block)
        while len(http_times) < args.requests:
            n = min(block, args.requests - len(http_times))
            # the first calls after a switch are slow on both sides (the other process just used the
            # cores and caches; HTTP takes ~10 calls to settle, in-process ~3): untimed
            for _ in range(args.block_warmup):
                http_one()
            http_times += [http_one() for _ in range(n)]
            for _ in range(args.block_warmup):
                inproc_one()
            inproc += [inproc_one() for _ in range(n)]
        conn.close()

        # test run throughput (the worker already holds the model): from the POST to the final
        # status event on the run's live stream (SSE), as a watching client sees it
        t0 = time.perf_counter()
        body = {"job_id": job, "dataset_id": dataset_id}
        if args.test_run_conf is not None:
            body["conf"] = args.test_run_conf
        r = client.post(f"{API}/test-runs", headers=headers, json=body)
        assert r.status_code == 201, r.text
        run_id = r.json()["id"]
        final = None
        with client.stream("GET", f"{API}/test-runs/{run_id}/stream", headers=headers) as stream:
            for line in stream.iter_lines():
                if line.startswith("data: {") and line != "data: {}":
                    ev = json.loads(line[6:])
                    if ev["type"] == "status" and ev["data"]["status"] in ("completed", "failed"):
                        final = ev["data"]["status"]
                        break
        run_wall = time.perf_counter() - t0
        st = client.get(f"{API}/test-runs/{run_id}", headers=headers).json()
        assert final == "completed" and st["status"] == "completed", st["error"]
        result["test_run"] = {
            "images": st["metrics"]["processed"],
            "wall_s": round(run_wall, 3),
            "images_per_s": round(st["metrics"]["processed"] / run_wall, 2),
            "worker_mean_inference_ms": st["metrics"].get("mean_inference_time_ms"),
        }
    # the framework's batched predict over the same files with the test run's settings (a test run
    # of a detection model keeps boxes down to conf 0.001 for its mAP, as Ultralytics' val does)
    conf = None
    if m.framework == "ultralytics":
        conf = args.test_run_conf if args.test_run_conf is not None else 0.001
    t0 = time.perf_counter()
    decoded = [Image.open(f).convert("RGB") for f in files]
    ref.predict(decoded, args.batch, conf)
    batch_wall = time.perf_counter() - t0
    result["single"] = {
        "http_p50_ms": round(1000 * statistics.median(http_times), 2),
        "http_p95_ms": round(1000 * _pct(http_times, 0.95), 2),
        "inproc_p50_ms": round(1000 * statistics.median(inproc), 2),
        "inproc_p95_ms": round(1000 * _pct(inproc, 0.95), 2),
    }
    result["single"]["p50_ratio"] = round(result["single"]["http_p50_ms"] / result["single"]["inproc_p50_ms"], 3)
    result["batch_reference"] = {
        "images": len(files),
        "wall_s": round(batch_wall, 3),
        "images_per_s": round(len(files) / batch_wall, 2),
    }
    ratio = result["test_run"]["images_per_s"] / result["batch_reference"]["images_per_s"]
    result["throughput_ratio"] = round(ratio, 3)
    return result


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=20, help="untimed requests (and in-process calls) first")
    ap.add_argument("--block", type=int, default=50, help="HTTP and in-process calls alternate in blocks of this")
    ap.add_argument("--block-warmup", type=int, default=10, help="untimed calls at the start of every block")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument(
        "--cases",
        default="yolo,timm,yolo:320,timm:224",
        help="yolo | timm, optionally :SIZE = the same weights run at SIZE px on images upscaled to SIZE",
    )
    ap.add_argument("--sized-images", type=int, default=200, help="test-run images of the :SIZE cases")
    ap.add_argument(
        "--test-run-conf",
        type=float,
        default=None,
        help="conf of the test run and of the batched reference (default: the test run's, 0.001 for detection)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--client",
        choices=("http.client", "httpx"),
        default="http.client",
        help="the single-image client: the standard library's keep-alive HTTPConnection or httpx (~0.5 ms more)",
    )
    ap.add_argument(
        "--server",
        choices=("process", "thread"),
        default="process",
        help="the server in its own process (as deployed) or in a thread of this process (shares the GIL)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "_work" / "inference_overhead.json"))
    args = ap.parse_args()
    import logging

    logging.basicConfig(level=logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="vta-inference-bench-"))
    results = []
    try:
        for case in [c.strip() for c in args.cases.split(",") if c.strip()]:
            results.append(run_case(case, args, work))
            print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    summary = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "loadavg": load,
        "device": args.device,
        "args": vars(args),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print("\n| case | HTTP p50 | in-process p50 | p50 ratio | test run img/s | batched predict img/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        s, t, b = r["single"], r["test_run"], r["batch_reference"]
        print(
            f"| {r['case']} ({r['model']}) | {s['http_p50_ms']} ms | {s['inproc_p50_ms']} ms | {s['p50_ratio']} |"
            f" {t['images_per_s']} | {b['images_per_s']} | {r['throughput_ratio']} |"
        )
    print(f"load average {load}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
