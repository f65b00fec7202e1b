"""The dialogue's slot-filling state machine: a training request is completed one question at a time
(dataset, task, model, epochs, the user's weights), confirmed with a summary from
`tools.jobs.create_job(..., launch=False)`, and launched on "yes". Commands are tried first
(`agent.dialogue.commands`). The states and the order of one turn are described in
`agent.dialogue`; see `docs/architecture.md`.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from agent import replies as R
from agent import wording as W
from agent.dialogue import patterns as P
from agent.dialogue.base import Turn, is_no, is_wait, is_yes, split_words
from agent.dialogue.confirm import ConfirmStep
from agent.parser import extract_slots
from agent.toolkit import (
    InferenceScope,
    dataset_info,
    datasets_for,
)
from tools import catalog, jobs, user_weights
from tools.context import ToolContext
from tools.datasets import check_dataset_compatibility
from tools.db.models import ChatSession
from tools.errors import ConflictError, InvalidInputError, NotFoundError, ToolError
from tools.intent import TrainingIntent
from trainer_runtime.formats.schema import TASK_TYPES


class Dialogue(ConfirmStep):
    """One turn over `session` (mutated in place; the caller commits)."""

    def respond(self, slots: dict[str, Any] | None = None) -> Turn:
        """`slots`: what the message gives (default `extract_slots(text)`; the LLM planner passes
        the TrainingIntent it produced)."""
        given = dict(slots) if slots is not None else extract_slots(self.text, datasets=self.visible_dataset_names())
        state = self.s.state or "idle"
        training_slots = {k for k in given if k not in ("class_names",)}

        if state in ("collecting", "confirming") and not training_slots and P.CANCEL.match(self.low):
            return self.cancel()
        if state == "confirming" and not training_slots:
            # yes / no / not yet in natural words; a message with slots is a correction (below)
            answer = self.answer_to_confirmation()
            if answer is not None:
                return answer
        elif state == "collecting" and self.s.pending and not training_slots and is_wait(self.low):
            return self.wait()

        turn = self.command(given)
        if turn is not None:
            if self.s.state in ("collecting", "confirming") and self.s.pending:
                turn.reply += "\n" + self.t("still_pending", question=self.pending_question())
            return turn

        if state == "collecting" and self.s.pending:
            given = self.answer_pending(given)

        if given or P.TRAIN.search(self.low):
            if state in ("idle", "launched"):
                self.set_intent({})
                self.remember(offered=None, dataset_id=None)
            changes = self.merge(given)
            if state == "confirming" and changes:
                self.notes.append(self.t("updated", changes=", ".join(changes)))
            return self.advance()

        if state in ("collecting", "confirming"):
            # "no" to a proposed default: the question again, without "I didn't get that"
            key = "pending_no" if state == "collecting" and is_no(self.low) else "not_understood_pending"
            return Turn(
                self.t(key, question=self.pending_question()),
                suggestions=list(self.ctxmem().get("offered") or []),
                action="not_understood",
            )
        return self.not_understood()

    def pending_question(self) -> str:
        if self.s.state == "confirming":
            return self.t("pending_confirm")
        return {
            "dataset": self.t("ask_dataset"),
            "fix_compat": self.t("ask_dataset"),
            "task": self.t("ask_dataset") if not self.intent.get("dataset") else self.task_question_short(),
            "model": "Which model?" if self.lang == "en" else "어떤 모델을 쓸까요?",
            "epochs": "How many epochs?" if self.lang == "en" else "몇 에폭 학습할까요?",
            "init_weights": "Which of your weights?" if self.lang == "en" else "어떤 가중치로 시작할까요?",
        }.get(self.s.pending or "", self.t("help_short"))

    def task_question_short(self) -> str:
        offered = self.ctxmem().get("offered") or []
        return ("task? " if self.lang == "en" else "작업? ") + ", ".join(offered)

    def answer_pending(self, given: dict[str, Any]) -> dict[str, Any]:
        pending = self.s.pending
        offered: list[str] = list(self.ctxmem().get("offered") or [])
        choice = P.CHOICE.match(self.low)
        pick = offered[int(choice.group(1)) - 1] if choice and 0 < int(choice.group(1)) <= len(offered) else None
        accepted = is_yes(self.low) or bool(P.ACCEPT.search(self.low))
        out = dict(given)
        if accepted and set(out) <= {"preset"} and ("기본" in self.low or "default" in self.low):
            out.pop("preset", None)  # "기본값으로" = the default, not the easy preset
        if pending in ("dataset", "fix_compat") and "dataset" not in out:
            words = split_words(self.low)
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
            bare = P.BARE_INT.match(self.low)
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
        ref = P.WEIGHTS_REF.search(self.low)
        if ref and int(ref.group(1)) in ids:
            return int(ref.group(1))
        if choice:
            n = int(choice.group(1))
            if 0 < n <= len(ids):
                return ids[n - 1]
        bare = P.BARE_INT.match(self.low)
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
                changes.append(self.change_text(k, v))
            intent[k] = v
        if "dataset" in given:
            self.remember(dataset_id=None)
        if "epochs" in given:
            self.remember(epochs_default=True if self.default_epochs_taken else None)
        self.set_intent(intent)
        return changes

    def change_text(self, key: str, value: Any) -> str:
        """One corrected slot as "label value" in the turn's language ("에폭 2", "task object detection")."""
        if isinstance(value, dict):
            return W.settings_line(value, self.lang)
        if key == "task_type":
            return f"{W.setting_label(key, self.lang)} {self.task(str(value))}"
        return f"{W.setting_label(key, self.lang)} {W.setting_value(key, value, self.lang)}"

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

        task, turn = self.task_for(intent, ds)
        if turn is not None:
            return turn

        compat = check_dataset_compatibility(self.ctx, ds["id"], task)
        if compat.get("status") == "incompatible":
            return self.refuse_incompatible(ds, task, str(compat.get("reason") or ""))

        if not intent.get("model_name"):
            return self.ask_model(task, intent.get("framework"))
        if not intent.get("epochs"):
            return self.ask_epochs(intent.get("preset"), intent.get("framework"), intent.get("model_name"))
        return self.confirm(ds)

    def task_for(self, intent: dict[str, Any], ds: dict[str, Any]) -> tuple[Any, Turn | None]:
        """The task to train: the one asked for, the model's, the dataset's only native one, else a question."""
        task = intent.get("task_type")
        if not task and intent.get("model_name"):
            info = catalog.find_model(str(intent["model_name"]))
            task = info.task_type if info else None
        if not task:
            natives = [t for t in catalog.TASK_PREFERENCE if ds["tasks"].get(t) == "native"]
            options = natives or [t for t in catalog.TASK_PREFERENCE if ds["tasks"].get(t) == "convertible"]
            if not options:
                reason = W.compat_reason_ko(ds["name"], {}, "", "incompatible", None)
                if self.lang != "ko":
                    reason = f"dataset {ds['name']!r} has no annotations a task can use"
                self.notes.append(self.t("invalid_request", reason=reason))
                intent.pop("dataset", None)
                self.set_intent(intent)
                return None, self.ask_dataset()
            if len(natives) == 1:
                task = natives[0]
                intent["task_type"] = task
                self.set_intent(intent)
                self.notes.append(self.t("task_implied", task=self.task(task), dataset=ds["name"]))
            else:
                default = catalog.pick_task(ds["capabilities"], intent.get("framework")) or options[0]
                labels = ", ".join(f"{i}. {self.task(t)}" for i, t in enumerate(options, 1))
                return None, self.ask(
                    "task",
                    self.t("ask_task", dataset=ds["name"], options=labels, default=self.task(default)),
                    options,
                )
        return task, None

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
        intent.update(model_name=source.model_name, framework=source.framework, task_type=source.task_type)
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

    def refuse_incompatible(self, ds: dict[str, Any], task: str, reason: str) -> Turn:
        others, _ = datasets_for(self.ctx, task, None)
        others = [d for d in others if d["id"] != ds["id"]]
        can = [t for t in catalog.TASK_PREFERENCE if ds["tasks"].get(t) in ("native", "convertible")]
        names = [d["name"] for d in others]
        if self.lang == "ko":
            reason = W.compat_reason_ko(ds["name"], ds["tasks"], task, "incompatible", None)
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
            if info.description and self.lang == "en":  # the catalog describes models in English
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

    def ask_epochs(self, preset: str | None, framework: str | None, model: str | None) -> Turn:
        epochs = catalog.default_epochs(preset)
        named = W.preset_label(preset, self.lang)
        why = self.t("epochs_why_preset", preset=named) if preset else self.t("epochs_why_none")
        chosen = None if preset else self.data_epochs()
        if chosen is not None:  # no preset: epochs that fit the dataset (tools.defaults)
            epochs, why = int(chosen["value"]), str(chosen["why_ko" if self.lang == "ko" else "why"])
        if framework is None and model:
            info = catalog.find_model(model)
            framework = info.framework if info else None
        values = self.preset_values(framework, preset)
        note = self.t("preset_note", preset=named, values=W.settings_line(values, self.lang)) if values else ""
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

    def refusal(self, exc: ToolError) -> str:
        """A tool's refusal in the turn's language (`agent.wording.refusal_reason`)."""
        return W.refusal_reason(exc.message, str(exc.detail.get("field") or "") or None, self.lang)

    def plan_error(self, exc: ToolError) -> Turn:
        """A create_job refusal: point back at the slot it names."""
        field_name = str(exc.detail.get("field") or "")
        intent = self.intent
        if field_name == "init_weights":
            # the upload is gone, for another model, or named together with a job to start from
            self.notes.append(self.t("invalid_request", reason=self.refusal(exc)))
            intent.pop("init_weights", None)
            self.set_intent(intent)
            self.s.state = "collecting"
            self.s.pending = "fix"
            return Turn(self.join(self.t("help_short")), action="invalid")
        if field_name in ("init_from_job", "init_checkpoint"):
            # the job to start from is unknown, another architecture, or lacks that checkpoint
            self.notes.append(self.t("invalid_request", reason=self.refusal(exc)))
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
        self.notes.append(self.t("invalid_request", reason=self.refusal(exc)))
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
    turn = Dialogue(ctx, session, text, scope).respond(slots)
    # the whole reply, with what the tools wrote, as its language wants it (particles, plurals)
    turn.reply = R.polish(turn.reply, session.language)
    return turn
