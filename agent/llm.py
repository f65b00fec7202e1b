"""LLM mode: a language model reads the message beside the rules, and a guard decides what of it counts.

When `LLM_BASE_URL` (+ `LLM_API_KEY`, `LLM_MODEL`) is set, `agent.chat.handle_message` asks an
`LLMPlanner` first. The planner runs a short tool-calling loop with `ChatOpenAI` over any
OpenAI-compatible endpoint (a hosted model, or llama.cpp's server with SmolLM2 in docker compose's
`llm` profile and in the tests):

* the model may call the READ-ONLY `agent.toolkit` tools (`READ_TOOLS`: datasets, compatibility,
  models, jobs, progress, metrics), always executed as the chat's user;
* it finishes either by calling `submit_training_intent` (a TrainingIntent proposal, validated by
  pydantic) or with a plain-text answer. A message the rules read as a training request, or any
  turn while one is being completed (`agent.llm_guard.wants_intent`), is offered that tool alone,
  forced: one call, and a server with grammars (llama.cpp) holds its arguments to the schema.

The policy (`agent.llm_guard` enforces it, `agent.chat` applies it): **the model proposes, the
deterministic dialogue decides.** A product must not get worse when its operator plugs in a weak,
slow or hostile model, so:

1. The dialogue (`agent.dialogue`) stays in charge of state, questions and confirmation. A job
   starts only on the person's "yes" to the confirmation summary; a yes/no while confirming, and a
   message with an image, never reach the model; the model has no tool that changes anything.
2. Slots: the rules parser (`agent.parser.extract_slots`) reads every message. A slot the parser
   read in this message is the parser's (a confident reading; a correction the user made in this
   message is that reading). The model's proposal only FILLS what the parser left out, and each
   such slot must validate: a dataset that exists for this user, a model in the catalog (it brings
   its framework and task; one that contradicts the parser's task or framework is dropped), a job
   of the user's; and it must be said in the message (a number next to its slot's word and not
   already bound by the parser to another slot, a task/framework/difficulty word, the class
   names). A proposal equal to the session's intent adds nothing; one that changes a slot the
   session already had counts only when grounded in this message the same way. With no valid
   addition the dialogue runs on exactly the rules' reading, so LLM mode is never less accurate
   than rules mode.
3. Replies: the dialogue's reply is the answer. The model's free text is shown only where the
   dialogue did not understand the message, and only when it was phrased from tool results of the
   turn; it is discarded in favour of the rules reply when it repeats the system prompt ("Dialogue
   state:", "TrainingIntent"), carries code (``` or def/import/print( lines), names a dataset,
   model or job that no tool returned for this user (nor the message), or is not in the user's
   language.
4. Failures: a malformed or invalid tool call, an unknown tool, an empty answer or too many steps
   raise `LLMFailure(reason, kind)`; the rules answer alone (mode "llm_fallback"). When the
   endpoint itself fails (timeout, connection error, HTTP error status) the reply also says so.

Every discard (a failed call, a dropped slot, a discarded reply) is counted by kind and reason:
`LLMPlanner.guard_counts`, and through `on_guard` the `vta_llm_guard_discards_total{kind,reason}`
counter of `/metrics` (`tools.telemetry`).

Latency: a small local model on a CPU answers in seconds, so the prompt is short and stable: the
instructions and the tool list first, the same every turn, so the server reuses its cached prefix;
the dialogue state rides on the user's message. The intent schema is compact, answers are capped
(`max_tokens`) and the loop is bounded (`max_steps`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, get_args

from pydantic import ValidationError

from agent.toolkit import InferenceScope, build_tools
from tools.context import ToolContext
from tools.intent import Framework, InitCheckpoint, Preset, TaskType, TrainingIntent

log = logging.getLogger(__name__)

INTENT_TOOL = "submit_training_intent"
READ_TOOLS = (
    "list_datasets",
    "get_dataset",
    "check_compatibility",
    "list_models",
    "list_jobs",
    "job_progress",
    "job_metrics",
)
"""The toolkit tools the model may call: they read, as the chat's user; nothing it calls changes anything."""

SYSTEM_PROMPT = f"""You help people train computer-vision models (image classification, object detection, \
instance segmentation, pose estimation, oriented object detection) on their datasets. They write in Korean or English.
If the message asks to train a model or changes a training request, call `{INTENT_TOOL}` with only the slots the \
message states (model names as list_models gives them). Otherwise call a tool to look the answer up, then answer in \
one or two short sentences from its result, in the user's language. Never write code. You cannot start a job."""

STATE_LINE = (
    "Dialogue state: {state}. Waiting for: {pending}. Current TrainingIntent: {intent}. Jobs of this chat: {jobs}."
)

TRANSPORT_FAILURES = frozenset({"timeout", "connection", "http"})
"""`LLMFailure.kind`s of the endpoint itself (the reply says so); the others are the model's answers."""


class LLMFailure(Exception):
    """The model could not produce a usable answer: `reason` is a short phrase for the reply,
    `kind` a fixed word for the metrics (`TRANSPORT_FAILURES`, malformed, invalid_intent,
    invalid_args, unknown_tool, tool_failed, empty, too_many_steps)."""

    def __init__(self, reason: str, kind: str = "other") -> None:
        self.reason = reason
        self.kind = kind
        super().__init__(reason)


@dataclass
class Plan:
    """What the model produced: `slots` (the TrainingIntent fields it proposed) or `text` (a free
    answer), the tools it called and their results (`tool_outputs`, what an answer may be phrased
    from), and the system prompt it was given (to recognise an echo of it)."""

    slots: dict[str, Any] | None = None
    text: str | None = None
    tools_called: list[str] = field(default_factory=list)
    tool_outputs: list[str] = field(default_factory=list)
    system: str = ""


def _intent_tool_spec() -> dict[str, Any]:
    """A compact TrainingIntent schema (types and allowed values; a small model reads every token)."""
    text = {"type": "string"}
    integer = {"type": "integer", "minimum": 1}
    props: dict[str, Any] = {
        "task_type": {"type": "string", "enum": list(get_args(TaskType))},
        "framework": {"type": "string", "enum": list(get_args(Framework))},
        "model_name": text,
        "dataset": text,
        "epochs": integer,
        "batch_size": integer,
        "image_size": integer,
        "learning_rate": {"type": "number"},
        "preset": {"type": "string", "enum": list(get_args(Preset))},
        "advanced_config": {"type": "object"},
        "class_names": {"type": "array", "items": text},
        "init_from_job": integer,
        "init_checkpoint": {"type": "string", "enum": list(get_args(InitCheckpoint))},
    }
    return {
        "type": "function",
        "function": {
            "name": INTENT_TOOL,
            "description": "Hand over the user's training request: only the slots the message states.",
            "parameters": {"type": "object", "properties": props},
        },
    }


def classify_error(exc: BaseException) -> tuple[str, str]:
    """A short reason and a kind (`LLMFailure`) for an exception from the OpenAI client."""
    try:
        import openai
    except ImportError:  # pragma: no cover - openai is a dependency of langchain-openai
        return type(exc).__name__, "other"
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return "timeout", "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection error", "connection"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}", "http"
    return type(exc).__name__, "other"


class LLMPlanner:
    """The tool-calling loop over `ChatOpenAI(base_url, api_key, model, timeout)` (see module doc).

    `guard_counts` counts every discard by (kind, reason); `on_guard(kind, reason)`, when set (the
    app sets it to its metrics counter), is told each one too."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        model: str,
        *,
        timeout: float = 30.0,
        max_steps: int = 3,
        max_tokens: int | None = 256,
    ) -> None:
        from langchain_openai import ChatOpenAI

        self.base_url = base_url
        self.model = model
        self.timeout = timeout
        self.max_steps = max_steps
        self.chat_model = ChatOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            model=model,
            timeout=timeout,
            max_retries=0,
            temperature=0,
            # `max_tokens` in the body (langchain would send `max_completion_tokens`, which
            # llama.cpp's server ignores): a small model must not ramble until the context is full
            extra_body={"max_tokens": max_tokens} if max_tokens else None,
        )
        self.guard_counts: Counter[tuple[str, str]] = Counter()
        self.on_guard: Callable[[str, str], None] | None = None
        self._lock = threading.Lock()

    def count(self, kind: str, reason: str) -> None:
        """Record one discard: `kind` is call, slot or reply; `reason` a fixed word."""
        with self._lock:
            self.guard_counts[(kind, reason)] += 1
        if self.on_guard is not None:
            try:
                self.on_guard(kind, reason)
            except Exception:  # pragma: no cover - a metrics hiccup must not break the chat
                log.exception("LLM guard metric failed")

    def plan(
        self,
        ctx: ToolContext,
        message: str,
        *,
        state: str = "idle",
        pending: str | None = None,
        intent: dict[str, Any] | None = None,
        job_ids: list[int] | None = None,
        history: list[tuple[str, str]] | None = None,
        scope: InferenceScope | None = None,
        expect_intent: bool = False,
    ) -> Plan:
        """Run the loop for one user message; raises LLMFailure. `scope`: the turn's inference
        service and attached image (the read-only tools do not use them). `expect_intent`: the
        rules read a training request or an answer to one (`agent.llm_guard.wants_intent`): the
        model is asked for the intent tool alone (one call, its arguments held to the schema)."""
        from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

        tools = [t for t in build_tools(ctx, scope) if t.name in READ_TOOLS]
        by_name = {t.name: t for t in tools}
        # "auto" said explicitly: OpenAI's default with tools, but llama.cpp's server shows the model
        # no tools at all without it
        if expect_intent:
            tools, by_name = [], {}
            bound = self.chat_model.bind_tools([_intent_tool_spec()], tool_choice=INTENT_TOOL)
        else:
            bound = self.chat_model.bind_tools([*tools, _intent_tool_spec()], tool_choice="auto")
        state_line = STATE_LINE.format(
            state=state,
            pending=pending or "-",
            intent=json.dumps(intent or {}, ensure_ascii=False),
            jobs=job_ids or [],
        )
        plan = Plan(system=f"{SYSTEM_PROMPT}\n{state_line}")
        messages: list[BaseMessage] = [SystemMessage(SYSTEM_PROMPT)]
        for role, content in (history or [])[-6:]:
            messages.append(HumanMessage(content) if role == "user" else AIMessage(content))
        # the state travels with the message: a second system message would repeat the tool list
        # (chat templates render the tools into every system message) and break the cached prefix
        messages.append(HumanMessage(f"({state_line})\n{message}"))
        for _ in range(self.max_steps):
            try:
                ai = bound.invoke(messages)
            except Exception as exc:
                reason, kind = classify_error(exc)
                raise LLMFailure(reason, kind) from exc
            if not isinstance(ai, AIMessage):  # pragma: no cover - defensive
                raise LLMFailure("unexpected answer", "other")
            if ai.invalid_tool_calls:
                bad = ai.invalid_tool_calls[0]
                raise LLMFailure(f"malformed arguments for tool {bad.get('name') or '?'}", "malformed")
            if not ai.tool_calls:
                text = ai.content if isinstance(ai.content, str) else ""
                if not text.strip():
                    raise LLMFailure("empty answer", "empty")
                plan.text = text.strip()
                return plan
            # a string content, never null: llama.cpp's server refuses (HTTP 500) an assistant message
            # whose content is null, which is how langchain sends an empty one with tool calls
            messages.append(ai if ai.content else ai.model_copy(update={"content": " "}))
            for call in ai.tool_calls:
                if self._run_call(call, by_name, plan, messages, ToolMessage):
                    return plan
        raise LLMFailure("too many steps", "too_many_steps")

    @staticmethod
    def _run_call(call: Any, by_name: dict[str, Any], plan: Plan, messages: list[Any], tool_message: Any) -> bool:
        """Run one tool call into `messages`; True when it was the intent (the plan is complete)."""
        name = call["name"]
        plan.tools_called.append(name)
        if name == INTENT_TOOL:
            try:
                result = TrainingIntent.model_validate(call.get("args") or {})
            except ValidationError as exc:
                raise LLMFailure("invalid TrainingIntent", "invalid_intent") from exc
            plan.slots = {k: v for k, v in result.model_dump().items() if v not in (None, [], {})}
            return True
        tool = by_name.get(name)
        if tool is None:
            raise LLMFailure(f"unknown tool {name}", "unknown_tool")
        try:
            output = tool.invoke(call.get("args") or {})
        except ValidationError as exc:
            raise LLMFailure(f"invalid arguments for tool {name}", "invalid_args") from exc
        except Exception as exc:  # a tool bug must not break the chat: fall back
            log.warning("LLM tool %s failed: %r", name, exc)
            raise LLMFailure(f"tool {name} failed", "tool_failed") from exc
        plan.tool_outputs.append(str(output))
        messages.append(tool_message(content=str(output), tool_call_id=call.get("id") or name))
        return False


def planner_from_config(llm: Any) -> LLMPlanner | None:
    """An LLMPlanner when `llm.base_url` is set (the app's `Settings.llm`: base_url, api_key, model,
    timeout_s, read from LLM_*), else None."""
    if not llm.base_url:
        return None
    return LLMPlanner(llm.base_url, llm.api_key, llm.model, timeout=float(llm.timeout_s))
