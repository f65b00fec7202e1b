"""Time to a useful model: one chat request with defaults, "yes", and the wait for a finished job.

    .venv/bin/python bench/time_to_model.py [--cases digits,shapes] [--json results.json]
    .venv/bin/python bench/time_to_model.py --message "train resnet18 on digits for 5 epochs"  # one ad-hoc case

A fresh server (`bench/_server.py`: fresh data dir, SQLite, built-in demo datasets, rules mode,
trainers are this venv's Python, MLflow on as by default, WEIGHTS_DOWNLOAD as in the environment:
offline here, so models start from scratch unless the registry has weights). For each case one new
user writes one message that leaves every setting to the server, takes the default the agent
offers for anything it asks (answers "yes" to "how many epochs? the default is N (why)"), reads
the confirmation (the chosen image size, batch size and epochs with the reasons it gives), answers
"yes" and polls the job until it ends. Reported per case: wall time from the request to the finished job, the job's
best validation metric (classification: top-1 accuracy; detection: mAP50 of the best epoch), the
settings chosen, and whether the goal holds.

Goals on the 2-core CPU this project's sessions run on:

* ``digits`` (1797 32x32 images, 10 classes): top-1 >= 0.90 in under 2 minutes;
* ``shapes`` (shapes-demo: 120 128x128 scenes, 4 shape classes, boxes): mAP50 >= 0.5 in under
  5 minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _server import API, free_port, sign_in, start_server, stop_server, wait_for_job

# name -> (message, metric key, goal value, goal seconds)
CASES: dict[str, tuple[str, str, float, float]] = {
    "digits": ("train a classifier on the digits dataset", "val/accuracy_top1", 0.90, 120.0),
    "shapes": ("train an object detector on shapes-demo", "val/mAP50", 0.50, 300.0),
}


def run_case(client: httpx.Client, message: str, metric: str, timeout_s: float) -> dict[str, Any]:
    t0 = time.monotonic()
    r = client.post(f"{API}/chat", json={"message": message})
    r.raise_for_status()
    turn = r.json()
    questions: list[str] = []
    for _ in range(3):  # the agent asks for what it needs (e.g. epochs): take each offered default
        if turn["state"] != "collecting" or not turn.get("suggestions"):
            break
        questions.append(turn["reply"])
        r = client.post(f"{API}/chat", json={"message": "yes", "session_id": turn["session_id"]})
        r.raise_for_status()
        turn = r.json()
    if turn["state"] != "confirming":
        raise RuntimeError(f"{message!r}: no confirmation: {turn['reply'][:400]}")
    summary = turn.get("summary") or {}
    r = client.post(f"{API}/chat", json={"message": "yes", "session_id": turn["session_id"]})
    r.raise_for_status()
    job_id = r.json()["job_id"]
    job = wait_for_job(client, job_id, timeout_s - (time.monotonic() - t0), stop_on_timeout=True)
    wall = time.monotonic() - t0
    series = client.get(f"{API}/jobs/{job_id}/metrics").json().get("series") or {}
    values = [v for v in series.get(metric) or [] if isinstance(v, int | float)]
    hp = job.get("hyperparameters") or {}
    return {
        "job_id": job_id,
        "status": job["status"],
        "error": job.get("error"),
        "wall_s": wall,
        "metric": metric,
        "best": max(values) if values else None,
        "last": values[-1] if values else None,
        "model": job["model_name"],
        "epochs": hp.get("epochs"),
        "epochs_completed": job.get("epochs_completed"),
        "batch_size": hp.get("batch_size"),
        "image_size": hp.get("image_size"),
        "pretrained": (job.get("pretrained") or {}).get("source"),
        "questions": questions,
        "confirmation": turn["reply"],
        "defaults": summary.get("defaults"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="digits,shapes")
    ap.add_argument("--message", default=None, help="run one ad-hoc message instead of the cases")
    ap.add_argument("--metric", default="val/accuracy_top1", help="metric of the ad-hoc message")
    ap.add_argument("--timeout", type=float, default=900.0, help="per job, seconds")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.message:
        cases = {"ad-hoc": (args.message, args.metric, float("nan"), float("inf"))}
    else:
        names = [c.strip() for c in args.cases.split(",") if c.strip()]
        unknown = [c for c in names if c not in CASES]
        if unknown:
            ap.error(f"unknown case(s) {', '.join(unknown)}; one of {', '.join(CASES)}")
        cases = {c: CASES[c] for c in names}

    print(f"load average before: {os.getloadavg()}, cpus: {os.cpu_count()}", flush=True)
    results: list[dict[str, Any]] = []
    for name, (message, metric, goal, goal_s) in cases.items():
        data_dir = Path(tempfile.mkdtemp(prefix="vta-ttm-"))
        port = free_port()
        proc = start_server(data_dir, port)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as client:
                sign_in(client, f"{name}@example.com")
                res = run_case(client, message, metric, args.timeout)
        finally:
            stop_server(proc)
            shutil.rmtree(data_dir, ignore_errors=True)
        best = res["best"]
        res |= {
            "case": name,
            "message": message,
            "goal": goal,
            "goal_s": goal_s,
            "meets_goal": res["status"] == "completed"
            and best is not None
            and best >= goal
            and res["wall_s"] <= goal_s,
        }
        results.append(res)
        asked = "".join(f"(asked) {q}\n(answered) yes\n" for q in res["questions"])
        print(f"\n== {name}: {message!r}\n{asked}{res['confirmation']}", flush=True)
        print(
            f"-> job {res['job_id']} {res['status']} {res['model']} epochs {res['epochs_completed']}/{res['epochs']} "
            f"batch {res['batch_size']} size {res['image_size']} pretrained={res['pretrained']}: "
            f"wall {res['wall_s']:.0f} s, best {metric} {best if best is None else round(best, 3)} "
            f"(goal >= {goal:g} in < {goal_s:g} s: {'met' if res['meets_goal'] else 'MISSED'})",
            flush=True,
        )
        if res["error"]:
            print(f"   error: {res['error']}")
    print(f"\nload average after: {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0 if all(r["meets_goal"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
