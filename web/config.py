"""The one settings object, read from the environment (and `.env`), got through `get_settings()`."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path

from pydantic import Field
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

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'app.db').resolve()}"

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
def get_settings() -> Settings:
    return Settings()
