"""The README's ONNX script runs: an ONNX file made by the export code, the model card's
preprocessing (`tools.downloads.preprocessing_for`, what `GET /jobs/{id}/model-card` serves) and
onnxruntime, NumPy and Pillow alone (torch cannot be imported in its process) give the same
answer as the PyTorch model."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.inference_models import models_root, trained_model

pytest.importorskip("onnxruntime")
pytest.importorskip("timm")
pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_script() -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- run-onnx-script -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README.md lost its ONNX script (the block after <!-- run-onnx-script -->)"
    return m.group(1)


@pytest.mark.parametrize("kind", ["timm-digits", "hf-vit-digits", "yolo-classify"])
def test_readme_onnx_script_runs_an_exported_model_without_torch(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from tools.downloads import preprocessing_for
    from trainer_runtime.inference.export import export_onnx
    from trainer_runtime.inference.predictors import load_predictor

    root = models_root(request.config)
    if kind == "yolo-classify":
        pytest.importorskip("ultralytics")
    m = trained_model(kind, root, root / "demo")
    onnx_path = tmp_path / "model.onnx"
    report = export_onnx(m.framework, m.best, onnx_path)
    size = int(report["input_shape"][2])
    card = {
        "framework": m.framework,
        "task_type": m.task_type,
        "class_names": m.class_names,
        "preprocessing": preprocessing_for(m.framework, m.model_name, m.task_type, size).model_dump(),
    }
    card_path = tmp_path / "model-card.json"
    card_path.write_text(json.dumps(card), encoding="utf-8")
    script = tmp_path / "run_onnx.py"
    script.write_text(readme_script(), encoding="utf-8")
    image = sorted((m.dataset_dir / "images").rglob("*.png"))[0]

    no_torch = (
        "import runpy, sys; sys.modules['torch'] = None; "  # `import torch` raises ImportError in this process
        f"sys.argv = {[str(script), str(onnx_path), str(card_path), str(image)]!r}; "
        f"runpy.run_path({str(script)!r}, run_name='__main__')"
    )
    out = subprocess.run([sys.executable, "-c", no_torch], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [line.split("\t") for line in out.stdout.strip().splitlines()]
    assert len(lines) == 5 and all(label in m.class_names for label, _ in lines), out.stdout

    # the same top class and probability as the PyTorch model on the same file
    from PIL import Image

    with Image.open(image) as im:
        result = load_predictor(m.framework, m.best, "cpu").predict([im.convert("RGB")])[0]
    top = result["predictions"][0]
    assert lines[0][0] == top["label"]
    assert abs(float(lines[0][1]) - float(top["confidence"])) < 1e-3
