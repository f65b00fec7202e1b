"""FastAPI app: REST, WebSocket, chat page, Slack, auth, settings."""
