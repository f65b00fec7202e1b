"""LLM mode through the REAL openai + langchain_openai clients against a local OpenAI-compatible
server with scripted replies (tests/agent/fake_openai_server.py): a tool-call flow that lists
datasets and returns a TrainingIntent; plain answers only where the rules have none; malformed or
invalid tool arguments fall back to the deterministic brain silently, timeouts, HTTP 500 and
connection refused with a note; each guard of agent.llm_guard (a system-prompt echo, an invented
dataset, code, a reply in the wrong language, a dropped slot) and its /metrics counter.
Nothing reaches the network."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.llm import INTENT_TOOL, READ_TOOLS, LLMFailure, LLMPlanner, planner_from_config
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


def test_a_training_request_asks_the_model_for_the_intent_alone_and_keeps_what_validates(
    client: TestClient, fake_llm: FakeOpenAI, alice: tuple[int, dict[str, str]]
) -> None:
    _, headers = alice
    proposal = {
        "model_name": "resnet18",
        "framework": "timm",
        "task_type": "image_classification",
        "dataset": "pets",
        "epochs": 2,
        "image_size": 32,
        "class_names": ["cat", "dog"],
    }
    fake_llm.script(tool_call(INTENT_TOOL, proposal))
    body = post(client, headers, "I'd like a cat and dog classifier with resnet18 on pets, 2 epochs, small images (32)")
    assert body["mode"] == "llm"
    assert body["state"] == "confirming" and body["intent"]["dataset"] == "pets" and body["intent"]["epochs"] == 2
    assert body["summary"]["model_name"] == "resnet18" and body["summary"]["image_size"] == 32
    (request,) = fake_llm.requests  # one call: the rules read a training request
    assert [t["function"]["name"] for t in request["tools"]] == [INTENT_TOOL]
    assert request["tool_choice"] == {"type": "function", "function": {"name": INTENT_TOOL}}
    assert request["model"] == "fake-model" and request["max_tokens"] == 256

    # a yes while confirming never goes to the model: the dialogue launches
    fake_llm.script(status(500))
    body = post(client, headers, "yes", body["session_id"])
    assert body["launched"] and body["job_id"] and body["mode"] == "rules"
    assert fake_llm.requests == []


def test_other_messages_may_use_the_read_only_tools_as_the_chat_user(
    client: TestClient, fake_llm: FakeOpenAI, alice: tuple[int, dict[str, str]], make_user: MakeUser
) -> None:
    _, bob_headers = make_user()
    upload_dataset(client, bob_headers, "bob-secret", classification_files(8))
    _, headers = alice
    fake_llm.script(
        tool_call("list_datasets", {"class_names": ["cat", "dog"]}),
        tool_call("get_dataset", {"dataset": "bob-secret"}),
        text("pets has cats and dogs."),
    )
    body = post(client, headers, NOT_UNDERSTOOD)
    first, second, third = fake_llm.requests
    names = {t["function"]["name"] for t in first["tools"]}
    assert names == {*READ_TOOLS, INTENT_TOOL} and first["tool_choice"] == "auto"
    assert "create_job" not in names and "stop_job" not in names  # read-only: acting is the dialogue's
    (tool_msg,) = tool_messages(second)
    result = json.loads(tool_msg["content"])  # the tool ran as alice
    assert [d["name"] for d in result] == ["pets"] and result[0]["class_names"] == ["cat", "dog"]
    (assistant,) = [m for m in second["messages"] if m["role"] == "assistant"]
    assert isinstance(assistant["content"], str)  # llama.cpp's server refuses a null content (HTTP 500)
    error = json.loads(tool_messages(third)[-1]["content"])
    assert error["error_type"] == "NotFoundError" and "bob-secret" in error["error"]  # bob's is hidden
    assert body["mode"] == "llm" and body["reply"].startswith("pets has cats and dogs.\n\n")


NOT_UNDERSTOOD = "zorble the quandary, friend"  # the rules have no reading of this


def test_a_plain_answer_from_tool_results_is_shown_only_where_the_rules_have_none(
    client: TestClient, fake_llm: FakeOpenAI, alice: tuple[int, dict[str, str]]
) -> None:
    _, headers = alice
    fake_llm.script(tool_call("list_models", {"task_type": "object_detection"}), text("Try yolo11n: small and fast."))
    body = post(client, headers, NOT_UNDERSTOOD)
    assert body["mode"] == "llm" and body["state"] == "idle"
    assert body["reply"].startswith("Try yolo11n: small and fast.\n\n")  # then the rules' suggestions
    assert body["suggestions"]
    (tool_msg,) = tool_messages(fake_llm.requests[1])
    assert "yolo11n" in tool_msg["content"]

    # where the dialogue has an answer of its own, it is the answer
    fake_llm.script(tool_call("list_datasets", {}), text("You have pets, fruit and parcels."))
    body = post(client, headers, "what datasets do I have?")
    assert body["mode"] == "llm" and "You have pets, fruit" not in body["reply"]
    assert "Datasets you can use (3)" in body["reply"]
    assert guard_count(client, "reply", "rules_answered") == 1


def guard_count(client: TestClient, kind: str, reason: str) -> float:
    text = client.get("/metrics").text
    name = f'vta_llm_guard_discards_total{{kind="{kind}",reason="{reason}"}} '
    for line in text.splitlines():
        if line.startswith(name):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


ECHO = "Dialogue state: idle. Waiting for: -. Current TrainingIntent: {}. Jobs of this chat: []."


@pytest.mark.parametrize(
    ("message", "answer", "reason"),
    [
        (NOT_UNDERSTOOD, ECHO, "prompt_echo"),
        (NOT_UNDERSTOOD, "You help people train computer-vision models on their datasets", "prompt_echo"),
        (NOT_UNDERSTOOD, "Use the flowers-102 dataset for that.", "unknown_dataset"),
        (NOT_UNDERSTOOD, "ImageNet has what you need.", "unknown_dataset"),
        (NOT_UNDERSTOOD, "Train resnet9000-turbo on pets.", "unknown_model"),
        (NOT_UNDERSTOOD, "Job 4242 finished with 99% accuracy.", "unknown_job"),
        (NOT_UNDERSTOOD, "```python\nprint('hi')\n```", "code"),
        (NOT_UNDERSTOOD, "Here:\nimport torch\nmodel = torch.load('x')", "code"),
        ("조블 퀀더리 해줘", "You have pets and fruit.", "language"),
    ],
)
def test_a_free_answer_the_guard_refuses_is_replaced_by_the_rules_reply_and_counted(
    client: TestClient,
    fake_llm: FakeOpenAI,
    alice: tuple[int, dict[str, str]],
    message: str,
    answer: str,
    reason: str,
) -> None:
    _, headers = alice
    fake_llm.script(text("-"))
    rules = post(client, headers, message)  # the scripted "-" is no answer: the rules' reply
    before = guard_count(client, "reply", reason)
    fake_llm.script(tool_call("list_datasets", {}), text(answer))
    body = post(client, headers, message)
    assert body["mode"] == "llm"
    assert body["reply"] == rules["reply"] and answer not in body["reply"]
    assert guard_count(client, "reply", reason) == before + 1


def test_an_answer_without_any_tool_result_is_not_shown(
    client: TestClient, fake_llm: FakeOpenAI, alice: tuple[int, dict[str, str]]
) -> None:
    _, headers = alice
    fake_llm.script(text("Sure! Your model is great."))
    body = post(client, headers, NOT_UNDERSTOOD)
    assert "Your model is great" not in body["reply"] and body["suggestions"]
    assert guard_count(client, "reply", "no_tool_result") == 1


def test_model_slots_fill_only_what_the_parser_left_out_and_must_validate(
    client: TestClient, fake_llm: FakeOpenAI, alice: tuple[int, dict[str, str]], make_user: MakeUser
) -> None:
    _, bob_headers = make_user()
    upload_dataset(client, bob_headers, "bob-secret", classification_files(8))
    _, headers = alice
    proposal = {
        "model_name": "resnet50",  # the parser read resnet18: the parser's
        "dataset": "bob-secret",  # not alice's: dropped (the parser read pets anyway)
        "epochs": 40,  # the parser read 2
        "batch_size": 7,  # no 7 in the message: invented
        "image_size": 64,  # "image size 64" is in the message (a form the parser may miss or not)
        "class_names": ["cat", "dog"],
    }
    fake_llm.script(tool_call(INTENT_TOOL, proposal))
    body = post(client, headers, "train resnet18 on pets for 2 epochs, image size 64")
    assert body["mode"] == "llm" and body["state"] == "confirming"
    intent = body["intent"]
    assert intent["model_name"] == "resnet18" and intent["dataset"] == "pets" and intent["epochs"] == 2
    assert intent["batch_size"] is None and intent["image_size"] == 64 and not intent["class_names"]
    assert guard_count(client, "slot", "parser_wins") >= 2
    assert guard_count(client, "slot", "ungrounded") >= 1  # batch 7; the class names are not in the message

    # a dataset of someone else's is unknown for this user
    fake_llm.script(tool_call(INTENT_TOOL, {"dataset": "bob-secret"}))
    body = post(client, headers, "zorble that one", body["session_id"])
    assert body["intent"]["dataset"] == "pets" and guard_count(client, "slot", "unknown_dataset") == 1


def test_a_model_the_parser_missed_is_taken_when_it_is_in_the_catalog_and_in_the_message(
    client: TestClient, fake_llm: FakeOpenAI, alice: tuple[int, dict[str, str]]
) -> None:
    _, headers = alice
    fake_llm.script(tool_call(INTENT_TOOL, {"model_name": "yolo11n", "dataset": "parcels"}))
    body = post(client, headers, "parcels: train a yolo11n on it")
    assert body["intent"]["model_name"] == "yolo11n" and body["intent"]["framework"] == "ultralytics"
    fake_llm.script(tool_call(INTENT_TOOL, {"model_name": "supernet-7"}))
    post(client, headers, "zorble with supernet-7 please")
    assert guard_count(client, "slot", "unknown_model") == 1


@pytest.mark.parametrize(
    ("step", "kind"),
    [
        (tool_call(INTENT_TOOL, '{"model_name": "resnet18", "dataset": '), "malformed"),
        (tool_call(INTENT_TOOL, {"model_name": "resnet18", "epochs": -3}), "invalid_intent"),
        (tool_call(INTENT_TOOL, {"model_name": "resnet18", "colour": "blue"}), "invalid_intent"),
        (tool_call("list_datasets", {}), "unknown_tool"),  # a training turn offers the intent tool alone
        (tool_call("drop_database", {}), "unknown_tool"),
        (text(""), "empty"),
    ],
)
def test_bad_answers_fall_back_to_the_rules_silently_and_are_counted(
    client: TestClient, fake_llm: FakeOpenAI, alice: tuple[int, dict[str, str]], step: dict[str, Any], kind: str
) -> None:
    _, headers = alice
    fake_llm.script(step)
    body = post(client, headers, "train resnet18 on pets for 2 epochs")
    assert body["mode"] == "llm_fallback"
    assert "language model" not in body["reply"]  # the dialogue's own reply, no note
    # the deterministic brain answered the same message
    assert body["state"] == "confirming" and body["intent"]["model_name"] == "resnet18"
    assert guard_count(client, "call", kind) == 1


def test_invalid_arguments_for_a_read_tool_fall_back(
    client: TestClient, fake_llm: FakeOpenAI, alice: tuple[int, dict[str, str]]
) -> None:
    _, headers = alice
    fake_llm.script(tool_call("list_datasets", {"mine": "not-a-bool-at-all"}))
    body = post(client, headers, NOT_UNDERSTOOD)
    assert body["mode"] == "llm_fallback" and guard_count(client, "call", "invalid_args") == 1
    fake_llm.script(tool_call("stop_job", {"job_id": 1}))  # not a tool the model has
    body = post(client, headers, NOT_UNDERSTOOD)
    assert body["mode"] == "llm_fallback" and guard_count(client, "call", "unknown_tool") == 1


def test_an_endpoint_error_falls_back_with_a_note(
    client: TestClient, fake_llm: FakeOpenAI, alice: tuple[int, dict[str, str]]
) -> None:
    _, headers = alice
    fake_llm.script(status(500))
    body = post(client, headers, "train resnet18 on pets for 2 epochs")
    assert body["mode"] == "llm_fallback"
    assert body["reply"].startswith("(Note: the language model could not answer") and "HTTP 500" in body["reply"]
    assert body["state"] == "confirming" and guard_count(client, "call", "http") == 1


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
        sent = fake_llm.requests[0]["messages"]
        assert sent[0]["role"] == "system" and "Dialogue state" not in sent[0]["content"]  # the stable prefix
        state = sent[-1]["content"]  # the state comes last, with the message
        assert '"epochs": 3' in state and "Waiting for: dataset" in state and state.endswith("fruit, medium difficulty")
        assert [m["role"] for m in sent] == ["system", "user"]
        fake_llm.script(status(503))
        with pytest.raises(LLMFailure, match="HTTP 503"):
            planner.plan(ctx, "hello")
