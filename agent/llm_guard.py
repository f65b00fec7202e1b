"""The guard between a language model and the person (the policy is in `agent.llm`'s docstring).

    known_for(ctx) -> Known                        the user's datasets and jobs, read once per turn
    wants_intent(message, parser_slots, state) -> bool
                                                   a turn for a TrainingIntent proposal only?
    merge_proposal(message, parser_slots, proposal, intent, known) -> Merge
                                                   the model's slots that validate, and why the others
                                                   were dropped
    check_reply(text, message=..., ...) -> str | None
                                                   why a free-text answer must not reach the user
                                                   (None: it may)

Everything here is deterministic and offline: the model's output is checked against the message
itself, the user's own data (as the tools see it) and the tool results of the turn, never against
another model. Reasons are short fixed words: they are the `reason` label of the
`vta_llm_guard_discards_total` counter (`tools.telemetry`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from agent import lexicon as lx
from agent.parser import normalise
from tools import catalog
from tools.context import ToolContext

# ---------------------------------------------------------------------------------------- reasons

# a proposed slot
UNKNOWN_DATASET = "unknown_dataset"
UNKNOWN_MODEL = "unknown_model"
UNKNOWN_JOB = "unknown_job"
UNGROUNDED = "ungrounded"  # nothing in the message says it
CONFLICT = "conflict"  # it contradicts a slot the parser read (or the model's own model)
PARSER_WINS = "parser_wins"  # the parser read this slot in the message, with another value
# a free-text reply
PROMPT_ECHO = "prompt_echo"
CODE = "code"
LANGUAGE = "language"
NO_TOOL_RESULT = "no_tool_result"  # an answer not phrased from any tool result of the turn
RULES_ANSWERED = "rules_answered"  # the deterministic dialogue had an answer of its own

REPLY_REASONS = (PROMPT_ECHO, CODE, UNKNOWN_DATASET, UNKNOWN_MODEL, UNKNOWN_JOB, LANGUAGE, NO_TOOL_RESULT)

_HANGUL = re.compile(r"[가-힣ㄱ-ㅎ]")


@dataclass
class Known:
    """What exists for the chat's user: dataset names (lower-cased -> as stored) and job ids."""

    datasets: dict[str, str] = field(default_factory=dict)
    job_ids: frozenset[int] = frozenset()

    def dataset(self, name: str) -> str | None:
        return self.datasets.get(name.strip().lower())


def known_for(ctx: ToolContext) -> Known:
    """The user's visible datasets and own jobs, as the tools return them (nothing else exists)."""
    from agent.toolkit import list_visible_datasets
    from tools.jobs import list_jobs

    datasets = {str(d["name"]).lower(): str(d["name"]) for d in list_visible_datasets(ctx)}
    ids: set[int] = set()
    offset = 0
    while True:
        page = list_jobs(ctx, offset=offset, limit=100)
        ids.update(int(j.id) for j in page.items)
        offset += len(page.items)
        if not page.items or offset >= page.total or offset >= 1000:
            break
    return Known(datasets, frozenset(ids))


# ---------------------------------------------------------------------------------------- numbers

_NUM_RE = re.compile(rf"{lx.NUM_START}(?P<v>{lx.NUM})")
_SCI_RE = re.compile(r"^(?P<a>.*?)\s*[x×*]\s*10\s*\^\s*(?P<b>[-+]?\d+)$")


def _value(raw: str) -> float | None:
    text = raw.strip()
    try:
        if m := _SCI_RE.match(text):
            return float(m.group("a")) * 10.0 ** int(m.group("b"))
        if text.startswith("10") and "^" in text:
            return float(10 ** float(text.split("^", 1)[1]))
        return float(text)
    except (ValueError, OverflowError):
        return None


def _numbers(low: str) -> list[tuple[float, int, int]]:
    out = []
    for m in _NUM_RE.finditer(low):
        v = _value(m.group("v"))
        if v is not None:
            out.append((v, m.start("v"), m.end("v")))
    return out


def _same(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12)


_SLOT_KEYS: dict[str, re.Pattern[str]] = {
    "epochs": re.compile(rf"{lx.EPOCH_KEY}|{lx.EPOCH_UNIT}|번|회"),
    "batch_size": re.compile(lx.BATCH_KEY),
    "image_size": re.compile(rf"{lx.IMGSZ_KEY}|px|pixels?|픽셀|이미지|image|img|\d\s*[x×]\s*\d"),
    "learning_rate": re.compile(lx.LR_KEY),
    "warmup_epochs": re.compile(lx.WARMUP_KEY),
    "patience": re.compile(lx.PATIENCE_KEY),
    "weight_decay": re.compile(lx.WD_KEY),
    "momentum": re.compile(lx.MOMENTUM_KEY),
    "label_smoothing": re.compile(lx.LS_KEY),
}
_WINDOW = 28  # characters each side of a number where its slot's key word must be


def _key_pattern(slot: str) -> re.Pattern[str]:
    found = _SLOT_KEYS.get(slot)
    if found is not None:
        return found
    words = r"[\s_-]*".join(re.escape(w) for w in slot.split("_"))
    return re.compile(rf"(?<![a-z0-9]){words}")


def _parser_numbers(parser_slots: dict[str, Any]) -> list[float]:
    """The numbers the parser already bound to a slot (a model may not bind them again)."""
    values: list[Any] = [parser_slots.get(k) for k in ("epochs", "batch_size", "image_size", "learning_rate")]
    values += list((parser_slots.get("advanced_config") or {}).values())
    for k in ("init_from_job", "init_weights"):
        values.append(parser_slots.get(k))
    return [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]


def _number_grounded(low: str, slot: str, value: Any, bound: list[float]) -> bool:
    """`value` is written in the message near a word for `slot`, and that occurrence is not one the
    parser bound to another slot."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    occurrences = [(s, e) for v, s, e in _numbers(low) if _same(v, float(value))]
    if len(occurrences) <= sum(1 for b in bound if _same(b, float(value))):
        return False
    key = _key_pattern(slot)
    return any(key.search(low[max(0, start - _WINDOW) : end + _WINDOW]) for start, end in occurrences)


# ---------------------------------------------------------------------------------------- slots


def _squash(text: str) -> str:
    return re.sub(r"[^0-9a-z가-힣]", "", text.lower())


def _word_in(low: str, word: str) -> bool:
    return bool(re.search(rf"(?<![0-9a-z]){re.escape(word.lower())}(?![0-9a-z])", low))


@dataclass
class Merge:
    """The model's slots that validated (`extras`) and the others with their reason (`dropped`)."""

    extras: dict[str, Any] = field(default_factory=dict)
    dropped: list[tuple[str, str]] = field(default_factory=list)


def _task_said(low: str, task: str) -> bool:
    return any(name == task and rx.search(low) for name, rx in lx.TASK_RES)


def _framework_said(low: str, framework: str) -> bool:
    return any(name == framework and rx.search(low) for name, rx in lx.FRAMEWORK_RES)


def _preset_said(low: str, preset: str) -> bool:
    return any(
        (m.lastgroup or "").rstrip("2") == preset and m.group(m.lastgroup or 0) for m in lx.PRESET_RE.finditer(low)
    )


class _Checker:
    def __init__(self, message: str, parser_slots: dict[str, Any], known: Known, outputs: list[str]) -> None:
        self.low = normalise(message).lower()
        self.outputs = outputs
        self.squashed = _squash(self.low)
        self.parser = parser_slots
        self.known = known
        self.bound = _parser_numbers(parser_slots)

    def model(self, value: Any) -> tuple[dict[str, Any], str | None]:
        info = catalog.find_model(str(value))
        if info is None:
            return {}, UNKNOWN_MODEL
        short = info.name.split("/")[-1]
        if _squash(short) not in self.squashed:
            return {}, UNGROUNDED
        for slot, implied in (("framework", info.framework), ("task_type", info.task_type)):
            if self.parser.get(slot) not in (None, implied):
                return {}, CONFLICT
        return {"model_name": info.name, "framework": info.framework, "task_type": info.task_type}, None

    def one(self, slot: str, value: Any) -> tuple[Any, str | None]:
        low = self.low
        if slot == "dataset":
            name = self.known.dataset(str(value))
            if name is None:
                return None, UNKNOWN_DATASET
            returned = re.compile(rf'"name":\s*"{re.escape(name)}"')
            said = _word_in(low, name) or any(returned.search(o) for o in self.outputs)
            return (name, None) if said else (None, UNGROUNDED)
        if slot in ("epochs", "batch_size", "image_size", "learning_rate"):
            return (value, None) if _number_grounded(low, slot, value, self.bound) else (None, UNGROUNDED)
        if slot == "task_type":
            return (value, None) if _task_said(low, str(value)) else (None, UNGROUNDED)
        if slot == "framework":
            return (value, None) if _framework_said(low, str(value)) else (None, UNGROUNDED)
        if slot == "preset":
            return (value, None) if _preset_said(low, str(value)) else (None, UNGROUNDED)
        if slot == "class_names":
            names = [str(c) for c in value]
            ok = names and all(c.strip() and c.lower() in low for c in names)
            return (names, None) if ok else (None, UNGROUNDED)
        if slot == "init_from_job":
            if int(value) not in self.known.job_ids:
                return None, UNKNOWN_JOB
            return (
                (value, None)
                if _number_grounded(low, "job", value, self.bound) or _word_in(low, str(value))
                else (None, UNGROUNDED)
            )
        if slot == "init_checkpoint":
            words = {"best": ("best", "베스트", "최고"), "last": ("last", "마지막", "최종")}[str(value)]
            return (value, None) if any(w in low for w in words) else (None, UNGROUNDED)
        return None, UNGROUNDED  # init_weights and anything new: the parser's alone

    def advanced(self, config: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        have = self.parser.get("advanced_config") or {}
        accepted: dict[str, Any] = {}
        reasons: list[str] = []
        for key, value in config.items():
            if key in have:
                if have[key] != value:
                    reasons.append(PARSER_WINS)
                continue
            if isinstance(value, str):
                ok = _word_in(self.low, value) and bool(_key_pattern(key).search(self.low) or key in _VALUE_KEYS)
            elif isinstance(value, bool):
                ok = bool(_key_pattern(key).search(self.low))
            else:
                ok = _number_grounded(self.low, key, value, self.bound)
            if ok:
                accepted[key] = value
            else:
                reasons.append(UNGROUNDED)
        return accepted, reasons


_VALUE_KEYS = frozenset({"optimizer", "scheduler"})  # "adamw" alone names the optimizer


def merge_proposal(
    message: str,
    parser_slots: dict[str, Any],
    proposal: dict[str, Any],
    intent: dict[str, Any],
    known: Known,
    tool_outputs: Iterable[str] = (),
) -> Merge:
    """The slots of the model's `proposal` that may join the parser's for this message.

    A slot the parser read in the message is the parser's; a slot equal to the session's intent
    (`intent`) is the model repeating the state and adds nothing; anything else must validate (a
    dataset of the user's, a catalog model, a job of the user's) and be said in the message: a
    number next to its slot's word and not bound by the parser to another slot, a task, framework
    or difficulty word, the class names, the model's name (a dataset may instead be one a tool
    returned this turn, `tool_outputs`). A model the parser did not read brings its own framework
    and task."""
    check = _Checker(message, parser_slots, known, [str(o) for o in tool_outputs])
    out = Merge()
    model_value = proposal.get("model_name")
    if model_value and parser_slots.get("model_name") not in (None, model_value):
        out.dropped.append(("model_name", PARSER_WINS))
    elif model_value and "model_name" not in parser_slots and model_value != intent.get("model_name"):
        slots, why = check.model(model_value)
        if why:
            out.dropped.append(("model_name", why))
        else:
            out.extras.update({k: v for k, v in slots.items() if k not in parser_slots})
    for slot, value in proposal.items():
        if slot == "model_name" or value in (None, [], {}) or slot in out.extras:
            continue
        if slot == "advanced_config":
            accepted, reasons = check.advanced(dict(value))
            out.dropped += [(slot, r) for r in reasons]
            if accepted:
                out.extras[slot] = {**accepted, **(parser_slots.get(slot) or {})}
            continue
        if slot in parser_slots:
            if parser_slots[slot] != value:
                out.dropped.append((slot, PARSER_WINS))
            continue
        if intent.get(slot) == value:
            continue
        if slot in ("framework", "task_type") and out.extras.get(slot) not in (None, value):
            out.dropped.append((slot, CONFLICT))
            continue
        accepted_value, why = check.one(slot, value)
        if why:
            out.dropped.append((slot, why))
        else:
            out.extras[slot] = accepted_value
    return out


_TRAIN_WORD = re.compile(r"\btrain|\bfine-?tune|학습|훈련|트레이닝|\bfit\b")


def wants_intent(message: str, parser_slots: dict[str, Any], state: str | None) -> bool:
    """Whether the rules read `message` as a training request or a part of one (slots, a training
    word, or any message while a request is being completed or confirmed): then the model is asked
    for a TrainingIntent proposal only, not for a free answer."""
    return bool(parser_slots) or state in ("collecting", "confirming") or bool(_TRAIN_WORD.search(message.lower()))


# ---------------------------------------------------------------------------------------- replies

_PROMPT_MARKERS = (
    "dialogue state",
    "trainingintent",
    "training intent:",
    "waiting for:",
    "current intent",
    "jobs of this chat",
    "you are the assistant",
    "submit_training_intent",
)
_CODE_RE = re.compile(
    r"```|^\s*(?:def\s+\w+\s*\(|class\s+\w+\s*[:(]|import\s+\w|from\s+[\w.]+\s+import\s|>>>|\$\s+\w)"
    r"|\bprint\s*\(|\b\w+\s*=\s*\w+(?:\.\w+)*\(",
    re.M,
)
_JOB_RE = re.compile(r"(?:\bjobs?\s*(?:id\s*)?#?\s*|#|작업\s*#?\s*|잡\s*#?\s*)(\d+)|(\d+)\s*번\s*(?:작업|잡|job)")
_MODEL_FAMILIES = (
    r"yolo(?:v|x)?|resnet|resnext|efficientnet|mobilenet(?:v\d)?|convnext|vit|deit|rt-?detr|detr|swin|vgg|densenet"
    r"|inception(?:v\d)?|regnet[xy]?|alexnet|unet|bert|gpt|llama|clip|dino(?:v\d)?|sam"
)
# a family name standing alone or followed by its size/version ("vital" and "clipboard" are words)
_MODEL_RE = re.compile(rf"(?<![\w/.-])(?:[a-z0-9][\w.-]*/)?(?:{_MODEL_FAMILIES})(?![a-z])[\w.-]*")
_FAMOUS_DATASETS = re.compile(
    r"(?<![\w-])(?:image\s*net(?:-?\d+k?)?|cifar[\s-]*\d+|mnist|fashion[\s-]*mnist|coco(?:[\s-]*\d+)?|pascal[\s-]*voc"
    r"|voc\d*|kitti|cityscapes|ade20k|celeb[\s-]*a|svhn|stl[\s-]*10|places\s*365|open\s*images|lvis|dota)(?![\w-])"
)
_DATASET_CUE = re.compile(
    r"(?P<a>[\w.-]+)\s+(?:dataset|data\s*set|데이터\s*셋|데이터)(?![a-z])"
    r"|(?:dataset|data\s*set|데이터\s*셋)\s+(?:named\s+|called\s+|:\s*)?['\"`]?(?P<b>[\w.-]+)"
    r"|['\"`](?P<c>[\w.-]{2,})['\"`]",
    re.I,
)
_NOT_NAMES = frozenset(
    [
        "a",
        "an",
        "the",
        "your",
        "my",
        "our",
        "this",
        "that",
        "these",
        "those",
        "new",
        "own",
        "custom",
        "training",
        "train",
        "validation",
        "val",
        "test",
        "same",
        "public",
        "demo",
        "any",
        "each",
        "which",
        "what",
        "image",
        "images",
        "labeled",
        "unlabeled",
        "small",
        "large",
        "big",
        "good",
        "best",
        "first",
        "last",
        "one",
        "another",
        "other",
        "이",
        "그",
        "저",
        "내",
        "당신의",
        "새",
        "학습",
        "공개",
        "데모",
        "어떤",
        "각",
    ]
)


def _shingles(text: str, n: int = 6) -> set[tuple[str, ...]]:
    words = re.findall(r"[\w가-힣]+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def _echoes(text: str, system_prompt: str) -> bool:
    low = text.lower()
    if any(marker in low for marker in _PROMPT_MARKERS):
        return True
    return bool(_shingles(text) & _shingles(system_prompt))


def _catalog_model(token: str) -> bool:
    return catalog.find_model(token.strip()) is not None


def _name_like(token: str, *, quoted: bool) -> bool:
    """A token that reads as a name (quoted, or with a digit, a separator or a capital inside), not
    a plain word ("the classification dataset")."""
    if not token or token.lower() in _NOT_NAMES or token.isdigit():
        return False
    return quoted or bool(re.search(r"[\d_.\-]", token) or re.search(r"[A-Z]", token[1:]))


def _invented(text: str, corpus: str, known: Known) -> str | None:
    """The reason when `text` names a dataset, model or job that neither the user's data nor the
    turn's tool results (nor the user's message: `corpus`) has."""
    low = normalise(text).lower()
    squashed_corpus = _squash(corpus)
    for m in _JOB_RE.finditer(low):
        job = int(m.group(1) or m.group(2))
        if job not in known.job_ids and not re.search(rf"(?<!\d){job}(?!\d)", corpus):
            return UNKNOWN_JOB
    for m in _MODEL_RE.finditer(low):
        token = m.group(0)
        if not (_catalog_model(token) or _squash(token) in squashed_corpus):
            return UNKNOWN_MODEL
    for m in _FAMOUS_DATASETS.finditer(low):
        if known.dataset(m.group(0)) is None and _squash(m.group(0)) not in squashed_corpus:
            return UNKNOWN_DATASET
    for m in _DATASET_CUE.finditer(normalise(text)):
        name = (m.group("a") or m.group("b") or m.group("c") or "").strip(".-")
        if not _name_like(name, quoted=bool(m.group("c"))):
            continue
        if known.dataset(name) is None and name.lower() not in corpus and not _catalog_model(name):
            return UNKNOWN_DATASET
    return None


def check_reply(
    text: str,
    *,
    message: str,
    language: str,
    system_prompt: str,
    tool_outputs: Iterable[str],
    known: Known | Callable[[], Known],
) -> str | None:
    """Why the model's free-text `text` must not be shown (None: it may be): it repeats the system
    prompt, carries code, names a dataset, model or job that no tool returned for this user (nor the
    message), is not in the user's `language`, or was written without any tool result to phrase."""
    outputs = [str(o) for o in tool_outputs]
    if _echoes(text, system_prompt):
        return PROMPT_ECHO
    if _CODE_RE.search(text):
        return CODE
    corpus = "\n".join([normalise(message).lower(), *(o.lower() for o in outputs)])
    why = _invented(text, corpus, known() if callable(known) else known)
    if why:
        return why
    has_hangul = bool(_HANGUL.search(text))
    if (language == "ko") != has_hangul:
        return LANGUAGE
    if not outputs:
        return NO_TOOL_RESULT
    return None
