"""What the benchmarks share: a real server process on loopback, a signed-in client, and figures.

    from _server import free_port, start_server, stop_server, sign_in, percentile, cpu_seconds

`start_server(data_dir, port)` runs ``uvicorn --factory web.main:app_factory`` from `root` (this
checkout, or another one for a side-by-side "before" figure) on 127.0.0.1 with a fresh data dir:
SQLite unless `database_url` is given, built-in demo datasets on, rules mode (no LLM), no Redis,
the trainers' callbacks pointed at the same port. It returns once ``/health`` answers 200, and
raises (after killing the process) when the server exits or is not healthy in `timeout_s`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-" + "x" * 48
PASSWORD = "correct horse battery staple"
API = "/api/v1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], p: float) -> float:
    """The p-th percentile (linear interpolation); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (from /proc); NaN when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
        return float("nan")


def start_server(
    data_dir: Path,
    port: int,
    *,
    root: Path = ROOT,
    database_url: str | None = None,
    env_extra: dict[str, str] | None = None,
    timeout_s: float = 180.0,
) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env.update(
        {
            "VTA_DATA_DIR": str(data_dir),
            "SECRET_KEY": SECRET,
            "CREATE_DEMO_DATASETS": "true",
            "VTA_CALLBACK_BASE_URL": f"http://127.0.0.1:{port}",
            "LLM_BASE_URL": "",
            "PYTHONPATH": str(root),
        }
    )
    for key in ("DATABASE_URL", "REDIS_URL"):
        env.pop(key, None)
    if database_url:
        env["DATABASE_URL"] = database_url
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "web.main:app_factory"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, cwd=root, env=env)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server did not become healthy in {timeout_s:g} s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT (uvicorn's graceful stop), then kill after 30 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def sign_in(client: httpx.Client, email: str = "bench@example.com") -> str:
    """Register `email` (or find it registered) and set the client's bearer token; returns it."""
    r = client.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
    if r.status_code not in (201, 409):
        raise RuntimeError(f"register {email}: {r.status_code} {r.text[:200]}")
    tok = client.post(f"{API}/auth/token", data={"username": email, "password": PASSWORD})
    tok.raise_for_status()
    token = str(tok.json()["access_token"])
    client.headers["Authorization"] = f"Bearer {token}"
    return token


def wait_for_job(client: httpx.Client, job_id: int, timeout_s: float, *, stop_on_timeout: bool = False) -> dict:
    """Poll ``GET /jobs/{id}`` every 0.5 s until the job ends; its JSON. Past `timeout_s` it raises
    (after asking the server to stop the job when `stop_on_timeout`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        job: dict = client.get(f"{API}/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "stopped"):
            return job
        if time.monotonic() > deadline:
            if stop_on_timeout:
                client.post(f"{API}/jobs/{job_id}/stop")
            raise RuntimeError(f"job {job_id} did not finish in {timeout_s} s (status {job['status']})")
        time.sleep(0.5)
