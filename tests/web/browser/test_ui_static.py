"""The page and its assets as plain HTTP (no browser): served from the `web` package, nothing from
another host, revalidation with ETags, nothing outside web/static/, the page's server config. The
script is ES modules under web/static/js/ (main.js loaded as `<script type="module">`), each importing
only its siblings by relative path, none over ~600 lines."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.conftest import make_settings
from web.routes.ui import STATIC_DIR, mlflow_ui_url


def test_the_page_and_its_assets_come_from_the_package(client: TestClient) -> None:
    index = client.get("/")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/js/main.js"></script>' in index.text
    assert "/static/app.css" in index.text
    assert index.headers["cache-control"] == "no-cache" and index.headers["etag"]
    # nothing from another host: no CDN, no web fonts, no remote scripts
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", index.text)
    css = client.get("/static/app.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert not re.search(r"""@import|url\(\s*['"]?(?:https?:)?//""", css.text)
    remote = r"""fetch\(\s*['"`](?:https?:)?//|importScripts|\.open\(\s*['"][A-Z]+['"],\s*['"]https?"""
    modules = sorted(p.name for p in (STATIC_DIR / "js").glob("*.js"))
    assert "main.js" in modules and len(modules) > 5
    for name in modules:
        js = client.get(f"/static/js/{name}")
        # a module script must come with a JavaScript MIME type, or the browser refuses it
        assert js.status_code == 200 and "javascript" in js.headers["content-type"], name
        assert not re.search(remote, js.text), name
        assert len(js.text.splitlines()) <= 600, f"{name} has grown past ~600 lines: split it"
        for spec in re.findall(r"""^\s*(?:import|export)\b[^'"]*?\bfrom\s+['"]([^'"]+)['"]""", js.text, re.M):
            # only sibling modules, by relative path: nothing from a CDN or a bare package name
            assert re.fullmatch(r"\./[a-z0-9_-]+\.js", spec), (name, spec)
            assert spec[2:] in modules, (name, spec)
        assert not re.search(r"""\bimport\s*\(""", js.text), name  # no dynamic imports either
    icon = client.get("/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert {p.name for p in STATIC_DIR.iterdir()} >= {"index.html", "js", "app.css", "favicon.svg"}


def test_unchanged_assets_answer_304(client: TestClient) -> None:
    first = client.get("/static/js/main.js")
    again = client.get("/static/js/main.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and not again.content
    page = client.get("/", headers={"If-None-Match": f'"other", {client.get("/").headers["etag"]}'})
    assert page.status_code == 304


def test_nothing_outside_the_static_folder_is_served(client: TestClient) -> None:
    for bad in (
        "/static/../main.py",
        "/static/%2e%2e/config.py",
        "/static/..%2fmain.py",
        "/static/.hidden",
        "/static/nope.js",
        "/static/",
        "/static//etc/passwd",
        "/static/%5c..%5cmain.py",
    ):
        assert client.get(bad).status_code == 404, bad


def test_ui_config_links_mlflow_only_when_it_has_a_web_ui(client: TestClient, tmp_path: Path) -> None:
    body = client.get("/api/v1/ui/config").json()
    assert body["mlflow_ui_url"] is None and body["version"]
    db = f"sqlite:///{tmp_path / 'x.db'}"
    assert mlflow_ui_url(make_settings(db, tmp_path, mlflow_tracking_uri="http://mlflow:5000/")) == "http://mlflow:5000"
    assert mlflow_ui_url(make_settings(db, tmp_path, mlflow_tracking_uri="sqlite:///m.db")) is None
    assert mlflow_ui_url(make_settings(db, tmp_path)) is None
