"""The Slack bot: a slack-bolt `App` inside the FastAPI server, the agent's dialogue in
Slack threads, live progress, inference on attached images.

Requests (`web.routes.slack`: `POST /slack/events`, `/slack/commands`, `/slack/interactions`, all
three dispatched to the same bolt app, which tells the kinds apart by their body) are verified
(HMAC-SHA256 signature over the raw body, timestamp within 5 minutes) and acknowledged at once:
bolt runs with ``process_before_response=True``, each listener's ack function only calls `ack()`,
and the work runs afterwards in lazy listeners on this bot's own thread pool, so the HTTP answer
never waits for the agent (Slack's limit is 3 s) and Slack never retries because of us.

Dedupe (`tools.slack_state.claim`, persisted): an event is taken once by its `event_id` and its
message (channel + ts: the same message arrives as `app_mention` and as `message`), so a retry
(`X-Slack-Retry-Num`) or the duplicate does nothing; a confirmation message is answered once.

Conversations: a mention in a channel starts (or continues) the dialogue of the web chat
(`agent.chat.handle_message`) in the message's thread; its chat session is stored per thread and
person (`slack_threads`), so everyone in a thread talks with the agent as themselves. Later
messages in that thread need no mention. `/train <request>` posts a thread root and continues
there; in a DM every message is for the bot (one session per DM, or per thread within it).

Identity (`tools.slack_links`): a Slack user acts as the platform user linked to it; an unlinked
user gets instructions and nothing else. Privacy: in a channel, an answer that names one of the
user's private datasets (or a job trained on one) is posted ephemerally (`chat.postEphemeral`);
the progress message of such a job hides the dataset's name. DMs are private already.

Confirmation: Block Kit buttons *Confirm* / *Change* (`web.slack.messages`). Confirm answers
"yes" to the dialogue as the clicker (who must own the session) and launches; Change asks what to
change (the next message in the thread is a correction, answered with a new confirmation). The
answered message loses its buttons (`chat.update`, or `response_url` for an ephemeral one).

After a launch the bot posts the job's progress message and hands it to `ProgressFollower`.
"test it" with an image attached in the thread downloads the file (`url_private`, bot token;
only from Slack's hosts or the configured API host), runs the chat's inference on it and uploads
the rendered prediction (`files_upload_v2`).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from slack_bolt import App, BoltRequest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import ConnectionErrorRetryHandler, RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from agent.chat import ChatTurn, handle_message
from agent.parser import detect_language
from tools import slack_links
from tools import slack_state as store
from tools.context import ToolContext
from tools.db.models import ChatMessage, ChatSession, Dataset, Job, User
from tools.downloads import LINK_PREFIX
from tools.errors import InvalidInputError, ToolError
from web.deps import app_services, link_signer, upload_limits
from web.slack import messages as M
from web.slack.progress import ProgressFollower, fold_view

log = logging.getLogger(__name__)

DEFAULT_API_BASE_URL = "https://slack.com/api/"
MAX_IMAGE_BYTES = 20 * 1024**2
_LINK = re.compile(r"^\s*(?:/train\s+)?link\s+([A-Za-z0-9]{4}[\s-]?[A-Za-z0-9]{4})\s*$", re.I)
_UNLINK = re.compile(r"^\s*unlink\s*$", re.I)
_HELP = re.compile(r"^\s*(?:help|\?|도움말?|사용법)\s*$", re.I)


class DownloadError(Exception):
    """An attached file the bot could not use (the message is for the user)."""


@dataclass(frozen=True)
class Where:
    """Where an answer goes: a channel, the thread (None: a DM's top level), the Slack user."""

    team: str
    channel: str
    thread_ts: str | None
    user: str
    is_dm: bool
    response_url: str | None = None

    @property
    def thread_key(self) -> str:
        return self.thread_ts or ""


class _TrackingExecutor(ThreadPoolExecutor):
    """The lazy listeners' pool; counts queued + running work (`SlackBot.wait_idle`)."""

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix="slack-work")
        self._busy = 0
        self._cond = threading.Condition()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._cond:
            self._busy += 1
        try:
            fut = super().submit(fn, *args, **kwargs)
        except BaseException:
            self._done(None)
            raise
        fut.add_done_callback(self._done)
        return fut

    def _done(self, _fut: Any) -> None:
        with self._cond:
            self._busy -= 1
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self._busy <= 0, timeout)


class SlackBot:
    """The Slack side of one server: verifies and dispatches Slack's requests to the agent's dialogue,
    posts the replies and job progress, and runs inference on images attached in a thread."""

    def __init__(self, app: Any, settings: Any) -> None:
        self.app = app
        self.state = app.state
        self.settings = settings
        self.token: str = settings.slack.bot_token
        self.base_url = (settings.slack.api_base_url or DEFAULT_API_BASE_URL).rstrip("/") + "/"
        self.client = WebClient(
            token=self.token,
            base_url=self.base_url,
            timeout=30,
            retry_handlers=[ConnectionErrorRetryHandler(), RateLimitErrorRetryHandler(max_retry_count=2)],
        )
        self.verifier = SignatureVerifier(settings.slack.signing_secret)
        self.executor = _TrackingExecutor(max_workers=8)
        self.bolt = App(
            client=self.client,
            signing_secret=settings.slack.signing_secret,
            process_before_response=True,  # ack in the request, the work in lazy listeners
            token_verification_enabled=False,  # no auth.test at start-up (it runs on the first request)
            listener_executor=self.executor,
            logger=logging.getLogger("web.slack.bolt"),
        )
        self.progress = ProgressFollower(self, interval_s=settings.slack.progress_interval_s)
        self._locks: dict[tuple[str, str, str, int], threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self.bot_user_id: str | None = None
        self._register()

    # ------------------------------------------------------------------ app wiring
    @property
    def session_factory(self) -> sessionmaker[Session]:
        factory: sessionmaker[Session] = self.state.session_factory
        return factory

    def tool_context(self, db: Session, user: User) -> ToolContext:
        return ToolContext(
            db=db,
            user=user,
            storage=self.state.storage,
            work_dir=self.state.work_dir,
            limits=upload_limits(self.state.settings),
            links=link_signer(self.state),
            services=app_services(self.state),
        )

    async def start(self) -> None:
        from starlette.concurrency import run_in_threadpool

        def prune() -> None:
            with self.session_factory() as db:
                store.prune_claims(db)

        await run_in_threadpool(prune)
        await self.progress.start()

    async def close(self) -> None:
        await self.progress.close()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """True once no lazy listener is queued or running (tests)."""
        return self.executor.wait_idle(timeout)

    def verify(self, body: bytes, headers: Any) -> bool:
        """The Slack signature of a request: HMAC-SHA256 of ``v0:<timestamp>:<raw body>`` with the
        signing secret, timestamp within 5 minutes of now."""
        timestamp = headers.get("x-slack-request-timestamp")
        signature = headers.get("x-slack-signature")
        try:
            return bool(self.verifier.is_valid(body, timestamp, signature))
        except (ValueError, TypeError):
            return False

    def dispatch(
        self, body: bytes, query: str, headers: dict[str, str | Sequence[str]]
    ) -> tuple[int, dict[str, str], str]:
        """Run the bolt app on one verified request (blocking: call it in a worker thread)."""
        req = BoltRequest(body=body.decode("utf-8", errors="replace"), query=query, headers=headers)
        resp = self.bolt.dispatch(req)
        return resp.status, resp.first_headers_without_set_cookie(), resp.body

    def _register(self) -> None:
        bolt = self.bolt

        def ack_only(ack: Any) -> None:
            ack()

        bolt.event("app_mention")(ack=ack_only, lazy=[self.lazy_event])
        bolt.event("message")(ack=ack_only, lazy=[self.lazy_event])
        bolt.command("/train")(ack=ack_only, lazy=[self.lazy_command])
        bolt.action(M.CONFIRM_ACTION)(ack=ack_only, lazy=[self.lazy_action])
        bolt.action(M.CHANGE_ACTION)(ack=ack_only, lazy=[self.lazy_action])
        # any other event the app is subscribed to: acknowledged (so Slack does not retry it), ignored
        bolt.event(re.compile(r".*"))(ack_only)

        @bolt.error
        def on_error(error: Exception, body: dict[str, Any]) -> None:
            log.error("Slack: a listener failed on %s", (body or {}).get("type"), exc_info=error)

    # ------------------------------------------------------------------ Web API helpers
    def post(
        self, where: Where, text: str, blocks: list[dict[str, Any]] | None = None, *, private: bool = False
    ) -> str | None:
        """Post in the thread; `private` in a channel: ephemerally to the user. Returns the ts."""
        kwargs: dict[str, Any] = {"channel": where.channel, "text": M.clip(text, 3900)}
        if blocks:
            kwargs["blocks"] = blocks
        if where.thread_ts:
            kwargs["thread_ts"] = where.thread_ts
        try:
            if private and not where.is_dm:
                resp = self.client.chat_postEphemeral(user=where.user, **kwargs)
                return str(resp.get("message_ts") or "") or None
            resp = self.client.chat_postMessage(unfurl_links=False, unfurl_media=False, **kwargs)
            return str(resp.get("ts") or "") or None
        except (SlackApiError, SlackClientError) as exc:
            log.error("Slack: posting to %s failed: %s", where.channel, exc)
            if where.response_url:
                self.respond(where.response_url, text)
            return None

    def respond(self, response_url: str, text: str, *, replace: bool = False, blocks: Any = None) -> bool:
        """Answer through a `response_url` (slash commands, ephemeral messages' buttons)."""
        try:
            resp = WebhookClient(response_url, timeout=30).send(
                text=M.clip(text, 3900),
                blocks=blocks,
                response_type="ephemeral",
                replace_original=replace or None,
            )
        except Exception:
            log.exception("Slack: response_url call failed")
            return False
        if resp.status_code != 200:
            log.error("Slack: response_url answered %s: %s", resp.status_code, resp.body)
            return False
        return True

    def upload(self, where: Where, data: bytes, filename: str, title: str, comment: str) -> bool:
        """Upload a file into the thread with `comment` (files_upload_v2); False on failure (logged)."""
        try:
            self.client.files_upload_v2(
                channel=where.channel,
                thread_ts=where.thread_ts,
                file=data,
                filename=filename,
                title=title,
                initial_comment=M.clip(comment, 3900),
            )
        except (SlackApiError, SlackClientError):
            log.exception("Slack: uploading %s to %s failed", filename, where.channel)
            return False
        return True

    def where_of(self, info: dict[str, Any]) -> Where:
        channel = str(info["channel"])
        return Where("", channel, info.get("thread_ts"), "", channel.startswith("D"))

    def _lock(self, where: Where, user_id: int) -> threading.Lock:
        key = (where.team, where.channel, where.thread_key, user_id)
        with self._locks_guard:
            if len(self._locks) > 10_000:
                self._locks = {k: v for k, v in self._locks.items() if v.locked()}
            return self._locks.setdefault(key, threading.Lock())

    # ------------------------------------------------------------------ listeners (lazy)
    def lazy_event(self, body: dict[str, Any], context: Any) -> None:
        event = body.get("event") or {}
        try:
            self.on_event(body, event, context)
        except Exception:
            log.exception("Slack: handling event %s (%s) failed", body.get("event_id"), event.get("type"))
            channel = event.get("channel")
            if channel:
                thread = event.get("thread_ts") or (None if str(channel).startswith("D") else event.get("ts"))
                where = Where(str(body.get("team_id") or ""), channel, thread, str(event.get("user") or ""), False)
                self.post(where, M.say(detect_language(event.get("text") or ""), "error", what="event"))

    def lazy_command(self, body: dict[str, Any]) -> None:
        try:
            self.on_command(body)
        except Exception:
            log.exception("Slack: /train failed")
            if body.get("response_url"):
                self.respond(
                    str(body["response_url"]), M.say(detect_language(body.get("text") or ""), "error", what="/train")
                )

    def lazy_action(self, body: dict[str, Any]) -> None:
        try:
            self.on_action(body)
        except Exception:
            log.exception("Slack: a button click failed")
            if body.get("response_url"):
                self.respond(str(body["response_url"]), M.say("en", "error", what="button"))

    # ------------------------------------------------------------------ events
    def on_event(self, body: dict[str, Any], event: dict[str, Any], context: Any) -> None:
        kind = event.get("type")
        subtype = event.get("subtype")
        if kind not in ("app_mention", "message"):
            return
        if event.get("bot_id") or subtype not in (None, "file_share", "thread_broadcast"):
            return  # bots (ourselves included), edits, deletions, joins ...
        slack_user = event.get("user")
        channel = event.get("channel")
        ts = event.get("ts")
        if not slack_user or not channel or not ts:
            return
        bot_user = (context.get("bot_user_id") if context is not None else None) or self.bot_user_id
        if bot_user:
            self.bot_user_id = bot_user
        raw_text = str(event.get("text") or "")
        team = str(body.get("team_id") or event.get("team") or "")
        is_dm = event.get("channel_type") == "im" or str(channel).startswith("D")
        mentioned = kind == "app_mention" or bool(bot_user and f"<@{bot_user}>" in raw_text)
        thread_ts = event.get("thread_ts") or (None if is_dm else ts)
        where = Where(team, str(channel), thread_ts, str(slack_user), is_dm)
        # a plain channel message counts only as a reply in a thread where this person talks with the bot
        if (
            kind == "message"
            and not is_dm
            and not mentioned
            and (not event.get("thread_ts") or not self._in_bot_thread(where))
        ):
            return
        keys = [f"msg:{channel}:{ts}"]
        if body.get("event_id"):
            keys.append(f"event:{body['event_id']}")
        with self.session_factory() as db:
            if not store.claim(db, *keys):
                log.info("Slack: event %s (message %s) already handled; skipped", body.get("event_id"), ts)
                return
        self.handle_text(where, M.clean_text(raw_text, bot_user), files=event.get("files") or [])

    def _in_bot_thread(self, where: Where) -> bool:
        with self.session_factory() as db:
            user = slack_links.linked_user(db, where.team, where.user)
            return user is not None and store.is_bot_thread(db, where.team, where.channel, where.thread_key, user.id)

    def handle_text(self, where: Where, text: str, files: list[dict[str, Any]] | None = None) -> None:
        """One message from a person: link, help, or a dialogue turn (with an attached image)."""
        lang = detect_language(text) if text else "en"
        link = _LINK.match(text)
        if link:
            self.link(where, link.group(1), lang)
            return
        with self.session_factory() as db:
            user = slack_links.linked_user(db, where.team, where.user)
            user_id = user.id if user is not None else None
        if user_id is None:
            self.post(where, M.say(lang, "unlinked"), private=True)
            return
        if _HELP.match(text) or (not text and not files):
            self.post(where, M.say(lang, "help"), private=True)
            return
        image: bytes | None = None
        image_name: str | None = None
        images = [f for f in files or [] if str(f.get("mimetype") or "").startswith("image/")]
        if images:
            try:
                image, image_name = self.download(images[0])
            except DownloadError as exc:
                self.post(where, M.say(lang, "download_failed", reason=M.escape(str(exc))), private=True)
                return
        elif not text:
            return  # a non-image file without words: nothing to do
        self.converse(where, user_id, text or ("테스트해줘" if lang == "ko" else "test it"), image, image_name)

    # ------------------------------------------------------------------ the dialogue
    def converse(
        self,
        where: Where,
        user_id: int,
        text: str,
        image: bytes | None = None,
        image_name: str | None = None,
    ) -> ChatTurn | None:
        """One turn of the web chat's dialogue as the linked user, answered in the thread."""
        from web.routes.chat import get_planner, inference_getter

        with self._lock(where, user_id), self.session_factory() as db:
            user = db.get(User, user_id)
            if user is None or not user.is_active:
                self.post(where, M.say(detect_language(text), "unlinked"), private=True)
                return None
            ctx = self.tool_context(db, user)
            sid = store.thread_session(db, where.team, where.channel, where.thread_key, user.id)
            try:
                turn = handle_message(
                    ctx,
                    sid,
                    text[:4000],
                    llm=get_planner(self.state),
                    image=image,
                    image_name=image_name,
                    inference=inference_getter(self.app),
                )
            except ToolError as exc:
                db.rollback()
                self.post(where, M.escape(exc.message), private=True)
                return None
            store.remember_thread(db, where.team, where.channel, where.thread_key, user.id, turn.session_id)
            session = db.get(ChatSession, turn.session_id)
            turn_no = int(session.turns) if session is not None else 0
            private = not where.is_dm and self._is_private(db, user, turn)
            job_id = int(turn.job_id) if turn.job_id else None
            job_private = job_id is not None and not where.is_dm and self._job_on_private(db, user, job_id)
            self._answer(where, turn, turn_no, private, image)
            if job_id is not None and (turn.launched or _last_action(db, turn.session_id) == "resume"):
                self.start_progress(db, where, user, job_id, turn.language, job_private)
            return turn

    def _answer(self, where: Where, turn: ChatTurn, turn_no: int, private: bool, image: bytes | None) -> None:
        lang = turn.language
        text = M.escape(turn.reply)
        if turn.state == "confirming" and turn.pending == "confirm":
            self.post(where, text, M.confirmation_blocks(text, turn.session_id, turn_no, lang), private=private)
            return
        inference = (turn.summary or {}).get("inference")
        if image is not None and isinstance(inference, dict) and not private:
            png = self._render(image, inference, self.settings.render_font)
            if png is not None:
                title = M.say(lang, "prediction_title", job_id=turn.job_id)
                if self.upload(where, png, f"prediction-job-{turn.job_id}.png", title, text):
                    return
        hint = M.suggestions_line(turn.suggestions, lang) if turn.state in ("collecting", "launched") else None
        blocks = [M.section(text), M.context(hint)] if hint else None
        self.post(where, text, blocks, private=private)

    @staticmethod
    def _render(image: bytes, result: dict[str, Any], font_path: str | None) -> bytes | None:
        try:
            from trainer_runtime.inference.render import render

            return render(image, result, font_path=font_path)
        except Exception:
            log.exception("Slack: rendering the prediction failed")
            return None

    def _private_datasets(self, db: Session, user: User) -> list[tuple[str, str]]:
        rows = db.execute(
            select(Dataset.id, Dataset.name).where(Dataset.owner_id == user.id, Dataset.visibility != "public")
        ).all()
        return [(str(i), str(n)) for i, n in rows]

    def _is_private(self, db: Session, user: User, turn: ChatTurn) -> bool:
        """Whether the answer names one of the user's private datasets (or a job trained on one), or
        carries a signed download link (a credential of its user: nobody else in the channel sees it)."""
        if LINK_PREFIX in (turn.reply or ""):
            return True
        mine = self._private_datasets(db, user)
        if not mine:
            return False
        if turn.job_id and self._job_on_private(db, user, turn.job_id, mine):
            return True
        blob = json.dumps(turn.model_dump(), default=str, ensure_ascii=False)
        for ds_id, name in mine:
            if ds_id in blob or re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", blob, re.IGNORECASE):
                return True
        return False

    def _job_on_private(self, db: Session, user: User, job_id: int, mine: list[tuple[str, str]] | None = None) -> bool:
        job = db.get(Job, int(job_id))
        if job is None or job.owner_id != user.id or not job.dataset_id:
            return False
        ids = {i for i, _ in (mine if mine is not None else self._private_datasets(db, user))}
        return str(job.dataset_id) in ids

    def start_progress(self, db: Session, where: Where, user: User, job_id: int, lang: str, private: bool) -> None:
        """Post the job's progress message in the thread and follow the job."""
        job = db.get(Job, job_id)
        if job is None:
            return
        text, blocks = fold_view(db, job, lang, private=private).render()
        ts = self.post(where, text, blocks)
        if ts is None:
            return
        store.save_job_message(
            db,
            job_id=job_id,
            user_id=user.id,
            team_id=where.team,
            channel_id=where.channel,
            thread_ts=where.thread_key,
            message_ts=ts,
            language=lang,
            private=private,
        )
        self.progress.follow_threadsafe(job_id, shown=text)

    # ------------------------------------------------------------------ linking
    def link(self, where: Where, code: str, lang: str) -> None:
        with self.session_factory() as db:
            try:
                user = slack_links.redeem_link_code(db, where.team, where.user, code)
            except InvalidInputError as exc:
                text = M.say(lang, "link_failed", reason=M.escape(exc.message))
            else:
                text = M.say(lang, "linked", email=M.escape(user.email))
        if where.response_url:
            self.respond(where.response_url, text)
        else:
            self.post(where, text, private=True)

    # ------------------------------------------------------------------ files
    def _allowed_file_url(self, url: str) -> bool:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme == "https" and (host == "slack.com" or host.endswith(".slack.com")):
            return True
        api = urlsplit(self.base_url)
        return bool(host) and host == (api.hostname or "").lower() and parts.port == api.port
        # (the configured API host: a self-hosted proxy, or the tests' fake)

    def download(self, file: dict[str, Any]) -> tuple[bytes, str]:
        """The bytes of an attached image (`url_private_download`, bot token)."""
        url = str(file.get("url_private_download") or file.get("url_private") or "")
        name = str(file.get("name") or file.get("title") or "image")[:255]
        if not url or not self._allowed_file_url(url):
            raise DownloadError("the file is not on Slack")
        limit = min(MAX_IMAGE_BYTES, int(self.state.settings.max_file_bytes))
        if int(file.get("size") or 0) > limit:
            raise DownloadError(f"the image is larger than {limit // 1024**2} MB")
        try:
            with httpx.stream(
                "GET", url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30.0, follow_redirects=True
            ) as resp:
                if resp.status_code != 200:
                    raise DownloadError(f"Slack answered {resp.status_code}")
                ctype = resp.headers.get("content-type", "")
                if ctype.startswith("text/html"):
                    raise DownloadError("the bot may not read files here (it needs the files:read scope)")
                chunks: list[bytes] = []
                total = 0
                for chunk in resp.iter_bytes():
                    total += len(chunk)
                    if total > limit:
                        raise DownloadError(f"the image is larger than {limit // 1024**2} MB")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            log.warning("Slack: downloading %s failed: %s", url, exc)
            raise DownloadError("the download failed") from exc
        return b"".join(chunks), name

    # ------------------------------------------------------------------ slash command
    def on_command(self, body: dict[str, Any]) -> None:
        text = M.clean_text(str(body.get("text") or ""), self.bot_user_id)
        lang = detect_language(text) if text else "en"
        channel = str(body.get("channel_id") or "")
        is_dm = channel.startswith("D") or body.get("channel_name") == "directmessage"
        where = Where(
            str(body.get("team_id") or ""),
            channel,
            None,
            str(body.get("user_id") or ""),
            is_dm,
            response_url=body.get("response_url"),
        )
        reply = self._respond_or_post(where)
        link = _LINK.match(text)
        if link:
            self.link(where, link.group(1), lang)
            return
        if not text or _HELP.match(text):
            reply(M.say(lang, "help"))
            return
        if _UNLINK.match(text):
            with self.session_factory() as db:
                n = slack_links.unlink(db, where.user, where.team) + slack_links.unlink(db, where.user, "")
            reply(M.say(lang, "unlinked_done" if n else "not_linked_anyway"))
            return
        with self.session_factory() as db:
            user = slack_links.linked_user(db, where.team, where.user)
            user_id = user.id if user is not None else None
        if user_id is None:
            reply(M.say(lang, "unlinked"))
            return
        if not is_dm:
            try:
                root = self.client.chat_postMessage(channel=channel, text=M.say(lang, "thread_root", user=where.user))
            except SlackApiError as exc:
                log.info("Slack: /train in %s: cannot post there (%s)", channel, exc.response.get("error"))
                reply(M.say(lang, "not_in_channel"))
                return
            where = Where(where.team, channel, str(root["ts"]), where.user, False, where.response_url)
        self.converse(where, user_id, text)

    def _respond_or_post(self, where: Where) -> Callable[[str], None]:
        def reply(text: str) -> None:
            if where.response_url and self.respond(where.response_url, text):
                return
            self.post(where, text, private=True)

        return reply

    # ------------------------------------------------------------------ buttons
    def on_action(self, body: dict[str, Any]) -> None:
        actions = body.get("actions") or []
        if not actions:
            return
        action = actions[0]
        action_id = action.get("action_id")
        sid, turn_no = M.parse_action_value(str(action.get("value") or ""))
        slack_user = str((body.get("user") or {}).get("id") or "")
        team = str((body.get("team") or {}).get("id") or (body.get("user") or {}).get("team_id") or "")
        channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or "")
        container = body.get("container") or {}
        message = body.get("message") or {}
        message_ts = str(container.get("message_ts") or message.get("ts") or "")
        is_ephemeral = bool(container.get("is_ephemeral"))
        is_dm = channel.startswith("D")
        thread = message.get("thread_ts") or container.get("thread_ts") or (None if is_dm else message_ts or None)
        where = Where(team, channel, thread, slack_user, is_dm, response_url=body.get("response_url"))
        with self.session_factory() as db:
            user = slack_links.linked_user(db, team, slack_user)
            session = db.get(ChatSession, sid) if sid else None
            user_id = user.id if user is not None else None
            lang = session.language if session is not None else "en"
            owner_ok = session is not None and user is not None and session.user_id == user.id
            current = session is not None and session.state == "confirming" and int(session.turns or 0) == turn_no
        if user_id is None:
            self.post(where, M.say(lang, "unlinked"), private=True)
            return
        if not owner_ok:
            self.post(where, M.say(lang, "not_owner"), private=True)
            return
        if not current:
            self.post(where, M.say(lang, "stale"), private=True)
            return
        with self.session_factory() as db:
            if not store.claim(db, f"answer:{channel}:{message_ts}"):
                log.info("Slack: confirmation %s already answered; click ignored", message_ts)
                return
        confirm = action_id == M.CONFIRM_ACTION
        note = M.say(lang, "confirmed_by" if confirm else "change_by", user=slack_user)
        text, blocks = M.answered_blocks(message, note)
        if is_ephemeral and where.response_url:
            self.respond(where.response_url, text, replace=True, blocks=blocks)
        elif message_ts:
            try:
                self.client.chat_update(channel=channel, ts=message_ts, text=text or note, blocks=blocks)
            except (SlackApiError, SlackClientError) as exc:
                log.warning("Slack: removing the buttons of %s failed: %s", message_ts, exc)
        if confirm:
            self.converse(where, user_id, "네" if lang == "ko" else "yes")
        else:
            self.post(where, M.say(lang, "change_prompt"), private=is_ephemeral)


def _last_action(db: Session, session_id: str) -> str | None:
    """The dialogue action of the session's newest answer ("launched", "resume", ...)."""
    data = db.scalar(
        select(ChatMessage.data)
        .where(ChatMessage.session_id == session_id, ChatMessage.role == "assistant")
        .order_by(ChatMessage.id.desc())
        .limit(1)
    )
    return str(data.get("action")) if isinstance(data, dict) and data.get("action") else None
