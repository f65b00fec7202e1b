"""The unauthenticated /health tells nothing but ok/failing, and the
server's local state is private to its user (data, work, storage folders 0700; app.db and stored
objects 0600), also when the process umask would allow more."""

from __future__ import annotations

import io
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.conftest import make_settings
from web.main import create_app


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def wide_umask() -> Iterator[None]:
    """The usual 022 umask (files 0644, folders 0755 unless the code asks for less)."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _settings(db_url: str, tmp_path: Path, **overrides: Any) -> Any:
    if db_url.startswith("sqlite"):
        overrides.setdefault("database_url", None)  # the default: <data_dir>/app.db
    return make_settings(db_url, tmp_path, **overrides)


@pytest.mark.usefixtures("wide_umask")
def test_state_folders_database_and_objects_are_private(db_url: str, tmp_path: Path) -> None:
    settings = _settings(db_url, tmp_path)
    data = settings.data_dir
    with TestClient(create_app(settings)) as client:
        storage = client.app.state.storage  # type: ignore[attr-defined]
        src = tmp_path / "a.jpg"
        src.write_bytes(b"\xff\xd8 not really a jpeg")
        storage.upload_dataset_file("ds-1", "cats/a.jpg", src)
        storage.internal.put_stream("checkpoints/test-jobs/job_1/best.pt", io.BytesIO(b"weights"))
        assert client.get("/health").status_code == 200
    for folder in (data, data / "work", data / "storage", data / "trainer"):
        assert _mode(folder) == 0o700, folder
    if db_url.startswith("sqlite"):
        assert _mode(data / "app.db") == 0o600
    stored = [p for p in (data / "storage").rglob("*") if p.is_file()]
    assert len(stored) == 2
    # Nothing the server made under its data folder is open to other users.
    wide = {str(p.relative_to(data)): oct(_mode(p)) for p in data.rglob("*") if _mode(p) & 0o077}
    assert not wide, wide


@pytest.mark.usefixtures("wide_umask")
def test_existing_wide_state_is_narrowed_at_start(tmp_path: Path) -> None:
    settings = make_settings("sqlite://", tmp_path, database_url=None)
    data = settings.data_dir
    (data / "work").mkdir(parents=True, mode=0o755)
    (data / "storage").mkdir(mode=0o777)
    os.chmod(data / "storage", 0o777)
    (data / "app.db").touch(mode=0o644)
    os.chmod(data, 0o755)
    with TestClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200
    assert [_mode(p) for p in (data, data / "work", data / "storage")] == [0o700] * 3
    assert _mode(data / "app.db") == 0o600


def test_health_names_no_path_endpoint_or_bucket(db_url: str, tmp_path: Path) -> None:
    settings = _settings(
        db_url,
        tmp_path,
        internal_storage_endpoint="http://127.0.0.1:1",  # S3 side: described, never contacted
        internal_storage_access_key="AKIDEXAMPLE",
        internal_storage_secret_key="secret-example",
        internal_bucket_checkpoints="private-bucket-name",
    )
    with TestClient(create_app(settings)) as client:
        resp = client.get("/health")
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok", "database": "ok", "storage": {"external": "ok", "internal": "ok"}}
    text = resp.text
    for secret in (str(tmp_path), "storage", "127.0.0.1", "private-bucket-name", "training-datasets", "AKID"):
        assert secret not in text.replace('"storage":', ""), secret


def test_health_failing_parts_say_only_failing(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy.orm import sessionmaker

    from tools.db import create_engine_for_url

    app = create_app(_settings(db_url, tmp_path))
    with TestClient(app) as client:
        broken = create_engine_for_url("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
        good = app.state.session_factory
        app.state.session_factory = sessionmaker(bind=broken)

        def no_describe() -> dict[str, Any]:
            raise OSError(f"cannot stat {tmp_path}/storage/external")

        monkeypatch.setattr(app.state.storage.external, "describe", no_describe)
        try:
            resp = client.get("/health")
        finally:
            app.state.session_factory = good
            broken.dispose()
    assert resp.status_code == 503
    body = resp.json()
    assert body == {
        "status": "unavailable",
        "database": "failing",
        "storage": {"external": "failing", "internal": "ok"},
    }
    assert str(tmp_path) not in json.dumps(body) and "127.0.0.1" not in json.dumps(body)
