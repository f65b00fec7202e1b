"""Dataset names in a training request ("on pets-v2", "데이터셋은 'factory-cam-03'", "weld-v2 데이터로",
"the PARTS data", "데이터 traffic-signs로") for the deterministic parser (`agent.parser`, which calls
`find_quoted_dataset` early and `find_dataset` after the models, settings and numbers are masked), and
`find_named_dataset`, for a caller that knows the user's dataset names (the dialogue): a name of
theirs in the message is taken without a cue word. See `docs/architecture.md`.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Iterable
from typing import Protocol

from agent import lexicon as lx
from agent.classnames import is_korean as _is_korean

__all__ = ["find_dataset", "find_named_dataset", "find_quoted_dataset"]


class _ParsedText(Protocol):
    """What the dataset readers use of the parser's text: `orig` (case kept), `low` (masked, same width)."""

    orig: str
    low: str

    def mask(self, start: int, end: int) -> None: ...

    def free(self, start: int, end: int) -> bool: ...


def _is_idlike(tok: str) -> bool:
    if tok in lx.KNOWN_DATASETS:
        return True
    if lx.HYPHEN_STOP.match(tok) or not re.search(r"[a-z가-힣]", tok):
        return False
    return bool(re.search(r"\d", tok) or re.search(r"[a-z0-9][\-_][a-z0-9]", tok))


def _strong_fallback(tok: str) -> bool:
    if tok in lx.KNOWN_DATASETS:
        return True
    if lx.HYPHEN_STOP.match(tok) or not re.search(r"[a-z]", tok):
        return False
    return bool(re.search(r"[a-z][\w\-]*\d|\d[\w\-]*[a-z]", tok) or re.fullmatch(r"[a-z]{2,}(?:-[a-z]{2,})+", tok))


_KO_PARTICLE_END = re.compile(r"(?<=[가-힣])(?:으로|로|에서|를|을|은|는|이|가|도|만)$")


def _ds_ok(tok: str, allow_number: bool = False) -> bool:
    if tok in lx.DATASET_STOP or (tok.isdigit() and not allow_number) or re.fullmatch(r"\d+(?:x\d+)+", tok):
        return False  # a word of requests, a bare number, a size ("1920x1080")
    if _KO_PARTICLE_END.sub("", tok) in lx.DATASET_STOP:  # "목록을", "어떤게" -> the word itself
        return False
    if lx.HYPHEN_STOP.match(tok) and tok not in lx.KNOWN_DATASETS:
        return False
    return not any(rx.fullmatch(tok) for _, rx in lx.TASK_RES)


def _quantity_before(low: str, start: int) -> bool:
    prev = low[max(0, start - 24) : start].split()
    return any(re.fullmatch(r"\d+(?:\.\d+)?", w) for w in prev[-2:])


def _take_dataset(t: _ParsedText, start: int, end: int) -> str:
    value = t.orig[start:end].strip().strip("'\"`").strip()
    if re.search(r"[가-힣]$", value):
        value = re.sub(r"(?<=[가-힣])(?:으로|로|에서|를|을|은|는)$", "", value)
    t.mask(start, end)
    return value


def find_quoted_dataset(t: _ParsedText) -> str | None:
    """A quoted name near a dataset word, or a short quoted phrase ("'factory-cam-03'"); masked."""
    for m in lx.QUOTED_RE.finditer(t.low):
        inner = m.group(2).strip()
        if not inner or not t.free(m.start(), m.end()) or re.fullmatch(r"[\d.e\-+]+", inner):
            continue
        after = t.low[m.end() : m.end() + 14]
        before = t.low[max(0, m.start() - 24) : m.start()]
        if re.match(r"\s*(?:,|/|&|and\b|or\b|vs\.?)\s*[\"'`]", after) or re.search(
            r"[\"'`]\s*(?:,|/|&|and|or)\s*$", before
        ):
            continue  # '"cat", "dog" and "horse"': a quoted class list
        if lx.CLASS_HEAD_BEFORE_RE.search(before):
            continue  # 'classes: "cat"'
        near_word = re.search(lx.DATASET_WORD + r"|data|데이터", after + " " + before)
        if near_word or len(inner.split()) <= 3:
            t.mask(m.start(), m.end())
            return t.orig[m.start(2) : m.end(2)].strip()
    return None


def find_dataset(t: _ParsedText) -> str | None:
    """The dataset the request names, by the first reader that finds one (a cue word before or after,
    "X 데이터로", "the X data", a preposition, a name-like word); masked, particles stripped."""
    for find_span in (
        _ds_span_before,
        _ds_span_after,
        _ds_span_data,
        _ds_span_ko_data_after,
        _ds_span_en_data,
        _ds_span_prep,
        _ds_span_fallback,
    ):
        span = find_span(t)
        if span is not None:
            return _take_dataset(t, span[0], span[1])
    return None


def _ds_span_before(t: _ParsedText) -> tuple[int, int] | None:
    for m in lx.DS_BEFORE_RE.finditer(t.low):
        if _ds_ok(m.group("ds")):
            return m.start("ds"), m.end("ds")
    return None


def _ds_span_after(t: _ParsedText) -> tuple[int, int] | None:
    for m in lx.DS_AFTER_RE.finditer(t.low):
        tok = m.group("ds")
        bare_english = not m.group("filler").strip() and not _is_korean(m.group(0)[:3])
        ends_phrase = re.match(r"\s*(?:$|[,.;!?)]|(?:for|with|using|and|to|in|on)(?![a-z]))", t.low[m.end("ds") :])
        if bare_english and not (_is_idlike(tok) or _is_korean(tok) or tok.isdigit() or ends_phrase):
            continue  # "datasets do I have": only "dataset pets-v2"-like names follow bare
        if re.fullmatch(r"[가-힣]+", tok) and not _KO_PARTICLE_END.search(tok):
            continue  # Korean puts the name before 데이터셋; a bare word after it is a verb ("보여줘")
        if _ds_ok(tok, allow_number=True) and not tok.startswith(("학습", "훈련", "로", "으로")):
            return m.start("ds"), m.end("ds")
    return None


def _ds_span_data(t: _ParsedText) -> tuple[int, int] | None:
    for m in lx.DS_DATA_RE.finditer(t.low):
        if _ds_ok(m.group("ds")):
            return m.start("ds"), m.end("ds")
    return None


def _ds_span_ko_data_after(t: _ParsedText) -> tuple[int, int] | None:
    """ "데이터 road_signs로 학습": a Latin name after a bare 데이터 (not 데이터셋), followed by a particle
    or a verb of use; a Korean word there is the request's verb or noun ("데이터 전처리"), never a name."""
    for m in lx.DS_KO_DATA_AFTER_RE.finditer(t.low):
        if _ds_ok(m.group("ds")):
            return m.start("ds"), m.end("ds")
    return None


def _ds_span_en_data(t: _ParsedText) -> tuple[int, int] | None:
    """ "use my_flowers data", "the PARTS data": a name-like word (digit, _ or -, or written in
    capitals) before "data"; not "training data" or "my data"."""
    for m in lx.DS_EN_DATA_RE.finditer(t.low):
        tok = m.group("ds")
        written = t.orig[m.start("ds") : m.end("ds")]
        if _ds_ok(tok) and (_is_idlike(tok) or (written.isupper() and len(written) > 1)):
            return m.start("ds"), m.end("ds")
    return None


def _ds_span_prep(t: _ParsedText) -> tuple[int, int] | None:
    for m in lx.DS_PREP_RE.finditer(t.low):
        tok, prep = m.group("ds"), m.group("prep")
        if not _ds_ok(tok) or re.fullmatch(r"[\d.]+", tok):
            continue
        rest = t.low[m.end("ds") :]
        if _list_follows(rest):  # "on cats and dogs": a class list
            continue
        if re.search(r"pre[\s-]?trained\s*$", t.low[max(0, m.start() - 16) : m.start()]):
            continue  # "resnet34 pretrained on imagenet": where the weights come from, not the data
        if lx.DS_FOLLOWED_BY_NOUN_RE.match(rest) and not _is_idlike(tok):
            continue
        nxt = re.match(r"\s+([a-z][\w\-]*)", rest)
        if nxt and not _is_idlike(tok) and nxt.group(1) not in lx.CLASS_STOP and nxt.group(1) not in lx.DATASET_STOP:
            continue  # "on my dog breeds data": a description, not a name
        if prep == "on" and re.fullmatch(r"[a-z][a-z\-_.]*[a-z0-9]|[a-z0-9][\w\-.]*", tok):
            if not re.search(r"[가-힣]", tok) and not _quantity_before(t.low, m.start("ds")):
                return m.start("ds"), m.end("ds")
        elif _is_idlike(tok) and not _quantity_before(t.low, m.start("ds")):
            return m.start("ds"), m.end("ds")
    return None


def _list_follows(rest: str) -> bool:
    """True when `rest` goes on with another list item ("…, dogs", "… and dogs"), not with a setting
    ("…, 15 epochs", "…, batch 16") or the end of the request."""
    m = re.match(r"\s*(?:,|/|and\b|or\b|&)\s*(?:and\s+)?(?P<w>[^\s,;.]*)", rest)
    if m is None:
        return False
    w = m.group("w")
    return not (not w or not w[0].isalpha() or w in lx.CLASS_STOP or w in lx.DATASET_STOP or _is_setting_word(w))


def _is_setting_word(w: str) -> bool:
    return any(rx.match(w) for _, rx in lx.CORE_KV) or bool(re.match(lx.WARMUP_KEY + "|" + lx.PATIENCE_KEY, w))


def _ds_span_fallback(t: _ParsedText) -> tuple[int, int] | None:
    for m in re.finditer(lx.DS_TOKEN, t.low):
        tok = m.group(0)
        if m.start() > 0 and t.low[m.start() - 1] in "-_./":
            continue
        if _list_follows(t.low[m.end() :]) or lx.CLASS_HEAD_BEFORE_RE.search(t.low, 0, m.start()):
            continue  # "labels: spam-free, spammy": a class list
        if _strong_fallback(tok) and _ds_ok(tok) and not _quantity_before(t.low, m.start()):
            if t.low[m.end() : m.end() + 1] == "/" or (m.start() and t.low[m.start() - 1] == "/"):
                continue
            return m.start(), m.end()
    return None


@functools.lru_cache(maxsize=1024)
def _name_pattern(name: str) -> re.Pattern[str] | None:
    words = [w for w in re.split(r"[\s\-_]+", name.lower()) if w]
    if not words:
        return None
    body = r"[\s\-_]*".join(re.escape(w) for w in words)
    # not inside a longer word or name; a Korean particle may follow ("pets로", "pets 데이터로")
    return re.compile(rf"(?<![\w\-.]){body}(?![a-z0-9\-_.]*[a-z0-9])")


def find_named_dataset(text: str, names: Iterable[str]) -> str | None:
    """The one of `names` (the user's datasets) that `text` names, as stored, or None.

    Case, quotes, a Korean particle and the choice of separator do not matter ("Road Signs",
    "road-signs", "road_signs로"); the longest name wins ("pets-v2" over "pets"), and a name that is
    an ordinary word of requests ("data", "images") is never taken without a cue word.
    """
    low = unicodedata.normalize("NFKC", text or "").lower()
    found: tuple[int, str] | None = None
    for name in sorted({n for n in names if n and n.strip()}, key=len, reverse=True):
        if name.lower() in lx.DATASET_STOP or name.lower() in lx.CLASS_STOP:
            continue
        rx = _name_pattern(name)
        if rx is not None and rx.search(low) and (found is None or len(name) > found[0]):
            found = (len(name), name)
    return found[1] if found else None
