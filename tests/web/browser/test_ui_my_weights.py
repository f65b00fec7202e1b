"""The page's 'My weights' card (Datasets panel): upload a weights file for a model, see it listed
with its sha256, see a refused file's reason, delete it; a job started from it shows "from your
weights NAME (sha ...)" on its card."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.live_server import API, LiveServer
from tests.tools.test_weights import small_safetensors
from tests.web.browser.conftest import UI


def test_my_weights_upload_list_error_and_delete(ui_factory: Any, live: LiveServer, tmp_path: Path) -> None:
    ui: UI = ui_factory()
    page = ui.page
    ui.sign_up()
    ui.tab("datasets")
    page.wait_for_selector("[data-testid=mw-list] p")  # "You have not uploaded any weights."
    good = tmp_path / "my-r18.safetensors"
    good.write_bytes(small_safetensors())
    page.fill("[data-testid=mw-model]", "resnet18")
    page.set_input_files("[data-testid=mw-file]", str(good))
    page.click("[data-testid=mw-submit]")
    item = page.locator("[data-testid=mw-item]")
    item.wait_for()
    text = item.inner_text()
    assert "my-r18.safetensors" in text and "resnet18" in text and "sha " in text

    client = live.client(headers=ui.headers())
    [w] = client.get(f"{API}/weights/mine").json()
    assert w["name"] == "my-r18.safetensors" and w["sha256"][:12] in text

    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not weights at all, just text")
    page.set_input_files("[data-testid=mw-file]", str(bad))
    page.click("[data-testid=mw-submit]")
    page.wait_for_function("() => document.querySelector('#mw-error').textContent.includes('file:')")
    assert page.locator("[data-testid=mw-item]").count() == 1

    item.locator("button").click()
    page.wait_for_selector("[data-testid=mw-item]", state="detached")
    assert client.get(f"{API}/weights/mine").json() == []
    ui.assert_no_console_errors(allow=("422",))
