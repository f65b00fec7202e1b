"""docs/configuration.md, generated from `web.config.Settings`.

`python -m web.config_docs` writes the page; `python -m web.config_docs --check` (and
tests/web/test_config.py) fails when the page differs from what `Settings` says. The variables, the
defaults column and the completeness come from `Settings`: every field must be in exactly one row,
every row names only fields, and a default a row spells out by hand must contain the field's real
default. The prose (what a setting means) is kept here, next to the generator.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from web.config import Settings
from web.config_text import PREAMBLE, SECTIONS, Row, Section

DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"
COMMAND = "python -m web.config_docs"


def env_name(name: str, field: FieldInfo) -> str:
    """The environment variable a field is read from (its alias, else its name), upper-case."""
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        alias = alias.choices[0]
    return str(alias or name).upper()


def settings_fields() -> dict[str, FieldInfo]:
    """Environment variable name -> field of `Settings`; a field that is a model (`llm`, `slack`)
    stands for its own fields, each read from <FIELD>_<NAME> (`Settings.model_config`'s nested
    delimiter)."""
    out: dict[str, FieldInfo] = {}
    delimiter = Settings.model_config.get("env_nested_delimiter") or "__"
    for name, field in Settings.model_fields.items():
        model = field.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            prefix = env_name(name, field)
            out.update({f"{prefix}{delimiter}{sub.upper()}": f for sub, f in model.model_fields.items()})
        else:
            out[env_name(name, field)] = field
    return out


def literal(field: FieldInfo) -> str | None:
    """The field's default as the page writes it (None: no default to show)."""
    value: Any = field.default
    if value is PydanticUndefined or value is None or value == "":
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, Path) and not value.is_absolute() and not str(value).startswith("."):
        return f"./{value}"
    return str(value)


def default_text(row: Row, fields: dict[str, FieldInfo]) -> str:
    """The defaults cell of a row: the row's hand-written default, else each field's default in
    backticks ("unset" for None, "empty" when there is nothing to show)."""
    if row.default is not None:
        return row.default
    parts = []
    for name in row.names:
        lit = literal(fields[name])
        parts.append(f"`{lit}`" if lit is not None else "unset" if fields[name].default is None else "empty")
    return row.sep.join(parts)


def problems(sections: tuple[Section, ...]) -> list[str]:
    """What makes the page disagree with `Settings` (empty: it agrees)."""
    fields = settings_fields()
    out: list[str] = []
    seen: dict[str, str] = {}
    for section in sections:
        if not section.settings:
            continue
        for row in section.rows:
            for name in row.names:
                if name not in fields:
                    out.append(f"{name} (section {section.title!r}) is not a field of web.config.Settings")
                    continue
                if name in seen:
                    out.append(f"{name} is documented twice ({seen[name]!r} and {section.title!r})")
                seen[name] = section.title
                lit = literal(fields[name])
                if row.default is not None and lit is not None and f"`{lit}`" not in row.default:
                    out.append(f"{name}: the documented default {row.default!r} does not name the real one `{lit}`")
    out.extend(f"{name} is a setting but not documented in web/config_docs.py" for name in fields if name not in seen)
    return out


def render(sections: tuple[Section, ...] | None = None) -> str:
    """The whole configuration page in Markdown, one table per section (`SECTIONS` by default)."""
    sections = SECTIONS if sections is None else sections
    fields = settings_fields()
    lines = [PREAMBLE, ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.intro:
            lines += [section.intro, ""]
        if section.settings:
            lines += ["| variable | default | meaning |", "|---|---|---|"]
        else:
            lines += ["| variable | meaning |", "|---|---|"]
        for row in section.rows:
            names = (", " if row.sep == ", " else " / ").join(f"`{n}`" for n in row.names)
            if section.settings:
                lines.append(f"| {names} | {default_text(row, fields)} | {row.meaning} |")
            else:
                lines.append(f"| {names} | {row.meaning} |")
        lines.append("")
        if section.outro:
            lines += [section.outro, ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Write docs/configuration.md, or with `--check` compare it and print a diff. Returns 1 when the
    page is out of date or disagrees with `Settings`, else 0."""
    ap = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail when the page differs (writes nothing)")
    ap.add_argument("--output", type=Path, default=DOC_PATH)
    args = ap.parse_args(argv)
    issues = problems(SECTIONS)
    if issues:
        print("\n".join(issues), file=sys.stderr)
        return 1
    text = render()
    current = args.output.read_text() if args.output.exists() else ""
    if args.check:
        if current == text:
            return 0
        diff = difflib.unified_diff(current.splitlines(), text.splitlines(), str(args.output), "generated", lineterm="")
        print("\n".join(diff), file=sys.stderr)
        print(f"\n{args.output} is out of date: run `{COMMAND}`", file=sys.stderr)
        return 1
    if current != text:
        args.output.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
