"""The environment an inference worker gets (`tools.inference.client.worker_env`): the allow-listed
part of the server's (never a secret), with the repository on PYTHONPATH and the frameworks offline
by default."""

from __future__ import annotations

import os

from tools.inference.client import worker_env


def test_worker_env_inherits_the_allowed_environment_and_adds_the_path_and_offline_defaults() -> None:
    source = {"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "1", "HF_HUB_OFFLINE": "0"}
    env = worker_env(source, "/repo")
    assert env["PATH"] == "/usr/bin" and env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["PYTHONPATH"] == "/repo"
    assert (env["YOLO_OFFLINE"], env["YOLO_AUTOINSTALL"], env["HF_HUB_OFFLINE"]) == ("1", "false", "0")
    assert worker_env({"PYTHONPATH": "/extra"}, "/repo")["PYTHONPATH"] == "/repo" + os.pathsep + "/extra"
    assert source == {"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "1", "HF_HUB_OFFLINE": "0"}  # not changed


def test_worker_env_keeps_the_server_secrets_out() -> None:
    source = {
        "PATH": "/usr/bin",
        "SECRET_KEY": "s",
        "DATABASE_URL": "postgresql://u:p@db/x",
        "SLACK_BOT_TOKEN": "xoxb",
        "LLM_API_KEY": "k",
        "AWS_SECRET_ACCESS_KEY": "a",
        "S3_SECRET_KEY": "b",
        "HF_TOKEN": "hf",
        "OMP_NUM_THREADS": "2",
    }
    env = worker_env(source, "/repo")
    assert env["PATH"] == "/usr/bin" and env["OMP_NUM_THREADS"] == "2"
    for name in (
        "SECRET_KEY",
        "DATABASE_URL",
        "SLACK_BOT_TOKEN",
        "LLM_API_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "S3_SECRET_KEY",
    ):
        assert name not in env
    assert "HF_TOKEN" not in env  # a credential, even under an allowed prefix
