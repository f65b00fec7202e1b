"""App wiring: /health, OpenAPI, CORS, lifespan, the no-torch rule, and the error mapping."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient

from tests.conftest import make_settings
from tools import errors as te
from trainer_runtime import errors as re_
from web.errors import error_body, install_error_handlers, status_for, ws_close_code
from web.main import create_app


def test_health_ok(client: TestClient) -> None:
    resp = client.get("/health")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok" and body["database"] == "ok"
    assert isinstance(body["storage"], dict)
    assert "secret" not in json.dumps(body).lower()


def test_health_503_when_database_is_unreachable(app: FastAPI, client: TestClient) -> None:
    from sqlalchemy.orm import sessionmaker

    from tools.db import create_engine_for_url

    good = app.state.session_factory
    broken = create_engine_for_url("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    app.state.session_factory = sessionmaker(bind=broken)
    try:
        resp = client.get("/health")
        assert resp.status_code == 503
        assert resp.json()["status"] == "unavailable"
        assert resp.json()["database"] == "failing"
    finally:
        app.state.session_factory = good
        broken.dispose()
    assert client.get("/health").status_code == 200


def test_db_pool_covers_the_thread_pool(app: FastAPI, client: TestClient) -> None:
    """Every thread that runs a sync endpoint can hold a connection at once (pool + overflow =
    anyio's thread limit), so requests never queue for a connection behind a busy pool."""
    import anyio.to_thread

    pool = app.state.engine.pool
    limit = client.portal.call(lambda: anyio.to_thread.current_default_thread_limiter().total_tokens)
    assert pool.size() + pool._max_overflow == limit == 40


def test_openapi_and_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/auth/register",
        "/api/v1/auth/token",
        "/api/v1/auth/me",
        "/api/v1/projects",
        "/health",
    ):
        assert path in paths


def test_lifespan_is_idempotent_and_creates_state(tmp_path: Path, db_url: str) -> None:
    settings = make_settings(db_url, tmp_path)
    for _ in range(2):  # a restart: migrations and the system user are not duplicated
        app = create_app(settings)
        with TestClient(app) as c:
            assert c.get("/health").status_code == 200
            assert app.state.work_dir == settings.data_dir / "work"
            assert app.state.work_dir.is_dir()
            system_id = app.state.system_user_id
    from sqlalchemy import func, select

    from tools.auth import SYSTEM_USER_EMAIL
    from tools.db import User, create_engine_for_url

    engine = create_engine_for_url(db_url)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(User).where(User.email == SYSTEM_USER_EMAIL))
        assert count.scalar_one() == 1
        assert conn.execute(select(User.id).where(User.is_system)).scalar_one() == system_id
    engine.dispose()


def test_demo_datasets_are_made_only_when_enabled(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import web.main

    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(web.main, "ensure_demo_datasets", lambda *args: calls.append(args))
    with TestClient(create_app(make_settings(db_url, tmp_path))):
        pass
    assert calls == []
    app = create_app(make_settings(db_url, tmp_path, create_demo_datasets=True))
    with TestClient(app):
        pass
    ((factory, storage, work_dir),) = calls
    assert factory is app.state.session_factory and storage is app.state.storage
    assert work_dir == app.state.work_dir


def test_cors(tmp_path: Path, db_url: str) -> None:
    settings = make_settings(db_url, tmp_path, cors_origins="http://localhost:5173, http://example.org")
    with TestClient(create_app(settings)) as c:
        resp = c.options(
            "/api/v1/auth/me",
            headers={"Origin": "http://example.org", "Access-Control-Request-Method": "GET"},
        )
        assert resp.headers["access-control-allow-origin"] == "http://example.org"
        resp = c.get("/health", headers={"Origin": "http://evil.test"})
        assert "access-control-allow-origin" not in resp.headers


def test_storage_config_mapping(tmp_path: Path) -> None:
    from web.main import storage_config_from_settings

    settings = make_settings(
        "sqlite://",
        tmp_path,
        s3_endpoint="http://legacy:9000",
        aws_access_key_id="AK",
        aws_secret_access_key="SK",
        internal_storage_endpoint="http://internal:9000",
        internal_storage_access_key="IAK",
        internal_bucket_checkpoints="ckpts",
        aws_region="eu-west-1",
    )
    cfg = storage_config_from_settings(settings)
    assert cfg.local_root == settings.data_dir / "storage"
    assert (cfg.external.endpoint, cfg.external.access_key, cfg.external.secret_key) == (
        "http://legacy:9000",
        "AK",
        "SK",
    )
    assert cfg.external.bucket == "training-datasets"
    assert (cfg.internal.endpoint, cfg.internal.access_key, cfg.internal.secret_key) == (
        "http://internal:9000",
        "IAK",
        "SK",
    )
    assert cfg.internal.bucket == "ckpts" and cfg.internal.region == "eu-west-1"
    local = storage_config_from_settings(make_settings("sqlite://", tmp_path))
    assert local.external.endpoint is None and local.internal.endpoint is None


@pytest.mark.slow
def test_importing_and_serving_never_imports_torch(tmp_path: Path) -> None:
    """The server process stays free of torch (fresh interpreter: other tests may import it)."""
    code = textwrap.dedent(
        f"""
        import sys
        from fastapi.testclient import TestClient
        from tests.conftest import make_settings
        from web.main import create_app
        from pathlib import Path
        app = create_app(make_settings("sqlite:///{tmp_path / "t.db"}", Path({str(tmp_path)!r})))
        with TestClient(app) as c:
            assert c.get("/health").status_code == 200
            c.get("/openapi.json")
        names = ("torch", "torchvision", "ultralytics", "timm", "transformers")
        heavy = sorted(m for m in names if m in sys.modules)
        print("HEAVY=" + ",".join(heavy))
        """
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "HEAVY=\n" in out.stdout, out.stdout


# --- error mapping (web.errors) -----------------------------------------------------------------

ERROR_CASES: list[tuple[BaseException, int, int]] = [
    (te.NotFoundError("no such dataset"), 404, 1003),
    (te.PermissionDeniedError("not yours"), 403, 1008),
    (te.AuthenticationError("bad token"), 401, 1008),
    (te.ConflictError("name taken", detail={"field": "name"}), 409, 1003),
    (
        te.InvalidInputError("bad bbox", detail={"file": "annotations.json", "line": 3, "field": "bbox"}),
        422,
        1003,
    ),
    (te.PayloadTooLargeError("too big", detail={"limit": 10}), 413, 1003),
    (
        re_.DatasetFormatError("bbox outside", file="annotations.json", line=7, field="annotations[3].bbox"),
        422,
        1003,
    ),
    (re_.UnsafePathError("escapes folder", file="../x.jpg"), 422, 1003),
    (re_.IncompatibleDatasetError("no boxes", task_type="object_detection"), 422, 1003),
    (re_.StorageUnavailableError("store down"), 503, 1011),
    (re_.ObjectNotFoundError("external", "datasets/x"), 404, 1003),
    (te.InferenceUnavailableError("the worker died", detail={"framework": "timm"}), 503, 1011),
    (te.InferenceFailedError("inference failed: out of memory"), 500, 1011),
    (RuntimeError("boom"), 500, 1011),
]


@pytest.fixture
def error_client() -> TestClient:
    """A bare app with the handlers and one route raising the error named by `?i=`."""
    app = FastAPI()
    install_error_handlers(app)
    router = APIRouter()

    @router.get("/raise/{i}")
    def raise_(i: int) -> None:
        raise ERROR_CASES[i][0]

    @router.get("/validate")
    def validate(n: int) -> int:
        return n

    app.include_router(router)
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize("i", range(len(ERROR_CASES)), ids=[type(c[0]).__name__ for c in ERROR_CASES])
def test_error_mapping(error_client: TestClient, i: int) -> None:
    exc, status, ws_code = ERROR_CASES[i]
    assert status_for(exc) == status
    assert ws_close_code(exc) == ws_code
    resp = error_client.get(f"/raise/{i}")
    assert resp.status_code == status
    body = resp.json()
    assert isinstance(body["detail"], str) and body["detail"]
    if not isinstance(exc, te.ToolError | re_.TrainerRuntimeError):
        error_id = body.pop("error_id")
        assert isinstance(error_id, str) and len(error_id) == 16
        assert body == {"detail": "Internal server error", "error": "InternalServerError"}
    else:
        assert body["error"] == type(exc).__name__
    if status == 401:
        assert resp.headers["www-authenticate"] == "Bearer"


def test_unmapped_error_is_500_with_logged_id(error_client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    """An exception no table entry maps is a 500 whose id is in the log with the traceback, never
    a 200 or a bare text page."""
    boom = next(i for i, c in enumerate(ERROR_CASES) if type(c[0]) is RuntimeError)
    with caplog.at_level("ERROR", logger="web.errors"):
        first = error_client.get(f"/raise/{boom}")
        second = error_client.get(f"/raise/{boom}")
    assert first.status_code == second.status_code == 500
    ids = [first.json()["error_id"], second.json()["error_id"]]
    assert ids[0] != ids[1]
    for error_id in ids:
        [record] = [r for r in caplog.records if error_id in r.getMessage()]
        assert record.exc_info is not None and record.exc_info[0] is RuntimeError


def test_error_body_details() -> None:
    body = error_body(ERROR_CASES[7][0])  # UnsafePathError
    assert body["location"] == {"file": "../x.jpg", "line": None, "field": None}
    body = error_body(ERROR_CASES[6][0])  # DatasetFormatError
    assert body["location"] == {"file": "annotations.json", "line": 7, "field": "annotations[3].bbox"}
    assert "annotations.json:7" in body["detail"] and body["message"] == "bbox outside"
    body = error_body(ERROR_CASES[4][0])  # InvalidInputError with a location in detail
    assert body == {
        "detail": "bad bbox",
        "error": "InvalidInputError",
        "location": {"file": "annotations.json", "line": 3, "field": "bbox"},
    }
    assert error_body(ERROR_CASES[5][0])["limit"] == 10  # extra detail kept
    body = error_body(ERROR_CASES[8][0])
    assert body["reason"] == "no boxes" and body["task_type"] == "object_detection"
    # A ToolError raised from a DatasetFormatError carries its location.
    try:
        try:
            raise re_.DatasetFormatError("odd polygon", file="a.json", field="segmentation")
        except re_.DatasetFormatError as cause:
            raise te.InvalidInputError(str(cause)) from cause
    except te.InvalidInputError as exc:
        assert error_body(exc)["location"] == {"file": "a.json", "line": None, "field": "segmentation"}
    # detail={"location": {...}} is accepted too, and never overrides detail/error.
    body = error_body(te.ConflictError("x", detail={"location": {"field": "name"}, "detail": "no", "error": "no"}))
    assert body == {
        "detail": "x",
        "error": "ConflictError",
        "location": {"file": None, "line": None, "field": "name"},
    }


def test_request_validation_keeps_fastapi_shape(error_client: TestClient) -> None:
    resp = error_client.get("/validate", params={"n": "x"})
    assert resp.status_code == 422
    assert isinstance(resp.json()["detail"], list) and resp.json()["detail"][0]["loc"] == ["query", "n"]
