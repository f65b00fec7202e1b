"""The chat says whether a model starts pretrained before launch (the confirmation's weights line,
English and Korean) and answers "is it pretrained?" / "사전학습 됐어?" for the pending request and
for a job."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.chat import ChatTurn, handle_message
from tests.agent.chat_helpers import fake_trainer_settings, seed_datasets, tool_context
from tests.conftest import MakeUser
from tools import weights as weights_tools
from web.config import Settings

SCRATCH_EN = (
    "from scratch: no pretrained weights are available here; expect low accuracy on small datasets "
    "(import weights with `vision-agent weights import FILE --model resnet18`)"
)


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return fake_trainer_settings(db_url, tmp_path)


@pytest.fixture(autouse=True)
def _cleanup(client: TestClient) -> Any:
    yield
    client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]


@pytest.fixture
def alice(client: TestClient, make_user: MakeUser) -> int:
    user, headers = make_user()
    seed_datasets(client, headers)
    return int(user["id"])


class Chat:
    def __init__(self, app: Any, user_id: int) -> None:
        self.app, self.user_id, self.session_id = app, user_id, None

    def __call__(self, message: str) -> ChatTurn:
        with tool_context(self.app, self.user_id) as ctx:
            turn = handle_message(ctx, self.session_id, message)
        self.session_id = turn.session_id  # type: ignore[assignment]
        return turn


def test_confirmation_says_pretrained_and_the_question_is_answered(client: TestClient, alice: int) -> None:
    chat = Chat(client.app, alice)
    t = chat("train resnet18 on pets for 2 epochs")
    assert t.state == "confirming"
    assert (
        "- weights: pretrained on ImageNet-1k (timm resnet18.a1_in1k); downloaded when the job starts, "
        "from scratch if that fails" in t.reply
    )
    assert t.summary is not None and t.summary["pretrained"]["source"] == "hub"
    assert f"- weights: {t.summary['pretrained_text']}" in t.reply  # the page's confirmation card shows it

    q = chat("is it pretrained?")
    assert q.reply.startswith("This request (resnet18): pretrained on ImageNet-1k (timm resnet18.a1_in1k)")
    assert q.state == "confirming"  # the question did not cancel or launch anything

    t = chat("yes")
    assert t.launched and t.job_id is not None
    q = chat(f"is job {t.job_id} pretrained?")
    assert q.reply.startswith(f"Job {t.job_id} (resnet18): pretrained on ImageNet-1k (timm resnet18.a1_in1k)")
    ko = chat(f"{t.job_id}번 작업 사전학습 됐어?")
    assert ko.reply.startswith(f"{t.job_id}번 작업 (resnet18): ImageNet-1k 사전학습 가중치 사용")


def test_confirmation_says_from_scratch_when_nothing_is_available(client: TestClient, alice: int) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    services.weights = weights_tools.WeightsPolicy(download="off")  # what the app's ToolContexts carry
    t = Chat(client.app, alice)("train resnet18 on pets for 2 epochs")
    assert f"- weights: {SCRATCH_EN}" in t.reply
    assert t.summary is not None and t.summary["pretrained"]["source"] == "scratch"
    ko = Chat(client.app, alice)("pets 데이터셋으로 resnet18 2에폭 학습해줘")
    assert "- 가중치: 처음부터 학습: 여기에는 사전학습 가중치가 없습니다" in ko.reply
    q = Chat(client.app, alice)
    q("train resnet18 on pets for 2 epochs")
    assert q("사전학습 됐어?").reply.startswith("이번 요청 (resnet18): 처음부터 학습")
