"""`GET /metrics`: Prometheus text exposition of this app's registry (`tools.telemetry`).

Unauthenticated, like most Prometheus targets: it exposes counts only (jobs per status, queue
length, events ingested, open WebSocket/SSE connections), no names or ids. Restrict it at the
network edge when that matters.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from tools.telemetry import CONTENT_TYPE, Telemetry

router = APIRouter(tags=["metrics"])


def get_telemetry(state: object) -> Telemetry:
    """The app's metrics registry, made on first use."""
    telemetry: Telemetry | None = getattr(state, "telemetry", None)
    if telemetry is None:
        telemetry = Telemetry()
        state.telemetry = telemetry  # type: ignore[attr-defined]
    return telemetry


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    """This server's metrics in the Prometheus text format: counts only (jobs per status, queue length,
    events ingested, open streams), no names or ids. No sign-in needed."""
    telemetry = get_telemetry(request.app.state)
    body = await run_in_threadpool(telemetry.render)  # the job gauges query the database
    return Response(content=body, media_type=CONTENT_TYPE)
