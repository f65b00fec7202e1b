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


@pytest.fixture
def serve_env(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    """uvicorn.run recorded instead of run; VTA_DATA_DIR / VTA_CALLBACK_BASE_URL unset (and
    restored afterwards, whatever `serve` writes)."""
    import uvicorn

    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **kw: calls.append((a, kw)))
    for name in ("VTA_DATA_DIR", "VTA_CALLBACK_BASE_URL"):
        monkeypatch.setenv(name, "unset")  # so that monkeypatch restores the original state
        monkeypatch.delenv(name)
    return calls


def test_serve_arguments(serve_env: list[tuple[tuple[Any, ...], dict[str, Any]]], tmp_path: Path) -> None:
    data = tmp_path / "state"
    rc = cli.main(["serve", "--host", "0.0.0.0", "--port", "8123", "--data-dir", str(data), "--reload"])
    assert rc == 0
    ((args, kwargs),) = serve_env
    assert args == ("web.main:app_factory",)
    assert kwargs == {"factory": True, "host": "0.0.0.0", "port": 8123, "reload": True, "log_level": "info"}
    # the reloader's app process reads the flags from the environment it inherits
    assert os.environ["VTA_DATA_DIR"] == str(data.resolve())
    assert os.environ["VTA_CALLBACK_BASE_URL"] == "http://127.0.0.1:8123"
    from web.config import Settings

    assert Settings(_env_file=None).data_dir == data.resolve()  # type: ignore[call-arg]


def test_serve_defaults(serve_env: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> None:
    assert cli.main(["serve"]) == 0
    ((args, kwargs),) = serve_env
    assert kwargs == {"host": "127.0.0.1", "port": 8000, "reload": False, "log_level": "info"}
    settings = args[0].state.settings  # the app itself, made with the settings
    assert settings.callback_base_url == "http://127.0.0.1:8000"
    assert "VTA_DATA_DIR" not in os.environ and "VTA_CALLBACK_BASE_URL" not in os.environ


def test_serve_flags_reach_the_app_without_the_environment(
    serve_env: list[tuple[tuple[Any, ...], dict[str, Any]]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--data-dir wins over VTA_DATA_DIR; a VTA_CALLBACK_BASE_URL that is set wins over --host/--port."""
    monkeypatch.setenv("VTA_DATA_DIR", str(tmp_path / "from-env"))
    assert cli.main(["serve", "--data-dir", str(tmp_path / "flag"), "--port", "9001"]) == 0
    settings = serve_env[-1][0][0].state.settings
    assert (settings.data_dir, settings.callback_base_url) == (tmp_path / "flag", "http://127.0.0.1:9001")
    assert os.environ["VTA_DATA_DIR"] == str(tmp_path / "from-env")  # nothing written
    monkeypatch.setenv("VTA_CALLBACK_BASE_URL", "http://vta.internal:8000")
    assert cli.main(["serve", "--host", "::", "--port", "9002"]) == 0
    settings = serve_env[-1][0][0].state.settings
    assert (settings.data_dir, settings.callback_base_url) == (tmp_path / "from-env", "http://vta.internal:8000")
    monkeypatch.setenv("VTA_CALLBACK_BASE_URL", "")  # empty: unset
    assert cli.main(["serve", "--host", "::", "--port", "9003"]) == 0
    assert serve_env[-1][0][0].state.settings.callback_base_url == "http://[::1]:9003"


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
