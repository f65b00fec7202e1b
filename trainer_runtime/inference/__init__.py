"""Inference with trained checkpoints: predictors per framework, overlays, ONNX export, the worker.

    predictors   load a best.pt / last.pt of any of our frameworks and predict batches of PIL images
                 into one result schema (below); needs torch (imported lazily)
    render       draw a result onto its image with Pillow (Korean labels with a CJK font); no torch
    export       ONNX export and an onnxruntime parity check; needs torch
    worker       ``python -m trainer_runtime.inference.worker``: a long-lived process speaking a
                 length-prefixed JSON + bytes protocol on stdin/stdout, with an LRU model cache and
                 micro-batching (see its module doc for the protocol)

Importing this package (or `render`, `protocol`) never imports torch: the server renders overlays
and talks to workers without it.

Result schema (one per image, an InferenceResult)::

    {"task_type": str, "predictions": [...], "image": {"width", "height"},
     "inference_time_ms", "preprocessing_time_ms", "postprocessing_time_ms", "batch_size",
     "model": {"framework", "model_name", "task_type", "class_names", "image_size", "device"},
     # added by the server: "checkpoint": "best"|"last", "job_id"
     # classification: "predicted_label", "confidence" (predictions = top-5)
     # pose: "keypoint_names", "skeleton" (0-based index pairs), once per response
    }

Prediction items: classification ``{"label", "class_id", "confidence"}``; detection adds
``"box": [x1, y1, x2, y2]`` (pixels of the original image); segmentation adds
``"polygon": [[x, y], ...]``; pose adds ``"keypoints": [[x, y, conf], ...]``; oriented detection
has ``"rotated_box": [cx, cy, w, h, angle_deg]``, its 4 corners as ``"polygon"`` and the
axis-aligned extent as ``"box"``. Times are per image: a micro-batch's time divided by its size.
"""

from __future__ import annotations

from trainer_runtime.formats.schema import TASK_TYPES

__all__ = ["TASK_TYPES"]
