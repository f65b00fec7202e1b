"""The chat understands "use my weights" / "내 가중치로": the parser gives ``init_weights`` ("mine",
or the upload's id when a number follows); the dialogue takes the user's only upload for the
model, asks which one when there are several (listing them), says how to upload when there are
none, and the confirmation's weights line says "from your weights NAME (sha ...)"."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent import parse_intent
from agent.chat import ChatTurn, handle_message
from agent.parser import extract_slots
from tests.agent.chat_helpers import fake_trainer_settings, seed_datasets, tool_context
from tests.conftest import MakeUser
from tests.live_server import API
from tests.tools.test_weights import safetensors_bytes
from web.config import Settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("train resnet18 on pets using my weights", {"init_weights": "mine", "model_name": "resnet18"}),
        ("fine-tune resnet18 on pets with my own weights #3 for 5 epochs", {"init_weights": 3, "epochs": 5}),
        ("start from my uploaded weights 7, resnet18 on pets, 10 epochs", {"init_weights": 7, "epochs": 10}),
        ("use the weights I uploaded", {"init_weights": "mine"}),
        ("내 가중치로 pets 데이터셋에 resnet18 학습", {"init_weights": "mine", "model_name": "resnet18"}),
        ("pets 로 resnet18 학습, 내가 올린 가중치 3번으로 20 에폭", {"init_weights": 3, "epochs": 20}),
        ("제 가중치로 학습해줘", {"init_weights": "mine"}),
    ],
)
def test_parser_reads_my_weights_in_english_and_korean(text: str, expected: dict[str, Any]) -> None:
    slots = extract_slots(text)
    assert {k: slots.get(k) for k in expected} == expected, slots
    assert parse_intent(text).init_weights == expected["init_weights"]


def test_parser_leaves_other_weights_alone() -> None:
    assert "init_weights" not in extract_slots("train resnet18 on pets starting from job 12")
    assert extract_slots("12번 잡 가중치로 파인튜닝") == {"init_from_job": 12}
    assert "init_weights" not in extract_slots("is it pretrained? which weights?")


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return fake_trainer_settings(db_url, tmp_path)


@pytest.fixture(autouse=True)
def _cleanup(client: TestClient) -> Any:
    yield
    client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]


@pytest.fixture
def alice(client: TestClient, make_user: MakeUser) -> tuple[int, dict[str, str]]:
    user, headers = make_user()
    seed_datasets(client, headers)
    return int(user["id"]), headers


class Chat:
    def __init__(self, app: Any, user_id: int) -> None:
        self.app, self.user_id, self.session_id = app, user_id, None

    def __call__(self, message: str) -> ChatTurn:
        with tool_context(self.app, self.user_id) as ctx:
            turn = handle_message(ctx, self.session_id, message)
        self.session_id = turn.session_id  # type: ignore[assignment]
        return turn


def weights_file(seed: int) -> bytes:
    return safetensors_bytes({"layer1.0.conv1.weight": ("F32", [1], bytes([seed, 0, 128, 63]))})


def upload(client: TestClient, headers: dict[str, str], name: str, seed: int, model: str = "resnet18") -> Any:
    r = client.post(
        f"{API}/weights/mine",
        data={"model": model},
        files={"file": (name, weights_file(seed), "application/octet-stream")},
        headers=headers,
    )
    assert r.status_code == 201, r.text
    return r.json()


def test_use_my_weights_takes_the_only_upload_and_the_confirmation_says_so(
    client: TestClient, alice: tuple[int, dict[str, str]]
) -> None:
    user_id, h = alice
    w = upload(client, h, "my-r18.safetensors", 1)
    sha = hashlib.sha256(weights_file(1)).hexdigest()[:12]
    chat = Chat(client.app, user_id)
    t = chat("train on pets for 2 epochs using my weights")  # no model named: the upload's
    assert t.state == "confirming", t.reply
    assert f"Using your weights my-r18.safetensors (#{w['id']}, resnet18)." in t.reply
    assert f"- weights: from your weights my-r18.safetensors (sha {sha})" in t.reply
    assert t.summary is not None and t.summary["model_name"] == "resnet18"
    assert t.summary["pretrained"]["source"] == "user upload"
    assert t.summary["pretrained"]["user_weights_id"] == w["id"]
    assert t.intent["init_weights"] == w["id"]

    t = chat("yes")
    assert t.launched and t.job_id is not None
    job = client.get(f"{API}/jobs/{t.job_id}", headers=h).json()
    assert job["pretrained"]["source"] == "user upload" and job["pretrained"]["file"] == "my-r18.safetensors"

    # Korean, model named
    ko = Chat(client.app, user_id)
    t = ko("내 가중치로 pets 데이터셋에 resnet18 2 에폭 학습")
    assert t.state == "confirming", t.reply
    assert f"- 가중치: 내가 올린 가중치 my-r18.safetensors 사용 (sha {sha})" in t.reply


def test_several_uploads_are_listed_and_the_answer_picks_one(
    client: TestClient, alice: tuple[int, dict[str, str]]
) -> None:
    user_id, h = alice
    a = upload(client, h, "first.safetensors", 1)
    b = upload(client, h, "second.safetensors", 2)
    upload(client, h, "other-model.safetensors", 3, model="resnet34")
    chat = Chat(client.app, user_id)
    t = chat("train resnet18 on pets for 2 epochs with my weights")
    assert t.state == "collecting" and t.pending == "init_weights", t.reply
    assert "You have 2 weights files for resnet18" in t.reply
    assert f"#{a['id']} first.safetensors" in t.reply and f"#{b['id']} second.safetensors" in t.reply
    assert "other-model" not in t.reply  # another model's upload is not offered
    assert t.suggestions == [f"#{b['id']} second.safetensors", f"#{a['id']} first.safetensors"]
    t = chat("2")  # the second in the list (newest first): first.safetensors
    assert t.state == "confirming", t.reply
    assert "- weights: from your weights first.safetensors" in t.reply
    assert t.intent["init_weights"] == a["id"]

    ko = Chat(client.app, user_id)
    t = ko("pets 로 resnet18 2 에폭 학습, 내 가중치로")
    assert t.pending == "init_weights" and "가중치 파일이 2개 있습니다" in t.reply
    t = ko(f"#{b['id']} second.safetensors")  # a clicked suggestion
    assert t.state == "confirming" and "내가 올린 가중치 second.safetensors 사용" in t.reply


def test_no_upload_says_how_to_upload_and_goes_on_without(
    client: TestClient, alice: tuple[int, dict[str, str]], make_user: MakeUser
) -> None:
    user_id, _h = alice
    chat = Chat(client.app, user_id)
    t = chat("train resnet18 on pets for 2 epochs using my weights")
    assert "You have not uploaded weights for resnet18" in t.reply and "POST /api/v1/weights/mine" in t.reply
    assert t.state == "confirming" and t.intent.get("init_weights") is None
    assert "- weights: pretrained" in t.reply or "- weights: from scratch" in t.reply

    ko = Chat(client.app, user_id)
    t = ko("내 가중치로 pets 에 resnet18 2 에폭 학습")
    assert "resnet18에 쓸 올린 가중치가 없어" in t.reply

    # someone else's upload id is "not found", like one that does not exist
    _, other = make_user()
    theirs = upload(client, other, "theirs.safetensors", 9)
    t = Chat(client.app, user_id)(f"train resnet18 on pets for 2 epochs with my weights #{theirs['id']}")
    assert f"Your weights #{theirs['id']} were not found" in t.reply and "theirs.safetensors" not in t.reply


def test_what_weights_do_i_have_lists_them(client: TestClient, alice: tuple[int, dict[str, str]]) -> None:
    user_id, h = alice
    chat = Chat(client.app, user_id)
    assert "You have not uploaded any weights" in chat("what are my weights?").reply
    w = upload(client, h, "mine.safetensors", 4)
    t = chat("list my weights")
    assert f"#{w['id']} mine.safetensors (resnet18" in t.reply and t.state == "idle"
    assert "mine.safetensors" in chat("내 가중치 목록 보여줘").reply
