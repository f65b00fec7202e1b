"""Overhead of the trainer runtime: the same training run directly and through
``python -m trainer_runtime --spec``, side by side, in one run.

Cases (same data, epochs, image size, batch, seed and device on both sides):

* ``yolo``: yolo11n detection on the ``shapes-demo`` demo dataset. Direct = Ultralytics' own API,
  ``YOLO("yolo11n.yaml").train(data=...)`` on the YOLO conversion of the same DICE dataset (made
  once before timing; the runner converts inside its timed run).
* ``timm``: resnet18 on ``digits``. timm has no ``fit`` API; direct = the timm adapter's own
  training loop (timm's model/optimizer/scheduler factories in `_torch_loop.EpochLoop`) called
  in a plain script without the runner, so the difference is exactly the runner: spec loading,
  dataset cache, event reporting, checkpoint upload with verification, MLflow.

Every measurement is a fresh ``python`` process (start-up and imports included on both sides),
repeats alternate the order (direct first, then runner first, ...). The runner keeps MLflow on
(its default: SQLite store under the work dir) unless ``--no-mlflow``; the direct Ultralytics run
has its own MLflow logging off (`prepare_ultralytics`), like the runner's adapter.

Printed: median wall-clock per side, the ratio runner/direct (goal <= 1.10 on CPU), and the
steady-state epoch throughput (train images per second over epochs 2..N; goal runner/direct >= 0.97
on GPU).

    .venv/bin/python bench/train_overhead.py [--repeats 2] [--epochs 2] [--device cpu|cuda]
                                             [--cases yolo,timm] [--no-mlflow] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CASES: dict[str, dict[str, Any]] = {
    "yolo": {
        "dataset": "shapes-demo",
        "framework": "ultralytics",
        "model": "yolo11n",
        "task": "object_detection",
        "image_size": 160,
        "batch": 16,
    },
    "timm": {
        "dataset": "digits",
        "framework": "timm",
        "model": "resnet18",
        "task": "image_classification",
        "image_size": 32,
        "batch": 64,
    },
}

_DIRECT_YOLO = r"""
import json, sys, time
from trainer_runtime.adapters._ultralytics_env import prepare_ultralytics
prepare_ultralytics()
from ultralytics import YOLO
a = json.loads(sys.argv[1])
ends = []
model = YOLO("yolo11n.yaml")
model.add_callback("on_fit_epoch_end", lambda t: ends.append(time.time()) if t.epoch < t.epochs else None)
model.train(data=a["data"], epochs=a["epochs"], imgsz=a["image_size"], batch=a["batch"], device=a["device"],
            workers=0, seed=a["seed"], deterministic=True, amp=a["device"] != "cpu", plots=False, val=True,
            save_period=-1, verbose=False, project=a["project"], name="direct", exist_ok=True)
print(json.dumps({"epoch_ends": ends}))
"""

_DIRECT_TIMM = r"""
import json, sys, time
from pathlib import Path
from trainer_runtime.adapters.base import TrainContext
from trainer_runtime.adapters.timm_adapter import TimmAdapter
from trainer_runtime.formats.capabilities import check_compatibility
from trainer_runtime.formats.validate import load_annotations
from trainer_runtime.spec import load_spec
a = json.loads(sys.argv[1])
spec = load_spec(Path(a["spec"]))
hp = spec.hyperparameters
dice = Path(a["dice"])
ds = load_annotations(dice / "annotations.json")
cfg = TimmAdapter.resolve_config(hp.preset, dict(hp.advanced_config),
                                 hp.model_dump(exclude={"preset", "advanced_config"}, exclude_none=True))
out = Path(a["project"])
ctx = TrainContext(spec=spec, dataset_dir=dice, dataset=ds,
                   conversion=check_compatibility(ds, spec.task_type)["conversion"],
                   work_dir=out / "work", output_dir=out / "output", config=cfg,
                   device="cuda:0" if a["device"] == "cuda" else "cpu")
ends = []
ctx.callbacks.add_callback("on_fit_epoch_end", lambda **kw: ends.append(time.time()))
TimmAdapter(ctx).train()
print(json.dumps({"epoch_ends": ends}))
"""


def _ts(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def _train_images(dice: Path, val_fraction: float = 0.2) -> int:
    n = len(json.loads((dice / "annotations.json").read_text())["images"])
    return n - round(n * val_fraction)


def _run(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, str, int]:
    started = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env, cwd=REPO)
    return time.perf_counter() - started, proc.stdout, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--cases", default="yolo,timm")
    ap.add_argument("--no-mlflow", action="store_true", help="runner side without MLflow")
    ap.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temp dir)")
    ap.add_argument("--image-size", type=int, default=None, help="override every case's image size")
    ap.add_argument("--batch", type=int, default=None, help="override every case's batch size")
    args = ap.parse_args()

    from tools.demo_datasets import build_demo_dataset
    from trainer_runtime.formats.converters import to_yolo
    from trainer_runtime.formats.validate import load_annotations
    from trainer_runtime.storage import DualStorageClient, LocalObjectStore

    root = args.keep or Path(tempfile.mkdtemp(prefix="vta-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    storage_root = root / "storage"
    storage = DualStorageClient(
        LocalObjectStore(storage_root / "external", "training-datasets", "external"),
        LocalObjectStore(storage_root / "internal", "training-checkpoints", "internal"),
    )
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, "YOLO_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    results: dict[str, dict[str, list[float]]] = {}
    job_id = 1000
    for name in cases:
        case = dict(CASES[name])
        if args.image_size:
            case["image_size"] = args.image_size
        if args.batch:
            case["batch"] = args.batch
        dice = build_demo_dataset(case["dataset"], root / "demo")
        if not storage.external.exists(f"datasets/{case['dataset']}/annotations.json"):
            for path in sorted((dice / "images").rglob("*")):
                if path.is_file():
                    storage.upload_dataset_file(case["dataset"], path.relative_to(dice / "images").as_posix(), path)
            storage.upload_annotations(case["dataset"], dice / "annotations.json")
        data_arg = ""
        if name == "yolo":
            export = to_yolo(
                load_annotations(dice / "annotations.json"), dice, root / "direct-yolo-data", case["task"], seed=0
            )
            data_arg = str(export.data_yaml)
        n_train = _train_images(dice)
        res: dict[str, list[float]] = {"direct": [], "runner": [], "direct_ips": [], "runner_ips": []}
        for rep in range(args.repeats):
            order = ["direct", "runner"] if rep % 2 == 0 else ["runner", "direct"]
            for side in order:
                job_id += 1
                project = root / "runs" / f"{name}-{side}-{rep}"
                shutil.rmtree(project, ignore_errors=True)
                project.mkdir(parents=True)
                spec = {
                    "job_id": job_id,
                    "framework": case["framework"],
                    "model_name": case["model"],
                    "task_type": case["task"],
                    "dataset_id": case["dataset"],
                    "hyperparameters": {
                        "epochs": args.epochs,
                        "batch_size": case["batch"],
                        "image_size": case["image_size"],
                        "seed": 0,
                        "device": args.device,
                    },
                    "storage": {"local_root": str(storage_root)},
                    "mlflow": {"enabled": not args.no_mlflow},
                    "work_dir": str(root / "work"),
                    "checkpoint_upload_interval_s": 0,
                }
                spec_path = project / "job.json"
                spec_path.write_text(json.dumps(spec))
                log = project / "stderr.log"
                if side == "runner":
                    cmd = [sys.executable, "-m", "trainer_runtime", "--spec", str(spec_path)]
                else:
                    a = {
                        "data": data_arg,
                        "dice": str(dice),
                        "spec": str(spec_path),
                        "epochs": args.epochs,
                        "image_size": case["image_size"],
                        "batch": case["batch"],
                        "device": "0" if args.device == "cuda" and name == "yolo" else args.device,
                        "seed": 0,
                        "project": str(project),
                    }
                    cmd = [sys.executable, "-c", _DIRECT_YOLO if name == "yolo" else _DIRECT_TIMM, json.dumps(a)]
                wall, out, code = _run(cmd, env, log)
                if code != 0:
                    print(f"{name} {side} failed (exit {code}); see {log}", file=sys.stderr)
                    print(log.read_text()[-3000:], file=sys.stderr)
                    return 1
                if side == "runner":
                    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
                    ends = [_ts(e["ts"]) for e in events if e["type"] == "epoch"]
                else:
                    ends = json.loads(out.strip().splitlines()[-1])["epoch_ends"]
                # steady state: mean over epochs 2..N (epoch 1 carries warm-up and compilation)
                ips = n_train * (len(ends) - 1) / (ends[-1] - ends[0]) if len(ends) >= 2 else float("nan")
                res[side].append(wall)
                res[f"{side}_ips"].append(ips)
                print(f"{name:5} {side:6} repeat {rep + 1}: {wall:6.2f} s wall, epoch {len(ends)}: {ips:7.1f} img/s")
        results[name] = res

    print()
    mlflow = "off" if args.no_mlflow else "on"
    print(f"device {args.device}, {args.epochs} epochs, {args.repeats} repeats, MLflow {mlflow}")
    print("| case | direct wall (median) | runner wall (median) | ratio | direct img/s | runner img/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, res in results.items():
        d, r = statistics.median(res["direct"]), statistics.median(res["runner"])
        di, ri = statistics.median(res["direct_ips"]), statistics.median(res["runner_ips"])
        print(f"| {name} | {d:.2f} s | {r:.2f} s | {r / d:.3f} | {di:.1f} | {ri:.1f} | {ri / di:.3f} |")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
