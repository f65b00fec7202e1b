"""Errors raised by the trainer runtime.

    TrainerRuntimeError
    ├── DatasetFormatError        a dataset file is malformed; names the file, line and field
    │   └── UnsafePathError       a path would escape its folder (absolute, '..', symlink, control chars)
    ├── IncompatibleDatasetError  the dataset cannot serve the requested task (carries the reason)
    └── StorageError              object storage failed
        ├── ObjectNotFoundError   the key does not exist
        └── StorageUnavailableError  the endpoint cannot be reached after retries

Every error carries a message a person can act on. `DatasetFormatError` keeps its location
(`file`, `line`, `field`) separately too so that HTTP layers can return it as structured detail.
"""

from __future__ import annotations

from typing import Any


class TrainerRuntimeError(Exception):
    """Base class of every error this package raises on purpose."""


class DatasetFormatError(TrainerRuntimeError):
    """A dataset (annotations.json, label file, image, archive) is not valid.

    `file` is the path inside the dataset, `line` a 1-based line number when known,
    `field` a JSON-path-like location such as ``annotations[3].bbox``.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = []
        if self.file:
            where.append(self.file if self.line is None else f"{self.file}:{self.line}")
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.field:
            where.append(self.field)
        return f"{': '.join(where)}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        return {"message": self.message, "file": self.file, "line": self.line, "field": self.field}


class UnsafePathError(DatasetFormatError):
    """A file name that would write outside its folder or cannot be stored safely."""


class IncompatibleDatasetError(TrainerRuntimeError):
    """The dataset's annotations cannot serve the requested task."""

    def __init__(self, reason: str, *, task_type: str | None = None) -> None:
        self.reason = reason
        self.task_type = task_type
        super().__init__(reason)


class StorageError(TrainerRuntimeError):
    """Object storage failed."""


class ObjectNotFoundError(StorageError):
    """The requested key does not exist in the store."""

    def __init__(self, store: str, key: str) -> None:
        self.store = store
        self.key = key
        super().__init__(f"{store}: no object at key {key!r}")


class StorageUnavailableError(StorageError):
    """The storage endpoint could not be reached (after retries)."""
