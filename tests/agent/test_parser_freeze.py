""" "freeze the backbone" / "백본 고정" set advanced_config freeze_backbone."""

from __future__ import annotations

import pytest

from agent import parse_intent


@pytest.mark.parametrize(
    "text",
    [
        "train resnet50 on pets and freeze the backbone",
        "fine-tune vit_small_patch16_224 on flowers with the backbone frozen",
        "pets 데이터셋으로 resnet50 학습, 백본 고정",
        "yolo11n으로 shapes-demo 학습하고 백본은 동결해줘",
    ],
)
def test_freeze_backbone_phrases(text: str) -> None:
    assert parse_intent(text).advanced_config.get("freeze_backbone") is True


def test_no_freeze_without_the_words() -> None:
    assert "freeze_backbone" not in parse_intent("train resnet50 on pets with a frozen pizza dataset").advanced_config
