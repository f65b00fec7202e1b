"""What a trainer process may inherit from the server: an environment allow-list and resource limits.

A trainer runs code paths driven by user input (datasets, model configs), so it gets nothing it
does not need. Everything it needs comes from its spec file (``spec.json``, mode 0600, in the job's
folder; a mounted Secret on Kubernetes): the callback URL and token, both stores' endpoints and
credentials, the MLflow tracking URI. The environment only carries how to run (`trainer_env`):

* exact names: PATH, HOME, USER, LOGNAME, SHELL, LANG, LANGUAGE, TZ, TERM, TMPDIR/TEMP/TMP,
  VIRTUAL_ENV, LD_LIBRARY_PATH, the PYTHON* settings of the interpreter, CA bundles
  (SSL_CERT_FILE/DIR, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE), proxies (HTTP(S)_PROXY, NO_PROXY), the
  XDG folders, MPLBACKEND/MPLCONFIGDIR, AWS_REGION/AWS_DEFAULT_REGION/AWS_CA_BUNDLE (no AWS keys:
  the stores' credentials are in the spec), MLFLOW_TRACKING_URI/USERNAME/PASSWORD/TOKEN (the
  trainer's own tracking store);
* prefixes (framework and device settings): LC_, CUDA_, NVIDIA_, CUDNN_, NCCL_, YOLO_,
  ULTRALYTICS_, HF_, TRANSFORMERS_, TORCH_, TORCHINDUCTOR_, PYTORCH_, TIMM_, OMP_, MKL_, OPENBLAS_,
  KMP_, MLFLOW_, VTA_, COVERAGE_ / COV_CORE_ (subprocess coverage) — except names that look like a
  credential (containing TOKEN, SECRET, PASSWORD, PASSWD, CREDENTIAL, or ending in _KEY: HF_TOKEN,
  VTA_..._SECRET), which only the exact list above may let through;
* what the operator adds: ``TRAINER_ENV_ALLOW`` (comma-separated names; ``NAME_*`` for a prefix).

So SECRET_KEY, DATABASE_URL, SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, LLM_API_KEY, REDIS_URL,
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY and the *_STORAGE_*_KEY settings never reach a trainer.

Resource limits (`TrainerLimits`, Settings TRAINER_MEMORY_LIMIT_MB, TRAINER_OPEN_FILES_LIMIT,
TRAINER_PROCESS_LIMIT; 0 = unlimited) are set in the child between fork and exec (`preexec_fn`
calling only `resource.setrlimit`) and are inherited by everything it starts (data-loader workers,
the MLflow logger):

* memory: RLIMIT_DATA (the process's private writable memory: heap, anonymous mappings), not
  RLIMIT_AS: CUDA reserves terabytes of address space it never backs, and an address-space limit
  would break every GPU trainer. A trainer over the limit gets MemoryError / ENOMEM, not the server.
* open files: RLIMIT_NOFILE.
* processes: RLIMIT_NPROC (Linux counts the threads of every process of the same user; root is
  exempt).

A limit above the server's own hard limit is lowered to it (an unprivileged process cannot raise
its hard limit).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "TEMP",
        "TMP",
        "VIRTUAL_ENV",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
        "PYTHONHOME",
        "PYTHONHASHSEED",
        "PYTHONIOENCODING",
        "PYTHONUTF8",
        "PYTHONWARNINGS",
        "PYTHONDONTWRITEBYTECODE",
        "PYTHONPYCACHEPREFIX",
        "PYTHONFAULTHANDLER",
        "PYTHONUNBUFFERED",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "XDG_CACHE_HOME",
        "XDG_CONFIG_HOME",
        "XDG_DATA_HOME",
        "XDG_RUNTIME_DIR",
        "MPLBACKEND",
        "MPLCONFIGDIR",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_CA_BUNDLE",
        "MLFLOW_TRACKING_URI",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
        "MLFLOW_TRACKING_TOKEN",
    }
)
ALLOWED_PREFIXES = (
    "LC_",
    "CUDA_",
    "NVIDIA_",
    "CUDNN_",
    "NCCL_",
    "YOLO_",
    "ULTRALYTICS_",
    "HF_",
    "TRANSFORMERS_",
    "TORCH_",
    "TORCHINDUCTOR_",
    "PYTORCH_",
    "TIMM_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "KMP_",
    "MLFLOW_",
    "VTA_",
    "COVERAGE_",
    "COV_CORE_",
)
_CREDENTIAL = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|_KEY$|_KEY_", re.IGNORECASE)


def parse_allow(text: str | None) -> tuple[frozenset[str], tuple[str, ...]]:
    """``TRAINER_ENV_ALLOW`` -> (exact names, prefixes): ``A,B_*`` allows A and every B_ name."""
    names: set[str] = set()
    prefixes: list[str] = []
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        if item.endswith("*"):
            if item[:-1]:
                prefixes.append(item[:-1])
        else:
            names.add(item)
    return frozenset(names), tuple(prefixes)


def env_allowed(name: str, extra_names: Iterable[str] = (), extra_prefixes: Iterable[str] = ()) -> bool:
    """Whether a trainer may inherit the variable `name` (see the module doc)."""
    if name in ALLOWED_NAMES or name in set(extra_names):
        return True
    if name.startswith(tuple(extra_prefixes)):
        return True
    return name.startswith(ALLOWED_PREFIXES) and not _CREDENTIAL.search(name)


def trainer_env(source: Mapping[str, str] | None = None, allow: str | None = None) -> dict[str, str]:
    """The allow-listed part of `source` (default: this process's environment)."""
    env = os.environ if source is None else source
    names, prefixes = parse_allow(allow)
    return {k: v for k, v in env.items() if env_allowed(k, names, prefixes)}


@dataclass(frozen=True)
class TrainerLimits:
    """Resource limits of a local trainer process and its children; 0 = unlimited (see the module doc)."""

    memory_mb: int = 0
    open_files: int = 0
    processes: int = 0

    def rlimits(self) -> list[tuple[int, int]]:
        """(resource, limit) pairs for `resource.setrlimit`, capped at this process's hard limits."""
        import resource

        out: list[tuple[int, int]] = []
        for res, value in (
            (resource.RLIMIT_DATA, int(self.memory_mb) * 1024 * 1024),
            (resource.RLIMIT_NOFILE, int(self.open_files)),
            (resource.RLIMIT_NPROC, int(self.processes)),
        ):
            if value <= 0:
                continue
            _soft, hard = resource.getrlimit(res)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            out.append((res, value))
        return out

    def preexec(self) -> Callable[[], None] | None:
        """A `preexec_fn` applying the limits in the child (None when there are none). Everything is
        computed here, in the parent: the child only calls `setrlimit`."""
        limits = self.rlimits()
        if not limits:
            return None
        import resource

        setrlimit = resource.setrlimit

        def apply() -> None:
            for res, value in limits:
                setrlimit(res, (value, value))

        return apply
