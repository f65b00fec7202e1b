"""Signed Slack requests built in the tests, the way Slack builds them.

    sender = SlackSender(client)                      # a TestClient or an httpx.Client on the app
    sender.mention("train resnet18 on digits", user="U1", ts=...)   -> response of POST /slack/events
    sender.message("yes", user="U1", thread_ts=..., retry=1)        a thread reply (X-Slack-Retry-Num)
    sender.command("link ABCD-EFGH", user="U1", response_url=...)   POST /slack/commands
    sender.click(confirmation_message, "vta_confirm", user="U1")    POST /slack/interactions

Every body is signed like Slack does: ``v0=`` + HMAC-SHA256(secret, ``v0:<ts>:<raw body>``) in
``X-Slack-Signature`` with ``X-Slack-Request-Timestamp``.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
from typing import Any
from urllib.parse import urlencode

from tests.web.slack.fake_slack import BOT_USER, TEAM, slack_ts

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
TOKEN = "xoxb-test-0000-token"
CHANNEL = "C0CHANNEL"
# Slack wants the ack within 3 s; the handler only queues the work, so it answers in milliseconds.
# A busy CI machine must not turn that into a flake: this is a hang guard, not a timing target.
ACK_GUARD_S = 10.0

_event_ids = itertools.count(1)


def signature_headers(body: str, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def user_ts() -> str:
    """A message ts for a user message (the fake's clock: ts order is time order)."""
    return slack_ts()


def event_envelope(event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM,
        "api_app_id": "A0TEST",
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_event_ids):08d}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
    }


class SlackSender:
    def __init__(self, client: Any, *, secret: str = SECRET) -> None:
        self.client = client
        self.secret = secret
        self.sent: list[dict[str, Any]] = []  # user messages, for transcripts

    def post(
        self,
        path: str,
        body: str,
        content_type: str,
        *,
        retry: int | None = None,
        timestamp: int | None = None,
        secret: str | None = None,
    ) -> Any:
        headers = {
            "Content-Type": content_type,
            **signature_headers(body, secret=secret or self.secret, timestamp=timestamp),
        }
        if retry is not None:
            headers["X-Slack-Retry-Num"] = str(retry)
            headers["X-Slack-Retry-Reason"] = "http_timeout"
        return self.client.post(path, content=body.encode(), headers=headers)

    def event(self, event: dict[str, Any], *, event_id: str | None = None, **kw: Any) -> Any:
        body = json.dumps(event_envelope(event, event_id))
        return self.post("/slack/events", body, "application/json", **kw)

    def _user_event(
        self,
        kind: dict[str, Any],
        text: str,
        shown: str,
        *,
        user: str,
        channel: str,
        ts: str | None,
        thread_ts: str | None,
        files: list[dict[str, Any]] | None,
        event_id: str | None,
        **kw: Any,
    ) -> tuple[Any, str]:
        """Post one user event (`kind` gives its type fields) and record what the thread shows."""
        ts = ts or user_ts()
        event: dict[str, Any] = {
            **kind,
            "user": user,
            "text": text,
            "ts": ts,
            "channel": channel,
            "event_ts": ts,
            "client_msg_id": f"msg-{ts}",
        }
        if thread_ts:
            event["thread_ts"] = thread_ts
        if files:
            event["files"] = files
            if kind["type"] == "message":
                event["subtype"] = "file_share"
        self.sent.append({"ts": ts, "user": user, "text": shown + (" [+ image]" if files else "")})
        return self.event(event, event_id=event_id, **kw), ts

    def mention(
        self,
        text: str,
        *,
        user: str,
        channel: str = CHANNEL,
        ts: str | None = None,
        thread_ts: str | None = None,
        files: list[dict[str, Any]] | None = None,
        event_id: str | None = None,
        **kw: Any,
    ) -> tuple[Any, str]:
        return self._user_event(
            {"type": "app_mention"},
            f"<@{BOT_USER}> {text}",
            f"@bot {text}",
            user=user,
            channel=channel,
            ts=ts,
            thread_ts=thread_ts,
            files=files,
            event_id=event_id,
            **kw,
        )

    def message(
        self,
        text: str,
        *,
        user: str,
        channel: str = CHANNEL,
        ts: str | None = None,
        thread_ts: str | None = None,
        channel_type: str = "channel",
        files: list[dict[str, Any]] | None = None,
        event_id: str | None = None,
        **kw: Any,
    ) -> tuple[Any, str]:
        return self._user_event(
            {"type": "message", "channel_type": channel_type},
            text,
            text,
            user=user,
            channel=channel,
            ts=ts,
            thread_ts=thread_ts,
            files=files,
            event_id=event_id,
            **kw,
        )

    def command(self, text: str, *, user: str, channel: str = CHANNEL, response_url: str, **kw: Any) -> Any:
        form = {
            "token": "legacy",
            "team_id": TEAM,
            "team_domain": "test",
            "channel_id": channel,
            "channel_name": "directmessage" if channel.startswith("D") else "general",
            "user_id": user,
            "user_name": user.lower(),
            "command": "/train",
            "text": text,
            "api_app_id": "A0TEST",
            "response_url": response_url,
            "trigger_id": "1337.42.abcd",
        }
        return self.post("/slack/commands", urlencode(form), "application/x-www-form-urlencoded", **kw)

    def click(
        self,
        message: dict[str, Any],
        action_id: str,
        *,
        user: str,
        response_url: str,
        ephemeral: bool = False,
        **kw: Any,
    ) -> Any:
        """A block_actions payload for a button of `message` (as the fake recorded it)."""
        button = next(
            e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"] if e["action_id"] == action_id
        )
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": TEAM},
            "api_app_id": "A0TEST",
            "token": "legacy",
            "container": {
                "type": "message",
                "message_ts": message["ts"],
                "channel_id": message["channel"],
                "is_ephemeral": ephemeral,
                **({"thread_ts": message["thread_ts"]} if message.get("thread_ts") else {}),
            },
            "trigger_id": "1337.42.abcd",
            "team": {"id": TEAM, "domain": "test"},
            "channel": {"id": message["channel"], "name": "general"},
            "message": {
                "type": "message",
                "user": BOT_USER,
                "ts": message["ts"],
                "thread_ts": message.get("thread_ts"),
                "text": message.get("text"),
                "blocks": message["blocks"],
            },
            "response_url": response_url,
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": "vta_confirmation",
                    "text": button["text"],
                    "value": button["value"],
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        self.sent.append(
            {
                "ts": slack_ts(),
                "user": user,
                "text": f"(clicks [{button['text']['text']}])",
            }
        )
        body = urlencode({"payload": json.dumps(payload)})
        return self.post("/slack/interactions", body, "application/x-www-form-urlencoded", **kw)
