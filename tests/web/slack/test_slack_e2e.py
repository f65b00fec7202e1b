"""The Slack bot end to end with a REAL training job: the real server under uvicorn (built-in demo
datasets, the real trainer: timm resnet18 on `digits` at 32 px, 1 epoch), signed requests built
here, and the fake Slack Web API recording what the thread shows:

    /train link CODE -> mention "train resnet18 on digits ..." -> confirmation with buttons ->
    click Confirm -> "Started job N" + one progress message, updated by chat.update while the job
    runs -> final state -> summary with the best checkpoint's metrics and the chart PNG
    (files.getUploadURLExternal + upload + files.completeUploadExternal) -> "test it" with a digit
    image attached (downloaded from url_private with the bot token) -> the rendered prediction
    uploaded into the thread.

The recorded thread is written to `<tmp>/slack-thread.txt` (its path is printed; run with -s).
SQLite only (it trains for real); the bot's paths also run on PostgreSQL in test_slack_bot.py.
"""

from __future__ import annotations

import io
import itertools
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings
from tests.live_server import API, LiveServer, free_port, get_job, register
from tests.web.slack.fake_slack import FakeSlack
from tests.web.slack.slack_helpers import ACK_GUARD_S, CHANNEL, SECRET, TOKEN, SlackSender
from web.main import create_app

pytest.importorskip("timm")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture
def server(tmp_path: Path, fake_slack: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> Iterator[LiveServer]:
    monkeypatch.setenv("VTA_INFERENCE_DEVICE", "cpu")
    monkeypatch.setenv("VTA_INFERENCE_THREADS", "1")
    monkeypatch.setenv("VTA_INFERENCE_REQUEST_TIMEOUT_S", "180")
    port = free_port()
    settings = make_settings(
        f"sqlite:///{tmp_path / 'app.db'}",
        tmp_path,
        create_demo_datasets=True,
        callback_base_url=f"http://127.0.0.1:{port}",
        max_concurrent_jobs=1,
        slack={
            "bot_token": TOKEN,
            "signing_secret": SECRET,
            "api_base_url": fake_slack.api_url,
            "progress_interval_s": 1.0,
        },
    )
    with LiveServer(create_app(settings), port) as srv:
        yield srv
        srv.app.state.supervisor.kill_all()


def digit_png(index: int = 3) -> tuple[bytes, int]:
    """A digit from scikit-learn's set drawn like the demo dataset (32x32, dark on light)."""
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    v = 255 - (np.asarray(digits.images[index]) * 255.0 / 16.0).round().clip(0, 255).astype(np.uint8)
    big = np.kron(v, np.ones((4, 4), dtype=np.uint8))
    buf = io.BytesIO()
    Image.fromarray(np.repeat(big[..., None], 3, axis=2)).save(buf, "PNG")
    return buf.getvalue(), int(digits.target[index])


def blocks_text(m: dict[str, Any]) -> str:
    return json.dumps(m.get("blocks") or [], ensure_ascii=False)


def test_slack_thread_with_a_real_training_job(server: LiveServer, fake_slack: FakeSlack, tmp_path: Path) -> None:
    client = server.client()
    headers = register(client, "alice@example.com")
    sender = SlackSender(client)

    # link the Slack user with a one-time code from the web side
    code = client.post(f"{API}/slack/link", headers=headers).json()["code"]
    assert (
        sender.command(f"link {code}", user="UALICE", response_url=fake_slack.response_url("link")).status_code == 200
    )
    linked = fake_slack.wait(lambda: fake_slack.calls_of("response_url"), 30, "the link answer")
    assert "alice@example.com" in linked[0]["params"]["text"]

    # the request in a channel: a confirmation with buttons in the thread
    started = time.perf_counter()
    resp, root = sender.mention("train resnet18 on digits for 1 epoch, image size 32", user="UALICE")
    assert resp.status_code == 200 and time.perf_counter() - started < ACK_GUARD_S

    def confirmation() -> dict[str, Any] | None:
        with fake_slack.cond:
            return next(
                (m for m in fake_slack.messages if m.get("thread_ts") == root and "actions" in blocks_text(m)), None
            )

    c = fake_slack.wait(confirmation, 60, "the confirmation")
    assert "digits" in c["text"] and "resnet18" in c["text"] and "epochs: 1" in c["text"] and "32" in c["text"]
    assert '"Confirm"' in blocks_text(c) and '"Change"' in blocks_text(c)

    # Confirm: the buttons go, the job starts, one progress message appears
    assert (
        sender.click(c, "vta_confirm", user="UALICE", response_url=fake_slack.response_url("click")).status_code == 200
    )

    def launched() -> dict[str, Any] | None:
        with fake_slack.cond:
            return next((m for m in fake_slack.messages if "Started job" in (m.get("text") or "")), None)

    start_msg = fake_slack.wait(launched, 60, "the launch message")
    assert start_msg["thread_ts"] == root and not start_msg.get("ephemeral_to")
    assert "Confirmed by <@UALICE>" in blocks_text(fake_slack.message(CHANNEL, c["ts"]) or {})
    jobs = client.get(f"{API}/jobs", headers=headers).json()["items"]
    assert len(jobs) == 1
    job_id = int(jobs[0]["id"])

    def progress_message() -> dict[str, Any] | None:
        with fake_slack.cond:
            return next((m for m in fake_slack.messages if (m.get("text") or "").count(f"*Job {job_id}*") == 1), None)

    progress = fake_slack.wait(progress_message, 60, "the progress message")
    assert progress["thread_ts"] == root

    # the job runs for real; the summary comes with the chart
    uploads = fake_slack.wait(lambda: fake_slack.calls_of("files.completeUploadExternal"), 400, "the summary upload")
    job = get_job(client, headers, job_id)
    assert job["status"] == "completed", job
    final = fake_slack.message(CHANNEL, progress["ts"])
    assert final is not None
    assert "completed" in final["text"] and "epoch 1/1" in final["text"]
    metric_names = list(job["metrics"])
    assert metric_names and all(name in final["text"] for name in metric_names[:2])
    assert len(final["history"]) >= 2  # updated in place while it ran (queued -> ... -> completed)
    assert any("running" in (h.get("text") or "") for h in final["history"])
    updates = [x for x in fake_slack.calls_of("chat.update") if x["params"].get("ts") == progress["ts"]]
    gaps = [b["time"] - a["time"] for a, b in itertools.pairwise(updates)]
    assert all(g >= 0.9 for g in gaps), gaps  # at most one update a second
    summary = next(m for m in fake_slack.messages if m.get("files"))
    assert summary["thread_ts"] == root and summary["files"][0]["png"]
    assert f"Job {job_id} completed" in summary["text"] and "Best checkpoint (`best.pt`): epoch 1" in summary["text"]
    assert job["best_metric_name"] in summary["text"] and "test it" in summary["text"]
    assert uploads[0]["params"]["channel_id"] == CHANNEL and uploads[0]["params"]["thread_ts"] == root
    steps = [x["method"] for x in fake_slack.calls if x["method"].startswith("file")]
    assert steps[:3] == ["files.getUploadURLExternal", "file.upload", "files.completeUploadExternal"]

    # "test it" with a digit attached in the thread: the rendered prediction comes back
    png, _label = digit_png(3)
    url = fake_slack.add_file("digit.png", png)
    files = [
        {
            "id": "F0IMG",
            "name": "digit.png",
            "mimetype": "image/png",
            "filetype": "png",
            "size": len(png),
            "url_private": url,
            "url_private_download": url,
        }
    ]
    sender.mention("test it", user="UALICE", thread_ts=root, files=files)
    done = fake_slack.wait(lambda: len(fake_slack.calls_of("files.completeUploadExternal")) >= 2, 300, "the prediction")
    assert done
    (download,) = fake_slack.calls_of("file.download")
    assert download["auth"] == f"Bearer {TOKEN}"
    prediction = [m for m in fake_slack.messages if m.get("files")][-1]
    assert prediction["thread_ts"] == root and prediction["files"][0]["png"]
    assert f"Job {job_id}" in prediction["text"] and "most likely" in prediction["text"]
    assert f"prediction-job-{job_id}.png" in json.dumps(fake_slack.calls_of("files.getUploadURLExternal"))

    transcript = fake_slack.transcript(CHANNEL, root, sender.sent)
    path = tmp_path / "slack-thread.txt"
    path.write_text(transcript + "\n", encoding="utf-8")
    print(f"\nrecorded Slack thread: {path}\n")
    assert transcript.count("<BOT>") >= 5 and "(update" in transcript
    client.close()
