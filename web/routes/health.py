"""`GET /health`: 200 when the database answers, 503 otherwise (storage is described, not probed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["health"])


@router.get("/health", summary="Readiness: database reachable, storage configured")
def health(request: Request) -> JSONResponse:
    state = request.app.state
    factory = getattr(state, "session_factory", None)
    body: dict[str, Any] = {"status": "ok", "database": "ok"}
    status = 200
    if factory is None:
        body.update(status="starting", database="not connected")
        status = 503
    else:
        try:
            with factory() as db:
                db.execute(text("SELECT 1"))
        except Exception as exc:
            body.update(status="unavailable", database=f"error: {type(exc).__name__}")
            status = 503
    storage = getattr(state, "storage", None)
    try:
        body["storage"] = storage.describe() if storage is not None else None
    except Exception as exc:
        body["storage"] = {"error": type(exc).__name__}
    return JSONResponse(body, status_code=status)
