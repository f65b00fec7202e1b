"""Fixtures for the browser tests: the real server under uvicorn, Debian's chromium driven by
Playwright for Python, and a small `UI` helper over one page.

    live          one real server per module (SQLite, built-in demo datasets, one job slot, real
                  trainer subprocesses calling back over HTTP)
    chromium      the chromium executable: /usr/bin/chromium (or $VTA_CHROMIUM). Missing FAILS the
                  test with the command that installs it (`make test` installs it: the Makefile's
                  `browser` target); browsers are never downloaded
    ui            a fresh browser profile (new user-data-dir), one page on the live server, every
                  console error and uncaught page error collected (`ui.errors`); `ui.shot(name)`
                  saves a screenshot under test-output/screenshots/ at the repository root

Headless, `--no-sandbox` (CI runs as root), and no background networking of any kind: the page
itself must not need the network either (no CDN), which the console-error check would notice.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DEFAULT_PASSWORD, make_settings
from tests.live_server import LiveServer, free_port

REPO_ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = REPO_ROOT / "test-output" / "screenshots"
CHROMIUM = os.environ.get("VTA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
DEFAULT_TIMEOUT_MS = 30_000


@pytest.fixture(scope="session")
def chromium() -> str:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"chromium is not installed at {CHROMIUM}: the browser tests need Debian's chromium "
            "(`make test` installs it; by hand: `apt-get install -y chromium`, or set VTA_CHROMIUM)",
            pytrace=False,
        )
    return CHROMIUM


@pytest.fixture(scope="module")
def playwright_driver(chromium: str) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        pytest.fail(f"playwright is not installed ({exc}): pip install -e '.[dev]'", pytrace=False)
    pw = sync_playwright().start()
    try:
        yield pw
    finally:
        pw.stop()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp("browser-server")
    port = free_port()
    settings = make_settings(
        f"sqlite:///{tmp / 'app.db'}",
        tmp,
        create_demo_datasets=True,
        callback_base_url=f"http://127.0.0.1:{port}",
        max_concurrent_jobs=1,
    )
    from web.main import create_app

    with LiveServer(create_app(settings), port) as server:
        yield server
        server.app.state.supervisor.kill_all()


class UI:
    """One browser page on the live server, with its console errors collected."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        self.started = time.monotonic()
        page.on("console", self._on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _on_console(self, msg: Any) -> None:
        if msg.type == "error":
            url = (msg.location or {}).get("url", "")
            self.errors.append(f"console.error: {msg.text} @ {url}")

    # ------------------------------------------------------------------ navigation
    def open(self) -> None:
        self.page.goto(self.base_url + "/")
        self.page.wait_for_selector("[data-testid=auth-form]:visible, [data-testid=chat-input]:visible")

    def sign_up(self, email: str | None = None, password: str = DEFAULT_PASSWORD) -> str:
        email = email or f"ui-{uuid.uuid4().hex[:8]}@example.com"
        page = self.page
        page.wait_for_selector("[data-testid=auth-form]:visible")
        page.click("[data-testid=auth-switch]")
        page.fill("[data-testid=auth-email]", email)
        page.fill("[data-testid=auth-password]", password)
        page.click("[data-testid=auth-submit]")
        page.wait_for_selector("[data-testid=chat-input]:visible")
        page.wait_for_selector("[data-testid=welcome]")
        return email

    def sign_in(self, email: str, password: str = DEFAULT_PASSWORD) -> None:
        page = self.page
        page.wait_for_selector("[data-testid=auth-form]:visible")
        assert page.inner_text("[data-testid=auth-submit]") in ("Sign in", "로그인")
        page.fill("[data-testid=auth-email]", email)
        page.fill("[data-testid=auth-password]", password)
        page.click("[data-testid=auth-submit]")
        page.wait_for_selector("[data-testid=chat-input]:visible")

    def sign_out(self) -> None:
        self.page.click("[data-testid=user-button]")
        self.page.click("[data-testid=sign-out]")
        self.page.wait_for_selector("[data-testid=auth-form]:visible")

    def tab(self, name: str) -> None:
        self.page.click(f"[data-testid=tab-{name}]")
        self.page.wait_for_selector(f"[data-testid=panel-{name}]:visible")

    def token(self) -> str:
        token = self.page.evaluate("localStorage.getItem('vta.token')")
        assert token, "the page keeps no token"
        return str(token)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def replies(self) -> int:
        return int(self.page.locator("[data-testid=msg-agent]").count())

    def wait_reply(self, before: int) -> None:
        """Wait until the agent answered after `before` answers were shown."""
        self.page.wait_for_function(
            "n => document.querySelectorAll('[data-testid=msg-agent]').length > n"
            " && !document.querySelector('[data-testid=thinking]')",
            arg=before,
        )

    def say(self, message: str) -> None:
        """Type a chat message and send it with Enter; waits for the agent's answer."""
        before = self.replies()
        self.page.fill("[data-testid=chat-input]", message)
        self.page.press("[data-testid=chat-input]", "Enter")
        self.wait_reply(before)

    def last_reply(self) -> str:
        return str(self.page.locator("[data-testid=msg-agent]").last.locator(".text").inner_text())

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path))
        print(f"screenshot {path} ({time.monotonic() - self.started:.1f} s into the test)")
        return path

    def assert_no_console_errors(self, allow: tuple[str, ...] = ()) -> None:
        errors = [e for e in self.errors if not any(a in e for a in allow)]
        assert not errors, "console errors:\n" + "\n".join(errors)


def _context(playwright_driver: Any, chromium: str, profile: Path, locale: str) -> Any:
    context = playwright_driver.chromium.launch_persistent_context(
        str(profile),
        executable_path=chromium,
        headless=True,
        args=CHROMIUM_ARGS,
        locale=locale,
        viewport={"width": 1400, "height": 900},
        accept_downloads=False,
    )
    context.set_default_timeout(DEFAULT_TIMEOUT_MS)
    return context


@pytest.fixture
def ui_factory(playwright_driver: Any, chromium: str, live: LiveServer, tmp_path: Path) -> Iterator[Any]:
    """`ui_factory(locale="en-US") -> UI`: a new browser (fresh profile) per call."""
    contexts: list[Any] = []

    def make(locale: str = "en-US") -> UI:
        profile = tmp_path / f"profile-{len(contexts)}"
        context = _context(playwright_driver, chromium, profile, locale)
        contexts.append(context)
        page = context.pages[0] if context.pages else context.new_page()
        ui = UI(page, live.url)
        ui.open()
        return ui

    yield make
    for context in contexts:
        context.close()
    for i in range(len(contexts)):
        shutil.rmtree(tmp_path / f"profile-{i}", ignore_errors=True)


@pytest.fixture
def ui(ui_factory: Any) -> UI:
    made: UI = ui_factory()
    return made


# ------------------------------------------------------------------------------- test data


def _shape_image(i: int, w: int = 96, h: int = 72) -> tuple[bytes, dict[str, list[Any]]]:
    """A PNG with a box, a triangle (polygon) and a 3-keypoint stick figure, and their labels."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (w, h), (235, 238, 245))
    draw = ImageDraw.Draw(img)
    dx = i % 5
    box = [6 + dx, 8, 30, 26]  # x, y, w, h
    draw.rectangle([box[0], box[1], box[0] + box[2], box[1] + box[3]], fill=(47, 91, 234))
    tri = [44 + dx, 60, 62 + dx, 20, 80 + dx, 60]
    draw.polygon(list(zip(tri[0::2], tri[1::2], strict=True)), fill=(232, 89, 12))
    kps = [20 + dx, 44, 2, 12 + dx, 62, 2, 28 + dx, 62, 2]
    draw.line([(kps[0], kps[1]), (kps[3], kps[4])], fill=(18, 128, 92), width=2)
    draw.line([(kps[0], kps[1]), (kps[6], kps[7])], fill=(18, 128, 92), width=2)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    labels = {"box": box, "polygon": tri, "keypoints": kps}
    return buf.getvalue(), labels


def shapes_dice_files(n: int = 14, name: str = "ui-shapes") -> dict[str, bytes]:
    """A DICE v1 folder ({relative path: bytes}) with boxes, polygons and keypoints, the images in
    two sub-folders (`images/train/`, `images/val/`)."""
    files: dict[str, bytes] = {}
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    aid = 0
    for i in range(n):
        data, lab = _shape_image(i)
        rel = f"{'train' if i % 3 else 'val'}/{i:03d}.png"
        files[f"images/{rel}"] = data
        images.append({"id": i + 1, "file_name": rel, "width": 96, "height": 72})
        tri = lab["polygon"]
        xs, ys = tri[0::2], tri[1::2]
        kps = lab["keypoints"]
        kx, ky = kps[0::3], kps[1::3]
        for ann in (
            {"category_id": 1, "bbox": lab["box"], "area": float(lab["box"][2] * lab["box"][3])},
            {
                "category_id": 2,
                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                "segmentation": [tri],
                "area": 720.0,
            },
            {
                "category_id": 3,
                "bbox": [min(kx) - 2, min(ky) - 2, max(kx) - min(kx) + 4, max(ky) - min(ky) + 4],
                "keypoints": kps,
                "num_keypoints": 3,
                "area": 400.0,
            },
        ):
            aid += 1
            annotations.append({"id": aid, "image_id": i + 1, "iscrowd": 0, **ann})
    doc = {
        "format_version": "1.0",
        "dataset": {"name": name, "description": "boxes, polygons and keypoints for the browser tests"},
        "categories": [
            {"id": 1, "name": "box"},
            {"id": 2, "name": "triangle"},
            {"id": 3, "name": "stick", "keypoints": ["head", "left_foot", "right_foot"], "skeleton": [[1, 2], [1, 3]]},
        ],
        "images": images,
        "annotations": annotations,
    }
    files["annotations.json"] = json.dumps(doc).encode()
    return files


def write_zip(path: Path, files: dict[str, bytes], top: str = "") -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel, data in files.items():
            zf.writestr(f"{top}{rel}", data)
    return path


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root
