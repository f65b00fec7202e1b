"""The one settings object, read from the environment (and `.env`), got through `get_settings()`."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, BaseModel, Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from trainer_runtime.storage import StorageConfig, StoreConfig

if TYPE_CHECKING:
    from tools.executors.k8s_manifests import KubernetesConfig


# InferenceSettings field -> the type its VTA_INFERENCE_* value must parse as (else it is ignored).
INFERENCE_FIELDS: dict[str, Callable[[str], Any]] = {
    "cache_dir": Path,
    "workers_per_framework": int,
    "device": str,
    "max_models": int,
    "max_memory_mb": float,
    "batch_window_ms": float,
    "batch_wait": str,
    "max_batch": int,
    "max_pixels": int,
    "max_image_bytes": int,
    "request_timeout_s": float,
    "export_timeout_s": float,
    "threads": int,
    "test_run_batch": int,
    "test_run_workers": int,
    "route_cache_ttl_s": float,
}


class InferenceSettings(BaseModel):
    """Inference workers (tools.inference), `Settings.inference`, read from VTA_INFERENCE_<NAME>:
    `tools.inference.InferenceConfig.from_settings` takes each that is set. Unset (None), empty or
    unreadable: InferenceConfig's own default (never a start-up error)."""

    cache_dir: Path | None = None
    workers_per_framework: int | None = None
    device: str | None = None
    max_models: int | None = None
    max_memory_mb: float | None = None
    batch_window_ms: float | None = None
    batch_wait: str | None = None
    max_batch: int | None = None
    max_pixels: int | None = None
    max_image_bytes: int | None = None
    request_timeout_s: float | None = None
    export_timeout_s: float | None = None
    threads: int | None = None
    test_run_batch: int | None = None
    test_run_workers: int | None = None
    route_cache_ttl_s: float | None = None

    @field_validator(*INFERENCE_FIELDS, mode="before")
    @classmethod
    def _lenient(cls, value: Any, info: ValidationInfo) -> Any:
        """An empty or unreadable VTA_INFERENCE_* means the default (never a start-up error)."""
        if isinstance(value, str):
            if not value.strip():
                return None
            cast = INFERENCE_FIELDS[info.field_name or ""]
            try:
                cast(value)
            except ValueError:
                return None
        return value


class LLMSettings(BaseModel):
    """Agent brain (agent.llm), `Settings.llm`, read from LLM_<NAME>: an OpenAI-compatible endpoint
    through LangChain when LLM_BASE_URL is set (compose's opt-in `llm` profile serves SmolLM2 with
    llama.cpp). The model only proposes slots and phrases answers from tool results; the
    deterministic bilingual dialogue keeps state and confirmation, and what the guard discards is
    counted in /metrics (vta_llm_guard_discards_total). Without it, or whenever it fails, the
    dialogue answers alone."""

    base_url: str | None = None
    api_key: str | None = None
    model: str = "gpt-4o-mini"
    timeout_s: float = Field(default=30.0, gt=0)

    @field_validator("model", mode="before")
    @classmethod
    def _empty_model_is_default(cls, value: Any) -> Any:
        """LLM_MODEL= (empty) means the default model."""
        return cls.model_fields["model"].default if value in ("", None) else value


class SlackSettings(BaseModel):
    """Slack bot (web.slack), `Settings.slack`, read from SLACK_<NAME>: on when both SLACK_BOT_TOKEN
    and SLACK_SIGNING_SECRET are set. SLACK_API_BASE_URL points slack_sdk at another Web API (tests:
    a local fake)."""

    bot_token: str | None = None
    signing_secret: str | None = None
    api_base_url: str | None = None
    progress_interval_s: float = Field(default=1.0, ge=0.1)  # at most one chat.update per message per this
    link_code_ttl_s: int = Field(default=600, ge=30, le=86400)

    @property
    def enabled(self) -> bool:
        """Both the bot token and the signing secret are set."""
        return bool(self.bot_token and self.signing_secret)


class K8sSettings(BaseModel):
    """EXECUTOR=kubernetes's settings, `Settings.k8s`, read from K8S_<NAME> (see
    docs/configuration.md and docs/deploy.md); `Settings.kubernetes` turns them into the executor's
    `KubernetesConfig`."""

    namespace: str | None = None  # None: in-cluster namespace, else the kubeconfig context's, else default
    in_cluster: bool | None = None  # None: in-cluster when KUBERNETES_SERVICE_HOST is set, else KUBECONFIG
    context: str | None = None
    image_ultralytics: str = "vta-trainer-ultralytics:latest"
    image_timm: str = "vta-trainer-timm:latest"
    image_transformers: str = "vta-trainer-transformers:latest"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    image_pull_secrets: str = ""  # comma-separated Secret names
    service_account: str | None = None  # of the trainer pods (they need no API access)
    cpu_request: str | None = "2"
    memory_request: str | None = "8Gi"
    cpu_limit: str | None = None
    memory_limit: str | None = "16Gi"
    gpus_per_job: int = Field(default=0, ge=0)
    gpu_resource: str = "nvidia.com/gpu"
    node_selector: str = ""  # k=v,k2=v2
    tolerations: str = ""  # JSON list, as in a pod spec
    backoff_limit: int = Field(default=0, ge=0)
    active_deadline_s: int = Field(default=7 * 24 * 3600, ge=0)  # 0: none
    ttl_after_finished_s: int = Field(default=24 * 3600, ge=60)  # the server must see how a Job ended
    work_pvc: str | None = None  # None: an emptyDir per pod
    shm_size: str | None = "2Gi"
    poll_interval_s: float = Field(default=2.0, gt=0)
    stream_logs: bool = True
    stop_propagation: Literal["Foreground", "Background"] = "Foreground"
    start_timeout_s: float = Field(default=600.0, ge=0)


class Settings(BaseSettings):
    """Every setting of the server, read once from the environment and `.env` (docs/configuration.md)."""

    # A field that is a model (inference, llm, slack, k8s) is read from <FIELD>_<NAME> (<ALIAS>_<NAME>
    # where it has one): the delimiter "_", split once, so LLM_BASE_URL is llm.base_url and
    # VTA_INFERENCE_MAX_BATCH is inference.max_batch.
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", env_nested_delimiter="_", env_nested_max_split=1)

    data_dir: Path = Field(default=Path("./data"), validation_alias=AliasChoices("VTA_DATA_DIR", "data_dir"))
    database_url: str | None = None  # default: sqlite under data_dir
    # Connections per server process: pool + overflow = 40 = the thread pool (anyio's default
    # limit) that runs the sync endpoints, so a busy thread never waits for a connection.
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=30, ge=0)
    # A request that waited this long for a pooled connection gets 503 + Retry-After (not a 500).
    db_pool_timeout_s: float = Field(default=10.0, gt=0)
    # Overload (web.overload): at most this many HTTP requests are worked on at once (and fewer
    # than worker threads (40) + pool + overflow, so the pool cannot deadlock); one more waits up
    # to REQUEST_QUEUE_TIMEOUT_S for a slot, then gets 503 + Retry-After. /health, /metrics exempt.
    max_requests_in_flight: int = Field(default=64, ge=1)
    request_queue_timeout_s: float = Field(default=2.0, ge=0)
    secret_key: str | None = None  # default: generated once and kept in data_dir/secret_key
    access_token_expire_minutes: int = 60 * 24
    # Stream tickets (tools.stream_tickets): a ticket from POST /api/v1/stream-tickets opens one
    # WebSocket / SSE stream within this many seconds, once (the bearer token stays out of URLs).
    stream_ticket_ttl_s: float = Field(default=60.0, gt=0, le=3600)
    # Signed download links (tools.downloads): GET /api/v1/dl/<signed> works without a bearer
    # token (a browser tab, Slack) for this many seconds after it was made, for one user and one
    # object. PUBLIC_BASE_URL (e.g. https://vta.example.com) makes the links the chat and Slack give
    # absolute; empty: paths relative to this server.
    download_link_ttl_s: float = Field(default=300.0, gt=0, le=7 * 24 * 3600)
    public_base_url: str = ""
    # Sign-in throttling (tools.throttle): this many failed sign-ins (or 409 registrations, per
    # client) lock the account / client address for LOGIN_LOCKOUT_BASE_S, doubling with each
    # further failure up to LOGIN_LOCKOUT_MAX_S (429 + Retry-After); failures are forgotten
    # LOGIN_FAILURE_WINDOW_S after the last one. Shared through Redis when REDIS_URL is set, else
    # counted per server process.
    login_max_failures_per_account: int = Field(default=5, ge=1)
    login_max_failures_per_client: int = Field(default=20, ge=1)
    login_failure_window_s: float = Field(default=900.0, gt=0)
    login_lockout_base_s: float = Field(default=30.0, gt=0)
    login_lockout_max_s: float = Field(default=900.0, gt=0)
    # Password hashing (argon2id holds 64 MiB each): at most this many at once per process (None:
    # the CPU count); a sign-in that waited PASSWORD_HASH_WAIT_S for a slot gets 503 + Retry-After.
    password_hash_concurrency: int | None = Field(default=None, ge=1)
    password_hash_wait_s: float = Field(default=10.0, gt=0)
    cors_origins: str = ""  # comma-separated

    # Dual storage (docs/architecture.md): external = datasets, internal = results. Empty endpoint = local folders.
    external_storage_endpoint: str | None = None
    external_storage_access_key: str | None = None
    external_storage_secret_key: str | None = None
    external_bucket_datasets: str = "training-datasets"
    internal_storage_endpoint: str | None = None
    internal_storage_access_key: str | None = None
    internal_storage_secret_key: str | None = None
    internal_bucket_checkpoints: str = "training-checkpoints"
    s3_endpoint: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_region: str = "us-east-1"

    # Uploads
    max_upload_bytes: int = 2 * 1024**3
    max_file_bytes: int = 256 * 1024**2
    max_zip_entries: int = 100_000
    max_zip_uncompressed_bytes: int = 8 * 1024**3
    # Request bodies (web.bodylimit): over these -> 413 (from Content-Length, or counted as a
    # chunked body streams). The first applies with a valid user token (uploads: above
    # MAX_UPLOAD_BYTES for the multipart framing); the second to everything else (sign-in,
    # registration, the intent parser, Slack, trainer events). /api/v1 routes that need a
    # user answer 401 before reading any body sent without a valid token.
    max_request_body_bytes: int = Field(default=2 * 1024**3 + 64 * 1024**2, ge=0)
    max_unauthenticated_body_bytes: int = Field(default=16 * 1024**2, ge=0)
    # Hostile uploads: a zip expanding more than MAX_ZIP_RATIO times its size (the whole
    # archive, or one entry over 1 MiB) is a zip bomb (413, checked before extracting). Each
    # user's datasets may hold USER_STORAGE_QUOTA_BYTES in all (413 beyond; 0 = no quota).
    # Class/keypoint names: at most MAX_LABEL_CHARS plain characters; at most MAX_CATEGORIES
    # classes and MAX_KEYPOINTS keypoints per class; JSON/YAML nested at most MAX_DOCUMENT_DEPTH
    # deep; a YAML file (data.yaml) at most MAX_YAML_BYTES. YAML anchors/aliases are refused.
    max_zip_ratio: float = Field(default=200.0, gt=1)
    user_storage_quota_bytes: int = Field(default=50 * 1024**3, ge=0)
    max_label_chars: int = Field(default=200, ge=1)
    max_categories: int = Field(default=10_000, ge=1)
    max_keypoints: int = Field(default=1_000, ge=1)
    max_document_depth: int = Field(default=64, ge=4)
    max_yaml_bytes: int = Field(default=1024**2, ge=1024)

    create_demo_datasets: bool = True

    # Progress fan-out (tools.eventbus): Redis pub/sub across replicas when set, else in-process.
    redis_url: str | None = None
    redis_channel_prefix: str = "vta"  # channels are <prefix>:job:<id>

    # Jobs (tools.jobs / tools.supervisor). max_concurrent_jobs None: one slot per GPU that
    # `nvidia-smi -L` lists, else 1. A TRAINER_PYTHON_* is the interpreter of that framework's venv
    # (None: the server's own `sys.executable`).
    max_concurrent_jobs: int | None = Field(default=None, ge=1)
    trainer_python_ultralytics: str | None = None
    trainer_python_timm: str | None = None
    trainer_python_transformers: str | None = None
    job_max_retries: int = Field(default=3, ge=0)
    job_retry_base_delay_s: float = Field(default=5.0, ge=0)
    stop_grace_period_s: float = Field(default=30.0, ge=0)
    # Local trainers (tools.executors.sandbox): resource limits per trainer process (0 = unlimited;
    # memory is RLIMIT_DATA, so CUDA's address-space reservations do not count) and extra
    # environment variables they may inherit (comma-separated, NAME_* for a prefix; the built-in
    # allow-list never passes the server's secrets).
    trainer_memory_limit_mb: int = Field(default=65536, ge=0)
    trainer_open_files_limit: int = Field(default=65536, ge=0)
    trainer_process_limit: int = Field(default=16384, ge=0)
    trainer_env_allow: str = ""
    callback_base_url: str = Field(
        default="http://127.0.0.1:8000",
        validation_alias=AliasChoices("VTA_CALLBACK_BASE_URL", "callback_base_url"),
        description="how a trainer reaches this server (`vision-agent serve` sets it from --host/--port)",
    )
    mlflow_tracking_uri: str | None = None  # None: the trainer's SQLite store under data_dir/trainer/mlflow
    render_font: str | None = Field(
        default=None,
        validation_alias=AliasChoices("VTA_RENDER_FONT", "render_font"),
        description="TrueType font for labels on rendered predictions (e.g. a Hangul font); unset: found on the system",
    )
    reporter_close_timeout_s: float = Field(
        default=120.0,
        ge=0,
        validation_alias=AliasChoices("VTA_REPORTER_CLOSE_TIMEOUT_S", "reporter_close_timeout_s"),
        description="how long a finished trainer keeps delivering its last events (its spec carries it)",
    )
    # Pretrained weights (tools.weights, trainer_runtime.weights): the registry first, then (unless
    # off) a download by the trainer from the framework's source (the Hugging Face hub through
    # HF_ENDPOINT / HF_HUB_OFFLINE; the Ultralytics release assets), else from scratch. auto: a
    # failed download means from scratch with a warning; on: it fails the job. Timeouts: per
    # request, and for the whole download. ADMIN_EMAILS (comma-separated) become administrators
    # at start-up (they may upload weights).
    weights_download: Literal["auto", "on", "off"] = "auto"
    weights_download_timeout_s: float = Field(default=5.0, gt=0, le=600)
    weights_download_max_s: float = Field(default=120.0, gt=0, le=86_400)
    weights_max_bytes: int = Field(default=2 * 1024**3, gt=0)
    # A weights file a user uploads for their own jobs (POST /api/v1/weights/mine; 413 beyond); it
    # counts toward USER_STORAGE_QUOTA_BYTES.
    user_weights_max_bytes: int = Field(default=2 * 1024**3, gt=0)
    ultralytics_assets_url: str = "https://github.com/ultralytics/assets/releases/download/v8.3.0"
    admin_emails: str = ""

    # Inference workers (tools.inference.InferenceConfig reads these first): VTA_INFERENCE_<NAME>.
    inference: InferenceSettings = Field(
        default_factory=InferenceSettings, validation_alias=AliasChoices("VTA_INFERENCE", "inference")
    )

    # Where trainers run (tools.executors): `local` subprocesses, or `kubernetes`: one batch/v1 Job
    # per attempt (tools.executors.kubernetes, needs the `k8s` extra). K8S_* only matter then; see
    # docs/configuration.md and docs/deploy.md.
    executor: Literal["local", "kubernetes"] = "local"
    k8s: K8sSettings = Field(default_factory=K8sSettings)
    # The Kubernetes conventions: set in every pod by Kubernetes / the kubeconfig file's path.
    kubernetes_service_host: str | None = Field(
        default=None, validation_alias=AliasChoices("KUBERNETES_SERVICE_HOST", "kubernetes_service_host")
    )
    kubeconfig: str | None = Field(default=None, validation_alias=AliasChoices("KUBECONFIG", "kubeconfig"))

    # Agent brain (agent.llm) and Slack bot (web.slack): nested models, read from LLM_* / SLACK_*.
    llm: LLMSettings = Field(default_factory=LLMSettings)
    slack: SlackSettings = Field(default_factory=SlackSettings)

    @property
    def storage(self) -> StorageConfig:
        """The two stores (EXTERNAL_* / INTERNAL_*, each falling back to S3_ENDPOINT / AWS_* for what
        it leaves empty); no endpoint means local folders under `data_dir/storage/{external,internal}`.
        The same model is the job spec's `storage` object."""
        external = StoreConfig(
            endpoint=self.external_storage_endpoint or self.s3_endpoint,
            access_key=self.external_storage_access_key or self.aws_access_key_id,
            secret_key=self.external_storage_secret_key or self.aws_secret_access_key,
            bucket=self.external_bucket_datasets,
            region=self.aws_region,
        )
        internal = StoreConfig(
            endpoint=self.internal_storage_endpoint or self.s3_endpoint,
            access_key=self.internal_storage_access_key or self.aws_access_key_id,
            secret_key=self.internal_storage_secret_key or self.aws_secret_access_key,
            bucket=self.internal_bucket_checkpoints,
            region=self.aws_region,
        )
        return StorageConfig(external=external, internal=internal, local_root=self.data_dir / "storage")

    @property
    def kubernetes(self) -> KubernetesConfig:
        """EXECUTOR=kubernetes's K8S_* settings (`k8s`) as the executor's config (empty strings: unset)."""
        from tools.executors.k8s_manifests import (
            KubernetesConfig,
            parse_node_selector,
            parse_tolerations,
            split_list,
        )

        k8s = self.k8s
        return KubernetesConfig(
            namespace=k8s.namespace or None,
            in_cluster=bool(self.kubernetes_service_host) if k8s.in_cluster is None else k8s.in_cluster,
            kubeconfig=self.kubeconfig or None,
            context=k8s.context or None,
            images={
                "ultralytics": k8s.image_ultralytics,
                "timm": k8s.image_timm,
                "transformers": k8s.image_transformers,
            },
            image_pull_policy=k8s.image_pull_policy,
            image_pull_secrets=split_list(k8s.image_pull_secrets),
            service_account=k8s.service_account or None,
            cpu_request=k8s.cpu_request or None,
            memory_request=k8s.memory_request or None,
            cpu_limit=k8s.cpu_limit or None,
            memory_limit=k8s.memory_limit or None,
            gpus_per_job=k8s.gpus_per_job,
            gpu_resource=k8s.gpu_resource,
            node_selector=parse_node_selector(k8s.node_selector),
            tolerations=parse_tolerations(k8s.tolerations),
            backoff_limit=k8s.backoff_limit,
            active_deadline_s=k8s.active_deadline_s or None,
            ttl_after_finished_s=k8s.ttl_after_finished_s,
            termination_grace_s=max(1, round(self.stop_grace_period_s)),
            work_pvc=k8s.work_pvc or None,
            shm_size=k8s.shm_size or None,
            poll_interval_s=k8s.poll_interval_s,
            stream_logs=k8s.stream_logs,
            stop_propagation=k8s.stop_propagation,
            start_timeout_s=k8s.start_timeout_s,
        )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'app.db').resolve()}"

    @property
    def resolved_max_concurrent_jobs(self) -> int:
        """`max_concurrent_jobs`, else the number of GPUs (`nvidia-smi -L`), else 1; with
        EXECUTOR=kubernetes 4 (the cluster's scheduler queues what does not fit)."""
        if self.max_concurrent_jobs:
            return self.max_concurrent_jobs
        if self.executor == "kubernetes":
            return 4
        return max(1, gpu_count())

    def resolved_secret_key(self) -> str:
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / "secret_key"
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(key)
        tmp.chmod(0o600)
        tmp.replace(path)
        return key


@lru_cache
def gpu_count() -> int:
    """GPUs `nvidia-smi -L` lists (0 without the tool or a driver); never imports torch."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return 0
    if out.returncode != 0:
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.strip().startswith("GPU "))


@lru_cache
def get_settings() -> Settings:
    """The process-wide Settings, read from the environment on first use and then kept."""
    return Settings()


def load_settings(data_dir: Path | None = None) -> Settings:
    """Settings from the environment (and `.env`), a command line's ``--data-dir`` (when given)
    winning over VTA_DATA_DIR. A fresh object: `get_settings()`'s cached one is left alone."""
    if data_dir is None:
        return Settings()
    return Settings(data_dir=Path(data_dir).expanduser().resolve())
