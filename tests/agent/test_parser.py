"""agent.parse_intent (contract 1 in docs/architecture.md): the public dev set, our own labelled sets, tricky cases."""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest

from agent import TrainingIntent, detect_language, extract_slots, parse_intent

HERE = Path(__file__).parent
PUBLIC_SET = Path(__file__).parents[3] / "shared/eval/intents_dev.jsonl"
OWN_SET = HERE / "phrasings.jsonl"
HOLDOUT_SET = HERE / "phrasings_holdout.jsonl"

# ---- comparison rules, copied from ../shared/eval/score_intents.py (not imported: it is not ours)


def _norm_model(v: Any) -> str | None:
    return None if v is None else re.sub(r"[\s_\-]", "", str(v).lower())


def _num_eq(a: Any, b: Any) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-12)
    except (TypeError, ValueError):
        return False


def _value_eq(exp: Any, got: Any) -> bool:
    if exp is None:
        return got in (None, "", [], {})
    if isinstance(exp, bool):
        if isinstance(got, bool):
            return got == exp
        if isinstance(got, (int, float)):
            return (got > 0) == exp
        return False
    if isinstance(exp, (int, float)):
        if isinstance(got, bool):
            return exp == 0 and got is False
        return _num_eq(exp, got)
    if isinstance(exp, str):
        return isinstance(got, str) and got.strip().lower() == exp.strip().lower()
    return bool(exp == got)


def _singular(s: str) -> str:
    s = s.strip().lower()
    return s[:-1] if len(s) > 3 and s.endswith("s") else s


def check_slot(slot: str, exp: Any, got: Any) -> bool:
    if slot == "model_name":
        return _norm_model(exp) == _norm_model(got)
    if slot == "class_names":
        if exp is None:
            return not got
        return {_singular(x) for x in (got or [])} == {_singular(x) for x in exp}
    if slot == "advanced_config":
        got = got or {}
        return all(_value_eq(v, got.get(k)) for k, v in exp.items())
    return _value_eq(exp, got)


def score_items(items: list[dict[str, Any]], check: Any = None) -> tuple[float, float, list[tuple[str, str, Any, Any]]]:
    """(core accuracy, class accuracy, failures) as score_intents.py counts them: every slot named in
    an item's "expect" is one check (`check`, default `check_slot`); class_names checks are the class
    figure, all others core."""
    check = check or check_slot
    core_ok = core_n = cls_ok = cls_n = 0
    fails = []
    for it in items:
        got = parse_intent(it["text"]).model_dump()
        for slot, exp in it["expect"].items():
            ok = check(slot, exp, got.get(slot))
            if slot == "class_names":
                cls_ok, cls_n = cls_ok + ok, cls_n + 1
            else:
                core_ok, core_n = core_ok + ok, core_n + 1
            if not ok:
                fails.append((it["id"], slot, exp, got.get(slot)))
    return core_ok / max(core_n, 1), cls_ok / max(cls_n, 1), fails


def score(path: Path) -> tuple[float, float, list[tuple[str, str, Any, Any]]]:
    items = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return score_items(items)


# ---- the sets


def test_public_dev_set() -> None:
    if not PUBLIC_SET.exists():
        pytest.skip(f"public dev set not found at {PUBLIC_SET} (../shared/eval is outside this repository)")
    core, cls, fails = score(PUBLIC_SET)
    assert core >= 0.98, fails  # the issue's targets (issue 17)
    assert cls >= 0.95, fails


@pytest.mark.parametrize("path", [OWN_SET, HOLDOUT_SET], ids=["own", "holdout"])
def test_own_labelled_sets(path: Path) -> None:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(lines) >= (200 if path == OWN_SET else 50)
    core, cls, fails = score(path)
    assert core >= 0.98, fails
    assert cls >= 0.95, fails


# ---- focused cases


def p(text: str) -> dict[str, Any]:
    return parse_intent(text).model_dump()


@pytest.mark.parametrize(
    "text",
    [
        "classify 10 handwritten digits with resnet18",
        "3 classes with resnet50",
        "I have 2 cameras, train yolo11n",
        "yolo11n on coco128",
        "resnet50 please",
        "ViT-B/16 classifier",
        "top-5 accuracy with resnet34",
        "yolov8 small",
        "efficientnet b0 with 5 classes",
        "이미지 500장으로 분류",
        "GPU 2개로 학습",
    ],
)
def test_numbers_that_are_not_hyperparameters(text: str) -> None:
    got = p(text)
    assert got["epochs"] is None
    assert got["batch_size"] is None
    assert got["image_size"] is None
    assert got["learning_rate"] is None


@pytest.mark.parametrize(
    ("text", "slot", "value"),
    [
        ("50에폭", "epochs", 50),
        ("에폭 50번", "epochs", 50),
        ("에포크 30", "epochs", 30),
        ("30 에포크 동안", "epochs", 30),
        ("에폭은 40으로", "epochs", 40),
        ("yolo11n으로50에폭학습", "epochs", 50),
        ("fifty epochs", "epochs", 50),
        ("twenty-five epochs", "epochs", 25),
        ("ten epochs", "epochs", 10),
        ("one hundred epochs", "epochs", 100),
        ("배치 16", "batch_size", 16),
        ("배치사이즈 32", "batch_size", 32),
        ("배치는 128로", "batch_size", 128),
        ("batch size of sixty-four", "batch_size", 64),
        ("bs=8", "batch_size", 8),
        ("224px", "image_size", 224),
        ("이미지 크기 640", "image_size", 640),
        ("해상도 320", "image_size", 320),
        ("input size 384x384", "image_size", 384),
        ("학습률 0.01", "learning_rate", 0.01),
        ("러닝레이트 1e-3", "learning_rate", 1e-3),
        ("lr=3e-4", "learning_rate", 3e-4),
        ("LR 5E-5", "learning_rate", 5e-5),
        ("learning rate 3 x 10^-4", "learning_rate", 3e-4),
        ("Ｒｅｓｎｅｔ１８　에폭　１０", "epochs", 10),
    ],
)
def test_numbers_units_particles_notation(text: str, slot: str, value: float) -> None:
    assert p(text)[slot] == pytest.approx(value)


def test_warmup_and_patience_do_not_leak_into_epochs() -> None:
    got = p("에폭 20, 워밍업 2에폭, 조기 종료 patience 7")
    assert got["epochs"] == 20
    assert got["advanced_config"] == {"warmup_epochs": 2, "patience": 7}
    got = p("warmup 5 epochs then train for 100 epochs")
    assert got["epochs"] == 100
    assert got["advanced_config"]["warmup_epochs"] == 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mixup 끄고 cutmix 켜줘", {"mixup": False, "cutmix": True}),
        ("mosaic off", {"mosaic": False}),
        ("no mixup", {"mixup": False}),
        ("without mosaic", {"mosaic": False}),
        ("disable mosaic and enable mixup", {"mosaic": False, "mixup": True}),
        ("mixup이랑 cutmix 둘 다 꺼줘", {"mixup": False, "cutmix": False}),
        ("with cutmix and mixup", {"cutmix": True, "mixup": True}),
        ("mosaic 0.5", {"mosaic": 0.5}),
        ("mosaic 1.0", {"mosaic": 1.0}),
        ("copy paste 0.3", {"copy_paste": 0.3}),
        ("mosaic=0", {"mosaic": False}),
    ],
)
def test_augmentation_toggles(text: str, expected: dict[str, Any]) -> None:
    assert p(text)["advanced_config"] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("AdamW", {"optimizer": "adamw"}),
        ("Adam W optimizer", {"optimizer": "adamw"}),
        ("adam with cosine", {"optimizer": "adam", "scheduler": "cosine"}),
        ("SGD, momentum 0.9, weight decay 5e-4", {"optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4}),
        ("RMSprop, 선형 스케줄러", {"optimizer": "rmsprop", "scheduler": "linear"}),
        ("스텝 스케줄러", {"scheduler": "step"}),
        ("reduce on plateau", {"scheduler": "plateau"}),
        ("라벨 스무딩 0.1", {"label_smoothing": 0.1}),
        ("모멘텀 0.9", {"momentum": 0.9}),
    ],
)
def test_optimizer_scheduler_regularisation(text: str, expected: dict[str, Any]) -> None:
    assert p(text)["advanced_config"] == expected


@pytest.mark.parametrize(
    ("text", "model", "task", "framework"),
    [
        ("YOLOv8 large", "yolov8l", "object_detection", "ultralytics"),
        ("yolo11 small segmentation", "yolo11s-seg", "instance_segmentation", "ultralytics"),
        ("yolo v8 nano pose", "yolov8n-pose", "pose_estimation", "ultralytics"),
        ("YOLO11x obb", "yolo11x-obb", "oriented_object_detection", "ultralytics"),
        ("yolo11s 세그멘테이션", "yolo11s-seg", "instance_segmentation", "ultralytics"),
        ("yolo11n-cls", "yolo11n-cls", "image_classification", "ultralytics"),
        ("레즈넷50", "resnet50", "image_classification", "timm"),
        ("리스넷 18", "resnet18", "image_classification", "timm"),
        ("resnet-101", "resnet101", "image_classification", "timm"),
        ("ResNet 152", "resnet152", "image_classification", "timm"),
        ("effnet b2", "efficientnet_b2", "image_classification", "timm"),
        ("efficientnet-b1", "efficientnet_b1", "image_classification", "timm"),
        ("이피션트넷 b0", "efficientnet_b0", "image_classification", "timm"),
        ("mobilenet v3", "mobilenetv3_large_100", "image_classification", "timm"),
        ("모바일넷", "mobilenetv3_large_100", "image_classification", "timm"),
        ("ConvNeXt-T", "convnext_tiny", "image_classification", "timm"),
        ("convnext tiny", "convnext_tiny", "image_classification", "timm"),
        ("ViT-B/16", "vit_base_patch16_224", "image_classification", "timm"),
        ("ViT base", "vit_base_patch16_224", "image_classification", "timm"),
        ("ViT-S/16", "vit_small_patch16_224", "image_classification", "timm"),
        ("vit small", "vit_small_patch16_224", "image_classification", "timm"),
        ("DeiT small", "deit_small_patch16_224", "image_classification", "timm"),
        ("DETR", "facebook/detr-resnet-50", "object_detection", "transformers"),
        ("디텍션 트랜스포머", "facebook/detr-resnet-50", "object_detection", "transformers"),
        ("HuggingFace ViT", "google/vit-base-patch16-224", "image_classification", "transformers"),
        ("허깅페이스 ViT", "google/vit-base-patch16-224", "image_classification", "transformers"),
        ("transformers ViT", "google/vit-base-patch16-224", "image_classification", "transformers"),
        ("HF resnet-50", "microsoft/resnet-50", "image_classification", "transformers"),
        ("microsoft/resnet-50", "microsoft/resnet-50", "image_classification", "transformers"),
        ("google/vit-base-patch16-224", "google/vit-base-patch16-224", "image_classification", "transformers"),
    ],
)
def test_model_aliases_and_hub_ids(text: str, model: str, task: str, framework: str) -> None:
    got = p(text)
    assert (got["model_name"], got["task_type"], got["framework"]) == (model, task, framework)


def test_family_without_size_gives_framework_and_task_but_no_model() -> None:
    got = p("YOLOv8 classification on digits")
    assert got["model_name"] is None
    assert got["framework"] == "ultralytics"
    assert got["task_type"] == "image_classification"
    assert got["dataset"] == "digits"


@pytest.mark.parametrize(
    ("text", "framework"),
    [
        ("with ultralytics", "ultralytics"),
        ("timm으로", "timm"),
        ("using transformers", "transformers"),
        ("huggingface", "transformers"),
    ],
)
def test_framework_words(text: str, framework: str) -> None:
    got = p(text)
    assert got["framework"] == framework
    assert got["model_name"] is None


@pytest.mark.parametrize(
    ("text", "preset"),
    [
        ("쉬움", "easy"),
        ("쉽게 학습해줘", "easy"),
        ("초급", "easy"),
        ("beginner level", "easy"),
        ("보통 난이도", "medium"),
        ("중급", "medium"),
        ("난이도 medium", "medium"),
        ("moderate difficulty", "medium"),
        ("어렵게", "advanced"),
        ("고급 설정", "advanced"),
        ("상급", "advanced"),
        ("hard preset", "advanced"),
        ("expert mode", "advanced"),
    ],
)
def test_difficulty_words(text: str, preset: str) -> None:
    assert p(text)["preset"] == preset


def test_yolo_size_word_is_not_a_difficulty() -> None:
    got = p("Use YOLOv8 medium.")
    assert got["model_name"] == "yolov8m"
    assert got["preset"] is None


@pytest.mark.parametrize(
    ("text", "classes"),
    [
        ("고양이/개", ["고양이", "개"]),
        ("고양이랑 개 분류", ["고양이", "개"]),
        ("고양이와 개 분류", ["고양이", "개"]),
        ("사람과 자동차 검출", ["사람", "자동차"]),
        ("사과, 바나나 분류", ["사과", "바나나"]),
        ("cat/dog", ["cat", "dog"]),
        ("cats and dogs classifier", ["cats", "dogs"]),
        ("apple, banana, orange", ["apple", "banana", "orange"]),
        ("apple, banana and orange classifier", ["apple", "banana", "orange"]),
        ("detector for forklifts", ["forklifts"]),
        ("detect helmets and vests with yolo11m", ["helmets", "vests"]),
    ],
)
def test_class_lists(text: str, classes: list[str]) -> None:
    assert p(text)["class_names"] == classes


@pytest.mark.parametrize(
    ("text", "dataset"),
    [
        ("on det-coco128", "det-coco128"),
        ("'shapes-demo' 데이터셋", "shapes-demo"),
        ("데이터는 digits", "digits"),
        ("dataset named pets-v2", "pets-v2"),
        ("using my flowers dataset", "flowers"),
        ("seg-coco32 데이터셋으로", "seg-coco32"),
        ("데이터셋 digits", "digits"),
        ("with the digits dataset", "digits"),
        ('using dataset "Street Scenes"', "Street Scenes"),
        ("데이터셋은 고양이로", "고양이"),
        ("바나나 데이터셋으로 학습", "바나나"),
        ("데이터셋 pets로 학습", "pets"),
    ],
)
def test_dataset_names(text: str, dataset: str) -> None:
    assert p(text)["dataset"] == dataset


@pytest.mark.parametrize(
    "text",
    [
        "내 데이터셋 보여줘",
        "데이터셋 목록 보여줘",
        "데이터셋 목록을 보여줘",
        "데이터셋 뭐 있어?",
        "어떤 데이터셋이 있어?",
        "공개 데이터셋 알려줘",
        "내 데이터셋 목록",
    ],
)
def test_korean_questions_about_datasets_name_none(text: str) -> None:
    """Korean puts a dataset's name before 데이터셋: the verbs and nouns around it are not names."""
    assert "dataset" not in extract_slots(text)


@pytest.mark.parametrize("text", ["학습 시작해줘", "train a model", "what datasets do I have?", "안녕하세요", ""])
def test_no_invented_defaults(text: str) -> None:
    assert parse_intent(text) == TrainingIntent()


def test_d14_classes_without_model() -> None:
    got = p("고양이랑 개 분류하는 모델 만들고 싶어")
    assert got["task_type"] == "image_classification"
    assert got["model_name"] is None and got["framework"] is None and got["epochs"] is None
    assert got["class_names"] == ["고양이", "개"]


def test_extract_slots_returns_only_given_slots_for_corrections() -> None:
    assert extract_slots("에폭은 30으로") == {"epochs": 30}
    assert extract_slots("use yolo11s instead") == {
        "task_type": "object_detection",
        "framework": "ultralytics",
        "model_name": "yolo11s",
    }
    assert extract_slots("yolov8n 말고 yolo11n으로 바꿔줘")["model_name"] == "yolo11n"
    assert extract_slots("switch from resnet18 to resnet50")["model_name"] == "resnet50"


def test_detect_language() -> None:
    assert detect_language("ResNet50으로 고양이/개 분류") == "ko"
    assert detect_language("train yolo11n on digits") == "en"
    assert detect_language("") == "en"
    # a lone name or only names/numbers keep the conversation's language; a sentence switches it
    assert detect_language("digits", previous="ko") == "ko"
    assert detect_language("yolo11n 30", previous="ko") == "ko"
    assert detect_language("shapes-demo", previous="ko") == "ko"
    assert detect_language("use the digits dataset", previous="ko") == "en"
    assert detect_language("digits", previous="en") == "en"
    assert detect_language("help", previous="ko") == "en"  # an English word that is a whole request
    assert detect_language("digits") == "en"


def test_deterministic_and_pure() -> None:
    texts = [json.loads(line)["text"] for line in OWN_SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    first = [parse_intent(t).model_dump() for t in texts]
    second = [parse_intent(t).model_dump() for t in reversed(texts)]
    assert first == list(reversed(second))


def test_fast_enough() -> None:
    texts = [json.loads(line)["text"] for line in OWN_SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    times = []
    for t in texts:
        t0 = time.perf_counter()
        parse_intent(t)
        times.append(time.perf_counter() - t0)
    times.sort()
    # A guard against a pathological (backtracking) pattern, not a target: bench/parse_speed.py
    # measures the speed (a fraction of a millisecond per request here).
    assert times[len(times) // 2] < 0.05
