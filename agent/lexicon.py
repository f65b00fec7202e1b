"""Vocabularies and precompiled patterns for the deterministic request parser.

Words in English and Korean (with common spellings and typos), the canonical model names of contract 1
(docs/architecture.md), and the regular expressions built from them. The patterns run on *normalised* text (see
`agent.parser.normalise`): NFKC, lower case, a space between Hangul and Latin letters/digits, so
"yolo11n으로50에폭" reads "yolo11n 으로 50 에폭".

The word tables themselves (stop words, aliases, size and name maps) are package data under
`agent/lexicon_data/`: `lexicon.json` (small tables, by lower-case constant name) and one-word-a-line
`dataset_stop.txt` / `class_stop.txt`. They are read once (`functools.cache`) when this module is
imported and exposed under the same names and types as before (dict, frozenset, tuple); the
regular expressions, which are code, stay here.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

# --------------------------------------------------------------------------- word tables (agent/lexicon_data)


@functools.cache
def _data_text(name: str) -> str:
    return resources.files("agent").joinpath("lexicon_data").joinpath(name).read_text(encoding="utf-8")


@functools.cache
def _tables() -> dict[str, Any]:
    tables: dict[str, Any] = json.loads(_data_text("lexicon.json"))
    return tables


def _table(name: str) -> dict[str, Any]:
    """A mapping from `agent/lexicon_data/lexicon.json` (in the file's order)."""
    return dict(_tables()[name])


def _words(name: str) -> frozenset[str]:
    """A word set from `agent/lexicon_data/lexicon.json`."""
    return frozenset(_tables()[name])


def _tuple(name: str) -> tuple[str, ...]:
    """An ordered word list from `agent/lexicon_data/lexicon.json` (for `str.startswith`)."""
    return tuple(_tables()[name])


@functools.cache
def words_file(name: str) -> frozenset[str]:
    """The words of `agent/lexicon_data/<name>`: one a line; blank lines and lines starting with # skipped."""
    lines = (line.strip() for line in _data_text(name).splitlines())
    return frozenset(line for line in lines if line and not line.startswith("#"))


# --------------------------------------------------------------------------- numbers

# A number as people type it: 50, 0.001, .5, 3e-4, 5E-5, 3 x 10^-4, 10^-3.
NUM = r"(?:(?:\d+(?:\.\d+)?|\.\d+)(?:\s*[x×*]\s*10\s*\^\s*[-+]?\d+|e[-+]?\d+)?|10\s*\^\s*[-+]?\d+)"
# Not glued to a word, a dash or a slash on its left ("yolo11", "flowers-5", "vit-b/16", "top-5").
NUM_START = r"(?<![\w.\-/^])"

WORD_UNITS: dict[str, int] = _table("word_units")
WORD_TENS: dict[str, int] = _table("word_tens")
WORD_SCALES: dict[str, int] = _table("word_scales")
_NUMWORD = "|".join(sorted([*WORD_UNITS, *WORD_TENS, *WORD_SCALES], key=len, reverse=True))
# "fifty", "twenty-five", "one hundred", "a hundred", "two hundred and fifty"
# Korean native numbers before a counter ("서른 번", "스무 에폭", "다섯 종류"): tens and units.
KO_TENS: dict[str, int] = {
    "열": 10,
    "스물": 20,
    "스무": 20,
    "서른": 30,
    "마흔": 40,
    "쉰": 50,
    "예순": 60,
    "일흔": 70,
    "여든": 80,
    "아흔": 90,
}
KO_UNITS: dict[str, int] = {
    "하나": 1,
    "한": 1,
    "둘": 2,
    "두": 2,
    "셋": 3,
    "세": 3,
    "석": 3,
    "넷": 4,
    "네": 4,
    "넉": 4,
    "다섯": 5,
    "여섯": 6,
    "일곱": 7,
    "여덟": 8,
    "아홉": 9,
}
KO_NUMBER_RE = re.compile(
    rf"(?<![가-힣])(?P<tens>{'|'.join(KO_TENS)})?(?P<units>{'|'.join(sorted(KO_UNITS, key=len, reverse=True))})?"
    r"(?P<space>\s?)(?=(?:번|회|에폭|에포크|epochs?|장|개|가지|종류|클래스|배치)(?![가-힣]*\d))"
)
NUMBER_WORDS_RE = re.compile(
    rf"(?<![a-z])(?:a\s+(?=hundred|thousand))?(?:{_NUMWORD})(?:(?:\s+and\s+|[\s-]+)(?:{_NUMWORD}))*(?![a-z])"
)

# --------------------------------------------------------------------------- models

YOLO_SIZES: dict[str, str] = _table("yolo_sizes")
_YOLO_SIZE_ALT = (
    r"x-?large|extra[\s-]*large|xl|huge|nano|small|medium|mid|large|엑스라지|나노|스몰|미디엄|미디움|라지|[nsmlx]"
)
YOLO_RE = re.compile(
    r"(?<![a-z0-9])(?:yolo|욜로)\s*[-_]?\s*(?:v\s*)?(?P<ver>5|8|9|10|11|12|26)(?![0-9])"
    rf"(?:\s*[-_]?\s*(?P<size>{_YOLO_SIZE_ALT})(?![a-z0-9]))?"
    r"(?:u(?![a-z0-9]))?"
    r"(?:\s*[-_]\s*(?P<suf>seg|pose|cls|obb)(?![a-z0-9])|(?<=[nsmlx])(?P<suf2>seg|pose|cls|obb)(?![a-z0-9]))?"
    r"(?:\.(?:pt|yaml))?"
)
YOLO_BARE_RE = re.compile(r"(?<![a-z0-9])(?:yolo|욜로)(?![a-z0-9])")

RESNET_RE = re.compile(
    r"(?<![a-z0-9])(?:res\s*-?\s*net|레즈\s*넷|레스\s*넷|리스\s*넷|레즈넷|레스넷|리스넷)\s*[-_]?\s*"
    r"(?P<depth>18|34|50|101|152)(?![0-9])(?:[._](?:a1_in1k|tv_in1k|a1h_in1k))?"
)
RESNET_BARE_RE = re.compile(
    r"(?<![a-z0-9])(?:res\s*-?\s*net|레즈\s*넷|레스\s*넷|리스\s*넷|efficient\s*-?\s*net|eff\s*-?\s*net|이피션트\s*넷|에피션트\s*넷)(?![a-z0-9])"
)
EFFNET_RE = re.compile(
    r"(?<![a-z0-9])(?:efficient\s*-?\s*net|eff\s*-?\s*net|이피션트\s*넷|에피션트\s*넷|이피션\s*넷|에피션\s*넷)"
    r"\s*[-_]?\s*(?:v1\s*[-_]?\s*)?(?P<b>b\s*[0-7](?![0-9])|[0-7](?![0-9]))"
)
MOBILENET_RE = re.compile(
    r"(?<![a-z0-9])(?:mobile\s*-?\s*net|모바일\s*넷)(?:\s*[-_]?\s*v\s*(?P<v>[1-4]))?"
    r"(?:\s*[-_]?\s*(?P<var>large|small|라지|스몰))?(?:[_-]?(?:100|075|050))?(?![a-z0-9])"
)
CONVNEXT_RE = re.compile(
    r"(?<![a-z0-9])(?:conv\s*-?\s*next|컨브\s*넥스트|콘브\s*넥스트)"
    r"(?:\s*[-_]?\s*(?P<sz>tiny|small|base|large|타이니|스몰|베이스|[tsbl])(?![a-z0-9]))?"
)
VIT_RE = re.compile(
    r"(?<![a-z0-9])(?:vit(?![a-z]{2})|vision\s*-?\s*transformers?|비전\s*트랜스포머)"
    r"(?:\s*[-_]?\s*(?P<sz>base|small|tiny|large|huge|베이스|스몰|[bstlh])(?![a-z]))?"
    r"(?:\s*/\s*(?P<p>8|14|16|32)(?![0-9])|[-_]?\s*patch\s*(?P<p2>8|14|16|32))?(?:[-_]?(?:224|384)(?![0-9]))?"
)
DEIT_RE = re.compile(
    r"(?<![a-z0-9])deit(?![a-z]{2})(?:\s*[-_]?\s*(?P<sz>small|tiny|base|[stb])(?![a-z]))?"
    r"(?:[-_]?patch16)?(?:[-_]?224)?"
)
RTDETR_RE = re.compile(r"(?<![a-z0-9])rt\s*-?\s*detr(?:\s*[-_]?\s*(?P<sz>l|x|large|xlarge|x-large)(?![a-z0-9]))?")
DETR_RE = re.compile(
    r"(?<![a-z0-9\-])(?:detr|디텍션\s*트랜스포머|detection\s*transformers?|디티알|데트알)"
    r"(?:[-_]?resnet[-_]?50)?(?![a-z0-9])"
)
# A Hugging Face hub id: org/name where name has a digit or a separator ("cat/dog" is a class list).
HUB_RE = re.compile(r"(?<![\w/.\-])([a-z0-9][a-z0-9_.\-]{1,40})/([a-z0-9][a-z0-9_.\-]*[a-z0-9])(?![\w/\-])")

# Organisations whose org/name is taken as a hub id on sight; any other org/name ("crack/no-crack") only
# when the user calls it a model or names Hugging Face, and never over a model named elsewhere.
HUB_ORGS: frozenset[str] = _words("hub_orgs")
HUB_CALLED_BEFORE_RE = re.compile(
    r"(?:model|모델|checkpoint|weights|hub\s*id|repo(?:sitory)?|hugging\s*face|hf)\s*(?:called|named|id|is)?\s*[:=]?\s*$"
)
HUB_CALLED_AFTER_RE = re.compile(
    r"^\s*(?:model|모델|checkpoint|weights|(?:from|on)\s+(?:the\s+)?(?:hugging\s*face|hub|hf))"
)
VIT_SIZES: dict[str, str] = _table("vit_sizes")
CONVNEXT_SIZES: dict[str, str] = _table("convnext_sizes")

# timm name -> Hugging Face hub id, used when the user asks for Hugging Face / transformers.
HUB_IDS: dict[str, str] = _table("hub_ids")
DETR_HUB_ID = "facebook/detr-resnet-50"

HUB_TASK_WORDS = [
    ("object_detection", re.compile(r"detr|yolos|rtdetr|rt-detr|owlvit|owlv2")),
    ("instance_segmentation", re.compile(r"mask2former|maskformer|oneformer|segformer")),
    ("pose_estimation", re.compile(r"vitpose")),
    (
        "image_classification",
        re.compile(r"vit|resnet|convnext|deit|swin|efficientnet|mobilenet|beit|regnet|dinov2|levit|bit|cvt|poolformer"),
    ),
]

# --------------------------------------------------------------------------- frameworks

FRAMEWORK_RES = [
    ("ultralytics", re.compile(r"(?<![a-z0-9])ultralytics(?![a-z0-9])|울트라\s*리틱스|울트라\s*리틱")),
    ("timm", re.compile(r"(?<![a-z0-9])(?:timm|pytorch[\s-]*image[\s-]*models)(?![a-z0-9])")),
    (
        "transformers",
        re.compile(
            r"(?<![a-z0-9])(?:hugging\s*-?\s*face(?:\s*transformers)?|hf(?:\s*transformers)?|transformers)(?![a-z0-9])"
            r"|허깅\s*페이스|허깅\s*훼이스|트랜스포머스|🤗"
        ),
    ),
]

# --------------------------------------------------------------------------- tasks (most specific first)

_B = r"(?<![a-z0-9\-])"
_E = r"(?![a-z0-9\-])"
TASK_RES = [
    (
        "oriented_object_detection",
        re.compile(
            rf"{_B}(?:obb|oriented(?:\s*(?:bounding\s*)?box(?:es)?)?|rotated(?:\s*(?:bounding\s*)?box(?:es)?)?"
            rf"|aerial|rotation|(?:angled|tilted|slanted|skewed|slanting)\s*(?:bounding\s*)?(?:box(?:es)?|rect\w*)"
            rf"|box(?:es)?\s+(?:with|at)\s+(?:an?\s+|their\s+|the\s+)?(?:angles?|rotations?|orientations?)){_E}"
            r"|회전\s*(?:된\s*|한\s*)?(?:바운딩\s*)?(?:박스|객체|사각형|탐지|검출)|회전\s*각|항공|기울어진|비스듬"
            r"|기울기\s*(?:까지|도|를|포함)"
        ),
    ),
    (
        "pose_estimation",
        re.compile(
            rf"{_B}(?:pose|poses|keypoints?|key\s*points?|skeletons?|landmarks?|joints?|body\s*parts?){_E}"
            r"|포즈|자세|키\s*포인트|관절|스켈레톤|뼈대|랜드마크|주요\s*(?:지점|부위|점)|특징점"
        ),
    ),
    (
        "instance_segmentation",
        re.compile(
            rf"{_B}(?:segment\w*|seg|masks?|instance|outlin\w*|contours?|silhouettes?|pixel[\s-]*(?:level|wise|accurate)"
            rf"|per[\s-]*pixel|cut[\s-]*outs?){_E}"
            r"|세그멘테이션|세그먼테이션|세그|분할|마스크|인스턴스|윤곽|외곽선|테두리|픽셀\s*단위|누끼"
            r"|모양\s*(?:대로|그대로|을\s*따|을\s*따라)"
        ),
    ),
    (
        "object_detection",
        re.compile(
            rf"{_B}(?:detect\w*|bounding\s*box(?:es)?|bbox(?:es)?|boxes|locali[sz]ation|locat(?:e|es|ing)"
            rf"|(?:find|show|mark|tell\s+(?:me\s+|us\s+)?|know|see|where)\s+where"
            rf"|where\s+(?:(?:is|are)\s+)?(?:each|every|all)\s+\w+(?:\s+\w+)?\s+(?:is|are|in|on|sits?|appears?)"
            rf"|where\s+(?:is|are)\s+(?:each|every|all)|box(?:es)?\s+(?:around|on|over)|draw\w*\s+box\w*|spot(?:s|ting)?"
            rf"|(?:find|finding|finds|count|counting|counts|pick\s+out)\s+(?:[\w-]+\s+){{1,4}}?(?:in|on|within|across)\s+"
            rf"(?:[\w-]+\s+){{0,3}}?(?:images?|photos?|pictures?|pics|footage|videos?|frames?|scans?|shots?|slides?"
            rf"|feeds?|cameras?|clips?)){_E}"
            r"|탐지|검출|디텍션|디텍터|바운딩\s*박스|감지|어디\s*(?:에\s*)?(?:있|위치)"
            r"|위치\s*(?:를|가|을)?\s*(?:찾|표시|알려|파악|잡|검출|탐지)|박스\s*(?:로|를)?\s*(?:표시|쳐|치|그려|그리|잡)"
            r"|(?:사진|이미지|영상|화면|프레임|동영상)\S*\s*(?:에서|속에서|속|안에서)\s+(?:\S+\s+){0,3}?(?:\S+(?:을|를)\s*)?"
            r"(?:찾|세어|세는|잡아|잡는)|찾(?:는|아\s*내는|아내는|기)\s*(?:모델|ai|네트워크|탐지)"
        ),
    ),
    (
        "image_classification",
        re.compile(
            rf"{_B}(?:classif\w*|categori[sz]\w*"
            rf"|which\s+of\s+(?:the\s+|these\s+)?\d+\s+(?:kinds?|types?|class(?:es)?|categor\w+|species|breeds?|sorts?"
            rf"|varieties|labels?|groups?)"
            rf"|which\s+(?:kind|type|class|category|species|breed|variety|sort)\s+(?:of\s+\w+\s+)?"
            rf"(?:(?:is|are|does|do)\s+)?(?:each|every|it|this|the|an?|they)"
            rf"|(?:tell|say|decide|judge|predict|know|check)s?\s+(?:me\s+|us\s+)?(?:whether|if)\s+(?:each|every|an?|the|this)"
            rf"\s+(?:\w+[\s-]*){{0,2}}?(?:image|photo|picture|pic|x-?ray|scan|frame|shot|snapshot|item|part|product"
            rf"|sample|leaf|cell|fruit|slide)s?"
            rf"|tell\s+(?:\w+\s+){{0,2}}apart|(?:sort|separate|group|bucket)\w*\s+(?:\w+\s+){{0,6}}?into"
            rf"|label\s+(?:each|every)\s+(?:image|photo|picture)"
            rf"|(?:each|every)\s+(?:image|photo|picture|pic|x-?ray|scan)\s+(?:shows|is|belongs)"
            rf"|recogni[sz](?:e|es|ed|ing)|identify\s+(?:which|the\s+(?:species|breed|type|kind|class))"
            rf"|what\s+(?:kind|type|sort|breed|species|variety|class|category)\s+of\s+"
            rf"(?!(?:gpus?|models?|data|datasets?|jobs?|optimi[sz]ers?|schedulers?|machines?|hardware|devices?|errors?"
            rf"|files?|settings?|weights?)\s)[\w-]+\s+(?:is|are)\s+"
            rf"(?:in|on|this|that|it|each|shown)"
            rf"|(?:predict|guess|assign|determine|tell)\w*\s+(?:me\s+)?(?:the\s+)?(?:category|class|label|type|kind|species"
            rf"|breed)\s+of){_E}"
            r"|분류|클래시피케이션|클래시파이|판별|구분|구별|가려내|골라내|맞히|알아맞|맞추는\s*(?:모델|거)"
            r"|\d+\s*(?:가지|개)?\s*(?:종류|클래스|품종|카테고리)\s*(?:\S+\s*)?(?:중|가운데)"
            r"|어떤\s*(?:건지|것인지|거인지|종류|품종|클래스)|무슨\s*(?:종류|품종)|인지\s*(?:아닌지|\S+인지)"
            r"|(?:무슨|어느|어떤)\s+(?!모델|데이터|설정|작업|잡|에폭|파라미터|옵션|방법|프리셋|난이도|gpu|결과)\S+?\s*"
            r"(?:인지|에\s*속하|에\s*해당)"
        ),
    ),
]
# Task words that are often a class ("마스크 착용 여부 분류", "detect masks"): they give the task only
# when no other task word does.
WEAK_TASK_WORD_RE = re.compile(r"masks?|마스크|boxes|박스|instance|인스턴스")
YOLO_TASK_SUFFIX: dict[str, str] = _table("yolo_task_suffix")
SUFFIX_TASK: dict[str, str] = _table("suffix_task")

# --------------------------------------------------------------------------- presets

# Words that always mean a difficulty, and words that do only next to a context word.
PRESET_RE = re.compile(
    r"(?P<easy>쉬움|쉽게|쉬운|쉽|초급|초보|입문|기본|간단|(?<![a-z])(?:easy|beginners?)(?![a-z]))"
    r"|(?P<medium>보통|중간|중급|(?<![a-z])(?:medium|moderate|intermediate)(?![a-z]))"
    r"|(?P<advanced>어려움|어렵게|어려운|어렵|고급|상급|심화|숙련|전문가|(?<![a-z])(?:advanced|expert|difficult)(?![a-z]))"
    r"|(?P<easy2>(?<![a-z])(?:simple|basic|quick)(?![a-z]))"
    r"|(?P<medium2>(?<![a-z])(?:normal|standard|mid|middle|balanced)(?![a-z]))"
    r"|(?P<advanced2>(?<![a-z])(?:hard|pro|heavy)(?![a-z])|상(?=\s*난이도|\s*$))"
)
PRESET_CONTEXT_AFTER_RE = re.compile(
    r"\s*(?:difficulty|level|preset|mode|settings?|config(?:uration)?|난이도|모드|설정|수준|단계|버전|프리셋|으로|로)"
)
PRESET_CONTEXT_BEFORE_RE = re.compile(
    r"(?:difficulty|난이도|preset|level|mode|모드|at|프리셋)\s*(?:[:=]|은|는|is)?\s*$"
)

# --------------------------------------------------------------------------- hyper-parameters

KEY_FILLER = (
    r"(?:\s*(?:은|는|을|를|이|가|수|수는|수를|값|값은|값을|[:=]|of|is|to|as|around|about"
    r"|~|->|→|=>|-(?=\s)|—|set\s+to))*\s*"
)

EPOCH_KEY = (
    r"(?<![a-z0-9])(?:(?:num|n|max|total)[_\s-]?)?epochs?(?![a-z])|(?<![a-z0-9])eps?(?![a-z0-9])"
    r"|에폭스?|에포크|에퐄|에폭|이폭|학습\s*횟수|반복\s*횟수"
)
EPOCH_UNIT = r"(?:epochs?|eps?|에폭스?|에포크|에퐄|이폭)(?![a-z])"
BATCH_KEY = (
    r"(?<![a-z0-9])(?:mini[\s_-]*)?batch(?:es|[\s_-]*size)?(?![a-z])|(?<![a-z0-9])batchsize(?![a-z])"
    r"|(?<![a-z0-9])bs(?![a-z0-9])|(?:미니\s*)?배치\s*(?:사이즈|크기)?"
)
IMGSZ_KEY = (
    r"(?<![a-z0-9])(?:image|img|input)[\s_-]*(?:size|resolution|res|sz)(?![a-z])|(?<![a-z0-9])imgsz(?![a-z])"
    r"|(?<![a-z0-9])(?:resolution|res|size)(?![a-z])|(?:이미지|입력|인풋)\s*(?:크기|사이즈|해상도)|해상도"
)
LR_KEY = (
    r"(?<![a-z0-9])(?:(?:initial|base|init)[\s_-]*)?(?:learning[\s_-]*rate|lr0?)(?![a-z0-9])"
    r"|학습\s*률|러닝\s*레이트|학습\s*속도|학습률"
)
WD_KEY = (
    r"(?<![a-z0-9])(?:weight[\s_-]*decay|wd|l2(?:[\s_-]*(?:regularization|penalty))?)(?![a-z0-9])"
    r"|가중치\s*감쇠|웨이트\s*디케이|l2\s*정규화"
)
MOMENTUM_KEY = r"(?<![a-z0-9])momentum(?![a-z])|모멘텀"
WARMUP_KEY = (
    r"(?<![a-z0-9])warm[\s_-]*up(?:[\s_-]*epochs?)?(?![a-z])|(?:워밍\s*업|웜\s*업)(?:\s*(?:에폭|에포크)(?:\s*수)?)?"
)
PATIENCE_KEY = (
    r"(?:(?<![a-z0-9])early[\s_-]*stop(?:ping)?|조기\s*종료|조기\s*중단|얼리\s*스탑(?:핑)?|얼리\s*스토핑)"
    r"(?:\s*(?:patience|인내심?))?(?:\s*(?:에폭|에포크))?|(?<![a-z0-9])patience(?![a-z])|인내심?"
)
LS_KEY = r"(?<![a-z0-9])label[\s_-]*smooth(?:ing)?(?![a-z])|라벨\s*스무딩|레이블\s*스무딩"


# The loss or metric stops getting better: the cue that binds a number of epochs to `patience`.
_BETTER_VERB = (
    r"(?:improv\w*|get(?:s|ting)?\s+better|progress\w*|go(?:es)?\s+(?:up|down)|ris(?:e|es|ing)|increas\w*"
    r"|decreas\w*|drop\w*|fall\w*|budg\w*|mov(?:e|es|ing)|chang\w*)"
)
NO_IMPROVE = (
    r"(?<![a-z])(?:no|without|zero|not\s+any|w/o|with\s+no|of\s+no)\s+(?:\w+\s+)?(?:improv\w*|progress|gains?|better\w*)"
    rf"|(?:doesn'?t|does\s+not|don'?t|do\s+not|didn'?t|isn'?t|won'?t|fails?\s+to|never)\s+(?:\w+\s+)?{_BETTER_VERB}"
    r"|(?<![a-z])(?:plateau\w*|stall\w*)"
    r"|(?:개선|향상|나아지|좋아지|진전|발전)\S*\s*(?:이|가|도)?\s*(?:없|안\s*(?:되|돼|보|나)|않|멈|정체)"
    r"|(?:안|못)\s*(?:오르|올라|좋아지|좋아|줄어|줄|떨어지|나아지)|정체"
)
# The same cue with the number after it: "doesn't improve for 30 epochs", "개선이 5 에폭 동안 없으면"
NO_IMPROVE_HEAD = (
    r"(?<![a-z])(?:no|without|zero)\s+(?:\w+\s+)?(?:improv\w*|progress|gains?)"
    r"|(?:doesn'?t|does\s+not|don'?t|do\s+not|didn'?t|isn'?t|won'?t|fails?\s+to|never|stops?|stopped)\s+"
    rf"(?:\w+\s+)?{_BETTER_VERB}|(?<![a-z])(?:plateau\w*|stall\w*)"
    r"|(?:개선|향상|나아짐|진전)\s*(?:이|가)?"
    r"|(?<![a-z])(?:early[\s_-]*stop\w*|stop\w*\s+early)(?:\s+(?:after|if|when|at|on))?"
)


def kv(key: str, value: str = NUM, unit: str | None = None) -> re.Pattern[str]:
    """KEY [particles/filler] VALUE [unit]: "에폭은 40으로", "batch size of 16", "lr=3e-4"."""
    u = rf"(?P<unit>\s*{unit})?" if unit else ""
    return re.compile(rf"(?:{key}){KEY_FILLER}{NUM_START}(?P<v>{value}){u}(?!\d|\.\d)")


def vk(unit: str) -> re.Pattern[str]:
    """VALUE UNIT: "50 epochs", "50에폭", "224px" (not "the last 10 epochs")."""
    return re.compile(rf"(?<!last )(?<!final )(?<!first )(?<!마지막 ){NUM_START}(?P<v>{NUM})\s*(?:{unit})")


SIZE_VALUE = rf"{NUM}(?:\s*[x×]\s*\d+)?(?:\s*(?:px|pixels?|픽셀))?"

# Advanced keys with a value, tried before the plain epochs/batch/lr keys so that "warmup 3 epochs"
# or "patience 20 epochs" do not leave their number to `epochs`.
ADVANCED_NUMERIC = [
    (
        "warmup_epochs",
        [
            kv(WARMUP_KEY, NUM, EPOCH_UNIT),
            re.compile(
                rf"{NUM_START}(?P<v>{NUM})\s*(?:{EPOCH_UNIT})?\s*(?:(?:of|as|for|동안|은|는|을|를|으로|로)\s*)?"
                rf"(?:the\s+|a\s+)?(?:lr\s+|learning\s+rate\s+|학습률\s*)?(?:{WARMUP_KEY})"
            ),
            # "warm up for the first 3 epochs", "warmup over 5 epochs", "처음 2 에폭은 워밍업"
            re.compile(
                rf"(?:{WARMUP_KEY})\s*(?:\w+\s+){{0,3}}?(?:for|during|over|in|across)\s+(?:the\s+)?(?:first\s+)?"
                rf"{NUM_START}(?P<v>{NUM})\s*(?:{EPOCH_UNIT})"
            ),
            re.compile(
                rf"(?:처음|첫|초반|앞의?)\s*{NUM_START}(?P<v>{NUM})\s*(?:{EPOCH_UNIT}|번|회)\s*(?:은|는|동안|까지|을|를)?\s*"
                rf"(?:\S+\s*)?(?:{WARMUP_KEY})"
            ),
        ],
    ),
    (
        "patience",
        [
            kv(PATIENCE_KEY, NUM, rf"(?:{EPOCH_UNIT}|번|회)"),
            # "12 epochs without improvement", "15 epochs bring no improvement", "10 에폭 동안 개선 없으면"
            re.compile(
                rf"{NUM_START}(?P<v>\d+)\s*(?:more\s+|consecutive\s+)?(?:{EPOCH_UNIT}|rounds?|번|회)\s*"
                rf"(?:(?:in\s+a\s+row|straight|동안|연속(?:으로)?|이상|내내|째)\s*)?(?:[^\s,;.]+\s*){{0,2}}?"
                rf"(?:{NO_IMPROVE})"
            ),
            # "7 bad epochs", "5 stale epochs"
            re.compile(rf"{NUM_START}(?P<v>\d+)\s+(?:bad|stale|flat|idle|wasted|dead|useless)\s+(?:{EPOCH_UNIT})"),
            # "doesn't improve for 30 epochs", "no improvement in the last 10 epochs", "개선이 5 에폭 동안 없으면"
            re.compile(
                rf"(?:{NO_IMPROVE_HEAD})\s*(?:[^\s,;.\d]+\s*){{0,3}}?(?:(?:for|in|within|after|over|during)\s+)?"
                rf"(?:the\s+)?(?:last\s+|next\s+)?{NUM_START}(?P<v>\d+)\s*(?:consecutive\s+)?"
                # the unit may be left out when the number ends the clause ("no improvement for 5")
                rf"(?:{EPOCH_UNIT}|rounds?|번|회|(?=\s*(?:$|[,;.!)]|and\s|then\s)))"
                r"(?:\s*(?:동안|연속(?:으로)?|이상|내내)?\s*(?:없|안|않|멈|정체))?"
            ),
        ],
    ),
    ("weight_decay", [kv(WD_KEY)]),
    ("momentum", [kv(MOMENTUM_KEY)]),
    ("label_smoothing", [kv(LS_KEY)]),
]

# A setting named right before a word ("학습률은 기본으로", "batch size normal"): the word is that setting's value.
SETTING_BEFORE_RE = re.compile(
    rf"(?:{LR_KEY}|{BATCH_KEY}|{EPOCH_KEY}|{IMGSZ_KEY}|optimi[sz]er|옵티마이저|스케줄러|scheduler)"
    r"\s*(?:은|는|을|를|도|이|가|[:=]|is|at|to)?\s*$"
)
CORE_KV = [
    ("batch_size", kv(BATCH_KEY)),
    ("learning_rate", kv(LR_KEY)),
    ("image_size", kv(IMGSZ_KEY, SIZE_VALUE)),
    ("epochs", kv(EPOCH_KEY, NUM, r"(?:번|회|times)")),
]
CORE_VK = [
    ("epochs", vk(EPOCH_UNIT)),
    ("epochs", re.compile(rf"{NUM_START}(?P<v>\d+)\s*(?:번|회)\s*(?:학습|반복|돌려|돌리|훈련|정도\s*(?:학습|돌려))")),
    ("image_size", re.compile(rf"{NUM_START}(?P<v>\d+)\s*(?:px|pixels?|픽셀)(?![a-z])")),
    ("image_size", re.compile(rf"{NUM_START}(?P<v>\d+)\s*[x×]\s*(?P=v)(?![\d.])")),
    ("batch_size", re.compile(rf"{NUM_START}(?P<v>\d+)\s*(?:(?:images?|samples?|장)\s*)?(?:per|a|/)\s*batch(?![a-z])")),
    # "16 batch", "16 배치", "16장씩", "한 번에 16장"
    ("batch_size", re.compile(rf"{NUM_START}(?P<v>\d+)\s*(?:batch(?!e)(?![a-z])|배치(?!\s*\d))")),
    ("batch_size", re.compile(rf"(?:1\s*번에|한\s*번에|배치당)\s*{NUM_START}(?P<v>\d+)\s*(?:장|개)")),
    ("batch_size", re.compile(rf"{NUM_START}(?P<v>\d+)\s*(?:장|개)씩")),
    # "3 passes over the data", "go through the data 25 times"
    ("epochs", re.compile(rf"{NUM_START}(?P<v>\d+)\s*(?:full\s+)?(?:passes|pass|sweeps)(?![a-z])")),
    (
        "epochs",
        re.compile(
            rf"(?:through|over)\s+(?:the\s+)?(?:whole\s+|entire\s+|training\s+)?(?:data(?:set)?|images|training\s+set)\s+"
            rf"{NUM_START}(?P<v>\d+)\s*times"
        ),
    ),
    (
        "image_size",
        re.compile(
            r"(?<![a-z])(?:이미지|image|img|input|입력|인풋)(?:s|는|은)?\s+(?P<v>\d{2,4})(?![\d.])"
            r"(?!\s*(?:장|개|매|건|번|images?|photos?|pictures?|pics?|samples?|files?|per|epochs?|에폭|batch|배치|classes|클래스))"
        ),
    ),
    # "512 해상도", "224 resolution", "320 input size"
    (
        "image_size",
        re.compile(
            rf"{NUM_START}(?P<v>\d{{2,4}})(?:\s*[x×]\s*\d{{2,4}})?\s*(?:해상도|resolution|res(?![a-z])|input\s*size"
            r"|image\s*size|이미지\s*(?:크기|사이즈))"
        ),
    ),
    # glued: "lr0.002", "lr3e-4", "bs32", "batch16", "ep20", "epochs20", "imgsz640", "img512"
    ("learning_rate", re.compile(r"(?<![a-z])(?:lr|learning_rate)(?P<v>\d*\.\d+(?:e-?\d+)?|\d+e-?\d+)(?![\d.])")),
    ("batch_size", re.compile(r"(?<![a-z])(?:bs|batch|batch_size)(?P<v>\d+)(?![\d.a-z])")),
    ("epochs", re.compile(r"(?<![a-z])(?:epochs?|ep|eps)(?P<v>\d+)(?![\d.a-z])")),
    ("image_size", re.compile(r"(?<![a-z])(?:imgsz|img|img_size|image_size)(?P<v>\d{2,4})(?![\d.a-z])")),
    # "... at 640" / "at 224 resolution": a 3-4 digit size after "at"
    ("image_size", re.compile(r"(?<![a-z])at\s+(?P<v>\d{3,4})(?:\s*(?:px|pixels?|resolution|res))?(?![\d.a-z])")),
]

# --------------------------------------------------------------------------- optimizer / scheduler

OPTIMIZER_RE = re.compile(
    r"(?<![a-z])(?P<adamw>adam\s*-?\s*w(?![a-z])|아담\s*(?:w|더블유))"
    r"|(?<![a-z])(?P<adam>adam(?![a-z])|아담)"
    r"|(?<![a-z])(?P<sgd>sgd(?![a-z])|에스지디)"
    r"|(?<![a-z])(?P<rmsprop>rms\s*-?\s*prop(?![a-z])|알엠에스\s*프롭)"
)
_SCHED_WORD = r"(?:lr\s*)?(?:schedul\w*|스케줄\w*|스케쥴\w*|decay|annealing|감소|감쇠)"
SCHEDULER_RES = [
    (
        "cosine",
        re.compile(
            r"(?<![a-z])cos(?:ine)?(?:[\s_-]*(?:annealing|anneal|lr))?(?:\s*" + _SCHED_WORD + r")?(?![a-z])"
            r"|코사인(?:\s*" + _SCHED_WORD + r")?"
        ),
    ),
    (
        "plateau",
        # the noun only: "loss plateaus for 8 epochs" is early stopping (patience)
        re.compile(
            r"(?:reduce[\s_-]*(?:lr[\s_-]*)?on[\s_-]*)?plateau(?![a-z])(?:\s*" + _SCHED_WORD + r")?|플래토|플라토"
        ),
    ),
    (
        "step",
        re.compile(
            r"(?<![a-z])(?:step[\s_-]*lr|multi[\s_-]*step(?:[\s_-]*lr)?)(?![a-z])"
            r"|(?<![a-z])step(?:[\s_-]*(?:wise|based))?\s*" + _SCHED_WORD + r"|스텝\s*" + _SCHED_WORD
        ),
    ),
    (
        "linear",
        re.compile(
            r"(?<![a-z])linear[\s_-]*lr(?![a-z])|(?<![a-z])linear(?:ly)?\s*"
            + _SCHED_WORD
            + r"|(?:선형|리니어)\s*(?:"
            + _SCHED_WORD
            + r"|감소)"
        ),
    ),
]
SCHEDULER_KEY_RE = re.compile(
    r"(?:lr[\s_-]*)?(?:scheduler|schedule|스케줄러|스케쥴러|스케줄|스케쥴)\s*(?:은|는|을|를|[:=]|to|is)?\s*"
    r"(?P<name>cosine|코사인|step|스텝|plateau|플래토|linear|선형|리니어)"
)
SCHEDULER_NAMES: dict[str, str] = _table("scheduler_names")

# --------------------------------------------------------------------------- pretrained weights

# "is it pretrained?", "from scratch?", "사전학습 됐어?", "프리트레인 가중치 써?"
PRETRAINED_Q_RE = re.compile(
    r"(?<![a-z])pre[\s-]?trained(?![a-z])|(?<![a-z])from\s+scratch\s*\?|(?<![a-z])which\s+weights(?![a-z])"
    r"|사전\s*학습|프리\s*트레(?:인|이닝)|처음부터\s*학습(?:하|해|했|됐|되)\S*\s*\?"
)

# "freeze the backbone", "backbone frozen", "백본 고정", "백본은 동결해줘" -> advanced_config freeze_backbone
FREEZE_BACKBONE_RE = re.compile(
    r"(?<![a-z])(?:freez(?:e|ing)\s+(?:the\s+|its\s+)?backbone|backbone\s+(?:is\s+)?frozen"
    r"|backbone\s+freez(?:e|ing))(?![a-z])"
    r"|백본\s*(?:은|는|을|를)?\s*(?:고정|동결|얼려|얼리|프리즈)"
)

# --------------------------------------------------------------------------- augmentations

AUG_RE = re.compile(
    r"(?P<mixup>(?<![a-z])mix[\s_-]*up(?![a-z])|믹스\s*업)"
    r"|(?P<cutmix>(?<![a-z])cut[\s_-]*mix(?![a-z])|컷\s*믹스)"
    r"|(?P<mosaic>(?<![a-z_])mosaic(?![a-z])|모자이크)"
    r"|(?P<copy_paste>(?<![a-z])copy[\s_-]*(?:and[\s_-]*)?paste(?![a-z])|카피\s*페이스트|복사\s*붙여\s*넣기)"
)
_AUG_TAIL = (
    r"(?:\s*(?:augmentations?|augment|aug|증강|기법))?"
    r"(?:\s*(?:은|는|을|를|이|가|도|둘\s*다|모두|다|both|all|as\s+well))*"
)
AUG_AFTER_NUM_RE = re.compile(rf"{_AUG_TAIL}\s*(?:[:=]|to|of|값|확률|prob(?:ability)?)?\s*(?P<v>{NUM})(?![\d.])")
AUG_AFTER_CUE_RE = re.compile(
    rf"{_AUG_TAIL}\s*(?:"
    r"(?P<off>off(?![a-z])|false(?![a-z])|disabled?(?![a-z])|no(?![a-z])|none(?![a-z])|꺼|끄|끈|빼|제외|없이|비활성|사용\s*(?:안|하지|x|금지)|안\s*(?:써|씀|함|해|쓰)|미사용|x(?![a-z]))"
    r"|(?P<on>on(?![a-z])|true(?![a-z])|enabled?(?![a-z])|yes(?![a-z])|켜|킨|사용|적용|활성|추가|넣어|포함|써|쓰|o(?![a-z])))"
)
AUG_BEFORE_OFF_RE = re.compile(
    r"(?:(?<![a-z])(?:no|without|disable|disabled|turn\s*off|switch\s*off|skip|remove|drop|w/o|exclude|stop|close)"
    r"|don'?t\s*use|do\s*not\s*use|not\s*use|no\s*use\s*of)\s*(?:the|any)?\s*$"
)
AUG_BEFORE_ON_RE = re.compile(
    r"(?:(?<![a-z])(?:use|enable|enabled|with|turn\s*on|switch\s*on|add|apply|using|plus|include)|\+)\s*(?:the|some)?\s*$"
)
AUG_CONJ_RE = re.compile(r"^\s*(?:,|and|&|\+|/|랑|이랑|와|과|하고|및|그리고|or|,\s*and)\s*$")

# --------------------------------------------------------------------------- datasets

DS_TOKEN = r"[a-z0-9가-힣][\w.\-]*[\w]|[a-z0-9가-힣]"
DATASET_WORD = r"(?:data\s*-?\s*set|데이터\s*셋|데이타\s*셋)"
DS_BEFORE_RE = re.compile(rf"(?<![\w\-.])(?P<ds>{DS_TOKEN})\s*(?:{DATASET_WORD})(?![a-z])")
DS_AFTER_RE = re.compile(
    rf"(?:{DATASET_WORD}s?(?![a-z])|(?<![a-z])data(?=\s*[:=])|데이터(?=\s*(?:는|은|:|=))|데이타(?=\s*(?:는|은)))"
    r"(?P<filler>(?:\s*(?:named|called|id|name|이름은|이름|이름이|는|은|[:=]|is|#|no\.?|number|번호))*)\s*"
    rf"(?P<ds>{DS_TOKEN})"
)
# "데이터 road_signs로", "데이터 weld-v2 사용": a Latin name right after a bare 데이터 with a particle or a use verb
DS_KO_DATA_AFTER_RE = re.compile(
    r"(?:데이터|데이타)\s+(?P<ds>[a-z0-9][a-z0-9_.\-]*[a-z0-9]|[a-z])"
    r"(?=\s*(?:으로|로|를|을|에서|에|만|사용|써|쓰|이용|가지고|갖고|$|[,.!]))"
)
DS_DATA_RE = re.compile(rf"(?<![\w\-.])(?P<ds>{DS_TOKEN})\s*(?:데이터|데이타)(?:로|으로|를|을|에서|에|만)")
DS_EN_DATA_RE = re.compile(rf"(?<![\w\-.])(?P<ds>{DS_TOKEN})\s+data(?![a-z])")
DS_PREP_RE = re.compile(
    rf"(?<![a-z])(?P<prep>on|in|using|with|from|over)\s+(?:(?:the|my|our|your|this)\s+)?(?P<ds>{DS_TOKEN})"
)
DS_FOLLOWED_BY_NOUN_RE = re.compile(
    r"\s*(?:images?|photos?|pictures?|pics?|videos?|footage|frames?|gpus?|cpus?)(?![a-z])"
)
QUOTED_RE = re.compile(r"([\"'`])([^\"'`\x00]{1,80}?)\1")
KNOWN_DATASETS: frozenset[str] = _words("known_datasets")
DATASET_STOP: frozenset[str] = words_file("dataset_stop.txt")
HYPHEN_STOP = re.compile(
    r"^(?:fine-?tun\w*|pre-?train\w*|re-?train\w*|state-of-the-art|real-time|multi-\w+|early-stop\w*|step-by-step"
    r"|x-large|extra-large|cross-\w+|one-cycle|warm-up|mixed-precision|half-precision|\w+-supervised"
    r"|hyper-?param\w*|anchor-\w+|one-stage|two-stage|high-\w+|low-\w+|in-house|open-source|off-the-shelf"
    r"|end-to-end|long-tail\w*|well-\w+|up-to-date|k-fold|non-\w+|self-\w+|semi-\w+|auto-\w+|re-\w+|pre-\w+"
    r"|post-\w+|sub-\w+|over-\w+|under-\w+|light-?weight|t-shirts?|x-rays?|e-\w+|learning-rate|batch-size|image-size|copy-paste|cut-mix|mix-up|follow-up|e-mail|set-up"
    r"|top-\d+|fp\d+|bf\d+|int\d+|v\d+|b\d|x\d+|\d+x|\d+e-?\d+|\d+(?:px|gb|mb|k)|rtx\d*|gtx\d*|[ahtv]\d+|cuda\d*"
    r"|sm\d+|p\d+|e\d+|ep\d+|step\d*|s\d|gpu\d*|cpu\d*|\d+(?:st|nd|rd|th))$"
)

# --------------------------------------------------------------------------- class names

CLASS_STOP: frozenset[str] = words_file("class_stop.txt")
# Stop words that are class names inside a written list ("two classes, good and bad", "ok/ng")
CLASS_OK_IN_LIST: frozenset[str] = _words("class_ok_in_list")
CLASS_STOP_PREFIX_KO: tuple[str, ...] = _tuple("class_stop_prefix_ko")
KO_OBJECT_PARTICLES: tuple[str, ...] = _tuple("ko_object_particles")
# Nouns whose last syllable is 이, so "고양이랑" is 고양이 + 랑 (not 고양 + 이랑).
KO_NOUNS_ENDING_I: frozenset[str] = _words("ko_nouns_ending_i")
LIST_SEPS: frozenset[str] = _words("list_seps")
FORWARD_TRIGGERS_SINGLE: frozenset[str] = _words("forward_triggers_single")
FORWARD_TRIGGERS_MULTI: frozenset[str] = _words("forward_triggers_multi")
FOR_HEADS_SINGLE: frozenset[str] = _words("for_heads_single")
FOR_HEADS_MULTI: frozenset[str] = _words("for_heads_multi")
CLASS_LIST_HEADS: frozenset[str] = _words("class_list_heads")
BACKWARD_TRIGGERS_SINGLE: frozenset[str] = _words("backward_triggers_single")
BACKWARD_TRIGGERS_MULTI: frozenset[str] = _words("backward_triggers_multi")
KO_BACKWARD_SINGLE: tuple[str, ...] = _tuple("ko_backward_single")
KO_BACKWARD_MULTI: tuple[str, ...] = _tuple("ko_backward_multi")
# "sort photos into a, b and c": verbs whose "into" opens a class list
SORT_VERBS: frozenset[str] = _words("sort_verbs")
# Endings of a Korean modifier that stands between a list and its trigger ("자전거를 찾는 탐지")
KO_ADNOMINAL_ENDS: tuple[str, ...] = _tuple("ko_adnominal_ends")
# The parser masks what it has read with NUL characters of the same width (`agent.parser`).
MASK = "\x00"
# "classes: a, b" / "라벨은 a, b": what stands right before the first item of an explicit class list
CLASS_HEAD_BEFORE_RE = re.compile(
    r"(?:classes|class|labels?|categories|클래스(?:들)?|라벨|레이블|카테고리)\s*(?:are|is|:|=|은|는)?\s*[:=]?\s*$"
)
SENTENCE_PUNCT = {".", "?", "!", ";", "(", ")"}
TOKEN_RE = re.compile(r"\x00+|[a-z가-힣ㄱ-ㅎ][\w'\-]*|\d+(?:\.\d+)?|vs\.|[,/&+:;?!.()、]|\S")

# --------------------------------------------------------------------------- language

HANGUL_RE = re.compile(r"[\uac00-\ud7a3\u3131-\u318e]")

# --------------------------------------------------------------------------- fine-tuning source

# "starting from job 12", "fine-tune job 12 on X", "init from the last checkpoint of job #12",
# "with job 12's best weights", "train ... from job 12"; "12번 작업 모델로 이어서 학습",
# "작업 12의 마지막 체크포인트에서 시작", "12번 잡 가중치로 파인튜닝". Group `id` is the job, `ck`/`ck2`
# the checkpoint word when one is said (best/last).
_CK_EN = r"best|last|final|latest"
_CK_WORD_EN = r"(?:checkpoint|ckpt|weights?|model)"
_JOB_EN = r"(?:(?:training|earlier|previous)\s+)?job\s*(?:#|no\.?|number|id)?\s*(?P<id>\d+)(?![\d.])"
_CK_BEFORE_EN = rf"(?:(?P<ck>{_CK_EN})\s+{_CK_WORD_EN}\s+(?:of|from)\s+(?:the\s+)?)?"
_CK_AFTER_EN = rf"(?:\s*(?:'s|s)?\s+(?:(?P<ck2>{_CK_EN})(?:\.pt)?(?:\s+{_CK_WORD_EN})?|{_CK_WORD_EN}))?"
INIT_JOB_EN_RES = [
    # start/initialise/warm-start/build/base ... from|on|off|with job 12
    re.compile(
        rf"(?<![a-z])(?:start\w*|init\w*|warm[\s-]?start\w*|build\w*|based|transfer\w*)\s+(?:\w+\s+)?"
        rf"(?:from|on|off|with|of)\s+(?:the\s+)?(?:top\s+of\s+)?{_CK_BEFORE_EN}{_JOB_EN}{_CK_AFTER_EN}"
    ),
    # fine-tune (from|on) job 12
    re.compile(
        rf"(?<![a-z])(?:fine[\s-]?tun\w*|finetun\w*)\s+(?:(?:from|on)\s+)?(?:the\s+)?{_CK_BEFORE_EN}{_JOB_EN}{_CK_AFTER_EN}"
    ),
    # (the best) weights|model|checkpoint of|from job 12
    re.compile(rf"(?<![a-z])(?:(?P<ck>{_CK_EN})\s+)?{_CK_WORD_EN}\s+(?:of|from)\s+(?:the\s+)?{_JOB_EN}"),
    # job 12's (best) model|weights|checkpoint
    re.compile(rf"{_JOB_EN}\s*'s\s+(?:(?P<ck>{_CK_EN})(?:\.pt)?\s+)?{_CK_WORD_EN}"),
]
# "from job 12" / "using job 12": only in a message that asks to train (`INIT_TRAIN_CUE_RE`)
INIT_JOB_FROM_RE = re.compile(rf"(?<![a-z])(?:from|using|use)\s+(?:the\s+)?{_CK_BEFORE_EN}{_JOB_EN}{_CK_AFTER_EN}")
INIT_TRAIN_CUE_RE = re.compile(r"(?<![a-z])(?:train|fine[\s-]?tun|finetun|fit)|학습|훈련|파인\s*튜닝|트레이닝")

_CK_KO = r"베스트|best|최고|최적|가장 좋은|마지막|최종|last|final|latest"
_CK_WORD_KO = r"(?:모델|가중치|체크포인트|웨이트|weights?|checkpoint|model)"
_INIT_CUE_KO = (
    r"(?:부터|에서부터|에서|으로|로|을|를)?\s*"
    r"(?:시작|파인\s*튜닝|미세\s*조정|초기화|기반으로|가져와|불러와|써서|사용|이용)"
)
_INIT_AFTER_KO = (
    rf"\s*(?:의\s*)?(?:(?P<ck>{_CK_KO})(?:\.pt)?\s*)?"
    rf"(?:{_CK_WORD_KO}\s*(?:을|를|로|으로|에서|부터|에서부터)?\s*(?:이어서|이어|을\s*|를\s*)?\s*|{_CK_WORD_KO}?\s*)"
    rf"{_INIT_CUE_KO}?"
)
INIT_JOB_KO_RES = [
    # 12번 작업 (의 best) 모델로 이어서 / 에서 시작 / 로 파인튜닝
    re.compile(rf"(?<![\d.])(?P<id>\d+)\s*번\s*(?:작업|잡|job|학습|실험)(?P<rest>{_INIT_AFTER_KO})"),
    # 작업 12 (번) 의 마지막 체크포인트에서 시작
    re.compile(rf"(?:작업|잡|job)\s*(?:#|번호)?\s*(?P<id>\d+)(?![\d.])\s*(?:번)?(?P<rest>{_INIT_AFTER_KO})"),
]
INIT_KO_CONFIRM_RE = re.compile(
    rf"{_CK_WORD_KO}\s*(?:을|를|로|으로|에서|부터)?\s*(?:이어서|이어)|시작|파인\s*튜닝|미세\s*조정|초기화|기반|가져와|불러와"
    rf"|{_CK_WORD_KO}\s*(?:을|를|로|으로)\s*(?:써서|사용|이용)"
)
INIT_LAST_WORDS: frozenset[str] = _words("init_last_words")

# ------------------------------------------------------------------ downloads (chat commands)

# "download the best model", "give me a download link", "최고 모델 다운로드", "모델 내려받기", "체크포인트 받을래"
DOWNLOAD_RE = re.compile(
    r"(?<![a-z])(?:download|down\s*load)|(?<![a-z])(?:get|give me|send me)\s+(?:me\s+)?(?:a\s+|the\s+)?"
    r"(?:download\s+)?link|다운\s*로드|다운\s*받|내려\s*받|다운\s*링크|(?:모델|체크포인트|가중치|카드)\s*(?:파일\s*)?(?:을|를)?\s*받"
)
# which file: the model card, else last.pt when named, else best.pt
MODEL_CARD_RE = re.compile(r"(?<![a-z])model[\s_-]*card|모델\s*카드")
LAST_CHECKPOINT_RE = re.compile(r"(?<![a-z])(?:last|latest|final)(?![a-z])|마지막|최종")

# ------------------------------------------------------------ the user's own uploaded weights

# "use my weights", "with my own weights", "start from my uploaded weights", "my weights #3",
# "my weights file 3"; "내 가중치로", "제 가중치로 학습", "내가 올린 가중치 3번으로", "업로드한 웨이트로".
# -> TrainingIntent.init_weights: the number when one is said (the upload's id), else "mine".
# Group `id` is the number.
_MY_WEIGHTS_ID_EN = r"(?:\s+(?:file\s+)?(?:#|no\.?|number|id)?\s*(?P<id>\d+)(?![\d.]))?"
MY_WEIGHTS_EN_RE = re.compile(
    r"(?<![a-z])(?:(?:my|our)\s+(?:own\s+)?(?:uploaded\s+|custom\s+)?"
    r"(?:weights?(?:\s+file)?|weight\s+file|\.?safetensors(?:\s+file)?)|the\s+weights\s+i\s+uploaded)"
    rf"{_MY_WEIGHTS_ID_EN}(?![a-z])"
)
MY_WEIGHTS_KO_RE = re.compile(
    r"(?:내|제|나의|저의|내가\s*(?:올린|업로드한)|제가\s*(?:올린|업로드한)|(?<![가-힣])업로드한)\s*"
    r"(?:가중치|웨이트|weights?)(?:\s*파일)?"
    r"(?:\s*(?:#|번호)?\s*(?P<id>\d+)(?![\d.])\s*번?)?"
)
