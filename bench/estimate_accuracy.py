"""Duration estimates against real jobs: the range the chat's confirmation shows, then the job.

    .venv/bin/python bench/estimate_accuracy.py [--cases resnet18,yolo11n,fallbacks] [--json results.json]

A fresh data dir (SQLite, built-in demo datasets on, rules mode, the trainers are this venv's
Python, MLflow on as by default) and one server process (`uvicorn --factory web.main:app_factory`).
One user asks the chat for each job ("train resnet18 on digits for 2 epochs, image size 32"),
reads the estimate in the confirmation summary (`summary.estimate`: low_s, high_s, expected_s,
basis), answers "yes", and polls `GET /api/v1/jobs/{id}` every 0.5 s until the job ends. The jobs
run one after the other, in this order, so each estimate knows exactly the jobs before it:

* ``resnet18``: timm resnet18 on ``digits`` (1797 images) at 32 px, 2, 3 and 2 epochs;
* ``yolo11n``: ultralytics yolo11n on ``shapes-demo`` (120 images) at 64 px, 2, 3 and 2 epochs;
* ``fallbacks``: first jobs of kinds that only have neighbours: yolo11n at 128 px (scaled by image
  area from the 64 px jobs), yolov8n at 64 px (scaled by model size), 2 epochs each.

Actual duration = the job's ``finished_at - created_at`` (server clock: from the "yes" to the end,
queue wait and trainer start-up included). Printed per job: estimate range, expected value, actual,
ratio actual/expected, whether the range holds the actual, and the basis. Goal: ratio within
[1/1.5, 1.5] for the second and later jobs of a kind, within [1/3, 3] for the first.
The machine may be shared: the load average before and after is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from _server import API, free_port, sign_in, start_server, stop_server, wait_for_job

CASES: dict[str, list[tuple[str, str]]] = {
    # (message, kind label)
    "resnet18": [
        ("train resnet18 on digits for 2 epochs, image size 32", "timm resnet18 digits 32 px"),
        ("train resnet18 on digits for 3 epochs, image size 32", "timm resnet18 digits 32 px"),
        ("train resnet18 on digits for 2 epochs, image size 32", "timm resnet18 digits 32 px"),
    ],
    "yolo11n": [
        ("train yolo11n on shapes-demo for 2 epochs, image size 64", "ultralytics yolo11n shapes 64 px"),
        ("train yolo11n on shapes-demo for 3 epochs, image size 64", "ultralytics yolo11n shapes 64 px"),
        ("train yolo11n on shapes-demo for 2 epochs, image size 64", "ultralytics yolo11n shapes 64 px"),
    ],
    "fallbacks": [
        ("train yolo11n on shapes-demo for 2 epochs, image size 128", "ultralytics yolo11n shapes 128 px"),
        ("train yolov8n on shapes-demo for 2 epochs, image size 64", "ultralytics yolov8n shapes 64 px"),
    ],
}


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def run_job(client: httpx.Client, message: str, timeout_s: float) -> dict[str, Any]:
    """One chat request -> confirmation (estimate) -> yes -> the job's end."""
    r = client.post(f"{API}/chat", json={"message": message})
    r.raise_for_status()
    turn = r.json()
    if turn["state"] != "confirming" or not (turn.get("summary") or {}).get("estimate"):
        raise RuntimeError(f"{message!r}: no confirmation with an estimate: {turn['reply'][:300]}")
    estimate = turn["summary"]["estimate"]
    line = next((ln for ln in turn["reply"].splitlines() if "estimated duration" in ln), "")
    r = client.post(f"{API}/chat", json={"message": "yes", "session_id": turn["session_id"]})
    r.raise_for_status()
    job_id = r.json()["job_id"]
    job = wait_for_job(client, job_id, timeout_s)
    actual = _ts(job["finished_at"]) - _ts(job["created_at"])
    return {"job_id": job_id, "status": job["status"], "estimate": estimate, "line": line, "actual_s": actual}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="resnet18,yolo11n,fallbacks")
    ap.add_argument("--job-timeout", type=float, default=300.0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        if c not in CASES:
            ap.error(f"unknown case {c!r}; one of {', '.join(CASES)}")

    data_dir = Path(tempfile.mkdtemp(prefix="vta-estimate-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    print(f"load average before: {os.getloadavg()}, cpus: {os.cpu_count()}", flush=True)
    t_start = time.monotonic()
    proc = start_server(data_dir, port)
    results: list[dict[str, Any]] = []
    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            sign_in(client)
            seen: dict[str, int] = {}
            for case in cases:
                for message, kind in CASES[case]:
                    nth = seen[kind] = seen.get(kind, 0) + 1
                    res = run_job(client, message, args.job_timeout)
                    est = res["estimate"]
                    ratio = res["actual_s"] / est["expected_s"]
                    goal = 1.5 if nth > 1 else 3.0
                    res |= {
                        "case": case,
                        "kind": kind,
                        "nth": nth,
                        "ratio": ratio,
                        "in_range": est["low_s"] <= res["actual_s"] <= est["high_s"],
                        "goal": goal,
                        "meets_goal": 1 / goal <= ratio <= goal and res["status"] == "completed",
                    }
                    results.append(res)
                    print(
                        f"{kind:<34} #{nth} job {res['job_id']:>2} {res['status']:<9} "
                        f"estimate {est['low_s']:7.1f}-{est['high_s']:7.1f} s (expected {est['expected_s']:6.1f}) "
                        f"actual {res['actual_s']:6.1f} s ratio {ratio:5.2f} "
                        f"{'in range' if res['in_range'] else 'OUT of range'}; goal x{goal:g}: "
                        f"{'met' if res['meets_goal'] else 'MISSED'}\n    basis: {est['basis']}",
                        flush=True,
                    )
    finally:
        stop_server(proc)
        shutil.rmtree(data_dir, ignore_errors=True)
    later = [r for r in results if r["nth"] > 1]
    first = [r for r in results if r["nth"] == 1]
    print(f"\nwall {time.monotonic() - t_start:.0f} s; load average after: {os.getloadavg()}")
    print(f"first jobs of a kind within 3x: {sum(r['meets_goal'] for r in first)}/{len(first)}")
    print(f"later jobs of a kind within 1.5x: {sum(r['meets_goal'] for r in later)}/{len(later)}")
    print(f"actual inside the shown range: {sum(r['in_range'] for r in results)}/{len(results)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["meets_goal"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
