"""What the Slack bot says: its own sentences in English and Korean (the dialogue's replies come
from `agent.replies`), Block Kit payloads (confirmation buttons, progress message) and the
progress view of a job built from its events.

Block Kit action ids: ``vta_confirm`` and ``vta_change``; their `value` is
``<chat session id>:<turn number>`` so that a click on an older confirmation (the request was
corrected since) is recognised as out of date.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from agent import replies as R
from trainer_runtime.events import TERMINAL_STATUSES

CONFIRM_ACTION = "vta_confirm"
CHANGE_ACTION = "vta_change"
SECTION_LIMIT = 2900  # Slack: 3000 characters per section text
TEXT_LIMIT = 3900

TEXTS: dict[str, dict[str, str]] = {
    "unlinked": {
        "en": (
            "I don't know who you are here yet, so I can't show or start anything. Link your Slack account "
            "to your Vision Training Agent account first: sign in on the web app and ask for a Slack link "
            "code (`POST /api/v1/slack/link`), then send `/train link CODE` here or `link CODE` to me in a "
            "direct message. An administrator can also link you (`vision-agent slack link`)."
        ),
        "ko": (
            "아직 누구신지 몰라서 아무것도 보여드리거나 시작할 수 없어요. 먼저 Slack 계정을 Vision Training "
            "Agent 계정과 연결해 주세요: 웹에서 로그인해 Slack 연결 코드를 받고(`POST /api/v1/slack/link`), "
            "여기서 `/train link 코드` 또는 저에게 DM으로 `link 코드`를 보내세요. 관리자가 연결해 줄 수도 "
            "있어요(`vision-agent slack link`)."
        ),
    },
    "linked": {
        "en": "Linked: here you act as *{email}*. Mention me with a training request to start.",
        "ko": "연결했어요: 여기서는 *{email}* 계정으로 동작합니다. 학습 요청과 함께 저를 멘션해 보세요.",
    },
    "link_failed": {"en": "Could not link: {reason}.", "ko": "연결하지 못했어요: {reason}."},
    "unlinked_done": {
        "en": "Unlinked: this Slack account no longer acts as a platform user.",
        "ko": "연결을 해제했어요.",
    },
    "not_linked_anyway": {"en": "This Slack account was not linked.", "ko": "연결된 계정이 없어요."},
    "help": {
        "en": (
            "*Vision Training Agent in Slack*\n"
            "• Mention me with a request: _@me train resnet18 on digits for 5 epochs_; I answer in the thread, "
            "keep talking there (no need to mention me again).\n"
            "• `/train <request>` starts a thread the same way; in a DM just write to me.\n"
            "• Confirm with the *Confirm* button; *Change* lets you correct the request first.\n"
            "• I keep one progress message per job up to date and post a summary with a metric chart at the end.\n"
            "• Attach an image in the thread and say _test it_ to run your model on it.\n"
            "• `/train link CODE` links your account (get the code from the web app); `/train unlink` undoes it."
        ),
        "ko": (
            "*Slack의 Vision Training Agent*\n"
            "• 저를 멘션해서 요청하세요: _@me digits로 resnet18 5에폭 학습해줘_ — 스레드에서 답하고, 이후에는 "
            "스레드에서 멘션 없이 대화하면 됩니다.\n"
            "• `/train <요청>`도 같은 방식으로 스레드를 시작합니다. DM에서는 그냥 말하면 돼요.\n"
            "• *확인* 버튼으로 시작하고, *변경*으로 먼저 요청을 고칠 수 있어요.\n"
            "• 작업마다 진행 메시지 하나를 계속 갱신하고, 끝나면 지표 차트와 요약을 올립니다.\n"
            "• 스레드에 이미지를 첨부하고 _테스트해줘_라고 하면 모델로 추론해 드려요.\n"
            "• `/train link 코드`로 계정을 연결하고(코드는 웹에서), `/train unlink`로 해제합니다."
        ),
    },
    "confirm_button": {"en": "Confirm", "ko": "확인"},
    "change_button": {"en": "Change", "ko": "변경"},
    "confirmed_by": {"en": ":white_check_mark: Confirmed by <@{user}>", "ko": ":white_check_mark: <@{user}> 님이 확인"},
    "change_by": {"en": ":pencil2: <@{user}> wants to change something", "ko": ":pencil2: <@{user}> 님이 변경 요청"},
    "change_prompt": {
        "en": (
            "What should I change? Reply in this thread, e.g. `epochs 5`, `use resnet50 instead`, "
            "`image size 64`, or `cancel`."
        ),
        "ko": (
            "무엇을 바꿀까요? 이 스레드에 답해 주세요. 예: `에폭은 5로`, `resnet50으로 바꿔줘`, "
            "`이미지 크기 64`, `취소`."
        ),
    },
    "not_owner": {
        "en": "Only the person who asked can answer this confirmation.",
        "ko": "요청한 사람만 이 확인에 답할 수 있어요.",
    },
    "stale": {
        "en": "This confirmation is out of date: use the newest one in the thread.",
        "ko": "지난 확인 메시지예요: 스레드의 가장 최근 확인을 사용해 주세요.",
    },
    "error": {
        "en": "Sorry, something went wrong on my side ({what}). Please try again in a moment.",
        "ko": "죄송해요, 제 쪽에서 문제가 생겼어요({what}). 잠시 후 다시 시도해 주세요.",
    },
    "not_in_channel": {
        "en": "I'm not in this channel: invite me (`/invite @Vision Training Agent`) or send me a direct message.",
        "ko": "이 채널에 제가 없어요: 초대하거나(`/invite @Vision Training Agent`) DM을 보내 주세요.",
    },
    "thread_root": {
        "en": ":speech_balloon: <@{user}> started a training conversation with `/train`; I answer in this thread.",
        "ko": ":speech_balloon: <@{user}> 님이 `/train`으로 학습 대화를 시작했어요. 이 스레드에서 답합니다.",
    },
    "download_failed": {
        "en": "I could not read the attached image: {reason}.",
        "ko": "첨부한 이미지를 읽지 못했어요: {reason}.",
    },
    "private_dataset": {"en": "a private dataset", "ko": "비공개 데이터셋"},
    "job": {"en": "Job {job_id}", "ko": "{job_id}번 작업"},
    "on": {"en": "{model} on {dataset}", "ko": "{dataset}의 {model}"},
    "epoch": {"en": "epoch {epoch}/{epochs}", "ko": "에폭 {epoch}/{epochs}"},
    "batch": {"en": "batch {batch}/{batches}", "ko": "배치 {batch}/{batches}"},
    "eta": {"en": "ETA {eta}", "ko": "남은 시간 {eta}"},
    "queue": {"en": "waiting for a free slot", "ko": "빈 슬롯을 기다리는 중"},
    "error_line": {"en": "Error: {error}", "ko": "오류: {error}"},
    "summary_head": {
        "en": "*{job} {status}* — {what}, {epochs} in {duration}.",
        "ko": "*{job} {status}* — {what}, {epochs}, {duration} 걸림.",
    },
    "epochs_done": {"en": "{done}/{total} epochs", "ko": "{done}/{total} 에폭"},
    "summary_best": {
        "en": "Best checkpoint (`best.pt`): epoch {epoch}, {name} *{value}*.",
        "ko": "최고 체크포인트(`best.pt`): 에폭 {epoch}, {name} *{value}*.",
    },
    "summary_best_metrics": {"en": "Metrics of that epoch: {metrics}.", "ko": "그 에폭의 지표: {metrics}."},
    "summary_last_metrics": {"en": "Last metrics: {metrics}.", "ko": "마지막 지표: {metrics}."},
    "summary_checkpoints": {"en": "Checkpoints: {names}.", "ko": "체크포인트: {names}."},
    "summary_next": {
        "en": "Attach an image in this thread and say _test it_ to try the model.",
        "ko": "이 스레드에 이미지를 첨부하고 _테스트해줘_라고 하면 모델을 시험해 볼 수 있어요.",
    },
    "chart_title": {
        "en": "Job {job_id} · {model} · metrics per epoch",
        "ko": "{job_id}번 작업 · {model} · 에폭별 지표",
    },
    "chart_failed": {"en": "(the chart could not be uploaded)", "ko": "(차트를 올리지 못했어요)"},
    "try": {"en": "Try: {items}", "ko": "예: {items}"},
    "prediction_title": {"en": "prediction of job {job_id}", "ko": "{job_id}번 작업의 예측"},
}

STATUS_EMOJI = {
    "queued": ":hourglass:",
    "preparing": ":gear:",
    "running": ":arrows_counterclockwise:",
    "completed": ":white_check_mark:",
    "failed": ":x:",
    "stopped": ":octagonal_sign:",
    "interrupted": ":warning:",
    "resuming": ":repeat:",
}


def say(lang: str | None, key: str, **values: Any) -> str:
    """The Slack text `key` in `lang` (English when it has no such translation), formatted with `values`."""
    entry = TEXTS[key]
    return entry.get(R.lang_of(lang), entry["en"]).format(**values)


def escape(text: str) -> str:
    """Plain text for Slack mrkdwn: &, < and > escaped (Slack's three control characters)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def clip(text: str, limit: int = SECTION_LIMIT) -> str:
    """`text` cut to `limit` characters (an ellipsis marking the cut), for Slack's per-block limits."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


_MENTION = re.compile(r"<@[A-Z0-9]+(?:\|[^>]*)?>")
_LINK = re.compile(r"<((?:https?|mailto):[^>|]+)(?:\|([^>]*))?>")


def clean_text(text: str, bot_user_id: str | None = None) -> str:
    """A message as the dialogue should read it: the bot's mention removed (other mentions too),
    links as their label or URL, Slack's escapes undone, whitespace collapsed."""
    if bot_user_id:
        text = text.replace(f"<@{bot_user_id}>", " ")
    text = _MENTION.sub(" ", text)
    text = _LINK.sub(lambda m: m.group(2) or m.group(1), text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return " ".join(text.split())


def section(text: str) -> dict[str, Any]:
    """A Block Kit section block with `text` (mrkdwn, clipped to Slack's limit)."""
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text)}}


def context(text: str) -> dict[str, Any]:
    """A Block Kit context block (small grey text) with `text`."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, 2900)}]}


def suggestions_line(suggestions: list[str], lang: str) -> str | None:
    """The "try: ..." line with up to six suggested messages as code spans; None when there are none."""
    items = [s for s in suggestions if s][:6]
    if not items:
        return None
    return say(lang, "try", items=" · ".join(f"`{escape(s)}`" for s in items))


def confirmation_blocks(text: str, session_id: str, turn: int, lang: str) -> list[dict[str, Any]]:
    """The confirmation message: `text` with the Confirm and Change buttons, each carrying the session
    and turn it answers ("<session_id>:<turn>")."""
    value = f"{session_id}:{turn}"
    return [
        section(text),
        {
            "type": "actions",
            "block_id": "vta_confirmation",
            "elements": [
                {
                    "type": "button",
                    "action_id": CONFIRM_ACTION,
                    "style": "primary",
                    "text": {"type": "plain_text", "text": say(lang, "confirm_button")},
                    "value": value,
                },
                {
                    "type": "button",
                    "action_id": CHANGE_ACTION,
                    "text": {"type": "plain_text", "text": say(lang, "change_button")},
                    "value": value,
                },
            ],
        },
    ]


def answered_blocks(message: dict[str, Any], note: str) -> tuple[str, list[dict[str, Any]]]:
    """The confirmation message without its buttons, with `note` under it."""
    blocks = [b for b in (message.get("blocks") or []) if isinstance(b, dict) and b.get("type") == "section"]
    text = str(message.get("text") or "")
    if not blocks:
        blocks = [section(escape(text) or "…")]
    return text, [*blocks, context(note)]


def parse_action_value(value: str) -> tuple[str, int]:
    """The (session id, turn) a button's value carries; turn -1 when the value is malformed."""
    sid, _, turn = (value or "").rpartition(":")
    try:
        return sid, int(turn)
    except ValueError:
        return value, -1


# ------------------------------------------------------------------------------ progress view


@dataclass
class JobView:
    """What the progress message shows, folded from the job row and its events (contract 4)."""

    job_id: int
    model: str
    dataset: str
    lang: str = "en"
    status: str = "queued"
    epoch: int = 0
    epochs: int = 0
    batch: int | None = None
    batches: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    eta_s: float | None = None
    error: str | None = None
    last_seq: int = 0
    finished: bool = False

    def apply(self, event: dict[str, Any]) -> None:
        data = event.get("data") or {}
        kind = event.get("type")
        if isinstance(event.get("seq"), int):
            self.last_seq = max(self.last_seq, int(event["seq"]))
        if kind == "status" and data.get("status") and not data.get("ignored"):
            self.status = str(data["status"])
            if self.status in TERMINAL_STATUSES:
                self.eta_s = None
                self.batch = self.batches = None
            if self.status == "failed" and data.get("error"):
                self.error = str(data.get("error"))
        elif kind == "epoch":
            if isinstance(data.get("epoch"), int):
                self.epoch = max(self.epoch, int(data["epoch"]))
            if isinstance(data.get("epochs"), int):
                self.epochs = int(data["epochs"])
            if isinstance(data.get("metrics"), dict) and data["metrics"]:
                self.metrics = dict(data["metrics"])
            self.eta_s = _num(data.get("eta_s"))
            self.batch = self.batches = None
        elif kind == "batch":
            self.batch = data.get("batch") if isinstance(data.get("batch"), int) else None
            self.batches = data.get("batches") if isinstance(data.get("batches"), int) else None
            if isinstance(data.get("epochs"), int):
                self.epochs = int(data["epochs"])
            if data.get("eta_s") is not None:
                self.eta_s = _num(data.get("eta_s"))
        elif kind == "error":
            self.error = str(data.get("message") or data.get("error") or data)[:500]

    def render(self) -> tuple[str, list[dict[str, Any]]]:
        """(notification text, blocks) of the progress message."""
        lang = self.lang
        head = (
            f"{STATUS_EMOJI.get(self.status, ':grey_question:')} *{say(lang, 'job', job_id=self.job_id)}* · "
            f"{escape(say(lang, 'on', model=self.model, dataset=self.dataset))} — "
            f"*{R.status_label(self.status, lang)}*"
        )
        lines = [head]
        parts = []
        if self.epochs:
            parts.append(
                f"`{bar(self.epoch, self.epochs)}` " + say(lang, "epoch", epoch=self.epoch, epochs=self.epochs)
            )
        if self.batch and self.batches and self.status not in TERMINAL_STATUSES:
            parts.append(say(lang, "batch", batch=self.batch, batches=self.batches))
        if parts:
            lines.append(" · ".join(parts))
        if self.metrics:
            lines.append(escape(" · ".join(f"{k} {R.number(v)}" for k, v in list(self.metrics.items())[:8])))
        if self.status == "queued":
            lines.append(say(lang, "queue"))
        if self.eta_s is not None and self.status not in TERMINAL_STATUSES:
            lines.append(say(lang, "eta", eta=R.duration(self.eta_s, lang)))
        if self.error:
            lines.append(say(lang, "error_line", error=escape(self.error[:300])))
        text = "\n".join(lines)
        return clip(text, TEXT_LIMIT), [section(text)]


def bar(done: int, total: int, width: int = 10) -> str:
    """A text progress bar of `width` cells for `done` of `total` (all empty when the total is unknown)."""
    if total <= 0:
        return "░" * width
    n = max(0, min(width, round(width * done / total)))
    return "█" * n + "░" * (width - n)


def _num(v: Any) -> float | None:
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None
