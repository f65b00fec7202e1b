"""The FastAPI application factory.

`create_app(settings)` builds an app; nothing is created at import time. The lifespan opens the
long-lived resources and keeps them on `app.state` (see `web.deps`): the engine (migrated to the
newest Alembic revision), the session factory, the dual storage client, the work folder, the
signing secret and the system user; then it makes the built-in demo datasets when enabled.

Run it with `vision-agent serve` or `uvicorn --factory web.main:app_factory`.
The server process never imports torch or a training framework.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from tools import auth as auth_tools
from tools.datasets import ensure_demo_datasets
from tools.db import create_engine_for_url, make_session_factory, migrate
from trainer_runtime.storage import DualStorageClient, StorageConfig, StoreConfig
from web.config import Settings, get_settings
from web.errors import install_error_handlers
from web.routes import auth, datasets, health, projects

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def storage_config_from_settings(settings: Settings) -> StorageConfig:
    """Map EXTERNAL_* / INTERNAL_* (falling back to S3_ENDPOINT / AWS_*) onto a StorageConfig.

    An empty endpoint means local folders under `data_dir/storage/{external,internal}`.
    """
    external = StoreConfig(
        endpoint=settings.external_storage_endpoint or settings.s3_endpoint,
        access_key=settings.external_storage_access_key or settings.aws_access_key_id,
        secret_key=settings.external_storage_secret_key or settings.aws_secret_access_key,
        bucket=settings.external_bucket_datasets,
        region=settings.aws_region,
    )
    internal = StoreConfig(
        endpoint=settings.internal_storage_endpoint or settings.s3_endpoint,
        access_key=settings.internal_storage_access_key or settings.aws_access_key_id,
        secret_key=settings.internal_storage_secret_key or settings.aws_secret_access_key,
        bucket=settings.internal_bucket_checkpoints,
        region=settings.aws_region,
    )
    return StorageConfig(external=external, internal=internal, local_root=settings.data_dir / "storage")


def _startup(app: FastAPI, settings: Settings) -> None:
    """Blocking part of the lifespan (run in a worker thread)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine_for_url(settings.resolved_database_url)
    migrate(engine)
    session_factory = make_session_factory(engine)
    storage = DualStorageClient.from_config(storage_config_from_settings(settings))
    work_dir = settings.data_dir / "work"
    work_dir.mkdir(parents=True, exist_ok=True)

    state = app.state
    state.settings = settings
    state.engine = engine
    state.session_factory = session_factory
    state.storage = storage
    state.work_dir = work_dir
    state.secret_key = settings.resolved_secret_key()
    with session_factory() as db:
        state.system_user_id = auth_tools.ensure_system_user(db).id
    if settings.create_demo_datasets:
        ensure_demo_datasets(session_factory, storage, work_dir)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    await run_in_threadpool(_startup, app, settings)
    try:
        yield
    finally:
        engine = getattr(app.state, "engine", None)
        if engine is not None:
            engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app for `settings` (default: the environment's, `web.config.get_settings()`)."""
    settings = settings or get_settings()
    app = FastAPI(
        title="Vision Training Agent",
        version=_version(),
        description="Train computer-vision models by talking to a self-hosted server.",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_credentials="*" not in origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    install_error_handlers(app)
    app.include_router(health.router)
    for module in (auth, projects, datasets):
        app.include_router(module.router, prefix=API_PREFIX)
    return app


def app_factory() -> FastAPI:
    """Entry point for `uvicorn --factory web.main:app_factory` (settings from the environment)."""
    return create_app(get_settings())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vision-training-agent")
    except PackageNotFoundError:
        return "0.0.0"
