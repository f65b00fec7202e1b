"""The dialogue's command handlers: questions and commands answered in any state (help, the user's
weights, "is it pretrained?", export, download, test runs, inference on an attached image, list
models / datasets, compatibility, metrics, progress, stop, resume). `CommandHandlers.command`
picks the handler for a message, or None when the message is not a command (then the state
machine in `agent.dialogue.machine` reads it as part of a training request).
See `docs/architecture.md`.
"""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import ValidationError

from agent import replies as R
from agent.dialogue import advice, questions
from agent.dialogue import patterns as P
from agent.dialogue.base import DialogueBase, Turn
from agent.lexicon import (
    DOWNLOAD_RE,
    LAST_CHECKPOINT_RE,
    MODEL_CARD_RE,
    MY_WEIGHTS_EN_RE,
    MY_WEIGHTS_KO_RE,
    PRETRAINED_Q_RE,
)
from agent.toolkit import (
    dataset_info,
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
from tools.datasets import check_dataset_compatibility
from tools.errors import ConflictError, InvalidInputError, NotFoundError, ToolError
from tools.intent import TrainingIntent
from trainer_runtime.events import TERMINAL_STATUSES


class CommandHandlers(DialogueBase):
    """The commands of one turn (see the module doc)."""

    def list_user_weights(self) -> Turn:
        items = user_weights.list_user_weights(self.ctx)
        if not items:
            return Turn(self.t("user_weights_list_none", hint=user_weights.UPLOAD_HINT), action="list_weights")
        lines = "\n".join(self.user_weights_line(n, c) for n, c in enumerate(items[:20], 1))
        return Turn(self.t("user_weights_list", lines=lines, model=items[0]["model_name"]), action="list_weights")

    repeating = False
    """Set by `agent.dialogue.questions` when the message repeats an earlier job: its settings are
    now the turn's slots, for the state machine to complete and confirm."""

    def not_understood(self) -> Turn:
        """What the agent can do, with suggestions that fit the user's state (`agent.dialogue.advice`)."""
        return advice.fallback(self)

    def command(self, given: dict[str, Any]) -> Turn | None:
        turn = questions.answer(self, given)  # questions about the user's data and jobs come first
        if turn is not None or self.repeating:
            return turn
        training = {
            k
            for k in given
            if k in ("model_name", "dataset", "epochs", "batch_size", "image_size", "init_from_job", "init_weights")
        }
        turn = self.request_command(given, training)
        if turn is not None:
            return turn
        if training:
            return None
        return self.job_command()

    def request_command(self, given: dict[str, Any], training: set[str]) -> Turn | None:
        """Help, listings, weights, export/download, test runs, predictions and compatibility questions."""
        low = self.low
        if P.HELP.search(low):
            return Turn(self.t("help"), action="help")
        if (
            (MY_WEIGHTS_EN_RE.search(low) or MY_WEIGHTS_KO_RE.search(low))
            and P.WEIGHTS_LISTQ.search(low)
            and not P.TRAIN.search(low)
            and not training - {"init_weights"}
        ):
            return self.list_user_weights()
        if PRETRAINED_Q_RE.search(low) and not training and (self.intent.get("model_name") or self.job_ref()):
            return self.pretrained_answer()
        if P.EXPORT.search(low) and not training:
            return self.with_model_job(self.export)
        # "download the best model of job 12" names a job's checkpoint like a fine-tuning request
        # does; without a word asking to train it is a download
        if DOWNLOAD_RE.search(low) and not P.TRAIN.search(low) and not training - {"init_from_job"}:
            return self.with_model_job(self.download)
        if self.image is None and P.TEST_WORD.search(low) and not P.THIS_IMAGE.search(low):
            if P.TEST_STATUS.search(low) and self.ctxmem().get("test_run_id") and "dataset" not in given:
                return self.test_status()
            if P.TEST_SET.search(low) or (given.get("dataset") and set(given) <= {"dataset"}):
                return self.with_model_job(lambda job_id: self.test_run(job_id, given))
        if self.image is not None and (P.INFER.search(low) or not training):
            return self.with_model_job(self.predict)
        if P.MODELS.search(low) and P.LISTQ.search(low) and "model_name" not in given and "dataset" not in given:
            return self.list_models(given)
        if P.DATASETS.search(low) and P.LISTQ.search(low) and "dataset" not in given and "model_name" not in given:
            return self.list_datasets()
        if P.COMPAT.search(low) and ("dataset" in given or "task_type" in given):
            return self.compatibility(given)
        if P.INFER.search(low) and not training:
            return self.inference()
        return None

    def job_command(self) -> Turn | None:
        """Metrics, progress, stop and resume of a job (only when the message asks for no training)."""
        low = self.low
        if P.METRICS.search(low):
            return self.with_job(self.metrics)
        if P.PROGRESS.search(low):
            return self.with_job(self.progress)
        if P.STOP.search(low):
            if self.s.state in ("collecting", "confirming") and not P.JOB_REF.search(low):
                return self.cancel()
            return self.with_job(self.stop)
        if P.RESUME.search(low):
            return self.with_job(self.resume, require_explicit=True)
        return None

    def pretrained_answer(self) -> Turn:
        """ "is it pretrained?": the pending request's plan while one is being set up (unless a job
        is named), else the job's recorded weights."""
        named = P.JOB_REF.search(self.low)
        intent = self.intent
        if intent.get("model_name") and self.s.state in ("collecting", "confirming") and not named:
            try:
                text = weights_tools.describe_weights_plan(self.ctx, TrainingIntent(**intent), self.lang)
            except (InvalidInputError, ValidationError) as exc:
                return Turn(self.t("conflict", reason=str(exc)), action="pretrained")
            return Turn(self.t("pretrained_pending", model=intent["model_name"], text=text), action="pretrained")

        def answer(job_id: int) -> Turn:
            job = jobs.get_job(self.ctx, job_id)
            pretrained = (job.model_extra or {}).get("pretrained")
            text = weights_tools.describe_pretrained(pretrained, str(job.model_name), self.lang)
            return Turn(self.t("pretrained_job", job_id=job_id, model=job.model_name, text=text), action="pretrained")

        return self.with_job(answer)

    def job_ref(self, require_explicit: bool = False) -> int | None:
        m = P.JOB_REF.search(self.low)
        if m:
            return int(m.group(1) or m.group(2))
        if require_explicit:
            m2 = P.ANY_INT.search(self.low)
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
        if isinstance(name, str) and name.strip().lower() in P.TEST_WORDS_AS_NAMES:
            name = None
        name = name or self.dataset_named_in_text()
        if not name:
            job = jobs.get_job(self.ctx, job_id)
            if not job.dataset_id:
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
        model = jobs.get_job(self.ctx, job_id).model_name
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
        fmt = P.export_format(self.low)
        rec = export_onnx(self.ctx, self.scope.service(), job_id, fmt=fmt)
        if rec.get("status") != "completed":
            text = self.t(
                "export_failed",
                job_id=job_id,
                fmt=P.FORMAT_NAMES.get(fmt, fmt),
                error=rec.get("error") or rec.get("status"),
            )
            return Turn(text, summary={"export": rec}, job_id=job_id, action="export_failed")
        parity = dict(rec.get("parity") or {})
        text = self.t(
            "export_done",
            job_id=job_id,
            fmt=P.FORMAT_NAMES.get(fmt, fmt),
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
        if p["batch"] and p["batches"] and p["status"] not in TERMINAL_STATUSES:
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
        if p["eta_s"] is not None and p["status"] not in TERMINAL_STATUSES:
            parts.append(self.t("progress_eta", eta=R.duration(p["eta_s"], self.lang)))
        if p["error"]:
            parts.append(self.t("progress_error", error=str(p["error"])[:300]))
        summary = {"progress": p}
        return Turn("; ".join(parts) + ".", summary=summary, action="progress")

    def metrics(self, job_id: int) -> Turn:
        job = jobs.get_job(self.ctx, job_id)
        m = jobs.job_metrics(self.ctx, job_id)
        lines = [self.t("metrics_head", job_id=job_id, status=R.status_label(job.status, self.lang))]
        epochs = list(m.epochs)
        if not epochs:
            lines.append(self.t("metrics_none"))
        for i, e in list(enumerate(epochs))[-5:]:
            values = {k: v[i] for k, v in m.series.items()}
            lines.append(self.t("metrics_epoch", epoch=e, metrics=R.metrics_line(values, limit=8)))
        if m.best_metric is not None:
            lines.append(
                self.t(
                    "progress_best",
                    name=m.best_metric_name,
                    value=R.number(m.best_metric),
                    epoch=m.best_epoch,
                )
            )
        return Turn("\n".join(lines), summary={"metrics": m.model_dump()}, action="metrics")

    def stop(self, job_id: int) -> Turn:
        job = jobs.stop_job(self.ctx, job_id)
        text = self.t("stopping", job_id=job_id, status=R.status_label(job.status, self.lang))
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
        reason = self.compat_reason(ds, task, res)
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
        if job.status != "completed" and not job.checkpoints:
            return Turn(
                self.t("inference_not_ready", job_id=job_id, status=R.status_label(job.status, self.lang)),
                job_id=job_id,
                action="inference",
            )
        text = self.t("inference_how", job_id=job_id) + " " + self.t("inference_chat_attach")
        return Turn(text, job_id=job_id, action="inference")
