"""Natural language -> TrainingIntent; dialogue; optional LLM planner."""

from typing import Any

from agent.parser import detect_language, extract_slots, normalise, parse_intent
from tools.intent import TrainingIntent

__all__ = [
    "ChatTurn",
    "TrainingIntent",
    "detect_language",
    "extract_slots",
    "handle_message",
    "normalise",
    "parse_intent",
]


def __getattr__(name: str) -> Any:
    # The chat entry point pulls in the job tools; imported on first use so that the parser
    # stays cheap to import.
    if name in ("ChatTurn", "handle_message"):
        from agent import chat

        return getattr(chat, name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
