"""What the Slack bot keeps in the database: delivery dedupe, the chat session of each
thread, and the progress message of each job.

    claim(db, *keys) -> bool         True for the first delivery carrying any of `keys`; False when
                                     one was already taken (a Slack retry, the same message arriving
                                     as `app_mention` and as `message`, a second button click)
    prune_claims(db, older_than)     drop old claims (Slack retries within minutes)
    thread_session(db, ...) / remember_thread(db, ...)   the ChatSession of a thread and person
    save_job_message / job_message / following_jobs / set_job_message   progress messages

Every function commits its own writes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tools.db.models import ChatSession, SlackEvent, SlackJobMessage, SlackThread

MAX_KEY = 200


def claim(db: Session, *keys: str) -> bool:
    """Take every key in one transaction; False (nothing written) when any was taken before."""
    wanted = list(dict.fromkeys(k[:MAX_KEY] for k in keys if k))
    if not wanted:
        return True
    if db.scalar(select(SlackEvent.key).where(SlackEvent.key.in_(wanted)).limit(1)) is not None:
        return False
    now = datetime.now(UTC)
    for key in wanted:
        db.add(SlackEvent(key=key, created_at=now))
    try:
        db.commit()
    except IntegrityError:  # a concurrent delivery took one of them first
        db.rollback()
        return False
    return True


def prune_claims(db: Session, older_than: timedelta = timedelta(days=2)) -> int:
    """Forget the claimed event keys older than `older_than` (Slack stops retrying long before); returns how
    many were deleted."""
    result = db.execute(delete(SlackEvent).where(SlackEvent.created_at < datetime.now(UTC) - older_than))
    db.commit()
    return int(getattr(result, "rowcount", 0) or 0)


def thread_session(db: Session, team_id: str, channel_id: str, thread_ts: str, user_id: int) -> str | None:
    """The chat session id of this thread and user (None: none yet, or it was deleted)."""
    row = db.scalar(
        select(SlackThread).where(
            SlackThread.team_id == team_id,
            SlackThread.channel_id == channel_id,
            SlackThread.thread_ts == thread_ts,
            SlackThread.user_id == user_id,
        )
    )
    if row is None:
        return None
    if db.get(ChatSession, row.session_id) is None:
        return None
    return row.session_id


def remember_thread(db: Session, team_id: str, channel_id: str, thread_ts: str, user_id: int, session_id: str) -> None:
    """Record (or move) the session of a thread and user."""
    row = db.scalar(
        select(SlackThread).where(
            SlackThread.team_id == team_id,
            SlackThread.channel_id == channel_id,
            SlackThread.thread_ts == thread_ts,
            SlackThread.user_id == user_id,
        )
    )
    if row is not None:
        if row.session_id == session_id:
            return
        row.session_id = session_id
    else:
        db.add(
            SlackThread(
                team_id=team_id,
                channel_id=channel_id,
                thread_ts=thread_ts,
                user_id=user_id,
                session_id=session_id,
                created_at=datetime.now(UTC),
            )
        )
    db.commit()


def is_bot_thread(db: Session, team_id: str, channel_id: str, thread_ts: str, user_id: int) -> bool:
    """Whether this user already talks with the bot in this thread."""
    return thread_session(db, team_id, channel_id, thread_ts, user_id) is not None


def save_job_message(
    db: Session,
    *,
    job_id: int,
    user_id: int,
    team_id: str,
    channel_id: str,
    thread_ts: str,
    message_ts: str,
    language: str,
    private: bool,
) -> SlackJobMessage:
    """The job's progress message (one per job: a resumed job moves it to the new thread)."""
    row = db.scalar(select(SlackJobMessage).where(SlackJobMessage.job_id == job_id))
    now = datetime.now(UTC)
    if row is None:
        row = SlackJobMessage(job_id=job_id, created_at=now, last_seq=0)
        db.add(row)
    row.user_id = user_id
    row.team_id = team_id
    row.channel_id = channel_id
    row.thread_ts = thread_ts
    row.message_ts = message_ts
    row.language = language if language in ("en", "ko") else "en"
    row.private = private
    row.status = "following"
    row.updated_at = now
    db.commit()
    return row


def job_message(db: Session, job_id: int) -> SlackJobMessage | None:
    """The progress message kept for job `job_id`, or None when it has none."""
    return db.scalar(select(SlackJobMessage).where(SlackJobMessage.job_id == job_id))


def following_jobs(db: Session) -> list[int]:
    """Jobs whose progress message is still being kept up to date."""
    return [int(j) for j in db.scalars(select(SlackJobMessage.job_id).where(SlackJobMessage.status == "following"))]


def set_job_message(db: Session, job_id: int, **values: Any) -> None:
    """Update `status` / `last_seq` of a job's progress message."""
    row = db.scalar(select(SlackJobMessage).where(SlackJobMessage.job_id == job_id))
    if row is None:
        return
    for k, v in values.items():
        setattr(row, k, v)
    row.updated_at = datetime.now(UTC)
    db.commit()
