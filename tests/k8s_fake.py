"""A local stand-in for the few Kubernetes API endpoints `tools.executors.kubernetes` calls, and a
strict reader of Kubernetes objects for the manifest tests.

    with FakeKubeAPI() as api:                       # threaded http.server on 127.0.0.1:<free port>
        executor = KubernetesExecutor(config, api_client=api.api_client())
        ...
        assert api.errors == []                      # every request body matched the official schema

Every request body is read with `strict_load` into the official ``kubernetes.client`` model the
real API server expects (V1Job, V1Secret, V1DeleteOptions): a field the model does not know, a
value of the wrong type or a missing required field is recorded in `errors` and answered 422.

Endpoints: POST/GET(list) jobs, GET/DELETE a job, POST a secret, GET(list) pods, DELETE a pod,
GET a pod's log (``timestamps``, ``sinceSeconds``, ``container``). Label selectors: ``k=v[,k=v]``.

The cluster is driven by the test: `run_pod`, `log`, `finish`, `preempt`, `wait_pod`, or by a
`behaviours` queue whose next entry is applied to each Job as it is created:
``"run"`` (a running pod), ``"complete"``, ``("fail", exit_code)``, ``("wait", reason)``.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

PRIMITIVES = {"str", "int", "float", "bool", "object", "datetime", "date", "bytearray"}


class SchemaError(ValueError):
    pass


def _model(type_name: str) -> Any:
    import kubernetes.client.models as models

    cls = getattr(models, type_name, None)
    if cls is None:
        raise SchemaError(f"unknown model {type_name}")
    return cls


def check_fields(data: Any, type_name: str, path: str = "$") -> None:
    """Raise SchemaError when `data` (JSON as sent over the wire) has a field the official model
    `type_name` does not define, or a value of the wrong JSON type."""
    if type_name.startswith("list["):
        if not isinstance(data, list):
            raise SchemaError(f"{path}: expected a list, got {type(data).__name__}")
        inner = type_name[5:-1]
        for i, item in enumerate(data):
            check_fields(item, inner, f"{path}[{i}]")
        return
    if type_name.startswith(("dict(", "dict[")):  # "dict(str, X)" in older clients, "dict[str, X]" now
        if not isinstance(data, dict):
            raise SchemaError(f"{path}: expected an object, got {type(data).__name__}")
        inner = type_name[5:-1].split(",", 1)[1].strip()
        for key, value in data.items():
            check_fields(value, inner, f"{path}.{key}")
        return
    if data is None:
        return
    if type_name in PRIMITIVES:
        ok = {
            "str": isinstance(data, str),
            "int": isinstance(data, int) and not isinstance(data, bool),
            "float": isinstance(data, int | float) and not isinstance(data, bool),
            "bool": isinstance(data, bool),
            "datetime": isinstance(data, str),
            "date": isinstance(data, str),
        }.get(type_name, True)
        if not ok:
            raise SchemaError(f"{path}: expected {type_name}, got {data!r}")
        return
    cls = _model(type_name)
    if not isinstance(data, dict):
        raise SchemaError(f"{path}: expected a {type_name} object, got {type(data).__name__}")
    by_json = {json_key: attr for attr, json_key in cls.attribute_map.items()}
    for key, value in data.items():
        attr = by_json.get(key)
        if attr is None:
            raise SchemaError(f"{path}.{key}: not a field of {type_name}")
        check_fields(value, cls.openapi_types[attr], f"{path}.{key}")


class _Resp:
    def __init__(self, data: Any) -> None:
        self.data = json.dumps(data)


def strict_load(data: Any, type_name: str) -> Any:
    """`data` as an instance of the official model `type_name` (e.g. "V1Job"); unknown fields,
    wrong types and missing required fields raise SchemaError."""
    from kubernetes.client import ApiClient

    check_fields(data, type_name)
    try:
        return ApiClient().deserialize(_Resp(data), type_name)
    except (ValueError, TypeError) as exc:
        raise SchemaError(f"{type_name}: {exc}") from exc


def model_name_for(api_version: str, kind: str) -> str:
    """``apps/v1`` + ``Deployment`` -> ``V1Deployment``; ``autoscaling/v2`` + HPA -> ``V2...``."""
    version = api_version.rsplit("/", 1)[-1]
    return f"{version[0].upper()}{version[1:]}{kind}"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _log_ts(ts: datetime) -> str:
    """RFC 3339 with nanoseconds, trailing zeros dropped (as the kubelet writes it)."""
    base = ts.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{ts.microsecond:06d}000".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def _selector_matches(selector: str | None, labels: dict[str, str]) -> bool:
    if not selector:
        return True
    for part in selector.split(","):
        key, _, value = part.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class FakeKubeAPI:
    namespace: str = "vta-test"
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, list[tuple[datetime, str]]] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    behaviours: list[Any] = field(default_factory=list)
    delete_lag: int = 1  # reads of a deleted Job that still find it (Foreground: pods terminating)
    on_delete_exit_code: int | None = 130  # what a running pod exits with when its Job is deleted
    lock: threading.RLock = field(default_factory=threading.RLock)

    def __post_init__(self) -> None:
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --------------------------------------------------------------------------- lifecycle
    def __enter__(self) -> FakeKubeAPI:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                fake._dispatch(self)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-kube-api", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.server_address[1]
        return f"http://127.0.0.1:{port}"

    def api_client(self) -> Any:
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        return client.ApiClient(cfg)

    # --------------------------------------------------------------------------- driving
    def job_names(self) -> list[str]:
        with self.lock:
            return sorted(self.jobs, key=lambda n: self.jobs[n]["metadata"]["creationTimestamp"])

    def created_jobs(self) -> list[dict[str, Any]]:
        """Bodies of every Job create request, in order."""
        return [r.body for r in self.requests if r.method == "POST" and r.path.endswith("/jobs")]

    def pods_of(self, job: str) -> list[str]:
        with self.lock:
            return [n for n, p in self.pods.items() if p["metadata"]["labels"].get("job-name") == job]

    def run_pod(self, job: str, logs: list[str] = ()) -> str:  # type: ignore[assignment]
        with self.lock:
            body = self.jobs[job]
            template = body["spec"]["template"]
            name = f"{job}-{uuid.uuid4().hex[:5]}"
            labels = {**(template["metadata"].get("labels") or {}), "job-name": job}
            created = _now() + timedelta(microseconds=len(self.pods))
            self.pods[name] = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": name,
                    "namespace": self.namespace,
                    "labels": labels,
                    "uid": str(uuid.uuid4()),
                    "creationTimestamp": _iso(created),
                },
                "spec": template["spec"],
                "status": {
                    "phase": "Running",
                    "containerStatuses": [
                        {
                            "name": "trainer",
                            "image": template["spec"]["containers"][0]["image"],
                            "imageID": "",
                            "ready": True,
                            "restartCount": 0,
                            "state": {"running": {"startedAt": _iso(created)}},
                        }
                    ],
                },
            }
            body["status"]["active"] = 1
            self.logs[name] = []
            for line in logs:
                self.log(name, line)
            return name

    def log(self, pod: str, line: str, ts: datetime | None = None) -> None:
        with self.lock:
            self.logs[pod].append((ts or _now(), line))

    def wait_pod(self, job: str, reason: str, message: str = "") -> str:
        name = self.run_pod(job)
        with self.lock:
            pod = self.pods[name]
            pod["status"]["phase"] = "Pending"
            pod["status"]["containerStatuses"][0]["ready"] = False
            pod["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": reason, "message": message}}
        return name

    def terminate_pod(self, pod: str, exit_code: int, reason: str | None = None) -> None:
        with self.lock:
            p = self.pods[pod]
            p["status"]["phase"] = "Succeeded" if exit_code == 0 else "Failed"
            p["status"]["containerStatuses"][0]["ready"] = False
            terminated: dict[str, Any] = {"exitCode": exit_code, "startedAt": _iso(_now()), "finishedAt": _iso(_now())}
            if reason:
                terminated["reason"] = reason
            p["status"]["containerStatuses"][0]["state"] = {"terminated": terminated}

    def finish(self, job: str, exit_code: int, reason: str | None = None, *, drop_pods: bool = False) -> None:
        """The Job's newest pod exits with `exit_code`; the Job completes (0) or fails."""
        with self.lock:
            pods = self.pods_of(job) or [self.run_pod(job)]
            self.terminate_pod(pods[-1], exit_code, reason)
            status = self.jobs[job]["status"]
            status["active"] = 0
            if exit_code == 0:
                status["succeeded"] = 1
                cond = {"type": "Complete", "status": "True", "reason": "Completed"}
            else:
                status["failed"] = status.get("failed", 0) + 1
                why = "PodFailurePolicy" if exit_code == 2 else "BackoffLimitExceeded"
                msg = (
                    "Container trainer for pod failed with exit code 2 matching FailJob rule at index 1"
                    if exit_code == 2
                    else "Job has reached the specified backoff limit"
                )
                cond = {"type": "Failed", "status": "True", "reason": why, "message": msg}
            status["conditions"] = [{**cond, "lastTransitionTime": _iso(_now())}]
            if drop_pods:
                for name in self.pods_of(job):
                    del self.pods[name]

    def preempt(self, job: str) -> str:
        """The newest pod is evicted (DisruptionTarget, ignored by the podFailurePolicy): it
        terminates with 130 after uploading, and the Job controller starts a replacement."""
        with self.lock:
            old = self.pods_of(job)[-1]
            self.terminate_pod(old, 130)
            self.pods[old]["status"]["conditions"] = [
                {"type": "DisruptionTarget", "status": "True", "reason": "PreemptionByScheduler"}
            ]
            return self.run_pod(job)

    def apply_behaviour(self, job: str) -> None:
        if not self.behaviours:
            return
        b = self.behaviours.pop(0)
        if b == "run":
            self.run_pod(job, [f"job {job} started"])
        elif b == "complete":
            self.run_pod(job, ["training", "done"])
            self.finish(job, 0)
        elif isinstance(b, tuple) and b[0] == "fail":
            self.run_pod(job, ["training", "Traceback (most recent call last):", "RuntimeError: boom"])
            self.finish(job, int(b[1]))
        elif isinstance(b, tuple) and b[0] == "wait":
            self.wait_pod(job, str(b[1]), "pulling failed")
        else:  # pragma: no cover - a test bug
            raise ValueError(f"unknown behaviour {b!r}")

    # --------------------------------------------------------------------------- HTTP
    def _send(self, h: BaseHTTPRequestHandler, status: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    def _status(self, h: BaseHTTPRequestHandler, code: int, reason: str, message: str) -> None:
        self._send(
            h,
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": reason,
                "message": message,
                "code": code,
            },
        )

    def _read_body(self, h: BaseHTTPRequestHandler) -> Any:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _validated(self, h: BaseHTTPRequestHandler, body: Any, model: str) -> bool:
        try:
            strict_load(body, model)
        except SchemaError as exc:
            self.errors.append(f"{h.command} {h.path}: {exc}")
            self._status(h, 422, "Invalid", str(exc))
            return False
        return True

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        query = parse_qs(url.query)
        try:
            body = self._read_body(h)
        except ValueError as exc:
            self.errors.append(f"{h.command} {h.path}: body is not JSON: {exc}")
            self._status(h, 400, "BadRequest", "body is not JSON")
            return
        with self.lock:
            self.requests.append(Request(h.command, url.path, query, body))
        ns = re.escape(self.namespace)
        routes: list[tuple[str, str, Callable[..., None]]] = [
            ("POST", rf"/apis/batch/v1/namespaces/{ns}/jobs", self._create_job),
            ("GET", rf"/apis/batch/v1/namespaces/{ns}/jobs", self._list_jobs),
            ("GET", rf"/apis/batch/v1/namespaces/{ns}/jobs/(?P<name>[^/]+)", self._get_job),
            ("DELETE", rf"/apis/batch/v1/namespaces/{ns}/jobs/(?P<name>[^/]+)", self._delete_job),
            ("POST", rf"/api/v1/namespaces/{ns}/secrets", self._create_secret),
            ("GET", rf"/api/v1/namespaces/{ns}/pods", self._list_pods),
            ("GET", rf"/api/v1/namespaces/{ns}/pods/(?P<name>[^/]+)/log", self._pod_log),
            ("DELETE", rf"/api/v1/namespaces/{ns}/pods/(?P<name>[^/]+)", self._delete_pod),
        ]
        for method, pattern, fn in routes:
            m = re.fullmatch(pattern, url.path)
            if m and method == h.command:
                with self.lock:
                    fn(h, body, query, **m.groupdict())
                return
        self.errors.append(f"unexpected request {h.command} {url.path}")
        self._status(h, 404, "NotFound", f"no route {h.command} {url.path}")

    # jobs -----------------------------------------------------------------------------
    def _create_job(self, h: BaseHTTPRequestHandler, body: Any, query: Any) -> None:
        if not self._validated(h, body, "V1Job"):
            return
        name = body["metadata"]["name"]
        if name in self.jobs:
            self._status(h, 409, "AlreadyExists", f'jobs.batch "{name}" already exists')
            return
        job = json.loads(json.dumps(body))
        job["metadata"].update(
            uid=str(uuid.uuid4()),
            namespace=self.namespace,
            creationTimestamp=_iso(_now() + timedelta(microseconds=len(self.jobs))),
        )
        job["status"] = {}
        self.jobs[name] = job
        self.apply_behaviour(name)
        self._send(h, 201, job)

    def _list_jobs(self, h: BaseHTTPRequestHandler, body: Any, query: Any) -> None:
        selector = (query.get("labelSelector") or [None])[0]
        items = [j for j in self.jobs.values() if _selector_matches(selector, j["metadata"].get("labels") or {})]
        self._send(h, 200, {"apiVersion": "batch/v1", "kind": "JobList", "metadata": {}, "items": items})

    def _get_job(self, h: BaseHTTPRequestHandler, body: Any, query: Any, name: str) -> None:
        job = self.jobs.get(name)
        if job is None:
            self._status(h, 404, "NotFound", f'jobs.batch "{name}" not found')
            return
        if job["metadata"].get("deletionTimestamp"):
            lag = job.setdefault("_lag", self.delete_lag)
            if lag <= 0:
                self._remove_job(name)
                self._status(h, 404, "NotFound", f'jobs.batch "{name}" not found')
                return
            job["_lag"] = lag - 1
        self._send(h, 200, {k: v for k, v in job.items() if not k.startswith("_")})

    def _remove_job(self, name: str) -> None:
        self.jobs.pop(name, None)
        for pod in self.pods_of(name):
            self.pods.pop(pod, None)
        for sname, secret in list(self.secrets.items()):
            owners = secret["metadata"].get("ownerReferences") or []
            if any(o.get("name") == name for o in owners):
                self.secrets.pop(sname, None)

    def _delete_job(self, h: BaseHTTPRequestHandler, body: Any, query: Any, name: str) -> None:
        if body is not None and not self._validated(h, body, "V1DeleteOptions"):
            return
        job = self.jobs.get(name)
        if job is None:
            self._status(h, 404, "NotFound", f'jobs.batch "{name}" not found')
            return
        policy = (body or {}).get("propagationPolicy") or "Background"
        for pod in self.pods_of(name):
            state = self.pods[pod]["status"]["containerStatuses"][0]["state"]
            if "terminated" not in state and self.on_delete_exit_code is not None:
                self.terminate_pod(pod, self.on_delete_exit_code)
        if policy == "Foreground":
            job["metadata"]["deletionTimestamp"] = _iso(_now())
            job["metadata"]["finalizers"] = ["foregroundDeletion"]
        else:
            self._remove_job(name)
        self._send(h, 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}})

    # secrets / pods ---------------------------------------------------------------------
    def _create_secret(self, h: BaseHTTPRequestHandler, body: Any, query: Any) -> None:
        if not self._validated(h, body, "V1Secret"):
            return
        secret = json.loads(json.dumps(body))
        secret["metadata"]["uid"] = str(uuid.uuid4())
        self.secrets[secret["metadata"]["name"]] = secret
        self._send(h, 201, secret)

    def _list_pods(self, h: BaseHTTPRequestHandler, body: Any, query: Any) -> None:
        selector = (query.get("labelSelector") or [None])[0]
        items = [p for p in self.pods.values() if _selector_matches(selector, p["metadata"]["labels"])]
        self._send(h, 200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})

    def _delete_pod(self, h: BaseHTTPRequestHandler, body: Any, query: Any, name: str) -> None:
        if body is not None and not self._validated(h, body, "V1DeleteOptions"):
            return
        if self.pods.pop(name, None) is None:
            self._status(h, 404, "NotFound", f'pods "{name}" not found')
            return
        self._send(h, 200, {"kind": "Status", "apiVersion": "v1", "status": "Success"})

    def _pod_log(self, h: BaseHTTPRequestHandler, body: Any, query: Any, name: str) -> None:
        pod = self.pods.get(name)
        if pod is None:
            self._status(h, 404, "NotFound", f'pods "{name}" not found')
            return
        if (query.get("container") or ["trainer"])[0] != "trainer":
            self.errors.append(f"log of an unknown container: {query}")
        state = pod["status"]["containerStatuses"][0]["state"]
        if "waiting" in state:
            self._status(h, 400, "BadRequest", f'container "trainer" in pod "{name}" is waiting to start')
            return
        since = query.get("sinceSeconds")
        cutoff = _now() - timedelta(seconds=int(since[0])) if since else None
        stamps = (query.get("timestamps") or ["false"])[0].lower() == "true"  # Go ParseBool: True too
        lines = [
            (f"{_log_ts(ts)} {line}" if stamps else line)
            for ts, line in self.logs.get(name, [])
            if cutoff is None or ts >= cutoff
        ]
        self._send(h, 200, ("\n".join(lines) + ("\n" if lines else "")).encode(), "text/plain")


def iter_documents(text: str) -> Iterator[Any]:
    import yaml

    for doc in yaml.safe_load_all(text):
        if doc is not None:
            yield doc
