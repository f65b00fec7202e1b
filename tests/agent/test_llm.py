"""LLM mode through the REAL openai + langchain_openai clients against a local OpenAI-compatible
server with scripted replies (tests/agent/fake_openai_server.py): a tool-call flow that lists
datasets and returns a TrainingIntent; plain answers; malformed or invalid tool arguments,
timeouts, HTTP 500 and connection refused fall back to the deterministic brain with a note.
Nothing reaches the network."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.llm import INTENT_TOOL, LLMFailure, LLMPlanner, planner_from_config
from tests.agent.chat_helpers import fake_trainer_settings, seed_datasets, tool_context
from tests.agent.fake_openai_server import FakeOpenAI, slow, status, text, tool_call
from tests.conftest import MakeUser
from tests.live_server import classification_files, free_port, upload_dataset
from web.config import Settings

API = "/api/v1"


@pytest.fixture(scope="module")
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def settings(db_url: str, tmp_path: Path, fake_llm: FakeOpenAI) -> Settings:
    llm = {"base_url": fake_llm.base_url, "api_key": "sk-test", "model": "fake-model", "timeout_s": 2}
    return fake_trainer_settings(db_url, tmp_path, llm=llm)


@pytest.fixture(autouse=True)
def _no_trainer_outlives_its_test(client: TestClient) -> Any:
    yield
    client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]


@pytest.fixture
def alice(client: TestClient, make_user: MakeUser) -> tuple[int, dict[str, str]]:
    user, headers = make_user()
    seed_datasets(client, headers)
    return int(user["id"]), headers


def post(client: TestClient, headers: dict[str, str], message: str, session_id: str | None = None) -> dict[str, Any]:
    r = client.post(f"{API}/chat", json={"session_id": session_id, "message": message}, headers=headers)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def tool_messages(request: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in request["messages"] if m.get("role") == "tool"]


def test_tool_call_flow_lists_datasets_then_returns_a_training_intent(
    client: TestClient, fake_llm: FakeOpenAI, alice: tuple[int, dict[str, str]]
) -> None:
    _, headers = alice
    fake_llm.script(
        tool_call("list_datasets", {"class_names": ["cat", "dog"]}),
        tool_call(
            INTENT_TOOL,
            {
                "model_name": "resnet18",
                "framework": "timm",
                "task_type": "image_classification",
                "dataset": "pets",
                "epochs": 2,
                "image_size": 32,
                "class_names": ["cat", "dog"],
            },
        ),
    )
    body = post(client, headers, "I'd like a cat vs dog classifier with resnet18, 2 epochs, small images (32)")
    assert body["mode"] == "llm"
    assert body["state"] == "confirming" and body["intent"]["dataset"] == "pets" and body["intent"]["epochs"] == 2
    assert body["summary"]["model_name"] == "resnet18" and body["summary"]["image_size"] == 32
    assert len(fake_llm.requests) == 2
    first, second = fake_llm.requests
    names = {t["function"]["name"] for t in first["tools"]}
    assert {"list_datasets", "check_compatibility", "list_models", INTENT_TOOL} <= names
    assert "create_job" not in names and "launch" not in " ".join(names)  # launching is never the model's call
    assert first["model"] == "fake-model"
    # the tool ran as alice and its result went back to the model
    (tool_msg,) = tool_messages(second)
    result = json.loads(tool_msg["content"])
    assert result[0]["name"] == "pets" and result[0]["class_names"] == ["cat", "dog"]

    # a yes while confirming never goes to the model: the dialogue launches
    fake_llm.script(status(500))
    body = post(client, headers, "yes", body["session_id"])
    assert body["launched"] and body["job_id"] and body["mode"] == "rules"
    assert fake_llm.requests == []


def test_plain_text_answer_is_the_reply(
    client: TestClient, fake_llm: FakeOpenAI, alice: tuple[int, dict[str, str]]
) -> None:
    _, headers = alice
    fake_llm.script(tool_call("list_models", {"task_type": "object_detection"}), text("Try yolo11n: small and fast."))
    body = post(client, headers, "which detector should I use?")
    assert body["mode"] == "llm" and body["reply"] == "Try yolo11n: small and fast." and body["state"] == "idle"
    (tool_msg,) = tool_messages(fake_llm.requests[1])
    assert "yolo11n" in tool_msg["content"]


@pytest.mark.parametrize(
    ("step", "why"),
    [
        (tool_call(INTENT_TOOL, '{"model_name": "resnet18", "dataset": '), "malformed arguments"),
        (tool_call(INTENT_TOOL, {"model_name": "resnet18", "epochs": -3}), "invalid TrainingIntent"),
        (tool_call(INTENT_TOOL, {"model_name": "resnet18", "colour": "blue"}), "invalid TrainingIntent"),
        (tool_call("list_datasets", {"mine": "not-a-bool-at-all"}), "invalid arguments for tool list_datasets"),
        (tool_call("drop_database", {}), "unknown tool drop_database"),
        (status(500), "HTTP 500"),
        (text(""), "empty answer"),
    ],
)
def test_bad_answers_fall_back_to_the_rules_with_a_note(
    client: TestClient, fake_llm: FakeOpenAI, alice: tuple[int, dict[str, str]], step: dict[str, Any], why: str
) -> None:
    _, headers = alice
    fake_llm.script(step)
    body = post(client, headers, "train resnet18 on pets for 2 epochs")
    assert body["mode"] == "llm_fallback"
    assert body["reply"].startswith("(Note: the language model could not answer")
    assert why in body["reply"]
    # the deterministic brain answered the same message
    assert body["state"] == "confirming" and body["intent"]["model_name"] == "resnet18"


def test_timeout_falls_back_quickly(
    client: TestClient, fake_llm: FakeOpenAI, alice: tuple[int, dict[str, str]]
) -> None:
    _, headers = alice
    fake_llm.script(slow(10, text("too late")))
    t0 = time.monotonic()
    body = post(client, headers, "pets 데이터셋으로 resnet18 2에폭 학습해줘")
    # llm timeout_s=2, no retries: well before the model's answer at 10 s (the rest is the rules
    # brain's turn, which a loaded machine may slow down)
    assert time.monotonic() - t0 < 9
    assert body["mode"] == "llm_fallback" and "timeout" in body["reply"]
    assert body["reply"].startswith("(참고: 언어 모델이 응답하지 못해서")  # the note in the user's language
    assert body["state"] == "confirming"


def test_connection_refused_falls_back(client: TestClient, alice: tuple[int, dict[str, str]]) -> None:
    _, headers = alice
    client.app.state.chat_llm = LLMPlanner(  # type: ignore[attr-defined]
        f"http://127.0.0.1:{free_port()}/v1", "sk-test", "fake-model", timeout=2
    )
    body = post(client, headers, "what datasets do I have?")
    assert body["mode"] == "llm_fallback" and "connection error" in body["reply"]
    assert "Datasets you can use (3)" in body["reply"]


def test_tools_run_as_the_chat_user(
    client: TestClient, fake_llm: FakeOpenAI, alice: tuple[int, dict[str, str]], make_user: MakeUser
) -> None:
    _, bob_headers = make_user()
    upload_dataset(client, bob_headers, "bob-secret", classification_files(8))
    _, headers = alice
    fake_llm.script(
        tool_call("get_dataset", {"dataset": "bob-secret"}),
        tool_call(INTENT_TOOL, {"model_name": "resnet18", "dataset": "bob-secret", "epochs": 2}),
    )
    body = post(client, headers, "train resnet18 on bob-secret for 2 epochs")
    (tool_msg,) = tool_messages(fake_llm.requests[1])
    error = json.loads(tool_msg["content"])
    assert error["error_type"] == "NotFoundError" and "bob-secret" in error["error"]
    # the intent the model produced is refused exactly like REST: not found
    assert body["mode"] == "llm" and body["state"] == "collecting" and body["pending"] == "dataset"
    assert "can't find a dataset named 'bob-secret'" in body["reply"]


def test_planner_direct_and_settings(
    fake_llm: FakeOpenAI, client: TestClient, alice: tuple[int, dict[str, str]]
) -> None:
    user_id, _ = alice
    planner = planner_from_config(client.app.state.settings.llm)  # type: ignore[attr-defined]
    assert planner is not None and planner.base_url == fake_llm.base_url and planner.timeout == 2
    assert planner_from_config(Settings(_env_file=None).llm) is None
    with tool_context(client.app, user_id) as ctx:
        fake_llm.script(tool_call(INTENT_TOOL, {"dataset": "fruit", "preset": "medium"}))
        plan = planner.plan(
            ctx, "fruit, medium difficulty", state="collecting", pending="dataset", intent={"epochs": 3}
        )
        assert plan.slots == {"dataset": "fruit", "preset": "medium"} and plan.tools_called == [INTENT_TOOL]
        system = fake_llm.requests[0]["messages"][0]["content"]
        assert '"epochs": 3' in system and "Waiting for: dataset" in system
        fake_llm.script(status(503))
        with pytest.raises(LLMFailure, match="HTTP 503"):
            planner.plan(ctx, "hello")
