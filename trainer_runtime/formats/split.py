"""Train/validation split that never leaves a class only in validation (contract 2 in docs/architecture.md).

An image's classes are the categories of its annotations. Images are visited rarest class first
(ties broken by a seeded shuffle); an image may go to val only when every one of its classes
already has a train image and its rarest class is still below its share of val. A second pass tops
val up to the target from the most common classes, again only moving an image when each of its
classes keeps a train image. Unlabeled images are split by ratio.

When every file name starts with a ``train/`` and ``val/`` (``valid/``, ``validation/``) or
``test/`` folder, that split is kept (``respect_folders=True``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from trainer_runtime.formats.schema import DiceDataset

_TRAIN_DIRS = frozenset({"train", "training"})
_VAL_DIRS = frozenset({"val", "valid", "validation"})
_TEST_DIRS = frozenset({"test", "testing"})


@dataclass
class SplitResult:
    """The image ids of the train and val parts (and of a test folder), with a report of how the split was made."""

    train: list[int]
    val: list[int]
    report: dict[str, Any]
    test: list[int] = field(default_factory=list)
    """Images of a ``test/`` folder that were kept out of both (only with a folder split)."""


def _top_folder(file_name: str) -> str:
    name = file_name.replace("\\", "/")
    while name.startswith(("./", "/")):
        name = name[1:] if name[0] == "/" else name[2:]
    head, sep, _ = name.partition("/")
    return head.lower() if sep else ""


def _class_sets(ds: DiceDataset) -> dict[int, frozenset[int]]:
    classes: dict[int, set[int]] = {}
    for ann in ds.annotations:
        s = classes.get(ann.image_id)
        if s is None:
            classes[ann.image_id] = {ann.category_id}
        else:
            s.add(ann.category_id)
    return {k: frozenset(v) for k, v in classes.items()}


def _class_report(
    ds: DiceDataset, classes: dict[int, frozenset[int]], train: list[int], val: list[int]
) -> dict[str, Any]:
    names = {c.id: c.name for c in ds.categories}
    in_train: set[int] = set()
    in_val: set[int] = set()
    for iid in train:
        in_train |= classes.get(iid, frozenset())
    for iid in val:
        in_val |= classes.get(iid, frozenset())

    def label(cids: set[int]) -> list[str]:
        return [names.get(c, str(c)) for c in sorted(cids)]

    return {
        "classes": len(in_train | in_val),
        "val_only_classes": label(in_val - in_train),
        "train_only_classes": label(in_train - in_val),
    }


def _folder_split(ds: DiceDataset) -> tuple[list[int], list[int], list[int]] | None:
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for img in ds.images:
        top = _top_folder(img.file_name)
        if top in _TRAIN_DIRS:
            train.append(img.id)
        elif top in _VAL_DIRS:
            val.append(img.id)
        elif top in _TEST_DIRS:
            test.append(img.id)
        else:
            return None
    if not train or not (val or test):
        return None
    if not val:  # train/ + test/ only: test serves as validation
        val, test = test, []
    return sorted(train), sorted(val), sorted(test)


def _folders_result(
    ds: DiceDataset, classes: dict[int, frozenset[int]], folders: tuple[list[int], list[int], list[int]]
) -> SplitResult:
    """The split the images' train/ val/ test/ folders already make."""
    train, val, test = folders
    report: dict[str, Any] = {
        "strategy": "folders",
        "images": len(ds.images),
        "train": len(train),
        "val": len(val),
        "test": len(test),
        **_class_report(ds, classes, train, val),
    }
    msg = f"kept the existing folder split: {len(train)} train / {len(val)} val images"
    if test:
        msg += f" ({len(test)} test images left out of both)"
    if report["val_only_classes"]:
        msg += f"; warning: classes only in val: {', '.join(report['val_only_classes'])}"
    report["message"] = msg
    return SplitResult(train=train, val=val, report=report, test=test)


def _top_up(
    order: list[int],
    classes: dict[int, frozenset[int]],
    in_val: set[int],
    train_n: dict[int, int],
    val_n: dict[int, int],
    target: int,
) -> int:
    """Move images of the most common classes to val until `target`, keeping a train image per
    class; returns how many moved."""
    topped_up = 0
    for iid in reversed(order):
        if len(in_val) >= target:
            break
        if iid in in_val:
            continue
        cs = classes[iid]
        if all(train_n[c] > 1 for c in cs):
            in_val.add(iid)
            topped_up += 1
            for c in cs:
                train_n[c] -= 1
                val_n[c] += 1
    return topped_up


def _labeled_val(
    classes: dict[int, frozenset[int]], labeled: list[int], keys: dict[int, float], val_fraction: float
) -> tuple[set[int], dict[int, int], int, int]:
    """The labelled images that go to val, rarest class first: ``(in_val, freq, target, topped_up)``."""
    freq: dict[int, int] = {}
    for iid in labeled:
        for c in classes[iid]:
            freq[c] = freq.get(c, 0) + 1
    rarest = {iid: min(classes[iid], key=lambda c: (freq[c], c)) for iid in labeled}
    order = sorted(labeled, key=lambda i: (freq[rarest[i]], rarest[i], keys[i]))

    target = round(len(labeled) * val_fraction)
    quota = {c: round(n * val_fraction) for c, n in freq.items()}
    train_n: dict[int, int] = dict.fromkeys(freq, 0)
    val_n: dict[int, int] = dict.fromkeys(freq, 0)
    in_val: set[int] = set()
    for iid in order:
        cs = classes[iid]
        r = rarest[iid]
        if len(in_val) < target and val_n[r] < quota[r] and all(train_n[c] > 0 for c in cs):
            in_val.add(iid)
            for c in cs:
                val_n[c] += 1
        else:
            for c in cs:
                train_n[c] += 1
    topped_up = 0
    if len(in_val) < target:  # top up from the most common classes, keeping a train image per class
        topped_up = _top_up(order, classes, in_val, train_n, val_n, target)
    return in_val, freq, target, topped_up


def stratified_split(
    ds: DiceDataset, val_fraction: float = 0.2, seed: int = 0, *, respect_folders: bool = True
) -> SplitResult:
    """Split image ids into train and val; deterministic for a given dataset and seed.

    Guarantees (stratified mode): no class is only in val; a class on one image is in train; a
    class on two or more images has at least one train image. ``report`` holds counts,
    ``val_only_classes`` (empty), ``train_only_classes`` and a ``message`` saying what was done.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    classes = _class_sets(ds)

    if respect_folders:
        folders = _folder_split(ds)
        if folders is not None:
            return _folders_result(ds, classes, folders)

    rng = random.Random(seed)
    image_ids = sorted({img.id for img in ds.images})
    keys = {iid: rng.random() for iid in image_ids}
    labeled = [iid for iid in image_ids if classes.get(iid)]
    unlabeled = [iid for iid in image_ids if not classes.get(iid)]
    in_val, freq, target, topped_up = _labeled_val(classes, labeled, keys, val_fraction)

    shuffled = sorted(unlabeled, key=lambda i: keys[i])
    n_unl_val = round(len(unlabeled) * val_fraction)
    val = sorted(in_val | set(shuffled[:n_unl_val]))
    val_set = set(val)
    train = [iid for iid in image_ids if iid not in val_set]

    names = {c.id: c.name for c in ds.categories}
    single = sorted(c for c, n in freq.items() if n == 1)
    report = {
        "strategy": "stratified",
        "val_fraction": val_fraction,
        "seed": seed,
        "images": len(image_ids),
        "labeled": len(labeled),
        "unlabeled": len(unlabeled),
        "train": len(train),
        "val": len(val),
        "target_val": target + n_unl_val,
        **_class_report(ds, classes, train, val),
        "single_image_classes": [names.get(c, str(c)) for c in single],
    }
    msg = (
        f"stratified split (seed {seed}): {len(train)} train / {len(val)} val images"
        f" (target {val_fraction:.0%} = {target + n_unl_val} val)"
    )
    if single:
        msg += f"; {len(single)} classes on a single image stay in train"
    if len(in_val) < target:
        msg += (
            f"; val is {target - len(in_val)} images short: no more images could move without a class"
            " losing its last train image"
        )
    if topped_up:
        msg += f"; {topped_up} images of common classes topped val up"
    if unlabeled:
        msg += f"; {len(unlabeled)} unlabeled images split by ratio ({n_unl_val} to val)"
    report["message"] = msg
    return SplitResult(train=train, val=val, report=report)
