"""Slack: "download the best model" answers a signed link in the thread, visible to the asker only
(the link is their credential until it expires), and the link downloads the checkpoint."""

from __future__ import annotations

import re
from typing import Any

from fastapi.testclient import TestClient

from tests.conftest import MakeUser
from tests.web.slack.conftest import Link
from tests.web.slack.fake_slack import FakeSlack
from tests.web.slack.slack_helpers import CHANNEL, SlackSender
from tests.web.test_downloads import BEST, stored_job


def test_slack_download_link_in_the_thread_downloads(
    client: TestClient, sender: SlackSender, fake_slack: FakeSlack, bot: Any, make_user: MakeUser, link: Link
) -> None:
    user, headers = make_user()
    link(headers, "UDL")
    job = stored_job(client.app, int(user["id"]))  # type: ignore[arg-type]
    _, root = sender.mention(f"download the best model of job {job}", user="UDL")
    assert bot.wait_idle(30)
    with fake_slack.cond:
        said = [m for m in fake_slack.messages if "/api/v1/dl/" in (m.get("text") or "")]
    assert len(said) == 1, fake_slack.messages
    (msg,) = said
    assert msg["channel"] == CHANNEL and msg.get("thread_ts") == root and msg.get("ephemeral_to") == "UDL"
    m = re.search(r"/api/v1/dl/[A-Za-z0-9._-]+", msg["text"])
    assert m is not None
    got = client.get(m.group(0))
    assert got.status_code == 200 and got.content == BEST
    assert "/api/v1/dl/" not in fake_slack.visible_text(CHANNEL)  # nobody else in the channel sees it
