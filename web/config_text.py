"""The prose of docs/configuration.md: what each setting means, section by section.

`web.config_docs` renders it with the variables and defaults of `web.config.Settings` (and checks
that every field is here exactly once): edit this file, then run `python -m web.config_docs`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Row:
    """One table row: one or more environment variables that share a meaning."""

    names: tuple[str, ...]
    meaning: str
    default: str | None = None  # None: the fields' defaults, joined by `sep`
    sep: str = " / "


@dataclass(frozen=True)
class Section:
    """One section of docs/configuration.md: its heading, table rows and the prose around them."""

    title: str
    rows: tuple[Row, ...]
    intro: str = ""
    outro: str = ""
    settings: bool = True  # False: variables that are not settings of the server (no default column)


PREAMBLE = (
    "# Configuration\n\nNothing needs configuring: with no variables set, the server keeps "
    "everything under `./data`\n(SQLite database, local-folder storage, generated signing "
    "secret) and makes the built-in demo\ndatasets on first start.\n\nSettings are read once at "
    "start from the environment and from a `.env` file in the working\ndirectory "
    "(`web/config.py`, pydantic-settings; names are case-insensitive). Each variable is a field\n"
    "of `web.config.Settings`, the only place the server reads its configuration: `VTA_INFERENCE_*`,\n"
    "`LLM_*`, `SLACK_*` and `K8S_*` are the fields of its nested models `inference`, `llm`, `slack`\n"
    "and `k8s`. `--data-dir D` of `vision-agent serve` (and of `slack`, `weights`, `users`) wins\n"
    "over `VTA_DATA_DIR`.\n\n"
    "<!-- Generated from web/config.py (Settings) and web/config_text.py by `python -m web.config_docs`:\n"
    "edit those, not this page (tests/web/test_config.py fails when they differ). -->"
)

SECTIONS: tuple[Section, ...] = (
    Section(
        title="Server",
        rows=(
            Row(
                names=("VTA_DATA_DIR",),
                meaning=(
                    "Folder for all local state: `app.db` (SQLite), `storage/` (local object stores), "
                    "`work/` (upload staging), `secret_key`."
                ),
            ),
            Row(
                names=("DATABASE_URL",),
                default="`sqlite:///<VTA_DATA_DIR>/app.db`",
                meaning=(
                    "SQLAlchemy URL, e.g. `postgresql+psycopg://user:pass@host:5432/db`. Migrations "
                    "(Alembic) run at every start and are idempotent."
                ),
            ),
            Row(
                names=("DB_POOL_SIZE", "DB_MAX_OVERFLOW"),
                meaning=(
                    "Database connections per server process (SQLAlchemy pool size + overflow). Their sum "
                    "matches the 40 threads that run the synchronous endpoints, so a request thread never "
                    "waits for a connection; lower them for a small PostgreSQL `max_connections` (each "
                    "replica opens up to the sum)."
                ),
            ),
            Row(
                names=("DB_POOL_TIMEOUT_S",),
                meaning=(
                    "How long a request waits for a pooled database connection; after that it is answered "
                    "503 with `Retry-After` (never a 500)."
                ),
            ),
            Row(
                names=("MAX_REQUESTS_IN_FLIGHT",),
                meaning=(
                    "HTTP requests one server process works on at once (`web/overload.py`); a request counts "
                    "until its response starts, so Server-Sent Events and downloads hold no slot while they "
                    "stream. It is lowered to the worker threads (40) + `DB_POOL_SIZE` + `DB_MAX_OVERFLOW` - "
                    "1 when that is smaller: then the connection pool cannot deadlock. `/health`, `/metrics` "
                    "and WebSockets are not counted."
                ),
            ),
            Row(
                names=("REQUEST_QUEUE_TIMEOUT_S",),
                meaning=(
                    "How long a request beyond `MAX_REQUESTS_IN_FLIGHT` waits for a slot before it is "
                    "answered 503 with `Retry-After: 1` (`0`: at once)."
                ),
            ),
            Row(
                names=("SECRET_KEY",),
                default="generated once, kept in `<VTA_DATA_DIR>/secret_key` (mode 600)",
                meaning=(
                    "HS256 key that signs access tokens. Set it (32+ characters) when several replicas share "
                    "a database. Changing it signs everybody out."
                ),
            ),
            Row(
                names=("ACCESS_TOKEN_EXPIRE_MINUTES",),
                default="`1440` (one day)",
                meaning="Lifetime of an access token.",
            ),
            Row(
                names=("STREAM_TICKET_TTL_S",),
                meaning=(
                    "Lifetime of a stream ticket (`POST /api/v1/stream-tickets`): it opens one WebSocket or "
                    "SSE stream, once, so the bearer token never appears in a URL. `?token=` on streams "
                    "still works for one release and is redacted from every log line."
                ),
            ),
            Row(
                names=("DOWNLOAD_LINK_TTL_S",),
                meaning=(
                    "Lifetime of a signed download link (`GET /api/v1/dl/<signed>`, made by `POST "
                    "/api/v1/downloads`, the page's download buttons, the chat and Slack): it downloads one "
                    "checkpoint, model card or export of one user without a bearer token until it expires."
                ),
            ),
            Row(
                names=("PUBLIC_BASE_URL",),
                meaning=(
                    "The server's address as people reach it (e.g. `https://vta.example.com`): links the "
                    "chat and Slack give start with it; empty: paths relative to this server."
                ),
            ),
            Row(
                names=("LOGIN_MAX_FAILURES_PER_ACCOUNT",),
                meaning=(
                    "Failed sign-ins that lock an account (429 with `Retry-After`; the password is not "
                    "checked while locked). A successful sign-in resets the count."
                ),
            ),
            Row(
                names=("LOGIN_MAX_FAILURES_PER_CLIENT",),
                meaning=(
                    "Failed sign-ins (and 409 registrations) from one client address (IPv6: its /64), over "
                    "all accounts, that lock that address. Behind a reverse proxy run uvicorn with "
                    "`--proxy-headers --forwarded-allow-ips <proxy>` so the real address is seen."
                ),
            ),
            Row(
                names=("LOGIN_FAILURE_WINDOW_S",),
                meaning=("Failures are forgotten this long after the last one (or when a longer lock ends)."),
            ),
            Row(
                names=("LOGIN_LOCKOUT_BASE_S", "LOGIN_LOCKOUT_MAX_S"),
                meaning=(
                    "The first lock lasts the base; each further failure after a lock doubles it, up to the "
                    "max. Counters live in Redis when `REDIS_URL` is set (shared by every replica), else in "
                    "each server process."
                ),
            ),
            Row(
                names=("PASSWORD_HASH_CONCURRENCY",),
                default="the CPU count",
                meaning=(
                    "Password hashes/verifications (argon2id, 64 MiB each) at once per server process; more "
                    "sign-ins and registrations wait."
                ),
            ),
            Row(
                names=("PASSWORD_HASH_WAIT_S",),
                meaning=(
                    "How long a sign-in or registration waits for a hashing slot before it is answered 503 "
                    "with `Retry-After`."
                ),
            ),
            Row(
                names=("CORS_ORIGINS",),
                default="empty (no CORS headers)",
                meaning=(
                    "Comma-separated browser origins allowed to call the API, e.g. "
                    "`http://localhost:5173,https://app.example.org`."
                ),
            ),
            Row(
                names=("CREATE_DEMO_DATASETS",),
                meaning=(
                    "Make the public demo datasets `digits`, `shapes-demo`, `poses-demo` (owned by the "
                    "system user) at start when they are missing. Offline and deterministic."
                ),
            ),
        ),
    ),
    Section(
        title="Uploads",
        rows=(
            Row(
                names=("MAX_UPLOAD_BYTES",),
                default="`2147483648` (2 GiB)",
                meaning="Largest request / archive accepted. Over it: 413.",
            ),
            Row(
                names=("MAX_FILE_BYTES",),
                default="`268435456` (256 MiB)",
                meaning="Largest single file (image) in an upload.",
            ),
            Row(names=("MAX_ZIP_ENTRIES",), meaning="Most entries a zip may have (zip bombs)."),
            Row(
                names=("MAX_ZIP_UNCOMPRESSED_BYTES",),
                default="`8589934592` (8 GiB)",
                meaning="Most bytes a zip may expand to.",
            ),
            Row(
                names=("MAX_REQUEST_BODY_BYTES",),
                default="`2214592512` (2 GiB + 64 MiB)",
                meaning=(
                    "Largest request body with a valid access token (`web/bodylimit.py`): a larger "
                    "`Content-Length` is answered 413 before the body is read, a chunked body is answered "
                    "413 as soon as it passes the limit. Above `MAX_UPLOAD_BYTES` by the multipart framing. "
                    "Every `/api/v1` route except sign-in, registration and `/agent/parse` answers 401 to a "
                    "body sent without a valid token, before reading it."
                ),
            ),
            Row(
                names=("MAX_UNAUTHENTICATED_BODY_BYTES",),
                default="`16777216` (16 MiB)",
                meaning=(
                    "Largest request body without a user's access token: sign-in, registration, "
                    "`/api/v1/agent/parse`, the Slack endpoints and the trainers' `/internal` events route "
                    "(413 beyond)."
                ),
            ),
            Row(
                names=("MAX_ZIP_RATIO",),
                meaning=(
                    "A zip whose entries add up to more than this many times the archive's size (above 16 "
                    "MiB), or one entry over 1 MiB expanding more, is refused as a zip bomb (413) from its "
                    "central directory, before anything is extracted. While extracting, an entry that yields "
                    "more bytes than its header declares is refused too."
                ),
            ),
            Row(
                names=("USER_STORAGE_QUOTA_BYTES",),
                default="`53687091200` (50 GiB)",
                meaning=(
                    "Bytes one user's datasets (the sum of their `total_bytes`) and uploaded weights files "
                    "(`POST /api/v1/weights/mine`) may hold in all; an upload that would go over it is "
                    "refused with 413 before anything is stored, and an upload by a user already at the "
                    "quota is refused before its body is read. Checked under a per-user lock (and the user's "
                    "row lock on PostgreSQL), so concurrent uploads cannot both take the last bytes. `0`: no "
                    "quota."
                ),
            ),
            Row(
                names=("MAX_LABEL_CHARS",),
                meaning=(
                    "Longest class, supercategory or keypoint name in an uploaded dataset; names must also "
                    "be plain text (no control or bidi-override characters). 422 naming the file and field "
                    "otherwise."
                ),
            ),
            Row(
                names=("MAX_CATEGORIES", "MAX_KEYPOINTS"),
                meaning="Most classes in one dataset, and keypoints of one class (422 beyond).",
            ),
            Row(
                names=("MAX_DOCUMENT_DEPTH",),
                meaning=(
                    "Deepest nesting of lists/objects in an uploaded JSON (annotations.json, COCO) or YAML "
                    "(data.yaml) file (422 beyond, never a 500)."
                ),
            ),
            Row(
                names=("MAX_YAML_BYTES",),
                default="`1048576` (1 MiB)",
                meaning=(
                    "Largest YAML file read (data.yaml). YAML anchors and aliases (`&a`, `*a`) are refused: "
                    'they are how a 700-byte "alias bomb" expands to gigabytes.'
                ),
            ),
        ),
    ),
    Section(
        title="Storage (dual: datasets external, results internal)",
        intro=(
            "Datasets are read-mostly and live in the **external** store; training results "
            "(checkpoints) are\nwrite-mostly and live in the **internal** store. A store with no "
            "endpoint is a local folder\n`<VTA_DATA_DIR>/storage/{external,internal}/<bucket>/<key>`; "
            "with an endpoint it is S3 or MinIO\nthrough boto3. Each side falls back to the legacy "
            "`S3_ENDPOINT` / `AWS_ACCESS_KEY_ID` /\n`AWS_SECRET_ACCESS_KEY` for whatever it does not "
            "set itself."
        ),
        outro=(
            "Storage keys: `datasets/{dataset_id}/images/{relative path}`, "
            "`datasets/{dataset_id}/annotations.json`,\n"
            "`datasets/{dataset_id}/snapshots/{snapshot_id}/annotations.json`,\n"
            "`checkpoints/projects/{project_id}/jobs/{job_id}/{best,last}.pt` "
            "(or\n`checkpoints/test-jobs/job_{job_id}/...` without a project). `GET /health` "
            "(unauthenticated)\nsays only `ok` or `failing` for the database and each store, never a "
            "path, endpoint or bucket."
        ),
        rows=(
            Row(
                names=("EXTERNAL_STORAGE_ENDPOINT",),
                default="`S3_ENDPOINT`, else local folder",
                meaning="S3/MinIO URL of the datasets store, e.g. `http://minio:9000`.",
            ),
            Row(
                names=("EXTERNAL_STORAGE_ACCESS_KEY",),
                default="`AWS_ACCESS_KEY_ID`",
                meaning="Access key of the datasets store.",
            ),
            Row(
                names=("EXTERNAL_STORAGE_SECRET_KEY",),
                default="`AWS_SECRET_ACCESS_KEY`",
                meaning="Secret key of the datasets store.",
            ),
            Row(names=("EXTERNAL_BUCKET_DATASETS",), meaning="Bucket for datasets."),
            Row(
                names=("INTERNAL_STORAGE_ENDPOINT",),
                default="`S3_ENDPOINT`, else local folder",
                meaning="S3/MinIO URL of the results store.",
            ),
            Row(
                names=("INTERNAL_STORAGE_ACCESS_KEY",),
                default="`AWS_ACCESS_KEY_ID`",
                meaning="Access key of the results store.",
            ),
            Row(
                names=("INTERNAL_STORAGE_SECRET_KEY",),
                default="`AWS_SECRET_ACCESS_KEY`",
                meaning="Secret key of the results store.",
            ),
            Row(names=("INTERNAL_BUCKET_CHECKPOINTS",), meaning="Bucket for checkpoints."),
            Row(names=("S3_ENDPOINT",), meaning="Legacy: endpoint for both stores."),
            Row(names=("AWS_ACCESS_KEY_ID",), meaning="Legacy: access key for both stores."),
            Row(names=("AWS_SECRET_ACCESS_KEY",), meaning="Legacy: secret key for both stores."),
            Row(names=("AWS_REGION",), meaning="Region sent to S3 for both stores."),
        ),
    ),
    Section(
        title="Jobs, progress and tracking",
        rows=(
            Row(
                names=("MAX_CONCURRENT_JOBS",),
                default="one per GPU that `nvidia-smi -L` lists, else `1`; `4` with `EXECUTOR=kubernetes`",
                meaning=("Training slots; further jobs wait in a FIFO queue (`queue_position` in the job JSON)."),
            ),
            Row(
                names=("TRAINER_PYTHON_ULTRALYTICS", "TRAINER_PYTHON_TIMM", "TRAINER_PYTHON_TRANSFORMERS"),
                default="the server's own interpreter",
                sep=", ",
                meaning=(
                    "Interpreter of a per-framework venv that has `trainer_runtime` and that framework installed."
                ),
            ),
            Row(
                names=("JOB_MAX_RETRIES",),
                meaning=(
                    "Crashed trainers are restarted with `--resume` this many times (like a Kubernetes Job's "
                    "backoffLimit)."
                ),
            ),
            Row(
                names=("JOB_RETRY_BASE_DELAY_S",), meaning="Delay before retry n is base x 2^n seconds (capped at 600)."
            ),
            Row(names=("STOP_GRACE_PERIOD_S",), meaning="Stop = SIGINT, SIGTERM after this, SIGKILL after it again."),
            Row(
                names=("TRAINER_MEMORY_LIMIT_MB",),
                meaning=(
                    "Memory limit of each local trainer process and its children (RLIMIT_DATA: heap and "
                    "anonymous memory; CUDA's address-space reservations do not count). `0`: unlimited."
                ),
            ),
            Row(
                names=("TRAINER_OPEN_FILES_LIMIT",),
                meaning=(
                    "Open files per local trainer process (RLIMIT_NOFILE), capped at the server's own hard "
                    "limit. `0`: unlimited."
                ),
            ),
            Row(
                names=("TRAINER_PROCESS_LIMIT",),
                meaning=(
                    "Processes and threads of the server's user a local trainer may reach (RLIMIT_NPROC; "
                    "root is exempt). `0`: unlimited."
                ),
            ),
            Row(
                names=("TRAINER_ENV_ALLOW",),
                meaning=(
                    "Extra environment variables a local trainer inherits (comma-separated, `NAME_*` for a "
                    "prefix). Trainers get only an allow-list (PATH, HOME, locale, TMPDIR, PYTHON*, "
                    "CUDA_*/NVIDIA_*, framework settings such as YOLO_*, HF_*, TORCH_*, OMP_NUM_THREADS, "
                    "MKL_*, MLFLOW_TRACKING_*, VTA_*), never the server's secrets (SECRET_KEY, DATABASE_URL, "
                    "SLACK_*, LLM_API_KEY, AWS/storage keys): their stores' credentials are in their 0600 "
                    "spec file."
                ),
            ),
            Row(
                names=("VTA_CALLBACK_BASE_URL",),
                default="`http://127.0.0.1:8000` (`vision-agent serve` sets it from `--host`/`--port`)",
                meaning=("How a trainer reaches this server to post its events (`POST /internal/jobs/{id}/events`)."),
            ),
            Row(
                names=("VTA_REPORTER_CLOSE_TIMEOUT_S",),
                default="`120`",
                meaning=(
                    "How long a finished trainer keeps delivering its last events to the server (its spec "
                    "carries it); what is left stays in its spool for the next attempt."
                ),
            ),
            Row(
                names=("VTA_RENDER_FONT",),
                meaning=(
                    "TrueType font for the labels of rendered predictions (`?render=true`, Slack images), "
                    "e.g. a Hangul font; unset: fontconfig's Korean font, then Nanum/Noto CJK, then DejaVuSans."
                ),
            ),
            Row(
                names=("MLFLOW_TRACKING_URI",),
                default="unset: each trainer uses a SQLite store under `<VTA_DATA_DIR>/trainer/mlflow`",
                meaning="MLflow tracking server or store for the trainers.",
            ),
            Row(
                names=("WEIGHTS_DOWNLOAD",),
                meaning=(
                    "Pretrained weights come from the registry first; then, unless `off`, the trainer "
                    "downloads them from the framework's source (Hugging Face hub for timm/transformers, "
                    "honouring `HF_ENDPOINT` and `HF_HUB_OFFLINE`; Ultralytics release assets) and caches "
                    "them in the registry; else the job trains from scratch. `auto`: a failed download means "
                    "from scratch with a warning; `on`: it fails the job."
                ),
            ),
            Row(names=("WEIGHTS_DOWNLOAD_TIMEOUT_S",), meaning="Connect/read timeout of each download request."),
            Row(
                names=("WEIGHTS_DOWNLOAD_MAX_S",),
                meaning=("The whole download's deadline; past it the trainer goes on without it (never hangs)."),
            ),
            Row(names=("WEIGHTS_MAX_BYTES",), meaning="Largest weights file a trainer downloads."),
            Row(
                names=("USER_WEIGHTS_MAX_BYTES",),
                meaning=(
                    "Largest weights file a user may upload for their own jobs (`POST /api/v1/weights/mine`; "
                    "413 beyond). Uploads count toward `USER_STORAGE_QUOTA_BYTES`."
                ),
            ),
            Row(names=("ULTRALYTICS_ASSETS_URL",), meaning="Base URL of the Ultralytics weights (`{url}/{model}.pt`)."),
            Row(
                names=("ADMIN_EMAILS",),
                meaning=(
                    "Comma-separated emails made administrators at start-up (they may upload weights: `POST "
                    "/api/v1/weights`); also `vision-agent users promote EMAIL`."
                ),
            ),
            Row(
                names=("REDIS_URL",),
                default="unset: in-process fan-out",
                meaning=(
                    "Redis pub/sub for progress events, required when several server replicas serve the same jobs."
                ),
            ),
            Row(names=("REDIS_CHANNEL_PREFIX",), meaning="Channels are `<prefix>:job:<id>`."),
        ),
    ),
    Section(
        title="Inference (single images, batch test runs, exports: ONNX, TorchScript, OpenVINO)",
        intro=(
            "The server never imports torch: predictions run in one worker process per "
            "framework\n(`python -m trainer_runtime.inference.worker`, started on first use with the "
            "framework's\n`TRAINER_PYTHON_*` interpreter), which keeps recently used models loaded."
        ),
        rows=(
            Row(
                names=("VTA_INFERENCE_DEVICE",),
                default="`auto` (CUDA when present)",
                meaning="`cpu`, `cuda`, `cuda:1`, ... for the workers.",
            ),
            Row(
                names=("VTA_INFERENCE_WORKERS_PER_FRAMEWORK",),
                default="`1`",
                meaning="Worker processes per framework (models are spread over them by key).",
            ),
            Row(
                names=("VTA_INFERENCE_MAX_MODELS", "VTA_INFERENCE_MAX_MEMORY_MB"),
                default="`4` / `2048`",
                meaning="LRU bound of the loaded models in one worker (count and parameter bytes).",
            ),
            Row(
                names=("VTA_INFERENCE_BATCH_WINDOW_MS", "VTA_INFERENCE_BATCH_WAIT", "VTA_INFERENCE_MAX_BATCH"),
                default="`2`, `adaptive`, `32`",
                sep=", ",
                meaning=(
                    "Concurrent requests for one model share a forward; `adaptive` waits up to the window "
                    "only while requests are arriving close together (a lone request never waits)."
                ),
            ),
            Row(
                names=("VTA_INFERENCE_MAX_PIXELS", "VTA_INFERENCE_MAX_IMAGE_BYTES"),
                default="`40000000` / `52428800`",
                meaning="Largest image accepted (413 over either).",
            ),
            Row(
                names=("VTA_INFERENCE_REQUEST_TIMEOUT_S", "VTA_INFERENCE_EXPORT_TIMEOUT_S"),
                default="`120` / `600`",
                meaning=("A worker that does not answer in time is killed and restarted; the request gets 503."),
            ),
            Row(
                names=("VTA_INFERENCE_THREADS",),
                default="`0` (torch's default)",
                meaning="Torch intra-op threads of a worker.",
            ),
            Row(
                names=("VTA_INFERENCE_TEST_RUN_BATCH", "VTA_INFERENCE_TEST_RUN_WORKERS"),
                default="`16` / `2`",
                meaning="Images per forward in a batch test run; test runs executed at once.",
            ),
            Row(
                names=("VTA_INFERENCE_ROUTE_CACHE_TTL_S",),
                default="`5`",
                meaning=(
                    "A repeated single-image request (same token, job and checkpoint) skips the user, job "
                    "and checkpoint queries for this long; the token itself is verified every time. A job "
                    "deleted or resumed through this server is dropped from the cache at once; a user "
                    "deactivated (or a job changed by another replica) keeps its route until it expires. `0` "
                    "turns it off."
                ),
            ),
            Row(
                names=("VTA_INFERENCE_CACHE_DIR",),
                default="`<VTA_DATA_DIR>/inference`",
                meaning="Local copies of checkpoints and temporary test-run files.",
            ),
        ),
    ),
    Section(
        title="Executor: local processes or Kubernetes Jobs",
        intro=(
            "`EXECUTOR=kubernetes` runs every training attempt as a `batch/v1` Job in a "
            "cluster\n(`tools/executors/kubernetes.py`, needs `pip install "
            "'vision-training-agent[k8s]'` and S3/MinIO\nstorage that the pods reach); see "
            "[deploy.md](deploy.md) for what the Job looks like. The `K8S_*`\nvariables only matter "
            "then; an empty value leaves an optional request/limit out."
        ),
        outro=(
            "With `EXECUTOR=kubernetes`, `MAX_CONCURRENT_JOBS` defaults to 4 (the cluster's "
            "scheduler queues the\npods that do not fit) and `VTA_CALLBACK_BASE_URL` must be an "
            "address the pods reach (the server's\nService)."
        ),
        rows=(
            Row(
                names=("EXECUTOR",), meaning="`local`: subprocesses on this machine; `kubernetes`: one Job per attempt."
            ),
            Row(
                names=("K8S_NAMESPACE",),
                default="the pod's own namespace in a cluster, else the kubeconfig context's, else `default`",
                meaning="Where the Jobs and their spec Secrets are made.",
            ),
            Row(
                names=("K8S_IN_CLUSTER",),
                default="in-cluster when `KUBERNETES_SERVICE_HOST` is set",
                meaning=(
                    "`true`: the pod's service account; `false`: the kubeconfig (`KUBECONFIG`, else `~/.kube/config`)."
                ),
            ),
            Row(
                names=("K8S_CONTEXT",), default="the kubeconfig's current context", meaning="Kubeconfig context to use."
            ),
            Row(
                names=("KUBECONFIG",),
                default="`~/.kube/config`",
                meaning="Kubeconfig file(s) used when not in-cluster (the Kubernetes convention).",
            ),
            Row(
                names=("KUBERNETES_SERVICE_HOST",),
                default="set by Kubernetes in every pod",
                meaning="Its presence makes `K8S_IN_CLUSTER` default to `true`; never set it yourself.",
            ),
            Row(
                names=("K8S_IMAGE_ULTRALYTICS", "K8S_IMAGE_TIMM", "K8S_IMAGE_TRANSFORMERS"),
                sep=", ",
                meaning="Trainer image per framework (`deploy/docker/Dockerfile.trainer`).",
            ),
            Row(names=("K8S_IMAGE_PULL_POLICY",), meaning="`Always`, `IfNotPresent` or `Never`."),
            Row(names=("K8S_IMAGE_PULL_SECRETS",), meaning="Comma-separated Secret names for a private registry."),
            Row(
                names=("K8S_SERVICE_ACCOUNT",),
                default="the namespace's default",
                meaning=("Service account of the trainer pods (they need no API access; no token is mounted)."),
            ),
            Row(
                names=("K8S_CPU_REQUEST", "K8S_MEMORY_REQUEST"), sep=", ", meaning="Requests of the trainer container."
            ),
            Row(
                names=("K8S_CPU_LIMIT", "K8S_MEMORY_LIMIT"),
                default="none, `16Gi`",
                sep=", ",
                meaning="Limits of the trainer container.",
            ),
            Row(
                names=("K8S_GPUS_PER_JOB",),
                meaning=("GPUs for a job on device `auto`; device `cuda[:N]` asks for at least 1, `cpu` for none."),
            ),
            Row(names=("K8S_GPU_RESOURCE",), meaning="Extended resource name of a GPU."),
            Row(names=("K8S_NODE_SELECTOR",), meaning="`key=value,key2=value2` for the trainer pods."),
            Row(
                names=("K8S_TOLERATIONS",),
                meaning="JSON list of tolerations, as in a pod spec (e.g. for tainted GPU nodes).",
            ),
            Row(
                names=("K8S_BACKOFF_LIMIT",),
                meaning=(
                    "Pod failures a Job absorbs before it fails (preempted/evicted pods never count). 0 "
                    "leaves retries to the supervisor (`JOB_MAX_RETRIES`, with `--resume`)."
                ),
            ),
            Row(
                names=("K8S_ACTIVE_DEADLINE_S",),
                default="`604800` (7 days)",
                meaning="`activeDeadlineSeconds` of each attempt's Job; `0` for none.",
            ),
            Row(
                names=("K8S_TTL_AFTER_FINISHED_S",),
                meaning=(
                    "`ttlSecondsAfterFinished`: a finished Job and its Secret are deleted after this (at "
                    "least 60, so that the server sees how the Job ended; longer than a server restart "
                    "takes, so that a restarted server still finds it)."
                ),
            ),
            Row(
                names=("K8S_WORK_PVC",),
                default="none: an emptyDir per pod",
                meaning=("PersistentVolumeClaim mounted as the trainer's work folder (dataset cache, outputs)."),
            ),
            Row(
                names=("K8S_SHM_SIZE",),
                meaning=(
                    "Size of the memory-backed `/dev/shm` (data-loader workers); empty for the runtime's default."
                ),
            ),
            Row(
                names=("K8S_POLL_INTERVAL_S",), meaning="How often a running Job's status and its pods' logs are read."
            ),
            Row(
                names=("K8S_STREAM_LOGS",),
                meaning="Pods' log lines become the job's `log` events (`data.source` `pod`).",
            ),
            Row(
                names=("K8S_STOP_PROPAGATION",),
                meaning=(
                    "Deletion propagation of a stop (`Background` returns at once). The pods get SIGTERM and "
                    "`STOP_GRACE_PERIOD_S` to upload their checkpoints."
                ),
            ),
            Row(
                names=("K8S_START_TIMEOUT_S",),
                meaning=(
                    "A pod that cannot start (image pull or container config errors) this long fails the "
                    "attempt without retry; `0` waits forever."
                ),
            ),
        ),
    ),
    Section(
        title="Agent",
        rows=(
            Row(
                names=("LLM_BASE_URL",),
                default="unset: the deterministic bilingual dialogue",
                meaning=(
                    "Any OpenAI-compatible endpoint (LangChain `ChatOpenAI`); on an invalid answer, a "
                    "timeout or a connection error the agent falls back to the deterministic brain and says "
                    "so."
                ),
            ),
            Row(names=("LLM_API_KEY",), meaning="Its key."),
            Row(names=("LLM_MODEL",), meaning="Its model name."),
            Row(names=("LLM_TIMEOUT_S",), meaning="Per-request timeout."),
        ),
    ),
    Section(
        title="Slack",
        intro=(
            "The Slack bot (`web/slack/`, slack-bolt) is on when both `SLACK_BOT_TOKEN` "
            "and\n`SLACK_SIGNING_SECRET` are set; it answers at `POST /slack/events`, "
            "`/slack/commands` (`/train`)\nand `/slack/interactions` (Confirm / Change buttons) of "
            "the same server. Create the Slack app "
            "from\n[deploy/slack/manifest.yaml](../deploy/slack/manifest.yaml) (scopes, events, slash "
            "command,\ninteractivity URL). People link their Slack account once: a one-time code "
            "from\n`POST /api/v1/slack/link` (signed in), then `/train link CODE` in Slack (or `link "
            "CODE` in a DM);\nan administrator can map users directly with `vision-agent slack link "
            "--email E --slack-user U`."
        ),
        rows=(
            Row(
                names=("SLACK_BOT_TOKEN",),
                default="unset: Slack off (its endpoints answer 404)",
                meaning="The app's Bot User OAuth Token (`xoxb-...`).",
            ),
            Row(
                names=("SLACK_SIGNING_SECRET",),
                meaning=(
                    "The app's signing secret: every request is checked (HMAC-SHA256 of the raw body, "
                    "timestamp within 5 minutes), else 401."
                ),
            ),
            Row(
                names=("SLACK_API_BASE_URL",),
                default="`https://slack.com/api/`",
                meaning=(
                    "Where the bot calls the Slack Web API (a proxy; the tests point it at a local fake). "
                    'Images attached for "test it" are downloaded only from `*.slack.com` or this host.'
                ),
            ),
            Row(
                names=("SLACK_PROGRESS_INTERVAL_S",),
                meaning=(
                    "At most one `chat.update` of a job's progress message per this many seconds (the newest "
                    "state; updates in between are coalesced). With several jobs followed at once the "
                    "interval stretches so they stay under about 45 updates a minute together."
                ),
            ),
            Row(
                names=("SLACK_LINK_CODE_TTL_S",),
                meaning=("Lifetime of a one-time link code (30 s to 1 day). Codes work once and are stored hashed."),
            ),
        ),
    ),
    Section(
        title="Tests",
        settings=False,
        rows=(
            Row(
                names=("TEST_DATABASE_URL",),
                meaning=(
                    "When set (e.g. `postgresql+psycopg://postgres@127.0.0.1:5432/test`), every database "
                    "test runs against SQLite **and** this PostgreSQL, each test in its own throw-away "
                    "schema. Set but unreachable: those tests fail. `.ci/run` sets it."
                ),
            ),
            Row(
                names=("TEST_REDIS_URL",),
                meaning=("Redis for the progress fan-out tests (`.ci/run` sets `redis://127.0.0.1:6379/0`)."),
            ),
        ),
    ),
)
