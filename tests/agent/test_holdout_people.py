"""The held-out set of requests written by people (tests/agent/data/holdout_people.jsonl, issue 17),
scored with the same rule as the project's intent scorer: core slot accuracy >= 0.98 and class-list
accuracy >= 0.95.

The comparison rule is the scorer's own (`../shared/eval/score_intents.py`, loaded by path when the
shared folder is there); without it, the copy in tests/agent/test_parser.py, which follows it line
for line.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.agent import test_parser

HOLDOUT_PEOPLE = Path(__file__).parent / "data" / "holdout_people.jsonl"
SHARED_SCORER = Path(__file__).parents[3] / "shared" / "eval" / "score_intents.py"

CheckSlot = Callable[[str, Any, Any], bool]


def _check_slot() -> CheckSlot:
    if SHARED_SCORER.exists():
        spec = importlib.util.spec_from_file_location("score_intents", SHARED_SCORER)
        if spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            check: CheckSlot = module.check_slot
            return check
    return test_parser.check_slot


def _items() -> list[dict[str, Any]]:
    lines = HOLDOUT_PEOPLE.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_the_set_is_what_the_issue_asks_for() -> None:
    items = _items()
    assert len(items) >= 150
    assert len({it["id"] for it in items}) == len(items)
    korean = sum(bool(re.search(r"[가-힣]", it["text"])) for it in items)
    assert korean >= len(items) * 0.45


def test_holdout_people_scores() -> None:
    core, cls, fails = test_parser.score_items(_items(), _check_slot())
    assert core >= 0.98, fails
    assert cls >= 0.95, fails


def test_the_scoring_rule_is_the_scorers() -> None:
    check = _check_slot()
    assert check("model_name", "yolo11n-seg", "YOLO11n_seg")
    assert check("class_names", ["cats", "dog"], ["cat", "dogs"])
    assert not check("class_names", ["cat", "dog"], ["cat"])
    assert check("class_names", None, [])
    assert check("advanced_config", {"mosaic": False}, {"mosaic": 0, "mixup": True})
    assert not check("advanced_config", {"patience": 10}, {})
    assert check("epochs", None, None) and not check("epochs", None, 10)


@pytest.mark.parametrize("slot", ["task_type", "model_name", "class_names", "advanced_config"])
def test_a_wrong_parse_lowers_the_score(slot: str) -> None:
    """The scorer can fail: an item whose expectation the parser cannot meet counts as a miss."""
    wrong: dict[str, Any] = {
        "task_type": "pose_estimation",
        "model_name": "resnet152",
        "class_names": ["nothing", "here"],
        "advanced_config": {"patience": 99},
    }
    item = {"id": "x", "text": "yolo11n on digits", "expect": {slot: wrong[slot]}}
    core, cls, fails = test_parser.score_items([item], _check_slot())
    assert fails and (core if slot != "class_names" else cls) == 0.0
