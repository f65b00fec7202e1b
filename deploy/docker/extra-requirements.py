"""Print the requirements of one or more optional-dependency extras of pyproject.toml, one a line,
with references to the project's own extras (``vision-training-agent[trainer-core]``) expanded.

    python extra-requirements.py pyproject.toml ultralytics [timm ...] > requirements.txt

The trainer images install exactly this list (torch, trainer_runtime's few dependencies and the
framework) and none of the server's dependencies. Standard library only (Python >= 3.11).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

SELF_REF = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*\[([^\]]+)\]\s*$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """The requirements of `extras` in order, each once, with the project's own extras expanded;
    exits with a message for an extra pyproject.toml does not have."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    name = _norm(project["name"])
    table: dict[str, list[str]] = project.get("optional-dependencies", {})
    out: list[str] = []
    seen: set[str] = set()

    def add(extra: str) -> None:
        if extra in seen:
            return
        if extra not in table:
            raise SystemExit(f"no extra {extra!r} in {pyproject} (have: {', '.join(sorted(table))})")
        seen.add(extra)
        for req in table[extra]:
            match = SELF_REF.match(req)
            if match and _norm(match.group(1)) == name:
                for sub in match.group(2).split(","):
                    add(sub.strip())
            elif req not in out:
                out.append(req)

    for extra in extras:
        add(extra)
    return out


def main(argv: list[str]) -> int:
    """Print the requirements of the extras named after the pyproject.toml path; 2 (with usage) without them."""
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    for req in requirements(Path(argv[0]), argv[1:]):
        print(req)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
