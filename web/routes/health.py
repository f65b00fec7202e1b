"""`GET /health`: 200 when the database answers, 503 otherwise (storage is described, not probed).

Anyone may call it, so it says only `ok` or `failing` per component: no paths, endpoints, bucket
names or error texts (those go to the server log). There is no admin role to show more to.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)

OK, FAILING = "ok", "failing"


@router.get("/health", summary="Readiness: database reachable, storage configured")
def health(request: Request) -> JSONResponse:
    """`{"status": "ok"|"starting"|"unavailable", "database": "ok"|"failing", "storage":
    {"external": "ok"|"failing", "internal": "ok"|"failing"}}`; 503 unless the database answers."""
    state = request.app.state
    factory = getattr(state, "session_factory", None)
    body: dict[str, Any] = {"status": "ok", "database": OK}
    status = 200
    if factory is None:
        body.update(status="starting", database=FAILING)
        status = 503
    else:
        try:
            with factory() as db:
                db.execute(text("SELECT 1"))
        except Exception as exc:
            log.warning("health: database check failed: %s: %s", type(exc).__name__, exc)
            body.update(status="unavailable", database=FAILING)
            status = 503
    body["storage"] = _storage_state(getattr(state, "storage", None))
    return JSONResponse(body, status_code=status)


def _storage_state(storage: Any) -> dict[str, str]:
    """ok per store whose configuration can be described (it is not probed: a slow object store
    must not make every health check slow)."""
    result: dict[str, str] = {}
    for name in ("external", "internal"):
        store = getattr(storage, name, None) if storage is not None else None
        try:
            result[name] = OK if store is not None and store.describe() else FAILING
        except Exception as exc:
            log.warning("health: %s storage cannot be described: %s: %s", name, type(exc).__name__, exc)
            result[name] = FAILING
    return result
