"""Inference over HTTP: single images (JSON and rendered PNG), bad input, permissions, ONNX export
and download, batch test runs over a dataset and an uploaded zip with metrics and events.

Completed jobs are made directly in the database (Job + JobCheckpoint rows) with the checkpoint
files of tiny real models put into the internal store under their keys."""

from __future__ import annotations

import io
import json
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from tests.conftest import MakeUser
from tests.inference_models import TrainedModel, models_root, trained_model

pytest.importorskip("timm")
pytest.importorskip("ultralytics")
pytestmark = pytest.mark.slow

API = "/api/v1"


@pytest.fixture(autouse=True)
def _inference_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VTA_INFERENCE_DEVICE", "cpu")
    monkeypatch.setenv("VTA_INFERENCE_THREADS", "1")
    monkeypatch.setenv("VTA_INFERENCE_MAX_PIXELS", "1000000")
    monkeypatch.setenv("VTA_INFERENCE_REQUEST_TIMEOUT_S", "120")


@pytest.fixture(scope="module")
def timm_m(request: pytest.FixtureRequest) -> TrainedModel:
    root = models_root(request.config)
    return trained_model("timm-digits", root, root / "demo")


@pytest.fixture(scope="module")
def det_m(request: pytest.FixtureRequest) -> TrainedModel:
    root = models_root(request.config)
    return trained_model("yolo-detect", root, root / "demo")


@pytest.fixture(scope="module")
def pose_m(request: pytest.FixtureRequest) -> TrainedModel:
    root = models_root(request.config)
    return trained_model("yolo-pose", root, root / "demo")


def _png(size: tuple[int, int] = (32, 32), color: tuple[int, int, int] = (120, 120, 120)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def make_job(
    app: FastAPI,
    owner_id: int,
    m: TrainedModel,
    *,
    status: str = "completed",
    checkpoints: tuple[str, ...] = ("best", "last"),
    upload: bool = True,
    dataset_id: str | None = None,
) -> int:
    from tools.db.models import Job, JobCheckpoint
    from trainer_runtime.storage import checkpoint_key

    storage = app.state.storage
    with app.state.session_factory() as db:
        job = Job(
            owner_id=owner_id,
            framework=m.framework,
            model_name=m.model_name,
            task_type=m.task_type,
            status=status,
            dataset_id=dataset_id,
            metrics=dict(m.metrics),
        )
        db.add(job)
        db.commit()
        for name in checkpoints:
            src = m.best if name == "best" else m.last
            key = checkpoint_key(job.id, None, f"{name}.pt")
            info = storage.internal.put_file(key, src) if upload else None
            db.add(
                JobCheckpoint(
                    job_id=job.id,
                    name=f"{name}.pt",
                    key=key,
                    size=src.stat().st_size,
                    sha256=info.sha256 if info else None,
                    epoch=1,
                )
            )
        db.commit()
        return int(job.id)


def _infer(client: TestClient, job_id: int, headers: dict[str, str], data: bytes | None = None, **form: Any) -> Any:
    files = {"file": ("x.png", data, "image/png")} if data is not None else None
    params = {"render": "true"} if form.pop("render", False) else None
    return client.post(f"{API}/jobs/{job_id}/inference", headers=headers, files=files, data=form, params=params)


def _user_id(user: dict[str, Any]) -> int:
    return int(user["id"])


def test_single_image_json_png_and_errors(
    client: TestClient, app: FastAPI, make_user: MakeUser, timm_m: TrainedModel
) -> None:
    user, headers = make_user()
    job = make_job(app, _user_id(user), timm_m)
    image = (sorted((timm_m.dataset_dir / "images").rglob("*.png"))[0]).read_bytes()

    r = _infer(client, job, headers, image)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["task_type"] == "image_classification" and body["checkpoint"] == "best.pt" and body["job_id"] == job
    assert len(body["predictions"]) == 5 and body["predicted_label"] in timm_m.class_names
    assert body["image"] == {"width": 32, "height": 32} and body["model"]["framework"] == "timm"
    for k in ("inference_time_ms", "preprocessing_time_ms", "postprocessing_time_ms"):
        assert body[k] >= 0
    last = _infer(client, job, headers, image, checkpoint="last")
    assert last.status_code == 200 and last.json()["checkpoint"] == "last.pt"

    png = _infer(client, job, headers, image, render=True)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(png.content)) as im:
        assert im.format == "PNG"

    bad = _infer(client, job, headers, b"this is not an image")
    assert bad.status_code == 422 and "not an image" in bad.json()["detail"]
    whole = _png((64, 64))
    corrupt = _infer(client, job, headers, whole[: len(whole) // 2])
    assert corrupt.status_code == 422, corrupt.text
    huge = _infer(client, job, headers, _png((1200, 1000)))
    assert huge.status_code == 413 and "over the limit" in huge.json()["detail"]
    assert _infer(client, job, headers).status_code == 422  # neither file nor dataset_image_id
    assert _infer(client, job, headers, image, conf="2").status_code == 422
    assert _infer(client, job, headers, image, checkpoint="middle").status_code == 422


def test_job_states_and_permissions(
    client: TestClient, app: FastAPI, make_user: MakeUser, timm_m: TrainedModel
) -> None:
    user, headers = make_user()
    _, other = make_user()
    uid = _user_id(user)
    image = _png()
    job = make_job(app, uid, timm_m)
    assert _infer(client, job, other, image).status_code == 404
    assert _infer(client, 999999, headers, image).status_code == 404
    assert client.post(f"{API}/jobs/{job}/export", headers=other, json={"format": "onnx"}).status_code == 404
    assert _infer(client, job, {}, image).status_code == 401

    running = make_job(app, uid, timm_m, status="running")
    r = _infer(client, running, headers, image)
    assert r.status_code == 409 and "running" in r.json()["detail"]
    bare = make_job(app, uid, timm_m, checkpoints=())
    r = _infer(client, bare, headers, image)
    assert r.status_code == 409 and "no checkpoints" in r.json()["detail"]
    only_last = make_job(app, uid, timm_m, checkpoints=("last",))
    assert _infer(client, only_last, headers, image).json()["checkpoint"] == "last.pt"
    assert _infer(client, only_last, headers, image, checkpoint="best").status_code == 409
    # a stopped or failed job keeps what it uploaded: usable, and the answer names the file and the model
    for status in ("stopped", "failed"):
        ended = make_job(app, uid, timm_m, status=status, checkpoints=("last",))
        r = _infer(client, ended, headers, image)
        assert r.status_code == 200, r.text
        assert r.json()["checkpoint"] == "last.pt" and r.json()["model"]["model_name"] == timm_m.model_name
    missing = make_job(app, uid, timm_m, upload=False)
    r = _infer(client, missing, headers, image)
    assert r.status_code == 409 and f"checkpoints/test-jobs/job_{missing}/best.pt" in r.json()["detail"]
    assert r.json()["key"] == f"checkpoints/test-jobs/job_{missing}/best.pt"


def _dataset(app: FastAPI, owner_id: int, folder: Path, name: str, visibility: str = "private") -> str:
    from tools.context import ToolContext
    from tools.datasets import create_dataset, upload_path
    from tools.db.models import User

    with app.state.session_factory() as db:
        user = db.get(User, owner_id)
        ctx = ToolContext(db=db, user=user, storage=app.state.storage, work_dir=app.state.work_dir)
        ds = create_dataset(ctx, name, visibility=visibility)
        upload_path(ctx, ds.id, folder, format="dice")
        return ds.id


def _copy_subset(src: Path, dest: Path, names: list[str]) -> Path:
    """A real (not linked) DICE folder with the images `names` of `src`."""
    doc = json.loads((src / "annotations.json").read_text(encoding="utf-8"))
    keep = [img for img in doc["images"] if img["file_name"] in set(names)]
    ids = {img["id"] for img in keep}
    doc["images"] = keep
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] in ids]
    for img in keep:
        target = dest / "images" / img["file_name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / "images" / img["file_name"], target)
    (dest / "annotations.json").write_text(json.dumps(doc), encoding="utf-8")
    return dest


def _wait_run(client: TestClient, run_id: int, headers: dict[str, str], timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = client.get(f"{API}/test-runs/{run_id}", headers=headers)
        assert r.status_code == 200, r.text
        if r.json()["status"] in ("completed", "failed"):
            return dict(r.json())
        time.sleep(0.2)
    raise AssertionError(f"test run {run_id} did not finish")


def _sse_data(body: str) -> list[dict[str, Any]]:
    return [json.loads(x[6:]) for x in body.splitlines() if x.startswith("data: {") and x != "data: {}"]


def _ws_events(client: TestClient, url: str) -> tuple[list[dict[str, Any]], int]:
    """Every event a WebSocket stream sends (pings left out) until the server closes it, and the code."""
    events = []
    with client.websocket_connect(url) as ws, pytest.raises(WebSocketDisconnect) as closed:
        while True:
            msg = json.loads(ws.receive_text())
            if msg["type"] != "ping":
                events.append(msg)
    return events, closed.value.code


def _check_streams(
    client: TestClient, run_id: int, headers: dict[str, str], other: dict[str, str], events: list[dict[str, Any]]
) -> None:
    """SSE and WebSocket replay of a finished test run: every stored event once, in order, then the end."""
    token = headers["Authorization"].split()[1]
    with client.stream("GET", f"{API}/test-runs/{run_id}/stream", headers=headers) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        body = "".join(r.iter_text())
    assert _sse_data(body) == events and body.rstrip().endswith("event: end\ndata: {}")
    r = client.get(f"{API}/test-runs/{run_id}/stream", params={"token": token, "after": events[-1]["seq"]})
    assert r.status_code == 204  # finished, nothing new: EventSource stops
    resumed = {**headers, "Last-Event-ID": str(events[-3]["seq"])}
    tail = client.get(f"{API}/test-runs/{run_id}/stream", headers=resumed)
    assert [e["seq"] for e in _sse_data(tail.text)] == [e["seq"] for e in events[-2:]]
    assert client.get(f"{API}/test-runs/{run_id}/stream", headers=other).status_code == 404
    assert client.get(f"{API}/test-runs/{run_id}/stream").status_code == 401
    got, code = _ws_events(client, f"/ws/test-runs/{run_id}?token={token}&after=1")
    assert got == events[1:] and code == 1000
    other_token = other["Authorization"].split()[1]
    with (
        client.websocket_connect(f"/ws/test-runs/{run_id}?token={other_token}") as ws,
        pytest.raises(WebSocketDisconnect) as closed,
    ):
        ws.receive_text()
    assert closed.value.code == 4404


def test_test_run_on_the_validation_images_reproduces_the_validation_accuracy(
    client: TestClient, app: FastAPI, make_user: MakeUser, timm_m: TrainedModel, tmp_path: Path
) -> None:
    from trainer_runtime.adapters._torch_data import build_classification_data
    from trainer_runtime.formats.validate import load_annotations

    user, headers = make_user()
    _, other = make_user()
    uid = _user_id(user)
    ds = load_annotations(timm_m.dataset_dir / "annotations.json")
    val = build_classification_data(ds, 0.2, 0).val  # the spec's defaults: val_fraction 0.2, seed 0
    folder = _copy_subset(timm_m.dataset_dir, tmp_path / "val", [name for name, _ in val])
    dataset_id = _dataset(app, uid, folder, "digits-val")
    job = make_job(app, uid, timm_m, dataset_id=dataset_id)

    r = client.post(
        f"{API}/test-runs", headers=headers, json={"job_id": job, "dataset_id": dataset_id, "checkpoint": "last"}
    )
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] in ("queued", "running", "completed") and run["channel"] == -run["id"]
    assert client.get(f"{API}/test-runs/{run['id']}", headers=other).status_code == 404
    done = _wait_run(client, run["id"], headers)
    assert done["status"] == "completed", done["error"]
    m = done["metrics"]
    assert done["progress"]["processed"] == len(val) == m["evaluated_images"]
    assert m["accuracy_top1"] == pytest.approx(timm_m.metrics["val/accuracy_top1"], abs=1e-6)
    assert m["accuracy_top5"] == pytest.approx(timm_m.metrics["val/accuracy_top5"], abs=1e-6)
    cm = m["confusion_matrix"]
    assert len(cm) == 10 and sum(map(sum, cm)) == len(val)
    assert len(m["per_class"]) == 10

    report = client.get(f"{API}/test-runs/{run['id']}/report", headers=headers)
    assert report.status_code == 200 and "attachment" in report.headers["content-disposition"]
    assert report.json()["metrics"]["accuracy_top1"] == m["accuracy_top1"]
    lines = client.get(f"{API}/test-runs/{run['id']}/predictions", headers=headers).text.strip().splitlines()
    assert len(lines) == len(val) and "ground_truth" in json.loads(lines[0])
    events = client.get(f"{API}/test-runs/{run['id']}/events", headers=headers).json()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "status" and events[0]["data"]["status"] == "running"
    assert events[-2]["type"] == "done" and any(e["type"] == "batch" for e in events)
    assert events[-1]["type"] == "status" and events[-1]["data"]["status"] == "completed"
    assert all(e["test_run_id"] == run["id"] and e["job_id"] == job for e in events)
    _check_streams(client, run["id"], headers, other, events)
    listed = client.get(f"{API}/test-runs", headers=headers, params={"job_id": job}).json()
    assert [x["id"] for x in listed] == [run["id"]]

    # single inference on a dataset image by id; another user's private dataset image is hidden
    image_id = client.get(f"{API}/datasets/{dataset_id}/images", headers=headers).json()
    first = (image_id["items"] if isinstance(image_id, dict) else image_id)[0]["id"]
    assert _infer(client, job, headers, dataset_image_id=str(first)).status_code == 200
    other_user_job = make_job(app, _user_id(client.get(f"{API}/auth/me", headers=other).json()), timm_m)
    assert _infer(client, other_user_job, other, dataset_image_id=str(first)).status_code == 404
    bad = client.post(f"{API}/test-runs", headers=headers, json={"job_id": job})
    assert bad.status_code == 422


def test_detection_test_run_from_an_uploaded_zip_and_pose_skeleton(
    client: TestClient, app: FastAPI, make_user: MakeUser, det_m: TrainedModel, pose_m: TrainedModel, tmp_path: Path
) -> None:
    user, headers = make_user()
    uid = _user_id(user)
    job = make_job(app, uid, det_m)
    names = [
        p.relative_to(det_m.dataset_dir / "images").as_posix() for p in (det_m.dataset_dir / "images").rglob("*.png")
    ]
    folder = _copy_subset(det_m.dataset_dir, tmp_path / "det", sorted(names)[:8])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in folder.rglob("*"):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
    r = client.post(
        f"{API}/test-runs/upload",
        headers=headers,
        data={"job_id": str(job)},
        files={"file": ("shapes.zip", buf.getvalue(), "application/zip")},
    )
    assert r.status_code == 201, r.text
    run_id = r.json()["id"]
    # watched live from its start: each event once, in order, through "done" and the final status
    token = headers["Authorization"].split()[1]
    live, code = _ws_events(client, f"/ws/test-runs/{run_id}?token={token}")
    assert code == 1000
    assert [e["seq"] for e in live] == list(range(1, len(live) + 1))
    assert [e["type"] for e in live[-2:]] == ["done", "status"] and live[-1]["data"]["status"] == "completed"
    assert live == client.get(f"{API}/test-runs/{run_id}/events", headers=headers).json()
    done = _wait_run(client, run_id, headers)
    assert done["status"] == "completed", done["error"]
    m = done["metrics"]
    assert m["evaluated_images"] == 8 and 0.0 <= m["box_mAP50-95"] <= m["box_mAP50"] <= 1.0
    assert set(m["per_class"]) <= set(det_m.class_names)

    rendered = _infer(
        client, job, headers, (folder / "images" / sorted(names)[0]).read_bytes(), conf="0.001", render=True
    )
    assert rendered.status_code == 200 and rendered.content[:8] == b"\x89PNG\r\n\x1a\n"

    pose_job = make_job(app, uid, pose_m)
    img = next((pose_m.dataset_dir / "images").rglob("*.png")).read_bytes()
    body = _infer(client, pose_job, headers, img, conf="0.001").json()
    assert body["task_type"] == "pose_estimation" and len(body["keypoint_names"]) == 11
    for p in body["predictions"]:
        assert len(p["keypoints"]) == 11


def test_onnx_export_and_download(client: TestClient, app: FastAPI, make_user: MakeUser, timm_m: TrainedModel) -> None:
    pytest.importorskip("onnxruntime")
    user, headers = make_user()
    _, other = make_user()
    job = make_job(app, _user_id(user), timm_m)
    r = client.post(f"{API}/jobs/{job}/export", headers=headers, json={"format": "onnx"})
    assert r.status_code == 201, r.text
    rec = r.json()
    assert rec["status"] == "completed" and rec["parity"]["ok"] and rec["parity"]["max_abs_diff"] < 1e-3
    assert rec["download_url"] == f"{API}/jobs/{job}/exports/{rec['id']}/download"
    data = client.get(rec["download_url"], headers=headers)
    assert data.status_code == 200 and len(data.content) == rec["size"] > 1000
    assert client.get(rec["download_url"], headers=other).status_code == 404
    again = client.post(f"{API}/jobs/{job}/export", headers=headers, json={"format": "onnx"}).json()
    assert again["id"] == rec["id"]  # the same checkpoint is not exported twice
    assert [e["id"] for e in client.get(f"{API}/jobs/{job}/exports", headers=headers).json()] == [rec["id"]]
    bad = client.post(f"{API}/jobs/{job}/export", headers=headers, json={"format": "tflite"})
    assert bad.status_code == 422 and bad.json()["location"]["field"] == "format"
    assert bad.json()["supported"] == ["onnx", "torchscript", "openvino"] and "'tflite'" in bad.json()["detail"]
    engine = client.post(f"{API}/jobs/{job}/export", headers=headers, json={"format": "engine"}).json()
    assert "NVIDIA GPU" in engine["detail"] and "onnx, torchscript, openvino" in engine["detail"]
    unknown = client.post(f"{API}/jobs/{job}/export", headers=headers, json={"format": "x" * 33})
    assert unknown.status_code == 422 and "format" in unknown.text


def test_torchscript_and_openvino_exports_download_with_their_parity(
    client: TestClient, app: FastAPI, make_user: MakeUser, timm_m: TrainedModel
) -> None:
    pytest.importorskip("openvino")
    user, headers = make_user()
    job = make_job(app, _user_id(user), timm_m)
    ts = client.post(f"{API}/jobs/{job}/export", headers=headers, json={"format": "TorchScript"})
    assert ts.status_code == 201, ts.text
    rec = ts.json()
    assert rec["format"] == "torchscript" and rec["status"] == "completed"
    assert rec["parity"]["ok"] and rec["parity"]["max_abs_diff"] < 1e-3 and rec["parity"]["images"] == 3
    assert rec["report"]["runtime"] == "torch.jit" and rec["key"].endswith(".torchscript")
    data = client.get(rec["download_url"], headers=headers)
    assert data.status_code == 200 and len(data.content) == rec["size"]
    assert data.headers["content-disposition"] == f'attachment; filename="job-{job}-best.torchscript"'
    import torch

    module = torch.jit.load(io.BytesIO(data.content))  # the downloaded file is a TorchScript archive
    assert module(torch.zeros(2, 3, 32, 32)).shape == (2, 10)

    ov = client.post(f"{API}/jobs/{job}/export", headers=headers, json={"format": "openvino"}).json()
    assert ov["status"] == "completed" and ov["parity"]["ok"] and ov["report"]["runtime"] == "openvino"
    # through a signed link (what the page and the chat open): a zip with the OpenVINO folder
    link = client.post(
        f"{API}/downloads", headers=headers, json={"job_id": job, "object": "export", "export_id": ov["id"]}
    ).json()
    got = client.get(link["path"])
    assert got.status_code == 200 and got.headers["content-type"] == "application/zip"
    assert got.headers["content-disposition"].endswith(f'filename="job-{job}-best_openvino_model.zip"')
    names = zipfile.ZipFile(io.BytesIO(got.content)).namelist()
    assert any(n.endswith("/model.xml") for n in names) and any(n.endswith("/model.bin") for n in names)
    listed = client.get(f"{API}/jobs/{job}/exports", headers=headers).json()
    assert [(e["format"], e["parity"]["ok"]) for e in listed] == [("torchscript", True), ("openvino", True)]


def test_route_cache_skips_the_database_but_not_the_token_and_forgets_deleted_jobs(
    client: TestClient, app: FastAPI, make_user: MakeUser, timm_m: TrainedModel
) -> None:
    from tools.db.models import User

    user, headers = make_user()
    _, other = make_user()
    job = make_job(app, _user_id(user), timm_m)
    first = _infer(client, job, headers, _png())
    assert first.status_code == 200, first.text
    routes = app.state.services.inference.routes
    hits = routes.hits
    again = _infer(client, job, headers, _png())
    assert again.status_code == 200 and routes.hits == hits + 1  # answered from the cache
    assert again.json()["predictions"] == first.json()["predictions"] and again.json()["checkpoint"] == "best.pt"
    # the cache is per token: another user's identical request still gets its 404
    assert _infer(client, job, other, _png()).status_code == 404
    # bad input on a cached route: the same 422 as on the full path
    assert _infer(client, job, headers, b"not an image").status_code == 422
    assert _infer(client, job, headers, _png(), conf="2").status_code == 422
    # the token is verified on every request, cached or not
    tampered = {"Authorization": headers["Authorization"][:-2] + "xx"}
    assert _infer(client, job, tampered, _png()).status_code == 401
    # a user deactivated meanwhile is refused once the entry is older than the TTL
    assert _infer(client, job, headers, _png()).status_code == 200
    with app.state.session_factory() as db:
        db.get(User, _user_id(user)).is_active = False  # type: ignore[union-attr]
        db.commit()
    routes.ttl_s = 0.3
    routes.clear()
    assert _infer(client, job, headers, _png()).status_code == 401
    with app.state.session_factory() as db:
        db.get(User, _user_id(user)).is_active = True  # type: ignore[union-attr]
        db.commit()
    assert _infer(client, job, headers, _png()).status_code == 200
    time.sleep(0.35)
    with app.state.session_factory() as db:
        db.get(User, _user_id(user)).is_active = False  # type: ignore[union-attr]
        db.commit()
    assert _infer(client, job, headers, _png()).status_code == 401  # expired entry: checked again
    with app.state.session_factory() as db:
        db.get(User, _user_id(user)).is_active = True  # type: ignore[union-attr]
        db.commit()
    routes.ttl_s = 60.0
    # deleting the job through the API drops its cached routes at once
    assert _infer(client, job, headers, _png()).status_code == 200
    assert client.delete(f"{API}/jobs/{job}", headers=headers).status_code == 204
    assert _infer(client, job, headers, _png()).status_code == 404
