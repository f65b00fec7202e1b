"""Stratified split: deterministic, never a val-only class, rare classes in train, ratio respected."""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from tests.trainer_runtime._dice_factory import dice_dict
from trainer_runtime.formats.schema import DiceDataset
from trainer_runtime.formats.split import stratified_split

HANG_GUARD_S = 60.0  # CPU seconds; far above the real figure, so only a quadratic blow-up fails it


def _build(image_classes: list[list[int]], n_classes: int, prefix: str = "") -> DiceDataset:
    images = [
        {"id": i + 1, "file_name": f"{prefix}{i:05d}.jpg", "width": 64, "height": 64} for i in range(len(image_classes))
    ]
    anns: list[dict[str, Any]] = []
    for i, cs in enumerate(image_classes):
        for c in cs:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": c, "bbox": [1, 1, 10, 10]})
    cats = [{"id": c, "name": f"class{c}"} for c in range(1, n_classes + 1)]
    return DiceDataset.model_validate(dice_dict(categories=cats, images=images, annotations=anns))


def coco32_like(seed: int = 3) -> DiceDataset:
    """32 images, 43 classes with a long tail: class 1 on most images, many classes on one image."""
    rng = random.Random(seed)
    image_classes: list[list[int]] = [[] for _ in range(32)]
    for i in range(32):
        if rng.random() < 0.7:
            image_classes[i].append(1)
    # classes 2..43: frequency falls off like 1/rank
    for c in range(2, 44):
        k = max(1, round(12 / (c - 1) ** 0.8))
        for i in rng.sample(range(32), k):
            image_classes[i].append(c)
    for i, cs in enumerate(image_classes):  # every image labeled
        if not cs:
            cs.append(1 + i % 3)
    return _build(image_classes, 43)


def _classes(ds: DiceDataset) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {}
    for a in ds.annotations:
        out.setdefault(a.image_id, set()).add(a.category_id)
    return out


def _check_invariants(ds: DiceDataset, train: list[int], val: list[int]) -> None:
    assert not set(train) & set(val)
    assert sorted(train + val) == sorted(i.id for i in ds.images)
    classes = _classes(ds)
    in_train = set().union(*(classes.get(i, set()) for i in train))
    in_val = set().union(*(classes.get(i, set()) for i in val))
    assert in_val <= in_train, f"val-only classes: {in_val - in_train}"


def test_coco32_like_has_no_val_only_classes_and_rare_classes_in_train() -> None:
    ds = coco32_like()
    classes = _classes(ds)
    freq: dict[int, int] = {}
    for cs in classes.values():
        for c in cs:
            freq[c] = freq.get(c, 0) + 1
    assert len(freq) == 43 and min(freq.values()) == 1  # really a long tail
    for seed in range(10):
        res = stratified_split(ds, 0.2, seed=seed)
        _check_invariants(ds, res.train, res.val)
        assert res.report["val_only_classes"] == []
        assert len(res.val) == round(32 * 0.2)
        train_classes = set().union(*(classes[i] for i in res.train))
        for c, n in freq.items():
            assert c in train_classes, f"class {c} on {n} images has no train image"
        single = [c for c, n in freq.items() if n == 1]
        assert len(res.report["single_image_classes"]) == len(single)


def test_deterministic_for_a_seed_and_varies_across_seeds() -> None:
    ds = coco32_like()
    a = stratified_split(ds, 0.25, seed=7)
    b = stratified_split(ds, 0.25, seed=7)
    assert (a.train, a.val, a.report) == (b.train, b.val, b.report)
    vals = {tuple(stratified_split(ds, 0.25, seed=s).val) for s in range(8)}
    assert len(vals) > 1
    # the order of records does not matter
    d = ds.model_dump()
    d["images"].reverse()
    d["annotations"].reverse()
    c = stratified_split(DiceDataset.model_validate(d), 0.25, seed=7)
    assert (c.train, c.val) == (a.train, a.val)


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.3, 0.5])
def test_ratio_respected_on_balanced_data(fraction: float) -> None:
    rng = random.Random(1)
    image_classes = [[rng.randint(1, 5)] for _ in range(500)]
    ds = _build(image_classes, 5)
    res = stratified_split(ds, fraction, seed=0)
    _check_invariants(ds, res.train, res.val)
    assert abs(len(res.val) - round(500 * fraction)) <= 1
    # per-class share of val is close to the fraction too (stratification)
    classes = _classes(ds)
    for c in range(1, 6):
        total = sum(1 for cs in classes.values() if c in cs)
        in_val = sum(1 for i in res.val if c in classes[i])
        assert abs(in_val / total - fraction) < 0.05


def test_two_image_class_keeps_one_in_train_and_unlabeled_split_by_ratio() -> None:
    image_classes = [[1, 2]] + [[1]] * 9 + [[2]] + [[]] * 10
    ds = _build(image_classes, 2)
    res = stratified_split(ds, 0.5, seed=0)
    _check_invariants(ds, res.train, res.val)
    unlabeled = set(range(12, 22))
    assert len(unlabeled & set(res.val)) == 5
    assert res.report["unlabeled"] == 10
    assert "unlabeled" in res.report["message"]


def test_single_image_dataset_goes_to_train() -> None:
    ds = _build([[1]], 1)
    res = stratified_split(ds, 0.2)
    assert res.train == [1] and res.val == []


def test_respects_existing_folders() -> None:
    d = dice_dict()  # train/a.jpg, train/b.jpg, val/c.jpg
    ds = DiceDataset.model_validate(d)
    res = stratified_split(ds, 0.5)
    assert (res.train, res.val) == ([1, 2], [3])
    assert res.report["strategy"] == "folders"
    assert "kept the existing folder split" in res.report["message"]
    # val-only classes of a user's split are reported, not hidden (person is only on val/c.jpg)
    assert res.report["val_only_classes"] == ["person"]
    res2 = stratified_split(ds, 0.5, respect_folders=False)
    assert res2.report["strategy"] == "stratified"
    _check_invariants(ds, res2.train, res2.val)


def test_valid_and_test_folders() -> None:
    ds = _build([[1]] * 6, 1, prefix="train/")
    d = ds.model_dump()
    d["images"][4]["file_name"] = "valid/x.jpg"
    d["images"][5]["file_name"] = "test/y.jpg"
    res = stratified_split(DiceDataset.model_validate(d))
    assert res.val == [5] and res.test == [6] and len(res.train) == 4
    d["images"][4]["file_name"] = "test/z.jpg"  # train + test only: test serves as val
    res = stratified_split(DiceDataset.model_validate(d))
    assert res.val == [5, 6] and res.test == []
    d["images"][4]["file_name"] = "elsewhere/z.jpg"  # not all in split folders: stratify
    assert stratified_split(DiceDataset.model_validate(d)).report["strategy"] == "stratified"


def test_bad_fraction() -> None:
    with pytest.raises(ValueError):
        stratified_split(_build([[1]], 1), 1.0)


@pytest.mark.slow
def test_fast_on_coco_sized_data() -> None:
    rng = random.Random(0)
    n = 118_000
    image_classes = [sorted({min(80, int(rng.paretovariate(1.0))) for _ in range(3)}) for _ in range(n)]
    ds = _build(image_classes, 80)
    # Not a performance target (bench/dataset_checks.py measures that): a hang guard against an
    # accidentally quadratic split, which takes many minutes here where the real one takes about a second.
    t0 = time.process_time()
    res = stratified_split(ds, 0.2, seed=0)
    elapsed = time.process_time() - t0
    _check_invariants(ds, res.train, res.val)
    assert abs(len(res.val) - round(n * 0.2)) <= 2
    assert elapsed < HANG_GUARD_S, elapsed
