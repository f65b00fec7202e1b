"""LLM mode: a LangChain tool-calling agent over any OpenAI-compatible endpoint.

When `LLM_BASE_URL` (+ `LLM_API_KEY`, `LLM_MODEL`) is set, `agent.chat.handle_message` asks an
`LLMPlanner` first. The planner runs a short tool-calling loop with `ChatOpenAI`:

* the model may call the `agent.toolkit` StructuredTools (list datasets, check compatibility, list
  models, preview a job, job progress/metrics, stop/resume) — always executed as the chat's user;
* it finishes either by calling `submit_training_intent` whose arguments are the TrainingIntent
  (validated by pydantic; the dialogue then asks for what is missing and confirms exactly as in
  rules mode), or with a plain-text answer (shown as the reply).

Launching is never the model's decision: a job starts only on the person's explicit "yes" to the
confirmation summary, which the deterministic dialogue handles (a yes/no while confirming does
not even reach the model).

Any failure — a timeout, a connection error, an HTTP error status, malformed or invalid tool
arguments, an unknown tool, an empty answer, too many steps — raises `LLMFailure(reason)`; the
caller falls back to the deterministic brain and says so in the reply.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from agent.toolkit import InferenceScope, build_tools
from tools.context import ToolContext
from tools.intent import TrainingIntent

log = logging.getLogger(__name__)

INTENT_TOOL = "submit_training_intent"
SYSTEM_PROMPT = """You are the assistant of a computer-vision training server. People ask you, in Korean or English, \
to train models (image classification, object detection, instance segmentation, pose estimation, oriented object \
detection) on their datasets, and ask about their datasets, models and jobs.

When the user asks to train something or corrects a training request, call `{intent_tool}` with the complete \
TrainingIntent (the current one below merged with the message). Fill only what the user said or what is already in \
the current intent; leave unknown slots null (never guess defaults: the server asks for what is missing and asks for \
confirmation before starting anything). Use canonical model names (list_models). Use the tools to look things up \
(datasets, compatibility, models, job progress) and answer questions in plain text, in the user's language \
(Korean if the message contains Hangul). You cannot start a job yourself.

Dialogue state: {state}. Waiting for: {pending}. Current TrainingIntent: {intent}. Jobs of this chat: {jobs}."""


class LLMFailure(Exception):
    """The model could not produce a usable answer; `reason` is a short phrase for the reply."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass
class Plan:
    """What the model produced: `slots` (TrainingIntent fields it set) or `text` (a direct answer)."""

    slots: dict[str, Any] | None = None
    text: str | None = None
    tools_called: list[str] = field(default_factory=list)


def _intent_tool_spec() -> dict[str, Any]:
    schema = TrainingIntent.model_json_schema()
    return {
        "type": "function",
        "function": {
            "name": INTENT_TOOL,
            "description": "Hand over the user's training request as a TrainingIntent (null for unknown slots).",
            "parameters": schema,
        },
    }


def classify_error(exc: BaseException) -> str:
    """A short reason for an exception from the OpenAI client."""
    try:
        import openai
    except ImportError:  # pragma: no cover - openai is a dependency of langchain-openai
        return type(exc).__name__
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection error"
    if isinstance(exc, openai.APIStatusError):
        return f"HTTP {exc.status_code}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


class LLMPlanner:
    """The tool-calling loop over `ChatOpenAI(base_url, api_key, model, timeout)` (see module doc)."""

    def __init__(
        self, base_url: str, api_key: str | None, model: str, *, timeout: float = 30.0, max_steps: int = 5
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
        )

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
    ) -> Plan:
        """Run the loop for one user message; raises LLMFailure. `scope`: the turn's inference
        service and attached image for the inference tools (None: none)."""
        from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

        tools = build_tools(ctx, scope)
        by_name = {t.name: t for t in tools}
        bound = self.chat_model.bind_tools([*tools, _intent_tool_spec()])
        system = SYSTEM_PROMPT.format(
            intent_tool=INTENT_TOOL,
            state=state,
            pending=pending or "-",
            intent=json.dumps(intent or {}, ensure_ascii=False),
            jobs=job_ids or [],
        )
        messages: list[BaseMessage] = [SystemMessage(system)]
        for role, content in (history or [])[-8:]:
            messages.append(HumanMessage(content) if role == "user" else AIMessage(content))
        messages.append(HumanMessage(message))
        plan = Plan()
        for _ in range(self.max_steps):
            try:
                ai = bound.invoke(messages)
            except Exception as exc:
                raise LLMFailure(classify_error(exc)) from exc
            if not isinstance(ai, AIMessage):  # pragma: no cover - defensive
                raise LLMFailure("unexpected answer")
            if ai.invalid_tool_calls:
                bad = ai.invalid_tool_calls[0]
                raise LLMFailure(f"malformed arguments for tool {bad.get('name') or '?'}")
            if not ai.tool_calls:
                text = ai.content if isinstance(ai.content, str) else ""
                if not text.strip():
                    raise LLMFailure("empty answer")
                plan.text = text.strip()
                return plan
            messages.append(ai)
            for call in ai.tool_calls:
                name = call["name"]
                plan.tools_called.append(name)
                if name == INTENT_TOOL:
                    try:
                        result = TrainingIntent.model_validate(call.get("args") or {})
                    except ValidationError as exc:
                        raise LLMFailure("invalid TrainingIntent") from exc
                    plan.slots = {k: v for k, v in result.model_dump().items() if v not in (None, [], {})}
                    return plan
                tool = by_name.get(name)
                if tool is None:
                    raise LLMFailure(f"unknown tool {name}")
                try:
                    output = tool.invoke(call.get("args") or {})
                except ValidationError as exc:
                    raise LLMFailure(f"invalid arguments for tool {name}") from exc
                except Exception as exc:  # a tool bug must not break the chat: fall back
                    log.warning("LLM tool %s failed: %r", name, exc)
                    raise LLMFailure(f"tool {name} failed") from exc
                messages.append(ToolMessage(content=str(output), tool_call_id=call.get("id") or name))
        raise LLMFailure("too many steps")


def planner_from_config(llm: Any) -> LLMPlanner | None:
    """An LLMPlanner when `llm.base_url` is set (the app's `Settings.llm`: base_url, api_key, model,
    timeout_s, read from LLM_*), else None."""
    if not llm.base_url:
        return None
    return LLMPlanner(llm.base_url, llm.api_key, llm.model, timeout=float(llm.timeout_s))
