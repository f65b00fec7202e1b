"""Inference for the server: worker processes, single images, exports and batch test runs.

    config     InferenceConfig (from `web.config.Settings`), cache paths
    client     WorkerClient: one worker process, its requests, timeouts and restarts
    service    InferenceService: worker pools, checkpoint cache, test-run thread pool (one per app)
    access     which job/checkpoint a caller may run, `model_key`, `ResultFile`
    predict    one image: checks, `run_inference`, `predict_route(_async)`;  routecache: `RouteCache`
    exports    ONNX / TorchScript / OpenVINO exports
    test_runs  test-run records, events, files, uploaded zips;  runner: runs them

Tool functions take `ctx` first, answer JSON-ready dicts and raise `tools.errors` errors
(`InferenceUnavailableError` 503, `InferenceFailedError` 500). Contracts: docs/architecture.md.
"""

from __future__ import annotations

from tools.errors import InferenceFailedError, InferenceUnavailableError
from tools.inference.access import ResultFile, job_checkpoint, model_key, visible_job
from tools.inference.client import WorkerClient
from tools.inference.config import InferenceConfig, job_cache_dir
from tools.inference.exports import create_export, export_file, export_key, get_export, list_exports
from tools.inference.predict import (
    InferenceOutcome,
    check_image_bytes,
    predict_route,
    predict_route_async,
    resolve_inference,
    run_inference,
    run_inference_route,
)
from tools.inference.routecache import InferenceRoute, RouteCache
from tools.inference.runner import execute_test_run, test_run_prefix
from tools.inference.service import InferenceService, register_deleted_job_cleanup
from tools.inference.test_runs import (
    create_test_run,
    get_test_run,
    list_test_runs,
    owned_test_run,
    stage_test_upload,
    test_run_event_page,
    test_run_events,
    test_run_file,
)

__all__ = [
    "InferenceConfig",
    "InferenceFailedError",
    "InferenceOutcome",
    "InferenceRoute",
    "InferenceService",
    "InferenceUnavailableError",
    "ResultFile",
    "RouteCache",
    "WorkerClient",
    "check_image_bytes",
    "create_export",
    "create_test_run",
    "execute_test_run",
    "export_file",
    "export_key",
    "get_export",
    "get_test_run",
    "job_cache_dir",
    "job_checkpoint",
    "list_exports",
    "list_test_runs",
    "model_key",
    "owned_test_run",
    "predict_route",
    "predict_route_async",
    "register_deleted_job_cleanup",
    "resolve_inference",
    "run_inference",
    "run_inference_route",
    "stage_test_upload",
    "test_run_event_page",
    "test_run_events",
    "test_run_file",
    "test_run_prefix",
    "visible_job",
]
