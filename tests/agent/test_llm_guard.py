"""agent.llm_guard on its own: which of a model's proposed slots join the parser's, and which free
answers may reach the user (pure functions; the chat-level tests are in test_llm.py)."""

from __future__ import annotations

from typing import Any

import pytest

from agent.llm import SYSTEM_PROMPT
from agent.llm_guard import Known, check_reply, merge_proposal
from agent.parser import extract_slots

KNOWN = Known({"pets": "pets", "weld_cracks": "weld_cracks", "digits": "digits"}, frozenset({3, 5}))


def merge(message: str, proposal: dict[str, Any], intent: dict[str, Any] | None = None) -> Any:
    return merge_proposal(message, extract_slots(message), proposal, intent or {}, KNOWN)


def test_the_parser_wins_on_what_it_read() -> None:
    m = merge("train resnet18 on pets for 30 epochs", {"model_name": "resnet50", "epochs": 3, "dataset": "digits"})
    assert m.extras == {}
    assert sorted(m.dropped) == [("dataset", "parser_wins"), ("epochs", "parser_wins"), ("model_name", "parser_wins")]


def test_a_number_needs_its_slot_word_and_must_not_be_bound_elsewhere() -> None:
    text = "stop early if 15 epochs bring no improvement"
    parser = extract_slots(text)
    m = merge_proposal(text, parser, {"epochs": 15}, {}, KNOWN)
    if parser.get("advanced_config", {}).get("patience") == 15:
        assert m.dropped == [("epochs", "ungrounded")]  # 15 is the parser's patience
    m = merge("use weld_cracks with 4 kinds of bolt", {"epochs": 4, "batch_size": 4, "dataset": "weld_cracks"})
    assert "epochs" not in m.extras and "batch_size" not in m.extras  # "4 kinds" is no slot's number
    m = merge("zorble, batch of 12", {"batch_size": 12, "image_size": 12})
    assert m.extras.get("batch_size") in (None, 12) and "image_size" not in m.extras


def test_datasets_models_and_jobs_must_exist_for_the_user() -> None:
    m = merge("zorble with flowers", {"dataset": "flowers"})
    assert m.dropped == [("dataset", "unknown_dataset")]
    m = merge("zorble with supernet-7", {"model_name": "supernet-7"})
    assert m.dropped == [("model_name", "unknown_model")]
    m = merge("zorble from job 9", {"init_from_job": 9})
    assert m.dropped == [("init_from_job", "unknown_job")]
    m = merge_proposal("zorble", {}, {"dataset": "pets"}, {}, KNOWN, ['[{"name": "pets", "id": 1}]'])
    assert m.extras == {"dataset": "pets"}  # a dataset a tool returned this turn


def test_a_catalog_model_in_the_message_brings_its_task_and_framework() -> None:
    m = merge_proposal("zorble yolo11n please", {}, {"model_name": "yolo11n"}, {}, KNOWN)
    assert m.extras == {"model_name": "yolo11n", "framework": "ultralytics", "task_type": "object_detection"}
    # a model the message does not name is invented; one that contradicts the parser's task too
    assert merge_proposal("zorble please", {}, {"model_name": "yolo11n"}, {}, KNOWN).dropped == [
        ("model_name", "ungrounded")
    ]
    m = merge_proposal("zorble yolo11n", {"task_type": "image_classification"}, {"model_name": "yolo11n"}, {}, KNOWN)
    assert m.dropped == [("model_name", "conflict")]


def test_repeating_the_session_intent_adds_nothing() -> None:
    m = merge("use yolo11s instead", {"model_name": "yolo11s", "epochs": 30, "dataset": "pets"}, {"epochs": 30})
    assert "epochs" not in m.extras and ("epochs", "parser_wins") not in m.dropped
    assert ("dataset", "ungrounded") in m.dropped  # pets: not in the message, not from a tool


def check(text: str, message: str = "zorble", language: str = "en", outputs: tuple[str, ...] = ("[]",)) -> Any:
    return check_reply(
        text, message=message, language=language, system_prompt=SYSTEM_PROMPT, tool_outputs=outputs, known=KNOWN
    )


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Dialogue state: idle. Waiting for: -.", "prompt_echo"),
        ("my TrainingIntent is {}", "prompt_echo"),
        ("call `submit_training_intent` now", "prompt_echo"),
        ("```\nls\n```", "code"),
        ("def train():\n    pass", "code"),
        ("from torchvision import models", "code"),
        ("Just print(x) it.", "code"),
        ("Try the CIFAR-10 dataset.", "unknown_dataset"),
        ("Use 'my_birds' for that.", "unknown_dataset"),
        ("Fine-tune efficientnet_b7x on it.", "unknown_model"),
        ("job #12 is done", "unknown_job"),
        ("12번 작업 끝났어요", "language"),  # ko text to an English message (and job 12 is unknown first)
    ],
)
def test_replies_the_guard_refuses(text: str, reason: str) -> None:
    got = check(text)
    assert got == reason or (reason == "language" and got == "unknown_job")


def test_replies_the_guard_lets_through() -> None:
    outputs = ('[{"name": "pets", "class_names": ["cat", "dog"]}, {"name": "yolo11n"}]',)
    assert check("You have pets (cat, dog); yolo11n is a small detector.", outputs=outputs) is None
    assert check("Job 3 and job 5 are yours; resnet18 is in the catalog.", outputs=outputs) is None
    assert check("pets 데이터셋이 있어요.", message="뭐 있어?", language="ko", outputs=outputs) is None
    assert check("pets 데이터셋이 있어요.", message="뭐 있어?", language="en", outputs=outputs) == "language"
    assert check("You have pets.", outputs=()) == "no_tool_result"
