"""`vision-agent` command line: help is fast and light, `serve` parses its arguments."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from web import cli

ROOT = Path(__file__).resolve().parents[2]


def _script() -> list[str]:
    exe = Path(sys.executable).with_name("vision-agent")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "web.cli"]


def test_help_is_fast_and_imports_nothing_heavy() -> None:
    start = time.perf_counter()
    out = subprocess.run([*_script(), "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT)
    elapsed = time.perf_counter() - start
    assert out.returncode == 0, out.stderr
    for word in ("serve", "dataset", "version"):
        assert word in out.stdout
    assert elapsed < 30, elapsed  # a hang guard; that nothing heavy is imported is checked just below
    code = (
        "import sys; import web.cli as c; c.build_parser(); "
        "print(sorted(m for m in ('fastapi', 'sqlalchemy', 'uvicorn', 'torch') if m in sys.modules))"
    )
    light = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert light.stdout.strip() == "[]", light.stdout + light.stderr


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out.startswith("vision-agent ")


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    assert "serve" in capsys.readouterr().out


def test_serve_arguments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append((a, kw)))
    monkeypatch.setenv("VTA_DATA_DIR", "unset")  # so that monkeypatch restores the original state
    monkeypatch.delenv("VTA_DATA_DIR")
    data = tmp_path / "state"
    rc = cli.main(["serve", "--host", "0.0.0.0", "--port", "8123", "--data-dir", str(data), "--reload"])
    assert rc == 0
    ((args, kwargs),) = calls
    assert args == ("web.main:app_factory",)
    assert kwargs == {"factory": True, "host": "0.0.0.0", "port": 8123, "reload": True, "log_level": "info"}
    assert os.environ["VTA_DATA_DIR"] == str(data.resolve())
    from web.config import get_settings

    assert get_settings().data_dir == data.resolve()
    get_settings.cache_clear()


def test_serve_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, Any]] = []
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append(kw))
    monkeypatch.setenv("VTA_DATA_DIR", "unset")  # so that monkeypatch restores the original state
    monkeypatch.delenv("VTA_DATA_DIR")
    assert cli.main(["serve"]) == 0
    assert calls[0]["host"] == "127.0.0.1" and calls[0]["port"] == 8000 and calls[0]["reload"] is False
    assert "VTA_DATA_DIR" not in os.environ


def test_serve_rejects_bad_port(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["serve", "--port", "eighty"])
    assert info.value.code == 2


def test_dataset_is_dispatched(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    seen: list[list[str]] = []
    fake = types.ModuleType("trainer_runtime.formats.cli")

    def fake_main(argv: list[str]) -> int:
        seen.append(list(argv))
        return 3

    fake.main = fake_main  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "trainer_runtime.formats.cli", fake)
    assert cli.main(["dataset", "validate", "some/folder", "--strict"]) == 3
    assert seen == [["validate", "some/folder", "--strict"]]


def test_app_factory_reads_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from web.config import get_settings
    from web.main import app_factory

    monkeypatch.setenv("VTA_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        app = app_factory()
        assert app.state.settings.data_dir == tmp_path
    finally:
        get_settings.cache_clear()
