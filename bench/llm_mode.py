"""LLM mode against a real model, beside rules mode: per-turn latency, dialogue verdicts, intent accuracy.

    .venv/bin/python bench/llm_mode.py [--scenarios 8] [--intents ../shared/eval/intents_dev.jsonl] [--json out.json]

Starts llama.cpp's OpenAI-compatible server with SmolLM2-135M-Instruct (the `llm` extra;
tests/agent/llama_server.py) on loopback, and one app in this process (SQLite in a temporary
folder, fake trainers: a launch creates and queues a job, nothing trains). Then:

1. Dialogues: the first `--scenarios` scenarios of the dialogue set (tests/agent/data/dialogues.yaml)
   through POST /api/v1/chat, each in rules mode and in LLM mode (a fresh user each): the set's
   verdicts (passed / played) and the per-turn latency (p50 / p95, client side, in-process).
2. Intents: every request of the public intent set, read in rules mode (`agent.parse_intent`) and
   in LLM mode (the planner's proposal merged with the parser's slots by `agent.llm_guard`, exactly
   as a chat turn does; a failed call leaves the parser's reading), scored with the same rules as
   ../shared/eval/score_intents.py (its `check_slot`): core and class accuracy side by side.
3. The guard: how many model outputs it discarded, by kind (call / slot / reply) and reason.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fastapi.testclient import TestClient  # noqa: E402

from agent.llm import LLMFailure, LLMPlanner  # noqa: E402
from agent.llm_guard import known_for, merge_proposal, wants_intent  # noqa: E402
from agent.parser import extract_slots, parse_intent  # noqa: E402
from tests.agent.chat_helpers import fake_trainer_settings, tool_context  # noqa: E402
from tests.agent.dialogue_runner import load_scenarios, play, seed_datasets  # noqa: E402
from tests.agent.llama_server import LlamaServer, llama_server_available, smollm2_gguf  # noqa: E402
from tools.intent import TrainingIntent  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def scorer(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("score_intents", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class TimedClient:
    """The test client, timing each chat turn."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.turn_ms: list[float] = []
        self.modes: list[str] = []

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.get(*args, **kwargs)

    def post(self, url: str, *args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        resp = self.client.post(url, *args, **kwargs)
        if url.endswith("/chat"):
            self.turn_ms.append((time.perf_counter() - t0) * 1000)
            if resp.status_code == 200:
                self.modes.append(resp.json()["mode"])
        return resp


def new_user(client: TestClient, n: int) -> tuple[int, dict[str, str]]:
    email, password = f"bench{n}@example.com", "bench-password-123"
    resp = client.post("/api/v1/auth/register", json={"email": email, "password": password})
    assert resp.status_code == 201, resp.text
    token = client.post("/api/v1/auth/token", data={"username": email, "password": password}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    seed_datasets(client, headers)
    return int(resp.json()["id"]), headers


def dialogues(client: TestClient, planner: LLMPlanner, scenarios: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    users = iter(range(1, 10_000))
    for mode in ("rules", "llm"):
        client.app.state.chat_llm = planner if mode == "llm" else None  # type: ignore[attr-defined]
        timed = TimedClient(client)
        passed = 0
        t0 = time.perf_counter()
        for scenario in scenarios:
            _, headers = new_user(client, next(users) + (0 if mode == "rules" else 5000))
            mismatches = play(timed, headers, scenario)
            passed += not mismatches
            print(f"  {mode:5s} {scenario['id']}: {mismatches or 'ok'}", flush=True)
        out[mode] = {
            "scenarios": len(scenarios),
            "passed": passed,
            "turns": len(timed.turn_ms),
            "p50_ms": statistics.median(timed.turn_ms),
            "p95_ms": percentile(timed.turn_ms, 0.95),
            "max_ms": max(timed.turn_ms),
            "wall_s": time.perf_counter() - t0,
            "modes": {m: timed.modes.count(m) for m in sorted(set(timed.modes))},
        }
    return out


def intents(client: TestClient, planner: LLMPlanner, items: list[dict[str, Any]], score: Any) -> dict[str, Any]:
    user_id, _ = new_user(client, 9999)
    got: dict[str, list[dict[str, Any]]] = {"rules": [], "llm": []}
    call_ms: list[float] = []
    with tool_context(client.app, user_id) as ctx:
        known = known_for(ctx)
        for item in items:
            text = item["text"]
            rules = parse_intent(text).model_dump()
            got["rules"].append(rules)
            t0 = time.perf_counter()
            try:
                names = list(known.datasets.values())
                plan = planner.plan(ctx, text, expect_intent=wants_intent(text, extract_slots(text, names), "idle"))
            except LLMFailure as exc:
                planner.count("call", exc.kind)
                got["llm"].append(rules)
                print(f"  {item['id']}: failed ({exc.kind})", flush=True)
                continue
            finally:
                call_ms.append((time.perf_counter() - t0) * 1000)
            parser = extract_slots(text, list(known.datasets.values()))
            merged = merge_proposal(text, parser, plan.slots or {}, {}, known, plan.tool_outputs)
            for _slot, why in merged.dropped:
                planner.count("slot", why)
            got["llm"].append(TrainingIntent(**{**parser, **merged.extras}).model_dump())
            print(f"  {item['id']}: {call_ms[-1] / 1000:.1f} s, model added {sorted(merged.extras) or '-'}", flush=True)
    result: dict[str, Any] = {"items": len(items), "plan_p50_ms": statistics.median(call_ms)}
    for mode, readings in got.items():
        core_ok = core_n = cls_ok = cls_n = 0
        for item, reading in zip(items, readings, strict=True):
            for slot, expected in item["expect"].items():
                ok = bool(score.check_slot(slot, expected, reading.get(slot)))
                if slot == "class_names":
                    cls_ok, cls_n = cls_ok + ok, cls_n + 1
                else:
                    core_ok, core_n = core_ok + ok, core_n + 1
        result[mode] = {"core": core_ok / max(1, core_n), "class": cls_ok / max(1, cls_n)}
    result["llm_changed_items"] = sum(a != b for a, b in zip(got["rules"], got["llm"], strict=True))
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", type=int, default=8, help="how many dialogue-set scenarios (0: none)")
    ap.add_argument("--intents", type=Path, default=ROOT.parent / "shared" / "eval" / "intents_dev.jsonl")
    ap.add_argument("--scorer", type=Path, default=ROOT.parent / "shared" / "eval" / "score_intents.py")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    why = llama_server_available()
    if why:
        print(f"cannot run: {why}")
        return 2
    model = smollm2_gguf()
    assert model is not None
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; model {model.name}")
    with tempfile.TemporaryDirectory(prefix="vta-llm-bench-") as tmp, LlamaServer(model) as server:
        tmp_path = Path(tmp)
        llm = {"base_url": server.base_url, "api_key": "sk-local", "model": server.model, "timeout_s": 120}
        settings = fake_trainer_settings(f"sqlite:///{tmp_path / 'bench.db'}", tmp_path, llm=llm)
        from web.main import create_app

        with TestClient(create_app(settings)) as client:
            from web.routes.chat import get_planner

            planner = get_planner(client.app.state)  # type: ignore[attr-defined]
            assert planner is not None
            report: dict[str, Any] = {"cpus": os.cpu_count(), "model": model.name}
            items = [json.loads(line) for line in args.intents.read_text(encoding="utf-8").splitlines() if line.strip()]
            print(f"intents: {len(items)} requests of {args.intents.name}", flush=True)
            report["intents"] = intents(client, planner, items, scorer(args.scorer))
            scenarios = load_scenarios()[: args.scenarios]
            print(f"dialogues: {len(scenarios)} scenarios", flush=True)
            report["dialogues"] = dialogues(client, planner, scenarios) if scenarios else {}
            client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]
            report["guard"] = {f"{k}/{r}": n for (k, r), n in sorted(planner.guard_counts.items())}
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


def print_report(report: dict[str, Any]) -> None:
    it = report["intents"]
    print(f"\nintent set ({it['items']} requests; model call p50 {it['plan_p50_ms'] / 1000:.1f} s)")
    print(f"  {'':6s} {'core':>6s} {'class':>6s}")
    for mode in ("rules", "llm"):
        print(f"  {mode:6s} {it[mode]['core']:6.3f} {it[mode]['class']:6.3f}")
    print(f"  readings the model changed: {it['llm_changed_items']}")
    if report.get("dialogues"):
        print("\ndialogues   passed  turns   p50 ms   p95 ms   max ms   wall s  modes")
        for mode in ("rules", "llm"):
            d = report["dialogues"][mode]
            print(
                f"  {mode:6s} {d['passed']:4d}/{d['scenarios']:<3d} {d['turns']:5d} {d['p50_ms']:8.0f}"
                f" {d['p95_ms']:8.0f} {d['max_ms']:8.0f} {d['wall_s']:8.0f}  {d['modes']}"
            )
    print("\nguard discards (kind/reason: count)")
    for key, n in report["guard"].items():
        print(f"  {key}: {n}")


if __name__ == "__main__":
    sys.exit(main())
