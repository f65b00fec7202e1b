"""Shared S3 fixtures: two real S3 HTTP endpoints (moto) standing for the external and internal
stores.

Each server is a `moto.server.ThreadedMotoServer(ip_address="127.0.0.1", port=0)` started in its
own child process: moto keeps its state in process-wide globals, so two servers inside one
process would share their buckets (and `mock_aws` in another test would wipe them). In separate
processes the two stores are truly separate, like two MinIO deployments.

Use from a conftest or a test module::

    from tests.s3_fixtures import moto_external, moto_internal, s3_env  # noqa: F401

`MotoS3.client()` gives a raw boto3 client for assertions; `unique_bucket()` a fresh bucket
name so session-scoped servers can be shared between tests without interference.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from trainer_runtime.storage import StorageConfig, StoreConfig

_SERVER_SCRIPT = r"""
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
server.start()
port = server._server.server_port if getattr(server, "_server", None) else server.get_host_and_port()[1]
sys.stdout.write(f"{port}\n")
sys.stdout.flush()
sys.stdin.read()  # until the parent closes our stdin (or dies)
server.stop()
"""

ACCESS_KEY = "testing-access"
SECRET_KEY = "testing-secret"
REGION = "us-east-1"


@dataclass(frozen=True)
class MotoS3:
    """One running S3 endpoint."""

    endpoint_url: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=Config(
                s3={"addressing_style": "path"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def bucket_names(self) -> list[str]:
        return sorted(b["Name"] for b in self.client().list_buckets().get("Buckets", []))

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        client = self.client()
        try:
            client.head_bucket(Bucket=bucket)
        except Exception:
            return []
        out: list[str] = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            out.extend(o["Key"] for o in page.get("Contents", []))
        return out


def unique_bucket(prefix: str = "test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def run_moto_server(timeout_s: float = 30.0) -> Iterator[MotoS3]:
    """Start a moto S3 server in a child process; stop it on exit."""
    env = dict(os.environ)
    # the child must not pick up real credentials or proxies
    for var in ("AWS_PROFILE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(var, None)
    env.setdefault("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    env.setdefault("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVER_SCRIPT],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout_s)
    try:
        if not line or not line[0].strip().isdigit():
            raise RuntimeError(f"moto server did not start (exit code {proc.poll()}, output {line!r})")
        yield MotoS3(endpoint_url=f"http://127.0.0.1:{int(line[0])}")
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_external() -> Iterator[MotoS3]:
    """The S3 endpoint standing for the external (datasets) store."""
    with run_moto_server() as server:
        yield server


@pytest.fixture(scope="session")
def moto_internal() -> Iterator[MotoS3]:
    """The S3 endpoint standing for the internal (checkpoints) store."""
    with run_moto_server() as server:
        yield server


@pytest.fixture
def s3_env(moto_external: MotoS3, moto_internal: MotoS3) -> dict[str, str]:
    """Environment variables (the names in docs/configuration.md) pointing the two stores at the two servers, with
    fresh bucket names for this test."""
    return {
        "EXTERNAL_STORAGE_ENDPOINT": moto_external.endpoint_url,
        "EXTERNAL_STORAGE_ACCESS_KEY": moto_external.access_key,
        "EXTERNAL_STORAGE_SECRET_KEY": moto_external.secret_key,
        "EXTERNAL_BUCKET_DATASETS": unique_bucket("datasets"),
        "INTERNAL_STORAGE_ENDPOINT": moto_internal.endpoint_url,
        "INTERNAL_STORAGE_ACCESS_KEY": moto_internal.access_key,
        "INTERNAL_STORAGE_SECRET_KEY": moto_internal.secret_key,
        "INTERNAL_BUCKET_CHECKPOINTS": unique_bucket("checkpoints"),
        "AWS_REGION": REGION,
    }


def s3_storage_config(env: dict[str, str], local_root: Path) -> StorageConfig:
    """The stores `s3_env` names, as a StorageConfig (each side's own variables; the server's
    EXTERNAL_* / INTERNAL_* mapping with its legacy fallbacks is tested in tests/web/test_config.py)."""

    def side(prefix: str, bucket_var: str) -> StoreConfig:
        return StoreConfig(
            endpoint=env[f"{prefix}_STORAGE_ENDPOINT"],
            access_key=env[f"{prefix}_STORAGE_ACCESS_KEY"],
            secret_key=env[f"{prefix}_STORAGE_SECRET_KEY"],
            bucket=env[bucket_var],
            region=env.get("AWS_REGION", "us-east-1"),
        )

    return StorageConfig(
        external=side("EXTERNAL", "EXTERNAL_BUCKET_DATASETS"),
        internal=side("INTERNAL", "INTERNAL_BUCKET_CHECKPOINTS"),
        local_root=local_root,
    )
