"""Fast DICE -> YOLO label writer for big datasets (object detection and instance segmentation).

`converters.to_yolo` works on a validated pydantic `DiceDataset` and formats every number in
Python; that is clear but slow for COCO-sized files (860k annotations, ~47M polygon coordinates).
This module produces *byte-identical* label files straight from ``annotations.json``:

- decoding: `msgspec` with typed structs; every ``segmentation`` is kept as raw JSON bytes
  (`msgspec.Raw`) and decoded batch-wise, so no more than one batch of Python floats exists at a
  time (peak memory ~ the file size plus ~250 bytes per annotation);
- normalisation with numpy in one pass per batch (same IEEE operations as the reference, so the
  same doubles);
- formatting: `format_g` renders ``'%g'`` exactly (correct rounding, ties resolved on the exact
  binary value) for the whole batch with table look-ups, falling back to Python's ``'%g'`` for the
  rare values outside ``[1e-4, 1)`` that are not small integers;
- output: one ``open/write/close`` per label file with `os` calls; optionally a second worker
  process, started before the file is read (so its memory stays small), formats and writes every
  other batch.

The semantics (which annotations become which rows) are exactly those of
`trainer_runtime.formats.yolo_rows.yolo_rows` (the reference) and therefore of Ultralytics'
``convert_coco(use_segments=True, cls91to80=False)`` when category ids are 1..N in order; see
`yolo_rows` for the rules and `converters` for the intended differences. Anything the fast path
does not handle (an annotation without ``bbox``, keypoints or rotated-box tasks) raises
`FastPathUnsupported` and the caller uses the reference path.

Modules: `dataset` (decoding and checks), `rows` (one batch of label rows), `gformat` (``'%g'``),
`writer` (files and worker process), `scope` (`FAST_TASKS`, `FastPathUnsupported`).
"""

from __future__ import annotations

from trainer_runtime.formats.fastconvert.dataset import FastDataset, load_fast, split_view, summary_for_compat
from trainer_runtime.formats.fastconvert.gformat import format_g
from trainer_runtime.formats.fastconvert.scope import FAST_TASKS, FastPathUnsupported
from trainer_runtime.formats.fastconvert.writer import LabelWriter, write_yolo_labels

__all__ = [
    "FAST_TASKS",
    "FastDataset",
    "FastPathUnsupported",
    "LabelWriter",
    "format_g",
    "load_fast",
    "split_view",
    "summary_for_compat",
    "write_yolo_labels",
]
