"""Natural language -> TrainingIntent; dialogue; optional LLM planner (issue 5)."""

from agent.parser import detect_language, extract_slots, normalise, parse_intent
from tools.intent import TrainingIntent

__all__ = ["TrainingIntent", "detect_language", "extract_slots", "normalise", "parse_intent"]
