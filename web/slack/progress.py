"""One progress message per job in its Slack thread, kept up to date while the job runs, then the
final summary with the metric chart.

`ProgressFollower` is a long-lived resource of the app: `start()` in the lifespan (it resumes every
job whose message is still "following" — a restarted server picks up where the last one stopped),
`close()` on shutdown (cancels and awaits its tasks; the rows stay "following" for the next start).
`follow_threadsafe(job_id)` is called from the bot's worker threads after a launch.

Per job, one asyncio task reads the job's events exactly as `WS /ws/jobs/{id}` does (subscribe to
the event bus first, replay the store, then live; `web.routes.job_events.event_stream`) and folds
them into a `JobView`; a writer task sends the view with `chat.update` at most once per
`interval_s` (SLACK_PROGRESS_INTERVAL_S, default 1 s), always the newest view (coalescing: ten
epochs that end within one interval cost one update), and only when its text changed. With several
jobs followed at once the interval stretches so that all of them together stay under
`WORKSPACE_UPDATES_PER_MINUTE` (chat.update is a Tier 3 method, about 50 calls a minute). The view
starts from the events already stored (so the message never steps back to an older state, and a
restart resumes where it was), then follows live. When the job ends the
message shows the final state and the thread gets a summary — status, duration, the best
checkpoint's epoch and metrics, the last metrics — with the chart PNG (`web.slack.chart`)
uploaded by `files_upload_v2`; a failed upload is logged and the summary posted as text.
Slack API errors are logged, never raised into the loop; a broken event stream is retried with
backoff and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from slack_sdk.errors import SlackApiError, SlackClientError
from starlette.concurrency import run_in_threadpool

from agent import replies as R
from tools import events as event_store
from tools import jobs
from tools import slack_state as store
from tools.db.models import Job, User
from tools.errors import ToolError
from tools.eventbus import SlowConsumer
from tools.jobs import JobMetrics, JobOut
from trainer_runtime.events import TERMINAL_STATUSES
from web.slack import messages as M
from web.slack.chart import metric_chart

if TYPE_CHECKING:
    from slack_sdk import WebClient
    from sqlalchemy.orm import Session, sessionmaker

    from tools.context import ToolContext

log = logging.getLogger(__name__)

MAX_STREAM_RETRIES = 6
WORKSPACE_UPDATES_PER_MINUTE = 45
"""chat.update is a Tier 3 method (about 50 calls a minute per workspace): the budget shared by
the progress messages of every job followed at once."""


class ProgressHost(Protocol):
    """What `ProgressFollower` uses of the bot (`web.slack.bot.SlackBot` is one). A Protocol, so that
    this module does not import `bot`, which imports it. `where` values are the bot's `Where`."""

    state: Any
    client: WebClient

    @property
    def session_factory(self) -> sessionmaker[Session]: ...

    def tool_context(self, db: Session, user: User) -> ToolContext: ...

    def where_of(self, info: dict[str, Any]) -> Any: ...

    def upload(self, where: Any, data: bytes, filename: str, title: str, comment: str) -> bool: ...

    def post(
        self, where: Any, text: str, blocks: list[dict[str, Any]] | None = None, *, private: bool = False
    ) -> str | None: ...


class ProgressFollower:
    """Keeps each followed job's Slack progress message up to date while the job runs, then posts its
    summary and chart; one per bot, started and closed with the app."""

    def __init__(self, bot: ProgressHost, interval_s: float = 1.0) -> None:
        self.bot = bot
        self.interval_s = interval_s
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closing = False
        self.updates = 0  # chat.update calls sent (tests and logs)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        ids = await run_in_threadpool(self._following)
        for job_id in ids:
            self._spawn(job_id)
        if ids:
            log.info("Slack: following the progress of jobs %s again", ids)

    async def close(self) -> None:
        self.closing = True
        tasks = list(self.tasks.values())
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await t
                except Exception:
                    log.exception("Slack progress task failed while closing")
        self.tasks.clear()

    def follow_threadsafe(self, job_id: int, shown: str | None = None) -> None:
        """Start following `job_id` (from any thread); `shown`: the text its message shows now."""
        loop = self.loop
        if loop is None or loop.is_closed() or self.closing:
            log.warning("Slack: not following job %s: the progress follower is not running", job_id)
            return
        loop.call_soon_threadsafe(self._spawn, int(job_id), shown)

    def _spawn(self, job_id: int, shown: str | None = None) -> None:
        current = self.tasks.get(job_id)
        if current is not None and not current.done():
            return
        assert self.loop is not None
        task = self.loop.create_task(self._run(job_id, shown), name=f"slack-progress-{job_id}")
        self.tasks[job_id] = task
        task.add_done_callback(functools.partial(self._finished, job_id))

    def _finished(self, job_id: int, task: asyncio.Task[None]) -> None:
        if self.tasks.get(job_id) is task:
            del self.tasks[job_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("Slack: following job %s failed", job_id, exc_info=task.exception())

    async def wait(self, job_id: int, timeout: float) -> None:
        """Until the job's follower task is done (tests)."""
        task = self.tasks.get(job_id)
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), timeout)

    # ------------------------------------------------------------------ one job
    def _following(self) -> list[int]:
        with self.bot.session_factory() as db:
            return store.following_jobs(db)

    def _load(self, job_id: int) -> tuple[dict[str, Any], M.JobView] | None:
        with self.bot.session_factory() as db:
            rec = store.job_message(db, job_id)
            job = db.get(Job, job_id)
            if rec is None or job is None:
                return None
            info = {
                "job_id": job_id,
                "user_id": rec.user_id,
                "channel": rec.channel_id,
                "thread_ts": rec.thread_ts or None,
                "ts": rec.message_ts,
                "lang": rec.language,
                "private": rec.private,
            }
            return info, fold_view(db, job, rec.language, private=rec.private)

    def _job_status(self, job_id: int) -> str | None:
        with self.bot.session_factory() as db:
            job = db.get(Job, job_id)
            return job.status if job is not None else None

    async def _run(self, job_id: int, shown: str | None = None) -> None:
        loaded = await run_in_threadpool(self._load, job_id)
        if loaded is None:
            log.warning("Slack: job %s has no progress message to follow", job_id)
            return
        info, view = loaded
        dirty = asyncio.Event()
        dirty.set()
        writer = asyncio.create_task(self._writer(info, view, dirty, shown), name=f"slack-progress-writer-{job_id}")
        try:
            ended = await self._read(job_id, view, dirty)
            status = await run_in_threadpool(self._job_status, job_id)
            if not ended or status not in TERMINAL_STATUSES:
                log.info("Slack: stopped following job %s (status %s); a restart resumes it", job_id, status)
                return
            view.finished = True
            dirty.set()
            await writer
        finally:
            if not writer.done():
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer
        await run_in_threadpool(self._summary, info, view)

    async def _read(self, job_id: int, view: M.JobView, dirty: asyncio.Event) -> bool:
        """Fold the job's events into `view` until its terminal status (True), or until the bus
        closed / the retries ran out (False)."""
        from web.routes.job_events import event_stream, get_bus, stream_settings

        state = self.bot.state
        failures = 0
        while not self.closing:
            _, queue_size = stream_settings(state)
            try:
                async with get_bus(state).subscribe(job_id, queue_size=queue_size) as sub:
                    async for event in event_stream(state, job_id, view.last_seq, sub, heartbeat_s=None):
                        view.apply(event)
                        dirty.set()
                    return not sub.closed or view.status in TERMINAL_STATUSES
            except SlowConsumer:
                log.info("Slack: progress of job %s fell behind; reading on from seq %s", job_id, view.last_seq)
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                log.exception("Slack: reading the events of job %s failed (try %s)", job_id, failures)
                if failures >= MAX_STREAM_RETRIES:
                    return False
                await asyncio.sleep(min(30.0, 0.5 * 2**failures))
        return False

    async def _writer(
        self, info: dict[str, Any], view: M.JobView, dirty: asyncio.Event, shown: str | None = None
    ) -> None:
        """Send the newest view at most once per interval (coalescing), when its text changed."""
        last_text = shown
        while True:
            await dirty.wait()
            dirty.clear()
            text, blocks = view.render()
            if text != last_text:
                await run_in_threadpool(self._update, info, text, blocks, view.last_seq)
                last_text = text
            if view.finished and not dirty.is_set():
                return
            await asyncio.sleep(self.pace())

    def pace(self) -> float:
        """Seconds between two updates of one message: `interval_s`, stretched when several jobs are
        followed at once so that the workspace stays under WORKSPACE_UPDATES_PER_MINUTE."""
        active = len(self.tasks)
        if active <= 1:
            return self.interval_s
        return max(self.interval_s, active * 60.0 / WORKSPACE_UPDATES_PER_MINUTE)

    def _update(self, info: dict[str, Any], text: str, blocks: list[dict[str, Any]], last_seq: int) -> None:
        try:
            self.bot.client.chat_update(channel=info["channel"], ts=info["ts"], text=text, blocks=blocks)
            self.updates += 1
        except (SlackApiError, SlackClientError) as exc:
            log.warning("Slack: chat.update of job %s's progress failed: %s", info["job_id"], exc)
            return
        try:
            with self.bot.session_factory() as db:
                store.set_job_message(db, info["job_id"], last_seq=last_seq)
        except Exception:
            log.exception("Slack: recording the progress of job %s failed", info["job_id"])

    # ------------------------------------------------------------------ the end
    def _summary(self, info: dict[str, Any], view: M.JobView) -> None:
        job_id = int(info["job_id"])
        lang = str(info["lang"])
        with self.bot.session_factory() as db:
            if not store.claim(db, f"summary:{job_id}:{view.last_seq}"):
                return  # another replica (or an earlier run of this one) posted it
            user = db.get(User, info["user_id"])
            if user is None:
                return
            ctx = self.bot.tool_context(db, user)
            try:
                job = jobs.get_job(ctx, job_id)
                m = jobs.job_metrics(ctx, job_id)
            except ToolError:
                log.exception("Slack: job %s vanished before its summary", job_id)
                return
            text = summary_text(job, m, lang, private=bool(info["private"]))
            store.set_job_message(db, job_id, status="done", last_seq=view.last_seq)
        png = None
        if m.epochs:
            try:
                png = metric_chart(
                    m.epochs,
                    dict[str, Sequence[Any]](m.series),
                    title=M.say(lang, "chart_title", job_id=job_id, model=job.model_name),
                    best_epoch=m.best_epoch,
                )
            except Exception:
                log.exception("Slack: drawing the chart of job %s failed", job_id)
        where = self.bot.where_of(info)
        if png is not None and self.bot.upload(
            where,
            png,
            f"job-{job_id}-metrics.png",
            M.say(lang, "chart_title", job_id=job_id, model=job.model_name),
            text,
        ):
            return
        if png is not None:
            text = f"{text}\n{M.say(lang, 'chart_failed')}"
        self.bot.post(where, text)


def fold_view(db: Any, job: Job, lang: str, *, private: bool = False) -> M.JobView:
    """The progress view of `job` from its stored events (the message shows what the events say,
    so the first live update never steps back to an older state; a restart resumes from here)."""
    dataset = M.say(lang, "private_dataset") if private else job.dataset_name
    view = M.JobView(job_id=job.id, model=job.model_name, dataset=dataset, lang=lang, epochs=job.epochs or 0)
    while True:
        page = event_store.list_events(db, job.id, after=view.last_seq)
        for event in page:
            view.apply(event)
        if len(page) < event_store.MAX_LIST_LIMIT:
            return view


def summary_text(job: JobOut, m: JobMetrics, lang: str, *, private: bool = False) -> str:
    """The final summary of a job (mrkdwn)."""
    status = str(job.status)
    dataset = M.say(lang, "private_dataset") if private else str(job.dataset_name or "?")
    what = M.escape(M.say(lang, "on", model=job.model_name, dataset=dataset))
    done = int(job.epochs_completed or (m.epochs or [0])[-1] or 0)
    duration = _duration(job.started_at, job.finished_at)
    lines = [
        f"{M.STATUS_EMOJI.get(status, '')} "
        + M.say(
            lang,
            "summary_head",
            job=M.say(lang, "job", job_id=job.id),
            status=R.status_label(status, lang),
            what=what,
            epochs=M.say(lang, "epochs_done", done=done, total=job.epochs or done),
            duration=R.duration(duration, lang) if duration is not None else "?",
        )
    ]
    epochs = list(m.epochs)
    series = dict(m.series)
    best_epoch = m.best_epoch
    if m.best_metric is not None and best_epoch is not None:
        lines.append(
            M.say(
                lang,
                "summary_best",
                epoch=best_epoch,
                name=M.escape(str(m.best_metric_name)),
                value=R.number(m.best_metric),
            )
        )
        if best_epoch in epochs:
            i = epochs.index(best_epoch)
            at_best = {k: v[i] for k, v in series.items() if i < len(v) and v[i] is not None}
            if at_best:
                lines.append(M.say(lang, "summary_best_metrics", metrics=M.escape(R.metrics_line(at_best, limit=10))))
    if epochs and (best_epoch is None or best_epoch != epochs[-1]):
        last = {k: v[-1] for k, v in series.items() if v and v[-1] is not None}
        if last:
            lines.append(M.say(lang, "summary_last_metrics", metrics=M.escape(R.metrics_line(last, limit=10))))
    ckpts = [f"`{c.name}`" + (f" (epoch {c.epoch})" if c.epoch is not None else "") for c in job.checkpoints]
    if ckpts:
        lines.append(M.say(lang, "summary_checkpoints", names=", ".join(ckpts)))
    if job.error:
        lines.append(M.say(lang, "error_line", error=M.escape(str(job.error)[:400])))
    if status == "completed" and job.checkpoints:
        lines.append(M.say(lang, "summary_next"))
    return "\n".join(lines)


def _duration(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (b - a).total_seconds())


__all__ = ["ProgressFollower", "fold_view", "summary_text"]
