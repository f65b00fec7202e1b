"""Object storage: one API over local folders and S3/MinIO, and the dual-store client.

Datasets are read-mostly and live in the *external* store; training results (checkpoints) are
write-mostly and live in the *internal* store. `DualStorageClient` routes each operation to its
side, so callers never pick a bucket themselves (docs/architecture.md, Storage).

    ObjectStore (abc)        one bucket in one store; ``name`` is "external" or "internal"  (base)
    ├── LocalObjectStore     files at ``<root>/<bucket>/<key>``, atomic writes (temp + os.replace)  (local)
    └── S3ObjectStore        boto3, streaming multipart transfers, errors mapped to StorageError  (s3)

Modules: `keys` (object keys and their checks), `files` (private local files, hashing), `base`,
`local`, `s3`, `config` (`StoreConfig`/`StorageConfig`, also the job spec's ``storage``) and
`client` (`make_store`, `DualStorageClient`). Import the names from this package.

Keys (docs/architecture.md, Storage): ``datasets/{id}/images/{rel}``, ``datasets/{id}/annotations.json``,
``datasets/{id}/snapshots/{sid}/annotations.json``, ``checkpoints/projects/{p}/jobs/{j}/{name}``
or ``checkpoints/test-jobs/job_{j}/{name}``.

Errors: a missing key raises `ObjectNotFoundError`; an endpoint that cannot be reached after the
client's retries raises `StorageUnavailableError` (naming store, endpoint and key); anything
else raises `StorageError`. Nothing is swallowed. An invalid key raises `ValueError`.

This package never imports torch or any layer above `trainer_runtime`; boto3 only when an S3
store is built.
"""

from __future__ import annotations

from trainer_runtime.storage.base import ObjectInfo, ObjectStore
from trainer_runtime.storage.client import DualStorageClient, make_store
from trainer_runtime.storage.config import (
    DEFAULT_CHECKPOINTS_BUCKET,
    DEFAULT_DATASETS_BUCKET,
    StorageConfig,
    StoreConfig,
)
from trainer_runtime.storage.files import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE, open_private, private_mkdirs
from trainer_runtime.storage.keys import (
    checkpoint_key,
    dataset_annotations_key,
    dataset_image_key,
    dataset_images_prefix,
    dataset_prefix,
    snapshot_annotations_key,
    validate_key,
    validate_prefix,
)
from trainer_runtime.storage.local import LocalObjectStore
from trainer_runtime.storage.s3 import S3ObjectStore

__all__ = [
    "DEFAULT_CHECKPOINTS_BUCKET",
    "DEFAULT_DATASETS_BUCKET",
    "PRIVATE_DIR_MODE",
    "PRIVATE_FILE_MODE",
    "DualStorageClient",
    "LocalObjectStore",
    "ObjectInfo",
    "ObjectStore",
    "S3ObjectStore",
    "StorageConfig",
    "StoreConfig",
    "checkpoint_key",
    "dataset_annotations_key",
    "dataset_image_key",
    "dataset_images_prefix",
    "dataset_prefix",
    "make_store",
    "open_private",
    "private_mkdirs",
    "snapshot_annotations_key",
    "validate_key",
    "validate_prefix",
]
