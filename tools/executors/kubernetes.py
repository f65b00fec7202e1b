"""`KubernetesExecutor`: one ``batch/v1`` Job per training attempt (seed: "Kubernetes Training 방식
FAQ", Tier 3), behind the same `Executor` interface as the local subprocess executor.

The official ``kubernetes`` client is imported lazily (``pip install 'vision-training-agent[k8s]'``):
importing this module costs nothing, and a server with ``EXECUTOR=local`` never needs the package.

The objects it creates are built by `tools.executors.k8s_manifests` (the Job, with its labels,
resources, failure policy and the trainer container, and the spec Secret: see there).

`poll` maps the Job to `ExitInfo`: condition ``Complete`` -> 0; ``Failed`` -> the exit code of the
newest pod's ``trainer`` container (137 -> -9, 143 -> -15, OOMKilled -> -9; 130 stays 130, the
trainer's "stopped after a signal"), else 2 for reason ``PodFailurePolicy`` (only exit 2 triggers
it), else None (unknown); a Job that vanished -> the last exit code seen, else None. The log tail
is the end of the newest pod's log plus a ``[kubernetes]`` line with the Job's reason. A pod that
cannot start (image pull errors, container config errors) for longer than `start_timeout_s` fails
the attempt with 2 (not retried: the image or its credentials are wrong).

Logs: while a Job runs, `poll` reads its pods' logs (``timestamps=true``, ``sinceSeconds``; lines
already seen are dropped by their timestamp) and hands new lines to `log_sink` as the data of
``log`` events ``{"level", "message", "source": "pod", "pod"}``; a pending pod's reason
(Unschedulable, ImagePullBackOff, ...) is reported once per change with ``"source":
"kubernetes"``. `make_event_log_sink` stores them as the job's ``log`` events and publishes them.

Stop (`stop`): the Job is deleted with ``propagationPolicy`` `stop_propagation` (Foreground): the
kubelet sends SIGTERM, the trainer finishes its batch, uploads best.pt/last.pt and exits 130, and
gets SIGKILL only after ``terminationGracePeriodSeconds``. `poll` reports the exit once the Job
is gone; if it is still there ``grace + STOP_MARGIN_S`` later, its pods are deleted with grace 0.
`kill`: pods deleted with grace 0 and the Job in the background. `adopt` takes over a Job of that
job id left by an earlier server process (a finished one too, so its real exit is reported).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tools.executors.base import ExecHandle, Executor, ExitInfo
from tools.executors.k8s_manifests import (
    CONTAINER,
    EXIT_SPEC,
    LABEL_JOB_ID,
    LABEL_K8S_JOB,
    KubernetesConfig,
    build_job,
    build_secret,
    check_storage,
    image_for,
    job_name,
    pod_spec_json,
)

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

STOP_MARGIN_S = 30.0
TAIL_BYTES = 4000
TAIL_LINES = 400
LOG_LIMIT_BYTES = 1024 * 1024
MAX_LOG_LINES_PER_POLL = 200
START_FAILURE_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)
K8S_EXTRA_HINT = "pip install 'vision-training-agent[k8s]'"

LogSink = Callable[[int, list[dict[str, Any]]], None]
"""`log_sink(job_id, entries)`: each entry is the data of one ``log`` event."""


class KubernetesUnavailableError(RuntimeError):
    """The ``kubernetes`` client package is not installed, or no cluster configuration was found."""


# ------------------------------------------------------------------------------------------ helpers


def _client_module() -> Any:
    try:
        from kubernetes import client
    except ImportError as exc:
        raise KubernetesUnavailableError(
            f"EXECUTOR=kubernetes needs the official Kubernetes client: {K8S_EXTRA_HINT}"
        ) from exc
    return client


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return int(status) if isinstance(status, int) else None


def _is_not_found(exc: BaseException) -> bool:
    return _status_of(exc) == 404


def parse_log_ts(text: str) -> int | None:
    """Nanoseconds since the epoch of an RFC 3339 timestamp as the kubelet writes it
    (``2024-05-01T10:00:00.123456789Z``, fraction optional, any offset); None when it is not one."""
    try:
        main, _, rest = text.partition(".")
        if rest:
            digits = ""
            for ch in rest:
                if not ch.isdigit():
                    break
                digits += ch
            offset = rest[len(digits) :]
        else:
            digits = ""
            for i, ch in enumerate(main[19:]):
                if ch in "Z+-":
                    offset = main[19 + i :]
                    main = main[: 19 + i]
                    break
            else:
                offset = ""
        if not offset:
            return None
        stamp = datetime.fromisoformat(main + ("+00:00" if offset in ("Z", "z") else offset))
        nanos = int((digits + "000000000")[:9]) if digits else 0
        return (int(stamp.timestamp()) * 1_000_000_000) + nanos
    except ValueError:
        return None


def _level_of(line: str) -> str:
    text = line.upper()
    if "TRACEBACK" in text or " ERROR " in text or text.startswith("ERROR") or " CRITICAL " in text:
        return "error"
    if " WARNING " in text or text.startswith("WARNING"):
        return "warning"
    return "info"


def map_exit_code(exit_code: int | None, reason: str | None = None) -> int | None:
    """A container's exit code as `ExitInfo.returncode`: killed by signal N (exit 128+N) -> -N,
    OOMKilled -> -9; 130 stays 130 (the trainer's own "stopped after SIGINT/SIGTERM")."""
    if reason == "OOMKilled":
        return -9
    if exit_code is None:
        return None
    if exit_code > 128 and exit_code != 130:
        return -(exit_code - 128)
    return int(exit_code)


def _conditions(job: Any) -> dict[str, Any]:
    """Job condition type -> the condition, for the conditions whose status is "True"."""
    status = getattr(job, "status", None)
    out: dict[str, Any] = {}
    for cond in getattr(status, "conditions", None) or []:
        if str(getattr(cond, "status", "")) == "True":
            out[str(cond.type)] = cond
    return out


def _trainer_state(pod: Any) -> tuple[Any, Any]:
    """(terminated, waiting) state of the pod's trainer container (None when absent)."""
    for cs in getattr(getattr(pod, "status", None), "container_statuses", None) or []:
        if cs.name == CONTAINER:
            state = cs.state
            last = getattr(cs, "last_state", None)
            terminated = getattr(state, "terminated", None) or getattr(last, "terminated", None)
            return terminated, getattr(state, "waiting", None)
    return None, None


def _created(obj: Any) -> float:
    ts = getattr(getattr(obj, "metadata", None), "creation_timestamp", None)
    if isinstance(ts, datetime):
        return ts.timestamp()
    if isinstance(ts, str):
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    return 0.0


# ------------------------------------------------------------------------------------------ executor


class KubernetesExecutor(Executor):
    """See the module doc. `api_client`: a ready ``kubernetes.client.ApiClient`` (tests point one at
    a local server); without it the cluster configuration is loaded (in-cluster or kubeconfig)."""

    name = "kubernetes"

    def __init__(
        self,
        config: KubernetesConfig | None = None,
        *,
        api_client: Any = None,
        log_sink: LogSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or KubernetesConfig()
        self.log_sink = log_sink
        self._clock = clock
        self._k = _client_module()
        namespace = self.config.namespace
        if api_client is None:
            api_client, namespace = self._load_cluster_config()
        self.namespace: str = namespace or "default"
        self.api_client = api_client
        self.batch = self._k.BatchV1Api(api_client)
        self.core = self._k.CoreV1Api(api_client)

    # ------------------------------------------------------------------------------ configuration
    def _load_cluster_config(self) -> tuple[Any, str | None]:
        from kubernetes import config as kconfig

        cfg = self._k.Configuration()
        namespace = self.config.namespace
        in_cluster = self.config.in_cluster
        try:
            if in_cluster:
                kconfig.load_incluster_config(client_configuration=cfg)
                if namespace is None:
                    with contextlib.suppress(OSError):
                        namespace = (
                            Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read_text().strip() or None
                        )
            else:
                # an explicit path: the client reads $KUBECONFIG only once, when it is first imported
                path = self.config.kubeconfig or os.path.expanduser("~/.kube/config")
                kconfig.load_kube_config(config_file=path, context=self.config.context, client_configuration=cfg)
                if namespace is None:
                    with contextlib.suppress(Exception):
                        contexts, active = kconfig.list_kube_config_contexts(config_file=path)
                        if self.config.context:
                            active = next((c for c in contexts if c.get("name") == self.config.context), active)
                        namespace = (active or {}).get("context", {}).get("namespace") or None
        except kconfig.ConfigException as exc:
            where = "in-cluster service account" if in_cluster else "kubeconfig (KUBECONFIG or ~/.kube/config)"
            raise KubernetesUnavailableError(f"EXECUTOR=kubernetes: no usable {where}: {exc}") from exc
        return self._k.ApiClient(cfg), namespace

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.api_client.close()

    # ------------------------------------------------------------------------------ API helpers
    def _read_job(self, name: str) -> Any:
        """The Job, or None when it does not exist."""
        try:
            return self.batch.read_namespaced_job(name, self.namespace)
        except Exception as exc:
            if _is_not_found(exc):
                return None
            raise

    def _delete_job(self, name: str, propagation: str, grace_s: int | None = None) -> None:
        body = self._k.V1DeleteOptions(propagation_policy=propagation, grace_period_seconds=grace_s)
        try:
            self.batch.delete_namespaced_job(name, self.namespace, body=body)
        except Exception as exc:
            if not _is_not_found(exc):
                raise

    def _pods(self, name: str) -> list[Any]:
        result = self.core.list_namespaced_pod(self.namespace, label_selector=f"{LABEL_K8S_JOB}={name}")
        return sorted(result.items or [], key=_created)

    def _delete_pods_now(self, name: str) -> None:
        body = self._k.V1DeleteOptions(grace_period_seconds=0)
        for pod in self._pods(name):
            try:
                self.core.delete_namespaced_pod(pod.metadata.name, self.namespace, body=body)
            except Exception as exc:
                if not _is_not_found(exc):
                    log.warning("could not delete pod %s: %s", pod.metadata.name, exc)

    def _cleanup_previous(self, job_id: int) -> None:
        """Delete unfinished Jobs left for this job id (an earlier attempt must never run beside a new one)."""
        try:
            found = self.batch.list_namespaced_job(self.namespace, label_selector=f"{LABEL_JOB_ID}={int(job_id)}")
        except Exception as exc:
            log.warning("job %s: could not list earlier Kubernetes Jobs: %s", job_id, exc)
            return
        for old in found.items or []:
            if getattr(old.metadata, "deletion_timestamp", None) or {"Complete", "Failed"} & set(_conditions(old)):
                continue
            log.warning(
                "job %s: deleting the unfinished Kubernetes Job %s of an earlier attempt", job_id, old.metadata.name
            )
            self._delete_job(old.metadata.name, "Background")

    # ------------------------------------------------------------------------------ interface
    def start(self, job_id: int, spec_path: Path, *, resume: bool) -> ExecHandle:
        spec_path = Path(spec_path).resolve()
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        check_storage(spec)
        image_for(self.config, spec.get("framework"))
        spec = pod_spec_json(spec)
        name = job_name(job_id)
        self._cleanup_previous(job_id)
        job = build_job(self._k, self.config, self.namespace, job_id, name, spec)
        created = self.batch.create_namespaced_job(self.namespace, job)
        # The Secret is made after the Job so that the Job can own it (both go away together, also by
        # ttlSecondsAfterFinished); the kubelet retries mounting it until it exists.
        try:
            secret = build_secret(self._k, self.namespace, job_id, name, spec, created)
            self.core.create_namespaced_secret(self.namespace, secret)
        except Exception:
            with contextlib.suppress(Exception):
                self._delete_job(name, "Background")
            raise
        log.info(
            "job %s: Kubernetes Job %s/%s created (%s)", job_id, self.namespace, name, "resume" if resume else "fresh"
        )
        return ExecHandle(job_id=job_id, external_id=name, spec_path=spec_path, resume=resume, extra=self._extra())

    def _extra(self, *, skip_existing_logs: bool = False) -> dict[str, Any]:
        return {
            "stage": 0,
            "deadline": None,
            "next_poll": 0.0,
            "cursors": {},  # pod name -> {"ns": newest line timestamp, "count": lines taken at it, "at"}
            "tail": deque(maxlen=TAIL_LINES),
            "tail_pod": None,
            "notes": [],
            "pending": {},  # pod name -> last reported pending reason
            "start_failure_since": None,
            "last_exit": None,  # (returncode, text) of the newest terminated pod
            "skip_existing_logs": skip_existing_logs,
        }

    def stop(self, handle: ExecHandle, grace_s: float) -> None:
        if handle.extra.get("stage", 0) > 0:
            return
        handle.extra["stage"] = 1
        handle.extra["deadline"] = self._clock() + float(grace_s) + STOP_MARGIN_S
        handle.extra["next_poll"] = 0.0
        self._request_delete(handle)

    def _request_delete(self, handle: ExecHandle) -> None:
        """The stop's delete; on an API error `poll` tries again."""
        log.info(
            "job %s: deleting Kubernetes Job %s (%s) to stop it",
            handle.job_id,
            handle.external_id,
            self.config.stop_propagation,
        )
        try:
            self._delete_job(handle.external_id, self.config.stop_propagation)
        except Exception as exc:
            log.warning("job %s: could not delete Kubernetes Job %s: %s", handle.job_id, handle.external_id, exc)
            handle.extra["deleted"] = False
        else:
            handle.extra["deleted"] = True

    def kill(self, handle: ExecHandle) -> None:
        handle.extra["stage"] = 3
        self._delete_pods_now(handle.external_id)
        self._delete_job(handle.external_id, "Background")

    def _escalate(self, handle: ExecHandle) -> None:
        if handle.extra.get("stage") == 1 and handle.extra.get("deleted") is False:
            self._request_delete(handle)
        deadline = handle.extra.get("deadline")
        if handle.extra.get("stage") != 1 or deadline is None or self._clock() < deadline:
            return
        log.warning(
            "job %s: Kubernetes Job %s still there after the grace period: deleting its pods now",
            handle.job_id,
            handle.external_id,
        )
        handle.extra["stage"] = 2
        handle.extra["deadline"] = None
        try:
            self._delete_pods_now(handle.external_id)
            self._delete_job(handle.external_id, "Background")
        except Exception as exc:
            log.warning("job %s: could not delete Kubernetes Job %s: %s", handle.job_id, handle.external_id, exc)

    def poll(self, handle: ExecHandle) -> ExitInfo | None:
        self._escalate(handle)
        now = self._clock()
        if now < float(handle.extra.get("next_poll") or 0.0):
            return None
        handle.extra["next_poll"] = now + max(0.0, float(self.config.poll_interval_s))
        name = handle.external_id
        job = self._read_job(name)
        pods: list[Any] = []
        with contextlib.suppress(Exception):
            pods = self._pods(name)
        self._observe(handle, pods)
        if job is None:
            rc = (handle.extra.get("last_exit") or (None, ""))[0]
            if handle.extra.get("stage", 0) == 0:
                self._note(handle, f"Kubernetes Job {name} disappeared")
            return self._finish(handle, rc)
        conds = _conditions(job)
        if "Complete" in conds:
            return self._finish(handle, 0)
        if "Failed" in conds:
            cond = conds["Failed"]
            self._note(handle, f"Kubernetes Job {name} failed: {cond.reason or ''}: {cond.message or ''}".rstrip(": "))
            last = handle.extra.get("last_exit")
            rc = last[0] if last else (EXIT_SPEC if cond.reason == "PodFailurePolicy" else None)
            return self._finish(handle, rc)
        since = handle.extra.get("start_failure_since")
        timeout = float(self.config.start_timeout_s or 0)
        if since is not None and timeout > 0 and now - since >= timeout and handle.extra.get("stage", 0) == 0:
            reason = handle.extra.get("start_failure_reason") or "the container could not start"
            self._note(handle, f"the trainer container could not start for {timeout:g}s ({reason}); giving up")
            handle.extra["stage"] = 3
            self._delete_pods_now(name)
            self._delete_job(name, "Background")
            return self._finish(handle, EXIT_SPEC)
        return None

    # ------------------------------------------------------------------------------ observing pods
    def _note(self, handle: ExecHandle, text: str) -> None:
        handle.extra["notes"].append(f"[kubernetes] {text}")

    def _emit(self, handle: ExecHandle, entries: list[dict[str, Any]]) -> None:
        if not entries or self.log_sink is None or not self.config.stream_logs:
            return
        try:
            self.log_sink(handle.job_id, entries)
        except Exception:
            log.exception("job %s: could not store log lines", handle.job_id)

    def _observe(self, handle: ExecHandle, pods: list[Any]) -> None:
        start_failure: tuple[str, str] | None = None
        for pod in pods:
            pod_name = pod.metadata.name
            phase = getattr(pod.status, "phase", None) if pod.status else None
            terminated, waiting = _trainer_state(pod)
            if terminated is not None:
                rc = map_exit_code(terminated.exit_code, terminated.reason)
                text = f"pod {pod_name}: exit {terminated.exit_code}" + (
                    f" ({terminated.reason})" if terminated.reason else ""
                )
                handle.extra["last_exit"] = (rc, text)
            reason = None
            if (
                waiting is not None
                and waiting.reason
                and waiting.reason not in ("ContainerCreating", "PodInitializing")
            ):
                reason = f"{waiting.reason}: {waiting.message or ''}".rstrip(": ")
                if waiting.reason in START_FAILURE_REASONS:
                    start_failure = (pod_name, reason)
            elif phase == "Pending":
                for cond in getattr(pod.status, "conditions", None) or []:
                    if cond.type == "PodScheduled" and str(cond.status) == "False":
                        reason = f"{cond.reason or 'Unschedulable'}: {cond.message or ''}".rstrip(": ")
            if reason and handle.extra["pending"].get(pod_name) != reason:
                handle.extra["pending"][pod_name] = reason
                self._emit(
                    handle,
                    [
                        {
                            "level": "warning",
                            "message": f"pod {pod_name}: {reason}",
                            "source": "kubernetes",
                            "pod": pod_name,
                        }
                    ],
                )
            if phase in ("Running", "Succeeded", "Failed") or terminated is not None:
                self._read_logs(handle, pod_name)
        handle.extra["skip_existing_logs"] = False  # only what an adopted Job had printed before
        if start_failure is None:
            handle.extra["start_failure_since"] = None
        elif handle.extra["start_failure_since"] is None:
            handle.extra["start_failure_since"] = self._clock()
            handle.extra["start_failure_reason"] = f"pod {start_failure[0]}: {start_failure[1]}"
        else:
            handle.extra["start_failure_reason"] = f"pod {start_failure[0]}: {start_failure[1]}"

    def _read_logs(self, handle: ExecHandle, pod_name: str) -> None:
        cursors: dict[str, dict[str, Any]] = handle.extra["cursors"]
        cur = cursors.get(pod_name)
        first = cur is None
        if cur is None:
            cur = cursors[pod_name] = {"ns": None, "count": 0, "at": None}
        kwargs: dict[str, Any] = {
            "container": CONTAINER,
            "timestamps": True,
            "limit_bytes": LOG_LIMIT_BYTES,
            "_preload_content": False,
        }
        if cur["at"] is not None:
            kwargs["since_seconds"] = max(1, int(self._clock() - cur["at"]) + 5)
        try:
            resp = self.core.read_namespaced_pod_log(pod_name, self.namespace, **kwargs)
            raw = resp.data  # raw bytes: the client's own decoding would json-parse a line like {"a": 1}
            with contextlib.suppress(Exception):
                resp.release_conn()
        except Exception as exc:  # not started yet, or gone: try again next time
            if _status_of(exc) not in (400, 404):
                log.debug("job %s: could not read the log of pod %s: %s", handle.job_id, pod_name, exc)
            return
        cur["at"] = self._clock()
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
        # sinceSeconds overlaps the previous read: drop what is older than the newest line seen, and
        # as many lines with exactly that timestamp as were already taken.
        last, count, seen = cur["ns"], cur["count"], 0
        fresh: list[str] = []
        for line in text.split("\n"):  # not splitlines(): a progress bar's \r stays inside its line
            if not line.strip():
                continue
            stamp, _, message = line.partition(" ")
            ns = parse_log_ts(stamp)
            if ns is None:  # not a timestamped line (should not happen): keep it
                fresh.append(line)
                continue
            if last is not None and ns < last:
                continue
            if last is not None and ns == last:
                seen += 1
                if seen <= count:
                    continue
                count += 1
            else:
                last, count, seen = ns, 1, 1
            fresh.append(message.rstrip("\r").rsplit("\r", 1)[-1])  # what a terminal would show last
        cur["ns"], cur["count"] = last, count
        if not fresh:
            return
        if handle.extra.get("tail_pod") != pod_name:
            handle.extra["tail_pod"] = pod_name
            handle.extra["tail"].clear()
        handle.extra["tail"].extend(fresh)
        if first and handle.extra.get("skip_existing_logs"):
            return  # adopted: these lines were streamed by the previous server process
        entries = [
            {"level": _level_of(line), "message": line, "source": "pod", "pod": pod_name}
            for line in fresh[:MAX_LOG_LINES_PER_POLL]
            if line.strip()
        ]
        if len(fresh) > MAX_LOG_LINES_PER_POLL:
            entries.append(
                {
                    "level": "warning",
                    "message": f"{len(fresh) - MAX_LOG_LINES_PER_POLL} more lines not shown (kubectl logs {pod_name})",
                    "source": "kubernetes",
                    "pod": pod_name,
                }
            )
        self._emit(handle, entries)

    def _finish(self, handle: ExecHandle, rc: int | None) -> ExitInfo:
        last = handle.extra.get("last_exit")
        lines = list(handle.extra["tail"])
        if last and rc not in (0, None) and last[1]:
            self._note(handle, last[1])
        lines.extend(handle.extra["notes"])
        tail = "\n".join(lines).strip()
        if len(tail) > TAIL_BYTES:
            tail = tail[-TAIL_BYTES:]
        log.info("job %s: Kubernetes Job %s ended (%s)", handle.job_id, handle.external_id, rc)
        return ExitInfo(returncode=rc, log_tail=tail)

    # ------------------------------------------------------------------------------ restarts
    def _alive(self, job: Any) -> bool:
        if job is None or getattr(job.metadata, "deletion_timestamp", None):
            return False
        return not ({"Complete", "Failed"} & set(_conditions(job)))

    def is_alive(self, external_id: str, _spec_path: Path | None = None) -> bool:
        return self._alive(self._read_job(str(external_id)))

    def adopt(self, job_id: int, external_id: str, spec_path: Path) -> ExecHandle | None:
        job = self._read_job(str(external_id))
        if job is None:
            return None
        labels = dict(getattr(job.metadata, "labels", None) or {})
        if labels.get(LABEL_JOB_ID) != str(int(job_id)):
            return None
        extra = self._extra(skip_existing_logs=True)
        if getattr(job.metadata, "deletion_timestamp", None):
            extra["stage"] = 1  # being stopped by the previous server process
            extra["deadline"] = self._clock() + float(self.config.termination_grace_s) + STOP_MARGIN_S
        log.info("job %s: adopted Kubernetes Job %s", job_id, external_id)
        return ExecHandle(
            job_id=job_id, external_id=str(external_id), spec_path=Path(spec_path), adopted=True, extra=extra
        )


def make_event_log_sink(
    session_factory: sessionmaker[Session], publish: Callable[[int, dict[str, Any]], None] | None = None
) -> LogSink:
    """A `log_sink` that stores each entry as a ``log`` event of the job (contract 4) and hands the
    stored event to `publish` (the supervisor's, so it reaches WebSocket watchers)."""
    from tools.events import append_event

    def sink(job_id: int, entries: list[dict[str, Any]]) -> None:
        with session_factory() as db:
            for data in entries:
                event = append_event(db, job_id, "log", dict(data), source="server")
                if event is not None and publish is not None:
                    publish(job_id, event)

    return sink


__all__ = [
    "KubernetesExecutor",
    "KubernetesUnavailableError",
    "make_event_log_sink",
    "map_exit_code",
    "parse_log_ts",
]
