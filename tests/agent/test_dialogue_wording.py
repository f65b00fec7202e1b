"""The wording rules of the dialogue's replies (agent.wording) and the yes / no / wait reading of
answers in natural words (agent.dialogue.answers). Pure functions, no app."""

from __future__ import annotations

import pytest

from agent import replies as R
from agent import wording as W
from agent.dialogue.answers import NO, WAIT, YES, answer_kind
from agent.dialogue.base import is_yes
from agent.parser import normalise

# ------------------------------------------------------------------------- yes / no / wait


@pytest.mark.parametrize(
    "message",
    [
        "응 해줘", "좋아 시작해", "ㅇㅇ", "ㅇㅋ", "go ahead", "sounds good, start", "do it", "네 진행해주세요",
        "응 진행해줘", "yes, go on", "start training", "학습 시작해", "좋아요 그렇게 해 주세요", "looks good to me",
        "please start it", "no problem, go ahead", "그래 그렇게 해", "alright, kick it off", "지금 바로 시작",
        "okay, start it now", "네 부탁해요", "Yes!", "let's do this", "approved", "hmm ok", "옙", "yeah go for it",
        "넵 돌려주세요", "그럼 시작하자", "학습 돌려줘", "sure, why not",
    ],
)  # fmt: skip
def test_yes_in_natural_words(message: str) -> None:
    assert answer_kind(normalise(message).lower()) == YES
    assert is_yes(normalise(message).lower())


@pytest.mark.parametrize(
    "message",
    ["아니", "취소", "no", "No thanks", "cancel", "시작하지 마", "don't start", "never mind", "안 할래",
     "아니요 괜찮아요"],
)  # fmt: skip
def test_no(message: str) -> None:
    assert answer_kind(normalise(message).lower()) == NO


@pytest.mark.parametrize(
    "message", ["not yet", "잠깐만", "아직이요", "hold on", "no wait", "wait a sec", "let me think", "응 근데 잠깐만"]
)
def test_wait_wins_over_yes_and_no(message: str) -> None:
    assert answer_kind(normalise(message).lower()) == WAIT


@pytest.mark.parametrize(
    "message",
    [
        "진행 상황 알려줘", "how is it going?", "네트워크", "I'd like to start over with another model",
        "얼마나 걸려?", "what datasets do i have", "ok show metrics", "let's start over",
        "yes but I want a different model", "응 근데 다른 걸로", "네 다시 해줘", "let's train another model",
    ],
)  # fmt: skip
def test_questions_and_commands_are_not_a_yes(message: str) -> None:
    assert not is_yes(normalise(message).lower())


# ------------------------------------------------------------------------------ particles


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pets(으)로는 객체 탐지을(를)", "pets로는 객체 탐지를"),  # -s reads 츠: no final consonant
        ("분류을(를)", "분류를"),
        ("추정을(를)", "추정을"),
        ("서울(으)로", "서울로"),  # ㄹ takes 로
        ("digits(으)로", "digits로"),
        ("yolo11n(으)로", "yolo11n으로"),  # 엔
        ("resnet18(timm)을(를)", "resnet18(timm)을"),  # 팔, the parenthesis skipped
        ("resnet이(가)", "resnet이"),  # 넷
        ("10(으)로", "10으로"),  # 십
        ("100이(가)", "100이"),  # 백
        ("2을(를)", "2를"),  # 이
        ("3(으)로", "3으로"),  # 삼
        ("7(으)로", "7로"),  # 칠
        ("ONNX(으)로", "ONNX로"),  # 엑스
        ("DETR이(가)", "DETR이"),  # 알
        ("model(으)로", "model로"),
        ("'bob-secret'이(가)", "'bob-secret'이"),
        ("다른 데이터셋 (예: parcels)(이)나", "다른 데이터셋 (예: parcels)이나"),
        ("shapes-demo와(과) fruit", "shapes-demo와 fruit"),
        ("224 px 기준 16를 32 px에 맞춤", "224 px 기준 16을 32 px에 맞춤"),  # a tool's fixed particle
        ("yolo11n로 학습", "yolo11n으로 학습"),
        ("16가지 방법, 1이상, 데이터가 있고", "16가지 방법, 1이상, 데이터가 있고"),  # not particles
    ],
)
def test_korean_particles_follow_the_word_before_them(text: str, expected: str) -> None:
    assert W.resolve_particles(text) == expected


def test_every_korean_template_resolves_its_particles() -> None:
    values = {
        "dataset": "pets", "task": "객체 탐지", "name": "x1", "model": "resnet18", "framework": "timm",
        "fmt": "ONNX", "what": "resnet18", "ids": "1, 2", "hint": "", "datasets": "", "tasks": "-",
    }  # fmt: skip
    for key in R.T:
        try:
            text = R.say("ko", key, **values)
        except (KeyError, IndexError):
            continue  # a template that needs other values
        assert "(으)" not in text and "(를)" not in text and "(가)" not in text and "(는)" not in text, key


# --------------------------------------------------------------------------- plurals, labels


def test_english_counts_of_one_are_singular() -> None:
    assert W.singular_ones("1 epochs, 1 classes, 11 epochs, 0.1 times, 2 images, 1 images") == (
        "1 epoch, 1 class, 11 epochs, 0.1 times, 2 images, 1 image"
    )
    assert R.say("en", "launched", job_id=3, model="m", dataset="d", epochs=1, status="queued", queue="").startswith(
        "Started job 3: m on d, 1 epoch —"
    )
    assert W.plural(2, "epoch") == "2 epochs" and W.plural(1, "class", "classes") == "1 class"


def test_settings_read_in_the_pages_words() -> None:
    timm = {"opt": "adamw", "lr": 0.001, "mixup_alpha": 0.0, "smoothing": 0.1, "model_ema": False}
    assert W.settings_line(timm, "en") == (
        "optimizer AdamW, learning rate 0.001, mixup off, label smoothing 0.1, weight averaging (EMA) off"
    )
    ko = "옵티마이저 AdamW, 학습률 0.001, 믹스업 끔, 라벨 스무딩 0.1, 가중치 이동 평균(EMA) 끔"
    assert W.settings_line(timm, "ko") == ko
    assert "lr0" not in W.settings_line({"lr0": 0.01, "optimizer": "auto"}, "en")
    assert W.settings_line({}, "ko") == "-"


def test_refusals_in_korean_quote_the_tools_english() -> None:
    text = W.refusal_reason("model 'foo' is not in the catalog", "model_name", "ko")
    assert text.startswith("이 모델은 쓸 수 없습니다") and "`model 'foo' is not in the catalog`" in text
    assert W.refusal_reason("bad", "x", "en") == "bad"
