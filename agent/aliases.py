"""How people say the catalog's model names: one alias table per catalog model, generated.

People write "비트 스몰", "이피션트넷 비투", "욜로 브이8 미디엄", "레즈넷 오십", "컨브넥스트 타이니": a
family word (written or transliterated) and the parts of the canonical name said aloud. Nothing
here lists such phrases one by one: each catalog model's canonical name (`tools.catalog`) is cut
into its family prefix and its parts ("efficientnet_b2" -> efficientnet + b2, "yolov8m" -> yolo +
8 + m, "vit_small_patch16_224" -> vit + small), and every part gets its spoken forms from rules
(`agent/lexicon_data/model_aliases.json`): Korean names of Latin letters (b -> 비, v -> 브이),
numbers in digits, Sino-Korean (오십) and English as Koreans write it (투, 쓰리, 에잇, 일레븐), and
size words (나노/스몰/미디엄/라지/엑스라지, tiny/타이니, base/베이스). A new catalog model of a known
family gets its aliases without an edit here.

`find_aliases(low)` returns the spans of such mentions in the parser's normalised, lower-case
text. Only mentions with some Hangul are returned: the Latin spellings are the older, tested
readers' job in `agent.modelnames`, which calls this first so that "욜로 브이8 미디엄" is one model
and not a bare "욜로".
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

__all__ = ["AliasHit", "CatalogModel", "alias_table", "find_aliases", "spoken_forms"]

_SINO = "영일이삼사오육칠팔구"
_HANGUL = re.compile(r"[가-힣]")
_PART_RE = re.compile(r"[a-z]\d+|[a-z]+|\d+")


@dataclass(frozen=True)
class CatalogModel:
    """A catalog entry: the canonical name, its framework and task."""

    name: str
    framework: str
    task_type: str


@dataclass(frozen=True)
class AliasHit:
    """A catalog model said in the text, at low[start:end]."""

    start: int
    end: int
    model: CatalogModel


@functools.cache
def _rules() -> dict[str, Any]:
    text = resources.files("agent").joinpath("lexicon_data").joinpath("model_aliases.json").read_text(encoding="utf-8")
    rules: dict[str, Any] = json.loads(text)
    return rules


@functools.cache
def _catalog() -> tuple[CatalogModel, ...]:
    from tools.catalog import list_models  # the adapters' catalogs, read once, on the first parse

    return tuple(CatalogModel(m["name"], m["framework"], m["task_type"]) for m in list_models())


def _sino(n: int) -> str:
    """Sino-Korean reading of 0..999: 8 -> 팔, 11 -> 십일, 50 -> 오십, 152 -> 백오십이."""
    if n == 0:
        return "영"
    out = ""
    for value, word in ((100, "백"), (10, "십")):
        q, n = divmod(n, value)
        if q:
            out += ("" if q == 1 else _SINO[q]) + word
    return out + (_SINO[n] if n else "")


def _digit_forms(digits: str) -> set[str]:
    """ "50" -> 50, 오십, 피프티, 오공; "101" -> 101, 백일, 일공일, 일영일, 원오원."""
    forms = {digits, *_rules()["digits_en_ko"].get(digits, [])}
    if int(digits) < 1000:
        forms.add(_sino(int(digits)))
    if len(digits) > 1:  # read digit by digit, zero as 공 or 영
        for zero in ("공", "영"):
            forms.add("".join(zero if d == "0" else _SINO[int(d)] for d in digits))
    return forms


def _size_group(word: str) -> list[str] | None:
    return next((g for g in _rules()["sizes"] if word in g), None)


def _joined(heads: set[str], tails: set[str]) -> set[str]:
    return {h + sep + t for h in heads for t in tails for sep in ("", " ", "-")}


def canonical_part(part: str) -> str:
    """A name part as the alias table keys it: a size word -> its letter ("small" -> "s"), an
    optional letter dropped before a number ("v8" -> "8"), anything else as it is ("b2", "50")."""
    group = _size_group(part)
    if group is not None:
        return group[0]
    m = re.fullmatch(r"([a-z])(\d+)", part)
    if m and m.group(1) in _rules()["optional_letters"]:
        return m.group(2)
    return part


def spoken_forms(part: str) -> set[str]:
    """Every way a part of a canonical name is written or said ("b2" -> b2, 비투, 비 2, 비이, ...)."""
    rules = _rules()
    group = _size_group(part)
    if group is not None:
        return set(group)
    if part.isdigit():
        digits = _digit_forms(part)
        letters = {x for v in rules["optional_letters"] for x in (v, *rules["letters"][v])}
        return digits | _joined(letters, digits)
    m = re.fullmatch(r"([a-z])(\d+)", part)
    if m:
        letter, number = m.group(1), m.group(2)
        forms = _joined({letter, *rules["letters"].get(letter, [])}, _digit_forms(number))
        if letter in rules["optional_letters"]:
            forms |= _digit_forms(number)
        return forms
    return {part}


def _split(name: str, family: str) -> tuple[str, ...] | None:
    """The spoken parts of a canonical name of `family` ("yolov8m" -> ("8", "m")), or None."""
    if not name.startswith(family) or "/" in name:
        return None
    rest = name[len(family) :]
    pieces = [p for p in re.split(r"[_\-]", rest) if p and p not in _rules()["noise"]]
    parts = [canonical_part(x) for p in pieces for x in _PART_RE.findall(p)]
    if not parts or any(p in ("seg", "pose", "cls", "obb") for p in parts):
        return None  # a task variant: the task words pick it (agent.modelnames)
    return tuple(parts)


@dataclass(frozen=True)
class _Family:
    key: str
    pattern: re.Pattern[str]
    part_re: re.Pattern[str]
    forms: dict[str, str]  # spoken form (spaces removed) -> canonical part
    table: dict[tuple[str, ...], CatalogModel]


def _alt(forms: set[str], bounded: bool = True) -> str:
    """An alternation, longest first; a space or hyphen in a form matches any run of them, and
    (`bounded`) a form ending in a Latin letter or digit must not run on into a longer word."""
    out = []
    for f in sorted(forms, key=len, reverse=True):
        rx = r"[\s\-_]*".join(re.escape(w) for w in re.split(r"[\s\-]+", f))
        out.append(rx + (r"(?![a-z0-9])" if bounded and re.search(r"[a-z0-9]$", f) else ""))
    return "|".join(out)


def _key(form: str) -> str:
    return re.sub(r"[\s\-_]+", "", form)


@functools.cache
def alias_table() -> tuple[_Family, ...]:
    """One entry per model family: the catalog models' part sequences and their spoken forms."""
    families = []
    for key, spellings in _rules()["families"].items():
        table: dict[tuple[str, ...], CatalogModel] = {}
        forms: dict[str, str] = {}
        for model in _catalog():
            parts = _split(model.name.lower(), key)
            if parts is None or parts in table:
                continue
            table[parts] = model
            for part in parts:
                for form in spoken_forms(part):
                    forms.setdefault(_key(form), part)
        if not table:
            continue
        part_alt = _alt({f for p in {p for ps in table for p in ps} for f in spoken_forms(p)})
        pattern = re.compile(
            rf"(?<![a-z0-9가-힣])(?:{_alt(set(spellings), bounded=False)})(?P<rest>(?:[\s\-_]*(?:{part_alt}))+)",
        )
        families.append(_Family(key, pattern, re.compile(rf"[\s\-_]*(?:{part_alt})"), forms, table))
    return tuple(families)


_SPOKEN_LATIN = re.compile(r"(?<![a-z])(?:version|ver)(?![a-z])")


def find_aliases(low: str) -> list[AliasHit]:
    """Catalog models said with some Hangul in `low` (normalised, lower case), or with a spoken word
    the written-name readers do not know ("yolo version 11 medium"), longest reading first."""
    if not _HANGUL.search(low) and not _SPOKEN_LATIN.search(low):
        return []
    hits: list[AliasHit] = []
    for fam in alias_table():
        for m in fam.pattern.finditer(low):
            parts = list(fam.part_re.finditer(low, m.start("rest"), m.end("rest")))
            keys = [fam.forms.get(_key(p.group(0))) for p in parts]
            for n in range(len(parts), 0, -1):
                seq = tuple(k for k in keys[:n] if k is not None)
                model = fam.table.get(seq) if len(seq) == n else None
                if model is None:
                    model = next((fam.table[s] for s in itertools.permutations(seq) if s in fam.table), None)
                if model is None:  # "모바일넷 브이3": the only catalog model whose parts start so
                    longer = [mdl for key, mdl in fam.table.items() if key[:n] == seq]
                    model = longer[0] if len(longer) == 1 else None
                if model is not None:
                    end = parts[n - 1].end()
                    said = low[m.start() : end]
                    if _HANGUL.search(said) or _SPOKEN_LATIN.search(said):
                        hits.append(AliasHit(m.start(), end, model))
                    break
    hits.sort(key=lambda h: (h.start, -h.end))
    return hits
