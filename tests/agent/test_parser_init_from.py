"""The parser reads a fine-tuning source ("starting from job 12", "12번 작업 모델로 이어서 학습") into
`init_from_job` / `init_checkpoint` in English and Korean, masks its number (no epoch count or
dataset from it), and leaves messages about a job that are not training requests alone."""

from __future__ import annotations

from typing import Any

import pytest

from agent.parser import extract_slots, parse_intent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "train resnet18 on my-new-data starting from job 12",
            {"model_name": "resnet18", "dataset": "my-new-data", "init_from_job": 12},
        ),
        ("fine-tune job 12 on flowers", {"dataset": "flowers", "init_from_job": 12}),
        ("Fine-tune job #7 on flowers for 5 epochs", {"dataset": "flowers", "epochs": 5, "init_from_job": 7}),
        ("finetune from job 3 using the cats dataset", {"init_from_job": 3}),
        (
            "Start from the last checkpoint of job 12 and train on flowers dataset",
            {"dataset": "flowers", "init_from_job": 12, "init_checkpoint": "last"},
        ),
        (
            "train on flowers with job 12's best weights",
            {"dataset": "flowers", "init_from_job": 12, "init_checkpoint": "best"},
        ),
        (
            "train yolo11n on shapes-demo from job 3 last",
            {"model_name": "yolo11n", "dataset": "shapes-demo", "init_from_job": 3, "init_checkpoint": "last"},
        ),
        (
            "initialise from job 40 and train on digits for 3 epochs",
            {"dataset": "digits", "epochs": 3, "init_from_job": 40},
        ),
        ("use the weights of job 9 to train on digits", {"dataset": "digits", "init_from_job": 9}),
        ("12번 작업 모델로 이어서 학습", {"init_from_job": 12}),
        (
            "작업 12의 마지막 체크포인트에서 시작해서 flowers 데이터셋으로 학습",
            {"dataset": "flowers", "init_from_job": 12, "init_checkpoint": "last"},
        ),
        (
            "12번 잡 가중치로 파인튜닝 해줘, flowers 데이터셋 10 에폭",
            {"dataset": "flowers", "epochs": 10, "init_from_job": 12},
        ),
        ("digits 데이터셋으로 7번 작업에서 시작해서 학습", {"dataset": "digits", "init_from_job": 7}),
        (
            "3번 작업의 베스트 모델을 기반으로 digits 데이터셋 학습",
            {"dataset": "digits", "init_from_job": 3, "init_checkpoint": "best"},
        ),
        (
            "resnet18 모델 5번 작업으로 초기화해서 digits 학습 20 에폭",
            {"model_name": "resnet18", "epochs": 20, "init_from_job": 5},
        ),
    ],
)
def test_fine_tuning_source_is_read(text: str, expected: dict[str, Any]) -> None:
    got = parse_intent(text).model_dump()
    for key, value in expected.items():
        assert got[key] == value, (text, key, got)
    if "init_checkpoint" not in expected:
        assert got["init_checkpoint"] is None  # not said: the dialogue and jobs default to best.pt
    if "epochs" not in expected:
        assert got["epochs"] is None  # the job number is no epoch count


@pytest.mark.parametrize(
    "text",
    [
        "resume job 12",
        "12번 작업 재개",
        "12번 작업 이어서 해줘",
        "show metrics from job 12",
        "stop job 4",
        "how is job 12 going?",
        "export job 12 to onnx",
        "resnet18 digits 20 epochs",
        "train resnet18 on digits for 12 epochs",
    ],
)
def test_other_messages_name_no_source(text: str) -> None:
    assert "init_from_job" not in extract_slots(text)
    assert parse_intent(text).init_from_job is None
