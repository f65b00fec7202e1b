"""WebSocket fan-out: latency from a trainer's POST to every watcher's receive, lost and reordered.

    .venv/bin/python bench/ws_fanout.py [--subscribers 1000] [--rate 20] [--duration 30]
                                        [--modes inproc,redis] [--redis-url redis://127.0.0.1:6379/0]
                                        [--json results.json]

For each mode, on loopback, with a fresh data dir (SQLite, demo datasets off):

* `inproc`: one server process (`uvicorn --factory web.main:app_factory`), in-process event bus;
* `redis`:  two server processes sharing the database and one Redis (`REDIS_URL`, a fresh channel
  prefix); the subscribers are split evenly between them, the events are posted to the first.

A user is registered through the API; a job row (status `running`, so the supervisor leaves it
alone) with a known callback token is inserted into the database. `--subscribers` WebSockets
(`/ws/jobs/{id}?after=0&token=...`, one asyncio process on uvloop) wait until the servers report them
all connected. `--client raw` (default): a minimal RFC 6455 client that stores each frame with its
arrival time and decodes the JSON after the run (a few µs per frame, so the measuring client takes
little of the cores the server needs); `--client websockets`: the `websockets` library (no
compression), ~30 µs of client CPU per frame. A simulated trainer (a separate process) POSTs one
`log` event per request to `/internal/jobs/{id}/events` at `--rate` per second for `--duration`
seconds, each carrying its send time (`time.time()` just before the POST), then a terminal status
so that the servers close the sockets (1000). Latency = receive time - send time over every
(event, subscriber) pair; lost = expected pairs not received; reordered = an event whose seq is
not the previous one + 1 on its socket (duplicates counted apart). Goal: p99 < 100 ms, 0 lost,
0 reordered. CPU seconds of the servers and of the client process are reported with the load
average, since the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import multiprocessing as mp
import os
import resource
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _server import free_port

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-" + "x" * 48


def _raise_nofile(want: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks
    except (OSError, IndexError, ValueError):
        return float("nan")


def _self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -------------------------------------------------------------------------------------------------
# servers


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(data_dir: Path, db_url: str, redis_url: str | None, prefix: str, log_dir: Path) -> Server:
    port = free_port()
    env = dict(os.environ)
    for name in ("EXTERNAL_STORAGE_ENDPOINT", "INTERNAL_STORAGE_ENDPOINT", "S3_ENDPOINT", "REDIS_URL"):
        env.pop(name, None)
    env.update(
        VTA_DATA_DIR=str(data_dir),
        DATABASE_URL=db_url,
        SECRET_KEY=SECRET,
        CREATE_DEMO_DATASETS="false",
        REDIS_CHANNEL_PREFIX=prefix,
        VTA_CALLBACK_BASE_URL=f"http://127.0.0.1:{port}",
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    cmd = [sys.executable]
    if os.environ.get("WS_FANOUT_PROFILE"):  # development aid: cProfile of the server's main thread
        cmd += ["-m", "cProfile", "-o", str(Path(os.environ["WS_FANOUT_PROFILE"]) / f"server-{port}.prof")]
    cmd += ["-m", "uvicorn", "--factory", "web.main:app_factory"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--backlog", "4096"]
    log_path = log_dir / f"server-{port}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(port, proc, log_path)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/health", timeout=2) as resp:
                if resp.status == 200:
                    return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError("server did not become healthy")


def _http(method: str, url: str, body: Any = None, *, form: bool = False, headers: dict[str, str] | None = None) -> Any:
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        if form:
            from urllib.parse import urlencode

            data = urlencode(body).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method)
    with urllib.request.urlopen(req, timeout=30) as resp:
        raw = resp.read()
        return json.loads(raw) if raw and resp.headers.get_content_type() == "application/json" else raw.decode()


def setup_job(server: Server, db_url: str) -> tuple[int, str, str]:
    """Register a user (API), insert a running job with a known token (DB): (job id, job token, access)."""
    sys.path.insert(0, str(ROOT))
    from tools.db import create_engine_for_url, make_session_factory
    from tools.db.models import Job

    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    password = "bench password 123"
    user = _http("POST", f"{server.url}/api/v1/auth/register", {"email": email, "password": password})
    token = _http("POST", f"{server.url}/api/v1/auth/token", {"username": email, "password": password}, form=True)
    job_token = secrets.token_urlsafe(24)
    engine = create_engine_for_url(db_url)
    try:
        with make_session_factory(engine)() as db:
            job = Job(
                owner_id=int(user["id"]),
                framework="timm",
                model_name="resnet18",
                task_type="image_classification",
                status="running",
                token_hash=hashlib.sha256(job_token.encode()).hexdigest(),
            )
            db.add(job)
            db.commit()
            job_id = job.id
    finally:
        engine.dispose()
    return job_id, job_token, token["access_token"]


def ws_connections(server: Server) -> int:
    text = _http("GET", f"{server.url}/metrics")
    for line in str(text).splitlines():
        if line.startswith("vta_ws_connections "):
            return int(float(line.split()[1]))
    return -1


# -------------------------------------------------------------------------------------------------
# the simulated trainer (its own process, so the subscribers' loop does not delay the POSTs)


def trainer(url: str, job_id: int, token: str, rate: float, duration: float, start_at: float, out: Any) -> None:
    import httpx

    n = int(rate * duration)
    failures = 0
    posted = 0
    post_ms: list[float] = []
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {token}"}) as client:
        endpoint = f"{url}/internal/jobs/{job_id}/events"
        while time.time() < start_at:
            time.sleep(0.001)
        t0 = time.monotonic()
        for i in range(n):
            delay = t0 + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent = time.time()
            body = {"events": [{"type": "log", "data": {"i": i, "sent": sent}, "event_id": f"bench-{i}"}]}
            resp = client.post(endpoint, json=body)
            post_ms.append((time.time() - sent) * 1000)
            if resp.status_code != 200:
                failures += 1
            else:
                posted += 1
        time.sleep(0.5)
        client.post(endpoint, json={"events": [{"type": "status", "data": {"status": "completed"}}]})
    out.put({"posted": posted, "failures": failures, "post_ms": post_ms})


# -------------------------------------------------------------------------------------------------
# subscribers


@dataclass
class SubResult:
    recv: list[tuple[int, float, float]] = field(default_factory=list)  # (seq, sent, received)
    close_code: int | None = None
    error: str | None = None


class RawWebSocket(asyncio.Protocol):
    """A minimal RFC 6455 client for the measurement (`--client raw`, the default).

    It does only what a watcher needs: the upgrade handshake, unmasked server frames (text, ping ->
    masked pong, close -> masked close echo), and it keeps each text frame's bytes with the time its
    chunk arrived; the JSON is decoded after the run. So the client spends a few microseconds per
    frame instead of the `websockets` library's ~30, and leaves the shared cores to the server.
    """

    def __init__(self, path: str, host: str, on_open: Any, done: asyncio.Future[None]) -> None:
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
        self.on_open = on_open
        self.done = done
        self.buf = bytearray()
        self.open = False
        self.frames: list[tuple[float, bytes]] = []
        self.close_code: int | None = None
        self.error: str | None = None
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self.request)

    def _send(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.transport.write(bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + masked)

    def data_received(self, data: bytes) -> None:
        t = time.time()
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            if b" 101 " not in status:
                self.error = f"handshake refused: {status.decode(errors='replace')}"
                self.transport.close()
                return
            del buf[: end + 4]
            self.open = True
            self.on_open()
        frames = self.frames
        while len(buf) >= 2:
            b0, n = buf[0], buf[1] & 0x7F
            off = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, off = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, off = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < off + n:
                return
            payload = bytes(buf[off : off + n])
            del buf[: off + n]
            opcode = b0 & 0x0F
            if opcode == 0x1:
                frames.append((t, payload))
            elif opcode == 0x9:
                self._send(0xA, payload)
            elif opcode == 0x8:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._send(0x8, payload[:2])
                self.transport.close()
                return
            elif opcode != 0xA:
                self.error = f"unexpected opcode {opcode:#x} (fragmented or binary frame)"

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self.error is None:
            self.error = repr(exc)
        if not self.done.done():
            self.done.set_result(None)


async def raw_subscriber(url: str, result: SubResult, ready: asyncio.Event, connected: list[int]) -> None:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    path = f"{parts.path}?{parts.query}"
    host = parts.netloc
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def on_open() -> None:
        connected[0] += 1
        if connected[0] >= connected[1]:
            ready.set()

    try:
        _, proto = await loop.create_connection(
            lambda: RawWebSocket(path, host, on_open, done), parts.hostname, parts.port
        )
        await done
    except Exception as exc:
        result.error = repr(exc)
        return
    result.close_code = proto.close_code
    result.error = result.error or proto.error
    loads = json.loads
    for t, payload in proto.frames:  # decoded after the run, off the measured path
        msg = loads(payload)
        if msg.get("type") == "log":
            result.recv.append((msg["seq"], msg["data"]["sent"], t))


async def subscriber(url: str, result: SubResult, ready: asyncio.Event, connected: list[int]) -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    recv = result.recv
    loads = json.loads
    now = time.time
    try:
        async with connect(url, max_size=None, compression=None, ping_interval=None, open_timeout=60) as ws:
            connected[0] += 1
            if connected[0] >= connected[1]:
                ready.set()
            try:
                async for raw in ws:
                    t = now()
                    msg = loads(raw)
                    if msg.get("type") == "log":
                        recv.append((msg["seq"], msg["data"]["sent"], t))
            except ConnectionClosed:
                pass
            result.close_code = ws.close_code
    except Exception as exc:
        result.error = repr(exc)


async def run_subscribers(
    urls: list[str], servers: list[Server], job_token: str, job_id: int, args: argparse.Namespace, trainer_url: str
) -> dict[str, Any]:
    results = [SubResult() for _ in range(args.subscribers)]
    ready = asyncio.Event()
    connected = [0, args.subscribers]
    tasks = []
    connect = raw_subscriber if args.client == "raw" else subscriber
    for i, result in enumerate(results):  # connect in waves, round-robin over the servers
        tasks.append(asyncio.create_task(connect(urls[i % len(urls)], result, ready, connected)))
        if i % 50 == 49:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(ready.wait(), 300)
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + 120  # every server has subscribed them all
    per_server = [sum(1 for i in range(args.subscribers) if i % len(urls) == k) for k in range(len(urls))]
    while time.monotonic() < deadline:
        counts = await loop.run_in_executor(None, lambda: [ws_connections(s) for s in servers])
        if counts == per_server:
            break
        await asyncio.sleep(0.2)
    else:
        raise RuntimeError(f"servers report {counts} connections, expected {per_server}")
    await asyncio.sleep(1.0)

    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    start_at = time.time() + 1.0
    proc = ctx.Process(
        target=trainer, args=(trainer_url, job_id, job_token, args.rate, args.duration, start_at, out), daemon=True
    )
    cpu_before = {s.port: _cpu_seconds(s.proc.pid) for s in servers}
    self_before = _self_cpu()
    t_start = time.monotonic()
    proc.start()
    trainer_result = await loop.run_in_executor(None, out.get)
    await loop.run_in_executor(None, proc.join)
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    wall = time.monotonic() - t_start
    cpu = {s.port: _cpu_seconds(s.proc.pid) - cpu_before[s.port] for s in servers}
    return {
        "results": results,
        "trainer": trainer_result,
        "wall_s": wall,
        "server_cpu_s": cpu,
        "client_cpu_s": _self_cpu() - self_before,
    }


def analyse(run: dict[str, Any], n_events: int) -> dict[str, Any]:
    results: list[SubResult] = run["results"]
    latencies: list[float] = []
    lost = reordered = duplicates = errors = 0
    bad_close = 0
    for r in results:
        if r.error:
            errors += 1
        if r.close_code != 1000:
            bad_close += 1
        seen: set[int] = set()
        prev = 0
        for seq, sent, received in r.recv:
            if seq in seen:
                duplicates += 1
                continue
            seen.add(seq)
            if seq != prev + 1:
                reordered += 1
            prev = seq
            latencies.append((received - sent) * 1000)
        lost += n_events - len(seen)
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return float("nan")
        return latencies[min(len(latencies) - 1, round(p / 100 * (len(latencies) - 1)))]

    post_ms = sorted(run["trainer"]["post_ms"])
    return {
        "subscribers": len(results),
        "events": n_events,
        "posted_ok": run["trainer"]["posted"],
        "post_failures": run["trainer"]["failures"],
        "pairs_expected": n_events * len(results),
        "pairs_received": len(latencies),
        "lost": lost,
        "duplicates": duplicates,
        "reordered": reordered,
        "subscriber_errors": errors,
        "closes_not_1000": bad_close,
        "p50_ms": pct(50),
        "p90_ms": pct(90),
        "p99_ms": pct(99),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "mean_ms": statistics.fmean(latencies) if latencies else float("nan"),
        "post_p50_ms": post_ms[len(post_ms) // 2] if post_ms else float("nan"),
        "server_cpu_s": round(sum(run["server_cpu_s"].values()), 1),
        "client_cpu_s": round(run["client_cpu_s"], 1),
        "wall_s": round(run["wall_s"], 1),
    }


def run_mode(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"ws-fanout-{mode}-"))
    db_url = f"sqlite:///{tmp / 'app.db'}"
    prefix = f"vtabench-{uuid.uuid4().hex[:8]}"
    redis_url = args.redis_url if mode == "redis" else None
    servers: list[Server] = []
    try:
        n_servers = 2 if mode == "redis" else 1
        for k in range(n_servers):
            servers.append(start_server(tmp / f"data{k}", db_url, redis_url, prefix, tmp))
        job_id, job_token, access = setup_job(servers[0], db_url)
        urls = [f"{s.ws_url}/ws/jobs/{job_id}?after=0&token={access}" for s in servers]
        load_before = os.getloadavg()
        coro = run_subscribers(urls, servers, job_token, job_id, args, servers[0].url)
        try:
            import uvloop  # the server runs on uvloop too (uvicorn[standard])

            run = uvloop.run(coro)
        except ImportError:
            run = asyncio.run(coro)
        load_after = os.getloadavg()
        figures = analyse(run, int(args.rate * args.duration))
        figures.update(mode=mode, servers=n_servers, client=args.client, load_before=load_before, load_after=load_after)
        return figures
    finally:
        for s in servers:
            s.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


ROWS = [
    ("servers", "servers", "{}"),
    ("subscribers", "subscribers", "{}"),
    ("events posted (ok/failed)", None, None),
    ("(event, subscriber) pairs expected", "pairs_expected", "{}"),
    ("received", "pairs_received", "{}"),
    ("lost", "lost", "{}"),
    ("duplicates", "duplicates", "{}"),
    ("reordered", "reordered", "{}"),
    ("latency p50", "p50_ms", "{:.1f} ms"),
    ("latency p90", "p90_ms", "{:.1f} ms"),
    ("latency p99", "p99_ms", "{:.1f} ms"),
    ("latency max", "max_ms", "{:.1f} ms"),
    ("POST round trip p50", "post_p50_ms", "{:.1f} ms"),
    ("server CPU (all servers)", "server_cpu_s", "{} s"),
    ("client CPU (all sockets, one process)", "client_cpu_s", "{} s"),
    ("wall", "wall_s", "{} s"),
    ("load avg before -> after", None, None),
]


def table(results: list[dict[str, Any]]) -> str:
    head = "| | " + " | ".join(f"{r['mode']}" for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for label, key, fmt in ROWS:
        cells = []
        for r in results:
            if label.startswith("events posted"):
                cells.append(f"{r['posted_ok']}/{r['post_failures']}")
            elif label.startswith("load avg"):
                cells.append(f"{r['load_before'][0]:.2f} -> {r['load_after'][0]:.2f}")
            else:
                assert key is not None and fmt is not None
                cells.append(fmt.format(r[key]))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=20.0, help="events per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of posting")
    parser.add_argument("--modes", default="inproc,redis")
    parser.add_argument("--redis-url", default=os.environ.get("TEST_REDIS_URL") or "redis://127.0.0.1:6379/0")
    parser.add_argument(
        "--client",
        choices=("raw", "websockets"),
        default="raw",
        help="watchers: a minimal RFC 6455 client that decodes after the run (raw) or the websockets library",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dirs and server logs")
    args = parser.parse_args()
    limit = _raise_nofile(args.subscribers * 2 + 1024)
    print(
        f"open files limit: {limit}; cores: {os.cpu_count()}; load: {os.getloadavg()}; client: {args.client}",
        flush=True,
    )
    results = []
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        print(f"== {mode}: {args.subscribers} subscribers, {args.rate}/s for {args.duration} s", flush=True)
        figures = run_mode(mode, args)
        print(json.dumps(figures, default=str), flush=True)
        results.append(figures)
    print()
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    ok = all(r["lost"] == 0 and r["reordered"] == 0 and r["p99_ms"] < 100 for r in results)
    print("\ngoal (p99 < 100 ms, 0 lost, 0 reordered):", "met" if ok else "NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
