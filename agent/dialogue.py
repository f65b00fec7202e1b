"""The deterministic brain: a state machine over a persisted chat session (issue 5).

States (``ChatSession.state``)::

    idle        nothing asked; a training request starts `collecting`
    collecting  a TrainingIntent is being completed; `pending` names the slot asked for
                (dataset, task, model, epochs, or fix_compat after an incompatible dataset)
    confirming  the summary was shown; waiting for yes / no / a correction
    launched    a job was started (`job_ids`); questions about it are answered, a new request
                starts `collecting` again

One turn (`respond`):

1. yes / no while confirming (예/네/응/좋아/시작/yes/y/ok/go vs 아니/no/cancel/취소); "cancel" while
   collecting drops the request;
2. questions and commands, in any state: help, "what models can I use?", "what datasets do I
   have?", "can I train detection on digits?", "test it on this image", "show metrics",
   "how is it going?", "stop it", "resume job 15" (a reminder of the pending question follows);
3. an answer to the pending question (a bare dataset name, a number from the suggestions, "yes"
   to a proposed default, a bare number of epochs);
4. a training request or a correction: `extract_slots` of the message merged into the intent
   ("에폭은 30으로", "use yolo11s instead" — a new model drops the old model's task/framework);
5. then the next missing slot is asked, ONE question at a time with concrete suggestions, in the
   order dataset, task (when neither the model nor the dataset's labels imply it), model (the
   task's default and why), epochs (the preset's default, said to be a default), and finally the
   confirmation summary from `tools.jobs.create_job(..., launch=False)` (the preset resolved into
   hyper-parameters by the adapter, "a snapshot will be taken at launch", an estimated duration).

Every tools call runs as the chat's user (`ToolContext`), so a dataset the user may not see is
"not found" exactly like REST. Replies are in the language of the message (`detect_language`; a
lone name or number keeps the conversation's language).

Duration estimate: `tools.estimates.estimate_duration` (a range from the measured speed of earlier
jobs of the same kind on this machine, else scaled from other jobs or a calibrated prior), with
what it is based on, in the summary (``estimate``) and the reply.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from agent import replies as R
from agent.lexicon import (
    DOWNLOAD_RE,
    LAST_CHECKPOINT_RE,
    MODEL_CARD_RE,
    MY_WEIGHTS_EN_RE,
    MY_WEIGHTS_KO_RE,
    PRETRAINED_Q_RE,
)
from agent.parser import detect_language, extract_slots, normalise
from agent.toolkit import (
    InferenceScope,
    dataset_info,
    datasets_for,
    download_link,
    export_onnx,
    job_progress,
    latest_completed_job,
    list_visible_datasets,
    predict_image,
    start_test_run,
    test_run_status,
)
from tools import catalog, jobs, user_weights
from tools import weights as weights_tools
from tools.context import ToolContext
from tools.datasets import check_dataset_compatibility
from tools.db.models import ChatSession
from tools.errors import ConflictError, InvalidInputError, NotFoundError, ToolError
from tools.estimates import estimate_duration
from tools.intent import TrainingIntent
from trainer_runtime.formats.schema import TASK_TYPES

STATES = ("idle", "collecting", "confirming", "launched")
TERMINAL = ("completed", "failed", "stopped")

_PUNCT = re.compile(r"[^\w\s가-힣ㄱ-ㅎ]+")
_YES_EN = {"yes", "y", "yeah", "yep", "yup", "ok", "okay", "sure", "go", "start", "launch", "confirm", "proceed"}
_YES_KO = re.compile(
    r"^(?:네|넵|예|응|웅|ㅇㅇ|ㅇㅋ|좋아|좋습니다|좋네|시작|그래|오케이|진행|고)"
    r"(?:요|해|해요|해줘|해주세요|합니다|하자|시켜|시켜줘|하세요|할게|죠)?$"
)
_NO_EN = {"no", "n", "nope", "nah", "cancel", "abort", "stop", "don't", "dont"}
_NO_KO = re.compile(r"^(?:아니|아뇨|아니요|아니오|아니야|취소|싫어|안돼|안 돼|그만|멈춰|중지|하지마|노)")
_CANCEL = re.compile(r"^(?:cancel|never ?mind|forget it|abort|취소|그만|됐어|안 할래|안할래)")
_ACCEPT = re.compile(
    r"\b(?:default|the default|suggested|recommended|that one|sounds good|fine)\b|기본|추천|그걸로|그거로|그대로|그렇게"
)
_CHOICE = re.compile(
    r"^\s*(?:#|no\.?\s*|number\s*)?(\d{1,2})\s*(?:번째|번으로|번|st|nd|rd|th)?\s*(?:one|거|것)?\s*[.!]?\s*$"
)
_BARE_INT = re.compile(r"^\s*(\d{1,5})\s*(?:번|회|epochs?|에폭|에포크)?\s*[.!]?\s*$")
_JOB_REF = re.compile(r"(?:\bjob\s*#?\s*|#|작업\s*|잡\s*)(\d+)|(\d+)\s*번")
_ANY_INT = re.compile(r"\b(\d+)\b")

_HELP = re.compile(
    r"^\s*(?:help|\?|도움말?|도와줘|사용법|명령어?)\s*[?!.]*\s*$"
    r"|what can you do|뭘 할 수|무엇을 할 수|뭐 할 수|how do i use"
)
_LIST_EN = ["what", "which", "list", "show", "have", "my", "available", "can i use"]
_LIST_KO = ["목록", "뭐", "무엇", "어떤", "보여", "있어", "있나", "있니", "알려", "내", "쓸 수", "사용할 수", "가능한"]
_LIST_WORDS = "|".join([*_LIST_EN, *_LIST_KO])
_MODELS = re.compile(r"\bmodels?\b|모델")
_DATASETS = re.compile(r"\bdatasets?\b|데이터\s?셋|데이터\s?세트")
_LISTQ = re.compile(_LIST_WORDS)
_COMPAT = re.compile(
    r"\bcan i\b|\bcould i\b|\bis it possible\b|\bpossible\b|\bcompatible\b|\bwork for\b|\bable to\b"
    r"|가능|될까|되나|되니|돼\?|되요|할 수 있|호환"
)
_INFER = re.compile(
    r"\btest (?:it|the model|job|on)\b|\btry it\b|\bpredict|\binference\b|\bthis (?:image|picture|photo)\b"
    r"|추론|테스트|이 이미지|이 사진|예측"
)
_METRICS = re.compile(r"\bmetrics?\b|\bscores?\b|\baccuracy\b|지표|메트릭|정확도|성능|결과 보여")
_PROGRESS = re.compile(
    r"how(?:'s|\s+is|\s+are)?\s+(?:it|things|(?:the |my )?(?:job|training|model)(?:\s*#?\d+)?)\s+(?:going|doing)"
    r"|\bprogress\b|\bstatus\b"
    r"|how far|\beta\b|진행|상황|어떻게 되|어디까지|얼마나 남|잘 되"
)
_STOP = re.compile(
    r"^\s*(?:please\s+)?stop\b|\bstop (?:it|the|job|training)\b|\bhalt\b"
    r"|\babort (?:it|the job)\b|\bkill (?:it|the job)\b"
    r"|멈춰|멈추|중지|중단해|그만해|그만 해|스톱"
)
_RESUME = re.compile(r"\bresume\b|\bcontinue (?:job|training|it)\b|재개|이어서|다시 시작")
_EXPORT = re.compile(r"\bonnx\b|\bexport\b|내보내|익스포트|torch\s?script|토치\s?스크립트|open\s?vino|오픈\s?비노")
# the export format a message names ("export to torchscript", "openvino로 변환"): a format this server
# does not make (tflite, TensorRT, ...) is passed on, so the user hears why not; default onnx
_EXPORT_FORMAT = (
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
    return next((fmt for fmt, rx in _EXPORT_FORMAT if rx.search(low)), "onnx")


_TEST_WORD = re.compile(r"\btest(?:ing)?\b|\bevaluat|\bbenchmark|테스트|평가")
_TEST_SET = re.compile(
    r"\bdata ?sets?\b|\btest ?sets?\b|\btest ?runs?\b|\brun (?:a |the )?(?:batch )?test|\bbatch\b"
    r"|데이터\s?셋|데이터\s?세트|테스트\s?셋|테스트\s?세트|배치|전체"
)
_THIS_IMAGE = re.compile(r"\bthis (?:image|picture|photo)\b|이 이미지|이 사진|이미지로|사진으로")
_TEST_STATUS = re.compile(
    r"\bgoing\b|\bprogress\b|\bstatus\b|\bdone\b|\bfinished\b|\bresults?\b"
    r"|진행|상황|어떻게|어때|끝났|다 됐|결과"
)
_TEST_WORDS_AS_NAMES = {"test", "tests", "테스트", "평가", "the test", "test set", "testset"}
_TRAIN = re.compile(r"\btrain|\bfine-?tune|학습|훈련|트레이닝|\bfit\b")
_WEIGHTS_LISTQ = re.compile(r"\bwhat\b|\blist\b|\bshow\b|\bdo i have\b|목록|뭐|무엇|어떤|보여|있어|있나|있니|알려")
_WEIGHTS_REF = re.compile(r"#\s*(\d+)")


@dataclass
class Turn:
    """What one turn produced (the session row holds state, intent, pending, language, jobs)."""

    reply: str
    suggestions: list[str] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    job_id: int | None = None
    launched: bool = False
    action: str = ""


def _words(low: str) -> list[str]:
    return _PUNCT.sub(" ", low).split()


def _looks_like_command(low: str) -> bool:
    return any(rx.search(low) for rx in (_PROGRESS, _METRICS, _RESUME, _INFER, _HELP, _MODELS, _DATASETS))


def is_yes(low: str) -> bool:
    """A yes (예/네/응/좋아/시작/yes/y/ok/go ...) that is not also a question ("진행 상황 알려줘")."""
    w = _words(low)
    if not w or _looks_like_command(low):
        return False
    if w[0] in _YES_EN or " ".join(w[:2]) in ("do it", "go ahead", "lets go", "let s", "sounds good", "let us"):
        return True
    return bool(_YES_KO.match(w[0]))


def is_no(low: str) -> bool:
    w = _words(low)
    if not w:
        return False
    return w[0] in _NO_EN or bool(_NO_KO.match(w[0]))


def intent_dict(intent: dict[str, Any]) -> dict[str, Any]:
    """The full TrainingIntent JSON of a (partial) stored intent."""
    try:
        return TrainingIntent(**intent).model_dump()
    except ValidationError:
        return TrainingIntent().model_dump() | {k: v for k, v in intent.items() if k in TrainingIntent.model_fields}


class Dialogue:
    """One turn over `session` (mutated in place; the caller commits)."""

    def __init__(self, ctx: ToolContext, session: ChatSession, text: str, scope: InferenceScope | None = None) -> None:
        self.ctx = ctx
        self.scope = scope or InferenceScope()
        self.image = self.scope.image
        self.s = session
        self.text = text
        self.low = normalise(text).lower()
        self.lang = detect_language(text, previous=session.language)
        self.s.language = self.lang
        self.notes: list[str] = []
        self.default_epochs_taken = False

    # ------------------------------------------------------------------ helpers
    def t(self, key: str, **values: Any) -> str:
        return R.say(self.lang, key, **values)

    @property
    def intent(self) -> dict[str, Any]:
        return dict(self.s.intent or {})

    def set_intent(self, intent: dict[str, Any]) -> None:
        self.s.intent = {k: v for k, v in intent.items() if v not in (None, [], {})}

    def ctxmem(self) -> dict[str, Any]:
        return dict(self.s.context or {})

    def remember(self, **values: Any) -> None:
        mem = self.ctxmem()
        for k, v in values.items():
            if v is None:
                mem.pop(k, None)
            else:
                mem[k] = v
        self.s.context = mem

    def ask(self, pending: str, text: str, suggestions: list[str], **extra: Any) -> Turn:
        self.s.state = "collecting"
        self.s.pending = pending
        self.remember(offered=suggestions, **extra)
        return Turn(self.join(text), suggestions=suggestions, action=f"ask_{pending}")

    def join(self, *parts: str) -> str:
        return "\n".join([*self.notes, *[p for p in parts if p]])

    def task(self, task: str | None) -> str:
        return R.task_label(task, self.lang)

    # ------------------------------------------------------------------ entry
    def respond(self, slots: dict[str, Any] | None = None) -> Turn:
        """`slots`: what the message gives (default `extract_slots(text)`; the LLM planner passes
        the TrainingIntent it produced)."""
        given = dict(slots) if slots is not None else extract_slots(self.text)
        state = self.s.state or "idle"
        training_slots = {k for k in given if k not in ("class_names",)}

        if state in ("collecting", "confirming") and not training_slots and _CANCEL.match(self.low):
            return self.cancel()

        turn = self.command(given)
        if turn is not None:
            if self.s.state in ("collecting", "confirming") and self.s.pending:
                turn.reply += "\n" + self.t("still_pending", question=self.pending_question())
            return turn

        if state == "confirming" and not training_slots:
            if is_yes(self.low):
                return self.launch()
            if is_no(self.low):
                return self.cancel()

        if state == "collecting" and self.s.pending:
            given = self.answer_pending(given)

        if given or _TRAIN.search(self.low):
            if state in ("idle", "launched"):
                self.set_intent({})
                self.remember(offered=None, dataset_id=None)
            changes = self.merge(given)
            if state == "confirming" and changes:
                self.notes.append(self.t("updated", changes=", ".join(changes)))
            return self.advance()

        if state in ("collecting", "confirming"):
            return Turn(
                self.t("not_understood_pending", question=self.pending_question()),
                suggestions=list(self.ctxmem().get("offered") or []),
                action="not_understood",
            )
        return Turn(self.t("not_understood", help_short=self.t("help_short")), action="not_understood")

    def pending_question(self) -> str:
        if self.s.state == "confirming":
            return self.t("pending_confirm")
        return {
            "dataset": self.t("ask_dataset"),
            "fix_compat": self.t("ask_dataset"),
            "task": self.t("ask_dataset") if not self.intent.get("dataset") else self.task_question_short(),
            "model": "model?" if self.lang == "en" else "모델?",
            "epochs": "epochs?" if self.lang == "en" else "에폭?",
            "init_weights": "which weights?" if self.lang == "en" else "어떤 가중치?",
        }.get(self.s.pending or "", self.t("help_short"))

    def task_question_short(self) -> str:
        offered = self.ctxmem().get("offered") or []
        return ("task? " if self.lang == "en" else "작업? ") + ", ".join(offered)

    # ------------------------------------------------------------------ slots
    def answer_pending(self, given: dict[str, Any]) -> dict[str, Any]:
        pending = self.s.pending
        offered: list[str] = list(self.ctxmem().get("offered") or [])
        choice = _CHOICE.match(self.low)
        pick = offered[int(choice.group(1)) - 1] if choice and 0 < int(choice.group(1)) <= len(offered) else None
        accepted = is_yes(self.low) or bool(_ACCEPT.search(self.low))
        out = dict(given)
        if accepted and set(out) <= {"preset"} and ("기본" in self.low or "default" in self.low):
            out.pop("preset", None)  # "기본값으로" = the default, not the easy preset
        if pending in ("dataset", "fix_compat") and "dataset" not in out:
            words = _words(self.low)
            bare_name = self.text.strip().strip("\"'`.,!?")
            named = {o.lower(): o for o in offered}
            if len(self.text.split()) == 1 and bare_name.lower() in named:
                # a bare name from the suggestions is the dataset, even if it reads like a task word ("boxes")
                out = {"dataset": named[bare_name.lower()]}
            elif pick:
                out["dataset"] = pick
            elif not out and len(self.text.split()) == 1 and words and not (is_yes(self.low) or is_no(self.low)):
                out["dataset"] = self.text.strip().strip("\"'`.,!?")
        elif pending == "task" and "task_type" not in out and pick in TASK_TYPES:
            out["task_type"] = pick
        elif pending == "model" and "model_name" not in out:
            if pick:
                out.update(self.model_slots(pick))
            elif accepted and offered:
                out.update(self.model_slots(offered[0]))
        elif pending == "init_weights" and not isinstance(out.get("init_weights"), int):
            picked = self.pick_user_weights(choice)
            if picked is not None:
                out = {k: v for k, v in out.items() if k not in ("epochs", "init_weights")}
                out["init_weights"] = picked
        elif pending == "epochs" and "epochs" not in out:
            bare = _BARE_INT.match(self.low)
            if bare and int(bare.group(1)) > 0:
                out["epochs"] = int(bare.group(1))
            elif accepted:
                out["epochs"] = int(self.ctxmem().get("default_epochs") or catalog.default_epochs(None))
                self.default_epochs_taken = True
        return out

    def pick_user_weights(self, choice: re.Match[str] | None) -> int | None:
        """The answer to "which of your weights?": its number in the list, "#id", or its file name."""
        ids = [int(i) for i in self.ctxmem().get("weights_offered") or []]
        names = [str(n).lower() for n in self.ctxmem().get("weights_names") or []]
        ref = _WEIGHTS_REF.search(self.low)
        if ref and int(ref.group(1)) in ids:
            return int(ref.group(1))
        if choice:
            n = int(choice.group(1))
            if 0 < n <= len(ids):
                return ids[n - 1]
        bare = _BARE_INT.match(self.low)
        if bare and int(bare.group(1)) in ids:
            return int(bare.group(1))
        for i, name in zip(ids, names, strict=False):
            if name and name in self.low:
                return i
        return None

    @staticmethod
    def model_slots(name: str) -> dict[str, Any]:
        info = catalog.find_model(name)
        if info is None:
            return {"model_name": name}
        return {"model_name": info.name, "framework": info.framework, "task_type": info.task_type}

    def merge(self, given: dict[str, Any]) -> list[str]:
        intent = self.intent
        changes: list[str] = []
        if "model_name" in given:
            for k in ("framework", "task_type"):
                if k not in given:
                    intent.pop(k, None)
        elif "task_type" in given and intent.get("model_name"):
            info = catalog.find_model(str(intent["model_name"]))
            if info is not None and info.task_type != given["task_type"]:
                intent.pop("model_name", None)
                if "framework" not in given:
                    intent.pop("framework", None)
        for k, v in given.items():
            if k == "advanced_config":
                v = {**(intent.get(k) or {}), **v}
            if intent.get(k) != v:
                changes.append(f"{k} {R.values_line(v) if isinstance(v, dict) else self.fmt(v)}")
            intent[k] = v
        if "dataset" in given:
            self.remember(dataset_id=None)
        if "epochs" in given:
            self.remember(epochs_default=True if self.default_epochs_taken else None)
        self.set_intent(intent)
        return changes

    @staticmethod
    def fmt(v: Any) -> str:
        if isinstance(v, list):
            return "/".join(str(x) for x in v)
        return R.number(v)

    # ------------------------------------------------------------------ the next question
    def advance(self) -> Turn:
        intent = self.intent
        if not intent.get("dataset"):
            named = self.dataset_named_in_text()
            if named is None:
                return self.ask_dataset()
            intent["dataset"] = named
            self.set_intent(intent)
        try:
            ds = dataset_info(self.ctx, str(intent["dataset"]))
        except NotFoundError as exc:
            close = [str(x) for x in (exc.detail.get("suggestions") or [])]
            hint = self.t("did_you_mean", names=", ".join(close)) if close else ""
            self.notes.append(self.t("dataset_not_found", name=str(intent["dataset"]), hint=hint))
            intent.pop("dataset", None)
            self.set_intent(intent)
            return self.ask_dataset()
        except ConflictError as exc:
            cands = exc.detail.get("candidates") or []
            ids = ", ".join(f"{c.get('id')}" for c in cands)
            self.notes.append(self.t("dataset_ambiguous", name=str(intent["dataset"]), ids=ids))
            intent.pop("dataset", None)
            self.set_intent(intent)
            return self.ask("dataset", "", [str(c.get("id")) for c in cands])
        self.remember(dataset_id=ds["id"])
        if intent.get("init_from_job") and not intent.get("model_name"):
            turn = self.take_init_model(intent)
            if turn is not None:
                return turn
        if intent.get("init_weights") is not None:
            turn = self.take_user_weights(intent)
            if turn is not None:
                return turn

        task = intent.get("task_type")
        if not task and intent.get("model_name"):
            info = catalog.find_model(str(intent["model_name"]))
            task = info.task_type if info else None
        if not task:
            natives = [t for t in catalog.TASK_PREFERENCE if ds["tasks"].get(t) == "native"]
            options = natives or [t for t in catalog.TASK_PREFERENCE if ds["tasks"].get(t) == "convertible"]
            if not options:
                self.notes.append(
                    self.t("invalid_request", reason=f"dataset {ds['name']!r} has no annotations a task can use")
                )
                intent.pop("dataset", None)
                self.set_intent(intent)
                return self.ask_dataset()
            if len(natives) == 1:
                task = natives[0]
                intent["task_type"] = task
                self.set_intent(intent)
                self.notes.append(self.t("task_implied", task=self.task(task), dataset=ds["name"]))
            else:
                default = catalog.pick_task(ds["capabilities"], intent.get("framework")) or options[0]
                labels = ", ".join(f"{i}. {self.task(t)}" for i, t in enumerate(options, 1))
                return self.ask(
                    "task",
                    self.t("ask_task", dataset=ds["name"], options=labels, default=self.task(default)),
                    options,
                )

        compat = check_dataset_compatibility(self.ctx, ds["id"], task)
        if compat.get("status") == "incompatible":
            return self.refuse_incompatible(ds, task, str(compat.get("reason") or ""))

        if not intent.get("model_name"):
            return self.ask_model(task, intent.get("framework"))
        if not intent.get("epochs"):
            return self.ask_epochs(intent.get("preset"), intent.get("framework"), intent.get("model_name"))
        return self.confirm(ds)

    def take_init_model(self, intent: dict[str, Any]) -> Turn | None:
        """Fine-tuning without a model named: the source job's model (it must be readable)."""
        try:
            source = jobs.get_job(self.ctx, int(intent["init_from_job"]))
        except NotFoundError:
            self.notes.append(self.t("init_job_not_found", job_id=intent["init_from_job"]))
            intent.pop("init_from_job", None)
            intent.pop("init_checkpoint", None)
            self.set_intent(intent)
            return None
        intent.update(model_name=source["model_name"], framework=source["framework"], task_type=source["task_type"])
        self.set_intent(intent)
        return None

    def take_user_weights(self, intent: dict[str, Any]) -> Turn | None:
        """ "use my weights": the user's one upload for the model (its model when none is named);
        several -> ask which (listing them); none -> say how to upload and go on without."""
        ref = intent["init_weights"]
        model = intent.get("model_name")
        try:
            row = user_weights.resolve_for_job(
                self.ctx,
                ref,
                model_name=model,
                framework=intent.get("framework"),
                task_type=None if model else intent.get("task_type"),
            )
        except NotFoundError:
            self.notes.append(self.t("user_weights_not_found", id=ref))
            intent.pop("init_weights", None)
            self.set_intent(intent)
            return None
        except InvalidInputError as exc:
            if exc.detail.get("field") != "init_weights":
                return None  # an unknown model: the confirmation step says so
            if model:
                what = str(model)
            elif intent.get("task_type"):
                what = self.task(str(intent["task_type"]))
            else:
                what = "this request" if self.lang == "en" else "이 요청"
            choices = list(exc.detail.get("choices") or [])
            if not choices:
                self.notes.append(self.t("user_weights_none", what=what, hint=user_weights.UPLOAD_HINT))
                intent.pop("init_weights", None)
                self.set_intent(intent)
                return None
            lines = "\n".join(self.user_weights_line(n, c) for n, c in enumerate(choices, 1))
            return self.ask(
                "init_weights",
                self.t("ask_user_weights", count=len(choices), what=what, lines=lines),
                [f"#{c['id']} {c['name']}" for c in choices],
                weights_offered=[c["id"] for c in choices],
                weights_names=[c["name"] for c in choices],
            )
        if ref != row.id:
            self.notes.append(self.t("user_weights_taken", name=row.name, id=row.id, model=row.model_name))
        intent["init_weights"] = row.id
        if not model:
            intent.update(self.model_slots(row.model_name))
        self.set_intent(intent)
        self.remember(weights_offered=None, weights_names=None)
        return None

    def user_weights_line(self, n: int, c: dict[str, Any]) -> str:
        created = str(c.get("created_at") or "")[:16].replace("T", " ")
        return self.t(
            "user_weights_line",
            n=n,
            id=c["id"],
            name=c["name"],
            model=c["model_name"],
            sha=str(c.get("sha256") or "")[:12],
            created=created,
        )

    def list_user_weights(self) -> Turn:
        items = user_weights.list_user_weights(self.ctx)
        if not items:
            return Turn(self.t("user_weights_list_none", hint=user_weights.UPLOAD_HINT), action="list_weights")
        lines = "\n".join(self.user_weights_line(n, c) for n, c in enumerate(items[:20], 1))
        return Turn(self.t("user_weights_list", lines=lines, model=items[0]["model_name"]), action="list_weights")

    def dataset_named_in_text(self) -> str | None:
        """A dataset the user can see whose exact name is a word of this message (the parser may not
        know an unusual name such as "pets" in "resnet18 모델로 pets 학습")."""
        words = {w.strip(".,!?;:'\"()[]") for w in self.low.split()}
        words.discard("")
        if not words:
            return None
        for d in list_visible_datasets(self.ctx):
            if d["name"].lower() in words:
                return str(d["name"])
        return None

    def ask_dataset(self) -> Turn:
        intent = self.intent
        task = intent.get("task_type")
        if not task and intent.get("model_name"):
            info = catalog.find_model(str(intent["model_name"]))
            task = info.task_type if info else None
        classes = list(intent.get("class_names") or [])
        items, matched = datasets_for(self.ctx, task, classes)
        if not items:
            return self.ask("dataset", self.t("no_datasets"), [])
        if matched:
            head = self.t("ask_dataset_matching", classes="/".join(classes))
        else:
            for_task = self.t("for_task", task=self.task(task)) if task else ""
            head = self.t("ask_dataset_list", for_task=for_task)
        lines = [head, *self.dataset_lines(items), self.t("answer_with_number")]
        return self.ask("dataset", "\n".join(lines), [d["name"] for d in items])

    def dataset_lines(self, items: list[dict[str, Any]]) -> list[str]:
        out = []
        for n, d in enumerate(items, 1):
            classes = d["class_names"]
            shown = ", ".join(classes[:8]) + (" …" if len(classes) > 8 else "") if classes else "-"
            out.append(
                self.t(
                    "dataset_line",
                    n=n,
                    name=d["name"],
                    images=d["num_images"],
                    classes=shown,
                    public=self.t("public_mark") if not d["is_owner"] else "",
                )
            )
        return out

    def refuse_incompatible(self, ds: dict[str, Any], task: str, reason: str) -> Turn:
        others, _ = datasets_for(self.ctx, task, None)
        others = [d for d in others if d["id"] != ds["id"]]
        can = [t for t in catalog.TASK_PREFERENCE if ds["tasks"].get(t) in ("native", "convertible")]
        names = [d["name"] for d in others]
        text = "\n".join(
            [
                self.t("incompatible", dataset=ds["name"], task=self.task(task), reason=reason),
                self.t(
                    "incompatible_next",
                    datasets=self.t("e_g", names=", ".join(names)) if names else "",
                    dataset=ds["name"],
                    tasks=", ".join(self.task(t) for t in can) or "-",
                ),
            ]
        )
        turn = self.ask("fix_compat", text, names + can)
        turn.action = "refuse_incompatible"
        return turn

    def ask_model(self, task: str, framework: str | None) -> Turn:
        name = catalog.default_model(task, framework, strict=False) or catalog.default_model(task)
        assert name is not None
        info = catalog.find_model(name)
        others = [m["name"] for m in catalog.list_models(task_type=task) if m["name"] != name][:4]
        params = ""
        desc = ""
        if info is not None:
            if info.params_m:
                params = f"{info.params_m:g}M parameters, " if self.lang == "en" else f"파라미터 {info.params_m:g}M, "
            if info.description:
                desc = f" ({info.description})"
        why = self.t("model_why", params=params, desc=desc)
        text = self.t(
            "ask_model",
            model=name,
            framework=info.framework if info else framework or "",
            task=self.task(task),
            why=why,
            others=", ".join(others) or "-",
        )
        return self.ask("model", text, [name, *others])

    def preset_values(self, framework: str | None, preset: str | None) -> dict[str, Any]:
        if not framework or not preset:
            return {}
        try:
            return dict(catalog.presets(framework).get(preset) or {})
        except Exception:
            return {}

    def ask_epochs(self, preset: str | None, framework: str | None, model: str | None) -> Turn:
        epochs = catalog.default_epochs(preset)
        why = self.t("epochs_why_preset", preset=preset) if preset else self.t("epochs_why_none")
        chosen = None if preset else self.data_epochs()
        if chosen is not None:  # no preset: epochs that fit the dataset (tools.defaults)
            epochs, why = int(chosen["value"]), str(chosen["why_ko" if self.lang == "ko" else "why"])
        if framework is None and model:
            info = catalog.find_model(model)
            framework = info.framework if info else None
        values = self.preset_values(framework, preset)
        note = self.t("preset_note", preset=preset, values=R.values_line(values)) if values else ""
        text = self.t("ask_epochs", epochs=epochs, why=why, preset_note=note)
        return self.ask(
            "epochs",
            text,
            list(dict.fromkeys([str(epochs), "10", "30", "50"])),
            default_epochs=epochs,
            default_epochs_why=chosen,
        )

    def data_epochs(self) -> dict[str, Any] | None:
        """The epochs `tools.defaults` picks for the request as it stands ({"value", "why",
        "why_ko"}), or None when the request cannot be planned yet (the confirmation says why)."""
        try:
            preview = jobs.create_job(self.ctx, TrainingIntent(**self.intent), launch=False)
        except (ValidationError, InvalidInputError, NotFoundError, ConflictError):
            return None
        chosen = (preview.get("defaults") or {}).get("epochs")
        return dict(chosen) if isinstance(chosen, dict) else None

    # ------------------------------------------------------------------ confirmation and launch
    def plan_error(self, exc: ToolError) -> Turn:
        """A create_job refusal: point back at the slot it names."""
        field_name = str(exc.detail.get("field") or "")
        intent = self.intent
        if field_name == "init_weights":
            # the upload is gone, for another model, or named together with a job to start from
            self.notes.append(self.t("invalid_request", reason=exc.message))
            intent.pop("init_weights", None)
            self.set_intent(intent)
            self.s.state = "collecting"
            self.s.pending = "fix"
            return Turn(self.join(self.t("help_short")), action="invalid")
        if field_name in ("init_from_job", "init_checkpoint"):
            # the job to start from is unknown, another architecture, or lacks that checkpoint
            self.notes.append(self.t("invalid_request", reason=exc.message))
            intent.pop("init_from_job", None)
            intent.pop("init_checkpoint", None)
            self.set_intent(intent)
            self.s.state = "collecting"
            self.s.pending = "fix"
            return Turn(self.join(self.t("help_short")), action="invalid")
        if isinstance(exc, NotFoundError):
            self.notes.append(self.t("dataset_not_found", name=str(intent.get("dataset")), hint=""))
            intent.pop("dataset", None)
            self.set_intent(intent)
            return self.ask_dataset()
        self.notes.append(self.t("invalid_request", reason=exc.message))
        if field_name in ("model_name", "framework"):
            suggestions = [str(s) for s in (exc.detail.get("suggestions") or []) if s]
            intent.pop("model_name", None)
            intent.pop("framework", None)
            self.set_intent(intent)
            if intent.get("task_type"):
                turn = self.ask_model(str(intent["task_type"]), None)
                turn.suggestions = list(dict.fromkeys([*suggestions, *turn.suggestions]))
                return turn
            return self.advance()
        if field_name == "dataset":
            return self.ask("fix_compat", "", [])
        self.s.state = "collecting"
        self.s.pending = "fix"
        return Turn(self.join(self.t("help_short")), action="invalid")

    def confirm(self, ds: dict[str, Any]) -> Turn:
        intent = self.intent
        try:
            preview = jobs.create_job(self.ctx, TrainingIntent(**intent), launch=False)
        except ValidationError as exc:
            first = exc.errors()[0]
            return self.plan_error(InvalidInputError(f"{first['loc'][0]}: {first['msg']}", detail={"field": "x"}))
        except (InvalidInputError, NotFoundError, ConflictError) as exc:
            return self.plan_error(exc)
        hp = dict(preview.get("hyperparameters") or {})
        config = dict(preview.get("config") or {})
        framework = str(preview["framework"])
        preset = hp.get("preset")
        keys = list(self.preset_values(framework, preset) or self.preset_values(framework, "easy"))
        values = {k: config[k] for k in keys if k in config}
        est = estimate_duration(self.ctx, intent, ds, plan=preview)
        summary: dict[str, Any] = {
            "model_name": preview["model_name"],
            "framework": framework,
            "task_type": preview["task_type"],
            "dataset": {"id": ds["id"], "name": ds["name"], "num_images": ds.get("num_images")},
            "snapshot": "taken at launch",
            "conversion": preview.get("conversion"),
            "epochs": hp["epochs"],
            "epochs_default": bool(self.ctxmem().get("epochs_default")) or not intent.get("epochs"),
            "batch_size": hp.get("batch_size"),
            "image_size": hp.get("image_size"),
            "learning_rate": hp.get("learning_rate"),
            "preset": preset,
            "preset_values": values,
            # the person's own settings (what the server chose for the data is in "defaults")
            "advanced_config": dict(intent.get("advanced_config") or {}),
            "estimated_duration_s": est.expected_s,
            "estimate": est.model_dump(),
            "defaults": self.chosen_defaults(preview),
        }
        conv = self.t("confirm_conversion", conversion=preview["conversion"]) if preview.get("conversion") else ""
        lines = [
            self.t("confirm_head"),
            self.t("confirm_model", model=preview["model_name"], framework=framework),
            self.t("confirm_task", task=self.task(str(preview["task_type"]))),
            self.t("confirm_dataset", dataset=ds["name"], images=ds.get("num_images"), conversion=conv),
            self.t(
                "confirm_epochs",
                epochs=hp["epochs"],
                default=self.t("default_mark") if summary["epochs_default"] else "",
            ),
            self.t(
                "confirm_hparams",
                batch=hp.get("batch_size"),
                size=hp.get("image_size"),
                lr=R.number(hp.get("learning_rate")),
            ),
            self.defaults_line(summary),
            self.t("confirm_preset", preset=preset, values=R.values_line(values))
            if preset
            else self.t("confirm_no_preset", values=R.values_line(values)),
        ]
        init = preview.get("init_from")
        if not init:  # a fine-tuning job starts from its checkpoint (its own line below)
            summary["pretrained"] = preview.get("pretrained")
            weights_line = weights_tools.describe_pretrained(
                preview.get("pretrained"), str(preview["model_name"]), self.lang
            )
            lines.insert(3, self.t("confirm_pretrained", text=weights_line))
            summary["pretrained_text"] = weights_line
        if init:
            summary["init_from"] = init
            lines.insert(
                2,
                self.t(
                    "confirm_init_from",
                    job_id=init["job_id"],
                    checkpoint=init["checkpoint"],
                    model=init["model_name"],
                    dataset=init.get("dataset_name") or "?",
                ),
            )
        lines = [ln for ln in lines if ln]
        if summary["advanced_config"]:
            lines.append(self.t("confirm_advanced", values=R.values_line(summary["advanced_config"])))
        lines += [R.estimate_line(est, self.lang), self.t("confirm_question")]
        self.s.state = "confirming"
        self.s.pending = "confirm"
        self.remember(offered=None)
        yes_no = ["네", "아니오"] if self.lang == "ko" else ["yes", "no"]
        return Turn(self.join("\n".join(lines)), suggestions=yes_no, summary=summary, action="confirm")

    def chosen_defaults(self, preview: dict[str, Any]) -> dict[str, Any]:
        """The settings the server chose for this request, with why (`tools.defaults`); epochs
        the person took as the offered default keep the reason they were offered with."""
        chosen = dict(preview.get("defaults") or {})
        taken = self.ctxmem().get("default_epochs_why")
        if "epochs" not in chosen and self.ctxmem().get("epochs_default") and isinstance(taken, dict):
            chosen["epochs"] = taken
        return chosen

    def defaults_line(self, summary: dict[str, Any]) -> str:
        chosen = summary.get("defaults") or {}
        names = {
            "image_size": "image_size_label",
            "batch_size": "batch_size_label",
            "epochs": "epochs_label",
            "nbs": "nbs_label",
            "optimizer": "optimizer_label",
        }
        parts = [
            f"{self.t(label)} {c['value']}: {c['why_ko' if self.lang == 'ko' else 'why']}"
            for key, label in names.items()
            if isinstance(c := chosen.get(key), dict)
        ]
        return self.t("confirm_defaults", items="; ".join(parts)) if parts else ""

    def launch(self) -> Turn:
        intent = self.intent
        try:
            job = jobs.create_job(self.ctx, TrainingIntent(**intent), launch=True)
        except (InvalidInputError, NotFoundError, ConflictError) as exc:
            return self.plan_error(exc)
        job_id = int(job["id"])
        self.s.job_ids = [*(self.s.job_ids or []), job_id]
        self.s.state = "launched"
        self.s.pending = None
        self.remember(job_id=job_id, offered=None)
        pos = int(job.get("queue_position") or 0)
        text = self.t(
            "launched",
            job_id=job_id,
            model=job["model_name"],
            dataset=job["dataset_name"],
            epochs=job["epochs"],
            status=R.status_label(job["status"], self.lang),
            queue=self.t("queue_pos", pos=pos) if pos > 1 else "",
        )
        sugg = ["진행 상황 알려줘", "멈춰"] if self.lang == "ko" else ["how is it going?", "stop it"]
        return Turn(text, suggestions=sugg, job_id=job_id, launched=True, action="launched")

    def cancel(self) -> Turn:
        had = self.s.state in ("collecting", "confirming")
        self.set_intent({})
        self.s.state = "launched" if self.s.job_ids else "idle"
        self.s.pending = None
        self.remember(offered=None, dataset_id=None)
        return Turn(self.t("cancelled" if had else "nothing_to_cancel"), action="cancel")

    # ------------------------------------------------------------------ commands
    def command(self, given: dict[str, Any]) -> Turn | None:
        low = self.low
        training = {
            k
            for k in given
            if k in ("model_name", "dataset", "epochs", "batch_size", "image_size", "init_from_job", "init_weights")
        }
        if _HELP.search(low):
            return Turn(self.t("help"), action="help")
        if (
            (MY_WEIGHTS_EN_RE.search(low) or MY_WEIGHTS_KO_RE.search(low))
            and _WEIGHTS_LISTQ.search(low)
            and not _TRAIN.search(low)
            and not training - {"init_weights"}
        ):
            return self.list_user_weights()
        if PRETRAINED_Q_RE.search(low) and not training and (self.intent.get("model_name") or self.job_ref()):
            return self.pretrained_answer()
        if _EXPORT.search(low) and not training:
            return self.with_model_job(self.export)
        # "download the best model of job 12" names a job's checkpoint like a fine-tuning request
        # does; without a word asking to train it is a download
        if DOWNLOAD_RE.search(low) and not _TRAIN.search(low) and not training - {"init_from_job"}:
            return self.with_model_job(self.download)
        if self.image is None and _TEST_WORD.search(low) and not _THIS_IMAGE.search(low):
            if _TEST_STATUS.search(low) and self.ctxmem().get("test_run_id") and "dataset" not in given:
                return self.test_status()
            if _TEST_SET.search(low) or (given.get("dataset") and set(given) <= {"dataset"}):
                return self.with_model_job(lambda job_id: self.test_run(job_id, given))
        if self.image is not None and (_INFER.search(low) or not training):
            return self.with_model_job(self.predict)
        if _MODELS.search(low) and _LISTQ.search(low) and "model_name" not in given and "dataset" not in given:
            return self.list_models(given)
        if _DATASETS.search(low) and _LISTQ.search(low) and "dataset" not in given and "model_name" not in given:
            return self.list_datasets()
        if _COMPAT.search(low) and ("dataset" in given or "task_type" in given):
            return self.compatibility(given)
        if _INFER.search(low) and not training:
            return self.inference()
        if training:
            return None
        if _METRICS.search(low):
            return self.with_job(self.metrics)
        if _PROGRESS.search(low):
            return self.with_job(self.progress)
        if _STOP.search(low):
            if self.s.state in ("collecting", "confirming") and not _JOB_REF.search(low):
                return self.cancel()
            return self.with_job(self.stop)
        if _RESUME.search(low):
            return self.with_job(self.resume, require_explicit=True)
        return None

    def pretrained_answer(self) -> Turn:
        """ "is it pretrained?": the pending request's plan while one is being set up (unless a job
        is named), else the job's recorded weights."""
        named = _JOB_REF.search(self.low)
        intent = self.intent
        if intent.get("model_name") and self.s.state in ("collecting", "confirming") and not named:
            try:
                text = weights_tools.describe_weights_plan(self.ctx, TrainingIntent(**intent), self.lang)
            except (InvalidInputError, ValidationError) as exc:
                return Turn(self.t("conflict", reason=str(exc)), action="pretrained")
            return Turn(self.t("pretrained_pending", model=intent["model_name"], text=text), action="pretrained")

        def answer(job_id: int) -> Turn:
            job = jobs.get_job(self.ctx, job_id)
            text = weights_tools.describe_pretrained(job.get("pretrained"), str(job["model_name"]), self.lang)
            return Turn(
                self.t("pretrained_job", job_id=job_id, model=job["model_name"], text=text), action="pretrained"
            )

        return self.with_job(answer)

    def job_ref(self, require_explicit: bool = False) -> int | None:
        m = _JOB_REF.search(self.low)
        if m:
            return int(m.group(1) or m.group(2))
        if require_explicit:
            m2 = _ANY_INT.search(self.low)
            if m2:
                return int(m2.group(1))
        mem = self.ctxmem()
        if mem.get("job_id"):
            return int(mem["job_id"])
        ids = list(self.s.job_ids or [])
        return int(ids[-1]) if ids else None

    def with_job(self, fn: Any, require_explicit: bool = False) -> Turn:
        job_id = self.job_ref(require_explicit)
        if job_id is None:
            return Turn(self.t("resume_which" if require_explicit else "no_job"), action="no_job")
        try:
            turn: Turn = fn(job_id)
        except NotFoundError:
            return Turn(self.t("job_not_found", job_id=job_id), action="job_not_found")
        except ConflictError as exc:
            return Turn(self.t("conflict", reason=exc.message), job_id=job_id, action="conflict")
        self.remember(job_id=job_id)
        turn.job_id = turn.job_id or job_id
        return turn

    # ------------------------------------------------------------------ inference
    def model_job(self) -> int | None:
        """The job named in the message, else the chat's latest, else the user's newest completed job."""
        job_id = self.job_ref()
        return job_id if job_id is not None else latest_completed_job(self.ctx)

    def with_model_job(self, fn: Any) -> Turn:
        job_id = self.model_job()
        if job_id is None:
            return Turn(self.t("no_job"), action="no_job")
        try:
            turn: Turn = fn(job_id)
        except NotFoundError as exc:
            if "job" in exc.message and str(job_id) in exc.message:
                return Turn(self.t("job_not_found", job_id=job_id), action="job_not_found")
            return Turn(self.t("inference_error", job_id=job_id, reason=exc.message), action="inference_error")
        except ConflictError as exc:
            return Turn(self.t("conflict", reason=exc.message), job_id=job_id, action="conflict")
        except ToolError as exc:  # a bad image, a crashed or missing worker: the reason, as REST says it
            return Turn(
                self.t("inference_error", job_id=job_id, reason=exc.message), job_id=job_id, action="inference_error"
            )
        self.remember(job_id=job_id)
        turn.job_id = turn.job_id or job_id
        return turn

    def predict(self, job_id: int) -> Turn:
        scope = self.scope
        assert scope.image is not None
        result = predict_image(self.ctx, scope.service(), job_id, scope.image)
        model = dict(result.get("model") or {})
        text = self.t(
            "inference_head",
            job_id=job_id,
            model=model.get("model_name") or model.get("name") or model.get("framework") or "?",
            checkpoint=result.get("checkpoint"),
            image=scope.image_name or ("the image" if self.lang == "en" else "이미지"),
            predictions=R.predictions_text(result, self.lang),
            ms=R.number(result.get("inference_time_ms")),
        )
        return Turn(text, summary={"inference": result}, job_id=job_id, action="inference_result")

    def test_run(self, job_id: int, given: dict[str, Any]) -> Turn:
        name = given.get("dataset")
        if isinstance(name, str) and name.strip().lower() in _TEST_WORDS_AS_NAMES:
            name = None
        name = name or self.dataset_named_in_text()
        if not name:
            job = jobs.get_job(self.ctx, job_id)
            if not job.get("dataset_id"):
                return Turn(self.t("test_run_which_dataset", job_id=job_id), job_id=job_id, action="test_run_dataset")
        try:
            run = start_test_run(self.ctx, self.scope.service(), job_id, str(name) if name else None)
        except NotFoundError as exc:
            if name and "job" not in exc.message:
                close = [str(x) for x in (exc.detail.get("suggestions") or [])]
                hint = self.t("did_you_mean", names=", ".join(close)) if close else ""
                return Turn(self.t("dataset_not_found", name=str(name), hint=hint), action="test_run_not_found")
            raise
        self.remember(test_run_id=int(run["id"]))
        ds_name = str(run["dataset_id"])
        with contextlib.suppress(ToolError):
            ds_name = str(dataset_info(self.ctx, ds_name)["name"])
        text = self.t(
            "test_run_started",
            run_id=run["id"],
            job_id=job_id,
            checkpoint=run["checkpoint"],
            dataset=ds_name,
            total=run["progress"]["total"],
        )
        sugg = ["테스트 어떻게 되고 있어?"] if self.lang == "ko" else ["how is the test going?"]
        return Turn(text, suggestions=sugg, summary={"test_run": run}, job_id=job_id, action="test_run")

    def test_status(self) -> Turn:
        run_id = int(self.ctxmem()["test_run_id"])
        try:
            run = test_run_status(self.ctx, run_id)
        except NotFoundError:
            return Turn(self.t("no_test_run"), action="no_test_run")
        prog = run["progress"]
        parts = [
            self.t(
                "test_run_status",
                run_id=run_id,
                job_id=run["job_id"],
                status=R.status_label(run["status"], self.lang),
                processed=prog["processed"],
                total=prog["total"],
            )
        ]
        metrics = {k: v for k, v in (run.get("metrics") or {}).items() if isinstance(v, int | float)}
        if metrics:
            parts.append(self.t("test_run_metrics", metrics=R.metrics_line(metrics, limit=8)))
        if run.get("error"):
            parts.append(self.t("test_run_error", error=str(run["error"])[:300]))
        if run.get("report_url"):
            parts.append(self.t("test_run_report", url=run["report_url"]))
        return Turn("; ".join(parts) + ".", summary={"test_run": run}, job_id=run["job_id"], action="test_run_status")

    def download(self, job_id: int) -> Turn:
        """A signed link to the job's best.pt (last.pt when asked, or when there is no best; the model
        card when asked), with the model card's link."""
        if self.ctx.links is None:
            return Turn(self.t("download_unavailable", job_id=job_id), job_id=job_id, action="download_unavailable")
        minutes = max(1, round(self.ctx.links.ttl_s / 60))
        model = jobs.get_job(self.ctx, job_id)["model_name"]
        card = download_link(self.ctx, job_id, "model-card")
        if MODEL_CARD_RE.search(self.low):
            text = self.t("download_card_link", job_id=job_id, model=model, url=card["url"], minutes=minutes)
            return Turn(text, summary={"download": card}, job_id=job_id, action="download")
        explicit = LAST_CHECKPOINT_RE.search(self.low) is not None
        try:
            link = download_link(self.ctx, job_id, "last" if explicit else "best")
        except ConflictError:
            if explicit:
                raise
            link = download_link(self.ctx, job_id, "last")  # a stopped job may have only last.pt
        what = f"{link['object']}.pt"
        text = self.t(
            "download_link",
            job_id=job_id,
            model=model,
            what=what,
            url=link["url"],
            minutes=minutes,
            card_url=card["url"],
        )
        return Turn(text, summary={"download": link, "model_card": card}, job_id=job_id, action="download")

    def export(self, job_id: int) -> Turn:
        fmt = export_format(self.low)
        rec = export_onnx(self.ctx, self.scope.service(), job_id, fmt=fmt)
        if rec.get("status") != "completed":
            text = self.t(
                "export_failed",
                job_id=job_id,
                fmt=FORMAT_NAMES.get(fmt, fmt),
                error=rec.get("error") or rec.get("status"),
            )
            return Turn(text, summary={"export": rec}, job_id=job_id, action="export_failed")
        parity = dict(rec.get("parity") or {})
        text = self.t(
            "export_done",
            job_id=job_id,
            fmt=FORMAT_NAMES.get(fmt, fmt),
            checkpoint=rec.get("checkpoint"),
            size=R.size_text(rec.get("size")),
            diff=f"{float(parity['max_abs_diff']):.3g}" if parity.get("max_abs_diff") is not None else "?",
            tol=R.number(parity.get("tolerance")),
            verdict=self.t("parity_ok" if parity.get("ok", True) else "parity_bad"),
            url=self.export_url(job_id, rec),
        )
        return Turn(text, summary={"export": rec}, job_id=job_id, action="export")

    def export_url(self, job_id: int, rec: dict[str, Any]) -> Any:
        """A signed link that opens in a browser (the REST `download_url` needs the bearer token)."""
        if self.ctx.links is None or rec.get("id") is None:
            return rec.get("download_url")
        link = download_link(self.ctx, job_id, "export", int(rec["id"]))
        rec["link"] = link
        return link["url"]

    def progress(self, job_id: int) -> Turn:
        p = job_progress(self.ctx, job_id)
        parts = [
            self.t(
                "progress_head",
                job_id=job_id,
                model=p["model_name"],
                dataset=p["dataset_name"],
                status=R.status_label(p["status"], self.lang),
            )
        ]
        if p["status"] == "queued" and p["queue_position"]:
            parts.append(self.t("progress_queue", pos=p["queue_position"]))
        if p["epochs"]:
            parts.append(self.t("progress_epoch", epoch=p["epoch"], epochs=p["epochs"]))
        if p["batch"] and p["batches"] and p["status"] not in TERMINAL:
            parts.append(self.t("progress_batch", batch=p["batch"], batches=p["batches"]))
        if p["metrics"]:
            parts.append(self.t("progress_metrics", metrics=R.metrics_line(p["metrics"])))
        elif p["status"] in ("running", "preparing"):
            parts.append(self.t("progress_none_yet"))
        if p["best_metric"] is not None and p["best_metric_name"]:
            parts.append(
                self.t(
                    "progress_best", name=p["best_metric_name"], value=R.number(p["best_metric"]), epoch=p["best_epoch"]
                )
            )
        if p["eta_s"] is not None and p["status"] not in TERMINAL:
            parts.append(self.t("progress_eta", eta=R.duration(p["eta_s"], self.lang)))
        if p["error"]:
            parts.append(self.t("progress_error", error=str(p["error"])[:300]))
        summary = {"progress": p}
        return Turn("; ".join(parts) + ".", summary=summary, action="progress")

    def metrics(self, job_id: int) -> Turn:
        job = jobs.get_job(self.ctx, job_id)
        m = jobs.job_metrics(self.ctx, job_id)
        lines = [self.t("metrics_head", job_id=job_id, status=R.status_label(job["status"], self.lang))]
        epochs = list(m.get("epochs") or [])
        if not epochs:
            lines.append(self.t("metrics_none"))
        for i, e in list(enumerate(epochs))[-5:]:
            values = {k: v[i] for k, v in (m.get("series") or {}).items()}
            lines.append(self.t("metrics_epoch", epoch=e, metrics=R.metrics_line(values, limit=8)))
        if m.get("best_metric") is not None:
            lines.append(
                self.t(
                    "progress_best",
                    name=m.get("best_metric_name"),
                    value=R.number(m.get("best_metric")),
                    epoch=m.get("best_epoch"),
                )
            )
        return Turn("\n".join(lines), summary={"metrics": m}, action="metrics")

    def stop(self, job_id: int) -> Turn:
        job = jobs.stop_job(self.ctx, job_id)
        text = self.t("stopping", job_id=job_id, status=R.status_label(job["status"], self.lang))
        return Turn(text, action="stop")

    def resume(self, job_id: int) -> Turn:
        jobs.resume_job(self.ctx, job_id)
        if job_id not in (self.s.job_ids or []):
            self.s.job_ids = [*(self.s.job_ids or []), job_id]
        return Turn(self.t("resumed", job_id=job_id), job_id=job_id, action="resume")

    def list_datasets(self) -> Turn:
        items = list_visible_datasets(self.ctx)
        lines = [self.t("datasets_head", total=len(items)), *self.dataset_lines(items[:30])]
        if not items:
            lines = [self.t("no_datasets")]
        return Turn("\n".join(lines), suggestions=[d["name"] for d in items[:5]], action="list_datasets")

    def list_models(self, given: dict[str, Any]) -> Turn:
        task = given.get("task_type")
        framework = given.get("framework")
        try:
            models = catalog.list_models(framework, task)
        except InvalidInputError:
            models = catalog.list_models()
        by_task: dict[str, list[str]] = {}
        for m in models:
            by_task.setdefault(m["task_type"], []).append(m["name"])
        filt = f" ({self.task(task)})" if task else ""
        lines = [self.t("models_head", filter=filt)]
        for t in catalog.TASK_PREFERENCE[::-1]:
            if t in by_task:
                default = catalog.default_model(t, framework, strict=False)
                names = [f"{n}*" if n == default else n for n in by_task[t]]
                lines.append(self.t("models_line", task=self.task(t), models=", ".join(names)))
        lines.append("(* default)" if self.lang == "en" else "(* 기본 모델)")
        return Turn("\n".join(lines), action="list_models")

    def compatibility(self, given: dict[str, Any]) -> Turn:
        name = given.get("dataset") or self.dataset_named_in_text() or self.intent.get("dataset")
        if not name:
            return Turn(self.t("compat_which"), action="compat")
        try:
            ds = dataset_info(self.ctx, str(name))
        except NotFoundError as exc:
            close = [str(x) for x in (exc.detail.get("suggestions") or [])]
            hint = self.t("did_you_mean", names=", ".join(close)) if close else ""
            return Turn(self.t("dataset_not_found", name=str(name), hint=hint), action="compat_not_found")
        except ConflictError as exc:
            return Turn(self.t("conflict", reason=exc.message), action="compat")
        task = given.get("task_type")
        if not task and given.get("model_name"):
            info = catalog.find_model(str(given["model_name"]))
            task = info.task_type if info else None
        if not task:
            can = [t for t in catalog.TASK_PREFERENCE if ds["tasks"].get(t) in ("native", "convertible")]
            return Turn(
                self.t("compat_all", dataset=ds["name"], tasks=", ".join(self.task(t) for t in can) or "-"),
                action="compat",
            )
        res = check_dataset_compatibility(self.ctx, ds["id"], task)
        status = str(res.get("status"))
        reason = str(res.get("reason") or "")
        if status == "incompatible":
            text = self.t("compat_no", dataset=ds["name"], task=self.task(task), reason=reason)
        else:
            text = self.t(
                "compat_ok", dataset=ds["name"], task=self.task(task), status=self.t(f"status_{status}"), reason=reason
            )
        return Turn(text.strip(), summary={"compatibility": res}, action="compat")

    def inference(self) -> Turn:
        job_id = self.model_job()
        if job_id is None:
            return Turn(self.t("no_job"), action="no_job")
        try:
            job = jobs.get_job(self.ctx, job_id)
        except NotFoundError:
            return Turn(self.t("job_not_found", job_id=job_id), action="job_not_found")
        if job["status"] != "completed" and not job.get("checkpoints"):
            return Turn(
                self.t("inference_not_ready", job_id=job_id, status=R.status_label(job["status"], self.lang)),
                job_id=job_id,
                action="inference",
            )
        text = self.t("inference_how", job_id=job_id) + " " + self.t("inference_chat_attach")
        return Turn(text, job_id=job_id, action="inference")


def respond(
    ctx: ToolContext,
    session: ChatSession,
    text: str,
    *,
    slots: dict[str, Any] | None = None,
    scope: InferenceScope | None = None,
) -> Turn:
    """Run one deterministic turn over `session` (mutated; the caller commits). `scope`: the turn's
    inference service and attached image (None: no inference, no image)."""
    return Dialogue(ctx, session, text, scope).respond(slots)
