"""The kinds of request people write that issue 17 lists, each with sentences of our own (none is a
line of tests/agent/data/holdout_people.jsonl): a slash list is no model, image-size shorthands,
dataset names in more positions, numbers bound to patience/warmup and not epochs, Korean and spoken
model names generated from the catalog, the task from a description, and class lists."""

from __future__ import annotations

import re
from typing import Any

import pytest

from agent import extract_slots, parse_intent
from agent.aliases import alias_table, canonical_part, find_aliases, spoken_forms
from agent.parser import find_named_dataset, normalise
from tools.catalog import list_models


def p(text: str) -> dict[str, Any]:
    return parse_intent(text).model_dump()


# ---- 1. a slash list is a class list, not a hub id


@pytest.mark.parametrize(
    ("text", "model", "classes"),
    [
        ("defect classifier for crack/no-crack using efficientnet b0", "efficientnet_b0", ["crack", "no-crack"]),
        ("train a classifier for ok/not-ok with resnet34", "resnet34", ["ok", "not-ok"]),
        ("train a model for rust/no-rust with convnext tiny", "convnext_tiny", ["rust", "no-rust"]),
        ("sorting leaf/non-leaf pictures", None, ["leaf", "non-leaf"]),
    ],
)
def test_a_slash_list_is_not_a_model(text: str, model: str | None, classes: list[str]) -> None:
    out = p(text)
    assert out["model_name"] == model
    assert out["framework"] != "transformers"
    assert out["class_names"] == classes


@pytest.mark.parametrize(
    ("text", "model"),
    [
        ("fine-tune facebook/convnext-tiny-224 on pets", "facebook/convnext-tiny-224"),
        ("nateraw/food-101 on snacks", "nateraw/food-101"),  # a known hub org
        ("train the acme/widget-9 model on digits", "acme/widget-9"),  # the user calls it a model
        ("use the hugging face checkpoint acme/parts-net", "acme/parts-net"),
    ],
)
def test_a_hub_id_that_looks_like_one_is_read(text: str, model: str) -> None:
    out = p(text)
    assert (out["model_name"], out["framework"]) == (model, "transformers")


def test_a_model_named_elsewhere_wins_over_a_doubtful_hub_id() -> None:
    out = p("a model for dent/no-dent with resnet18 from hugging face")
    assert out["model_name"] == "microsoft/resnet-18"
    assert out["class_names"] == ["dent", "no-dent"]


# ---- 2. image size shorthands


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("img 320 resnet18", 320),
        ("이미지 64로 학습", 64),
        ("이미지는 72 정도", 72),
        ("640 해상도로 yolo11n", 640),
        ("at 300 resolution", 300),
        ("res=512 yolov8n", 512),
        ("imgsz 1024", 1024),
        ("imgsz640 please", 640),
        ("image 128x128 please", 128),
        ("input 384 vit base", 384),
        ("해상도 160", 160),
        ("입력 크기 200 x 200", 200),
    ],
)
def test_image_size_shorthands(text: str, size: int) -> None:
    assert p(text)["image_size"] == size


@pytest.mark.parametrize("text", ["한 번 더", "네 좋아요", "16 batches per epoch", "40x epochs"])
def test_korean_words_that_look_like_numbers_set_nothing(text: str) -> None:
    out = extract_slots(text)
    assert not {"epochs", "batch_size", "dataset"} & set(out), out


@pytest.mark.parametrize("text", ["이미지 300장으로 분류", "image 50 per class", "img 12 epochs", "이미지 40개"])
def test_counts_of_images_are_no_size(text: str) -> None:
    assert p(text)["image_size"] is None


@pytest.mark.parametrize(
    ("text", "slot", "value"),
    [
        ("lr0.003 and bs24", "learning_rate", 0.003),
        ("lr0.003 and bs24", "batch_size", 24),
        ("ep40 resnet18", "epochs", 40),
        ("process it in batches of 10", "batch_size", 10),
        ("lr5e-4", "learning_rate", 0.0005),
        ("16 batch", "batch_size", 16),
        ("한 번에 12장씩 넣어줘", "batch_size", 12),
        ("3 passes over the data", "epochs", 3),
        ("go through the data 25 times", "epochs", 25),
        ("에폭을 서른 번", "epochs", 30),
        ("에폭 스무번 돌려", "epochs", 20),
        ("열 에폭만", "epochs", 10),
    ],
)
def test_glued_and_plural_shorthands(text: str, slot: str, value: float) -> None:
    assert p(text)[slot] == pytest.approx(value)


# ---- 3. dataset names in more positions


@pytest.mark.parametrize(
    ("text", "dataset"),
    [
        ("finetune google/vit-base-patch16-224 with the weld_cracks data", "weld_cracks"),
        ("train on WELD_CRACKS with yolo11n", "WELD_CRACKS"),
        ("데이터 weld-v2로 학습", "weld-v2"),
        ("weld-v2 데이터로 학습", "weld-v2"),
        ("weld-v2 데이터 사용해서 yolo11n", "weld-v2"),
        ("BOLTS3 데이터 써서 레즈넷18", "BOLTS3"),
        ("yolo11n trained on bolts", "bolts"),
        ("deit small on petals, 12 epochs", "petals"),
        ("with batch 8 and lr 0.01 on pets", "pets"),
        ("use my_flowers data for vit base", "my_flowers"),
        ("the PARTS data with yolo11n", "PARTS"),
        ("resnet34 pretrained on imagenet, fine-tune on pets-v3", "pets-v3"),
        ("use dataset #3 with yolo11n", "3"),
        ("데이터셋 번호 9로 학습", "9"),
        ("도로 표지판 데이터 road_signs로 어떤 표지판인지 맞추는 모델", "road_signs"),
        ("데이터 leafscan 사용해서 분류", "leafscan"),
    ],
)
def test_dataset_positions(text: str, dataset: str) -> None:
    assert p(text)["dataset"] == dataset


@pytest.mark.parametrize("text", ["use my training data", "train on the data I uploaded"])
def test_plain_words_before_data_are_no_dataset(text: str) -> None:
    assert p(text)["dataset"] is None


@pytest.mark.parametrize(
    "text", ["데이터 전처리 없이 분류", "데이터 3 개로 학습", "no improvement for 5 minutes, 20 epochs"]
)
def test_words_and_numbers_after_a_cue_that_are_not_a_dataset_or_patience(text: str) -> None:
    out = p(text)
    assert out["dataset"] is None
    assert (out.get("advanced_config") or {}).get("patience") is None


def test_a_picture_size_is_no_dataset() -> None:
    out = p("input images are 1920x1080, train at 640")
    assert (out["dataset"], out["image_size"]) == (None, 640)


@pytest.mark.parametrize("text", ["labels: spam-free, spammy", "classes are: rust-free, rusty"])
def test_an_item_of_a_class_list_is_no_dataset(text: str) -> None:
    out = p(text)
    assert out["dataset"] is None
    assert len(out["class_names"]) == 2


# ---- 4. numbers bound to the slot their words give


@pytest.mark.parametrize(
    ("text", "epochs", "adv"),
    [
        ("stop early if 9 epochs bring no improvement, 45 epochs in all", 45, {"patience": 9}),
        ("60 epochs total, stop if val loss plateaus for 8 epochs", 60, {"patience": 8}),
        ("run 90 epochs and quit when it does not improve for 11 epochs", 90, {"patience": 11}),
        ("25 epochs with no progress means stop; 120 epochs overall", 120, {"patience": 25}),
        ("8 에폭 연속 개선이 없으면 중단하고 총 40 에폭", 40, {"patience": 8}),
        ("개선이 7 에폭 동안 없으면 멈춰, 에폭 70", 70, {"patience": 7}),
        ("40에폭 돌리고 5에폭 동안 성능이 안 오르면 조기종료", 40, {"patience": 5}),
        ("warm up for the first 3 epochs then train 50 epochs", 50, {"warmup_epochs": 3}),
        ("처음 2 에폭은 워밍업, 전체 30 에폭", 30, {"warmup_epochs": 2}),
        ("4 epochs as warmup, 64 epochs", 64, {"warmup_epochs": 4}),
        ("early stop after 7 bad epochs", None, {"patience": 7}),
        ("if validation accuracy doesn't go up for 6 epochs stop, 50 epochs", 50, {"patience": 6}),
        ("stop training when val loss stops decreasing for 5 epochs, 80 epochs", 80, {"patience": 5}),
        ("워밍업 에폭 3, 총 에폭 40", 40, {"warmup_epochs": 3}),
        ("조기종료 에폭 10, 에폭 50", 50, {"patience": 10}),
        ("총 60 에폭 중 15 에폭 동안 개선 없으면 멈춤", 60, {"patience": 15}),
        ("detect forklifts, 30 epochs, stop if no improvement for 5", 30, {"patience": 5}),
    ],
)
def test_patience_and_warmup_are_not_epochs(text: str, epochs: int | None, adv: dict[str, int]) -> None:
    out = p(text)
    assert out["epochs"] == epochs
    for key, value in adv.items():
        assert out["advanced_config"][key] == value


def test_reduce_on_plateau_is_still_a_scheduler() -> None:
    assert p("reduce on plateau scheduler")["advanced_config"] == {"scheduler": "plateau"}


# ---- 5. Korean and spoken model names, generated from the catalog


@pytest.mark.parametrize(
    ("text", "model"),
    [
        ("레즈넷 오십으로 분류", "resnet50"),
        ("레스넷 피프티", "resnet50"),
        ("욜로 일레븐 스몰로 탐지", "yolo11s"),
        ("욜로 브이8 엑스라지 세그멘테이션", "yolov8x-seg"),
        ("욜로 팔 라지로 포즈", "yolov8l-pose"),
        ("모바일넷 브이3로 학습", "mobilenetv3_large_100"),
        ("이피션트넷 비제로로 30에폭", "efficientnet_b0"),
        ("에피션트넷 비원", "efficientnet_b1"),
        ("데이트 스몰로 꽃 분류", "deit_small_patch16_224"),
        ("비트 베이스로 학습", "vit_base_patch16_224"),
        ("비전 트랜스포머 스몰", "vit_small_patch16_224"),
        ("콘브넥스트 타이니", "convnext_tiny"),
        ("욜로 v8 엔으로", "yolov8n"),
        ("YOLO 버전 8 나노로 학습", "yolov8n"),
        ("yolov8 엔", "yolov8n"),
        ("딧 스몰", "deit_small_patch16_224"),
        ("레즈넷 백일로 분류", "resnet101"),
        ("레즈넷 일공일", "resnet101"),
        ("yolo version 11 medium", "yolo11m"),
    ],
)
def test_spoken_model_names(text: str, model: str) -> None:
    assert p(text)["model_name"] == model


def test_spoken_name_with_hugging_face_is_the_hub_id() -> None:
    out = p("컨브넥스트 타이니 허깅페이스로")
    assert (out["model_name"], out["framework"]) == ("facebook/convnext-tiny-224", "transformers")


@pytest.mark.parametrize("text", ["8비트 양자화 모델", "비트 단위로 저장", "데이트 코스 사진 분류", "욜로 프로젝트"])
def test_ordinary_words_are_no_model(text: str) -> None:
    assert p(text)["model_name"] is None


def test_every_catalog_model_of_a_known_family_has_a_korean_alias() -> None:
    """The alias tables come from the catalog: each timm and Ultralytics base model is reachable."""
    families = {f.key: f for f in alias_table()}
    reachable = {m.name for f in families.values() for m in f.table.values()}
    for m in list_models():
        name = m["name"]
        if m["framework"] == "transformers" or name.endswith(("-seg", "-pose", "-obb", "-cls")):
            continue
        assert name in reachable, name
    for fam in families.values():
        for parts, model in fam.table.items():
            # the family word in Latin, every part said in Hangul ("resnet 오십", "yolo 브이8 스몰")
            spoken = " ".join(min((f for f in spoken_forms(x) if re.search("[가-힣]", f)), key=len) for x in parts)
            text = normalise(f"{fam.key} {spoken}").lower()
            hits = find_aliases(text)
            assert hits and hits[0].model == model, (text, model)


def test_spoken_forms_of_name_parts() -> None:
    assert {"비투", "비 투", "비이", "b2"} <= spoken_forms("b2")
    assert {"8", "브이8", "브이 에잇", "팔"} <= spoken_forms("8")
    assert {"일레븐", "십일", "11"} <= spoken_forms("11")
    assert {"오십", "피프티", "오공"} <= spoken_forms("50")
    assert {"스몰", "small", "s"} <= spoken_forms("s")
    assert canonical_part("small") == "s" and canonical_part("v8") == "8" and canonical_part("b2") == "b2"


# ---- 6. the task from a description


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("tell which of 3 kinds of leaf each photo shows", "image_classification"),
        ("which breed is each dog photo", "image_classification"),
        ("separate the scans into benign and malignant", "image_classification"),
        ("각 사진이 어떤 품종인지 맞히는 모델", "image_classification"),
        ("네 종류 중 하나로 나눠서 구별해줘", "image_classification"),
        ("where are all the potholes in these road photos", "object_detection"),
        ("mark where every defect is on the PCB", "object_detection"),
        ("사진에서 고양이가 어디에 있는지 찾아줘", "object_detection"),
        ("부품 위치를 표시해주는 모델", "object_detection"),
        ("I'd like to spot cracks in concrete photos", "object_detection"),
        ("count cars in the parking lot camera feed", "object_detection"),
        ("사진에서 불량을 찾아줘", "object_detection"),
        ("자동차, 트럭, 버스를 찾는 모델을 욜로로 학습", "object_detection"),
        ("train something to recognise my 3 cats (tom, kitty, leo) from photos", "image_classification"),
        ("사진을 보고 무슨 새인지 알려주는 모델", "image_classification"),
        ("이 사진이 어느 품종에 속하는지 판단", "image_classification"),
        ("what breed of cat is in the photo", "image_classification"),
        ("predict the category of each product photo", "image_classification"),
        ("사람 몸의 주요 지점 좌표를 찾는 모델", "pose_estimation"),
        ("객체 모양대로 따내는 모델", "instance_segmentation"),
        ("put a box on every forklift", "object_detection"),
        ("I need outlines of each car", "instance_segmentation"),
        ("trace the contour of every organ", "instance_segmentation"),
        ("건물 외곽선을 따는 모델", "instance_segmentation"),
        ("find the body joints of runners", "pose_estimation"),
        ("사람 뼈대 추정", "pose_estimation"),
        ("detect ships with tilted boxes", "oriented_object_detection"),
        ("차량을 기울어진 박스로 검출", "oriented_object_detection"),
        ("boxes with an angle around each container", "oriented_object_detection"),
    ],
)
def test_task_from_a_description(text: str, task: str) -> None:
    assert p(text)["task_type"] == task


@pytest.mark.parametrize(
    "text",
    [
        "where is the best checkpoint in storage?",
        "which of my 3 jobs was best?",
        "check whether the job finished",
        "what kind of models can I train?",
        "split the data into train and val",
        "find the best learning rate",
        "what type of gpu is this",
        "어떤 모델인지 알려줘",
        "어느 데이터인지 모르겠어",
    ],
)
def test_questions_about_jobs_give_no_task(text: str) -> None:
    out = extract_slots(text)
    assert "task_type" not in out and "class_names" not in out


# ---- class lists


@pytest.mark.parametrize(
    ("text", "classes"),
    [
        ("고양이 개 분류", ["고양이", "개"]),
        ("강아지 고양이 토끼 분류해줘", ["강아지", "고양이", "토끼"]),
        ("정상 불량 구분", ["정상", "불량"]),
        ("resnet 50으로 고양이 강아지 분류 ㄱㄱ", ["고양이", "강아지"]),
        ("사과랑 배랑 포도 분류", ["사과", "배", "포도"]),
        ("사과와 배, 그리고 포도를 분류", ["사과", "배", "포도"]),
        ("헬멧, 조끼 그리고 장갑 탐지", ["헬멧", "조끼", "장갑"]),
        ("노랑/초록/보라 구분, 레즈넷18로", ["노랑", "초록", "보라"]),
        ("나사와 볼트를 잡는 탐지 모델", ["나사", "볼트"]),
        ("쉬운 난이도, 배와 귤 분류", ["배", "귤"]),
        ("라벨은 양품 불량 보류", ["양품", "불량", "보류"]),
        ("train a yolov8s detector for forklifts or pallets", ["forklifts", "pallets"]),
        ("tell apart huskies vs malamutes", ["huskies", "malamutes"]),
        ("classify into cat, dog, or bird using resnet50", ["cat", "dog", "bird"]),
        ("classify leaves as healthy or diseased", ["healthy", "diseased"]),
        ("label each picture as day or night with mobilenet", ["day", "night"]),
        ("train effnet-b1 to separate fresh from stale bread", ["fresh", "stale"]),
        ("a model to tell good welds from bad welds, resnet34", ["good welds", "bad welds"]),
        ("is this a wolf or a husky? resnet18 please", ["wolf", "husky"]),
        ("are they cats, dogs or birds?", ["cats", "dogs", "birds"]),
        ("gimme a quick resnet18 cats n dogs classifier", ["cats", "dogs"]),
        ("two classes, good and bad", ["good", "bad"]),
        ("4 classes - fox, deer, boar, hare", ["fox", "deer", "boar", "hare"]),
        ('the labels are "fox", "deer" and "hare"', ["fox", "deer", "hare"]),
        ("classes = [person, car, bike]", ["person", "car", "bike"]),
        ("classify images of shoes into sneakers, boots and sandals", ["sneakers", "boots", "sandals"]),
        ("a detector that finds helmets, vests and gloves", ["helmets", "vests", "gloves"]),
        ("I want to classify fox vs. wolf", ["fox", "wolf"]),
        ("ok/ng 분류", ["ok", "ng"]),
        ("클래스 이름은 수박 참외 멜론", ["수박", "참외", "멜론"]),
        ("탐지 대상은 사람, 차", ["사람", "차"]),
        ("기스, 얼룩 같은 결함 검출", ["기스", "얼룩"]),
        ("양품이냐 불량이냐 판별", ["양품", "불량"]),
        ("사진이 맑음인지 흐림인지 분류", ["맑음", "흐림"]),
        ("고양이인지 토끼인지 구분하는 모델", ["고양이", "토끼"]),
        ("I want to detect defects on PCBs. Classes: short, open, spur. Use yolo11s", ["short", "open", "spur"]),
        ("is it fresh or rotten? resnet18 please", ["fresh", "rotten"]),
        ("categories hot warm cold, deit small", ["hot", "warm", "cold"]),
        ("resnet34 for sedan, suv and truck", ["sedan", "suv", "truck"]),
        ("sort the parcels into letters, flats and oversize", ["letters", "flats", "oversize"]),
        ("vest/마스크/고글 탐지 yolo11s", ["vest", "마스크", "고글"]),
        ("gloves/masks/boots detection with yolo11n", ["gloves", "masks", "boots"]),
    ],
)
def test_class_lists(text: str, classes: list[str]) -> None:
    assert p(text)["class_names"] == classes


@pytest.mark.parametrize(
    ("text", "task", "model"),
    [
        ("vest/마스크/고글 탐지 yolo11s", "object_detection", "yolo11s"),
        ("gloves/masks/boots detection with yolo11n", "object_detection", "yolo11n"),
        ("마스크 착용 여부 분류", "image_classification", None),
    ],
)
def test_a_class_named_like_a_task_does_not_change_the_task(text: str, task: str, model: str | None) -> None:
    out = p(text)
    assert (out["task_type"], out["model_name"]) == (task, model)


@pytest.mark.parametrize(
    "text",
    [
        "헬멧 쓴 사람이랑 안 쓴 사람 구분",
        "is it done or not?",
        "separate images from the dataset",
        "사과 세 가지 분류",
        "제품 불량 분류",
        "공장 라인 사진 분류",
        "픽셀 단위로 도로 영역 분할",
    ],
)
def test_counts_and_descriptions_are_no_class_list(text: str) -> None:
    assert p(text)["class_names"] == []


# ---- 3b. the user's own dataset names, when the caller knows them


@pytest.mark.parametrize(
    ("text", "dataset"),
    [
        ("resnet18 모델로 pets 학습", "pets"),  # no cue word at all
        ("yolo11n으로 Road-Signs 돌려줘", "Road Signs"),  # another separator, a particle glued on
        ("use pets-v2 with deit small", "pets-v2"),  # the longest name wins over "pets"
        ("resnet18 on PETS", "pets"),  # the stored spelling
        ("train on blorp-7 using pets", "pets"),  # a name of theirs wins over a word none of theirs
        ("train on blorp-7", "blorp-7"),  # none of theirs named: the reader's word stays
    ],
)
def test_known_dataset_names(text: str, dataset: str) -> None:
    names = ["pets", "pets-v2", "Road Signs", "data"]
    assert extract_slots(text, datasets=names)["dataset"] == dataset


def test_known_names_never_take_ordinary_words_or_parts_of_words() -> None:
    names = ["data", "images", "pets"]
    assert "dataset" not in extract_slots("train resnet18 on my data", datasets=names)
    assert "dataset" not in extract_slots("a petshop classifier", datasets=names)
    assert find_named_dataset("PETS로 학습", names) == "pets"
    assert find_named_dataset("nothing here", []) is None


@pytest.mark.parametrize("text", ["배치는 알아서 해주시고 학습률은 기본으로", "에폭은 보통으로", "batch size: normal"])
def test_a_settings_default_is_no_difficulty(text: str) -> None:
    assert "preset" not in extract_slots(text)


@pytest.mark.parametrize(("text", "preset"), [("기본 설정으로 학습", "easy"), ("전문가용으로 세팅", "advanced")])
def test_difficulty_words_still_read(text: str, preset: str) -> None:
    assert p(text)["preset"] == preset
