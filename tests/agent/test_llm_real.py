"""LLM mode against a REAL model: SmolLM2-135M-Instruct served by llama.cpp's OpenAI-compatible
server (`llama_server`, tests/agent/conftest.py) on loopback, driven through POST /api/v1/chat.

Scenarios of the dialogue set (tests/agent/data/dialogues.yaml, tests/agent/dialogue_runner.py) are
played twice, by two users of one app: in rules mode and in LLM mode. The set's expectations give
the same verdicts, and every turn ends in the same state, pending question, intent and launch: the
model proposes, the guard (agent.llm_guard) keeps only what validates, the dialogue decides. No
reply carries the system prompt or code. About 2-8 s per model call on 2 busy cores: a subset."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.llm import LLMPlanner
from tests.agent.chat_helpers import fake_trainer_settings
from tests.agent.dialogue_runner import load_scenarios, play, seed_datasets
from tests.agent.llama_server import LlamaServer
from tests.conftest import MakeUser
from web.config import Settings
from web.routes.chat import get_planner

pytestmark = pytest.mark.slow

SUBSET = [
    "en_full_request_then_yes",  # a request, the confirmation, yes launches
    "en_yes_but_with_a_correction",  # a correction at the confirmation
    "en_question_while_collecting_keeps_the_question",  # a question mid-dialogue
    "ko_full_request_then_yes",
    "ko_yes_with_a_correction",
    "ko_then_english",
]
SCENARIOS = {s["id"]: s for s in load_scenarios()}


@pytest.fixture
def settings(db_url: str, tmp_path: Path, llama_server: LlamaServer) -> Settings:
    llm = {"base_url": llama_server.base_url, "api_key": "sk-local", "model": llama_server.model, "timeout_s": 120}
    return fake_trainer_settings(db_url, tmp_path, llm=llm)


@pytest.fixture(autouse=True)
def _no_trainer_outlives_its_test(client: TestClient) -> Iterator[None]:
    yield
    client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]


class Recorder:
    """The test client, recording each chat turn's answer (the runner only reports mismatches)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.turns: list[dict[str, Any]] = []

    def get(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.get(*args, **kwargs)

    def post(self, url: str, *args: Any, **kwargs: Any) -> Any:
        resp = self.client.post(url, *args, **kwargs)
        if url.endswith("/chat") and resp.status_code == 200:
            self.turns.append(resp.json())
        return resp


def outcome(turn: dict[str, Any]) -> dict[str, Any]:
    return {k: turn[k] for k in ("state", "pending", "intent", "launched", "language")}


def run(client: TestClient, make_user: MakeUser, scenario: dict[str, Any], planner: Any) -> tuple[list[str], Recorder]:
    client.app.state.chat_llm = planner  # type: ignore[attr-defined]
    headers = make_user()[1]
    seed_datasets(client, headers)
    recorder = Recorder(client)
    return play(recorder, headers, scenario), recorder


@pytest.mark.parametrize("scenario_id", SUBSET)
def test_a_dialogue_ends_as_in_rules_mode(
    client: TestClient, make_user: MakeUser, llama_server: LlamaServer, scenario_id: str
) -> None:
    scenario = SCENARIOS[scenario_id]
    planner = get_planner(client.app.state)  # type: ignore[attr-defined]
    assert isinstance(planner, LLMPlanner) and planner.base_url == llama_server.base_url
    rules_mismatches, rules = run(client, make_user, scenario, None)
    llm_mismatches, llm = run(client, make_user, scenario, planner)
    assert llm_mismatches == rules_mismatches, "\n".join(llm_mismatches)
    assert [outcome(t) for t in llm.turns] == [outcome(t) for t in rules.turns]
    modes = [t["mode"] for t in llm.turns]
    assert set(modes) <= {"llm", "llm_fallback", "rules"} and modes.count("rules") < len(modes)  # the model was asked
    for turn in llm.turns:
        assert "Dialogue state" not in turn["reply"] and "TrainingIntent" not in turn["reply"]
        assert "```" not in turn["reply"] and "import " not in turn["reply"]
    print(scenario_id, modes, dict(planner.guard_counts))


def test_a_request_for_code_gets_the_rules_answer_and_nothing_invented(client: TestClient, make_user: MakeUser) -> None:
    message = {"message": "write me a python script that trains on imagenet"}
    planner = get_planner(client.app.state)  # type: ignore[attr-defined]
    client.app.state.chat_llm = None  # type: ignore[attr-defined]
    headers = make_user()[1]
    seed_datasets(client, headers)
    rules = client.post("/api/v1/chat", json=message, headers=headers).json()
    client.app.state.chat_llm = planner  # type: ignore[attr-defined]
    headers = make_user()[1]
    seed_datasets(client, headers)
    resp = client.post("/api/v1/chat", json=message, headers=headers)
    body = resp.json()
    assert resp.status_code == 200 and body["mode"] in ("llm", "llm_fallback")
    assert outcome(body) == outcome(rules)
    assert "```" not in body["reply"] and "import " not in body["reply"] and "def " not in body["reply"]
    assert body["reply"].endswith(rules["reply"])  # a free answer may only come before the rules' reply
