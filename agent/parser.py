"""Deterministic bilingual parser: a free-text training request -> `TrainingIntent`.

Pure functions, no I/O, no LLM. The text is normalised once (NFKC, lower case, a space between
Hangul and Latin/digits, number words -> digits with the same width), then read slot by slot.
Each reader *masks* what it consumed (replaces it with NUL characters of the same length), so a
number that belongs to a model name ("yolo11n", "resnet50", "ViT-B/16") or to a setting
("warmup 3 epochs") is never read again as something else, and a mask also acts as a barrier
between words.

Order: hub ids and model names -> quoted dataset -> framework words -> scheduler / optimizer /
augmentations -> advanced numbers -> batch / lr / image size / epochs -> difficulty -> dataset
-> task words -> class names. The building blocks are public for the dialogue:
`extract_slots(text)` returns only what the text gives (for merging corrections such as
"에폭은 30으로" or "use yolo11s instead"), `detect_language(text)` says "ko" or "en".

The model-name reader is `agent.modelnames` (with the generated spoken aliases of `agent.aliases`),
the class-name reader `agent.classnames`, the dataset-name reader `agent.datasetnames`, and the
vocabularies are `agent.lexicon` (word tables in `agent/lexicon_data/`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any, Literal

from agent import lexicon as lx
from agent.classnames import find_classes as _find_classes
from agent.datasetnames import find_dataset as _find_dataset
from agent.datasetnames import find_named_dataset
from agent.datasetnames import find_quoted_dataset as _find_quoted_dataset
from agent.modelnames import find_models as _find_models
from agent.modelnames import resolve_model as _resolve_model
from tools.intent import TrainingIntent

__all__ = ["detect_language", "extract_slots", "find_named_dataset", "normalise", "parse_intent"]

_MASK = lx.MASK
_QUOTES = str.maketrans(
    {
        "“": '"',
        "”": '"',
        "„": '"',
        "‘": "'",
        "’": "'",
        "´": "'",
        "「": '"',
        "」": '"',
        "『": '"',
        "』": '"',
        "«": '"',
        "»": '"',
        "、": ",",
        "。": ".",
        "～": "~",
    }
)
_SPACE_KO_LATIN = re.compile(
    r"(?<=[\uac00-\ud7a3\u3131-\u318e])(?=[A-Za-z0-9\"'`])|(?<=[A-Za-z0-9\"'`%])(?=[\uac00-\ud7a3\u3131-\u318e])"
)
_WS = re.compile(r"\s+")
_E_NOTATION = re.compile(rf"{lx.NUM_START}(?P<v>\d+(?:\.\d+)?e-\d+)(?![\d.])")
_KO_DIFFICULTY = re.compile(r"난이도\s*(?:은|는|를|을|[:=])?\s*(?P<v>상|중|하)(?![가-힣])")
_SENTENCE_PUNCT = lx.SENTENCE_PUNCT


# --------------------------------------------------------------------------- text


def normalise(text: str) -> str:
    """NFKC, unified quotes, a space between Hangul and Latin/digits, single spaces (case kept)."""
    s = unicodedata.normalize("NFKC", text).translate(_QUOTES)
    s = _SPACE_KO_LATIN.sub(" ", s)
    return _WS.sub(" ", s).strip()


def _lower_same_width(s: str) -> str:
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in s)


def _words_to_number(words: str) -> int | None:
    total = current = 0
    seen = False
    for w in re.split(r"[\s-]+", words):
        if w in ("a", "and", ""):
            continue
        if w in lx.WORD_UNITS:
            current += lx.WORD_UNITS[w]
        elif w in lx.WORD_TENS:
            current += lx.WORD_TENS[w]
        elif w == "hundred":
            current = max(current, 1) * 100
        elif w == "thousand":
            total += max(current, 1) * 1000
            current = 0
        else:
            return None
        seen = True
    return total + current if seen else None


def _digits_for_words(low: str) -> str:
    def repl(m: re.Match[str]) -> str:
        n = _words_to_number(m.group(0))
        if n is None:
            return m.group(0)
        digits = str(n)
        return digits + " " * (len(m.group(0)) - len(digits)) if len(digits) <= len(m.group(0)) else m.group(0)

    return lx.NUMBER_WORDS_RE.sub(repl, low)


def _digits_for_korean(low: str) -> str:
    """ "서른 번" -> "30 번", "열 에폭" -> "10에폭", "다섯 종류" -> "5  종류": Korean native numbers
    before a counter become digits of the same width (a following space is taken when needed)."""

    def repl(m: re.Match[str]) -> str:
        tens, units = m.group("tens"), m.group("units")
        if not tens and not units:
            return m.group(0)
        digits = str(lx.KO_TENS.get(tens or "", 0) + lx.KO_UNITS.get(units or "", 0))
        width = len(m.group(0))
        return digits + " " * (width - len(digits)) if len(digits) <= width else m.group(0)

    return lx.KO_NUMBER_RE.sub(repl, low) if lx.HANGUL_RE.search(low) else low


class _Text:
    """The normalised text (`orig`, case kept) and its lower-case working copy (`low`), same width."""

    def __init__(self, text: str) -> None:
        self.orig = normalise(text)
        self.low = _digits_for_korean(_digits_for_words(_lower_same_width(self.orig)))

    def mask(self, start: int, end: int) -> None:
        if end > start:
            self.low = self.low[:start] + _MASK * (end - start) + self.low[end:]

    def free(self, start: int, end: int) -> bool:
        return _MASK not in self.low[start:end]


def _to_float(raw: str) -> float | None:
    s = re.sub(r"\s+", "", raw)
    try:
        if "^" in s:
            m = re.fullmatch(r"(?:([\d.]+)[x×*])?10\^([-+]?\d+)", s)
            if not m:
                return None
            return float(m.group(1) or 1.0) * 10.0 ** int(m.group(2))
        return float(s)
    except ValueError:
        return None


def _to_int(raw: str, lo: int, hi: int) -> int | None:
    v = _to_float(re.split(r"[x×]", raw)[0] if "^" not in raw else raw)
    if v is None or not v.is_integer() or not lo <= v <= hi:
        return None
    return int(v)


def _clean_number(v: float) -> float | int:
    return int(v) if v.is_integer() and abs(v) >= 1 else v


# --------------------------------------------------------------------------- settings


def _find_framework(t: _Text) -> str | None:
    found: list[tuple[int, str]] = []
    for fw, rx in lx.FRAMEWORK_RES:
        for m in rx.finditer(t.low):
            found.append((m.start(), fw))
            t.mask(m.start(), m.end())
    return min(found)[1] if found else None


def _find_scheduler(t: _Text) -> str | None:
    best: tuple[int, str] | None = None
    for m in lx.SCHEDULER_KEY_RE.finditer(t.low):
        best = best or (m.start(), lx.SCHEDULER_NAMES[m.group("name")])
        t.mask(m.start(), m.end())
    for name, rx in lx.SCHEDULER_RES:
        for m in rx.finditer(t.low):
            if best is None or m.start() < best[0]:
                best = (m.start(), name)
            t.mask(m.start(), m.end())
    return best[1] if best else None


def _find_optimizer(t: _Text) -> str | None:
    found: str | None = None
    for m in lx.OPTIMIZER_RE.finditer(t.low):
        found = found or m.lastgroup
        t.mask(m.start(), m.end())
    return found


def _find_augmentations(t: _Text) -> dict[str, Any]:
    hits = list(lx.AUG_RE.finditer(t.low))
    values: list[bool | float | None] = []
    spans: list[tuple[int, int]] = []
    before_cue: list[bool] = []
    after_cue: list[bool] = []
    for i, m in enumerate(hits):
        end = m.end()
        value: bool | float | None = None
        has_after = has_before = False
        num = lx.AUG_AFTER_NUM_RE.match(t.low, end)
        cue = None if num else lx.AUG_AFTER_CUE_RE.match(t.low, end)
        if num:
            v = _to_float(num.group("v"))
            if v is not None and 0 <= v <= 1:
                value = False if v == 0 else v
                end = num.end()
                has_after = True
        elif cue and (cue.group("off") or cue.group("on")):
            value = bool(cue.group("on"))
            end = cue.end()
            has_after = True
        if value is None:
            lo = hits[i - 1].end() if i else max(0, m.start() - 30)
            window = t.low[lo : m.start()]
            if lx.AUG_BEFORE_OFF_RE.search(window):
                value, has_before = False, True
            elif lx.AUG_BEFORE_ON_RE.search(window):
                value, has_before = True, True
        values.append(value)
        spans.append((m.start(), end))
        before_cue.append(has_before)
        after_cue.append(has_after)

    def connected(i: int, j: int) -> bool:
        return bool(lx.AUG_CONJ_RE.match(t.low[spans[i][1] : spans[j][0]]))

    # "mosaic, mixup 끄고" / "disable mosaic and mixup": a bare mention shares its neighbour's cue.
    for i in reversed(range(len(hits))):
        if values[i] is None and i + 1 < len(hits) and after_cue[i + 1] and connected(i, i + 1):
            values[i] = values[i + 1]
            after_cue[i] = True
    for i in range(len(hits)):
        if values[i] is None and i > 0 and before_cue[i - 1] and connected(i - 1, i):
            values[i] = values[i - 1]
            before_cue[i] = True
    out: dict[str, Any] = {}
    for m, v, (s, e) in zip(hits, values, spans, strict=True):
        key = m.lastgroup or ""
        out.setdefault(key, True if v is None else v)
        t.mask(s, e)
    return out


def _first_kv(t: _Text, rx: re.Pattern[str], convert: Any) -> Any:
    for m in rx.finditer(t.low):
        if not t.free(m.start(), m.end()):
            continue
        v = convert(m.group("v"))
        if v is not None:
            t.mask(m.start(), m.end())
            return v
    return None


def _float_in(lo: float, hi: float) -> Any:
    def conv(raw: str) -> float | int | None:
        v = _to_float(raw)
        return _clean_number(v) if v is not None and lo <= v <= hi else None

    return conv


_CONVERT_CORE: dict[str, Any] = {
    "epochs": lambda raw: _to_int(raw, 1, 100000),
    "batch_size": lambda raw: _to_int(raw, 1, 65536),
    "image_size": lambda raw: _to_int(re.sub(r"\s*(?:px|pixels?|픽셀)$", "", raw), 8, 20000),
    "learning_rate": lambda raw: (lambda v: v if v is not None and 0 < v <= 1 else None)(_to_float(raw)),
}
_CONVERT_ADV: dict[str, Any] = {
    "warmup_epochs": _float_in(0, 1000),
    "patience": lambda raw: _to_int(raw, 0, 100000),
    "weight_decay": _float_in(0, 1),
    "momentum": _float_in(0, 1),
    "label_smoothing": _float_in(0, 1),
}


def _find_advanced_numbers(t: _Text) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, patterns in lx.ADVANCED_NUMERIC:
        for rx in patterns:
            v = _first_kv(t, rx, _CONVERT_ADV[key])
            if v is not None:
                out[key] = v
                break
    return out


def _find_core_numbers(t: _Text) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for slot, rx in lx.CORE_KV:
        v = _first_kv(t, rx, _CONVERT_CORE[slot])
        if v is not None:
            out[slot] = v
    for slot, rx in lx.CORE_VK:
        if slot in out:
            continue
        v = _first_kv(t, rx, _CONVERT_CORE[slot])
        if v is not None:
            out[slot] = v
    if "learning_rate" not in out:  # a bare 3e-4 is a learning rate
        v = _first_kv(t, _E_NOTATION, _CONVERT_CORE["learning_rate"])
        if v is not None:
            out["learning_rate"] = v
    return out


def _clause_around(low: str, start: int, end: int) -> str:
    left = max(low.rfind(c, 0, start) for c in ",.;!?\n")
    rights = [i for i in (low.find(c, end) for c in ",.;!?\n") if i >= 0]
    right = min(rights) if rights else len(low)
    return low[left + 1 : right].replace(_MASK, " ").strip()


def _find_preset(t: _Text) -> str | None:
    m0 = _KO_DIFFICULTY.search(t.low)
    if m0:
        t.mask(m0.start(), m0.end())
        return {"상": "advanced", "중": "medium", "하": "easy"}[m0.group("v")]
    plain: str | None = None
    for m in lx.PRESET_RE.finditer(t.low):
        if lx.SETTING_BEFORE_RE.search(t.low, 0, m.start()):
            continue  # "학습률은 기본으로", "epochs: normal": that setting's default, not a difficulty
        group = m.lastgroup or ""
        level = group.rstrip("2")
        in_context = bool(
            lx.PRESET_CONTEXT_AFTER_RE.match(t.low, m.end())
            or lx.PRESET_CONTEXT_BEFORE_RE.search(t.low, 0, m.start())
            or _clause_around(t.low, m.start(), m.end()) == m.group(0)
        )
        if in_context:
            t.mask(m.start(), m.end())
            return level
        if not group.endswith("2") and plain is None:
            plain = level
            t.mask(m.start(), m.end())
    return plain


def _list_member(low: str, start: int, end: int) -> bool:
    """True when low[start:end] is an item of a written list ("헬멧/마스크/장갑", "gloves, masks,
    vests"): a class that happens to be a task word ("마스크", "mask") says nothing of the task."""
    if (start > 0 and low[start - 1] == "/") or low[end : end + 1] == "/":
        return True
    before = low[:start].rstrip()
    after = re.sub(r"^[가-힣]{0,2}\s*", "", low[end:])
    return before[-1:] in (",", "&", "+") and after[:1] == ","


def _find_task(t: _Text) -> str | None:
    """The task the words give, most specific first; a word that is an item of a list is a class,
    and a word that is often a class ("마스크") counts only when no other task word is there."""
    weak: str | None = None
    for task, rx in lx.TASK_RES:
        words = [m for m in rx.finditer(t.low) if not _list_member(t.low, m.start(), m.end())]
        if any(not lx.WEAK_TASK_WORD_RE.fullmatch(m.group(0)) for m in words):
            return task
        if words and weak is None:
            weak = task
    return weak


# --------------------------------------------------------------------------- assembly


def _init_hit(m: re.Match[str]) -> dict[str, Any] | None:
    job_id = _to_int(m.group("id"), 1, 2**31 - 1)
    if job_id is None:
        return None
    out: dict[str, Any] = {"init_from_job": job_id}
    groups = m.groupdict()
    ck = groups.get("ck") or groups.get("ck2")
    if ck:
        out["init_checkpoint"] = "last" if ck in lx.INIT_LAST_WORDS else "best"
    return out


def _find_init_job(t: _Text) -> dict[str, Any]:
    """A fine-tuning source: "starting from job 12", "12번 작업 모델로 이어서 학습" (job id and, when
    said, best/last checkpoint). The whole phrase is masked (its number is no epoch count)."""
    candidates: list[re.Match[str]] = []
    for rx in lx.INIT_JOB_EN_RES:
        candidates += rx.finditer(t.low)
    for rx in lx.INIT_JOB_KO_RES:
        candidates += [m for m in rx.finditer(t.low) if lx.INIT_KO_CONFIRM_RE.search(m.group("rest"))]
    if not candidates and lx.INIT_TRAIN_CUE_RE.search(t.low):
        candidates += lx.INIT_JOB_FROM_RE.finditer(t.low)
    for m in sorted(candidates, key=lambda m: (m.start(), -m.end())):
        if not t.free(m.start(), m.end()):
            continue
        hit = _init_hit(m)
        if hit is not None:
            t.mask(m.start(), m.end())
            return hit
    return {}


def _find_my_weights(t: _Text) -> dict[str, Any]:
    """ "use my weights" / "내 가중치로" -> ``init_weights``: "mine", or the upload's id when a
    number follows ("my weights #3", "내 가중치 3번"); the phrase is masked (its number is no epoch
    count)."""
    for rx in (lx.MY_WEIGHTS_EN_RE, lx.MY_WEIGHTS_KO_RE):
        for m in rx.finditer(t.low):
            if not t.free(m.start(), m.end()):
                continue
            t.mask(m.start(), m.end())
            ident = _to_int(m.group("id"), 1, 2**31 - 1) if m.group("id") else None
            return {"init_weights": ident if ident is not None else "mine"}
    return {}


def extract_slots(text: str, datasets: Iterable[str] | None = None) -> dict[str, Any]:
    """Only the slots `text` gives, as TrainingIntent field names (for merging corrections).

    `datasets`: the names of the user's datasets, when the caller knows them (the dialogue). A name
    of theirs in the message is the dataset even without a cue word ("resnet18 모델로 pets 학습"),
    and wins over a word the readers took that is none of theirs."""
    t = _Text(text)
    hits = _find_models(t)
    init = _find_init_job(t)
    init.update(_find_my_weights(t))
    dataset = _find_quoted_dataset(t)
    fw_word = _find_framework(t)
    adv: dict[str, Any] = {}
    sched = _find_scheduler(t)
    if sched:
        adv["scheduler"] = sched
    opt = _find_optimizer(t)
    if opt:
        adv["optimizer"] = opt
    adv.update(_find_augmentations(t))
    adv.update(_find_advanced_numbers(t))
    if lx.FREEZE_BACKBONE_RE.search(t.low):
        adv["freeze_backbone"] = True
    slots: dict[str, Any] = _find_core_numbers(t)
    preset = _find_preset(t)
    if dataset is None:
        dataset = _find_dataset(t)
    task_word = _find_task(t)
    classes = _find_classes(t)

    slots.update(_resolve_model(hits, task_word, fw_word))
    if datasets is not None:
        known = {n.lower(): n for n in datasets}
        if dataset is None or dataset.lower() not in known:
            dataset = find_named_dataset(text, known.values()) or dataset
        elif dataset.lower() in known:
            dataset = known[dataset.lower()]
    if dataset:
        slots["dataset"] = dataset
    if preset:
        slots["preset"] = preset
    if adv:
        slots["advanced_config"] = dict(sorted(adv.items()))
    if classes:
        slots["class_names"] = classes
    slots.update(init)
    return slots


def parse_intent(text: str) -> TrainingIntent:
    """Read a training request (Korean, English or both) into a TrainingIntent; unknown slots stay None."""
    return TrainingIntent(**extract_slots(text or ""))


def detect_language(text: str, previous: str | None = None) -> Literal["ko", "en"]:
    """ "ko" when the text has any Hangul (a Korean speaker mixing in model names), else "en".

    With `previous` (the conversation's language so far), a message that says nothing about its
    language keeps it: a lone word ("digits", a clicked suggestion) or only names and numbers
    ("yolo11n 30", "shapes-demo"), as a Korean speaker answers a question in Korean."""
    if lx.HANGUL_RE.search(text or ""):
        return "ko"
    if previous == "ko":
        words = (text or "").lower().split()
        if all(re.search(r"[\d_./\-]", w) for w in words):
            return "ko"
        if len(words) == 1 and words[0].strip("?!.,") not in _ENGLISH_REPLIES:
            return "ko"
    return "en"


_ENGLISH_REPLIES = frozenset(
    [
        "help",
        "yes",
        "y",
        "yeah",
        "yep",
        "sure",
        "ok",
        "okay",
        "no",
        "n",
        "nope",
        "cancel",
        "stop",
        "resume",
        "status",
        "progress",
        "metrics",
        "datasets",
        "models",
        "hi",
        "hello",
        "hey",
        "thanks",
        "confirm",
        "change",
        "retry",
        "quit",
        "exit",
    ]
)
"""One-word messages that are English sentences in themselves (they switch the reply language)."""
