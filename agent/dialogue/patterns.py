"""The words and regular expressions the dialogue recognises (yes / no, cancel, choices, and the
commands: help, list models / datasets, compatibility, inference, test runs, export, download,
metrics, progress, stop, resume, the user's weights). The parser's vocabularies are in
`agent.lexicon`; see `docs/architecture.md`.
"""

from __future__ import annotations

import re

PUNCT = re.compile(r"[^\w\s가-힣ㄱ-ㅎ]+")
# yes / no / wait words: agent.dialogue.answers
CANCEL = re.compile(r"^(?:cancel|never ?mind|forget it|abort|취소|그만|됐어|안 할래|안할래)")
ACCEPT = re.compile(
    r"\b(?:default|the default|suggested|recommended|that one|sounds good|fine)\b|기본|추천|그걸로|그거로|그대로|그렇게"
)
CHOICE = re.compile(
    r"^\s*(?:#|no\.?\s*|number\s*)?(\d{1,2})\s*(?:번째|번으로|번|st|nd|rd|th)?\s*(?:one|거|것)?\s*[.!]?\s*$"
)
BARE_INT = re.compile(r"^\s*(\d{1,5})\s*(?:번|회|epochs?|에폭|에포크)?\s*[.!]?\s*$")
JOB_REF = re.compile(r"(?:\bjob\s*#?\s*|#|작업\s*|잡\s*)(\d+)|(\d+)\s*번")
ANY_INT = re.compile(r"\b(\d+)\b")

HELP = re.compile(
    r"^\s*(?:help|\?|도움말?|도와줘|사용법|명령어?)\s*[?!.]*\s*$"
    r"|what can you do|뭘 할 수|무엇을 할 수|뭐 할 수|how do i use"
)
LIST_EN = ["what", "which", "list", "show", "have", "my", "available", "can i use"]
LIST_KO = ["목록", "뭐", "무엇", "어떤", "보여", "있어", "있나", "있니", "알려", "내", "쓸 수", "사용할 수", "가능한"]
LIST_WORDS = "|".join([*LIST_EN, *LIST_KO])
MODELS = re.compile(r"\bmodels?\b|모델")
DATASETS = re.compile(r"\bdatasets?\b|데이터\s?셋|데이터\s?세트")
LISTQ = re.compile(LIST_WORDS)
# a listing asked for in so many words ("what datasets do I have", "모델 목록"), not "the model is fine"
LISTQ_STRICT = re.compile(r"\b(?:what|which|list|show|available)\b|목록|뭐|무엇|어떤|보여|있어\?|있나|있니|알려|가능한")
COMPAT = re.compile(
    r"\bcan i\b|\bcould i\b|\bis it possible\b|\bpossible\b|\bcompatible\b|\bwork for\b|\bable to\b"
    r"|가능|될까|되나|되니|돼\?|되요|할 수 있|호환"
)
INFER = re.compile(
    r"\btest (?:it|the model|job|on)\b|\btry it\b|\bpredict|\binference\b|\bthis (?:image|picture|photo)\b"
    r"|추론|테스트|이 이미지|이 사진|예측"
)
METRICS = re.compile(r"\bmetrics?\b|\bscores?\b|\baccuracy\b|지표|메트릭|정확도|성능|결과 보여")
PROGRESS = re.compile(
    r"how(?:'s|\s+is|\s+are)?\s+(?:it|things|(?:the |my )?(?:job|training|model)(?:\s*#?\d+)?)\s+(?:going|doing)"
    r"|\bprogress\b|\bstatus\b"
    # 진행 is progress ("진행 상황", "잘 진행되고 있어?") but not "go on" ("진행해줘", "진행하자")
    r"|how far|\beta\b|진행(?!\s?(?:해|하자|하세|하십|합시|할게|하겠|하죠|시켜|ㄱ))"
    r"|상황|어떻게 되|어디까지|얼마나 남|잘 되"
)
STOP = re.compile(
    r"^\s*(?:please\s+)?stop\b|\bstop (?:it|the|job|training)\b|\bhalt\b"
    r"|\babort (?:it|the job)\b|\bkill (?:it|the job)\b"
    r"|멈춰|멈추|중지|중단해|그만해|그만 해|스톱"
)
RESUME = re.compile(r"\bresume\b|\bcontinue (?:job|training|it)\b|재개|이어서|다시 시작")
EXPORT = re.compile(r"\bonnx\b|\bexport\b|내보내|익스포트|torch\s?script|토치\s?스크립트|open\s?vino|오픈\s?비노")
# the export format a message names ("export to torchscript", "openvino로 변환"): a format this server
# does not make (tflite, TensorRT, ...) is passed on, so the user hears why not; default onnx
EXPORT_FORMAT = (
    ("torchscript", re.compile(r"torch\s?script|토치\s?스크립트|\bjit\b")),
    ("openvino", re.compile(r"open\s?vino|오픈\s?비노")),
    ("onnx", re.compile(r"onnx")),
    ("tflite", re.compile(r"tf\s?lite|tensorflow lite|텐서플로\s?라이트")),
    ("litert", re.compile(r"lite\s?rt")),
    ("saved_model", re.compile(r"saved_?model|tensorflow|텐서플로")),
    ("engine", re.compile(r"tensor\s?rt|텐서\s?rt")),
    ("coreml", re.compile(r"core\s?ml|코어\s?ml")),
    ("ncnn", re.compile(r"\bncnn")),
    ("mnn", re.compile(r"\bmnn\b")),
    ("paddle", re.compile(r"paddle")),
)


FORMAT_NAMES = {"onnx": "ONNX", "torchscript": "TorchScript", "openvino": "OpenVINO"}


def export_format(low: str) -> str:
    """The export format the (lower-cased) message names, else onnx."""
    return next((fmt for fmt, rx in EXPORT_FORMAT if rx.search(low)), "onnx")


TEST_WORD = re.compile(r"\btest(?:ing)?\b|\bevaluat|\bbenchmark|테스트|평가")
TEST_SET = re.compile(
    r"\bdata ?sets?\b|\btest ?sets?\b|\btest ?runs?\b|\brun (?:a |the )?(?:batch )?test|\bbatch\b"
    r"|데이터\s?셋|데이터\s?세트|테스트\s?셋|테스트\s?세트|배치|전체"
)
THIS_IMAGE = re.compile(r"\bthis (?:image|picture|photo)\b|이 이미지|이 사진|이미지로|사진으로")
TEST_STATUS = re.compile(
    r"\bgoing\b|\bprogress\b|\bstatus\b|\bdone\b|\bfinished\b|\bresults?\b"
    r"|진행|상황|어떻게|어때|끝났|다 됐|결과"
)
TEST_WORDS_AS_NAMES = {"test", "tests", "테스트", "평가", "the test", "test set", "testset"}
TRAIN = re.compile(r"\btrain|\bfine-?tune|학습|훈련|트레이닝|\bfit\b")
WEIGHTS_LISTQ = re.compile(r"\bwhat\b|\blist\b|\bshow\b|\bdo i have\b|목록|뭐|무엇|어떤|보여|있어|있나|있니|알려")
WEIGHTS_REF = re.compile(r"#\s*(\d+)")
