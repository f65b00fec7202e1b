#!/usr/bin/env python3
"""Parse time of `agent.parse_intent` over the public dev set and our labelled sets.

Run from the repository root:  .venv/bin/python bench/parse_speed.py [--repeat N]
Prints the import time, the first parse (it builds the generated model-alias tables from the catalog,
`agent.aliases`), and p50/p95/p99 per set and over all lines (milliseconds): every call, and the best
of the passes per line (the parser's own cost, without scheduler noise on a busy machine). "people"
is the held-out set of requests written by people (tests/agent/data/holdout_people.jsonl).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETS = {
    "public": ROOT.parent / "shared/eval/intents_dev.jsonl",
    "own": ROOT / "tests/agent/phrasings.jsonl",
    "holdout": ROOT / "tests/agent/phrasings_holdout.jsonl",
    "people": ROOT / "tests/agent/data/holdout_people.jsonl",
}


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20, help="passes over each set (default 20)")
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    t0 = time.perf_counter()
    from agent import parse_intent

    print(f"import agent: {(time.perf_counter() - t0) * 1000:.1f} ms")
    t0 = time.perf_counter()
    parse_intent("욜로 브이8 미디엄으로 학습")
    print(f"first parse (builds the alias tables): {(time.perf_counter() - t0) * 1000:.1f} ms")
    everything: list[float] = []
    best_all: list[float] = []
    for name, path in SETS.items():
        if not path.exists():
            print(f"{name:8s} (missing: {path})")
            continue
        texts = [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        times = []
        best = [float("inf")] * len(texts)
        for _ in range(a.repeat):
            for i, text in enumerate(texts):
                t = time.perf_counter()
                parse_intent(text)
                ms = (time.perf_counter() - t) * 1000
                times.append(ms)
                best[i] = min(best[i], ms)
        everything += times
        best_all += best
        print(
            f"{name:8s} lines={len(texts):4d} p50_ms={statistics.median(times):.3f} p95_ms={_pct(times, 0.95):.3f}"
            f" p99_ms={_pct(times, 0.99):.3f}  best-of-{a.repeat} per line: p50_ms={statistics.median(best):.3f}"
            f" p95_ms={_pct(best, 0.95):.3f} p99_ms={_pct(best, 0.99):.3f}"
        )
    if everything:
        p50, p95, p99 = statistics.median(everything), _pct(everything, 0.95), _pct(everything, 0.99)
        print(f"{'all':8s} calls={len(everything):5d} p50_ms={p50:.3f} p95_ms={p95:.3f} p99_ms={p99:.3f}")
        b50, b95, b99 = statistics.median(best_all), _pct(best_all, 0.95), _pct(best_all, 0.99)
        print(f"{'all':8s} best-of-{a.repeat} per line: p50_ms={b50:.3f} p95_ms={b95:.3f} p99_ms={b99:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
