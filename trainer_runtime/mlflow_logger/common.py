"""What both ends of the MLflow logger share: the run-id file, MLflow-safe names, the default
store, the line reader of the pipe, and `mark_run_terminated` for a supervisor.

See the package docstring and docs/architecture.md (A request, step 6).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

RUN_ID_FILE = "mlflow_run_id"
LOCK_FILE = ".mlflow_logger.lock"
CHILD_LOG = "mlflow_logger.log"
TERMINAL = {"completed": "FINISHED", "stopped": "KILLED", "failed": "FAILED"}
_INVALID = re.compile(r"[^\w\-. /:]")
_MAX_PARAM = 500


def mlflow_name(name: str) -> str:
    """A metric/param/tag key MLflow accepts: letters, digits, ``_ - . / : space``; no leading
    slash, no ``..`` part (``val/mAP50-95`` stays as it is)."""
    out = _INVALID.sub("_", str(name)).strip().lstrip("/")
    out = "/".join("_" if part == ".." else part for part in out.split("/"))
    return out[:250] or "_"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params as MLflow params: dotted keys, values as text (JSON unless already a string), cut
    to MLflow's length limit."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            out[mlflow_name(name)] = text[:_MAX_PARAM]
    return out


def default_tracking_uri(work_dir: Path) -> str:
    """A SQLite tracking store under `work_dir/mlflow/` (the folder is created), for when none is set."""
    db = (Path(work_dir) / "mlflow" / "mlflow.db").resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{db}"


def mark_run_terminated(tracking_uri: str, run_id: str, status: str = "KILLED") -> bool:
    """Mark `run_id` terminated (FINISHED, FAILED or KILLED; job statuses completed/failed/stopped
    are mapped) when it is still RUNNING. Returns True when it changed the run. For a supervisor
    whose trainer process died without ending its run."""
    from mlflow.tracking import MlflowClient

    status = TERMINAL.get(status, status)
    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(run_id)
    if run.info.status != "RUNNING":
        return False
    client.set_terminated(run_id, status)
    return True


def write_run_id(output_dir: Path, run_id: str) -> None:
    """Record the job's MLflow run id in `output_dir` (atomically), so a resumed trainer or the
    supervisor can find the run."""
    output_dir.mkdir(parents=True, exist_ok=True)
    tmp = output_dir / f".{RUN_ID_FILE}.{os.getpid()}.{threading.get_ident()}.tmp"
    tmp.write_text(run_id, encoding="utf-8")
    os.replace(tmp, output_dir / RUN_ID_FILE)


def read_run_id(output_dir: Path) -> str | None:
    """The run id `write_run_id` left in `output_dir`, or None when there is none."""
    with contextlib.suppress(OSError):
        return (output_dir / RUN_ID_FILE).read_text(encoding="utf-8").strip() or None
    return None


def read_lines(fd: int) -> Iterator[bytes]:
    """The lines read from `fd` until EOF (or an error). Raw reads: a daemon thread blocked in a
    buffered file holds its lock, which can abort the interpreter's exit."""
    pending = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:
            return
        if not chunk:
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from lines
