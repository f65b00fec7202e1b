"""The real app under uvicorn in a background thread, for tests whose trainer processes call back.

    port = free_port()
    settings = make_settings(db_url, tmp_path, callback_base_url=f"http://127.0.0.1:{port}", ...)
    with LiveServer(create_app(settings), port) as server:
        server.url            # http://127.0.0.1:<port>
        server.client()       # an httpx.Client on it
    # restart on the same port (a trainer's callback URL keeps working):
    server.stop(); LiveServer(create_app(settings), port).start()

The lifespan runs (migrations, event bus, job supervisor); `stop()` ends the lifespan, which leaves
running trainers alone (the next app adopts them).

Also small DICE datasets for training tests (`classification_files`) and helpers to wait on jobs.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx

API = "/api/v1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(self, app: Any, port: int | None = None, *, startup_timeout: float = 60.0) -> None:
        import uvicorn

        self.app = app
        self.port = port or free_port()
        self.startup_timeout = startup_timeout
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, lifespan="on", log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveServer:
        self.thread = threading.Thread(target=self.server.run, name=f"live-server-{self.port}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError(f"the live server on port {self.port} did not start")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the live server on port {self.port} did not start in {self.startup_timeout}s")
            time.sleep(0.05)
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout)
            self.thread = None

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0, **kwargs)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ------------------------------------------------------------------------------------ users


def register(client: httpx.Client, email: str, password: str = "correct horse battery staple") -> dict[str, str]:
    r = client.post(f"{API}/auth/register", json={"email": email, "password": password})
    assert r.status_code in (201, 409), r.text
    tok = client.post(f"{API}/auth/token", data={"username": email, "password": password})
    assert tok.status_code == 200, tok.text
    return {"Authorization": f"Bearer {tok.json()['access_token']}"}


# ----------------------------------------------------------------------------------- datasets


def _png(value: int, seed: int, size: int = 32) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    arr = np.clip(rng.normal(value, 20, (size, size, 3)), 0, 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def classification_files(n: int = 40, name: str = "tiny-cls", size: int = 32) -> dict[str, bytes]:
    """A DICE folder (as {relative path: bytes}) of `n` noisy size x size PNGs in two classes
    (dark, bright) with image-level labels: trains a timm model in about a second per epoch."""
    files: dict[str, bytes] = {}
    images, annotations = [], []
    for i in range(n):
        cls = i % 2
        rel = f"{'dark' if cls == 0 else 'bright'}/{i:03d}.png"
        files[f"images/{rel}"] = _png(60 if cls == 0 else 190, i, size)
        images.append({"id": i + 1, "file_name": rel, "width": size, "height": size})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": cls + 1})
    doc = {
        "format_version": "1.0",
        "dataset": {"name": name, "description": ""},
        "categories": [{"id": 1, "name": "dark"}, {"id": 2, "name": "bright"}],
        "images": images,
        "annotations": annotations,
    }
    files["annotations.json"] = json.dumps(doc).encode()
    return files


def detection_files(n: int = 6, name: str = "tiny-det", size: int = 32) -> dict[str, bytes]:
    """A DICE folder with one box per image (object detection only)."""
    files: dict[str, bytes] = {}
    images, annotations = [], []
    for i in range(n):
        rel = f"{i:03d}.png"
        files[f"images/{rel}"] = _png(120, i, size)
        images.append({"id": i + 1, "file_name": rel, "width": size, "height": size})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [4, 4, 10, 12]})
    doc = {
        "format_version": "1.0",
        "dataset": {"name": name, "description": ""},
        "categories": [{"id": 1, "name": "thing"}],
        "images": images,
        "annotations": annotations,
    }
    files["annotations.json"] = json.dumps(doc).encode()
    return files


def upload_dataset(
    client: Any, headers: dict[str, str], name: str, files: dict[str, bytes], visibility: str = "private"
) -> str:
    """Create a dataset through the REST API and upload `files` into it; returns its id."""
    r = client.post(f"{API}/datasets", json={"name": name, "visibility": visibility}, headers=headers)
    assert r.status_code == 201, r.text
    did = str(r.json()["id"])
    parts = [("files", (path, data, "application/octet-stream")) for path, data in files.items()]
    up = client.post(f"{API}/datasets/{did}/upload", files=parts, headers=headers)
    assert up.status_code in (200, 201), up.text
    return did


# ---------------------------------------------------------------------------------------- jobs


def wait_for(pred: Callable[[], Any], timeout: float = 60.0, interval: float = 0.2, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def get_job(client: Any, headers: dict[str, str], job_id: int) -> dict[str, Any]:
    r = client.get(f"{API}/jobs/{job_id}", headers=headers)
    assert r.status_code == 200, r.text
    job: dict[str, Any] = r.json()
    return job


def events(client: Any, headers: dict[str, str], job_id: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        r = client.get(f"{API}/jobs/{job_id}/events", params={"after": after}, headers=headers)
        assert r.status_code == 200, r.text
        body = r.json()
        page = body if isinstance(body, list) else body.get("events", body.get("items", []))
        if not page:
            return out
        out.extend(page)
        after = page[-1]["seq"]


def wait_status(
    client: Any, headers: dict[str, str], job_id: int, statuses: tuple[str, ...], timeout: float = 120.0
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        job = get_job(client, headers, job_id)
        return job if job["status"] in statuses else None

    result: dict[str, Any] = wait_for(check, timeout, what=f"job {job_id} in {statuses}")
    return result


def epoch_events(evs: list[dict[str, Any]]) -> list[int]:
    return [int(e["data"]["epoch"]) for e in evs if e["type"] == "epoch"]


def statuses(evs: list[dict[str, Any]]) -> list[str]:
    return [str(e["data"]["status"]) for e in evs if e["type"] == "status" and not e["data"].get("ignored")]


# ----------------------------------------------------------------------------- fake trainers

_FAKE_PYTHON = """#!{python}
# A stand-in for a framework interpreter: `<this> -m trainer_runtime --spec S [--resume]`.
import json, os, signal, subprocess, sys, time
args = sys.argv[1:]
assert args[:2] == ["-m", "trainer_runtime"], args
spec = args[args.index("--spec") + 1]
resume = "--resume" in args
mode, code, seconds = {mode!r}, {code!r}, {seconds!r}
job = json.load(open(spec))["job_id"]
print("fake trainer pid", os.getpid(), "spec", spec, "resume", resume, "job", job, flush=True)
if mode == "exit":
    print("failing on purpose", flush=True)
    sys.exit(code)
def on_signal(signum, frame):
    print("got signal", signum, flush=True)
    if mode == "stubborn":
        return
    sys.exit(130)
signal.signal(signal.SIGINT, on_signal)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, on_signal)
if mode == "child":
    child = subprocess.Popen(["sleep", "300"])
    with open(spec + ".child", "w") as fh:
        fh.write(str(child.pid))
deadline = time.time() + seconds
while time.time() < deadline:
    time.sleep(0.05)
print("done", flush=True)
sys.exit(code)
"""


def write_fake_python(path: Any, mode: str = "sleep", code: int = 0, seconds: float = 300.0) -> str:
    """Write an executable fake interpreter for `LocalExecutor` (see `_FAKE_PYTHON`).

    mode: "sleep" (run `seconds`, then exit `code`; SIGINT/SIGTERM -> exit 130), "exit" (exit `code`
    at once), "stubborn" (ignores SIGINT and SIGTERM), "child" (like sleep, plus a `sleep 300` child
    whose pid goes to `<spec>.child`).
    """
    import os
    import sys
    from pathlib import Path

    p = Path(path)
    p.write_text(_FAKE_PYTHON.format(python=sys.executable, mode=mode, code=code, seconds=seconds))
    os.chmod(p, 0o755)
    return str(p)
