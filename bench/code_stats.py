#!/usr/bin/env python3
"""Structure figures of the server and trainer code: what docs/architecture.md promises, measured.

Run from the repository root:  .venv/bin/python bench/code_stats.py [--top N]

Prints, for the packages agent, tools, trainer_runtime and web:
- the largest modules by lines of code (no blank lines, comments or docstrings; pure data
  modules such as the lexicon tables are named as such);
- functions above McCabe complexity 15 (ruff C901, the limit `make lint` enforces);
- how often `Any` is written;
- `mypy --strict` errors (the project's mypy configuration is strict: `make typecheck`).
"""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "tools", "trainer_runtime", "web")
VENV_BIN = Path(sys.executable).parent


def lines_of_code(path: Path) -> int:
    """Lines holding code: blank lines, comments and docstrings (bare string statements) excluded."""
    lines: set[int] = set()
    prev: tokenize.TokenInfo | None = None
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    starts = {tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE, tokenize.NL}
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        bare_string = tok.type == tokenize.STRING and (prev is None or prev.type in starts)
        if tok.type not in skip and not bare_string:
            lines.update(range(tok.start[0], tok.end[0] + 1))
        prev = tok
    return len(lines)


def sources() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations/versions" not in str(p))


def complex_functions() -> list[str]:
    limit = ["--config", "lint.mccabe.max-complexity = 15"]
    out = subprocess.run(
        [str(VENV_BIN / "ruff"), "check", "--select", "C901", *limit, "--output-format", "concise", *PACKAGES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [line for line in out.splitlines() if "C901" in line]


def mypy_errors() -> int:
    out = subprocess.run(
        [str(VENV_BIN / "mypy"), "--strict"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout
    return sum(1 for line in out.splitlines() if ": error:" in line)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--top", type=int, default=12, help="largest modules to list (default 12)")
    a = ap.parse_args()
    files = sources()
    sizes = sorted(((lines_of_code(p), p.relative_to(ROOT).as_posix()) for p in files), reverse=True)
    print(f"modules: {len(files)}, lines of code: {sum(n for n, _ in sizes)}")
    print(f"largest modules (lines of code), over 600: {sum(1 for n, _ in sizes if n > 600)}")
    for n, name in sizes[: a.top]:
        print(f"  {n:5d}  {name}")
    cx = complex_functions()
    print(f"functions above complexity 15: {len(cx)}")
    for line in cx:
        print(f"  {line}")
    anys = sum(len(re.findall(r"\bAny\b", p.read_text(encoding="utf-8"))) for p in files)
    print(f"`Any` written: {anys}")
    print(f"mypy --strict errors: {mypy_errors()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
