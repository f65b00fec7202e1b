"""The confirmation step of the dialogue: the summary of a complete request (from
`tools.jobs.create_job(..., launch=False)`: the plan, the settings chosen for the data with their
reasons, the preset in the page's words, the weights, an estimated duration), then the answer to it
in natural words (`agent.dialogue.answers`): yes launches, no drops the request, "not yet" waits
with nothing launched. A correction ("yes but with 2 epochs") is merged by the state machine
(`agent.dialogue.machine`), which shows the corrected summary here to confirm again.
See `docs/architecture.md`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from agent import replies as R
from agent import wording as W
from agent.dialogue.answers import NO, WAIT, YES, answer_kind
from agent.dialogue.base import Turn, looks_like_command
from agent.dialogue.commands import CommandHandlers
from tools import catalog, jobs
from tools import weights as weights_tools
from tools.errors import ConflictError, InvalidInputError, NotFoundError, ToolError
from tools.estimates import estimate_duration
from tools.intent import TrainingIntent


class ConfirmStep(CommandHandlers):
    """The summary to confirm, the answer to it, and the launch (see the module doc)."""

    def plan_error(self, exc: ToolError) -> Turn:
        """A create_job refusal, pointed back at the slot it names (the state machine's)."""
        raise NotImplementedError

    def answer_to_confirmation(self) -> Turn | None:
        """The turn for a yes / no / wait to the summary; None when the message is none of them."""
        kind = answer_kind(self.low)
        if kind == YES and not looks_like_command(self.low):
            return self.launch()
        if kind == NO:
            return self.cancel()
        if kind == WAIT:
            return self.wait()
        return None

    def wait(self) -> Turn:
        """ "not yet" / "잠깐만": nothing is launched or dropped, the question stays open."""
        if self.s.state == "confirming":
            yes_no = ["네", "아니오"] if self.lang == "ko" else ["yes", "no"]
            return Turn(self.t("confirm_wait"), suggestions=yes_no, action="wait")
        question = self.pending_question()
        return Turn(
            self.t("pending_wait", question=question),
            suggestions=list(self.ctxmem().get("offered") or []),
            action="wait",
        )

    def pending_question(self) -> str:
        """The open question in short (the state machine's)."""
        raise NotImplementedError

    def preset_values(self, framework: str | None, preset: str | None) -> dict[str, Any]:
        if not framework or not preset:
            return {}
        try:
            return dict(catalog.presets(framework).get(preset) or {})
        except Exception:
            return {}

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
        est = estimate_duration(self.ctx, ds, plan=preview)
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
        conversion = W.conversion_label(preview.get("conversion"), self.lang)
        conv = self.t("confirm_conversion", conversion=conversion) if conversion else ""
        settings = W.settings_line(values, self.lang)
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
            self.t("confirm_preset", preset=W.preset_label(preset, self.lang), values=settings)
            if preset
            else self.t("confirm_no_preset", values=settings),
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
            lines.append(self.t("confirm_advanced", values=W.settings_line(summary["advanced_config"], self.lang)))
        lines += [R.estimate_line(est, self.lang), self.t("confirm_question")]
        self.s.state = "confirming"
        self.s.pending = "confirm"
        self.remember(offered=None)
        yes_no = ["네", "아니오"] if self.lang == "ko" else ["yes", "no"]
        return Turn(self.join("\n".join(lines)), suggestions=yes_no, summary=summary, action="confirm")

    def chosen_defaults(self, preview: dict[str, Any]) -> dict[str, Any]:
        """The settings the server chose for this request, with why (`tools.defaults`); epochs
        the person took as the offered default keep the reason they were offered with. The Korean
        reasons get their particles resolved here, since the page shows them as they are."""
        chosen = dict(preview.get("defaults") or {})
        taken = self.ctxmem().get("default_epochs_why")
        if "epochs" not in chosen and self.ctxmem().get("epochs_default") and isinstance(taken, dict):
            chosen["epochs"] = taken
        return {
            k: {**c, "why_ko": W.resolve_particles(str(c["why_ko"]))} if isinstance(c, dict) and "why_ko" in c else c
            for k, c in chosen.items()
        }

    def defaults_line(self, summary: dict[str, Any]) -> str:
        chosen = summary.get("defaults") or {}
        names = {
            "image_size": "image_size_label",
            "batch_size": "batch_size_label",
            "epochs": "epochs_label",
            "nbs": "nbs_label",
            "optimizer": "optimizer_label",
        }
        why = "why_ko" if self.lang == "ko" else "why"
        parts = [
            f"{self.t(label)} {W.setting_value(key, c['value'], self.lang)}: {c[why]}"
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
