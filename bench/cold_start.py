"""Server cold start: time from launching `vision-agent serve` to the first 200 from `/health`.

    .venv/bin/python bench/cold_start.py [--runs 5] [--limit 2.0]

Two measurements, each over N runs of a fresh process on a free loopback port:

1. `demo off`: a fresh temporary data dir every run (new SQLite file, migrations from zero, new
   secret), with `CREATE_DEMO_DATASETS=false`.
2. `demo on`: one data dir where a first, unmeasured start built the demo datasets; each measured
   run then starts with `CREATE_DEMO_DATASETS=true` and finds them already there.

Prints the times (median, max) and exits 1 when any run is over the limit (default 2 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from _server import free_port


def _command() -> list[str]:
    exe = Path(sys.executable).with_name("vision-agent")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "web.cli"]


def _env(demo: bool) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("DATABASE_URL", "EXTERNAL_STORAGE_ENDPOINT", "INTERNAL_STORAGE_ENDPOINT", "S3_ENDPOINT"):
        env.pop(name, None)
    env["CREATE_DEMO_DATASETS"] = "true" if demo else "false"
    return env


def time_to_health(data_dir: Path, *, demo: bool, timeout: float = 300.0) -> float:
    """Seconds from spawning the server to the first 200 on /health (the server is stopped after)."""
    port = free_port()
    cmd = [*_command(), "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir)]
    cmd += ["--log-level", "warning"]
    url = f"http://127.0.0.1:{port}/health"
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=_env(demo), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            elapsed = time.perf_counter() - start
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise RuntimeError(f"server exited with {proc.returncode}:\n{err}")
            if elapsed > timeout:
                raise TimeoutError(f"no 200 from {url} within {timeout} s")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - start
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _report(label: str, times: list[float]) -> float:
    runs = ", ".join(f"{t:.2f}" for t in times)
    print(f"{label:<9} median {statistics.median(times):.2f} s   max {max(times):.2f} s   runs [{runs}]")
    return max(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--limit", type=float, default=2.0, help="seconds every run must stay under")
    parser.add_argument("--skip-demo", action="store_true", help="only the demo-off measurement")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="vta-cold-start-"))
    try:
        off = []
        for i in range(args.runs):
            off.append(time_to_health(root / f"off-{i}", demo=False))
        worst = {"demo off": _report("demo off", off)}

        if not args.skip_demo:
            shared = root / "demo"
            first = time_to_health(shared, demo=True)
            print(f"first start building the demo datasets: {first:.2f} s (not counted)")
            on = [time_to_health(shared, demo=True) for _ in range(args.runs)]
            worst["demo on"] = _report("demo on", on)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    slow = {k: round(v, 2) for k, v in worst.items() if v >= args.limit}
    if slow:
        print(f"FAIL: time-to-200 over {args.limit} s: {slow}")
        return 1
    print(f"OK: every run under {args.limit} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
