"""The dialogue test set (tests/agent/data/dialogues.yaml, played by tests/agent/dialogue_runner.py)
through the real chat API: POST /api/v1/chat with a registered user's token on the app with its
lifespan (supervisor running). Trainers are a fake interpreter, so a launched job is created,
queued and started but nothing trains. Every scenario runs in a fresh app and database, on SQLite
and, with TEST_DATABASE_URL, PostgreSQL."""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.agent.chat_helpers import fake_trainer_settings
from tests.agent.dialogue_runner import english_runs, language_problems, load_scenarios, play, seed_datasets
from tests.conftest import MakeUser
from web.config import Settings

SCENARIOS = load_scenarios()


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return fake_trainer_settings(db_url, tmp_path)


@pytest.fixture(autouse=True)
def _no_trainer_outlives_its_test(client: TestClient) -> Any:
    yield
    client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]


@pytest.fixture
def user(client: TestClient, make_user: MakeUser) -> dict[str, str]:
    headers = make_user()[1]
    seed_datasets(client, headers)
    return headers


def test_the_set_is_big_enough_and_covers_what_it_should() -> None:
    ids = [s["id"] for s in SCENARIOS]
    assert len(ids) == len(set(ids)) and len(ids) >= 30
    langs = collections.Counter(s["lang"] for s in SCENARIOS)
    assert langs["ko"] >= 14 and langs["en"] >= 14
    covered = {c for s in SCENARIOS for c in s["covers"]}
    assert {
        "one_message",
        "missing_slots",
        "correction_at_confirm",
        "not_yet",
        "cancel",
        "incompatible",
        "conversion",
        "numbers_in_words",
        "language_switch",
    } <= covered
    for s in SCENARIOS:
        assert all(isinstance(t["say"], str) and t["say"] for t in s["turns"]), s["id"]
        assert any("launched" in t.get("expect", {}) for t in s["turns"]), s["id"]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s["id"] for s in SCENARIOS])
def test_dialogue(client: TestClient, user: dict[str, str], scenario: dict[str, Any]) -> None:
    mismatches = play(client, user, scenario)
    assert not mismatches, "\n".join(mismatches)


def test_the_runner_reports_what_differs(client: TestClient, user: dict[str, str]) -> None:
    wrong = {
        "id": "wrong",
        "lang": "en",
        "covers": [],
        "turns": [
            {
                "say": "train resnet18 on pets for 3 epochs",
                "expect": {"state": "idle", "launched": True, "intent": {"epochs": 4}, "contains": ["nope"]},
            },
            {"say": "yes", "expect": {"job": {"model_name": "resnet34"}, "language": "ko"}},
        ],
    }
    found = play(client, user, wrong)
    assert any("state: 'confirming' != 'idle'" in m for m in found)
    assert any("launched: False != True" in m for m in found)
    assert any("intent.epochs: 3 != 4" in m for m in found)
    assert any("reply lacks 'nope'" in m for m in found)
    assert any("job.model_name: 'resnet18' != 'resnet34'" in m for m in found)
    assert any("language: 'en' != 'ko'" in m and m.startswith("turn 2") for m in found)


def test_the_language_checks() -> None:
    assert language_problems("pets(으)로는 탐지을(를) 학습할 수 없습니다", "ko") == [
        "unresolved particle '(으)로'",
        "unresolved particle '을(를)'",
    ]
    assert english_runs("학습할 수 없습니다: pets has only image-level labels") == ["pets has only"]
    assert english_runs("오류: `model is not in the catalog` (resnet18.a1_in1k timm)") == []
    assert language_problems("Started job 1: m on d, 1 epochs", "en") == ["wrong plural '1 epochs'"]
    assert language_problems("Ready: 데이터셋", "en") == ["Hangul in an English reply"]
