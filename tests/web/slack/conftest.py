"""Fixtures for the Slack bot tests: the fake Slack Web API, an app with Slack on (fake trainers:
jobs launch but never train), a signed-request sender, and linking a Slack user to an account.

    fake_slack   tests.web.slack.fake_slack.FakeSlack (the bot's slack_sdk base_url points at it)
    sender       SlackSender on the TestClient (signed events, commands, clicks)
    link         link(headers, slack_user) -> the email linked, through POST /api/v1/slack/link and
                 the signed `/train link CODE` command
    bot          app.state.slack (`bot.wait_idle()` waits for the work after the acks); kills the
                 test's fake trainers afterwards
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.agent.chat_helpers import fake_trainer_settings
from tests.web.slack.fake_slack import FakeSlack
from tests.web.slack.slack_helpers import SECRET, TOKEN, SlackSender
from web.config import Settings

API = "/api/v1"
Link = Callable[[dict[str, str], str], str]


@pytest.fixture
def fake_slack() -> Iterator[FakeSlack]:
    with FakeSlack(token=TOKEN) as slack:
        yield slack


@pytest.fixture
def settings(db_url: str, tmp_path: Path, fake_slack: FakeSlack) -> Settings:
    return fake_trainer_settings(
        db_url,
        tmp_path,
        slack={
            "bot_token": TOKEN,
            "signing_secret": SECRET,
            "api_base_url": fake_slack.api_url,
            "progress_interval_s": 0.3,
        },
    )


@pytest.fixture
def bot(client: TestClient) -> Iterator[Any]:
    """The app's SlackBot; afterwards no (fake) trainer outlives the test."""
    bot = client.app.state.slack  # type: ignore[attr-defined]
    assert bot is not None, "Slack should be on"
    yield bot
    client.app.state.supervisor.kill_all()  # type: ignore[attr-defined]


@pytest.fixture
def sender(client: TestClient) -> SlackSender:
    return SlackSender(client)


@pytest.fixture
def link(client: TestClient, sender: SlackSender, fake_slack: FakeSlack, bot: Any) -> Link:
    def _link(headers: dict[str, str], slack_user: str) -> str:
        r = client.post(f"{API}/slack/link", headers=headers)
        assert r.status_code == 201, r.text
        code = r.json()["code"]
        resp = sender.command(
            f"link {code}", user=slack_user, response_url=fake_slack.response_url(f"link-{slack_user}")
        )
        assert resp.status_code == 200, resp.text
        assert bot.wait_idle(30)
        answer = [c for c in fake_slack.calls_of("response_url") if c["name"] == f"link-{slack_user}"][-1]
        assert "Linked" in answer["params"]["text"], answer
        me = client.get(f"{API}/auth/me", headers=headers)
        return str(me.json().get("email")) if me.status_code == 200 else ""

    return _link
