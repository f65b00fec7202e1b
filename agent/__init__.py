"""Natural language -> TrainingIntent; dialogue; optional LLM planner (issue 5)."""
