"""The dialogue's answers that explain rather than act: how to upload data (`upload_help`, from
`tools.upload_guide`), what a dataset can train (`dataset_fit`, from the compatibility tool and the
model catalog), why a job's results are weak (`weak_results`, from `tools.jobs.diagnose`), and
what the agent can do when it did not understand a message (`fallback`, with three suggestions
that fit the user's datasets and jobs). Every fact comes from a tool run as the chat's user.
Routing is in `agent.dialogue.questions`; texts in `agent.dialogue.question_texts`.
See docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from agent import replies as R
from agent import wording as W
from agent.dialogue import question_texts as Q
from agent.dialogue.base import Turn
from agent.toolkit import dataset_info, list_visible_datasets
from tools import catalog, jobs
from tools.context import ToolContext
from tools.datasets import check_dataset_compatibility
from tools.db.models import ChatSession
from tools.errors import ConflictError, NotFoundError
from tools.jobs.diagnose import Finding, diagnose_job
from tools.upload_guide import upload_guide
from trainer_runtime.events import TERMINAL_STATUSES

MODELS_SHOWN = 4


class Handlers(Protocol):
    """What the questions use of the dialogue's turn (`agent.dialogue.commands.CommandHandlers`,
    which calls them: declared here so that the modules import one way)."""

    repeating: bool

    @property
    def ctx(self) -> ToolContext: ...
    @property
    def s(self) -> ChatSession: ...
    @property
    def lang(self) -> str: ...
    @property
    def low(self) -> str: ...
    @property
    def notes(self) -> list[str]: ...
    def t(self, key: str, **values: Any) -> str: ...
    def task(self, task: str | None) -> str: ...
    def ctxmem(self) -> dict[str, Any]: ...
    def remember(self, **values: Any) -> None: ...
    def set_intent(self, intent: dict[str, Any]) -> None: ...
    def dataset_named_in_text(self) -> str | None: ...
    def job_ref(self, require_explicit: bool = False) -> int | None: ...
    def with_model_job(self, fn: Callable[[int], Turn]) -> Turn: ...
    def download(self, job_id: int) -> Turn: ...


def upload_help(d: Handlers) -> Turn:
    """Steps on the page, the zip/folder layouts of every format, the limits, the API and a link."""
    g = upload_guide(d.ctx)
    lang = d.lang
    lines = [
        Q.say(lang, "upload_head", page=g.page_url),
        Q.say(lang, "upload_steps", max_upload=R.size_text(g.max_upload_bytes), max_file=R.size_text(g.max_file_bytes)),
        Q.say(lang, "upload_formats_head"),
    ]
    for f in g.formats:
        auto = "" if f.auto_detected else Q.say(lang, "upload_not_auto", name=f.name)
        name = f.name.upper() if f.name != "images" else f.name
        lines.append(Q.say(lang, "upload_format_line", name=name, layout=Q.layout(f.name, f.layout, lang), auto=auto))
    lines.append(Q.say(lang, "upload_api", steps="; ".join(g.api_steps), docs=g.api_docs_url))
    sugg = (
        ["내 데이터셋 보여줘", "어떤 모델을 쓸 수 있어?"]
        if lang == "ko"
        else ["what datasets do I have?", "what models can I use?"]
    )
    return Turn("\n".join(lines), suggestions=sugg, summary={"upload": g.model_dump()}, action="upload_help")


def _models_for(task: str) -> str:
    default = catalog.default_model(task, strict=False)
    names = [m["name"] for m in catalog.list_models(task_type=task)]
    ordered = ([default] if default in names else []) + [n for n in names if n != default]
    shown = [f"{n}*" if n == default else n for n in ordered[:MODELS_SHOWN]]
    more = len(ordered) - len(shown)
    return ", ".join(shown) + (f" (+{more})" if more > 0 else "")


def dataset_fit(d: Handlers, name: str | None) -> Turn:
    """What dataset `name` can train (each task native or after a conversion, with the models that
    train it); without a name, what each of the user's datasets can train."""
    lang = d.lang
    if not name:
        items = list_visible_datasets(d.ctx)[:6]
        if not items:
            return upload_help(d)
        lines = [Q.say(lang, "fit_which")]
        for ds in items:
            can = [d.task(t) for t in catalog.TASK_PREFERENCE if ds["tasks"].get(t) in ("native", "convertible")]
            lines.append(Q.say(lang, "fit_which_line", dataset=ds["name"], tasks=", ".join(can) or "-"))
        return Turn("\n".join(lines), suggestions=[x["name"] for x in items[:5]], action="dataset_fit_which")
    try:
        ds = dataset_info(d.ctx, name)
    except NotFoundError as exc:
        close = [str(x) for x in (exc.detail.get("suggestions") or [])]
        hint = d.t("did_you_mean", names=", ".join(close)) if close else ""
        return Turn(d.t("dataset_not_found", name=name, hint=hint), suggestions=close, action="dataset_fit_not_found")
    except ConflictError as exc:
        return Turn(d.t("conflict", reason=exc.message), action="dataset_fit")
    comp = check_dataset_compatibility(d.ctx, ds["id"])
    tasks: dict[str, dict[str, Any]] = dict(comp["tasks"])
    can = [t for t in catalog.TASK_PREFERENCE if (tasks.get(t) or {}).get("status") in ("native", "convertible")]
    names = ", ".join(ds["class_names"][:8]) + (" …" if ds["class_count"] > 8 else "")
    if not can:
        statuses = {t: (tasks.get(t) or {}).get("status") for t in tasks}
        reason = str((tasks.get("image_classification") or {}).get("reason") or "-")
        if lang == "ko":
            reason = W.compat_reason_ko(ds["name"], statuses, "image_classification", "incompatible", None)
        return Turn(
            Q.say(lang, "fit_none", dataset=ds["name"], reason=reason),
            summary={"compatibility": comp},
            action="dataset_fit",
        )
    classes = ds["class_count"] if lang == "ko" else Q.classes_text(int(ds["class_count"]), lang)
    lines = [Q.say(lang, "fit_head", dataset=ds["name"], images=ds["num_images"], classes=classes, names=names or "-")]
    for t in can:
        info = tasks[t]
        line = Q.say(
            lang, "fit_task", task=d.task(t), status=Q.say(lang, f"status_{info['status']}"), models=_models_for(t)
        )
        if info["status"] == "convertible" and info.get("conversion"):
            line += Q.say(lang, "fit_conversion", reason=W.conversion_label(info["conversion"], lang))
        lines.append(line)
    no = [d.task(t) for t in catalog.TASK_PREFERENCE if t not in can]
    if no:
        lines.append(Q.say(lang, "fit_not", tasks=", ".join(no)))
    lines.append(Q.say(lang, "fit_models_note"))
    top = catalog.pick_task(ds["capabilities"]) or can[0]
    model = catalog.default_model(top, strict=False) or ""
    sugg = [train_request(ds["name"], model, lang)]
    d.remember(dataset=ds["name"])
    return Turn("\n".join(lines), suggestions=sugg, summary={"compatibility": comp}, action="dataset_fit")


def train_request(dataset: str, model: str, lang: str) -> str:
    """A training request the user can send as it is (a suggestion)."""
    if lang == "ko":
        return f"{dataset} 데이터셋으로 {model} 10에폭 학습해줘"
    return f"train {model} on {dataset} for 10 epochs"


def _advice_line(lang: str, f: Finding) -> str:
    x = f.facts
    num = R.number
    if f.code == "not_finished":
        error = f": {x['error']}" if x.get("error") else ""
        return Q.say(
            lang,
            "advice_not_finished",
            status=R.status_label(x["status"], lang),
            done=x["epochs_completed"],
            epochs=x["epochs"],
            error=error,
        )
    if f.code == "no_metrics":
        return Q.say(lang, "advice_no_metrics", metric=x.get("metric") or "-")
    if f.code == "scratch":
        return Q.say(lang, "advice_scratch", model=x["model"])
    if f.code == "still_improving":
        span = Q.epochs_text(int(x["over_epochs"]), lang)
        return Q.say(lang, "advice_still_improving", metric=x["metric"], gain=num(float(x["gain"])), span=span)
    if f.code == "few_epochs":
        return Q.say(lang, "advice_few_epochs", epochs=Q.epochs_text(int(x["epochs"]), lang))
    if f.code == "peaked_early":
        epoch = Q.say(lang, "best_epoch", epoch=x["best_epoch"]) if x.get("best_epoch") else ""
        return Q.say(
            lang, "advice_peaked_early", metric=x["metric"], best=num(x["best"]), epoch=epoch, last=num(x["last"])
        )
    if f.code == "overfitting":
        return Q.say(
            lang,
            "advice_overfitting",
            val=num(x["val_loss"]),
            train=num(x["train_loss"]),
            vmin=num(x["val_loss_min"]),
            vepoch=x["val_loss_min_epoch"],
        )
    if f.code == "small_dataset":
        per = Q.say(lang, "advice_per_class", n=round(x["per_class"])) if x.get("per_class") is not None else ""
        classes = x["classes"] if lang == "ko" else Q.classes_text(int(x["classes"]), lang)
        return Q.say(lang, "advice_small_dataset", images=x["images"], classes=classes, per_class=per)
    if f.code == "imbalance":
        return Q.say(
            lang, "advice_imbalance", most=x["most"], most_n=x["most_count"], least=x["least"], least_n=x["least_count"]
        )
    if f.code in ("image_smaller", "image_larger"):
        side = int(x["typical_side"])
        suggest = (
            min(max(32, round(side / 32) * 32), 1024) if f.code == "image_smaller" else max(32, round(side / 32) * 32)
        )
        return Q.say(lang, f"advice_{f.code}", size=x["image_size"], side=side, suggest=suggest)
    return Q.say(lang, "advice_no_clear_cause")


def weak_results(d: Handlers, job_id: int | None) -> Turn:
    """Advice for one job from its own facts (`tools.jobs.diagnose.diagnose_job`)."""
    lang = d.lang
    if job_id is None:
        return Turn(Q.say(lang, "advice_no_job"), suggestions=_training_suggestions(d), action="advice")
    try:
        diag = diagnose_job(d.ctx, job_id)
    except NotFoundError:
        return Turn(d.t("job_not_found", job_id=job_id), action="job_not_found")
    job = diag.job
    value = R.number(job.metric) if job.metric is not None else "-"
    lines = [
        Q.say(
            lang,
            "advice_head",
            job_id=job.id,
            model=job.model_name,
            dataset=job.dataset_name or "?",
            metric=job.metric_name or "-",
            value=value,
        )
    ]
    lines += [_advice_line(lang, f) for f in diag.findings]
    codes = {f.code for f in diag.findings}
    sugg: list[str] = []
    if codes & {"still_improving", "few_epochs"}:
        sugg.append(
            f"{job.id}번 작업이랑 같게, 에폭만 더 많이"
            if lang == "ko"
            else f"train the same as job {job.id} but with more epochs"
        )
    sugg.append(f"{job.id}번 작업 지표 보여줘" if lang == "ko" else f"show metrics of job {job.id}")
    d.remember(job_id=job.id)
    return Turn(
        "\n".join(lines),
        suggestions=sugg,
        summary={"diagnosis": diag.model_dump(mode="json")},
        job_id=job.id,
        action="advice",
    )


def _training_suggestions(d: Handlers) -> list[str]:
    visible = list_visible_datasets(d.ctx)  # the user's own first, then public ones
    ko = d.lang == "ko"
    if not visible:
        return ["내 데이터는 어떻게 올려?"] if ko else ["how do I upload my own data?"]
    ds = visible[0]
    task = next((t for t in catalog.TASK_PREFERENCE if ds["tasks"].get(t) == "native"), None)
    model = catalog.default_model(task, strict=False) if task else None
    if model is None:
        return ["내 데이터는 어떻게 올려?"] if ko else ["how do I upload my own data?"]
    return [train_request(ds["name"], model, d.lang)]


def state_suggestions(d: Handlers) -> list[str]:
    """Three things to say next that fit what the user has: no datasets of their own -> upload
    help first; datasets but no jobs -> a training request on one of them; a running job -> its
    progress; a finished job -> test / download / advice."""
    ko = d.lang == "ko"
    listed = jobs.list_jobs(d.ctx, limit=5).items
    own = [x for x in list_visible_datasets(d.ctx) if x["is_owner"]]
    out: list[str] = []
    active = next((j for j in listed if j.status not in TERMINAL_STATUSES), None)
    done = next((j for j in listed if j.status == "completed"), None)
    if active is not None:
        out.append(f"{active.id}번 작업 진행 상황 알려줘" if ko else f"how is job {active.id} going?")
    if done is not None:
        out.append(f"{done.id}번 작업 모델 다운로드" if ko else f"download the model of job {done.id}")
        out.append(f"{done.id}번 작업 정확도가 왜 낮아?" if ko else f"why is the accuracy of job {done.id} low?")
    if len(listed) >= 2:
        out.append("최근 작업 두 개 비교해줘" if ko else "compare my last two jobs")
    if not own:
        out.append("내 데이터는 어떻게 올려?" if ko else "how do I upload my own data?")
    out += _training_suggestions(d)
    if own:
        name = own[0]["name"]
        out.append(f"{name} 데이터셋으로 뭘 학습할 수 있어?" if ko else f"what can I train on {name}?")
    out.append("내 데이터는 어떻게 올려?" if ko else "how do I upload my own data?")
    out.append("어떤 모델을 쓸 수 있어?" if ko else "what models can I use?")
    out.append("도움말" if ko else "help")
    return list(dict.fromkeys(out))[:3]


def fallback(d: Handlers) -> Turn:
    """The answer to a message the dialogue did not understand: what it can do, and three
    suggestions that fit the user's state."""
    sugg = state_suggestions(d)
    text = "\n".join([Q.say(d.lang, "fallback"), *(f'- "{s}"' for s in sugg)])
    return Turn(text, suggestions=sugg, action="not_understood")
