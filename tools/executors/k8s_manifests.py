"""Pure builders of the Kubernetes objects of one training attempt (`tools.executors.kubernetes`
submits, watches and deletes them): plain values from the job spec and `KubernetesConfig`, no API
call. The ``kubernetes`` client module is passed in (`k`), so importing this module costs nothing.

What `KubernetesExecutor.start` creates (names ``vta-job-<job id>-<6 hex>``, one per attempt):

* a ``batch/v1`` Job: ``completions: 1``, ``restartPolicy: Never``, ``backoffLimit``
  (`KubernetesConfig.backoff_limit`, default 0: a crash ends the Job and the supervisor's own retry
  with ``--resume`` follows, with its ``interrupted``/``resuming`` events and growing delays), a
  ``podFailurePolicy`` (a pod with the ``DisruptionTarget`` condition -- preempted, evicted, node
  drained -- is *ignored*: the Job controller replaces it without counting it against backoffLimit;
  exit code 2, an invalid spec, fails the Job at once), ``podReplacementPolicy: Failed`` (a
  replacement starts only once the old pod has finished uploading), ``activeDeadlineSeconds``,
  ``ttlSecondsAfterFinished``, the labels ``vision-training-agent/job-id`` and
  ``vision-training-agent/k8s-job`` on the Job and its pods, the framework's image
  (`KubernetesConfig.images`), CPU/memory requests and limits and ``nvidia.com/gpu`` when the job
  asks for a GPU, ``terminationGracePeriodSeconds`` = the stop grace period;
* a Secret of the same name holding ``spec.json`` (it carries the job's callback token and the
  storage credentials), owned by the Job so that it goes away with it, mounted read-only at
  ``/etc/vta/spec``. The spec's ``work_dir`` is rewritten to the pod's work volume
  (``/var/lib/vta/trainer``: an emptyDir, or `KubernetesConfig.work_pvc`).

The container's environment is fixed (`POD_ENV`: PYTHONUNBUFFERED, VTA_JOB_ID, VTA_K8S_JOB), with
no ``envFrom`` and nothing from the server's own environment: as for local trainers
(`tools.executors.sandbox`), the server's secrets (SECRET_KEY, DATABASE_URL, SLACK_*, LLM_API_KEY,
storage keys) never reach a trainer; what it needs (callback token, its stores' credentials) is in
the mounted spec Secret only. Framework settings come with the trainer image.

The container always runs ``python -m trainer_runtime --spec /etc/vta/spec/spec.json --resume``:
every pod of every attempt resumes from ``last.pt`` in the internal store when there is one and
starts fresh otherwise (the runner says so in a ``log`` event), so a pod the Job controller
replaces continues where the last periodic upload left it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LABEL_PREFIX = "vision-training-agent"
LABEL_JOB_ID = f"{LABEL_PREFIX}/job-id"
LABEL_K8S_JOB = f"{LABEL_PREFIX}/k8s-job"
LABEL_FRAMEWORK = f"{LABEL_PREFIX}/framework"
CONTAINER = "trainer"
SPEC_DIR = "/etc/vta/spec"
SPEC_KEY = "spec.json"
WORK_ROOT = "/var/lib/vta"
POD_WORK_DIR = f"{WORK_ROOT}/trainer"
EXIT_SPEC = 2
DEFAULT_IMAGES: dict[str, str] = {
    "ultralytics": "vta-trainer-ultralytics:latest",
    "timm": "vta-trainer-timm:latest",
    "transformers": "vta-trainer-transformers:latest",
}

POD_ENV = ("PYTHONUNBUFFERED", "VTA_JOB_ID", "VTA_K8S_JOB")
"""The only environment variables of a trainer container (see the module doc)."""


def pod_env(job_id: int, name: str) -> dict[str, str]:
    """The trainer container's whole environment (`POD_ENV`): no secrets, no server settings."""
    return {"PYTHONUNBUFFERED": "1", "VTA_JOB_ID": str(int(job_id)), "VTA_K8S_JOB": name}


@dataclass(frozen=True)
class KubernetesConfig:
    """How training Jobs are made (web.config maps the K8S_* settings onto it; see
    docs/configuration.md). Quantities are Kubernetes strings ("2", "500m", "8Gi"); None leaves
    that request or limit out."""

    namespace: str | None = None  # None: the pod's own namespace in-cluster, else the kubeconfig's, else default
    in_cluster: bool = False  # the pod's service account; else the kubeconfig (Settings: K8S_IN_CLUSTER)
    kubeconfig: str | None = None  # None: ~/.kube/config (Settings: KUBECONFIG)
    context: str | None = None  # kubeconfig context
    images: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_IMAGES))
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str | None = None
    cpu_request: str | None = "2"
    memory_request: str | None = "8Gi"
    cpu_limit: str | None = None
    memory_limit: str | None = "16Gi"
    gpus_per_job: int = 0  # for device "auto"; "cuda[:N]" asks for at least 1, "cpu" for none
    gpu_resource: str = "nvidia.com/gpu"
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    backoff_limit: int = 0
    active_deadline_s: int | None = 7 * 24 * 3600
    ttl_after_finished_s: int | None = 24 * 3600
    termination_grace_s: int = 30
    work_pvc: str | None = None  # a PersistentVolumeClaim for /var/lib/vta/trainer; None: emptyDir
    shm_size: str | None = "2Gi"  # /dev/shm (PyTorch data-loader workers); None: the runtime's 64 MiB
    poll_interval_s: float = 2.0
    stream_logs: bool = True
    stop_propagation: str = "Foreground"
    start_timeout_s: float = 600.0  # a pod that cannot start (image pull, config) this long fails; 0: never


# ------------------------------------------------------------------------------------------ settings


def parse_node_selector(text: str | None) -> dict[str, str]:
    """``"k=v,k2=v2"`` -> ``{"k": "v", "k2": "v2"}`` (K8S_NODE_SELECTOR)."""
    out: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"K8S_NODE_SELECTOR entry {part.strip()!r} is not key=value")
        out[key.strip()] = value.strip()
    return out


def parse_tolerations(text: str | None) -> tuple[dict[str, Any], ...]:
    """K8S_TOLERATIONS: a JSON list of tolerations as in a pod manifest."""
    if not text or not text.strip():
        return ()
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ValueError("K8S_TOLERATIONS must be a JSON list of objects")
    return tuple(value)


def split_list(text: str | None) -> tuple[str, ...]:
    """The non-empty, stripped items of a comma-separated setting."""
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


# ------------------------------------------------------------------------------------------ objects


def device_gpus(spec: Mapping[str, Any], default: int) -> int:
    device = str(((spec.get("hyperparameters") or {}).get("device")) or "auto").strip().lower()
    if device == "cpu":
        return 0
    if device in ("cuda", "gpu") or device.startswith("cuda:"):
        return max(1, default)
    return max(0, default)


def _snake(obj: Mapping[str, Any]) -> dict[str, Any]:
    """camelCase keys (as in a manifest) -> the client's snake_case keyword arguments."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        snake = "".join(f"_{ch.lower()}" if ch.isupper() else ch for ch in str(key))
        out[snake] = value
    return out


def job_name(job_id: int) -> str:
    """A fresh name for one attempt's Job and Secret: ``vta-job-<job id>-<6 hex>``."""
    return f"vta-job-{int(job_id)}-{secrets.token_hex(3)}"


def image_for(config: KubernetesConfig, framework: str | None) -> str:
    """The trainer image of `framework` (`KubernetesConfig.images`); ValueError when none is set."""
    image = config.images.get(framework or "")
    if not image:
        raise ValueError(f"no trainer image configured for framework {framework!r} (K8S_IMAGE_*)")
    return image


def pod_spec_json(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec as the pod reads it: work folders inside the pod's work volume."""
    spec = json.loads(json.dumps(spec))
    spec["work_dir"] = POD_WORK_DIR
    storage = spec.get("storage")
    if isinstance(storage, dict):
        storage["local_root"] = f"{WORK_ROOT}/storage"
    return spec


def check_storage(spec: Mapping[str, Any]) -> None:
    """ValueError unless both stores of the spec are S3/MinIO (a pod cannot read this server's folders)."""
    storage = spec.get("storage") or {}
    missing = [side for side in ("external", "internal") if not (storage.get(side) or {}).get("endpoint")]
    if missing:
        raise ValueError(
            f"EXECUTOR=kubernetes needs S3/MinIO storage: the {' and '.join(missing)} store is a local folder "
            "of this server, which a trainer pod cannot read (set EXTERNAL_STORAGE_ENDPOINT and "
            "INTERNAL_STORAGE_ENDPOINT, or S3_ENDPOINT)"
        )


def job_labels(job_id: int, name: str, framework: str | None) -> dict[str, str]:
    """The labels of an attempt's Job, its pods and its Secret."""
    return {
        "app.kubernetes.io/name": "vision-training-agent",
        "app.kubernetes.io/component": "trainer",
        "app.kubernetes.io/managed-by": "vision-training-agent",
        LABEL_JOB_ID: str(int(job_id)),
        LABEL_K8S_JOB: name,
        LABEL_FRAMEWORK: str(framework or "unknown"),
    }


def build_job(k: Any, c: KubernetesConfig, namespace: str, job_id: int, name: str, spec: Mapping[str, Any]) -> Any:
    """The ``V1Job`` of one attempt (see the module doc); `k` is the ``kubernetes.client`` module, `c`
    the executor's config, `spec` the pod's spec (`pod_spec_json`)."""
    framework = spec.get("framework")
    labels = job_labels(job_id, name, framework)
    requests = {key: v for key, v in (("cpu", c.cpu_request), ("memory", c.memory_request)) if v}
    limits = {key: v for key, v in (("cpu", c.cpu_limit), ("memory", c.memory_limit)) if v}
    gpus = device_gpus(spec, c.gpus_per_job)
    if gpus:
        limits[c.gpu_resource] = str(gpus)
        requests[c.gpu_resource] = str(gpus)
    volumes = [
        k.V1Volume(
            name="spec",
            secret=k.V1SecretVolumeSource(secret_name=name, default_mode=0o440, optional=False),
        ),
        k.V1Volume(
            name="work",
            persistent_volume_claim=k.V1PersistentVolumeClaimVolumeSource(claim_name=c.work_pvc)
            if c.work_pvc
            else None,
            empty_dir=None if c.work_pvc else k.V1EmptyDirVolumeSource(),
        ),
    ]
    mounts = [
        k.V1VolumeMount(name="spec", mount_path=SPEC_DIR, read_only=True),
        k.V1VolumeMount(name="work", mount_path=POD_WORK_DIR),
    ]
    if c.shm_size:
        volumes.append(
            k.V1Volume(name="shm", empty_dir=k.V1EmptyDirVolumeSource(medium="Memory", size_limit=c.shm_size))
        )
        mounts.append(k.V1VolumeMount(name="shm", mount_path="/dev/shm"))
    container = k.V1Container(
        name=CONTAINER,
        image=image_for(c, framework),
        image_pull_policy=c.image_pull_policy,
        command=["python", "-m", "trainer_runtime"],
        args=["--spec", f"{SPEC_DIR}/{SPEC_KEY}", "--resume"],
        env=[k.V1EnvVar(name=key, value=value) for key, value in pod_env(job_id, name).items()],
        resources=k.V1ResourceRequirements(requests=requests or None, limits=limits or None),
        volume_mounts=mounts,
        security_context=k.V1SecurityContext(
            allow_privilege_escalation=False,
            run_as_non_root=True,
            capabilities=k.V1Capabilities(drop=["ALL"]),
        ),
    )
    tolerations = [k.V1Toleration(**_snake(t)) for t in c.tolerations] or None
    pod = k.V1PodSpec(
        restart_policy="Never",
        containers=[container],
        volumes=volumes,
        termination_grace_period_seconds=max(1, int(c.termination_grace_s)),
        service_account_name=c.service_account,
        automount_service_account_token=False,
        image_pull_secrets=[k.V1LocalObjectReference(name=s) for s in c.image_pull_secrets] or None,
        node_selector=dict(c.node_selector) or None,
        tolerations=tolerations,
        security_context=k.V1PodSecurityContext(run_as_non_root=True, fs_group=10001),
    )
    policy = k.V1PodFailurePolicy(
        rules=[
            k.V1PodFailurePolicyRule(
                action="Ignore",
                on_pod_conditions=[k.V1PodFailurePolicyOnPodConditionsPattern(type="DisruptionTarget", status="True")],
            ),
            k.V1PodFailurePolicyRule(
                action="FailJob",
                on_exit_codes=k.V1PodFailurePolicyOnExitCodesRequirement(
                    container_name=CONTAINER, operator="In", values=[EXIT_SPEC]
                ),
            ),
        ]
    )
    return k.V1Job(
        api_version="batch/v1",
        kind="Job",
        metadata=k.V1ObjectMeta(
            name=name,
            namespace=namespace,
            labels=labels,
            annotations={f"{LABEL_PREFIX}/resume": "always"},
        ),
        spec=k.V1JobSpec(
            completions=1,
            parallelism=1,
            backoff_limit=max(0, int(c.backoff_limit)),
            pod_failure_policy=policy,
            pod_replacement_policy="Failed",
            active_deadline_seconds=int(c.active_deadline_s) if c.active_deadline_s else None,
            ttl_seconds_after_finished=int(c.ttl_after_finished_s) if c.ttl_after_finished_s is not None else None,
            template=k.V1PodTemplateSpec(metadata=k.V1ObjectMeta(labels=labels), spec=pod),
        ),
    )


def build_secret(k: Any, namespace: str, job_id: int, name: str, spec: Mapping[str, Any], owner: Any = None) -> Any:
    """The ``V1Secret`` holding ``spec.json`` for the attempt `name`, owned by its Job `owner` (when
    created already) so that both go away together."""
    owners = None
    uid = getattr(getattr(owner, "metadata", None), "uid", None)
    if uid:
        owners = [k.V1OwnerReference(api_version="batch/v1", kind="Job", name=name, uid=uid)]
    return k.V1Secret(
        api_version="v1",
        kind="Secret",
        type="Opaque",
        metadata=k.V1ObjectMeta(
            name=name,
            namespace=namespace,
            labels=job_labels(job_id, name, spec.get("framework")),
            owner_references=owners,
        ),
        string_data={SPEC_KEY: json.dumps(spec, indent=2)},
    )


__all__ = [
    "DEFAULT_IMAGES",
    "KubernetesConfig",
    "build_job",
    "build_secret",
    "check_storage",
    "image_for",
    "job_labels",
    "job_name",
    "parse_node_selector",
    "parse_tolerations",
    "pod_env",
    "pod_spec_json",
    "split_list",
]
