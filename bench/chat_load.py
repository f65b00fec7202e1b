"""Chat load: many concurrent chat sessions over loopback against a real server, without launching.

    .venv/bin/python bench/chat_load.py [--sessions 200] [--turns 5] [--users 10] [--json results.json]

A fresh data dir (SQLite, built-in demo datasets on, rules mode: no LLM) and one server process
(`uvicorn --factory web.main:app_factory`). `--users` accounts are registered and signed in; then
`--sessions` chat sessions run at the same time (one asyncio client process, httpx, one connection
per session), each doing the same `--turns` turns one after the other (half of them in Korean):

    1 "train a cat/dog classifier"        -> asks for the dataset (suggestions from the user's datasets)
    2 "digits"                            -> classification implied; asks for the model (default proposed)
    3 "yes"                               -> asks for the epochs (default offered)
    4 "3"                                 -> confirmation summary (create_job preview: preset resolved)
    5 "no"                                -> cancelled (nothing launched)

An error is a non-200 answer or a turn that does not reach the expected state. Latency is reported
three ways, side by side: server-side (the `X-Process-Time-Ms` header of `POST /api/v1/chat`: the
sign-in check, the turn itself and its commit), server+queue (plus `X-Queue-Time-Ms`, the wait for
one of the server's chat-turn slots, `web.routes.chat.TURN_SLOTS`) and client-side (request sent ->
response read, which adds the HTTP stack and the wait for a worker thread). Goal: 0 errors,
server-side p50 < 20 ms.
The machine may be shared: the load average and CPU seconds of server and client are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _server import PASSWORD, cpu_seconds, free_port, percentile, start_server, stop_server

TURNS_EN = [
    ("train a cat/dog classifier", "collecting"),
    ("digits", "collecting"),
    ("yes", "collecting"),
    ("3", "confirming"),
    ("no", "idle"),
]
TURNS_KO = [
    ("고양이랑 개 분류 모델 학습해줘", "collecting"),
    ("digits", "collecting"),
    ("네", "collecting"),
    ("3", "confirming"),
    ("아니", "idle"),
]


async def sign_in_users(base: str, n: int) -> list[str]:
    tokens = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for i in range(n):
            email = f"bench{i}@example.com"
            r = await client.post("/api/v1/auth/register", json={"email": email, "password": PASSWORD})
            assert r.status_code in (201, 409), r.text
            tok = await client.post("/api/v1/auth/token", data={"username": email, "password": PASSWORD})
            assert tok.status_code == 200, tok.text
            tokens.append(tok.json()["access_token"])
    return tokens


async def one_session(
    base: str, token: str, script: list[tuple[str, str]], start: asyncio.Event, out: dict[str, Any]
) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, timeout=120, headers=headers) as client:
        await start.wait()
        sid: str | None = None
        for i, (message, expected) in enumerate(script):
            body: dict[str, Any] = {"message": message}
            if sid:
                body["session_id"] = sid
            t0 = time.perf_counter()
            try:
                r = await client.post("/api/v1/chat", json=body)
            except httpx.HTTPError as exc:
                out["errors"].append(f"turn {i + 1}: {type(exc).__name__}: {exc}")
                return
            client_ms = (time.perf_counter() - t0) * 1000
            if r.status_code != 200:
                out["errors"].append(f"turn {i + 1}: HTTP {r.status_code} {r.text[:200]}")
                return
            data = r.json()
            sid = data["session_id"]
            if data["state"] != expected:
                out["errors"].append(f"turn {i + 1} {message!r}: state {data['state']} != {expected}")
                return
            out["client"].append(client_ms)
            out["server"].append(float(r.headers["X-Process-Time-Ms"]))
            out["server_total"].append(float(r.headers["X-Process-Time-Ms"]) + float(r.headers["X-Queue-Time-Ms"]))
            out["per_turn"].setdefault(i + 1, []).append(float(r.headers["X-Process-Time-Ms"]))


async def run_load(base: str, tokens: list[str], sessions: int, turns: int) -> dict[str, Any]:
    out: dict[str, Any] = {"errors": [], "client": [], "server": [], "server_total": [], "per_turn": {}}
    start = asyncio.Event()
    tasks = []
    for i in range(sessions):
        script = (TURNS_KO if i % 2 else TURNS_EN)[:turns]
        tasks.append(asyncio.create_task(one_session(base, tokens[i % len(tokens)], script, start, out)))
    await asyncio.sleep(0.5)  # every client is ready
    t0 = time.perf_counter()
    start.set()
    await asyncio.gather(*tasks)
    out["wall_s"] = time.perf_counter() - t0
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--turns", type=int, default=5, choices=range(1, 6))
    ap.add_argument("--users", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=5, help="sessions run once before measuring")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    data_dir = Path(tempfile.mkdtemp(prefix="vta-chat-load-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_server(data_dir, port)
    try:
        tokens = asyncio.run(sign_in_users(base, args.users))
        if args.warmup:
            asyncio.run(run_load(base, tokens, args.warmup, args.turns))
        load0 = os.getloadavg()[0]
        srv0, cli0 = cpu_seconds(proc.pid), resource.getrusage(resource.RUSAGE_SELF)
        result = asyncio.run(run_load(base, tokens, args.sessions, args.turns))
        srv1, cli1 = cpu_seconds(proc.pid), resource.getrusage(resource.RUSAGE_SELF)
        load1 = os.getloadavg()[0]
    finally:
        stop_server(proc)
        shutil.rmtree(data_dir, ignore_errors=True)

    s, q, c = result["server"], result["server_total"], result["client"]
    n_turns = len(s)
    summary = {
        "sessions": args.sessions,
        "turns_per_session": args.turns,
        "turns": n_turns,
        "errors": len(result["errors"]),
        "wall_s": round(result["wall_s"], 2),
        "turns_per_s": round(n_turns / result["wall_s"], 1) if result["wall_s"] else None,
        "server_ms": {p: round(percentile(s, p), 2) for p in (50, 90, 99)} | {"max": round(max(s, default=0), 2)},
        "server_with_queue_ms": {p: round(percentile(q, p), 2) for p in (50, 90, 99)}
        | {"max": round(max(q, default=0), 2)},
        "client_ms": {p: round(percentile(c, p), 2) for p in (50, 90, 99)} | {"max": round(max(c, default=0), 2)},
        "server_ms_per_turn_p50": {k: round(statistics.median(v), 2) for k, v in sorted(result["per_turn"].items())},
        "server_cpu_s": round(srv1 - srv0, 2),
        "client_cpu_s": round((cli1.ru_utime + cli1.ru_stime) - (cli0.ru_utime + cli0.ru_stime), 2),
        "loadavg_1m": [round(load0, 2), round(load1, 2)],
        "cpus": os.cpu_count(),
    }
    print(
        f"chat load: {args.sessions} concurrent sessions x {args.turns} turns = {n_turns} turns, "
        f"{summary['errors']} errors, {summary['wall_s']} s wall, {summary['turns_per_s']} turns/s"
    )
    print(f"{'latency (ms)':<14}{'server-side':>14}{'server+queue':>14}{'client-side':>14}")
    for key in (50, 90, 99, "max"):
        label = f"p{key}" if key != "max" else "max"
        row = [summary["server_ms"][key], summary["server_with_queue_ms"][key], summary["client_ms"][key]]
        print(f"{label:<14}" + "".join(f"{v:>14.2f}" for v in row))
    per_turn = ", ".join(f"{k}: {v}" for k, v in summary["server_ms_per_turn_p50"].items())
    print(f"server-side p50 per turn: {per_turn}")
    print(
        f"CPU s: server {summary['server_cpu_s']}, client {summary['client_cpu_s']}; "
        f"load average {summary['loadavg_1m'][0]} -> {summary['loadavg_1m'][1]} on {summary['cpus']} CPUs"
    )
    for err in result["errors"][:10]:
        print("error:", err)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if not result["errors"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
