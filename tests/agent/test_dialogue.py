"""The deterministic dialogue (agent.dialogue through agent.chat.handle_message) against a real app
database: clarification one question at a time with concrete suggestions, confirmation summary,
yes/no, corrections, refusals, commands, permissions, persistence across a restart. Trainers are
a fake interpreter (jobs launch and stop, nothing trains); the real training is in
tests/web/test_chat_e2e.py. Runs on SQLite and, with TEST_DATABASE_URL, PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from agent.chat import ChatTurn, get_session, handle_message, list_sessions
from agent.dialogue import is_no, is_yes
from tests.agent.chat_helpers import fake_trainer_settings, seed_datasets, tool_context
from tests.conftest import MakeUser
from tests.live_server import classification_files, upload_dataset
from tools.db.models import ChatSession, Job
from tools.errors import NotFoundError
from web.config import Settings


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return fake_trainer_settings(db_url, tmp_path)


@pytest.fixture(autouse=True)
def _no_trainer_outlives_its_test(client: TestClient) -> Any:
    yield
    client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]


@pytest.fixture
def alice(client: TestClient, make_user: MakeUser) -> int:
    user, headers = make_user()
    seed_datasets(client, headers)
    return int(user["id"])


class Chat:
    """A conversation of one user; every turn runs in a fresh ToolContext (a new request)."""

    def __init__(self, app: Any, user_id: int) -> None:
        self.app = app
        self.user_id = user_id
        self.session_id: str | None = None
        self.turns: list[ChatTurn] = []

    def __call__(self, message: str) -> ChatTurn:
        with tool_context(self.app, self.user_id) as ctx:
            turn = handle_message(ctx, self.session_id, message)
        self.session_id = turn.session_id
        self.turns.append(turn)
        return turn


def jobs_of(app: Any, user_id: int) -> list[Job]:
    with app.state.session_factory() as db:
        return list(db.query(Job).filter(Job.owner_id == user_id).all())


# ------------------------------------------------------------------------------ happy path


def test_full_request_confirms_with_a_summary_then_yes_launches(client: TestClient, alice: int) -> None:
    chat = Chat(client.app, alice)
    t = chat("train resnet18 on pets for 3 epochs, image size 32")
    assert t.state == "confirming" and t.pending == "confirm"
    assert t.intent["model_name"] == "resnet18" and t.intent["dataset"] == "pets" and t.intent["epochs"] == 3
    s = t.summary
    assert s is not None
    assert s["model_name"] == "resnet18" and s["framework"] == "timm" and s["task_type"] == "image_classification"
    assert s["dataset"]["name"] == "pets" and s["dataset"]["num_images"] == 12
    assert s["epochs"] == 3 and s["image_size"] == 32 and s["snapshot"] == "taken at launch"
    assert s["preset_values"] and "opt" in s["preset_values"]  # framework settings resolved by the adapter
    assert s["estimated_duration_s"] > 0
    for word in ("resnet18", "timm", "pets", "snapshot will be taken at launch", "epochs: 3", "estimated duration"):
        assert word in t.reply
    assert t.suggestions == ["yes", "no"]
    assert jobs_of(client.app, alice) == []  # nothing starts before the yes

    t = chat("yes")
    assert t.state == "launched" and t.launched and t.job_id is not None
    job_rows = jobs_of(client.app, alice)
    assert [j.id for j in job_rows] == [t.job_id]
    assert job_rows[0].model_name == "resnet18" and job_rows[0].epochs == 3 and job_rows[0].snapshot_id
    assert f"job {t.job_id}" in t.reply.lower()
    with tool_context(client.app, alice) as ctx:
        row = ctx.db.get(ChatSession, t.session_id)
        assert row is not None and row.job_ids == [t.job_id]


def test_preset_is_resolved_into_hyperparameters(client: TestClient, alice: int) -> None:
    t = Chat(client.app, alice)("pets 데이터셋으로 resnet18 어려움 난이도로 5에폭 학습해줘")
    assert t.state == "confirming" and t.language == "ko"
    assert t.summary is not None and t.summary["preset"] == "advanced"
    # the timm adapter's advanced preset: AdamW, mixup 0.8, cutmix 1.0, EMA
    assert t.summary["preset_values"]["opt"] == "adamw"
    assert t.summary["preset_values"]["mixup_alpha"] == 0.8
    assert "프리셋 어려움" in t.reply and "스냅샷" in t.reply  # the difficulty word the user said


def test_yes_and_no_words() -> None:
    for w in (
        "예",
        "네",
        "응",
        "좋아",
        "시작",
        "yes",
        "y",
        "ok",
        "go",
        "네 시작해주세요",
        "Yes!",
        "좋아요",
        "시작해줘",
    ):
        assert is_yes(w.lower()), w
    for w in ("아니", "no", "cancel", "취소", "아니요", "No thanks"):
        assert is_no(w.lower()), w
    for w in ("진행 상황 알려줘", "how is it going?", "네트워크"):
        assert not is_yes(w), w


def test_no_cancels_and_nothing_starts(client: TestClient, alice: int) -> None:
    chat = Chat(client.app, alice)
    chat("train resnet18 on pets for 2 epochs")
    t = chat("아니")
    assert t.state == "idle" and t.intent["model_name"] is None
    assert "취소" in t.reply
    assert jobs_of(client.app, alice) == []


# --------------------------------------------------------------------------- clarification


def test_missing_dataset_suggests_datasets_with_the_named_classes(client: TestClient, alice: int) -> None:
    chat = Chat(client.app, alice)
    t = chat("train a cat/dog classifier")
    assert t.state == "collecting" and t.pending == "dataset"
    assert t.suggestions[0] == "pets" and "fruit" not in t.suggestions  # only datasets with cat or dog
    assert "cat/dog" in t.reply and "pets" in t.reply
    t = chat("1")  # a number picks a suggestion
    assert t.intent["dataset"] == "pets"
    assert t.pending == "model"


def test_korean_class_names_match_english_datasets(client: TestClient, alice: int) -> None:
    t = Chat(client.app, alice)("고양이랑 개 분류 모델 학습해줘")
    assert t.pending == "dataset" and t.suggestions[0] == "pets" and t.language == "ko"
    assert "어떤 데이터셋" in t.reply


def test_a_clicked_name_keeps_the_conversation_in_korean(client: TestClient, alice: int) -> None:
    chat = Chat(client.app, alice)
    chat("고양이랑 개 분류 모델 학습해줘")
    t = chat("pets")  # the suggestion's name, no Hangul in it
    assert t.intent["dataset"] == "pets" and t.language == "ko" and t.pending == "model"
    assert "모델" in t.reply
    t = chat("use resnet18 please")  # a sentence in English switches
    assert t.language == "en"


def test_missing_dataset_without_classes_lists_datasets_compatible_with_the_task(
    client: TestClient, alice: int, make_user: MakeUser
) -> None:
    _, bob_headers = make_user()
    upload_dataset(client, bob_headers, "bobs-private-pets", classification_files(8))
    t = Chat(client.app, alice)("train yolo11n for 5 epochs")
    assert t.pending == "dataset"
    assert t.suggestions == ["parcels"]  # the only detection-capable dataset alice can see
    assert "bobs-private-pets" not in t.reply


def test_one_question_at_a_time_in_order_dataset_model_epochs(client: TestClient, alice: int) -> None:
    chat = Chat(client.app, alice)
    t = chat("I want to train a model")
    assert t.pending == "dataset"
    t = chat("pets")  # a bare name answers the pending question
    assert t.pending == "model" and t.intent["dataset"] == "pets"
    # classification is implied by pets' labels, and the model question proposes the default with a reason
    assert "image classification" in t.reply and "resnet18" in t.reply and "default" in t.reply
    assert t.suggestions[0] == "resnet18"
    t = chat("yes")
    assert t.intent["model_name"] == "resnet18" and t.pending == "epochs"
    # the offered default fits the dataset and says why (tools.defaults)
    offered = int(t.suggestions[0])
    assert f"default is {offered} (" in t.reply and "training images" in t.reply and 10 <= offered <= 100
    t = chat("4")
    assert t.state == "confirming" and t.intent["epochs"] == 4


def test_default_epochs_accepted_and_marked_as_default(client: TestClient, alice: int) -> None:
    chat = Chat(client.app, alice)
    chat("resnet18 모델로 pets 학습")
    t = chat("기본값으로")
    assert t.summary is not None and t.summary["epochs_default"] is True
    chosen = t.summary["defaults"]
    assert t.state == "confirming" and t.intent["epochs"] == chosen["epochs"]["value"] and t.intent["preset"] is None
    assert "(기본값)" in t.reply
    # the confirmation says why each chosen value fits the data, in the user's language
    line = next(ln for ln in t.reply.splitlines() if ln.startswith("- 데이터에 맞춘 설정"))
    assert "학습 이미지" in line and f"에폭 {chosen['epochs']['value']}" in line
    assert f"이미지 크기 {chosen['image_size']['value']}" in line and f"배치 {chosen['batch_size']['value']}" in line


def test_task_question_when_the_dataset_serves_several_tasks(client: TestClient, alice: int) -> None:
    chat = Chat(client.app, alice)
    t = chat("train on parcels")
    # parcels has boxes: detection natively and classification after conversion -> detection implied
    assert t.pending == "model" and t.intent["task_type"] == "object_detection"
    assert t.suggestions[0] == "yolo11n"


# ----------------------------------------------------------------------------- corrections


def test_corrections_update_the_intent_and_reconfirm(client: TestClient, alice: int) -> None:
    chat = Chat(client.app, alice)
    chat("train resnet18 on pets for 2 epochs")
    t = chat("에폭은 30으로")
    assert t.state == "confirming" and t.intent["epochs"] == 30 and t.summary and t.summary["epochs"] == 30
    assert "변경했습니다" in t.reply and "에폭: 30" in t.reply
    t = chat("use resnet34 instead")
    assert t.state == "confirming" and t.intent["model_name"] == "resnet34" and t.intent["epochs"] == 30
    t = chat("데이터셋은 fruit로")
    assert t.state == "confirming" and t.intent["dataset"] == "fruit" and t.summary
    assert t.summary["dataset"]["name"] == "fruit"
    t = chat("yes")
    assert t.launched
    (job,) = jobs_of(client.app, alice)
    assert (job.model_name, job.epochs, job.dataset_name) == ("resnet34", 30, "fruit")


def test_switching_to_a_detection_model_on_a_classification_dataset_is_refused_with_the_reason(
    client: TestClient, alice: int
) -> None:
    chat = Chat(client.app, alice)
    chat("train resnet18 on pets for 2 epochs")
    t = chat("use yolo11s instead")
    assert t.intent["model_name"] == "yolo11s" and t.intent["task_type"] == "object_detection"
    assert t.state == "collecting" and t.pending == "fix_compat"
    assert "can't train object detection" in t.reply and "parcels" in t.suggestions
    t = chat("parcels")
    assert t.state == "confirming" and t.intent["dataset"] == "parcels" and t.intent["model_name"] == "yolo11s"


# ------------------------------------------------------------------------------- refusals


def test_incompatible_task_shows_the_compatibility_reason(client: TestClient, alice: int) -> None:
    t = Chat(client.app, alice)("train yolo11n detection on pets for 3 epochs")
    assert t.state == "collecting" and t.pending == "fix_compat"
    assert "pets can't train object detection" in t.reply
    assert "image-level labels" in t.reply  # contract 3's reason, a sentence a person understands
    assert jobs_of(client.app, alice) == []


def test_another_users_private_dataset_is_not_found_like_rest(
    client: TestClient, alice: int, make_user: MakeUser
) -> None:
    bob, bob_headers = make_user()
    upload_dataset(client, bob_headers, "bob-secret", classification_files(8))
    t = Chat(client.app, alice)("train resnet18 on bob-secret for 2 epochs")
    assert t.state == "collecting" and t.pending == "dataset" and t.intent["dataset"] is None
    assert "can't find a dataset named 'bob-secret'" in t.reply
    assert "bob-secret" not in t.suggestions
    # the same answer as REST: 404 for alice
    with tool_context(client.app, alice) as ctx:
        from tools.datasets import resolve_dataset

        with pytest.raises(NotFoundError):
            resolve_dataset(ctx, "bob-secret")
    # and bob himself may use it
    t = Chat(client.app, int(bob["id"]))("train resnet18 on bob-secret for 2 epochs")
    assert t.state == "confirming"


def test_compatibility_question(client: TestClient, alice: int) -> None:
    chat = Chat(client.app, alice)
    t = chat("can I train detection on pets?")
    assert t.summary and t.summary["compatibility"]["status"] == "incompatible"
    assert t.reply.startswith("No: pets can't train object detection.")
    t = chat("parcels로 분류 학습 가능해?")
    assert t.summary and t.summary["compatibility"]["status"] == "convertible"
    # the particle resolved and the reason in Korean (composed from the dataset's labels)
    assert t.reply.startswith("네, parcels로 이미지 분류 학습이 가능합니다") and "변환" in t.reply
    assert "has" not in t.reply and "(으)" not in t.reply
    assert t.state == "idle"


# ------------------------------------------------------------------------------- commands


def test_lists_datasets_and_models_and_help_keeping_the_pending_question(client: TestClient, alice: int) -> None:
    chat = Chat(client.app, alice)
    chat("train resnet18 for 2 epochs")
    t = chat("what datasets do I have?")
    assert {"pets", "fruit", "parcels"} <= set(t.suggestions) and "Datasets you can use (3)" in t.reply
    assert "Still waiting for your answer" in t.reply and t.pending == "dataset"
    t = chat("쓸 수 있는 모델 알려줘")
    assert "resnet18*" in t.reply and "yolo11n*" in t.reply and "객체 탐지" in t.reply
    t = chat("help")
    assert "how is it going?" in t.reply
    t = chat("pets")
    assert t.state == "confirming"  # the request went on where it was


def test_job_commands_progress_metrics_stop_resume(client: TestClient, alice: int, make_user: MakeUser) -> None:
    chat = Chat(client.app, alice)
    t = chat("how is it going?")
    assert "has not started a job" in t.reply
    chat("train resnet18 on pets for 2 epochs")
    job_id = chat("yes").job_id
    assert job_id is not None
    t = chat("how is it going?")
    assert t.job_id == job_id and t.summary and t.summary["progress"]["job_id"] == job_id
    assert f"Job {job_id} (resnet18 on pets)" in t.reply and "epoch 0/2" in t.reply
    t = chat("지표 보여줘")
    assert f"{job_id}번 작업 지표" in t.reply and "아직 끝난 에폭이 없습니다" in t.reply
    t = chat("멈춰")
    assert f"{job_id}번 작업을 중지합니다" in t.reply
    t = chat(f"resume job {job_id}")
    # the fake trainer leaves no last.pt: the reason of the refusal is shown
    assert "Can't do that" in t.reply or "queued again" in t.reply
    t = chat("test it on this image")
    assert t.job_id == job_id and ("inference" in t.reply.lower())
    # another user cannot ask about alice's job
    bob, _ = make_user()
    t = Chat(client.app, int(bob["id"]))(f"how is job {job_id} going?")
    assert t.reply == f"Job {job_id} not found."


# ------------------------------------------------------------------- sessions and persistence


def test_sessions_are_private_and_listed(client: TestClient, alice: int, make_user: MakeUser) -> None:
    chat = Chat(client.app, alice)
    chat("train resnet18 on pets")
    bob, _ = make_user()
    with tool_context(client.app, int(bob["id"])) as ctx:
        with pytest.raises(NotFoundError):
            handle_message(ctx, chat.session_id, "yes")
        with pytest.raises(NotFoundError):
            get_session(ctx, str(chat.session_id))
        assert list_sessions(ctx)["total"] == 0
    with tool_context(client.app, alice) as ctx:
        listed = list_sessions(ctx)
        assert [s["id"] for s in listed["items"]] == [chat.session_id]
        full = get_session(ctx, str(chat.session_id))
        assert [m["role"] for m in full["messages"]] == ["user", "assistant"]
        assert full["messages"][1]["data"]["pending"] == "epochs"


def test_a_restart_mid_dialogue_continues(settings: Settings, client: TestClient, alice: int) -> None:
    from web.main import create_app

    chat = Chat(client.app, alice)
    chat("train a cat/dog classifier")
    chat("pets")
    client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]
    client.__exit__(None, None, None)  # the server stops mid-dialogue

    app2 = create_app(settings)
    with TestClient(app2):
        chat.app = app2
        t = chat("resnet18")
        assert t.pending == "epochs" and t.intent["dataset"] == "pets" and t.intent["class_names"] == ["cat", "dog"]
        t = chat("3")
        assert t.state == "confirming"
        t = chat("네")
        assert t.launched and t.language == "ko"
        app2.state.supervisor.kill_all()
    client.__enter__()  # let the fixture's teardown run on a live client
