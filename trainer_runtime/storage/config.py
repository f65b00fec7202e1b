"""The stores' settings: `StoreConfig` (one store) and `StorageConfig` (both), shared by the
server's settings and the job spec (docs/architecture.md, Storage and contract 4).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_DATASETS_BUCKET = "training-datasets"
DEFAULT_CHECKPOINTS_BUCKET = "training-checkpoints"


class StoreConfig(BaseModel):
    """One store: S3/MinIO at `endpoint`, or a local folder when `endpoint` is None. It is both
    the server's setting (``web.config.Settings.storage``) and the job spec's ``storage.external``
    / ``storage.internal`` object (same JSON fields), so no converter sits between them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str | None = None
    access_key: str | None = None
    secret_key: str | None = None
    bucket: str
    region: str = "us-east-1"

    def __repr__(self) -> str:  # never print secrets
        return (
            f"StoreConfig(endpoint={self.endpoint!r}, access_key={'***' if self.access_key else None}, "
            f"secret_key={'***' if self.secret_key else None}, bucket={self.bucket!r}, "
            f"region={self.region!r})"
        )

    __str__ = __repr__


class StorageConfig(BaseModel):
    """Both stores' settings. A store whose endpoint is None is a local folder:
    ``<local_root>/{external,internal}/<bucket>/<key>``. The job spec's ``storage`` object."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    external: StoreConfig = Field(default_factory=lambda: StoreConfig(bucket=DEFAULT_DATASETS_BUCKET))
    internal: StoreConfig = Field(default_factory=lambda: StoreConfig(bucket=DEFAULT_CHECKPOINTS_BUCKET))
    local_root: Path = Path("./data/storage")
