"""Object keys of the two stores (docs/architecture.md, Storage) and the checks every key passes.

``datasets/{id}/images/{rel}``, ``datasets/{id}/annotations.json``,
``datasets/{id}/snapshots/{sid}/annotations.json``, ``checkpoints/projects/{p}/jobs/{j}/{name}``
or ``checkpoints/test-jobs/job_{j}/{name}``. An invalid key raises `ValueError`.
"""

from __future__ import annotations

import unicodedata

from trainer_runtime.errors import UnsafePathError
from trainer_runtime.formats.paths import safe_relpath


def _check_id(value: str | int, what: str) -> str:
    """A dataset/snapshot id used as one key part: non-empty, no separators, no control chars."""
    text = str(value)
    if (
        not text
        or text in (".", "..")
        or "/" in text
        or "\\" in text
        or any(unicodedata.category(ch) == "Cc" for ch in text)
    ):
        raise ValueError(f"invalid {what} {value!r} for a storage key")
    return text


def check_rel(rel_path: str, what: str) -> str:
    """`rel_path` normalised to a safe relative path; ValueError naming `what` when it is not one."""
    try:
        return safe_relpath(rel_path)
    except UnsafePathError as exc:
        raise ValueError(f"invalid {what} {rel_path!r}: {exc.message}") from exc


def dataset_prefix(dataset_id: str) -> str:
    """``datasets/{id}/`` (with the trailing slash, so dataset 1 never matches dataset 10)."""
    return f"datasets/{_check_id(dataset_id, 'dataset id')}/"


def dataset_images_prefix(dataset_id: str) -> str:
    """``datasets/{id}/images/``: the folder of the dataset's image files."""
    return f"{dataset_prefix(dataset_id)}images/"


def dataset_image_key(dataset_id: str, rel_path: str) -> str:
    """``datasets/{id}/images/{rel}``; `rel_path` is normalised (backslashes, ``./``) and must be
    a safe relative path (else ValueError)."""
    return dataset_images_prefix(dataset_id) + check_rel(rel_path, "image path")


def dataset_annotations_key(dataset_id: str) -> str:
    """``datasets/{id}/annotations.json``: the dataset's live annotations."""
    return f"{dataset_prefix(dataset_id)}annotations.json"


def snapshot_annotations_key(dataset_id: str, snapshot_id: str) -> str:
    """``datasets/{id}/snapshots/{sid}/annotations.json``: the annotations a snapshot froze."""
    sid = _check_id(snapshot_id, "snapshot id")
    return f"{dataset_prefix(dataset_id)}snapshots/{sid}/annotations.json"


def checkpoint_key(job_id: int, project_id: int | None, name: str) -> str:
    """``checkpoints/projects/{p}/jobs/{j}/{name}``, or ``checkpoints/test-jobs/job_{j}/{name}``
    when the job has no project."""
    job = _check_id(job_id, "job id")
    rel = check_rel(name, "checkpoint name")
    if project_id is None:
        return f"checkpoints/test-jobs/job_{job}/{rel}"
    return f"checkpoints/projects/{_check_id(project_id, 'project id')}/jobs/{job}/{rel}"


def validate_key(key: str) -> str:
    """Return `key` unchanged if it is a safe object key, else raise ValueError.

    Rejected: non-strings, empty keys, absolute keys, backslashes, control characters, empty
    parts (``a//b``, trailing ``/``), ``.`` and ``..`` parts.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"invalid object key {key!r}: empty")
    if any(unicodedata.category(ch) == "Cc" for ch in key):
        raise ValueError(f"invalid object key {key!r}: control character")
    if key.startswith("/") or (len(key) >= 2 and key[1] == ":"):
        raise ValueError(f"invalid object key {key!r}: absolute")
    if "\\" in key:
        raise ValueError(f"invalid object key {key!r}: backslash")
    for part in key.split("/"):
        if part in ("", ".", ".."):
            raise ValueError(f"invalid object key {key!r}: empty, '.' or '..' part")
    return key


def validate_prefix(prefix: str) -> str:
    """Like `validate_key`, but allows the empty prefix, a trailing ``/`` and a partial last part."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix
