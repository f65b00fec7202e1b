"""Inference in the dialogue without real models: a fake InferenceService stands in for the worker
pools (the real ones are in tests/web/test_chat_inference.py). Routing of "test it on this image" /
"run a test on digits with job N" / "export it to ONNX" (English and Korean), the replies for each
task, jobs that are not ready, another user's job, no image, and the LLM tools."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from agent import replies as R
from agent.chat import ChatTurn, decode_image, handle_message
from agent.toolkit import InferenceScope, build_tools, tool_names
from tests.agent.chat_helpers import fake_trainer_settings, seed_datasets, tool_context
from tests.conftest import MakeUser
from tools.db.models import ChatMessage, Job, JobCheckpoint
from tools.errors import InvalidInputError
from tools.inference import InferenceConfig
from web.config import Settings


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return fake_trainer_settings(db_url, tmp_path)


@pytest.fixture(autouse=True)
def _no_trainer_outlives_its_test(client: TestClient) -> Any:
    yield
    client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]


def png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 30)).save(buf, format="PNG")
    return buf.getvalue()


CLASSIFY = {
    "task_type": "image_classification",
    "predictions": [
        {"label": "seven", "class_id": 7, "confidence": 0.91},
        {"label": "one", "class_id": 1, "confidence": 0.05},
        {"label": "two", "class_id": 2, "confidence": 0.02},
        {"label": "three", "class_id": 3, "confidence": 0.01},
    ],
    "predicted_label": "seven",
    "confidence": 0.91,
    "image": {"width": 32, "height": 32},
    "inference_time_ms": 3.5,
}
DETECT = {
    "task_type": "object_detection",
    "predictions": [
        {"label": "circle", "class_id": 0, "confidence": 0.6, "box": [1, 2, 10, 12]},
        {"label": "square", "class_id": 1, "confidence": 0.9, "box": [20, 20, 40, 41]},
        {"label": "circle", "class_id": 0, "confidence": 0.8, "box": [5, 5, 15, 15]},
    ],
    "image": {"width": 64, "height": 64},
    "inference_time_ms": 7.0,
}


class FakeService:
    """What `tools.inference` calls on an InferenceService, answering canned results."""

    def __init__(self, tmp: Path, result: dict[str, Any]) -> None:
        self.config = InferenceConfig(cache_dir=tmp / "inference")
        self.tmp = tmp
        self.result = result
        self.images: list[bytes] = []
        self.submitted: list[int] = []
        self.exports = 0
        self.formats: list[str] = []

    def checkpoint_path(self, job: Any, ckpt: Any) -> Path:
        p = self.tmp / f"job{job.id}-{ckpt.name}"
        p.write_bytes(b"weights")
        return p

    def predict(self, framework: str, key: str, path: Path, images: list[bytes], **kw: Any) -> Any:
        self.images.extend(images)
        return [dict(self.result)], {"model": {"framework": framework, "model_name": "resnet18"}}

    def export(
        self, framework: str, key: str, path: Path, dest: Path, sample: Any, fmt: str = "onnx"
    ) -> dict[str, Any]:
        self.exports += 1
        self.formats.append(fmt)
        dest.write_bytes(fmt.encode() * 100)
        return {"parity": {"max_abs_diff": 2.5e-6, "tolerance": 1e-3, "ok": True}, "outputs": ["logits"]}

    def submit_test_run(self, run_id: int) -> None:
        self.submitted.append(run_id)


def make_job(app: Any, owner_id: int, *, status: str = "completed", dataset_id: str | None = None) -> int:
    with app.state.session_factory() as db:
        job = Job(
            owner_id=owner_id,
            framework="timm",
            model_name="resnet18",
            task_type="image_classification",
            status=status,
            dataset_id=dataset_id,
        )
        db.add(job)
        db.commit()
        if status == "completed":
            db.add(JobCheckpoint(job_id=job.id, name="best.pt", key=f"k/{job.id}/best.pt", size=7, epoch=1))
            db.commit()
        return int(job.id)


class Chat:
    def __init__(self, app: Any, user_id: int, service: FakeService | None) -> None:
        self.app = app
        self.user_id = user_id
        self.service = service
        self.session_id: str | None = None

    def __call__(self, message: str, image: bytes | None = None, name: str | None = None) -> ChatTurn:
        getter: Callable[[], Any] | None = (lambda: self.service) if self.service is not None else None
        with tool_context(self.app, self.user_id) as ctx:
            turn = handle_message(ctx, self.session_id, message, image=image, image_name=name, inference=getter)
        self.session_id = turn.session_id
        return turn


@pytest.fixture
def alice(client: TestClient, make_user: MakeUser) -> int:
    user, headers = make_user()
    seed_datasets(client, headers)
    return int(user["id"])


def dataset_id(client: TestClient, headers: dict[str, str], name: str) -> str:
    body = client.get("/api/v1/datasets", headers=headers, params={"q": name}).json()
    items = body["items"] if isinstance(body, dict) else body
    return str(next(d["id"] for d in items if d["name"] == name))


def test_image_prediction_in_both_languages(client: TestClient, alice: int, tmp_path: Path) -> None:
    app: Any = client.app
    job = make_job(app, alice)
    service = FakeService(tmp_path, CLASSIFY)
    chat = Chat(app, alice, service)
    t = chat(f"test job {job} on this image", png(), "seven.png")
    assert t.summary is not None and t.summary["inference"]["predicted_label"] == "seven"
    assert t.job_id == job and "seven (91.0%)" in t.reply and "one 5.0%" in t.reply and "three" not in t.reply
    assert "seven.png" in t.reply and len(service.images) == 1
    # the chat remembers the job: the next image needs no number; Korean reply
    ko = chat("이 이미지로 테스트해줘", png())
    assert ko.language == "ko" and "가장 가능성이 높은 것은 seven" in ko.reply and ko.job_id == job
    with app.state.session_factory() as db:
        msgs = db.query(ChatMessage).filter(ChatMessage.session_id == chat.session_id).order_by(ChatMessage.id).all()
        assert msgs[0].data == {"image": {"name": "seven.png", "bytes": len(png())}}
        assert msgs[1].data["summary"]["inference"]["predicted_label"] == "seven"

    det = Chat(app, alice, FakeService(tmp_path, DETECT))
    d = det(f"what is in this picture? job {job}", png())
    assert "3 found" in d.reply and "circle x2, square x1" in d.reply
    assert d.reply.index("square 90.0% [20, 20, 40, 41]") < d.reply.index("circle 80.0%")


def test_no_image_not_ready_and_other_users_job(
    client: TestClient, alice: int, make_user: MakeUser, tmp_path: Path
) -> None:
    app: Any = client.app
    service = FakeService(tmp_path, CLASSIFY)
    job = make_job(app, alice)
    chat = Chat(app, alice, service)
    how = chat(f"test job {job} on this image")
    assert "attach an image" in how.reply and "image_base64" in how.reply and not service.images
    assert "이미지를 첨부하세요" in chat("이 이미지로 테스트해줘").reply

    running = make_job(app, alice, status="running")
    r = chat(f"test job {running} on this image", png())
    assert f"job {running} is running: inference needs a finished job" in r.reply and not service.images

    bob, _ = make_user()
    bobs = make_job(app, int(bob["id"]))
    for msg, img in (
        (f"test job {bobs} on this image", png()),
        (f"export job {bobs} to ONNX", None),
        (f"run a test on pets with job {bobs}", None),
    ):
        assert chat(msg, img).reply == f"Job {bobs} not found."
    assert not service.images and not service.submitted and service.exports == 0

    bad = chat(f"test job {job} on this image", b"not an image at all")
    assert "not an image" in bad.reply


def test_test_run_and_export(client: TestClient, make_user: MakeUser, tmp_path: Path) -> None:
    app: Any = client.app
    user, headers = make_user()
    seed_datasets(client, headers)
    uid = int(user["id"])
    pets = dataset_id(client, headers, "pets")
    job = make_job(app, uid, dataset_id=pets)
    service = FakeService(tmp_path, CLASSIFY)
    chat = Chat(app, uid, service)

    t = chat(f"run a test on fruit with job {job}")
    run = t.summary["test_run"] if t.summary else {}
    assert run["dataset_id"] == dataset_id(client, headers, "fruit") and service.submitted == [run["id"]]
    assert f"test run {run['id']}" in t.reply and "fruit" in t.reply and "progress" in t.reply
    status = chat("how is the test going?")
    assert f"Test run {run['id']}" in status.reply and "0/" in status.reply

    ko = chat(f"job {job} 모델로 테스트 데이터셋 돌려줘")  # "테스트" is not a dataset name: the job's own
    run2 = ko.summary["test_run"] if ko.summary else {}
    assert run2["dataset_id"] == pets and f"{run2['id']}번" in ko.reply and "pets" in ko.reply
    missing = chat(f"run a test on nosuchdata with job {job}")
    assert "nosuchdata" in missing.reply and len(service.submitted) == 2

    e = chat("export it to ONNX")
    rec = e.summary["export"] if e.summary else {}
    assert rec["status"] == "completed" and rec["parity"]["max_abs_diff"] == 2.5e-6
    # the link in the reply opens in a browser: signed, no bearer token needed
    url = rec["link"]["url"]
    assert "max abs diff 2.5e-06" in e.reply and url.startswith("/api/v1/dl/") and url in e.reply
    got = client.get(url)
    assert got.status_code == 200 and got.content == b"onnx" * 100
    assert got.headers["content-disposition"] == f'attachment; filename="job-{job}-{rec["checkpoint"]}.onnx"'
    ko_e = chat("ONNX로 내보내줘")
    assert "ONNX로 내보냈습니다" in ko_e.reply and service.exports == 1  # the same checkpoint: reused


def test_chat_exports_torchscript_and_openvino_and_explains_other_formats(
    client: TestClient, make_user: MakeUser, tmp_path: Path
) -> None:
    app: Any = client.app
    user, _ = make_user()
    uid = int(user["id"])
    job = make_job(app, uid)
    service = FakeService(tmp_path, CLASSIFY)
    chat = Chat(app, uid, service)

    ts = chat(f"export job {job} to torchscript")
    rec = ts.summary["export"] if ts.summary else {}
    assert rec["format"] == "torchscript" and rec["status"] == "completed" and service.formats == ["torchscript"]
    assert "to TorchScript" in ts.reply and "max abs diff 2.5e-06" in ts.reply
    got = client.get(rec["link"]["url"])
    assert got.status_code == 200 and got.content == b"torchscript" * 100
    assert got.headers["content-disposition"] == f'attachment; filename="job-{job}-{rec["checkpoint"]}.torchscript"'

    ko = chat(f"{job}번 작업 토치스크립트로 내보내기")
    assert "TorchScript로 내보냈습니다" in ko.reply and service.formats == ["torchscript"]  # reused

    ov = chat(f"job {job} openvino로 변환해줘")
    rec = ov.summary["export"] if ov.summary else {}
    assert rec["format"] == "openvino" and service.formats == ["torchscript", "openvino"]
    assert "OpenVINO로 내보냈습니다" in ov.reply
    got = client.get(rec["link"]["url"])
    assert got.headers["content-type"] == "application/zip"
    assert got.headers["content-disposition"].endswith(f'job-{job}-{rec["checkpoint"]}_openvino_model.zip"')

    bad = chat(f"export job {job} to tflite")
    assert "'tflite'" in bad.reply and "onnx, torchscript, openvino" in bad.reply
    assert service.formats == ["torchscript", "openvino"]  # nothing was exported


def test_llm_tools_use_the_turns_image_and_service(client: TestClient, alice: int, tmp_path: Path) -> None:
    names = tool_names()
    assert {"predict_image", "start_test_run", "test_run_status", "export_onnx"} <= set(names)
    job = make_job(client.app, alice)
    service = FakeService(tmp_path, CLASSIFY)
    with tool_context(client.app, alice) as ctx:
        tools = {t.name: t for t in build_tools(ctx)}
        assert [t for t in names if t not in tools] == []
        outside = json.loads(tools["export_onnx"].invoke({"job_id": job}))
        assert "not available" in outside["error"]
        scope = InferenceScope(lambda: service, png())  # type: ignore[arg-type,return-value]
        tools = {t.name: t for t in build_tools(ctx, scope)}  # the turn's image and service, passed explicitly
        got = json.loads(tools["predict_image"].invoke({}))  # the newest completed job
        assert got["predicted_label"] == "seven" and got["job_id"] == job
        assert json.loads(tools["predict_image"].invoke({"job_id": 999999}))["error_type"] == "NotFoundError"
        exported = json.loads(tools["export_onnx"].invoke({"job_id": job}))
        assert exported["parity"]["ok"] is True
        signed = client.get(exported["link"]["url"])  # what the model is told to give: opens without a token
        assert signed.status_code == 200 and signed.content == b"onnx" * 100
        ts = json.loads(tools["export_onnx"].invoke({"job_id": job, "format": "torchscript"}))
        assert ts["format"] == "torchscript" and service.formats == ["onnx", "torchscript"]
        assert client.get(ts["link"]["url"]).content == b"torchscript" * 100
        no_image = InferenceScope(lambda: service)  # type: ignore[arg-type,return-value]
        tools = {t.name: t for t in build_tools(ctx, no_image)}
        assert "no image" in json.loads(tools["predict_image"].invoke({"job_id": job}))["error"]


def test_decode_image_and_reply_helpers() -> None:
    data = png()
    import base64

    b64 = base64.b64encode(data).decode()
    assert decode_image(b64) == data and decode_image("data:image/png;base64," + b64) == data
    assert decode_image(None) is None
    with pytest.raises(InvalidInputError):
        decode_image("***not base64***")
    assert R.predictions_text({"task_type": "object_detection", "predictions": []}, "en").startswith("nothing")
    assert R.size_text(2048) == "2.0 KB" and R.percent(0.5) == "50.0%"
