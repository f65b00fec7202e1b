"""The chat web page: `GET /` (the single page), `GET /static/{path}` (its assets), and
`GET /api/v1/ui/config` (what the page needs to know about this server).

The page is plain HTML, CSS and JavaScript shipped inside the `web` package (`web/static/`, listed
as package data so an installed wheel serves it too): no build step, no CDN, nothing fetched from
the network at run time. It talks to the same REST API and WebSockets as every other client, with
the bearer token it keeps in `localStorage`.

Assets are answered with `Cache-Control: no-cache` and an ETag (the browser revalidates and gets a
304 when nothing changed), so a new server version is picked up by a reload. Only files under
`web/static/` are served; any other path (`..`, absolute, hidden files) answers 404.
"""

from __future__ import annotations

import hashlib
import mimetypes
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

router = APIRouter(tags=["ui"])

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".json": "application/json",
}


@lru_cache(maxsize=64)
def _load(path: Path, _mtime_ns: int, _size: int) -> tuple[bytes, str]:
    """The file's bytes and a strong ETag. The modification time and size are unused but part of
    the cache key, so a changed file is read again."""
    data = path.read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _asset(name: str) -> Path | None:
    """The file `name` names under STATIC_DIR, or None (outside it, hidden, missing, not a file)."""
    if not name or "\\" in name or "\x00" in name:
        return None
    parts = name.split("/")
    if any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        return None
    path = (STATIC_DIR / name).resolve()
    if STATIC_DIR not in path.parents or not path.is_file():
        return None
    return path


def _serve(path: Path, if_none_match: str | None) -> Response:
    st = path.stat()
    data, etag = _load(path, st.st_mtime_ns, st.st_size)
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
    if if_none_match and etag in [t.strip() for t in if_none_match.split(",")]:
        return Response(status_code=304, headers=headers)
    media = _TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Response(content=data, media_type=media, headers=headers)


def _not_found() -> Response:
    return Response(content=b'{"detail":"Not Found"}', status_code=404, media_type="application/json")


@router.get("/", include_in_schema=False)
def index(if_none_match: str | None = Header(default=None)) -> Response:
    """The chat page (sign in, chat, jobs, datasets, tests)."""
    path = _asset("index.html")
    if path is None:
        return _not_found()
    return _serve(path, if_none_match)


@router.get("/static/{name:path}", include_in_schema=False)
def static_file(name: str, if_none_match: str | None = Header(default=None)) -> Response:
    """A file of the web page (script, style sheet, image) with an ETag for caching; 404 for a missing,
    hidden or outside path."""
    path = _asset(name)
    if path is None:
        return _not_found()
    return _serve(path, if_none_match)


def mlflow_ui_url(settings: Any) -> str | None:
    """Where the page links a job's MLflow run: `MLFLOW_UI_URL` when the settings have it, else the
    tracking URI when it is an http(s) server (a file or SQLite store has no web UI)."""
    explicit = getattr(settings, "mlflow_ui_url", None)
    uri = explicit or getattr(settings, "mlflow_tracking_uri", None)
    if isinstance(uri, str) and uri.startswith(("http://", "https://")):
        return uri.rstrip("/")
    return None


@router.get("/api/v1/ui/config", summary="What the web page needs to know about this server")
def ui_config(request: Request) -> dict[str, Any]:
    """`{"version", "mlflow_ui_url"}`: a job's run is linked as `<mlflow_ui_url>/#/runs/<run id>`
    (null: no MLflow web UI configured)."""
    settings = request.app.state.settings
    return {"version": request.app.version, "mlflow_ui_url": mlflow_ui_url(settings)}
