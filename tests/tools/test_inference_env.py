"""The environment an inference worker gets (`tools.inference.client.worker_env`): the server's,
passed explicitly, with the repository on PYTHONPATH and the frameworks offline by default."""

from __future__ import annotations

import os

from tools.inference.client import worker_env


def test_worker_env_inherits_the_server_environment_and_adds_the_path_and_offline_defaults() -> None:
    source = {"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "1", "HF_HUB_OFFLINE": "0"}
    env = worker_env(source, "/repo")
    assert env["PATH"] == "/usr/bin" and env["CUDA_VISIBLE_DEVICES"] == "1"
    assert env["PYTHONPATH"] == "/repo"
    assert (env["YOLO_OFFLINE"], env["YOLO_AUTOINSTALL"], env["HF_HUB_OFFLINE"]) == ("1", "false", "0")
    assert worker_env({"PYTHONPATH": "/extra"}, "/repo")["PYTHONPATH"] == "/repo" + os.pathsep + "/extra"
    assert source == {"PATH": "/usr/bin", "CUDA_VISIBLE_DEVICES": "1", "HF_HUB_OFFLINE": "0"}  # not changed
