"""Limits on what a user's dataset files may contain, and the safe readers that enforce them.

Hostile datasets are small files that expand: a YAML alias bomb (700 bytes -> hundreds of MB of
class names), JSON or YAML nested 100,000 levels deep (RecursionError), a class name of 10 MB,
a million categories. Every reader of user-given YAML and JSON in `trainer_runtime.formats` goes
through `load_yaml` / `load_json`, and every class and keypoint name through `check_label`.

The limits are a `FormatLimits` passed explicitly (the server builds it from its settings; the
trainer CLI uses the defaults): nothing here reads the environment.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.events import AliasEvent, CollectionStartEvent, ScalarEvent

from trainer_runtime.errors import DatasetFormatError


@dataclass(frozen=True)
class FormatLimits:
    """What one dataset file may contain."""

    max_label_chars: int = 200
    """Longest class, keypoint or supercategory name (characters)."""
    max_categories: int = 10_000
    """Most categories (classes) in one dataset."""
    max_keypoints: int = 1_000
    """Most keypoint names of one category."""
    max_depth: int = 64
    """Deepest nesting of lists and objects in a JSON or YAML file."""
    max_yaml_bytes: int = 1024**2
    """Largest YAML file (data.yaml) read; YAML is parsed in Python, so it is kept small."""


DEFAULT_LIMITS = FormatLimits()

BIDI_CONTROLS = frozenset(
    "\u061c"  # ARABIC LETTER MARK
    "\u200e\u200f"  # LEFT-TO-RIGHT / RIGHT-TO-LEFT MARK
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings, pop, overrides (LRE RLE PDF LRO RLO)
    "\u2066\u2067\u2068\u2069"  # isolates (LRI RLI FSI PDI)
)
"""Characters that reorder how text is displayed (a name shown as ``gpj.exe`` reads ``exe.jpg``)."""

_LINE_SEPARATORS = frozenset("\u2028\u2029\x85")


def unsafe_char(text: str, *, allow_newlines: bool = False) -> str | None:
    """The first character of `text` that a plain one-line name must not hold, else None.

    Refused: control characters (C0, DEL, C1), Unicode line and paragraph separators, and the
    bidirectional embedding, override, isolate and mark characters (`BIDI_CONTROLS`).
    `allow_newlines` keeps ``\\n``, ``\\r`` and ``\\t`` (free text such as a description).
    """
    for ch in text:
        if ch in BIDI_CONTROLS or ch in _LINE_SEPARATORS:
            return ch
        if unicodedata.category(ch) == "Cc" and not (allow_newlines and ch in "\n\r\t"):
            return ch
    return None


def describe_char(ch: str) -> str:
    """``U+202E (RIGHT-TO-LEFT OVERRIDE)`` for messages (never the raw character itself)."""
    name = unicodedata.name(ch, "control character")
    return f"U+{ord(ch):04X} ({name})"


def check_label(
    value: Any,
    limits: FormatLimits,
    *,
    what: str,
    file: str | None,
    field: str | None,
    line: int | None = None,
) -> str:
    """`value` as a class/keypoint name: a short plain string, else `DatasetFormatError`.

    Numbers are accepted and turned into text (YOLO ``names: [0, 1]``); lists, mappings and other
    values are refused. The message never repeats a long or hostile value.
    """
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise DatasetFormatError(
            f"{what} must be a plain string, not {type(value).__name__}", file=file, line=line, field=field
        )
    text = value if isinstance(value, str) else str(value)
    if not text.strip():
        raise DatasetFormatError(f"{what} must not be empty", file=file, line=line, field=field)
    if len(text) > limits.max_label_chars:
        raise DatasetFormatError(
            f"{what} is {len(text)} characters long; the limit is {limits.max_label_chars}",
            file=file,
            line=line,
            field=field,
        )
    bad = unsafe_char(text)
    if bad is not None:
        raise DatasetFormatError(
            f"{what} {text!r} contains {describe_char(bad)}; names must be plain text",
            file=file,
            line=line,
            field=field,
        )
    return text


def check_category_count(count: int, limits: FormatLimits, *, file: str | None, field: str | None) -> None:
    """Raise DatasetFormatError when `count` categories exceed `limits.max_categories`."""
    if count > limits.max_categories:
        raise DatasetFormatError(
            f"{count} categories; the limit is {limits.max_categories}", file=file, field=field or "categories"
        )


def check_labels(values: Iterable[Any], limits: FormatLimits, *, what: str, file: str | None, field: str) -> list[str]:
    """`check_label` for each value of a list; fields are ``field[i]``."""
    return [check_label(v, limits, what=what, file=file, field=f"{field}[{i}]") for i, v in enumerate(values)]


# ------------------------------------------------------------------------------------- YAML


class NoAliasSafeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses anchors and aliases (``&a`` / ``*a``, merge keys ``<<: *a``)
    and documents nested deeper than `max_depth`, before anything is built.

    Aliases are what make a 700-byte "billion laughs" document expand to gigabytes; no dataset
    file needs them.
    """

    max_depth = DEFAULT_LIMITS.max_depth

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()  # type: ignore[no-untyped-call]  # PyYAML is unannotated (inherited method)
        mark = event.start_mark
        if isinstance(event, AliasEvent):
            raise ComposerError(None, None, f"YAML aliases (*{event.anchor}) are not allowed in dataset files", mark)
        if isinstance(event, ScalarEvent | CollectionStartEvent) and event.anchor is not None:
            raise ComposerError(
                None, None, f"YAML anchors and aliases (&{event.anchor}) are not allowed in dataset files", mark
            )
        if isinstance(event, CollectionStartEvent):
            self._depth += 1
            if self._depth > self.max_depth:
                raise ComposerError(None, None, f"nested more than {self.max_depth} levels deep", mark)
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1
        return super().compose_node(parent, index)


def load_yaml(text: str, *, file: str, limits: FormatLimits = DEFAULT_LIMITS) -> Any:
    """Parse user YAML safely (no anchors or aliases, bounded depth and size).

    Raises `DatasetFormatError` naming `file` and the line of the problem.
    """
    if len(text) > limits.max_yaml_bytes:
        raise DatasetFormatError(
            f"the YAML file has {len(text)} characters; the limit is {limits.max_yaml_bytes}", file=file
        )
    loader = type("_Loader", (NoAliasSafeLoader,), {"max_depth": limits.max_depth})(text)
    try:
        return loader.get_single_data()
    except ComposerError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark is not None else None
        reason = exc.problem if exc.context is None else str(exc)
        raise DatasetFormatError(f"invalid YAML: {reason}", file=file, line=line) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise DatasetFormatError(f"invalid YAML: {exc}", file=file, line=line) from None
    except RecursionError:
        raise DatasetFormatError(f"invalid YAML: nested more than {limits.max_depth} levels deep", file=file) from None
    finally:
        loader.dispose()


def read_yaml_file(path: Path, *, file: str, limits: FormatLimits = DEFAULT_LIMITS) -> Any:
    """`load_yaml` of a file, refusing files over ``limits.max_yaml_bytes`` before reading them."""
    try:
        size = path.stat().st_size
        if size > limits.max_yaml_bytes:
            raise DatasetFormatError(f"the YAML file is {size} bytes; the limit is {limits.max_yaml_bytes}", file=file)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"cannot read file: {exc}", file=file) from None
    return load_yaml(text, file=file, limits=limits)


# ------------------------------------------------------------------------------------- JSON

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS_ONLY = bytes(range(256)).translate(None, b"[]{}")
_LEAF_PAIR = re.compile(rb"\[\]|\{\}")


def json_depth_exceeds(raw: bytes, max_depth: int) -> bool:
    """True when the (valid) JSON text `raw` nests lists/objects more than `max_depth` deep.

    Runs at C speed on large files: strings are cut out, everything but brackets is dropped, and
    each pass removes the innermost empty pairs; whatever is left after `max_depth` passes is deeper.
    """
    rest = _JSON_STRING.sub(b"", raw).translate(None, _BRACKETS_ONLY)
    for _ in range(max_depth):
        if not rest:
            return False
        rest = _LEAF_PAIR.sub(b"", rest)
    return bool(rest)


def load_json(raw: bytes | str, *, file: str, limits: FormatLimits | None = DEFAULT_LIMITS) -> Any:
    """Parse user JSON: `DatasetFormatError` (file, line) for bad JSON, text that is not UTF-8,
    and nesting deeper than ``limits.max_depth`` (never a RecursionError). `limits` None (a
    trusted file) skips the depth check; Python's recursion limit still ends in a format error."""
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DatasetFormatError(f"not UTF-8 text (byte {exc.start} cannot be decoded)", file=file) from None
    else:
        text = raw.removeprefix("\ufeff")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", file=file, line=exc.lineno
        ) from None
    except RecursionError:
        how = f"more than {limits.max_depth} levels deep" if limits is not None else "too deeply"
        raise DatasetFormatError(f"invalid JSON: nested {how}", file=file) from None
    if (
        limits is not None
        and isinstance(data, dict | list)
        and json_depth_exceeds(raw if isinstance(raw, bytes) else text.encode("utf-8"), limits.max_depth)
    ):
        raise DatasetFormatError(f"invalid JSON: nested more than {limits.max_depth} levels deep", file=file)
    return data
