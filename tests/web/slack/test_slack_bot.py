"""The Slack bot against the real app (TestClient, lifespan, supervisor with a fake trainer) and a
local fake of the Slack Web API: signed requests (valid, bad signature, stale timestamp, retries),
linking (one-time code, single use, expiry, DM, admin CLI, unlink), an unlinked user, the dialogue
in a thread with Confirm / Change buttons, retries and duplicates never starting a second job,
private data answered ephemerally and another user's private dataset never shown, `/train`
threads, and the progress message throttled and coalesced. SQLite and, with TEST_DATABASE_URL,
PostgreSQL."""

from __future__ import annotations

import hashlib
import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import MakeUser, make_settings
from tests.live_server import classification_files, upload_dataset
from tests.web.slack.conftest import API, Link
from tests.web.slack.fake_slack import FakeSlack
from tests.web.slack.slack_helpers import ACK_GUARD_S, CHANNEL, SlackSender, event_envelope, signature_headers, user_ts


def named(name: str, classes: tuple[str, str], n: int = 12) -> dict[str, bytes]:
    files = classification_files(n, name)
    doc = json.loads(files["annotations.json"])
    doc["categories"] = [{"id": 1, "name": classes[0]}, {"id": 2, "name": classes[1]}]
    files["annotations.json"] = json.dumps(doc).encode()
    return files


def bot_posts(fake: FakeSlack, channel: str = CHANNEL, thread_ts: str | None = None) -> list[dict[str, Any]]:
    """Messages the bot posted publicly (not ephemeral), in a thread when given."""
    with fake.cond:
        return [
            m
            for m in fake.messages
            if m["channel"] == channel
            and not m.get("ephemeral_to")
            and (thread_ts is None or m.get("thread_ts") == thread_ts or m["ts"] == thread_ts)
        ]


def confirmations(fake: FakeSlack, thread_ts: str, *, ephemeral: bool = False) -> list[dict[str, Any]]:
    with fake.cond:
        return [
            m
            for m in fake.messages
            if m.get("thread_ts") == thread_ts
            and bool(m.get("ephemeral_to")) == ephemeral
            and any(b.get("type") == "actions" for b in (m.get("blocks") or []))
        ]


def jobs_of(client: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    r = client.get(f"{API}/jobs", headers=headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


# ----------------------------------------------------------------------------- requests


def test_slack_is_off_without_its_settings(db_url: str, tmp_path: Path) -> None:
    from web.main import create_app

    app = create_app(make_settings(db_url, tmp_path, slack={"bot_token": "xoxb-only-half"}))
    with TestClient(app) as client:
        body = json.dumps({"type": "url_verification", "challenge": "c"})
        r = client.post("/slack/events", content=body, headers=signature_headers(body))
        assert r.status_code == 404 and "SLACK_SIGNING_SECRET" in r.json()["detail"]
        assert app.state.slack is None


def test_signed_requests_are_verified(client: TestClient, sender: SlackSender, fake_slack: FakeSlack, bot: Any) -> None:
    body = json.dumps(
        {"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}
    )
    ok = sender.post("/slack/events", body, "application/json")
    assert ok.status_code == 200 and "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in ok.text

    bad = sender.post("/slack/events", body, "application/json", secret="not-the-secret")
    assert bad.status_code == 401
    stale = sender.post("/slack/events", body, "application/json", timestamp=int(time.time()) - 6 * 60)
    assert stale.status_code == 401
    future = sender.post("/slack/events", body, "application/json", timestamp=int(time.time()) + 6 * 60)
    assert future.status_code == 401
    assert client.post("/slack/events", content=body).status_code == 401  # no headers at all
    headers = {"X-Slack-Request-Timestamp": "not-a-number", "X-Slack-Signature": "v0=00"}
    assert client.post("/slack/events", content=body, headers=headers).status_code == 401
    # a valid signature over a different body: 401 (the raw body is what is signed)
    good = signature_headers(body)
    assert client.post("/slack/events", content=body + " ", headers=good).status_code == 401
    # the same three endpoints, same verification
    for path in ("/slack/commands", "/slack/interactions"):
        assert sender.post(path, "payload=%7B%7D", "application/x-www-form-urlencoded", secret="x").status_code == 401
    huge = "x" * (1024 * 1024 + 1)
    assert sender.post("/slack/events", huge, "application/json").status_code == 413

    # an event is acknowledged at once, whatever the work behind it
    started = time.perf_counter()
    resp, _ = sender.mention("hello", user="UNOBODY")
    assert resp.status_code == 200 and time.perf_counter() - started < ACK_GUARD_S
    assert bot.wait_idle(30)
    assert not [c for c in fake_slack.calls if c["method"] == "chat.postMessage"]  # nothing said in public


def test_link_with_a_one_time_code_and_an_unlinked_user_gets_only_instructions(
    client: TestClient, sender: SlackSender, fake_slack: FakeSlack, bot: Any, make_user: MakeUser, app: Any
) -> None:
    from tools.db.models import SlackLinkCode

    alice, alice_h = make_user()
    upload_dataset(client, alice_h, "toys", named("toys", ("robot", "teddy")), visibility="public")

    # unlinked: instructions, ephemeral, and no data
    resp, ts = sender.mention("what datasets do I have?", user="UALICE")
    assert resp.status_code == 200 and bot.wait_idle(30)
    (answer,) = [m for m in fake_slack.messages if m.get("ephemeral_to") == "UALICE"]
    assert "/train link" in answer["text"] and answer["thread_ts"] == ts
    assert "toys" not in fake_slack.visible_text() and "toys" not in answer["text"]

    # the web side: a one-time code (stored hashed), needs a signed-in user
    assert client.post(f"{API}/slack/link").status_code == 401
    r = client.post(f"{API}/slack/link", headers=alice_h)
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"code", "expires_at", "instructions"} and f"/train link {body['code']}" in body["instructions"]
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert timedelta(minutes=5) < expires - datetime.now(UTC) <= timedelta(minutes=10, seconds=5)
    with app.state.session_factory() as db:
        rows = db.scalars(select(SlackLinkCode)).all()
        assert [r.code_hash for r in rows] == [hashlib.sha256(body["code"].replace("-", "").encode()).hexdigest()]
        assert body["code"] not in json.dumps([r.code_hash for r in rows])

    # a wrong code, then the right one, then the same code again (single use) by someone else
    url = fake_slack.response_url("cmd")
    for text, who in (
        ("link ZZZZ-ZZZZ", "UALICE"),
        (f"link {body['code'].lower()}", "UALICE"),
        (f"link {body['code']}", "UMALLORY"),
    ):
        sender.command(text, user=who, response_url=url)
        assert bot.wait_idle(30)
    answers = [c["params"]["text"] for c in fake_slack.calls_of("response_url")]
    assert answers[0].startswith("Could not link") and alice["email"] in answers[1]
    assert answers[2].startswith("Could not link") and "already used" in answers[2]

    # linked: the same question now gets an answer (in the thread)
    sender.mention("what datasets do I have?", user="UALICE")
    assert bot.wait_idle(30)
    assert "toys" in fake_slack.visible_text()
    # Mallory is still unlinked: instructions again, nothing else
    sender.mention("train resnet18 on toys", user="UMALLORY")
    assert bot.wait_idle(30)
    mallory = [m for m in fake_slack.messages if m.get("ephemeral_to") == "UMALLORY"]
    assert len(mallory) == 1 and "/train link" in mallory[0]["text"]

    # an expired code does not work; "link CODE" in a DM does
    bob, bob_h = make_user()
    old = client.post(f"{API}/slack/link", headers=bob_h).json()["code"]
    with app.state.session_factory() as db:
        for row in db.scalars(select(SlackLinkCode).where(SlackLinkCode.used_at.is_(None))):
            row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        db.commit()
    sender.message(f"link {old}", user="UBOB", channel="D0BOB", channel_type="im")
    assert bot.wait_idle(30)
    assert fake_slack.messages[-1]["text"].startswith("Could not link")
    fresh = client.post(f"{API}/slack/link", headers=bob_h).json()["code"]
    sender.message(f"link {fresh}", user="UBOB", channel="D0BOB", channel_type="im")
    assert bot.wait_idle(30)
    assert bob["email"] in fake_slack.messages[-1]["text"] and fake_slack.messages[-1]["channel"] == "D0BOB"

    links = client.get(f"{API}/slack/links", headers=bob_h).json()
    assert [(x["slack_user_id"], x["source"]) for x in links] == [("UBOB", "code")]
    assert client.delete(f"{API}/slack/links/{links[0]['id']}", headers=alice_h).status_code == 404
    assert client.delete(f"{API}/slack/links/{links[0]['id']}", headers=bob_h).status_code == 204

    # /train unlink
    sender.command("unlink", user="UALICE", response_url=url)
    assert bot.wait_idle(30)
    assert fake_slack.calls_of("response_url")[-1]["params"]["text"].startswith("Unlinked")


def test_admin_cli_links_a_slack_user(
    client: TestClient,
    settings: Any,
    sender: SlackSender,
    fake_slack: FakeSlack,
    bot: Any,
    make_user: MakeUser,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from web.cli import main
    from web.config import get_settings

    carol, _ = make_user()
    monkeypatch.setenv("VTA_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", settings.resolved_database_url)
    get_settings.cache_clear()
    try:
        assert main(["slack", "link", "--email", carol["email"], "--slack-user", "ucarol"]) == 0
        assert "UCAROL" in capsys.readouterr().out
        assert main(["slack", "link", "--email", "nobody@example.com", "--slack-user", "UX"]) == 1
        assert main(["slack", "links"]) == 0
        out = capsys.readouterr().out
        assert "UCAROL" in out and carol["email"] in out and "admin" in out
    finally:
        get_settings.cache_clear()
    sender.mention("help", user="UCAROL")
    assert bot.wait_idle(30)
    assert "Vision Training Agent in Slack" in fake_slack.messages[-1]["text"]
    with monkeypatch.context():
        monkeypatch.setenv("VTA_DATA_DIR", str(settings.data_dir))
        monkeypatch.setenv("DATABASE_URL", settings.resolved_database_url)
        get_settings.cache_clear()
        try:
            assert main(["slack", "unlink", "--slack-user", "UCAROL"]) == 0
        finally:
            get_settings.cache_clear()
    sender.mention("help", user="UCAROL")
    assert bot.wait_idle(30)
    assert "/train link" in fake_slack.messages[-1]["text"]


# ----------------------------------------------------------------------------- the dialogue


def test_thread_dialogue_buttons_and_retries_never_start_a_second_job(
    client: TestClient, sender: SlackSender, fake_slack: FakeSlack, bot: Any, make_user: MakeUser, link: Link
) -> None:
    _, alice_h = make_user()
    _, bob_h = make_user()
    upload_dataset(client, alice_h, "toys", named("toys", ("robot", "teddy")), visibility="public")
    link(alice_h, "UALICE")
    link(bob_h, "UBOB")

    resp, root = sender.mention("train resnet18 on toys for 2 epochs, image size 32", user="UALICE", event_id="EvROOT")
    assert resp.status_code == 200 and bot.wait_idle(30)
    (c1,) = confirmations(fake_slack, root)
    assert "resnet18" in c1["text"] and "toys" in c1["text"] and c1["channel"] == CHANNEL
    buttons = [e["text"]["text"] for b in c1["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert buttons == ["Confirm", "Change"]

    # Slack retries the same event, and delivers the message once more as a plain `message`
    sender.mention(
        "train resnet18 on toys for 2 epochs, image size 32", user="UALICE", ts=root, event_id="EvROOT", retry=1
    )
    sender.message(
        "<@UBOT> train resnet18 on toys for 2 epochs, image size 32", user="UALICE", ts=root, event_id="EvOTHER"
    )
    assert bot.wait_idle(30)
    assert len(bot_posts(fake_slack, thread_ts=root)) == 1

    # Change: the buttons go, the bot asks what to change; a plain reply in the thread corrects it
    url = fake_slack.response_url("clicks")
    assert sender.click(c1, "vta_change", user="UALICE", response_url=url).status_code == 200
    assert bot.wait_idle(30)
    c1_now = fake_slack.message(CHANNEL, c1["ts"])
    assert c1_now is not None and not any(b["type"] == "actions" for b in c1_now["blocks"])
    assert "wants to change" in json.dumps(c1_now["blocks"])
    assert "What should I change?" in bot_posts(fake_slack, thread_ts=root)[-1]["text"]
    sender.message("epochs 3", user="UALICE", thread_ts=root)
    assert bot.wait_idle(30)
    c2 = confirmations(fake_slack, root)[-1]
    assert c2["ts"] != c1["ts"] and "3" in c2["text"]

    # the old confirmation is out of date; another user may not answer this one
    sender.click(
        c1 | {"blocks": c1["history"][0]["blocks"] if c1.get("history") else c1["blocks"]},
        "vta_confirm",
        user="UALICE",
        response_url=url,
    )
    sender.click(c2, "vta_confirm", user="UBOB", response_url=url)
    assert bot.wait_idle(30)
    ephemerals = [m["text"] for m in fake_slack.messages if m.get("ephemeral_to")]
    assert any("out of date" in t for t in ephemerals) and any("Only the person who asked" in t for t in ephemerals)
    assert jobs_of(client, alice_h) == [] and jobs_of(client, bob_h) == []

    # "yes" typed in the thread, retried twice by Slack and also delivered as a mention: one job
    _, yes_ts = sender.message("yes", user="UALICE", thread_ts=root, event_id="EvYES")
    sender.message("yes", user="UALICE", thread_ts=root, ts=yes_ts, event_id="EvYES", retry=1)
    sender.message("yes", user="UALICE", thread_ts=root, ts=yes_ts, event_id="EvYES", retry=2)
    sender.mention("yes", user="UALICE", thread_ts=root, ts=yes_ts, event_id="EvYES-MENTION")
    assert bot.wait_idle(30)
    # and a late click on the (now answered) confirmation
    sender.click(c2, "vta_confirm", user="UALICE", response_url=url)
    assert bot.wait_idle(30)
    jobs = jobs_of(client, alice_h)
    assert len(jobs) == 1, jobs
    launched = [m for m in bot_posts(fake_slack, thread_ts=root) if "Started job" in (m["text"] or "")]
    assert len(launched) == 1 and f"job {jobs[0]['id']}" in launched[0]["text"].lower()
    progress = [m for m in bot_posts(fake_slack, thread_ts=root) if f"*Job {jobs[0]['id']}*" in (m["text"] or "")]
    assert len(progress) == 1 and "resnet18 on toys" in progress[0]["text"]


def test_confirm_button_launches_and_progress_is_throttled(
    client: TestClient, app: Any, sender: SlackSender, fake_slack: FakeSlack, bot: Any, make_user: MakeUser, link: Link
) -> None:
    """Confirm launches; the progress message then follows the job's events (stored and published
    like a trainer's): many epochs within a short time are coalesced into few chat.update calls, at
    least `interval` apart, the last one showing the final state; the summary comes with the chart."""
    from tools.db.models import Job
    from tools.events import append_event

    _, alice_h = make_user()
    upload_dataset(client, alice_h, "toys", named("toys", ("robot", "teddy")), visibility="public")
    link(alice_h, "UALICE")
    _, root = sender.mention("train resnet18 on toys for 40 epochs, image size 32", user="UALICE")
    assert bot.wait_idle(30)
    (c,) = confirmations(fake_slack, root)
    sender.click(c, "vta_confirm", user="UALICE", response_url=fake_slack.response_url("x"))
    assert bot.wait_idle(30)
    done = fake_slack.message(CHANNEL, c["ts"])
    assert done is not None and "Confirmed by <@UALICE>" in json.dumps(done["blocks"])
    (job,) = jobs_of(client, alice_h)
    job_id = int(job["id"])
    (progress,) = [m for m in bot_posts(fake_slack, thread_ts=root) if f"*Job {job_id}*" in (m["text"] or "")]

    client.app.state.supervisor.kill_all()  # the fake trainer; the events below stand in for it
    factory, bus = app.state.session_factory, app.state.event_bus
    with factory() as db:
        db.get(Job, job_id).status = "running"
        db.commit()
    t0 = time.monotonic()
    for epoch in range(1, 41):
        with factory() as db:
            metrics = {"train/loss": round(2.0 / epoch, 4), "val/accuracy": round(0.5 + epoch / 100, 2)}
            ev = append_event(
                db,
                job_id,
                "epoch",
                {"epoch": epoch, "epochs": 40, "metrics": metrics, "eta_s": 40 - epoch},
                source="trainer",
            )
        assert ev is not None
        bus.publish_threadsafe(job_id, ev)
        time.sleep(0.02)
    with factory() as db:
        final = append_event(db, job_id, "status", {"status": "completed"}, source="trainer")
    bus.publish_threadsafe(job_id, final)
    fake_slack.wait(lambda: fake_slack.calls_of("files.completeUploadExternal"), 30, "the summary upload")
    elapsed = time.monotonic() - t0

    updates = [c for c in fake_slack.calls_of("chat.update") if c["params"].get("ts") == progress["ts"]]
    interval = app.state.settings.slack.progress_interval_s
    assert 2 <= len(updates) <= elapsed / interval + 3, (len(updates), elapsed)
    times = [c["time"] for c in updates]
    assert all(b - a >= interval * 0.9 for a, b in itertools.pairwise(times)), times
    final_msg = fake_slack.message(CHANNEL, progress["ts"])
    assert final_msg is not None
    assert "epoch 40/40" in final_msg["text"] and "completed" in final_msg["text"]
    assert "train/loss 0.05 · val/accuracy 0.9" in final_msg["text"]
    (summary,) = [m for m in fake_slack.messages if m.get("files")]
    assert summary["thread_ts"] == root and summary["files"][0]["png"] and summary["files"][0]["bytes"] > 1000
    assert f"Job {job_id} completed" in summary["text"] and "Best checkpoint" in summary["text"]
    assert "epoch 40, val/accuracy *0.9*" in summary["text"]


def test_private_data_goes_ephemeral_and_others_private_datasets_never_show(
    client: TestClient, sender: SlackSender, fake_slack: FakeSlack, bot: Any, make_user: MakeUser, link: Link
) -> None:
    _, alice_h = make_user()
    _, bob_h = make_user()
    bob_ds = upload_dataset(client, bob_h, "secret-cats", named("secret-cats", ("whisker", "paw")))
    link(alice_h, "UALICE")
    link(bob_h, "UBOB")

    # Alice names Bob's private dataset: "not found", nothing about it
    sender.mention("train resnet18 on secret-cats for 1 epoch", user="UALICE")
    sender.mention("what datasets do I have?", user="UALICE")
    sender.mention("can I train detection on secret-cats?", user="UALICE")
    assert bot.wait_idle(30)
    everything = json.dumps(fake_slack.calls, ensure_ascii=False)
    assert "whisker" not in everything and bob_ds not in everything
    assert "can't find" in everything or "not found" in everything.lower()

    # Bob asks about his own private dataset in the channel: only he sees the answer
    before = len(bot_posts(fake_slack))
    _, root = sender.mention("train resnet18 on secret-cats for 1 epoch, image size 32", user="UBOB")
    assert bot.wait_idle(30)
    assert len(bot_posts(fake_slack)) == before
    (c,) = confirmations(fake_slack, root, ephemeral=True)
    assert c["ephemeral_to"] == "UBOB" and "secret-cats" in c["text"]
    # his click on the ephemeral confirmation: the answer replaces it through response_url
    url = fake_slack.response_url("bob-click")
    sender.click(c, "vta_confirm", user="UBOB", response_url=url, ephemeral=True)
    assert bot.wait_idle(30)
    (replaced,) = [x for x in fake_slack.calls_of("response_url") if x["name"] == "bob-click"]
    assert replaced["params"]["replace_original"] is True and "Confirmed by" in json.dumps(replaced["params"]["blocks"])
    (job,) = jobs_of(client, bob_h)
    launched = [
        m for m in fake_slack.messages if m.get("ephemeral_to") == "UBOB" and "Started job" in (m["text"] or "")
    ]
    assert len(launched) == 1
    # the public progress message says "a private dataset", never its name
    progress = [m for m in bot_posts(fake_slack, thread_ts=root) if f"*Job {job['id']}*" in (m["text"] or "")]
    assert len(progress) == 1 and "a private dataset" in progress[0]["text"]
    bobs_public = json.dumps(bot_posts(fake_slack)[before:], ensure_ascii=False)
    assert "secret-cats" not in bobs_public and bob_ds not in bobs_public
    assert "whisker" not in fake_slack.visible_text(CHANNEL)  # nobody but Bob ever saw its classes

    # in a DM nothing needs hiding
    sender.message("what datasets do I have?", user="UBOB", channel="D0BOB", channel_type="im")
    assert bot.wait_idle(30)
    dm = [m for m in fake_slack.messages if m["channel"] == "D0BOB"]
    assert dm and not dm[-1].get("ephemeral_to") and "secret-cats" in dm[-1]["text"]


def test_train_command_starts_a_thread_and_says_when_it_cannot_post(
    client: TestClient, sender: SlackSender, fake_slack: FakeSlack, bot: Any, make_user: MakeUser, link: Link
) -> None:
    _, alice_h = make_user()
    upload_dataset(client, alice_h, "toys", named("toys", ("robot", "teddy")), visibility="public")
    link(alice_h, "UALICE")
    url = fake_slack.response_url("train")
    assert sender.command("train resnet18 on toys for 1 epoch", user="UALICE", response_url=url).status_code == 200
    assert bot.wait_idle(30)
    roots = [m for m in bot_posts(fake_slack) if "started a training conversation" in (m["text"] or "")]
    assert len(roots) == 1 and roots[0].get("thread_ts") is None
    (c,) = confirmations(fake_slack, roots[0]["ts"])
    assert "toys" in c["text"]
    # a thread reply continues the same conversation without a mention
    sender.message("image size 64", user="UALICE", thread_ts=roots[0]["ts"])
    assert bot.wait_idle(30)
    assert "64" in confirmations(fake_slack, roots[0]["ts"])[-1]["text"]
    # a message elsewhere in the channel without a mention is not for the bot
    n = len(fake_slack.messages)
    sender.message("image size 128", user="UALICE")
    sender.message("image size 128", user="UALICE", thread_ts=user_ts())
    assert bot.wait_idle(30) and len(fake_slack.messages) == n

    fake_slack.not_in.add("C0NOTIN")
    sender.command("train resnet18 on toys", user="UALICE", channel="C0NOTIN", response_url=url)
    assert bot.wait_idle(30)
    sender.command("help", user="UALICE", response_url=url)
    assert bot.wait_idle(30)
    texts = [x["params"]["text"] for x in fake_slack.calls_of("response_url") if x["name"] == "train"]
    assert "invite me" in texts[-2] and "Vision Training Agent in Slack" in texts[-1]


def test_events_from_bots_edits_and_unknown_kinds_are_ignored(
    client: TestClient, sender: SlackSender, fake_slack: FakeSlack, bot: Any, make_user: MakeUser, link: Link
) -> None:
    _, alice_h = make_user()
    link(alice_h, "UALICE")
    n = len(fake_slack.messages)
    ts = user_ts()
    for event in (
        {
            "type": "message",
            "subtype": "bot_message",
            "bot_id": "B1",
            "text": "hi",
            "ts": ts,
            "channel": "D0A",
            "channel_type": "im",
        },
        {"type": "message", "subtype": "message_changed", "channel": "D0A", "ts": ts, "channel_type": "im"},
        {
            "type": "message",
            "user": "UBOT",
            "bot_id": "BBOT",
            "text": "I said",
            "ts": ts,
            "channel": "D0A",
            "channel_type": "im",
        },
        {
            "type": "reaction_added",
            "user": "UALICE",
            "reaction": "tada",
            "item": {"type": "message", "channel": CHANNEL, "ts": ts},
        },
    ):
        assert sender.event(event).status_code == 200  # acknowledged: Slack must not retry it
    assert bot.wait_idle(30) and len(fake_slack.messages) == n
    body = json.dumps(
        event_envelope({"type": "app_mention", "user": "UALICE", "text": "<@UBOT> help", "ts": ts, "channel": CHANNEL})
    )
    assert sender.post("/slack/events", body, "application/json").status_code == 200
    assert bot.wait_idle(30) and len(fake_slack.messages) == n + 1


def test_chart_png() -> None:
    import io

    from PIL import Image

    from web.slack.chart import metric_chart

    one = metric_chart([1], {"train/loss": [0.5], "val/accuracy": [0.8]}, title="one epoch", best_epoch=1)
    many = metric_chart(
        list(range(1, 31)),
        {
            "train/loss": [1 / i for i in range(1, 31)],
            "val/top1": [None, *[i / 30 for i in range(2, 31)]],
            "lr": [0.01] * 30,
        },
        title="thirty",
        best_epoch=29,
    )
    empty = metric_chart([], {}, title="nothing")
    for png in (one, many, empty):
        img = Image.open(io.BytesIO(png))
        assert img.format == "PNG" and img.width == 900
    assert Image.open(io.BytesIO(many)).height > Image.open(io.BytesIO(empty)).height


def test_manifest_points_at_the_routes_and_asks_for_the_scopes_used(app: Any) -> None:
    from urllib.parse import urlsplit

    import yaml

    manifest = yaml.safe_load((Path(__file__).parents[3] / "deploy" / "slack" / "manifest.yaml").read_text())
    paths = set(app.openapi()["paths"])
    settings = manifest["settings"]
    urls = [
        settings["event_subscriptions"]["request_url"],
        settings["interactivity"]["request_url"],
        *(c["url"] for c in manifest["features"]["slash_commands"]),
    ]
    assert [urlsplit(u).path for u in urls] == ["/slack/events", "/slack/interactions", "/slack/commands"]
    assert all(urlsplit(u).path in paths for u in urls)
    assert [c["command"] for c in manifest["features"]["slash_commands"]] == ["/train"]
    assert {"app_mention", "message.im", "message.channels"} <= set(settings["event_subscriptions"]["bot_events"])
    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"app_mentions:read", "chat:write", "commands", "files:read", "files:write", "im:history"} <= scopes
    assert settings["interactivity"]["is_enabled"] is True


def test_progress_following_is_a_lifespan_resource_resumed_after_a_restart(
    app: Any, session_factory: Any, fake_slack: FakeSlack
) -> None:
    """The follower starts with the app (picking up jobs whose message was still being kept up to
    date), is cancelled at shutdown without losing its place, and the next start finishes the job."""
    from tests.event_helpers import make_job, make_owner
    from tests.web.slack.fake_slack import TEAM
    from tools import slack_state
    from tools.events import append_event

    owner = make_owner(session_factory)
    job_id, _ = make_job(session_factory, owner, status="running", epochs=2, dataset_name="toys")
    with session_factory() as db:
        append_event(db, job_id, "epoch", {"epoch": 1, "epochs": 2, "metrics": {"val/top1": 0.5}}, source="trainer")
    thread = user_ts()
    ts = fake_slack.next_ts()
    with fake_slack.cond:
        fake_slack.messages.append(
            {"channel": CHANNEL, "ts": ts, "thread_ts": thread, "text": "(progress)", "blocks": None, "history": []}
        )
    with session_factory() as db:
        slack_state.save_job_message(
            db,
            job_id=job_id,
            user_id=owner,
            team_id=TEAM,
            channel_id=CHANNEL,
            thread_ts=thread,
            message_ts=ts,
            language="en",
            private=False,
        )

    def shows(text: str) -> Any:
        return lambda: text in ((fake_slack.message(CHANNEL, ts) or {}).get("text") or "")

    with TestClient(app):
        bot = app.state.slack
        fake_slack.wait(shows("epoch 1/2"), 30, "the resumed progress message")
        assert job_id in bot.progress.tasks
    assert app.state.slack is None and not bot.progress.tasks and bot.executor._shutdown
    with session_factory() as db:
        assert slack_state.job_message(db, job_id).status == "following"  # the next start resumes

    with TestClient(app):
        bot = app.state.slack
        fake_slack.wait(lambda: job_id in bot.progress.tasks, 30, "following again")
        with session_factory() as db:
            ev = append_event(
                db, job_id, "epoch", {"epoch": 2, "epochs": 2, "metrics": {"val/top1": 0.75}}, source="trainer"
            )
            final = append_event(db, job_id, "status", {"status": "completed"}, source="trainer")
        for event in (ev, final):
            app.state.event_bus.publish_threadsafe(job_id, event)
        fake_slack.wait(lambda: fake_slack.calls_of("files.completeUploadExternal"), 30, "the summary")
        fake_slack.wait(shows("completed"), 30, "the final state")
        assert "epoch 2/2" in (fake_slack.message(CHANNEL, ts) or {})["text"]
    with session_factory() as db:
        assert slack_state.job_message(db, job_id).status == "done"
    (summary,) = [m for m in fake_slack.messages if m.get("files")]
    assert summary["thread_ts"] == thread and "val/top1 *0.75*" in summary["text"]


def test_direct_messages_need_no_mention_and_keep_one_conversation(
    client: TestClient, sender: SlackSender, fake_slack: FakeSlack, bot: Any, make_user: MakeUser, link: Link
) -> None:
    _, alice_h = make_user()
    upload_dataset(client, alice_h, "pets", named("pets", ("cat", "dog")))  # private: fine in a DM
    link(alice_h, "UALICE")
    dm = "D0ALICE"
    sender.message("train resnet18 on pets", user="UALICE", channel=dm, channel_type="im")
    assert bot.wait_idle(30)
    asked = [m for m in fake_slack.messages if m["channel"] == dm]
    assert len(asked) == 1 and asked[0].get("thread_ts") is None and not asked[0].get("ephemeral_to")
    sender.message("2", user="UALICE", channel=dm, channel_type="im")  # the epochs, same conversation
    assert bot.wait_idle(30)
    c = [m for m in fake_slack.messages if m["channel"] == dm and "actions" in json.dumps(m.get("blocks") or [])]
    assert len(c) == 1 and "pets" in c[0]["text"] and "epochs: 2" in c[0]["text"]
    sender.click(c[0], "vta_confirm", user="UALICE", response_url=fake_slack.response_url("dm"))
    assert bot.wait_idle(30)
    (job,) = jobs_of(client, alice_h)
    texts = [m["text"] for m in fake_slack.messages if m["channel"] == dm]
    assert any(f"Started job {job['id']}" in t for t in texts)
    assert any(f"*Job {job['id']}* · resnet18 on pets" in t for t in texts)  # a DM shows the name
