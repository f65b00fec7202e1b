"""A local OpenAI-compatible chat-completions server with scripted replies, for LLM-mode tests.

    with FakeOpenAI() as server:                       # uvicorn in a thread on a free loopback port
        server.script(text("hello"), tool_call("list_datasets", {}), ...)
        planner = LLMPlanner(server.base_url, "sk-test", "fake-model", timeout=2)
        ...
        server.requests                                # the JSON bodies received, in order

`POST /v1/chat/completions` answers the next scripted step (the last one repeats when the script
runs out); a step is one of

    text(content)                         a plain assistant message
    tool_call(name, args, ...)            one assistant message with tool calls (args: dict, or a
                                          raw string for malformed JSON)
    slow(seconds, step)                   waits, then answers `step` (client timeouts)
    status(code)                          an HTTP error with an OpenAI-style error body

The real `openai` and `langchain_openai` clients talk to it over HTTP, so request and response
shapes are checked end to end; nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


def text(content: str) -> dict[str, Any]:
    return {"kind": "text", "content": content}


def tool_call(name: str, args: dict[str, Any] | str, *more: tuple[str, dict[str, Any] | str]) -> dict[str, Any]:
    calls = [(name, args), *more]
    return {"kind": "tools", "calls": calls}


def slow(seconds: float, step: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "slow", "seconds": seconds, "step": step}


def status(code: int, message: str = "scripted failure") -> dict[str, Any]:
    return {"kind": "status", "code": code, "message": message}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _completion(model: str, message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


class FakeOpenAI:
    def __init__(self) -> None:
        import uvicorn

        self.port = _free_port()
        self.steps: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def completions(request: Request) -> Any:
            body = await request.json()
            with self._lock:
                self.requests.append(body)
                step = self.steps.pop(0) if len(self.steps) > 1 else (self.steps[0] if self.steps else text("ok"))
            return await self._answer(step, body.get("model") or "fake")

        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread: threading.Thread | None = None

    async def _answer(self, step: dict[str, Any], model: str) -> Any:
        kind = step["kind"]
        if kind == "slow":
            await asyncio.sleep(step["seconds"])
            return await self._answer(step["step"], model)
        if kind == "status":
            return JSONResponse(
                {"error": {"message": step["message"], "type": "server_error", "code": None}}, status_code=step["code"]
            )
        if kind == "text":
            return _completion(model, {"role": "assistant", "content": step["content"]}, "stop")
        calls = []
        for name, args in step["calls"]:
            raw = args if isinstance(args, str) else json.dumps(args)
            calls.append(
                {
                    "id": f"call_{uuid.uuid4().hex[:10]}",
                    "type": "function",
                    "function": {"name": name, "arguments": raw},
                }
            )
        return _completion(model, {"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *steps: dict[str, Any]) -> None:
        with self._lock:
            self.steps = list(steps)
            self.requests.clear()

    def start(self) -> FakeOpenAI:
        self.thread = threading.Thread(target=self.server.run, name="fake-openai", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(10)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
