"""How replies read in each language: Korean particles, English plurals, and words for settings.

- **Korean particles** (`resolve_particles`): a template writes a particle in both forms after a
  value it does not know ("{dataset}(으)로", "{task}을(를)", "{name}이(가)", "은(는)", "와(과)",
  "(이)나", "(이)라는"); the form is chosen from the final sound of the word before it. Hangul: its
  last syllable's final consonant (ㄹ takes 로, not 으로). Digits: the Korean reading of the number
  (1 일, 3 삼, 6 육, 10 십, 100 백, 1000 천 end in a consonant; 2 이, 4 사, 5 오, 9 구 do not).
  Latin letters: an acronym in capitals by the name of its last letter (L 엘, M 엠, N 엔, R 알 end
  in a consonant); a word by its ending as it is said in Korean ("-ng", "-l", "-le", "-m", "-n",
  "-me", "-ne" end in a consonant, and a short vowel before "-t", "-k", "-c", "-p": "resnet" 레즈넷,
  "cat" 캣; "-s", "-x", "-d", "-g", "-r", vowels do not: "pets" 펫츠, "yolo" 욜로). Quotes and a
  closing parenthesis are skipped ("resnet18(timm)을" reads "resnet18"). A one-form particle
  standing right after a number or a Latin word ("16를", "yolo11n로", as texts the tools wrote
  may have it) is chosen again by the same rule.
- **English plurals** (`singular_ones`): a count of exactly one before a plural noun becomes
  singular ("1 epochs" -> "1 epoch", "1 classes" -> "1 class"), also in texts the tools wrote.
- **Settings** (`setting_label`, `settings_line`): the framework's keys (``mixup_alpha``, ``lr0``,
  ``smoothing``...) in the words the page uses ("Learning rate" / "학습률", "Optimizer" /
  "옵티마이저") and words for the rest; a switch or an augmentation at 0 reads "off" / "끔".
- **Compatibility** (`compat_reason_ko`, `conversion_label`): the reason a dataset can or cannot
  train a task, composed in Korean from the dataset's per-task statuses (the tools write theirs in
  English), and the conversion's name in words.
"""

from __future__ import annotations

import re
from typing import Any

# ---------------------------------------------------------------------------------- particles

_MARKERS: dict[str, tuple[str, str]] = {
    # marker -> (after a final consonant, after a vowel)
    "(으)로": ("으로", "로"),
    "을(를)": ("을", "를"),
    "를(을)": ("을", "를"),
    "이(가)": ("이", "가"),
    "가(이)": ("이", "가"),
    "은(는)": ("은", "는"),
    "는(은)": ("은", "는"),
    "와(과)": ("과", "와"),
    "과(와)": ("과", "와"),
    "(이)나": ("이나", "나"),
    "(이)라는": ("이라는", "라는"),
    "(이)라고": ("이라고", "라고"),
    "(이)에요": ("이에요", "예요"),
}
_MARKER_RE = re.compile("|".join(re.escape(m) for m in sorted(_MARKERS, key=len, reverse=True)))
RIEUL = 8  # the index of ㄹ among final consonants: "로" follows it like a vowel

_DIGIT_FINAL = {"0": 21, "1": 8, "2": 0, "3": 16, "4": 0, "5": 0, "6": 1, "7": 8, "8": 8, "9": 0}
_ZEROS_FINAL = {1: 17, 2: 1, 3: 4, 4: 4, 5: 4, 6: 4, 7: 4, 8: 1}  # 십 백 천 만 ... 억
_LETTER_FINAL = {"l": 8, "m": 16, "n": 4, "r": 8}  # 엘 엠 엔 알
_VOWELS = set("aeiou")
_CLOSERS = "'\"`’”»"


def _strip_tail(text: str) -> str:
    """The text before a particle with closing quotes and a parenthesised tail taken off."""
    text = text.rstrip()
    while text:
        if text[-1] in _CLOSERS:
            text = text[:-1].rstrip()
            continue
        if text[-1] in ")]":
            opener = "(" if text[-1] == ")" else "["
            cut = text.rfind(opener)
            # a parenthesised tail is skipped: "resnet18(timm)을", "데이터셋 (예: parcels)이나"
            text = text[:cut].rstrip() if cut > 0 else text[:-1].rstrip()
            continue
        break
    return text


def _number_final(digits: str) -> int:
    significant = digits.lstrip("0")
    if not significant:
        return _DIGIT_FINAL["0"]
    zeros = len(significant) - len(significant.rstrip("0"))
    if zeros:
        return _ZEROS_FINAL.get(zeros, 4)
    return _DIGIT_FINAL[significant[-1]]


def _latin_final(word: str) -> int:
    if word.isupper() and (len(word) <= 4 or not _VOWELS & set(word.lower())):
        return _LETTER_FINAL.get(word[-1].lower(), 0)  # an acronym: the last letter's name
    w = word.lower()
    if w.endswith("ng"):
        return 21
    if w.endswith(("l", "le")):
        return RIEUL
    if w.endswith(("m", "me")):
        return 16
    if w.endswith(("n", "ne")):
        return 4
    if len(w) >= 3 and w[-1] in "tkcp" and w[-2] in _VOWELS and w[-3] not in _VOWELS:
        return {"t": 19, "k": 1, "c": 1, "p": 17}[w[-1]]  # a short vowel: 넷, 맥, 팁
    return 0


def final_consonant(text: str) -> int:
    """The final consonant (0 = none, else the index of the 종성) of the last word of `text` as it
    is read in Korean (see the module doc)."""
    text = _strip_tail(text)
    if not text:
        return 0
    last = text[-1]
    if "가" <= last <= "힣":
        return (ord(last) - 0xAC00) % 28
    if "ㄱ" <= last <= "ㅎ":
        return 21  # a bare consonant (ㅇㅇ, ㅋㅋ) reads like one with a final
    if last.isdigit():
        digits = re.search(r"\d+$", text)
        return _number_final(digits.group(0) if digits else last)
    latin = re.search(r"[A-Za-z]+$", text)
    if latin:
        return _latin_final(latin.group(0))
    if last == "%":
        return 0  # 퍼센트
    return 0


def particle(word: str, marker: str) -> str:
    """The form of `marker` ("을(를)", "(으)로", ...) that follows `word`."""
    with_final, without = _MARKERS[marker]
    final = final_consonant(word)
    if marker == "(으)로" and final == RIEUL:
        return without
    return with_final if final else without


# a one-form particle right after a number or a Latin word, standing alone ("16를 ", "resnet18로."):
# whoever wrote it could not know the value, so it is chosen again like a two-form one
_FIXED = re.compile(r"(?<=[0-9A-Za-z])(으로|로|을|를|이|가|은|는|와|과)(?=[\s.,!?;:)\]]|$)")
_FIXED_MARKER = {
    "으로": "(으)로", "로": "(으)로", "을": "을(를)", "를": "을(를)", "이": "이(가)", "가": "이(가)",
    "은": "은(는)", "는": "은(는)", "와": "와(과)", "과": "와(과)",
}  # fmt: skip


def resolve_particles(text: str) -> str:
    """Every two-form particle of `text` in the form its preceding word takes, and a one-form one
    after a number or a Latin word chosen again the same way (texts the tools wrote, "16를")."""
    text = _FIXED.sub(lambda m: _FIXED_MARKER[m.group(1)], text)
    out: list[str] = []
    pos = 0
    for m in _MARKER_RE.finditer(text):
        out.append(text[pos : m.start()])
        out.append(particle("".join(out), m.group(0)))
        pos = m.end()
    out.append(text[pos:])
    return "".join(out)


# ------------------------------------------------------------------------------------ plurals

_PLURALS = {
    "epochs": "epoch", "images": "image", "steps": "step", "classes": "class", "labels": "label",
    "files": "file", "jobs": "job", "boxes": "box", "detections": "detection", "polygons": "polygon",
    "annotations": "annotation", "runs": "run", "datasets": "dataset", "models": "model",
    "times": "time", "minutes": "minute", "seconds": "second", "parameters": "parameter",
    "instances": "instance", "batches": "batch", "items": "item", "checkpoints": "checkpoint",
}  # fmt: skip
_ONE_PLURAL = re.compile(r"(?<![\w.,/-])1 (" + "|".join(_PLURALS) + r")\b")


def singular_ones(text: str) -> str:
    """ "1 epochs" -> "1 epoch" (a count of exactly one before a plural noun)."""
    return _ONE_PLURAL.sub(lambda m: "1 " + _PLURALS[m.group(1)], text)


def plural(n: Any, noun: str, nouns: str | None = None) -> str:
    """ "1 epoch", "2 epochs" (`nouns`: an irregular plural)."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"


# ---------------------------------------------------------------------------------- settings

_PAGE_LABELS: dict[str, tuple[str, str]] = {
    # the page's own words (web/static/js/i18n.js: summary_*)
    "model_name": ("model", "모델"),
    "task_type": ("task", "작업"),
    "dataset": ("dataset", "데이터셋"),
    "epochs": ("epochs", "에폭"),
    "batch_size": ("batch size", "배치 크기"),
    "image_size": ("image size", "이미지 크기"),
    "learning_rate": ("learning rate", "학습률"),
    "optimizer": ("optimizer", "옵티마이저"),
    "nbs": ("nominal batch", "명목 배치"),
    "preset": ("preset", "프리셋"),
}
_SETTING_LABELS: dict[str, tuple[str, str]] = {
    **_PAGE_LABELS,
    "framework": ("framework", "프레임워크"),
    "class_names": ("classes", "클래스"),
    "init_from_job": ("start from job", "시작할 작업"),
    "init_checkpoint": ("checkpoint", "체크포인트"),
    "init_weights": ("your weights", "내 가중치"),
    "opt": _PAGE_LABELS["optimizer"],
    "lr": _PAGE_LABELS["learning_rate"],
    "lr0": _PAGE_LABELS["learning_rate"],
    "sched": ("learning-rate schedule", "학습률 스케줄"),
    "scheduler": ("learning-rate schedule", "학습률 스케줄"),
    "lr_scheduler_type": ("learning-rate schedule", "학습률 스케줄"),
    "cos_lr": ("cosine learning-rate schedule", "코사인 학습률 스케줄"),
    "weight_decay": ("weight decay", "가중치 감쇠"),
    "momentum": ("momentum", "모멘텀"),
    "mixup": ("mixup", "믹스업"),
    "mixup_alpha": ("mixup", "믹스업"),
    "cutmix": ("CutMix", "컷믹스"),
    "cutmix_alpha": ("CutMix", "컷믹스"),
    "mosaic": ("mosaic", "모자이크"),
    "copy_paste": ("copy-paste", "복사-붙여넣기 증강"),
    "close_mosaic": ("last epochs without mosaic", "모자이크 없이 학습할 마지막 에폭"),
    "smoothing": ("label smoothing", "라벨 스무딩"),
    "label_smoothing": ("label smoothing", "라벨 스무딩"),
    "label_smoothing_factor": ("label smoothing", "라벨 스무딩"),
    "model_ema": ("weight averaging (EMA)", "가중치 이동 평균(EMA)"),
    "warmup_epochs": ("warm-up epochs", "워밍업 에폭"),
    "patience": ("early-stopping patience", "조기 종료 대기 에폭"),
    "freeze_backbone": ("frozen backbone", "백본 고정"),
    "backbone_lr_mult": ("backbone learning-rate factor", "백본 학습률 배율"),
    "freeze": ("frozen layers", "고정할 층 수"),
    "degrees": ("rotation (degrees)", "회전 각도"),
    "translate": ("shift", "이동"),
    "scale": ("zoom", "확대/축소"),
    "fliplr": ("horizontal flip", "좌우 뒤집기"),
    "flipud": ("vertical flip", "상하 뒤집기"),
    "hsv_h": ("hue jitter", "색조 변화"),
    "hsv_s": ("saturation jitter", "채도 변화"),
    "hsv_v": ("brightness jitter", "명도 변화"),
    "amp": ("mixed precision", "혼합 정밀도"),
    "workers": ("data loader workers", "데이터 로더 작업자 수"),
}
_OFF_AT_ZERO = {
    "mixup", "mixup_alpha", "cutmix", "cutmix_alpha", "mosaic", "copy_paste", "smoothing", "label_smoothing",
    "label_smoothing_factor", "warmup_epochs", "weight_decay", "degrees", "translate", "scale", "fliplr",
    "flipud", "hsv_h", "hsv_s", "hsv_v", "close_mosaic", "freeze",
}  # fmt: skip
_VALUE_WORDS: dict[str, tuple[str, str]] = {
    "adam": ("Adam", "Adam"),
    "adamw": ("AdamW", "AdamW"),
    "sgd": ("SGD", "SGD"),
    "rmsprop": ("RMSProp", "RMSProp"),
    "auto": ("automatic", "자동"),
    "cosine": ("cosine", "코사인"),
    "constant": ("constant", "고정"),
    "linear": ("linear", "선형"),
    "step": ("step", "계단식"),
    "plateau": ("on plateau", "정체 시 감소"),
}


_PRESETS_KO = {"easy": "쉬움", "medium": "보통", "advanced": "어려움"}  # the parser's difficulty words


def preset_label(preset: str | None, lang: str | None) -> str:
    """A preset's name as the user says it: "advanced" in English, "어려움" in Korean."""
    if not preset:
        return ""
    return _PRESETS_KO.get(preset, preset) if lang == "ko" else preset


def setting_label(key: str, lang: str | None) -> str:
    """A setting's (or a request slot's) name as people read it; an unknown key with spaces."""
    pair = _SETTING_LABELS.get(key)
    if pair is None:
        return key.replace("_", " ")
    return pair[1] if lang == "ko" else pair[0]


def setting_value(key: str, value: Any, lang: str | None) -> str:
    """A setting's value in words: on/off for switches and augmentations at 0, the names of
    optimizers and schedules, short numbers."""
    ko = lang == "ko"
    if isinstance(value, bool):
        return ("켬" if value else "끔") if ko else ("on" if value else "off")
    if isinstance(value, int | float) and value == 0 and key in _OFF_AT_ZERO:
        return "끔" if ko else "off"
    if key == "preset" and isinstance(value, str):
        return preset_label(value, lang)
    if isinstance(value, str):
        pair = _VALUE_WORDS.get(value.lower())
        return (pair[1] if ko else pair[0]) if pair else value
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "/".join(str(v) for v in value)
    return str(value)


def settings_line(values: dict[str, Any], lang: str | None, limit: int = 16) -> str:
    """Settings as "label value, ..." in `lang` ("-" when there are none)."""
    items = list(values.items())[:limit]
    return ", ".join(f"{setting_label(k, lang)} {setting_value(k, v, lang)}" for k, v in items) or "-"


# ------------------------------------------------------------------------------ compatibility

CONVERSIONS: dict[str, tuple[str, str]] = {
    "dominant_class": (
        "each image is labeled with its dominant class",
        "각 이미지를 면적이 가장 큰 클래스로 분류합니다",
    ),
    "polygon_to_box": ("each polygon becomes its bounding box", "폴리곤마다 감싸는 박스로 바꿉니다"),
    "rotated_to_box": (
        "each rotated box becomes the axis-aligned box around it",
        "회전 박스마다 감싸는 축 정렬 박스로 바꿉니다",
    ),
    "keypoints_to_box": (
        "each keypoint instance becomes the box around its visible keypoints",
        "키포인트마다 보이는 점을 감싸는 박스로 바꿉니다",
    ),
    "polygon_to_rotated_box": (
        "each polygon becomes its minimum-area rotated rectangle",
        "폴리곤마다 최소 면적 회전 사각형으로 바꿉니다",
    ),
}
# what the labels that serve a task natively are called, and what a task needs
_LABELS_KO = {
    "image_classification": "이미지 단위 라벨",
    "object_detection": "박스",
    "instance_segmentation": "폴리곤",
    "oriented_object_detection": "회전 박스",
    "pose_estimation": "키포인트",
}
_NEEDS_KO = {
    "image_classification": "이미지 단위 라벨(또는 변환할 수 있는 박스·폴리곤)",
    "object_detection": "물체의 위치(박스, 폴리곤, 회전 박스 또는 키포인트)",
    "instance_segmentation": "물체마다 윤곽을 그린 폴리곤",
    "oriented_object_detection": "물체의 방향(회전 박스 또는 폴리곤)",
    "pose_estimation": "키포인트 이름과 키포인트 라벨",
}


def conversion_label(conversion: str | None, lang: str | None) -> str:
    """A conversion's name (``polygon_to_box``) in words; "" for none."""
    if not conversion:
        return ""
    pair = CONVERSIONS.get(conversion)
    if pair is None:
        return conversion.replace("_", " ")
    return pair[1] if lang == "ko" else pair[0]


def compat_reason_ko(dataset: str, tasks: dict[str, Any], task: str, status: str, conversion: str | None) -> str:
    """Why `dataset` can (natively / after `conversion`) or cannot train `task`, in Korean, from its
    per-task statuses (`tasks`: task type -> "native" | "convertible" | "incompatible")."""
    have = [_LABELS_KO[t] for t in _LABELS_KO if tasks.get(t) == "native"]
    if status == "native":
        return f"{dataset}에는 {_LABELS_KO.get(task, '라벨')}이(가) 있습니다."
    if status == "convertible":
        what = "·".join(have) or "라벨"
        return f"{dataset}의 {what}을(를) 변환해서 씁니다: {conversion_label(conversion, 'ko')}."
    need = _NEEDS_KO.get(task, "알맞은 라벨")
    if not have:
        return f"{dataset}에는 학습에 쓸 라벨이 없습니다. 먼저 라벨을 붙여 주세요."
    return f"{dataset}에는 {'·'.join(have)}만 있어 {need}이(가) 없습니다. 먼저 라벨을 추가해 주세요."


_REFUSAL_KO = {
    "model_name": "이 모델은 쓸 수 없습니다",
    "framework": "이 모델과 프레임워크 조합은 쓸 수 없습니다",
    "dataset": "이 데이터셋으로는 학습할 수 없습니다",
    "task_type": "이 작업은 이 요청으로 학습할 수 없습니다",
    "init_weights": "올린 가중치를 이 요청에 쓸 수 없습니다",
    "init_from_job": "이어서 학습할 작업을 쓸 수 없습니다",
    "init_checkpoint": "이어서 학습할 체크포인트를 쓸 수 없습니다",
}


def refusal_reason(message: str, field: str | None, lang: str | None) -> str:
    """A tool's refusal (its English `message`, about request slot `field`) for a reply in `lang`:
    as it is in English; in Korean a sentence about the slot, with the tool's own words quoted as
    code so no English clause stands in the Korean text."""
    if lang != "ko":
        return message
    if field in _REFUSAL_KO:
        head = _REFUSAL_KO[field]
    elif field in _SETTING_LABELS:
        head = f"{setting_label(field, 'ko')} 값을 쓸 수 없습니다"
    else:
        head = "요청한 설정을 쓸 수 없습니다"
    return f"{head} (서버 메시지: `{message}`)"
