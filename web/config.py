"""The one settings object, read from the environment (and `.env`), got through `get_settings()`."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    data_dir: Path = Field(default=Path("./data"), validation_alias="VTA_DATA_DIR")
    database_url: str | None = None  # default: sqlite under data_dir
    secret_key: str | None = None  # default: generated once and kept in data_dir/secret_key
    access_token_expire_minutes: int = 60 * 24
    cors_origins: str = ""  # comma-separated

    # Dual storage (DESIGN): external = datasets, internal = results. Empty endpoint = local folders.
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
    callback_base_url: str = Field(
        default="http://127.0.0.1:8000",
        validation_alias=AliasChoices("VTA_CALLBACK_BASE_URL", "callback_base_url"),
        description="how a trainer reaches this server (`vision-agent serve` sets it from --host/--port)",
    )
    mlflow_tracking_uri: str | None = None  # None: the trainer's SQLite store under data_dir/trainer/mlflow

    # Agent brain (agent.llm): an OpenAI-compatible endpoint through LangChain when LLM_BASE_URL is
    # set; otherwise (and whenever it fails) the deterministic bilingual dialogue.
    llm_base_url: str | None = None
    llm_api_key: str | None = None
    llm_model: str = "gpt-4o-mini"
    llm_timeout_s: float = Field(default=30.0, gt=0)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'app.db').resolve()}"

    @property
    def resolved_max_concurrent_jobs(self) -> int:
        """`max_concurrent_jobs`, else the number of GPUs (`nvidia-smi -L`), else 1."""
        if self.max_concurrent_jobs:
            return self.max_concurrent_jobs
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
    return Settings()
