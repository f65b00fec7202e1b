"""Fine-tuning from an earlier job transfers what it learned: real CPU training on sklearn digits.

Job 1 trains resnet18 (timm, 32 px) on digits 0-4. Job 2 starts from job 1's best.pt (the runner
downloads it from the internal store by the key the spec carries) and trains one epoch on a small
set of digits 5-9; job 3 trains the same epoch on the same data from scratch with the same seed.
The head is rebuilt (other classes), everything else is loaded, and the fine-tuned model is clearly
more accurate.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.trainer_runtime._demo_fixtures import demo_datasets_root, demo_digits_dir  # noqa: F401
from tests.trainer_runtime.fake_adapter import make_spec, write_spec
from trainer_runtime.runner import EXIT_COMPLETED
from trainer_runtime.spec import load_spec
from trainer_runtime.storage import DualStorageClient, checkpoint_key

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

# Measured with these settings, seed 0 and 2 CPU threads (validation top-1): source 0.92 on 0-4,
# fine-tuned 0.68 on 5-9, from scratch 0.20 (chance) after the same epoch; asserted with a margin
# of about half that gap.
MARGIN = 0.25
SOURCE_IMAGES = 500  # digits 0-4 (of ~900), 2 epochs: ~0.9 top-1
SOURCE_EPOCHS = 2
TARGET_IMAGES = 300  # digits 5-9: a small target set, where transfer matters
TARGET_BATCH = 16  # one epoch = ~15 optimizer steps


def _publish_subset(
    storage: DualStorageClient, src: Path, dataset_id: str, digits: set[int], limit: int | None
) -> None:
    doc = json.loads((src / "annotations.json").read_text(encoding="utf-8"))
    names = {c["id"]: c["name"] for c in doc["categories"]}
    keep_cats = [c for c in doc["categories"] if int(c["name"]) in digits]
    cat_ids = {c["id"] for c in keep_cats}
    anns = [a for a in doc["annotations"] if a["category_id"] in cat_ids]
    if limit is not None:
        anns = anns[:limit]
    image_ids = {a["image_id"] for a in anns}
    images = [i for i in doc["images"] if i["id"] in image_ids]
    for img in images:
        storage.upload_dataset_file(dataset_id, img["file_name"], src / "images" / img["file_name"])
    sub = {**doc, "categories": keep_cats, "images": images, "annotations": anns}
    assert {names[a["category_id"]] for a in anns} == {str(d) for d in digits}
    storage.upload_annotations(dataset_id, json.dumps(sub).encode())


def _run(spec: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    """The real trainer entry (`python -m trainer_runtime --spec`) in its own process, with the
    CPU thread count pinned: a few epochs on tiny data land elsewhere with another number of
    threads (another summation order), and an in-process Ultralytics run earlier in the session
    sets OMP_NUM_THREADS=1 in os.environ (with 1 thread: source 0.69, fine-tuned 0.28, scratch
    0.20 - the margin measured below is for 2 threads)."""
    path = write_spec(Path(spec["work_dir"]).parent / f"spec-{spec['job_id']}.json", spec)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}
    proc = subprocess.run(
        [sys.executable, "-m", "trainer_runtime", "--spec", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return proc.returncode, events


def _spec(tmp: Path, job_id: int, dataset_id: str, epochs: int, batch: int = 32, **extra: Any) -> dict[str, Any]:
    spec = make_spec(tmp / "work", tmp / "storage", job_id=job_id, epochs=epochs, **extra)
    spec.update(model_name="resnet18", dataset_id=dataset_id, project_id=None)
    spec["hyperparameters"].update(batch_size=batch, image_size=32, seed=0, advanced_config={"hflip": 0.0})
    return spec


def _accuracy(events: list[dict[str, Any]]) -> float:
    epochs = [e for e in events if e["type"] == "epoch"]
    return float(epochs[-1]["data"]["metrics"]["val/accuracy_top1"])


def test_finetuning_from_an_earlier_job_beats_training_from_scratch(tmp_path: Path, demo_digits_dir: Path) -> None:  # noqa: F811
    spec0 = _spec(tmp_path, 1, "digits-0-4", SOURCE_EPOCHS)
    storage = DualStorageClient.from_config(load_spec(spec0).storage)
    _publish_subset(storage, demo_digits_dir, "digits-0-4", {0, 1, 2, 3, 4}, SOURCE_IMAGES)
    _publish_subset(storage, demo_digits_dir, "digits-5-9", {5, 6, 7, 8, 9}, TARGET_IMAGES)

    code, events = _run(spec0)
    assert code == EXIT_COMPLETED, [e for e in events if e["type"] == "error"]
    source_acc = _accuracy(events)
    key = checkpoint_key(1, None, "best.pt")
    assert storage.internal.exists(key)

    init = {"job_id": 1, "checkpoint": "best.pt", "key": key, "framework": "timm", "model_name": "resnet18"}
    code, tuned = _run(_spec(tmp_path, 2, "digits-5-9", 1, TARGET_BATCH, init_from=init))
    assert code == EXIT_COMPLETED, [e for e in tuned if e["type"] == "error"]
    code, scratch = _run(_spec(tmp_path, 3, "digits-5-9", 1, TARGET_BATCH))
    assert code == EXIT_COMPLETED, [e for e in scratch if e["type"] == "error"]

    logs = [e["data"]["message"] for e in tuned if e["type"] == "log"]
    transfer = [m for m in logs if m.startswith("initialised from job 1's best.pt")]
    assert transfer, logs
    assert not any("trained from scratch" in m for m in logs), logs
    # resnet18: every tensor but the 5-class head (fc.weight, fc.bias) is loaded
    assert "2 skipped (rebuilt: fc.bias, fc.weight)" in transfer[0]
    assert not any(
        m.startswith("initialised from") for e in scratch if e["type"] == "log" for m in [e["data"]["message"]]
    )
    # initialisation only: one fresh epoch, not a resume of job 1's epochs
    assert [e["data"]["epoch"] for e in tuned if e["type"] == "epoch"] == [1]

    tuned_acc, scratch_acc = _accuracy(tuned), _accuracy(scratch)
    print(f"source {source_acc:.3f} fine-tuned {tuned_acc:.3f} scratch {scratch_acc:.3f}")
    assert tuned_acc >= scratch_acc + MARGIN, (tuned_acc, scratch_acc)
