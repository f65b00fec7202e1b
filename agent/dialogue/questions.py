"""Questions about the user's data and jobs that the dialogue answers before anything else (tried
first by `Handlers.command`, in any state):

- "how do I upload my own data?" -> `advice.upload_help`;
- "what can I train on pets?" -> `advice.dataset_fit` (compatibility tool + model catalog);
- "compare job 3 and job 5", "compare my last two jobs" -> a table (`tools.jobs.compare`);
- "which of my jobs was best for digits?" -> ranked by the task's headline metric;
- "download the best model for digits" -> that job's signed link (the download command's code);
- "delete job 4" -> asks first; deletes only on a yes (or the same request again) in the very next
  turn, keeps it on a no, forgets the question on anything else. While a training request waits
  for its own yes, a bare yes stays that request's: the delete needs "delete job 4" again;
- "why is my accuracy low?" -> `advice.weak_results` (`tools.jobs.diagnose`);
- "train the same as job 3 but with 30 epochs", "more epochs than last time" -> the job's settings
  (`tools.jobs.rerun.rerun_intent`) with the change applied become the turn's slots (`given` is
  replaced and `repeating` set), and the state machine goes on as for any request: its questions,
  then the confirmation summary; nothing starts without the person's yes.

Each answer comes from tools run as the chat's user: another user's job is "not found" as in REST.
Replies are in the message's language (`agent.dialogue.question_texts`). See docs/architecture.md.
"""

from __future__ import annotations

import re
from typing import Any

from agent import replies as R
from agent.dialogue import advice
from agent.dialogue import patterns as P
from agent.dialogue import question_texts as Q
from agent.dialogue.advice import Handlers
from agent.dialogue.base import Turn, is_no, is_yes
from agent.lexicon import DOWNLOAD_RE
from agent.toolkit import latest_completed_job
from tools import jobs
from tools.errors import InvalidInputError, NotFoundError
from tools.jobs.compare import MAX_COMPARED, JobFacts, best_jobs, compare_jobs, latest_job_ids
from tools.jobs.rerun import rerun_intent
from tools.upload_guide import upload_guide

# ------------------------------------------------------------------------------------ patterns

WEIGHTS_WORDS = re.compile(r"\bweights?\b|\bcheckpoints?\b|가중치|체크포인트")
UPLOAD = re.compile(
    r"\b(?:upload|import|bring|add|load|put)\b.{0,40}\b(?:data|datasets?|images?|pictures?|photos?|files?|zip|"
    r"coco|yolo|labels?|annotations?)\b|\bmy own data\b|\bown (?:data|dataset|images)\b"
    r"|\b(?:data|dataset|zip|upload)\s+(?:format|layout)s?\b|\bwhat formats?\b"
    r"|(?:데이터|데이터셋|이미지|사진|파일|라벨|zip|압축|coco|yolo|imagefolder|dice|형식|포맷).{0,12}"
    r"(?:업로드|올리|올려|올릴|가져오|넣)"
    r"|(?:업로드|올리는|올릴).{0,8}(?:방법|어떻게|형식|포맷)|데이터\s*형식|어떤 형식"
)
BARE_UPLOAD = re.compile(
    r"^\s*(?:(?:let me|i want to|i'd like to|can i)\s+)?(?:upload|업로드)(?:\s*(?:할래|하고 싶어|하기))?\s*[?!.]*$"
)
WHAT_CAN_TRAIN = re.compile(
    r"\bwhat (?:can|could|should|do|would) (?:i|we) (?:train|build|make|learn|do)\b"
    r"|\bwhat (?:tasks?|models?) (?:can|could|would|fit|suit|work|are possible|make sense)"
    r"|\bwhich (?:tasks?|models?) (?:fit|suit|work|can|could|make sense)\b|\bwhat is .{1,40} good for\b"
    r"|(?:뭘|무엇을|뭐|무슨|어떤 걸)\s*(?:학습|훈련|만들)|뭐\s*할\s*수"
    r"|어떤\s*(?:작업|모델|태스크)(?:이|을|를|으로|로)?\s*(?:가능|할 수|돼|되|맞|어울|학습)"
)
TASK_OR_MODEL_Q = re.compile(r"\bwhat (?:tasks?|models?)\b|\bwhich (?:tasks?|models?)\b|어떤\s*(?:작업|모델|태스크)")
COMPARE = re.compile(
    r"\bcompar(?:e|ing|ison)\b|\bversus\b|\bvs\.?(?!\w)|\bdiff(?:erence)? between\b|\bside by side\b"
    r"|비교|차이점|뭐가 달라|뭐가 다르|어떻게 달라|어떻게 다르"
)
LATEST = re.compile(r"\b(?:last|latest|recent|newest|previous)\b|최근|마지막|지난|직전")
COUNT_WORDS = {"two": 2, "both": 2, "three": 3, "four": 4, "five": 5, "두": 2, "둘": 2, "세": 3, "셋": 3, "네": 4}
COUNT = re.compile(
    r"\b(\d)\s*(?:jobs?|runs?|models?|trainings?)\b|(\d)\s*(?:개|건)|\b(two|both|three|four|five)\b"
    r"|(?<![가-힣])(두|둘|세|셋|네)\s*(?:개|건|가지|작업|학습|모델)"
)
NUMBER = re.compile(r"(?<![\w.])#?(\d{1,9})(?![\w.%]|\s*(?:epochs?|에폭|에포크|개|건|x\d))")
BEST = re.compile(
    r"\bbest\b|\bhighest\b|\btop\b|\bwinner\b|\bwon\b|\bstrongest\b|\bbetter\b|제일|가장|최고|베스트|1등|일등"
)
JOB_WORDS = re.compile(r"\bjobs?\b|\bruns?\b|\bmodels?\b|\btrainings?\b|작업|학습|모델|\b잡\b")
QUESTION = re.compile(r"\bwhich\b|\bwhat\b|\bwho\b|\bshow\b|\btell\b|어떤|어느|뭐|뭔|몇\s*번|알려|\?")
DELETE = re.compile(r"\b(?:delete|remove|erase|discard|trash|get rid of)\b|삭제|지워|지우|없애|제거")
OTHER_THINGS = re.compile(r"\bdata ?sets?\b|\bimages?\b|\bweights?\b|\bsessions?\b|데이터|이미지|가중치|사진|대화")
IT = re.compile(r"\b(?:it|this|that|this job|that job)\b|그거|이거|저거|이 작업|그 작업")
WHY_LOW = re.compile(
    r"\bwhy\b.{0,60}\b(?:low|bad|poor|worse|weak|terrible|awful|not (?:good|great|improving|learning|better)|"
    r"stuck|drop(?:ped|ping|s)?|so low|fail(?:ed|s)?|crash(?:ed)?|error)\b|왜.{0,20}(?:실패|에러|오류|멈췄)"
    r"|\bhow (?:can|do|could|should) (?:i|we) (?:improve|increase|raise|boost|get (?:a )?(?:better|higher))\b"
    r"|\bimprove (?:the |my |its |this )?(?:accuracy|results?|model|map|score|performance)\b"
    r"|\b(?:accuracy|map|results?|scores?|performance) (?:is|are|was|were|seems?|looks?) (?:too |so |very |really "
    r"|pretty |quite )?(?:low|bad|poor|weak)\b|\blow (?:accuracy|map|scores?)\b"
    r"|왜.{0,30}(?:낮|안\s*좋|나쁘|나빠|별로|안\s*올라|떨어|안\s*나와|형편없)"
    r"|(?:정확도|성능|결과|map|점수|지표).{0,15}(?:낮|안\s*좋|별로|올리|올려|올릴|높이|높여|높일|개선|안\s*나와|안\s*올라)"
    r"|어떻게\s*(?:하면|해야)\s*(?:더\s*)?(?:좋아|올라|개선|높아|나아)"
)
SAME = re.compile(
    r"\bsame (?:as|settings|setup|config|configuration|way|thing)\b|\blike (?:job|last time|before)\b|\bre-?run\b"
    r"|\brepeat\b|\bre-?train\b|똑같이|같은 설정|같게|동일하게|그대로|다시 학습|다시 돌|재학습|설정(?:으로|대로)"
)
AGAIN = re.compile(r"\bagain\b|다시")
RUN = re.compile(r"\brun\b|돌려|돌리")
TRAIN_VERB = re.compile(r"\btrain|\bbuild\b|\bmake\b|\blearn|학습|훈련|만들")
LAST_TIME = re.compile(
    r"\blast (?:time|run|job|training|one)\b|\bprevious (?:job|run|one|training|time)\b|\bthan before\b"
    r"|지난번|저번|이전\s*(?:작업|학습|거)|지난\s*(?:작업|학습)|마지막\s*(?:작업|학습)|전번"
)
MORE_EPOCHS = re.compile(
    r"\bmore epochs\b|\blonger\b|\bmore training\b|\btwice as (?:many|long)\b"
    r"|(?:에폭|에포크).{0,6}(?:더|늘|많이|두 배)|(?:더|늘려|늘리).{0,6}(?:에폭|에포크)|더 오래|더 길게"
)
FEWER_EPOCHS = re.compile(
    r"\b(?:fewer|less) epochs\b|\bshorter\b|(?:에폭|에포크).{0,6}(?:줄|적게)|(?:줄여|줄이|적게).{0,6}(?:에폭|에포크)"
    r"|더 짧게"
)
TIMES = re.compile(r"(\d+(?:\.\d+)?)\s*(?:x|times|배)")
PLUS_N = re.compile(
    r"(\d+)\s*more\s*epochs?|(\d+)\s*(?:에폭|에포크|epochs?)\s*더|(?:에폭|에포크)(?:을|를)?\s*(\d+)\s*(?:번|회|개)?\s*더"
)
FINETUNE = re.compile(r"fine-?tun|파인\s*튜닝|미세\s*조정|from (?:its|the) (?:best|last)|체크포인트에서|이어서")
RERUN_SLOTS = ("model_name", "framework", "task_type", "dataset", "epochs", "batch_size", "image_size")


def _ids(low: str) -> list[int]:
    """Job numbers the message names ("job 3", "#3", "3번", "작업 3"), in order."""
    return [int(m.group(1) or m.group(2)) for m in P.JOB_REF.finditer(low)]


def _count(low: str) -> int:
    m = COUNT.search(low)
    if m is None:
        return 2
    word = next(g for g in m.groups() if g)
    return int(word) if word.isdigit() else COUNT_WORDS[word]


# ------------------------------------------------------------------------------------ routing


def answer(d: Handlers, given: dict[str, Any]) -> Turn | None:
    """The answer to one of the questions of the module doc, or None when the message asks none."""
    turn = _pending_delete(d, given)
    routes = (_fit, _upload, _delete_request, _download, _compare_request, _best_request, _advice, _rerun)
    for route in routes:
        if turn is not None:
            break
        turn = route(d, given)
    return turn


def _slots(given: dict[str, Any]) -> set[str]:
    return {k for k in given if k in RERUN_SLOTS}


def _fit(d: Handlers, given: dict[str, Any]) -> Turn | None:
    if not WHAT_CAN_TRAIN.search(d.low):
        return None
    name = given.get("dataset") or d.dataset_named_in_text()
    if name or (not TASK_OR_MODEL_Q.search(d.low) and TRAIN_VERB.search(d.low)):
        return advice.dataset_fit(d, str(name) if name else None)
    return None


def _upload(d: Handlers, given: dict[str, Any]) -> Turn | None:
    low = d.low
    asks_how = not P.TRAIN.search(low) or "?" in low or re.search(r"\bhow\b|어떻게|방법", low)
    if (UPLOAD.search(low) or BARE_UPLOAD.match(low)) and not WEIGHTS_WORDS.search(low) and asks_how:
        return advice.upload_help(d) if not _slots(given) - {"dataset"} else None
    return None


def _delete_request(d: Handlers, given: dict[str, Any]) -> Turn | None:
    low = d.low
    if not DELETE.search(low) or _slots(given) - {"dataset"}:
        return None
    if OTHER_THINGS.search(low) and not P.JOB_REF.search(low):
        # never read as a training request: datasets, images and weights are deleted on the page
        page = upload_guide(d.ctx).page_url
        return Turn(Q.say(d.lang, "delete_other", page=page), action="delete_other")
    return _ask_delete(d) if "dataset" not in given else None


def _download(d: Handlers, given: dict[str, Any]) -> Turn | None:
    low = d.low
    if not (DOWNLOAD_RE.search(low) and BEST.search(low)) or P.JOB_REF.search(low):
        return None
    name = given.get("dataset") or d.dataset_named_in_text()
    return _download_best(d, str(name), given.get("task_type")) if name else None


def _compare_request(d: Handlers, given: dict[str, Any]) -> Turn | None:
    low = d.low
    if _slots(given) - {"dataset"}:
        return None
    named = len(_ids(low)) >= 2 and (BEST.search(low) or COMPARE.search(low))  # "is job 1 or job 2 better?"
    refs = _ids(low) or LATEST.search(low) or JOB_WORDS.search(low) or NUMBER.search(low)
    if named or (COMPARE.search(low) and (refs or len(low.split()) <= 3)):
        return _compare(d)
    return None


def _best_request(d: Handlers, given: dict[str, Any]) -> Turn | None:
    low = d.low
    asks = BEST.search(low) and JOB_WORDS.search(low) and QUESTION.search(low) and not DOWNLOAD_RE.search(low)
    if asks and "model_name" not in given and not (P.TRAIN.search(low) and "?" not in low):
        return _best(d, given)
    return None


def _advice(d: Handlers, given: dict[str, Any]) -> Turn | None:
    if WHY_LOW.search(d.low) and "model_name" not in given:
        return advice.weak_results(d, _advice_job(d))
    return None


def _advice_job(d: Handlers) -> int | None:
    ids = _ids(d.low)
    if ids:
        return ids[0]
    job_id = d.job_ref()
    if job_id is not None:
        return job_id
    done = latest_completed_job(d.ctx)
    if done is not None:
        return done
    newest = latest_job_ids(d.ctx, 1)
    return newest[0] if newest else None


# ------------------------------------------------------------------------------------ compare


def _table(rows: list[list[str]]) -> str:
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def _value_text(f: JobFacts, lang: str) -> str:
    if f.metric is None:
        return "-"
    epoch = Q.say(lang, "best_epoch", epoch=f.metric_epoch) if f.metric_epoch else ""
    return f"{R.number(f.metric)}{epoch}"


def _compare(d: Handlers) -> Turn:
    lang, low = d.lang, d.low
    ids = _ids(low)
    if not ids and LATEST.search(low):
        n = min(_count(low), MAX_COMPARED)
        ids = latest_job_ids(d.ctx, n)
        if len(ids) < 2:
            return Turn(Q.say(lang, "compare_too_few", n=Q.count_text(len(ids), "job", lang)), action="compare")
    ids = ids or [int(m.group(1)) for m in NUMBER.finditer(low)]
    if len(ids) == 1:  # "compare job 5 with the last one"
        other = latest_job_ids(d.ctx, 1, exclude=ids[0])
        if not other:
            return Turn(Q.say(lang, "compare_too_few", n=Q.count_text(1, "job", lang)), action="compare")
        ids = [ids[0], other[0]]
    if len(ids) < 2:
        recent = latest_job_ids(d.ctx, 2)
        if len(recent) < 2:
            return Turn(Q.say(lang, "compare_too_few", n=Q.count_text(len(recent), "job", lang)), action="compare")
        return Turn(Q.say(lang, "compare_which", a=recent[1], b=recent[0]), action="compare_which")
    try:
        cmp = compare_jobs(d.ctx, ids)
    except NotFoundError as exc:
        return Turn(d.t("job_not_found", job_id=exc.detail.get("job_id", "?")), action="job_not_found")
    except InvalidInputError:
        if len(set(ids)) < 2:
            return Turn(Q.say(lang, "compare_same", job_id=ids[0]), action="compare_same")
        return Turn(Q.say(lang, "compare_too_many", n=MAX_COMPARED), action="compare")
    facts = cmp.jobs
    metric = cmp.metric_name or "metric"

    def label(key: str, **kw: Any) -> str:
        return Q.say(lang, key, **kw)

    rows = [
        [label("row_job"), *(f"#{f.id}" for f in facts)],
        [label("row_model"), *(f.model_name for f in facts)],
        [label("row_data"), *(f.dataset_name or "-" for f in facts)],
        [label("row_status"), *(R.status_label(f.status, lang) for f in facts)],
        [label("row_epochs"), *(f"{f.epochs_completed}/{f.epochs}" for f in facts)],
        [label("row_time"), *(R.duration(f.duration_s, lang) if f.duration_s is not None else "-" for f in facts)],
        [label("row_best", metric=metric), *(_value_text(f, lang) for f in facts)],
    ]
    lines = [Q.say(lang, "compare_head", ids=", ".join(str(f.id) for f in facts)), _table(rows)]
    shown = {k: v for k, v in cmp.differing.items() if k != "epochs"}
    if shown:
        items = "; ".join(Q.settings_change(k, vals, lang) for k, vals in shown.items())
        lines.append(Q.say(lang, "compare_differ", items=items))
    else:
        lines.append(Q.say(lang, "compare_no_differ"))
    if not cmp.same_task:
        lines.append(Q.say(lang, "compare_tasks_differ"))
    elif cmp.leader is not None:
        lines.append(Q.say(lang, "compare_leader", metric=metric, job_id=cmp.leader))
        d.remember(job_id=cmp.leader)
    return Turn("\n".join(lines), summary={"comparison": cmp.model_dump(mode="json")}, action="compare")


# ------------------------------------------------------------------------------------ best


def _best(d: Handlers, given: dict[str, Any]) -> Turn:
    lang = d.lang
    name = given.get("dataset") or d.dataset_named_in_text()
    if not name:
        names = list(dict.fromkeys(j.dataset_name for j in jobs.list_jobs(d.ctx, limit=100).items if j.dataset_name))
        if len(names) == 1:
            name = names[0]
        elif not names:
            return Turn(
                Q.say(lang, "best_no_jobs", dataset="-"), suggestions=advice.state_suggestions(d), action="best"
            )
        else:
            return Turn(
                Q.say(lang, "best_which", names=", ".join(names[:8])), suggestions=names[:5], action="best_which"
            )
    try:
        res = best_jobs(d.ctx, str(name), given.get("task_type"))
    except NotFoundError as exc:
        close = [str(x) for x in (exc.detail.get("suggestions") or [])]
        hint = d.t("did_you_mean", names=", ".join(close)) if close else ""
        return Turn(d.t("dataset_not_found", name=str(name), hint=hint), action="best_not_found")
    if not res.groups:
        return Turn(
            Q.say(lang, "best_no_jobs", dataset=res.dataset), suggestions=advice.state_suggestions(d), action="best"
        )
    lines: list[str] = []
    top: int | None = None
    for g in res.groups:
        metric = g.metric_name or "metric"
        unranked = ", ".join(f"#{f.id}" for f in g.unranked)
        if not g.ranked:
            extra = f" ({Q.say(lang, 'best_unranked', metric=metric, ids=unranked).rstrip('.')})" if unranked else ""
            lines.append(Q.say(lang, "best_none", dataset=res.dataset, metric=metric, unranked=extra))
            continue
        first = g.ranked[0]
        top = top or first.id
        epoch = Q.say(lang, "best_epoch", epoch=first.metric_epoch) if first.metric_epoch else ""
        lines.append(
            Q.say(
                lang,
                "best_head",
                dataset=res.dataset,
                task=d.task(g.task_type),
                job_id=first.id,
                model=first.model_name,
                metric=metric,
                value=R.number(first.metric),
                epoch=epoch,
            )
        )
        rest = [
            Q.say(lang, "best_rest_item", job_id=f.id, model=f.model_name, value=R.number(f.metric))
            for f in g.ranked[1:5]
        ]
        if rest:
            lines.append(Q.say(lang, "best_rest", items=", ".join(rest)))
        if unranked:
            lines.append(Q.say(lang, "best_unranked", metric=metric, ids=unranked))
        lines.append(Q.say(lang, "best_by", metric=metric, task=d.task(g.task_type)))
    sugg: list[str] = []
    if top is not None:
        d.remember(job_id=top)
        sugg = (
            [f"{top}번 작업 모델 다운로드", f"{top}번 작업 지표 보여줘"]
            if lang == "ko"
            else [
                f"download the best model of job {top}",
                f"show metrics of job {top}",
            ]
        )
    return Turn(
        "\n".join(lines), suggestions=sugg, summary={"best": res.model_dump(mode="json")}, job_id=top, action="best"
    )


def _download_best(d: Handlers, name: str, task: Any) -> Turn:
    try:
        res = best_jobs(d.ctx, name, task)
    except NotFoundError:
        return Turn(d.t("dataset_not_found", name=name, hint=""), action="download_not_found")
    ranked = [g.ranked[0] for g in res.groups if g.ranked]
    if not ranked:
        return Turn(Q.say(d.lang, "best_no_jobs", dataset=res.dataset), action="download_none")
    d.remember(job_id=ranked[0].id)
    return d.with_model_job(d.download)


# ------------------------------------------------------------------------------------ delete


def _ask_delete(d: Handlers) -> Turn | None:
    low = d.low
    ids = _ids(low) or [int(m.group(1)) for m in NUMBER.finditer(low)]
    if ids:
        job_id: int | None = ids[0]
    elif IT.search(low) or JOB_WORDS.search(low):
        job_id = d.job_ref()
    else:
        return None
    if job_id is None:
        newest = latest_job_ids(d.ctx, 1)
        if not newest:
            return Turn(Q.say(d.lang, "delete_which_none"), action="delete_which")
        return Turn(Q.say(d.lang, "delete_which", job_id=newest[0]), action="delete_which")
    try:
        job = jobs.get_job(d.ctx, job_id)
    except NotFoundError:
        return Turn(d.t("job_not_found", job_id=job_id), action="job_not_found")
    d.remember(delete_pending=job.id, delete_turn=int(d.s.turns or 0))
    confirming = d.s.state == "confirming"
    text = Q.say(
        d.lang,
        "delete_ask_pending" if confirming else "delete_ask",
        job_id=job.id,
        model=job.model_name,
        dataset=job.dataset_name or "?",
        status=R.status_label(job.status, d.lang),
    )
    ko = d.lang == "ko"
    yes = (f"{job.id}번 작업 삭제" if ko else f"delete job {job.id}") if confirming else ("네" if ko else "yes")
    no = "아니요" if ko else "no"
    sugg = [yes] if confirming else [yes, no]  # a "no" now would also answer the waiting request
    return Turn(text, suggestions=sugg, job_id=job.id, action="delete_confirm")


def _pending_delete(d: Handlers, given: dict[str, Any]) -> Turn | None:
    mem = d.ctxmem()
    pending = mem.get("delete_pending")
    if pending is None:
        return None
    d.remember(delete_pending=None, delete_turn=None)
    if int(d.s.turns or 0) != int(mem.get("delete_turn", -2)) + 1:
        return None  # only the very next turn answers the question (a turn the LLM answered in between ends it)
    low = d.low
    same = DELETE.search(low) is not None and set(_ids(low)) <= {int(pending)}
    training = {k for k in given if k in RERUN_SLOTS}
    if same or (is_yes(low) and not training and d.s.state != "confirming"):
        return _delete(d, int(pending))
    if is_no(low):
        return Turn(Q.say(d.lang, "delete_kept", job_id=pending), action="delete_kept")
    return None


def _delete(d: Handlers, job_id: int) -> Turn:
    try:
        out = jobs.delete_job(d.ctx, job_id)
    except NotFoundError:
        return Turn(d.t("job_not_found", job_id=job_id), action="job_not_found")
    d.s.job_ids = [j for j in (d.s.job_ids or []) if int(j) != job_id]
    if d.ctxmem().get("job_id") == job_id:
        d.remember(job_id=None)
    text = Q.say(
        d.lang,
        "deleted",
        job_id=job_id,
        checkpoints=Q.count_text(out["checkpoints_deleted"], "checkpoint file", d.lang),
        exports=Q.count_text(out["exports_deleted"], "export", d.lang),
        runs=Q.count_text(out["test_runs_deleted"], "test run", d.lang),
    )
    if out["kept"]:
        text += "\n" + Q.say(d.lang, "deleted_kept", items="; ".join(str(k) for k in out["kept"]))
    return Turn(text, summary={"deleted": out}, action="deleted")


# ------------------------------------------------------------------------------------ rerun


def _rerun_base(d: Handlers, low: str, given: dict[str, Any]) -> tuple[bool, int | None]:
    """(is this a request to repeat a job, which job)."""
    ids = _ids(PLUS_N.sub(" ", low))  # "에폭 10번 더" is ten more epochs, not job 10
    change = MORE_EPOCHS.search(low) or FEWER_EPOCHS.search(low) or PLUS_N.search(low)
    same = SAME.search(low) or (AGAIN.search(low) and (P.TRAIN.search(low) or ids or RUN.search(low)))
    last = LAST_TIME.search(low)
    repeat = same and (ids or last or P.TRAIN.search(low) or AGAIN.search(low))
    after_job = d.s.job_ids or d.ctxmem().get("job_id")
    # "train for more epochs" in a new chat: the newest job, unless the message names what to train
    after_job = after_job or (P.TRAIN.search(low) and not _slots(given) - {"epochs"})
    if not repeat and not (change and (ids or last or after_job)):
        return False, None
    if ids:
        return True, ids[0]
    if last:
        newest = latest_job_ids(d.ctx, 1)
        return True, newest[0] if newest else None
    job_id = d.job_ref()
    if job_id is None:
        newest = latest_job_ids(d.ctx, 1)
        job_id = newest[0] if newest else None
    return True, job_id


def _new_epochs(low: str, base: int | None, given: dict[str, Any]) -> int | None:
    plus = PLUS_N.search(low)
    if plus and base:
        return base + int(next(g for g in plus.groups() if g))
    times = TIMES.search(low)
    if times and base and MORE_EPOCHS.search(low):
        return max(base + 1, round(base * float(times.group(1))))
    if "epochs" in given:
        return int(given["epochs"])
    if base and MORE_EPOCHS.search(low):
        return base * 2
    if base and FEWER_EPOCHS.search(low):
        return max(1, base // 2)
    return None


def _change_text(key: str, value: Any, lang: str) -> str:
    if isinstance(value, dict):
        return ", ".join(Q.settings_change(k, [v], lang) for k, v in value.items())
    return Q.settings_change(key, [value], lang)


def _rerun(d: Handlers, given: dict[str, Any]) -> Turn | None:
    low = d.low
    if d.s.state in ("collecting", "confirming") and not (_ids(low) or LAST_TIME.search(low)):
        return None  # "more epochs" while a request is open corrects that request
    wanted, job_id = _rerun_base(d, low, given)
    if not wanted:
        return None
    if job_id is None:
        return Turn(Q.say(d.lang, "rerun_no_job"), suggestions=advice.state_suggestions(d), action="rerun_no_job")
    try:
        base = rerun_intent(d.ctx, job_id).model_dump(exclude_none=True, exclude_defaults=True)
    except NotFoundError:
        return Turn(d.t("job_not_found", job_id=job_id), action="job_not_found")
    change = dict(given)
    if change.get("init_from_job") == job_id and not FINETUNE.search(low):
        change.pop("init_from_job", None)
        change.pop("init_checkpoint", None)
    epochs = _new_epochs(low, base.get("epochs"), change)
    if epochs is not None:
        change["epochs"] = epochs
    if "model_name" in change:
        for k in ("framework", "task_type"):
            if k not in change:
                base.pop(k, None)
    intent = dict(base)
    changes: list[str] = []
    for k, v in change.items():
        if k == "advanced_config":
            v = {**(intent.get(k) or {}), **v}
        if intent.get(k) != v:
            changes.append(_change_text(k, v, d.lang))
        intent[k] = v
    if d.s.state in ("collecting", "confirming"):
        d.set_intent({})  # the repeated job replaces the open request
    d.remember(offered=None, dataset_id=None, epochs_default=None, job_id=job_id)
    d.notes.append(
        Q.say(
            d.lang,
            "rerun_from",
            job_id=job_id,
            model=base.get("model_name"),
            dataset=base.get("dataset"),
            epochs=Q.epochs_text(int(base.get("epochs") or 0), d.lang),
        )
    )
    if changes:
        d.notes.append(Q.say(d.lang, "rerun_changed", changes=", ".join(changes)))
    # the state machine takes it from here as a request with these slots: its questions, then
    # the confirmation summary (nothing starts without the yes)
    given.clear()
    given.update(intent)
    d.repeating = True
    return None
