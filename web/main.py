"""The FastAPI application factory.

`create_app(settings)` builds an app; nothing is created at import time. The lifespan opens the
long-lived resources and keeps them on `app.state` (see `web.deps`): the engine (migrated to the
newest Alembic revision), the session factory, the dual storage client, the work folder, the
signing secret, the system user and the app's services (`app.state.services`, tools.services:
supervisor, job listeners, inference service, event bus, weights policy; every ToolContext gets
them, `web.deps`); then it makes the built-in demo datasets when enabled.
The job supervisor (`app.state.supervisor`, tools.supervisor) reconciles the jobs a previous
server left, then starts queued jobs; on shutdown it stops watching but leaves trainers running.
With several replicas on one database only the elected leader acts on jobs (tools.leader).

Run it with `vision-agent serve` or `uvicorn --factory web.main:app_factory`.
The server process never imports torch or a training framework.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from tools import auth as auth_tools
from tools import weights as weights_tools
from tools.datasets import ensure_demo_datasets
from tools.db import create_engine_for_url, make_session_factory, migrate
from tools.eventbus import create_event_bus
from tools.executors import Executor, LocalExecutor, TrainerLimits
from tools.executors.k8s_manifests import KubernetesConfig
from tools.executors.kubernetes import KubernetesExecutor, make_event_log_sink
from tools.inference import InferenceConfig, register_deleted_job_cleanup
from tools.jobs import JobRuntimeConfig
from tools.services import AppServices, WeightsPolicy
from tools.supervisor import Supervisor, SupervisorConfig
from tools.telemetry import Telemetry
from trainer_runtime.storage import DualStorageClient, StorageConfig
from web.bodylimit import BodyGuardMiddleware
from web.config import Settings, get_settings, gpu_count
from web.errors import install_error_handlers
from web.filemodes import secure_data_dir, secure_sqlite_file
from web.logredact import install_log_redaction
from web.overload import OverloadMiddleware
from web.routes import auth, datasets, health, job_events, jobs, metrics, projects, stream_tickets, ws
from web.routes import chat as chat_routes
from web.routes import downloads as download_routes
from web.routes import inference as inference_routes
from web.routes import internal as internal_routes
from web.routes import slack as slack_routes
from web.routes import ui as ui_routes
from web.routes import user_weights as user_weights_routes
from web.routes import weights as weights_routes
from web.slack import start_slack, stop_slack

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def storage_config_from_settings(settings: Settings) -> StorageConfig:
    """`settings.storage` (kept for callers of this name)."""
    return settings.storage


def kubernetes_config_from_settings(settings: Settings) -> KubernetesConfig:
    """`settings.kubernetes` (kept for callers of this name)."""
    return settings.kubernetes


def _startup(app: FastAPI, settings: Settings) -> None:
    """Blocking part of the lifespan (run in a worker thread)."""
    secure_data_dir(settings.data_dir)  # 0700: data, work, storage, trainer (web.filemodes)
    secure_sqlite_file(settings.resolved_database_url)  # app.db 0600 before SQLite creates it
    engine = create_engine_for_url(
        settings.resolved_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
    )
    migrate(engine)
    session_factory = make_session_factory(engine)
    storage = DualStorageClient.from_config(settings.storage)
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
        weights_tools.promote_admin_emails(db, settings.admin_emails)
    services = AppServices(weights=weights_policy_from_settings(settings))
    state.services = services
    # a deleted job's checkpoints leave the inference cache too
    cache_dir = InferenceConfig.from_settings(settings).cache_dir
    register_deleted_job_cleanup(services.job_listeners, session_factory, cache_dir)
    if settings.create_demo_datasets:
        ensure_demo_datasets(session_factory, storage, work_dir)


def weights_policy_from_settings(settings: Settings) -> WeightsPolicy:
    """The pretrained-weights download policy (WEIGHTS_*, ULTRALYTICS_ASSETS_URL)."""
    return WeightsPolicy(
        download=settings.weights_download,
        timeout_s=settings.weights_download_timeout_s,
        max_s=settings.weights_download_max_s,
        max_bytes=settings.weights_max_bytes,
        ultralytics_assets_url=settings.ultralytics_assets_url,
    )


def create_supervisor(app: FastAPI, settings: Settings) -> Supervisor:
    """The job supervisor (tools.supervisor) over a LocalExecutor, or a KubernetesExecutor when
    EXECUTOR=kubernetes (its pods' log lines become `log` events); its status events are published
    on the app's event bus. `reconcile()` takes over what a previous server process left."""
    runtime = JobRuntimeConfig(
        trainer_dir=(settings.data_dir / "trainer").resolve(),
        storage=settings.storage,
        callback_base_url=settings.callback_base_url,
        mlflow_tracking_uri=settings.mlflow_tracking_uri,
        reporter_close_timeout_s=settings.reporter_close_timeout_s,
        weights=weights_policy_from_settings(settings),
    )

    def publish(job_id: int, event: dict[str, Any]) -> None:
        bus = getattr(app.state, "event_bus", None)
        if bus is not None:
            bus.publish_threadsafe(job_id, event)

    executor: Executor
    if settings.executor == "kubernetes":
        executor = KubernetesExecutor(
            settings.kubernetes,
            log_sink=make_event_log_sink(app.state.session_factory, publish),
        )
    else:
        executor = LocalExecutor(
            {
                "ultralytics": settings.trainer_python_ultralytics,
                "timm": settings.trainer_python_timm,
                "transformers": settings.trainer_python_transformers,
            },
            gpu_ids=[str(i) for i in range(gpu_count())],
            limits=TrainerLimits(
                memory_mb=settings.trainer_memory_limit_mb,
                open_files=settings.trainer_open_files_limit,
                processes=settings.trainer_process_limit,
            ),
            env_allow=settings.trainer_env_allow,
        )
    config = SupervisorConfig(
        runtime=runtime,
        slots=settings.resolved_max_concurrent_jobs,
        max_retries=settings.job_max_retries,
        retry_base_delay_s=settings.job_retry_base_delay_s,
        stop_grace_s=settings.stop_grace_period_s,
    )
    return Supervisor(app.state.session_factory, executor, config, publish=publish)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the database, storage, event bus, job supervisor and Slack bot on start; stop them on shutdown."""
    settings: Settings = app.state.settings
    await run_in_threadpool(_startup, app, settings)
    # Progress fan-out (tools.eventbus): Redis when REDIS_URL is set, else in-process.
    event_bus = create_event_bus(settings.redis_url, prefix=settings.redis_channel_prefix)
    await event_bus.start()
    app.state.event_bus = event_bus
    services: AppServices = app.state.services
    services.event_bus = event_bus
    app.state.telemetry.bind(app.state.session_factory, lambda: getattr(app.state, "supervisor", None))
    # Training jobs: adopt or resume what a previous server left, then start the queue.
    supervisor = create_supervisor(app, settings)
    await run_in_threadpool(supervisor.reconcile)
    supervisor.start()
    app.state.supervisor = supervisor
    services.notifier = supervisor  # jobs queued, stopped, resumed or deleted by any caller wake it
    await start_slack(app)  # Slack bot + its progress follower, when SLACK_BOT_TOKEN/SIGNING_SECRET are set
    try:
        yield
    finally:
        await stop_slack(app)
        services.notifier = None
        await run_in_threadpool(supervisor.shutdown)  # trainers keep running; the next start adopts them
        await run_in_threadpool(inference_routes.close_inference_service, app.state)  # stop inference workers
        await event_bus.close()
        engine = getattr(app.state, "engine", None)
        if engine is not None:
            engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """A new app for `settings` (default: the environment's, `web.config.get_settings()`)."""
    settings = settings or get_settings()
    install_log_redaction()  # no credential (?token=, ?ticket=, Bearer, JWT) in any log line
    app = FastAPI(
        title="Vision Training Agent",
        version=_version(),
        description="Train computer-vision models by talking to a self-hosted server.",
        lifespan=lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.telemetry = Telemetry()  # Prometheus registry of this app (GET /metrics)
    # Outermost last: CORS (below), then bodies checked before anything reads them (401 without a
    # token, 413 over the limits), then the bound on requests in flight (503 + Retry-After).
    app.add_middleware(
        OverloadMiddleware,
        max_in_flight=settings.max_requests_in_flight,
        queue_timeout_s=settings.request_queue_timeout_s,
        db_connections=settings.db_pool_size + settings.db_max_overflow,
    )
    app.add_middleware(
        BodyGuardMiddleware,
        max_body_bytes=settings.max_request_body_bytes,
        max_unauthenticated_body_bytes=settings.max_unauthenticated_body_bytes,
    )
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
    # Routes are matched in order: the per-image inference route (the one hot path with a latency
    # goal) is looked up first; no other route's path overlaps its paths.
    app.include_router(inference_routes.router, prefix=API_PREFIX)
    for module in (auth, projects, datasets):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(jobs.router, prefix=API_PREFIX)
    app.include_router(job_events.router, prefix=API_PREFIX)
    app.include_router(stream_tickets.router, prefix=API_PREFIX)  # POST /stream-tickets
    app.include_router(weights_routes.router, prefix=API_PREFIX)  # GET (users), POST (administrators)
    app.include_router(user_weights_routes.router, prefix=API_PREFIX)  # /weights/mine: a user's own uploads
    app.include_router(download_routes.router, prefix=API_PREFIX)  # checkpoints, model cards, /dl/<signed>
    app.include_router(internal_routes.router)
    app.include_router(ws.router)
    app.include_router(metrics.router)
    app.include_router(chat_routes.router, prefix=API_PREFIX)
    app.include_router(chat_routes.ws_router)
    app.include_router(slack_routes.router)  # POST /slack/events, /slack/commands, /slack/interactions
    app.include_router(slack_routes.api_router, prefix=API_PREFIX)
    app.include_router(ui_routes.router)  # the chat page at / and its assets
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
