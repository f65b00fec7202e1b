"""The chat page at / in a real browser (Debian's chromium driven by Playwright), against the real
server with the built-in demo datasets and real trainer processes.

    queue         a second job waits in the queue with its place shown, Stop takes it out; the
                  first is stopped after an epoch (checkpoints stored, checkmarks) and resumed from
                  the card to the end, every event seen once across the stop and the resume
    full flow     sign up -> chat "train resnet18 on digits for 1 epoch" -> the confirmation card ->
                  Change ("image size 32, 2 epochs") -> Confirm -> a job card in the chat and in the
                  jobs panel -> the loss chart gains one point per epoch while the job runs (its
                  socket is dropped once mid-run and reconnects with after=<last seq>: every seq
                  arrives exactly once) -> completed, checkmarks on the epochs whose checkpoints are
                  stored -> drop a digit image on the test panel -> the rendered prediction and the
                  numbers -> a batch test run to completion
    datasets      create + upload a zip (upload progress bar), no navigation after creating;
                  create + upload a folder (the sub-folders are kept); the expanded row's
                  compatibility per task, snapshots, paginated gallery with boxes, polygons and
                  keypoints drawn over the images; search and sort; a second user does not see
                  the first user's private dataset (and may not delete a public one)
    languages     Korean from navigator.language, the toggle to English (kept after a reload),
                  Korean chat suggestions, the "Link Slack" item (code, or a graceful message while
                  the endpoint is missing)

Every flow ends with no console errors. Screenshots go to test-output/screenshots/.
"""

from __future__ import annotations

import base64
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from tests.live_server import API, LiveServer, events, get_job
from tests.web.browser.conftest import UI, shapes_dice_files, write_folder, write_zip

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _card(job_id: int, where: str = "#jobs-list") -> str:
    return f"{where} [data-testid=job-card][data-job-id='{job_id}']"


def _points(ui: UI, job_id: int, series: str = "train/loss") -> int:
    sel = f"{_card(job_id)} svg.chart-loss circle.pt[data-series='{series}']"
    return int(ui.page.locator(sel).count())


def _drop_file(ui: UI, selector: str, data: bytes, name: str, mime: str = "image/png") -> None:
    """Drop a file on an element as a person dragging it from the desktop would (DataTransfer)."""
    ui.page.evaluate(
        """([sel, b64, name, mime]) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const dt = new DataTransfer();
          dt.items.add(new File([bytes], name, { type: mime }));
          const target = document.querySelector(sel);
          for (const type of ['dragenter', 'dragover', 'drop']) {
            target.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
          }
        }""",
        [selector, base64.b64encode(data).decode(), name, mime],
    )


def test_full_flow_chat_train_watch_live_and_predict(ui: UI, live: LiveServer) -> None:
    page = ui.page
    ui.sign_up()
    assert page.locator("[data-testid=tab-jobs]").inner_text() == "Jobs"
    ui.shot("01-signed-up-chat")

    # the request as a person types it; the summary asks for confirmation
    ui.say("train resnet18 on digits for 1 epoch")
    card = page.locator("[data-testid=confirm-card]").last
    card.wait_for()
    text = card.inner_text()
    assert "resnet18" in text and "digits" in text and "Classification" in text
    # what the request left out is chosen from the data, with the reason (32 px digits: not 224)
    assert "Image size\t32 — images are about 32 px" in text, text
    assert "Batch size\t64 — at most 64 on a CPU" in text, text
    # Change: the input is focused with a hint, the correction is typed, a new summary comes
    card.locator("[data-testid=change]").click()
    assert page.evaluate("document.activeElement.dataset.testid") == "chat-input"
    assert "epochs" in (page.get_attribute("[data-testid=chat-input]", "placeholder") or "")
    ui.say("image size 32, 2 epochs")
    card = page.locator("[data-testid=confirm-card]").last
    card.wait_for()
    summary = card.inner_text()
    assert "Epochs\t2" in summary and "Image size\t32" in summary, summary
    assert page.locator("[data-testid=confirm-card]").first.locator("[data-testid=confirm]").is_disabled()
    ui.shot("02-confirmation")
    card.locator("[data-testid=confirm]").click()

    # a job card in the chat and the same job in the jobs panel
    page.wait_for_selector("#messages [data-testid=job-card]")
    job_id = int(page.get_attribute("#messages [data-testid=job-card]", "data-job-id") or 0)
    assert job_id > 0
    page.wait_for_selector(_card(job_id))

    # the chart gains one point per epoch, live
    page.wait_for_function(
        "sel => document.querySelectorAll(sel).length >= 1",
        arg=f"{_card(job_id)} svg.chart-loss circle.pt[data-series='train/loss']",
        timeout=300_000,
    )
    observed = [_points(ui, job_id)]
    status_at_first_point = page.get_attribute(_card(job_id), "data-status")
    label = page.locator(f"{_card(job_id)} [data-testid=job-progress-label]").inner_text()
    ui.shot("03-training-live")
    # a dropped socket reconnects with after=<last seq>
    page.evaluate(f"window.vta.dropJobSocket({job_id})")
    deadline = time.monotonic() + 300
    while page.get_attribute(_card(job_id), "data-status") != "completed":
        assert time.monotonic() < deadline, "the job did not complete in 300 s"
        assert page.get_attribute(_card(job_id), "data-status") not in ("failed", "stopped")
        observed.append(_points(ui, job_id))
        page.wait_for_timeout(100)
    page.wait_for_function(
        "sel => document.querySelectorAll(sel).length === 2",
        arg=f"{_card(job_id)} svg.chart-loss circle.pt[data-series='train/loss']",
    )
    observed.append(_points(ui, job_id))
    assert observed == sorted(observed) and observed[-1] == 2, observed
    assert observed[0] == 1 and status_at_first_point == "running", (observed, status_at_first_point)
    assert re.search(r"epoch [12]/2", label), label
    assert page.locator(f"{_card(job_id)} svg.chart-metrics circle.pt").count() >= 2

    client = live.client(headers=ui.headers())
    job = get_job(client, ui.headers(), job_id)
    assert job["status"] == "completed" and job["hyperparameters"]["image_size"] == 32
    # every event once, in order, although the socket was dropped
    evs = events(client, ui.headers(), job_id)
    page.wait_for_function(f"window.vta.jobSeqs({job_id}).length === {len(evs)}")
    assert page.evaluate(f"window.vta.jobSeqs({job_id})") == list(range(1, len(evs) + 1))

    # the per-epoch table: a checkmark exactly on the epochs whose checkpoints are stored
    stored = {int(c["epoch"]) for c in job["checkpoints"] if c.get("epoch") is not None}
    assert stored and 2 in stored
    page.wait_for_selector(f"{_card(job_id)} [data-testid=ckpt-mark]")
    rows = page.locator(f"{_card(job_id)} [data-testid=job-epochs] tbody tr")
    assert rows.count() == 2
    marked = {
        int(rows.nth(i).get_attribute("data-epoch") or 0)
        for i in range(rows.count())
        if rows.nth(i).locator("[data-testid=ckpt-mark]").count()
    }
    assert marked == stored
    progress = page.locator(f"{_card(job_id)} [data-testid=job-progress]")
    assert progress.get_attribute("data-fraction") == "1.000"
    assert page.locator(f"{_card(job_id)} [data-testid=job-stop]").is_hidden()
    ui.shot("04-job-completed")

    # the card's download buttons: each asks for a signed link and the browser downloads it (this
    # profile does not keep downloads: the same link is fetched again, without any token)
    with page.expect_download() as best_dl:
        page.locator(f"{_card(job_id)} [data-testid=job-download-best]").click()
    assert "/api/v1/dl/" in best_dl.value.url and best_dl.value.suggested_filename == f"job-{job_id}-resnet18-best.pt"
    with live.client() as anonymous:
        got = anonymous.get(best_dl.value.url)
        assert got.status_code == 200 and got.content == client.get(f"{API}/jobs/{job_id}/checkpoints/best").content
        with page.expect_download() as card_dl:
            page.locator(f"{_card(job_id)} [data-testid=job-download-model-card]").click()
        assert card_dl.value.suggested_filename == f"job-{job_id}-resnet18-model-card.json"
        model_card = json.loads(anonymous.get(card_dl.value.url).content)
    assert model_card["job_id"] == job_id and model_card["preprocessing"]["input_size"] == 32

    # drop a digit image on the trained job
    page.locator(f"{_card(job_id)} [data-testid=job-test]").click()
    page.wait_for_selector("[data-testid=panel-test]:visible")
    page.wait_for_function(f"document.querySelector('#test-job').value === '{job_id}'")
    digits = next(d for d in client.get(f"{API}/datasets").json() if d["name"] == "digits")
    item = client.get(f"{API}/datasets/{digits['id']}/images", params={"limit": 1, "offset": 3}).json()["items"][0]
    image = client.get(f"{API}/datasets/{digits['id']}/images/{item['id']}/file").content
    _drop_file(ui, "[data-testid=dropzone]", image, "digit.png")
    page.wait_for_selector("[data-testid=predicted-label]", timeout=180_000)
    page.wait_for_function("document.querySelector('[data-testid=rendered]').naturalWidth > 0")
    predicted = page.inner_text("[data-testid=predicted-label]")
    assert predicted in digits["class_names"], predicted
    assert page.locator("[data-testid=prediction-row]").count() == 5  # top-5 with confidences
    assert "%" in page.locator("[data-testid=prediction-row]").first.inner_text()
    assert "Inference:" in page.inner_text("[data-testid=prediction-numbers]")
    ui.shot("05-prediction")

    # a batch test run on the dataset, watched to the end
    page.select_option("[data-testid=test-dataset]", value=digits["id"])
    page.click("[data-testid=test-run-start]")
    page.wait_for_selector("[data-testid=test-run-status][data-status=completed]", timeout=300_000)
    assert "accuracy_top1" in page.inner_text("[data-testid=test-run]")
    ui.shot("06-test-run")

    # export it as TorchScript from the page: the record shows its parity with PyTorch and downloads
    formats = page.locator("[data-testid=export-format] option").all_inner_texts()
    assert formats == ["ONNX", "TorchScript", "OpenVINO (zip)"]
    page.select_option("[data-testid=export-format]", value="torchscript")
    page.click("[data-testid=export-start]")
    row = "[data-testid=export-row][data-format=torchscript][data-status=completed]"
    page.wait_for_selector(row, timeout=180_000)
    assert page.get_attribute(f"{row} [data-testid=export-verdict]", "data-ok") == "true"
    assert "max abs diff" in page.inner_text(f"{row} [data-testid=export-parity]")
    with page.expect_download() as ts_dl:
        page.click(f"{row} [data-testid=export-download]")
    assert "/api/v1/dl/" in ts_dl.value.url and ts_dl.value.suggested_filename == f"job-{job_id}-best.torchscript"
    ui.shot("07-export")
    client.close()
    ui.assert_no_console_errors()


def _wait_status(ui: UI, job_id: int, statuses: tuple[str, ...], timeout_s: float = 300) -> str:
    ui.page.wait_for_function(
        "([sel, want]) => want.includes(document.querySelector(sel)?.dataset.status)",
        arg=[_card(job_id), list(statuses)],
        timeout=timeout_s * 1000,
    )
    return str(ui.page.get_attribute(_card(job_id), "data-status"))


def test_queue_position_stop_and_resume_from_the_jobs_panel(ui: UI, live: LiveServer) -> None:
    page = ui.page
    ui.sign_up()
    client = live.client(headers=ui.headers())
    intent = {"model_name": "resnet18", "dataset": "digits", "image_size": 32}
    first = client.post(f"{API}/jobs", json={"intent": {**intent, "epochs": 3}})
    second = client.post(f"{API}/jobs", json={"intent": {**intent, "epochs": 1}})
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    a, b = int(first.json()["id"]), int(second.json()["id"])
    page.click("#jobs-refresh")

    # the second job waits in the queue (one job slot): its place is shown; Stop takes it out
    _wait_status(ui, b, ("queued",))
    queue = page.locator(f"{_card(b)} [data-testid=job-queue]")
    queue.wait_for()
    assert queue.inner_text() == "queue #1"
    page.locator(f"{_card(b)} [data-testid=job-stop]").click()
    assert _wait_status(ui, b, ("stopped",)) == "stopped"
    assert page.locator(f"{_card(b)} [data-testid=job-resume]").is_hidden()  # nothing stored to resume from

    # the first job: stopped after its first epoch, its checkpoints stored, then resumed to the end
    page.wait_for_function(
        "sel => document.querySelectorAll(sel).length >= 1",
        arg=f"{_card(a)} svg.chart-loss circle.pt[data-series='train/loss']",
        timeout=300_000,
    )
    page.locator(f"{_card(a)} [data-testid=job-stop]").click()
    assert _wait_status(ui, a, ("stopped", "completed"), 300) == "stopped"
    page.wait_for_selector(f"{_card(a)} [data-testid=ckpt-mark]")
    resume = page.locator(f"{_card(a)} [data-testid=job-resume]")
    resume.wait_for()
    stopped_at = _points(ui, a)
    assert 1 <= stopped_at < 3
    ui.shot("11-job-stopped")
    resume.click()
    _wait_status(ui, a, ("queued", "resuming", "preparing", "running", "completed"))
    assert _wait_status(ui, a, ("completed", "failed"), 300) == "completed"
    page.wait_for_function(
        "sel => document.querySelectorAll(sel).length === 3",
        arg=f"{_card(a)} svg.chart-loss circle.pt[data-series='train/loss']",
    )
    evs = events(client, ui.headers(), a)
    page.wait_for_function(f"window.vta.jobSeqs({a}).length === {len(evs)}")
    assert page.evaluate(f"window.vta.jobSeqs({a})") == list(range(1, len(evs) + 1))
    # the checkmarks moved with best.pt/last.pt to the epochs the finished run stored them at
    stored = {int(c["epoch"]) for c in get_job(client, ui.headers(), a)["checkpoints"] if c.get("epoch")}
    page.wait_for_function(
        "([sel, want]) => [...document.querySelectorAll(sel)].map((r) => r.dataset.epoch).join() === want",
        arg=[
            f"{_card(a)} [data-testid=job-epochs] tbody tr:has([data-testid=ckpt-mark])",
            ",".join(map(str, sorted(stored))),
        ],
    )
    ui.shot("12-job-resumed-completed")
    client.close()
    ui.assert_no_console_errors()


def test_datasets_upload_gallery_and_privacy(ui_factory: Any, live: LiveServer, tmp_path: Path) -> None:
    owner: UI = ui_factory()
    page = owner.page
    owner_email = owner.sign_up()
    owner.tab("datasets")
    page.wait_for_selector("[data-testid=ds-row][data-name=digits]")
    demo_rows = page.locator("[data-testid=ds-row]").count()

    # create + upload a zip: progress bar, then a notice; nothing opens, nothing navigates
    zip_name = "private-shapes"
    zip_path = write_zip(tmp_path / "shapes.zip", shapes_dice_files(14, zip_name), top="shapes/")
    page.click("[data-testid=ds-new]")
    page.fill("[data-testid=ds-name]", zip_name)
    page.check("[data-testid=ds-source-zip]")
    page.set_input_files("[data-testid=ds-zip]", str(zip_path))
    page.evaluate(
        """() => {
          window.__fractions = [];
          const bar = document.querySelector('[data-testid=ds-progress]');
          new MutationObserver(() => window.__fractions.push(Number(bar.dataset.fraction)))
            .observe(bar, { attributes: true, attributeFilter: ['data-fraction'] });
        }"""
    )
    page.click("[data-testid=ds-submit]")
    page.wait_for_selector("[data-testid=ds-notice]:visible")
    assert "14 images" in page.inner_text("[data-testid=ds-notice]")
    fractions = page.evaluate("window.__fractions")
    assert fractions and max(fractions) == 1.0, fractions
    assert page.locator("[data-testid=ds-create]").is_hidden()
    assert page.evaluate("location.hash") == "#datasets"
    assert page.locator("[data-testid=panel-datasets]").is_visible()
    row = page.locator(f"[data-testid=ds-row][data-name='{zip_name}']")
    row.wait_for()
    assert row.get_attribute("aria-expanded") == "false"
    assert page.locator("[data-testid=ds-detail]").count() == 0

    # create + upload a folder, public: the sub-folders are kept
    folder_name = "public-shapes"
    folder = write_folder(tmp_path / "upload" / "my-folder", shapes_dice_files(4, folder_name))
    page.click("[data-testid=ds-new]")
    page.fill("[data-testid=ds-name]", folder_name)
    page.select_option("[data-testid=ds-visibility]", "public")
    page.check("[data-testid=ds-source-folder]")
    page.set_input_files("[data-testid=ds-folder]", str(folder))
    page.click("[data-testid=ds-submit]")
    page.wait_for_function(
        "n => document.querySelector('[data-testid=ds-notice]').textContent.includes(n)", arg=folder_name
    )
    page.wait_for_selector(f"[data-testid=ds-row][data-name='{folder_name}']")
    assert page.locator("[data-testid=ds-row]").count() == demo_rows + 2
    client = live.client(headers=owner.headers())
    mine = {d["name"]: d for d in client.get(f"{API}/datasets", params={"mine": "true"}).json()}
    files = client.get(f"{API}/datasets/{mine[folder_name]['id']}/images").json()["items"]
    assert sorted(f["file_name"] for f in files) == ["train/001.png", "train/002.png", "val/000.png", "val/003.png"]

    # the zip dataset's row: compatibility, snapshots, the gallery with its annotations drawn
    row.click()
    detail = page.locator(f"[data-testid=ds-detail][data-dataset-id='{mine[zip_name]['id']}']")
    detail.wait_for()
    compat = detail.locator("[data-testid=ds-compat]")
    assert compat.locator("[data-task=object_detection]").get_attribute("data-status") == "native"
    assert compat.locator("[data-task=instance_segmentation]").get_attribute("data-status") in ("native", "convertible")
    assert compat.locator("[data-task=pose_estimation]").get_attribute("data-status") == "native"
    gallery = detail.locator("[data-testid=gallery]")
    page.wait_for_function(
        """sel => { const imgs = document.querySelectorAll(sel + ' img');
                    return imgs.length === 12 && [...imgs].every((i) => i.complete && i.naturalWidth > 0); }""",
        arg=f"[data-testid=ds-detail][data-dataset-id='{mine[zip_name]['id']}'] [data-testid=gallery]",
    )
    assert gallery.locator("rect.ann-box").count() >= 12
    assert gallery.locator("polygon.ann-polygon").count() == 12
    assert gallery.locator("circle.ann-kp").count() == 36
    assert detail.locator("[data-testid=gallery-range]").inner_text() == "1–12 of 14"
    detail.locator("[data-testid=ds-snapshots]").get_by_text("No snapshots yet").wait_for()
    detail.get_by_role("button", name="Create snapshot").click()
    detail.locator("[data-testid=snapshot]").first.wait_for()
    owner.shot("07-dataset-gallery")
    detail.locator("[data-testid=gallery-next]").click()
    page.wait_for_function(
        "sel => document.querySelector(sel).textContent === '13–14 of 14'",
        arg=f"[data-testid=ds-detail][data-dataset-id='{mine[zip_name]['id']}'] [data-testid=gallery-range]",
    )
    assert detail.locator("[data-testid=gallery-item]").count() == 2

    # search and sort
    page.fill("[data-testid=ds-search]", "shapes")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=ds-row]').length === 3")
    names = page.locator("[data-testid=ds-row]").evaluate_all("rows => rows.map((r) => r.dataset.name)")
    assert set(names) == {zip_name, folder_name, "shapes-demo"}
    page.click("th[data-sort=name]")
    page.wait_for_selector("th[data-sort=name].sorted-asc")
    page.wait_for_function(
        "want => [...document.querySelectorAll('[data-testid=ds-row]')].map((r) => r.dataset.name).join() === want",
        arg=",".join(sorted(names)),
    )
    page.fill("[data-testid=ds-search]", "")
    page.wait_for_function(f"() => document.querySelectorAll('[data-testid=ds-row]').length === {demo_rows + 2}")
    owner.assert_no_console_errors()
    owner.sign_out()

    # a second user: not the private dataset; the public one, without owner actions
    other: UI = ui_factory()
    other.sign_up()
    other.tab("datasets")
    page2 = other.page
    page2.wait_for_selector(f"[data-testid=ds-row][data-name='{folder_name}']")
    assert page2.locator(f"[data-testid=ds-row][data-name='{zip_name}']").count() == 0
    page2.fill("[data-testid=ds-search]", zip_name)
    page2.wait_for_function("() => document.querySelectorAll('[data-testid=ds-row]').length === 0")
    assert "No datasets match" in page2.inner_text("[data-testid=ds-table]")
    page2.fill("[data-testid=ds-search]", "")
    shared = page2.locator(f"[data-testid=ds-row][data-name='{folder_name}']")
    shared.wait_for()
    shared.click()
    detail2 = page2.locator("[data-testid=ds-detail]")
    detail2.wait_for()
    detail2.locator("[data-testid=gallery-item]").first.wait_for()
    assert detail2.locator("[data-testid=ds-delete]").count() == 0
    other.shot("08-second-user-datasets")
    hidden = client.get(f"{API}/datasets/{mine[zip_name]['id']}", headers=other.headers())
    assert hidden.status_code == 404
    other.assert_no_console_errors()

    # the owner signs in again and deletes the public dataset (a second click confirms)
    owner.sign_in(owner_email)
    owner.tab("datasets")
    public_row = page.locator(f"[data-testid=ds-row][data-name='{folder_name}']")
    public_row.click()
    delete = page.locator(
        f"[data-testid=ds-detail][data-dataset-id='{mine[folder_name]['id']}'] [data-testid=ds-delete]"
    )
    delete.click()
    assert delete.inner_text() == "Really delete?"
    assert public_row.count() == 1
    delete.click()
    public_row.wait_for(state="detached")
    assert client.get(f"{API}/datasets/{mine[folder_name]['id']}").status_code == 404
    client.close()
    owner.assert_no_console_errors()


def test_korean_ui_language_toggle_and_slack_link(ui_factory: Any, live: LiveServer) -> None:
    ui: UI = ui_factory(locale="ko-KR")
    page = ui.page
    assert page.inner_text("#auth-title") == "로그인"
    assert page.evaluate("document.documentElement.lang") == "ko"
    ui.sign_up()
    assert page.inner_text("[data-testid=tab-jobs]") == "작업"
    assert "학습" in page.inner_text("[data-testid=welcome]")

    # a Korean question answered with clickable suggestions (the datasets)
    ui.say("내 데이터셋 보여줘")
    chips = page.locator("[data-testid=msg-agent]").last.locator("[data-testid=suggestion]")
    values = chips.evaluate_all("cs => cs.map((c) => c.dataset.value)")
    assert "digits" in values, values
    before = ui.replies()
    chips.filter(has_text="digits").first.click()
    ui.wait_reply(before)
    page.wait_for_selector("[data-testid=msg-user] >> text=digits")
    ui.shot("09-korean-chat")

    # "Link Slack" in the user menu: the code and instructions, or a clear message without the endpoint
    page.click("[data-testid=user-button]")
    page.click("[data-testid=slack-link]")
    page.wait_for_selector("#modal:visible")
    page.wait_for_selector("[data-testid=slack-code], [data-testid=slack-message]")
    if page.locator("[data-testid=slack-code]").count():
        assert page.inner_text("[data-testid=slack-code]").strip()
    else:
        assert page.inner_text("[data-testid=slack-message]").strip()
    ui.shot("10-slack-link")
    page.click("#modal-close")
    page.wait_for_selector("#modal", state="hidden")

    # the toggle switches to English, and the choice survives a reload
    page.click("[data-testid=lang-toggle]")
    assert page.inner_text("[data-testid=tab-jobs]") == "Jobs"
    page.reload()
    page.wait_for_selector("[data-testid=chat-input]:visible")
    assert page.inner_text("[data-testid=tab-datasets]") == "Datasets"
    page.wait_for_selector("[data-testid=msg-user] >> text=digits")  # the chat came back with the session
    ui.assert_no_console_errors(allow=("/api/v1/slack/link",))  # a 404 while that endpoint does not exist
