"""Write the label files: one ``open/write/close`` per image with `os` calls, a background thread
for file creation and optionally a second worker process (`LabelWriter`); `write_yolo_labels` is
the entry. See docs/architecture.md.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from trainer_runtime.formats.fastconvert.dataset import FastDataset
from trainer_runtime.formats.fastconvert.rows import Batch, iter_batches, render_batch
from trainer_runtime.formats.fastconvert.scope import FAST_TASKS, FastPathUnsupported


def _write_files(labels_dir: str, label_paths: list[str], text: bytes, img_end: np.ndarray) -> None:
    """One label file per image: ``text[previous end:end]`` (an empty file when nothing)."""
    mv = memoryview(text)
    made: set[str] = set()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    start = 0
    for rel, end in zip(label_paths, img_end.tolist(), strict=True):
        head = rel.rpartition("/")[0]
        if head and head not in made:
            os.makedirs(os.path.join(labels_dir, head), exist_ok=True)
            made.add(head)
        fd = os.open(os.path.join(labels_dir, rel), flags, 0o644)
        try:
            if end > start:
                os.write(fd, mv[start:end])
        finally:
            os.close(fd)
        start = end


def write_batch(b: Batch, task: str, labels_dir: str) -> int:
    """Render and write one batch (runs in the worker process)."""
    gc.disable()
    text, img_end, rows = render_batch(b, task)
    _write_files(labels_dir, b.label_paths, text, img_end)
    return rows


def _noop() -> int:
    return os.getpid()


class LabelWriter:
    """Renders and writes label batches.

    File creation is done by a background thread (``open``/``write`` release the GIL), so the
    file system's latency overlaps with formatting the next batch. With ``workers=2`` a second
    process renders and writes every other batch; create the writer *before* loading a big file so
    that process is forked while this one is still small.
    """

    def __init__(self, workers: int = 1) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.workers = max(1, workers)
        self._pool: Any = None
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="label-io")
        if self.workers > 1:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            methods = mp.get_all_start_methods()
            ctx = mp.get_context("fork" if "fork" in methods else "spawn")
            self._pool = ProcessPoolExecutor(max_workers=self.workers - 1, mp_context=ctx)
            self._pool.submit(_noop).result()  # start it now, while this process is small

    def run(self, batches: Iterator[Batch], task: str, labels_dir: Path) -> int:
        rows = 0
        pending: list[Any] = []  # worker-process futures (return row counts)
        io: list[Any] = []  # writes of this process's batches
        for i, b in enumerate(batches):
            if self._pool is not None and i % self.workers:
                pending.append(self._pool.submit(write_batch, b, task, str(labels_dir)))
                while len(pending) > self.workers:
                    rows += pending.pop(0).result()
                continue
            text, img_end, n = render_batch(b, task)
            rows += n
            io.append(self._io.submit(_write_files, str(labels_dir), b.label_paths, text, img_end))
            while len(io) > 2:
                io.pop(0).result()
        for f in io:
            f.result()
        for f in pending:
            rows += f.result()
        return rows

    def close(self) -> None:
        self._io.shutdown(wait=True, cancel_futures=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def write_yolo_labels(
    ds: FastDataset,
    task: str,
    labels_dir: Path,
    *,
    writer: LabelWriter | None = None,
    batch_images: int = 4000,
) -> int:
    """Write one label file per image under `labels_dir` (which must exist and be empty).
    Returns the number of label rows written."""
    if task not in FAST_TASKS:
        raise FastPathUnsupported(f"the fast path does not handle {task}")
    own = writer is None
    w = writer or LabelWriter(1)
    was = gc.isenabled()
    gc.disable()  # millions of short-lived lists: the cyclic GC would only rescan them
    try:
        return w.run(iter_batches(ds, task, batch_images), task, labels_dir)
    finally:
        if was:
            gc.enable()
        if own:
            w.close()
