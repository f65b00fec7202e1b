"""What the dialogue's state machine (`agent.dialogue.machine`) and its command handlers
(`agent.dialogue.commands`) share: the `Turn` a turn produces, yes / no recognition, and
`DialogueBase`, the per-turn object over the persisted `ChatSession` with its helpers (replies in
the turn's language, the session's intent and memory, asking a question, listing datasets).
See `docs/architecture.md`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from agent import replies as R
from agent import wording as W
from agent.dialogue import patterns as P
from agent.dialogue.answers import NO, WAIT, YES, answer_kind
from agent.parser import detect_language, find_named_dataset, normalise
from agent.toolkit import (
    InferenceScope,
    list_visible_datasets,
)
from tools.context import ToolContext
from tools.db.models import ChatSession
from tools.intent import TrainingIntent

STATES = ("idle", "collecting", "confirming", "launched")


@dataclass
class Turn:
    """What one turn produced (the session row holds state, intent, pending, language, jobs)."""

    reply: str
    suggestions: list[str] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    job_id: int | None = None
    launched: bool = False
    action: str = ""


def split_words(low: str) -> list[str]:
    """The words of a lower-cased message, punctuation dropped."""
    return P.PUNCT.sub(" ", low).split()


def looks_like_command(low: str) -> bool:
    """The message asks for a command (progress, metrics, resume, inference, help, a listing), so a
    yes word in it ("ok show metrics") is not an answer."""
    if any(rx.search(low) for rx in (P.PROGRESS, P.METRICS, P.RESUME, P.INFER, P.HELP)):
        return True
    return bool((P.MODELS.search(low) or P.DATASETS.search(low)) and P.LISTQ_STRICT.search(low))


def is_yes(low: str) -> bool:
    """A yes in natural words ("응 해줘", "좋아 시작해", "go ahead", `agent.dialogue.answers`) that
    is not also a command ("진행 상황 알려줘", "ok show metrics")."""
    return answer_kind(low) == YES and not looks_like_command(low)


def is_no(low: str) -> bool:
    """A no (아니/취소/하지 마/no/cancel/don't ...), e.g. to a confirmation."""
    return answer_kind(low) == NO


def is_wait(low: str) -> bool:
    """A "not yet" (잠깐만/아직/나중에/wait/hold on ...): nothing is launched or dropped."""
    return answer_kind(low) == WAIT


def intent_dict(intent: dict[str, Any]) -> dict[str, Any]:
    """The full TrainingIntent JSON of a (partial) stored intent."""
    try:
        return TrainingIntent(**intent).model_dump()
    except ValidationError:
        return TrainingIntent().model_dump() | {k: v for k, v in intent.items() if k in TrainingIntent.model_fields}


class DialogueBase:
    """One turn over `session` (mutated in place; the caller commits): the state and helpers the
    state machine and the command handlers share."""

    def __init__(self, ctx: ToolContext, session: ChatSession, text: str, scope: InferenceScope | None = None) -> None:
        self.ctx = ctx
        self.scope = scope or InferenceScope()
        self.image = self.scope.image
        self.s = session
        self.text = text
        self.low = normalise(text).lower()
        self.lang = detect_language(text, previous=session.language)
        self.s.language = self.lang
        self.notes: list[str] = []
        self.default_epochs_taken = False
        self._visible_names: list[str] | None = None

    def t(self, key: str, **values: Any) -> str:
        return R.say(self.lang, key, **values)

    @property
    def intent(self) -> dict[str, Any]:
        return dict(self.s.intent or {})

    def set_intent(self, intent: dict[str, Any]) -> None:
        self.s.intent = {k: v for k, v in intent.items() if v not in (None, [], {})}

    def ctxmem(self) -> dict[str, Any]:
        return dict(self.s.context or {})

    def remember(self, **values: Any) -> None:
        mem = self.ctxmem()
        for k, v in values.items():
            if v is None:
                mem.pop(k, None)
            else:
                mem[k] = v
        self.s.context = mem

    def ask(self, pending: str, text: str, suggestions: list[str], **extra: Any) -> Turn:
        self.s.state = "collecting"
        self.s.pending = pending
        self.remember(offered=suggestions, **extra)
        return Turn(self.join(text), suggestions=suggestions, action=f"ask_{pending}")

    def join(self, *parts: str) -> str:
        return "\n".join([*self.notes, *[p for p in parts if p]])

    def task(self, task: str | None) -> str:
        return R.task_label(task, self.lang)

    def user_weights_line(self, n: int, c: dict[str, Any]) -> str:
        created = str(c.get("created_at") or "")[:16].replace("T", " ")
        return self.t(
            "user_weights_line",
            n=n,
            id=c["id"],
            name=c["name"],
            model=c["model_name"],
            sha=str(c.get("sha256") or "")[:12],
            created=created,
        )

    def visible_dataset_names(self) -> list[str]:
        """The names of the datasets this user can see (looked up once per turn)."""
        if self._visible_names is None:
            self._visible_names = [str(d["name"]) for d in list_visible_datasets(self.ctx)]
        return self._visible_names

    def dataset_named_in_text(self) -> str | None:
        """A dataset the user can see that this message names, without a cue word (the parser may not
        know an unusual name such as "pets" in "resnet18 모델로 pets 학습"); case, separators and a
        Korean particle do not matter (`agent.parser.find_named_dataset`)."""
        return find_named_dataset(self.text, self.visible_dataset_names())

    def compat_reason(self, ds: dict[str, Any], task: str, res: dict[str, Any]) -> str:
        """Why `ds` can or cannot train `task` (`res`: its compatibility) in the turn's language: the
        tool's sentence in English, one composed from the dataset's per-task statuses in Korean."""
        if self.lang != "ko":
            return str(res.get("reason") or "")
        return W.compat_reason_ko(
            str(ds["name"]), dict(ds.get("tasks") or {}), task, str(res.get("status")), res.get("conversion")
        )

    def dataset_lines(self, items: list[dict[str, Any]]) -> list[str]:
        out = []
        for n, d in enumerate(items, 1):
            classes = d["class_names"]
            shown = ", ".join(classes[:8]) + (" …" if len(classes) > 8 else "") if classes else "-"
            out.append(
                self.t(
                    "dataset_line",
                    n=n,
                    name=d["name"],
                    images=d["num_images"],
                    classes=shown,
                    public=self.t("public_mark") if not d["is_owner"] else "",
                )
            )
        return out

    def cancel(self) -> Turn:
        had = self.s.state in ("collecting", "confirming")
        self.set_intent({})
        self.s.state = "launched" if self.s.job_ids else "idle"
        self.s.pending = None
        self.remember(offered=None, dataset_id=None)
        return Turn(self.t("cancelled" if had else "nothing_to_cancel"), action="cancel")
