"""The server stays free of ML frameworks at import time.

`lint-imports` (the contracts in pyproject.toml, `make lint`) forbids direct imports of the
frameworks in web, agent and tools; trainer_runtime, which they import, may import them only inside
the functions that train or run a model. This test checks the outcome: importing every module of the
server leaves torch, torchvision, timm, transformers and ultralytics unloaded.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_CODE = """
import importlib, pkgutil, sys
names = []
for pkg in ("tools", "agent", "web"):
    for info in pkgutil.walk_packages(importlib.import_module(pkg).__path__, pkg + "."):
        if ".migrations" in info.name or info.name.endswith(".__main__"):
            continue  # alembic's env.py runs a migration when imported; __main__ runs the program
        importlib.import_module(info.name)
        names.append(info.name)
print(len(names))
print(" ".join(m for m in ("torch", "torchvision", "timm", "transformers", "ultralytics") if m in sys.modules))
"""


@pytest.mark.slow
def test_importing_every_server_module_loads_no_ml_framework() -> None:
    # a fresh interpreter: other tests of this session import torch in-process
    out = subprocess.run([sys.executable, "-c", _CODE], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    count, loaded = [*out.stdout.splitlines(), "", ""][:2]
    assert int(count) > 50, out.stdout  # the walk found the packages' modules
    assert loaded == "", f"importing the server modules loaded {loaded}"
