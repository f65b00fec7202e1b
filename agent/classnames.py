"""Class names in a training request ("cat/dog", "고양이랑 개 분류", "a detector for helmets and
vests", "classes: a, b, c") for the deterministic parser (`agent.parser`, which calls `find_classes`
last, on the text the other readers have masked). See `docs/architecture.md`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from agent import lexicon as lx


class _ParsedText(Protocol):
    """What `find_classes` reads of the parser's text: `orig` (case kept) and `low` (masked, same width)."""

    orig: str
    low: str


@dataclass
class _Tok:
    text: str
    start: int
    end: int


def is_korean(s: str) -> bool:
    """True when `s` contains any Hangul, i.e. the user wrote (at least partly) in Korean."""
    return bool(lx.HANGUL_RE.search(s))


def _task_word(tok: str) -> bool:
    return any(rx.search(tok) for _, rx in lx.TASK_RES)


def _has_batchim(syllable: str) -> bool:
    code = ord(syllable) - 0xAC00
    return 0 <= code <= 11171 and code % 28 != 0


def _strip_ko_connector(word: str) -> str:
    """ "고양이랑" -> "고양이", "책이랑" -> "책", "사람과" -> "사람", "개와" -> "개", "개하고" -> "개"."""
    if word.endswith("이랑") and len(word) > 2 and _has_batchim(word[-3]) and word[:-1] not in lx.KO_NOUNS_ENDING_I:
        return word[:-2]
    for alt in ("인지", "이냐"):  # "정상인지 불량인지", "양품이냐 불량이냐": alternatives
        if word.endswith(alt) and len(word) > len(alt):
            return word[: -len(alt)]
    for c in ("랑", "하고", "와", "과"):
        if word.endswith(c) and len(word) > len(c):
            core = word[: -len(c)]
            if c == "과" and not _has_batchim(core[-1]):
                return word  # "사과" is an apple, not "사" + 과
            if c == "와" and _has_batchim(core[-1]):
                return word
            return core
    return word


def _item(
    tok: _Tok, strip_connector: bool, allow_task: bool = False, in_list: bool = False
) -> tuple[int, int, bool] | None:
    """(start, end, ends_with_connector) of a class-name token, or None if it cannot be one
    (`allow_task`: inside a written list a task word is a class, "헬멧/마스크/장갑"; `in_list`: so is
    an adjective such as good/bad/normal, "two classes, good and bad")."""
    text = tok.text
    if not text or text[0] == lx.MASK or not (text[0].isalpha()):
        return None
    start, end, conn = tok.start, tok.end, False
    if is_korean(text):
        if strip_connector:
            core = _strip_ko_connector(text)
            if core != text:
                text, end, conn = core, end - (len(text) - len(core)), True
        if not conn:
            for p in ("을", "를", "인지", "이냐"):
                if text.endswith(p) and len(text) > len(p):
                    text, end = text[: -len(p)], end - len(p)
                    break
        if text.startswith(lx.CLASS_STOP_PREFIX_KO) or text.startswith(lx.KO_BACKWARD_MULTI + lx.KO_BACKWARD_SINGLE):
            return None
        if re.sub(r"(?:으로|로|에서|에|의)$", "", text) in lx.CLASS_STOP:  # "박스로", "데이터로", "사진에서"
            return None
    listed_ok = (allow_task or in_list) and text in lx.CLASS_OK_IN_LIST
    if _task_word(text):
        if not allow_task:
            return None
    elif (text in lx.CLASS_STOP and not listed_ok) or text in lx.SORT_VERBS or text in lx.FORWARD_TRIGGERS_MULTI:
        return None
    if text in lx.FORWARD_TRIGGERS_SINGLE or re.search(r"\d", text) or len(text) > 30:
        return None
    return start, end, conn


def _parse_forward(toks: list[_Tok], i: int, spaced: bool = False) -> list[tuple[int, int]]:
    """Items from toks[i] on, joined by separators or Korean connectors ("a, b and c", "개랑 고양이");
    `spaced`: after an explicit head ("classes", "클래스는") a bare space also separates items."""
    items: list[tuple[int, int]] = []
    n = len(toks)
    while i < n:
        it = _item(toks[i], strip_connector=True, in_list=spaced)
        if it is None:
            break
        start, end, conn = it
        if conn and (i + 1 >= n or _item(toks[i + 1], strip_connector=True, in_list=spaced) is None):
            # "빨강/초록/파랑,": a connector needs an item after it; this 랑 belongs to the word
            plain = _item(toks[i], strip_connector=False)
            if plain is None:
                break
            start, end, conn = plain
        i += 1
        # two-word English names ("traffic lights", "stop signs"), not in a slash list ("dent/ok parts")
        slashed = i >= 2 and toks[i - 2].text == "/"
        if not conn and not slashed and i < n and not is_korean(toks[i].text) and not is_korean(toks[i - 1].text):
            nxt = _item(toks[i], strip_connector=False)
            follow = toks[i + 1].text if i + 1 < n else ""
            if (
                nxt
                and not spaced
                and follow not in lx.CLASS_LIST_HEADS
                and (follow in lx.LIST_SEPS or follow in lx.SENTENCE_PUNCT or follow == "" or follow in lx.CLASS_STOP)
            ):
                end = nxt[1]
                i += 1
        items.append((start, end))
        if conn:
            continue
        if i < n and toks[i].text in lx.LIST_SEPS:
            i += 1
            if i < n and toks[i].text in ("and", "or", "그리고"):
                i += 1
            continue
        if spaced and i < n and _item(toks[i], strip_connector=True) is not None:
            continue
        break
    return items


def _parse_backward(toks: list[_Tok], k: int) -> list[tuple[int, int]]:
    """Items ending right before toks[k]."""
    while k > 1 and is_korean(toks[k - 1].text) and toks[k - 1].text.endswith(lx.KO_ADNOMINAL_ENDS):
        k -= 1  # "자전거를 찾는 탐지": the modifier between the list and its trigger
    if k > 2 and toks[k - 2].text in ("같은", "등의", "등", "따위의"):
        k -= 2  # "스크래치, 찍힘 같은 불량 검출": 불량 is what the listed classes are
    if k <= 0:
        return []
    last = _item(toks[k - 1], strip_connector=False)
    if last is None:
        return []
    items = [(last[0], last[1])]
    j = k - 2
    # a two-word English name right before the trigger ("fire extinguisher detector")
    if j >= 0 and not is_korean(toks[j].text) and not is_korean(toks[k - 1].text):
        prev = _item(toks[j], strip_connector=False)
        if prev and (j == 0 or toks[j - 1].text in lx.LIST_SEPS or toks[j - 1].text in lx.CLASS_STOP):
            items[0] = (prev[0], last[1])
            j -= 1
    while j >= 0:
        tok = toks[j]
        if tok.text in lx.LIST_SEPS:
            if j - 1 >= 0:
                it = _item(toks[j - 1], strip_connector=False)
                if it is not None:
                    items.append((it[0], it[1]))
                    j -= 2
                    continue
            if tok.text in ("and", "or") and j - 1 >= 0 and toks[j - 1].text == ",":
                j -= 1
                continue
            break
        it = _item(tok, strip_connector=True)
        if it is not None and it[2]:
            items.append((it[0], it[1]))
            j -= 1
            continue
        break
    items.reverse()
    return items


_KO_NUMERALS = frozenset(["한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉", "열", "몇", "여러"])


def _parse_backward_spaced(toks: list[_Tok], k: int) -> list[tuple[int, int]]:
    """Korean nouns separated by spaces alone, opening their clause, before 분류/구분 ("고양이 개 분류",
    "강아지 고양이 토끼 구분해줘"); short words only, and not a description ("제품 불량 분류": 제품 is a
    stop word, one item is no list)."""
    items: list[tuple[int, int]] = []
    j = k - 1
    while j >= 0 and len(items) < 8:
        tok = toks[j]
        it = _item(tok, strip_connector=False)
        if tok.text in _KO_NUMERALS or tok.text in ("안", "못", "잘", "다", "더"):
            return []  # "귤 세 가지 분류": a count; "안 쓴 사람": a clause, not a list
        if _strip_ko_connector(tok.text) != tok.text and _item(tok, strip_connector=True) is not None:
            return []  # "헬멧 쓴 사람이랑 …": a connector list is the other reader's, read whole or not at all
        if it is None or not re.fullmatch(r"[가-힣]{1,4}", tok.text) or tok.text.endswith(("을", "를", "은", "는")):
            break
        items.append((it[0], it[1]))
        j -= 1
    before = toks[j].text if j >= 0 else ""
    opens_clause = (
        j < 0
        or before in lx.SENTENCE_PUNCT
        or before in (",", ":")
        or before[0] == lx.MASK
        or (is_korean(before) and before.endswith(("으로", "로")))  # "레즈넷50으로 고양이 개 분류"
    )
    if len(items) < 2 or not opens_clause:
        return []
    items.reverse()
    return items


def find_classes(t: _ParsedText) -> list[str]:
    """The class names the text lists (a trigger phrase, a list opening a sentence, "a/b"), in order,
    without case-insensitive duplicates; [] when it names none."""
    toks = _tokens(t.low)
    found: list[list[tuple[int, int]]] = []
    declared: list[list[tuple[int, int]]] = []  # after "classes:" / "클래스는": the user's own list
    n = len(toks)
    for k, tok in enumerate(toks):
        w = tok.text
        prev = toks[k - 1].text if k else ""
        triggered = _triggered_list(toks, k)
        if triggered is not None:
            (declared if w in lx.CLASS_LIST_HEADS and triggered else found).append(triggered)
        if (k == 0 or prev in lx.SENTENCE_PUNCT or prev == ":") and w not in lx.SENTENCE_PUNCT:
            items = _parse_forward(toks, k)
            if len(items) >= 2 and (k + 1 < n):
                found.append(items)
    # "detect defects on PCBs. Classes: short, open, spur": the declared list is the list
    return _unique_names(t, declared or found)


def _tokens(low: str) -> list[_Tok]:
    """The words and marks of `low`; quotes and brackets dropped ('"cat", "dog"', "[person, car]"),
    "vs" and a following "." joined."""
    toks: list[_Tok] = []
    for m in lx.TOKEN_RE.finditer(low):
        text = m.group(0)
        if text in ('"', "'", "`", "[", "]", "{", "}"):
            continue
        if text == "." and toks and toks[-1].text == "vs" and toks[-1].end == m.start():
            toks[-1] = _Tok("vs.", toks[-1].start, m.end())
            continue
        toks.append(_Tok(text, m.start(), m.end()))
    return toks


def _two(items: list[tuple[int, int]]) -> list[tuple[int, int]] | None:
    return items if len(items) >= 2 else None


def _triggered_list(toks: list[_Tok], k: int) -> list[tuple[int, int]] | None:
    """The class list that token k's trigger word opens, or None when it opens none."""
    n = len(toks)
    w = toks[k].text
    prev = toks[k - 1].text if k else ""
    nxt = toks[k + 1].text if k + 1 < n else ""
    if w in lx.FORWARD_TRIGGERS_SINGLE:
        return _parse_forward(toks, k + 1)
    if w in lx.FORWARD_TRIGGERS_MULTI:
        start = k + 2 if nxt in ("into", "as", "among", "between") else k + 1  # "classify into a, b or c"
        return _two(_parse_forward(toks, start))
    if w in ("for", "of") and prev in lx.FOR_HEADS_SINGLE:
        return _parse_forward(toks, k + 1)
    if w in ("for", "of") and (prev in lx.FOR_HEADS_MULTI or prev.startswith(lx.MASK)):
        return _two(_parse_forward(toks, k + 1))  # "convnext tiny for rose, tulip, and daisy"
    if w in lx.BACKWARD_TRIGGERS_SINGLE or w.startswith(lx.KO_BACKWARD_SINGLE):
        return _parse_backward(toks, k)
    if w in lx.BACKWARD_TRIGGERS_MULTI or w.startswith(lx.KO_BACKWARD_MULTI):
        items = _parse_backward(toks, k)
        if len(items) < 2 and w.startswith(("분류", "구분", "구별", "판별")):
            items = _parse_backward_spaced(toks, k)
        return _two(items)
    if w == "/" and k and (k < 2 or toks[k - 2].text != "/"):
        # slash list anywhere: "cat/dog", "고양이/개", "dog/cat/bird"; not "detection/segmentation"
        items = _parse_slash(toks, k - 1)
        if not all(_task_word(toks[j].text) for j in range(k - 1, min(n, k + 2), 2)):
            return _two(items)
        return None
    return _head_list(toks, k)


def _head_list(toks: list[_Tok], k: int) -> list[tuple[int, int]] | None:
    """A list after a class head ("classes: a, b", "클래스는 개 고양이 말", "classes sunny cloudy"),
    after "sort ... into", or in a question ("is it ripe or unripe?")."""
    n = len(toks)
    w = toks[k].text
    prev = toks[k - 1].text if k else ""
    nxt = toks[k + 1].text if k + 1 < n else ""
    if w in lx.CLASS_LIST_HEADS:
        if nxt in (":", "=", "are", "is", "은", "는", "include", ",", "-", "—") or w.endswith((":", "는", "은")):
            start = k + 1 if w.endswith((":", "는", "은")) else k + 2
            if start < n and toks[start].text == ":":  # "classes are: a, b"
                start += 1
            return _parse_forward(toks, start, spaced=True)
        if prev not in ("of", "the", "these", "those"):
            return _two(_parse_forward(toks, k + 1, spaced=True))  # "classes sunny cloudy rainy"
        return None
    sorting = (lx.SORT_VERBS | lx.FORWARD_TRIGGERS_MULTI) - {"between"}
    if w == "into" and any(t.text in sorting for t in toks[max(0, k - 8) : k]):
        if any(toks[i].text in ("train", "val", "test") for i in range(k + 1, min(n, k + 4))):
            return None  # "split into train and val"
        return _two(_parse_forward(toks, k + 1))  # "sort the photos into croissant, bagel and muffin"
    if (w in ("it", "this", "that", "each", "they") and prev in ("is", "are")) or w in ("it's", "whether"):
        return _either_or(toks, k + 1)  # "is it ripe or unripe?", "is this a dog or a cat?"
    if w == "as" and any(t.text in _LABEL_VERBS for t in toks[max(0, k - 5) : k]):
        return _either_or(toks, k + 1)  # "classify leaves as healthy or diseased"
    if w == "from" and any(t.text in _TELL_VERBS for t in toks[max(0, k - 4) : k]):
        return _x_from_y(toks, k)  # "separate ripe from unripe bananas"
    return None


_ARTICLES = ("a", "an", "the")
_LABEL_VERBS = frozenset(["classify", "classifies", "label", "labels", "mark", "tag", "flag", "categorize", "sort"])
_TELL_VERBS = frozenset(["tell", "separate", "distinguish", "differentiate", "discriminate", "sort"])


def _either_or(toks: list[_Tok], i: int) -> list[tuple[int, int]] | None:
    """ "[a] X or [a] Y [or Z]": two or more single words joined by or/vs/","; None otherwise."""
    items: list[tuple[int, int]] = []
    n = len(toks)
    while i < n:
        if toks[i].text in _ARTICLES:
            i += 1
        it = _item(toks[i], strip_connector=False, in_list=True) if i < n else None
        if it is None:
            break
        items.append((it[0], it[1]))
        i += 1
        if i < n and toks[i].text in ("or", "vs", "vs.", "versus", ","):
            i += 1
            if i < n and toks[i].text == "or":
                i += 1
            continue
        break
    return _two(items)


def _x_from_y(toks: list[_Tok], k: int) -> list[tuple[int, int]] | None:
    """ "tell good welds from bad welds": the words between the verb and "from", and those after it."""
    v = max(j for j in range(max(0, k - 4), k) if toks[j].text in _TELL_VERBS)
    left = [toks[j] for j in range(v + 1, k) if toks[j].text not in _ARTICLES and toks[j].text != "apart"]
    # the head word must be able to be a class; a qualifier before it may be any word ("good welds")
    if not 1 <= len(left) <= 2 or _item(left[-1], strip_connector=False) is None or not left[0].text.isalpha():
        return None
    right = toks[k + 1 : k + 1 + len(left)]
    if len(right) != len(left) or _item(right[-1], strip_connector=False) is None or not right[0].text.isalpha():
        return None
    return [(left[0].start, left[-1].end), (right[0].start, right[-1].end)]


def _unique_names(t: _ParsedText, found: list[list[tuple[int, int]]]) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    for items in found:
        for s, e in items:
            name = t.orig[s:e].strip()
            key = name.lower()
            if name and key not in seen:
                seen.add(key)
                names.append(name)
    return names


def _parse_slash(toks: list[_Tok], j: int) -> list[tuple[int, int]]:
    items: list[tuple[int, int]] = []
    n = len(toks)
    while j < n:
        it = _item(toks[j], strip_connector=False, allow_task=True)
        if it is None or (items and toks[j - 1].text != "/"):
            break
        items.append((it[0], it[1]))
        if j + 1 < n and toks[j + 1].text == "/" and toks[j + 1].start == toks[j].end:
            j += 2
            continue
        break
    if any(t in ("train", "val", "test") for t in (toks[i].text for i in range(max(0, j - 4), min(n, j + 1)))):
        return []
    return items
