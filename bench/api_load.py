"""API load: concurrent authenticated REST requests against a real server, SQLite and PostgreSQL.

    .venv/bin/python bench/api_load.py [--db sqlite,postgresql]
        [--pg-url postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--reads 500] [--mixed 2000] [--clients 200] [--users 20] [--retries 10]
        [--server-root PATH] [--json results.json]

For each database, a fresh data dir and one server process (`uvicorn --factory web.main:app_factory`,
default settings: pool 10 + overflow 30, MAX_REQUESTS_IN_FLIGHT 64, demo datasets on, rules mode).
PostgreSQL gets a fresh schema on `--pg-url` (the URL's `search_path`), dropped afterwards.
`--users` accounts are registered and signed in, each makes one private dataset, then two loads
run from one asyncio client process (httpx), each request on its own connection:

* reads: `--reads` `GET /api/v1/datasets` at once (the 3 demo datasets + the user's own);
* mixed: `--clients` clients at once, each doing `--mixed / --clients` requests one after the other,
  a read/write cycle: create a project, list datasets, rename the project, list jobs, parse a
  training request (`POST /api/v1/agent/parse`), get the project, get a demo dataset, list
  projects, delete the project, list projects.

An answer is expected (200, 201 or 204 by route), a deliberate 503 (`Retry-After` and a
`ServiceBusyError` body: the server's bound on requests in flight), or an error (anything else,
including a transport error or a timeout). A client honours `Retry-After` and retries a 503 up to
`--retries` times. Reported per load and database, side by side: answers per status, errors,
latency of each answer (p50/p99, ms) and of each request from its first try to its final answer
(retries included), wall time, requests/s, and the server's RSS (psutil) before the load, at its
peak (sampled every 20 ms) and after. Goal: 0 errors (503s only as deliberate overload answers).
`--server-root` runs another checkout's server (e.g. `git archive <rev>` unpacked) with the same
client, for a before/after comparison. The machine may be shared: the load average and CPU
seconds of server and client are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import psutil
from _server import API, PASSWORD, ROOT, free_port, percentile, stop_server
from _server import start_server as _start

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MiB = 1024 * 1024


# ------------------------------------------------------------------------------------ databases


def _with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "options"]
    query.append(("options", f"-csearch_path={schema}"))
    return urlunsplit(parts._replace(query=urlencode(query)))


class PgSchema:
    """A fresh schema on `url` for one run (dropped on exit); `.url` has it as the search_path."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine

        self.name = f"bench_api_{uuid.uuid4().hex[:10]}"
        self.admin = create_engine(url, isolation_level="AUTOCOMMIT")
        self.url = _with_search_path(url, self.name)

    def __enter__(self) -> PgSchema:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{self.name}"')
        return self

    def __exit__(self, *exc: object) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')
        self.admin.dispose()


# --------------------------------------------------------------------------------------- server


def start_server(root: Path, data_dir: Path, port: int, database_url: str | None) -> subprocess.Popen[bytes]:
    return _start(data_dir, port, root=root, database_url=database_url)


def cpu_seconds(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return float("nan")


class RssSampler:
    """The server's RSS every 20 ms in a thread; `.peak` in bytes."""

    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.peak = self.rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def rss(self) -> int:
        return int(self.proc.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, self.rss())
            except psutil.Error:
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --------------------------------------------------------------------------------------- client


class Tally:
    """Every answer of one load: statuses, errors, latencies."""

    def __init__(self) -> None:
        self.statuses: Counter[str] = Counter()
        self.errors: list[str] = []
        self.answer_ms: list[float] = []  # each try that got an answer
        self.request_ms: list[float] = []  # first try -> final answer, retries included
        self.requests = 0
        self.busy_without_retry_after = 0


def _deliberate_busy(r: httpx.Response) -> bool:
    if r.status_code != 503 or "retry-after" not in r.headers:
        return False
    try:
        return bool(r.json().get("error") == "ServiceBusyError")
    except ValueError:
        return False


async def call(
    client: httpx.AsyncClient,
    tally: Tally,
    label: str,
    method: str,
    url: str,
    expected: int,
    retries: int,
    **kwargs: Any,
) -> httpx.Response | None:
    """One request, retried after a deliberate 503 as `Retry-After` says; None on an error."""
    tally.requests += 1
    first = time.perf_counter()
    for attempt in range(retries + 1):
        t0 = time.perf_counter()
        try:
            r = await client.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            tally.statuses[type(exc).__name__] += 1
            tally.errors.append(f"{label}: {type(exc).__name__}: {exc}")
            return None
        tally.answer_ms.append((time.perf_counter() - t0) * 1000)
        tally.statuses[str(r.status_code)] += 1
        if r.status_code == expected:
            tally.request_ms.append((time.perf_counter() - first) * 1000)
            return r
        if _deliberate_busy(r) and attempt < retries:
            await asyncio.sleep(float(r.headers["retry-after"]))
            continue
        if r.status_code == 503 and not _deliberate_busy(r):
            tally.busy_without_retry_after += 1
        tally.errors.append(f"{label}: HTTP {r.status_code} (expected {expected}): {r.text[:200]}")
        return None
    return None


async def sign_in(base: str, n: int) -> list[str]:
    tokens = []
    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        for i in range(n):
            email = f"apiload{i}@example.com"
            r = await client.post(f"{API}/auth/register", json={"email": email, "password": PASSWORD})
            assert r.status_code in (201, 409), r.text
            tok = await client.post(f"{API}/auth/token", data={"username": email, "password": PASSWORD})
            assert tok.status_code == 200, tok.text
            token = tok.json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            ds = await client.post(f"{API}/datasets", json={"name": f"own-{i}"}, headers=headers)
            assert ds.status_code == 201, ds.text
            tokens.append(token)
    return tokens


async def demo_dataset_id(base: str, token: str) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        r = await client.get(f"{API}/datasets", headers={"Authorization": f"Bearer {token}"})
        r.raise_for_status()
        return str(next(d["id"] for d in r.json() if d.get("is_demo")))


def _client(base: str, token: str, connections: int = 1) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncClient(base_url=base, timeout=180, limits=limits, headers={"Authorization": f"Bearer {token}"})


async def reads_load(base: str, tokens: list[str], n: int, retries: int) -> tuple[Tally, float]:
    tally = Tally()
    start = asyncio.Event()
    clients = [_client(base, tokens[i % len(tokens)]) for i in range(n)]

    async def one(client: httpx.AsyncClient) -> None:
        await start.wait()
        await call(client, tally, "GET /datasets", "GET", f"{API}/datasets", 200, retries)

    try:
        tasks = [asyncio.create_task(one(c)) for c in clients]
        await asyncio.sleep(0.5)
        t0 = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return tally, wall


async def mixed_client(client: httpx.AsyncClient, tally: Tally, n: int, demo_id: str, retries: int, tag: str) -> None:
    project: int | None = None
    i = 0
    while i < n:
        step = i % 10
        if step == 0:
            r = await call(
                client, tally, "POST /projects", "POST", f"{API}/projects", 201, retries, json={"name": f"p-{tag}-{i}"}
            )
            project = r.json()["id"] if r is not None else None
        elif step == 1:
            await call(client, tally, "GET /datasets", "GET", f"{API}/datasets", 200, retries)
        elif step == 2 and project is not None:
            body = {"name": f"p-{tag}-{i}-renamed", "description": "load"}
            await call(
                client, tally, "PATCH /projects/{id}", "PATCH", f"{API}/projects/{project}", 200, retries, json=body
            )
        elif step == 3:
            await call(client, tally, "GET /jobs", "GET", f"{API}/jobs", 200, retries)
        elif step == 4:
            text = "train a yolo11n detector on shapes-demo for 3 epochs"
            await call(
                client, tally, "POST /agent/parse", "POST", f"{API}/agent/parse", 200, retries, json={"text": text}
            )
        elif step == 5 and project is not None:
            await call(client, tally, "GET /projects/{id}", "GET", f"{API}/projects/{project}", 200, retries)
        elif step == 6:
            await call(client, tally, "GET /datasets/{id}", "GET", f"{API}/datasets/{demo_id}", 200, retries)
        elif step == 7:
            await call(client, tally, "GET /projects", "GET", f"{API}/projects", 200, retries)
        elif step == 8 and project is not None:
            await call(client, tally, "DELETE /projects/{id}", "DELETE", f"{API}/projects/{project}", 204, retries)
            project = None
        else:  # 9, or a step whose project could not be made
            await call(client, tally, "GET /projects", "GET", f"{API}/projects", 200, retries)
        i += 1


async def mixed_load(
    base: str, tokens: list[str], total: int, clients_n: int, demo_id: str, retries: int
) -> tuple[Tally, float]:
    tally = Tally()
    start = asyncio.Event()
    per_client = [total // clients_n + (1 if i < total % clients_n else 0) for i in range(clients_n)]
    clients = [_client(base, tokens[i % len(tokens)]) for i in range(clients_n)]

    async def one(i: int, client: httpx.AsyncClient) -> None:
        await start.wait()
        await mixed_client(client, tally, per_client[i], demo_id, retries, str(i))

    try:
        tasks = [asyncio.create_task(one(i, c)) for i, c in enumerate(clients)]
        await asyncio.sleep(0.5)
        t0 = time.perf_counter()
        start.set()
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(c.aclose() for c in clients))
    return tally, wall


# ----------------------------------------------------------------------------------------- runs


def summarize(tally: Tally, wall: float, rss: tuple[int, int, int], cpu: float) -> dict[str, Any]:
    a, q = tally.answer_ms, tally.request_ms
    statuses = dict(sorted(tally.statuses.items()))
    busy = tally.statuses.get("503", 0) - tally.busy_without_retry_after
    return {
        "requests": tally.requests,
        "completed": len(q),
        "statuses": statuses,
        "deliberate_503": busy,
        "errors": len(tally.errors),
        "answer_ms": {
            "p50": round(percentile(a, 50), 1),
            "p99": round(percentile(a, 99), 1),
            "max": round(max(a, default=0), 1),
        },
        "request_ms": {
            "p50": round(percentile(q, 50), 1),
            "p99": round(percentile(q, 99), 1),
            "max": round(max(q, default=0), 1),
        },
        "wall_s": round(wall, 2),
        "requests_per_s": round(len(q) / wall, 1) if wall else None,
        "rss_mib": {"before": round(rss[0] / MiB, 1), "peak": round(rss[1] / MiB, 1), "after": round(rss[2] / MiB, 1)},
        "server_cpu_s": round(cpu, 2),
        "first_errors": tally.errors[:5],
    }


def run_one(db: str, args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix=f"vta-api-load-{db}-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    schema = PgSchema(args.pg_url) if db == "postgresql" else None
    out: dict[str, Any] = {}
    try:
        if schema is not None:
            schema.__enter__()
        proc = start_server(args.server_root, data_dir, port, schema.url if schema else None)
        try:
            tokens = asyncio.run(sign_in(base, args.users))
            demo_id = asyncio.run(demo_dataset_id(base, tokens[0]))
            asyncio.run(reads_load(base, tokens, 20, args.retries))  # warm-up
            loads: list[tuple[str, Any]] = []
            if args.reads:
                loads.append(("reads", lambda: reads_load(base, tokens, args.reads, args.retries)))
            if args.mixed:
                loads.append(
                    ("mixed", lambda: mixed_load(base, tokens, args.mixed, args.clients, demo_id, args.retries))
                )
            for name, make in loads:
                cpu0 = cpu_seconds(proc.pid)
                with RssSampler(proc.pid) as sampler:
                    before = sampler.rss()
                    tally, wall = asyncio.run(make())
                    after = sampler.rss()
                out[name] = summarize(
                    tally, wall, (before, max(sampler.peak, after), after), cpu_seconds(proc.pid) - cpu0
                )
        finally:
            stop_server(proc)
    finally:
        if schema is not None:
            schema.__exit__()
        shutil.rmtree(data_dir, ignore_errors=True)
    return out


def print_table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    dbs = list(results)
    width = 27
    for load, title in (
        ("reads", f"reads: {args.reads} concurrent GET /api/v1/datasets"),
        ("mixed", f"mixed: {args.mixed} requests from {args.clients} concurrent clients"),
    ):
        if not all(load in r for r in results.values()):
            continue
        print(f"\n{title}")
        print(f"{'':<26}" + "".join(f"{db:>{width}}" for db in dbs))
        rows: list[tuple[str, Any]] = [
            ("answers per status", lambda r: " ".join(f"{k}:{v}" for k, v in r["statuses"].items())),
            ("errors", lambda r: r["errors"]),
            ("deliberate 503 (retried)", lambda r: r["deliberate_503"]),
            ("requests completed", lambda r: f"{r['completed']}/{r['requests']}"),
            ("answer p50 / p99 ms", lambda r: f"{r['answer_ms']['p50']} / {r['answer_ms']['p99']}"),
            ("request p50 / p99 ms", lambda r: f"{r['request_ms']['p50']} / {r['request_ms']['p99']}"),
            ("wall s", lambda r: r["wall_s"]),
            ("requests/s", lambda r: r["requests_per_s"]),
            ("RSS MiB before/peak/after", lambda r: "/".join(str(round(v)) for v in r["rss_mib"].values())),
            ("server CPU s", lambda r: r["server_cpu_s"]),
        ]
        for label, get in rows:
            print(f"{label:<26}" + "".join(f"{get(results[db][load])!s:>{width}}" for db in dbs))
        for db in dbs:
            for err in results[db][load]["first_errors"]:
                print(f"  {db} error: {err}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    ap.add_argument("--pg-url", default=os.environ.get("TEST_DATABASE_URL") or DEFAULT_PG_URL)
    ap.add_argument("--reads", type=int, default=500)
    ap.add_argument("--mixed", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--retries", type=int, default=10, help="retries of a deliberate 503 (after Retry-After)")
    ap.add_argument("--server-root", type=Path, default=ROOT, help="the checkout whose server runs")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    args.server_root = args.server_root.resolve()

    load0 = os.getloadavg()[0]
    cli0 = resource.getrusage(resource.RUSAGE_SELF)
    results = {db: run_one(db, args) for db in [d.strip() for d in args.db.split(",") if d.strip()]}
    cli1 = resource.getrusage(resource.RUSAGE_SELF)
    load1 = os.getloadavg()[0]
    print(f"api load against {args.server_root} ({os.cpu_count()} CPUs)")
    print_table(results, args)
    client_cpu = (cli1.ru_utime + cli1.ru_stime) - (cli0.ru_utime + cli0.ru_stime)
    print(f"\nclient CPU s {client_cpu:.1f}; load average {load0:.2f} -> {load1:.2f} on {os.cpu_count()} CPUs")
    if args.json:
        args.json.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2)
        )
    errors = sum(load["errors"] for r in results.values() for load in r.values())
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
