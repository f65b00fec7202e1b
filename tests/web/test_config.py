"""web.config.Settings: the one place settings are read (environment + .env), and its nested views."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer_runtime.storage import StoreConfig
from web.config import Settings

STORAGE_VARS = (
    "VTA_DATA_DIR",
    "EXTERNAL_STORAGE_ENDPOINT",
    "EXTERNAL_STORAGE_ACCESS_KEY",
    "EXTERNAL_STORAGE_SECRET_KEY",
    "EXTERNAL_BUCKET_DATASETS",
    "INTERNAL_STORAGE_ENDPOINT",
    "INTERNAL_STORAGE_ACCESS_KEY",
    "INTERNAL_STORAGE_SECRET_KEY",
    "INTERNAL_BUCKET_CHECKPOINTS",
    "S3_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean environment for the storage variables (the settings come from the environment only)."""
    for name in STORAGE_VARS:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def settings_from(env: pytest.MonkeyPatch, values: dict[str, str]) -> Settings:
    for name, value in values.items():
        env.setenv(name, value)
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_storage_defaults(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = settings_from(env, {"VTA_DATA_DIR": str(tmp_path)}).storage
    assert cfg.external == StoreConfig(bucket="training-datasets", region="us-east-1")
    assert cfg.internal == StoreConfig(bucket="training-checkpoints", region="us-east-1")
    assert cfg.local_root == tmp_path / "storage"
    env.delenv("VTA_DATA_DIR")
    assert Settings(_env_file=None).storage.local_root == Path("./data") / "storage"  # type: ignore[call-arg]


def test_storage_each_variable(env: pytest.MonkeyPatch) -> None:
    cfg = settings_from(
        env,
        {
            "EXTERNAL_STORAGE_ENDPOINT": "http://ext:9000",
            "EXTERNAL_STORAGE_ACCESS_KEY": "ek",
            "EXTERNAL_STORAGE_SECRET_KEY": "ext-secret-value",
            "EXTERNAL_BUCKET_DATASETS": "my-datasets",
            "INTERNAL_STORAGE_ENDPOINT": "http://int:9000",
            "INTERNAL_STORAGE_ACCESS_KEY": "ik",
            "INTERNAL_STORAGE_SECRET_KEY": "is",
            "INTERNAL_BUCKET_CHECKPOINTS": "my-ckpts",
            "AWS_REGION": "eu-west-1",
            # legacy values must not override a side's own settings
            "S3_ENDPOINT": "http://legacy:9000",
            "AWS_ACCESS_KEY_ID": "lk",
            "AWS_SECRET_ACCESS_KEY": "ls",
        },
    ).storage
    assert cfg.external == StoreConfig(
        endpoint="http://ext:9000",
        access_key="ek",
        secret_key="ext-secret-value",
        bucket="my-datasets",
        region="eu-west-1",
    )
    assert cfg.internal == StoreConfig(
        endpoint="http://int:9000", access_key="ik", secret_key="is", bucket="my-ckpts", region="eu-west-1"
    )
    assert "ext-secret-value" not in repr(cfg) and "***" in repr(cfg.external)


def test_storage_legacy_fallback(env: pytest.MonkeyPatch) -> None:
    legacy = {"S3_ENDPOINT": "http://minio:9000", "AWS_ACCESS_KEY_ID": "lk", "AWS_SECRET_ACCESS_KEY": "ls"}
    cfg = settings_from(env, legacy).storage
    assert cfg.external == StoreConfig(
        endpoint="http://minio:9000", access_key="lk", secret_key="ls", bucket="training-datasets"
    )
    assert cfg.internal == StoreConfig(
        endpoint="http://minio:9000", access_key="lk", secret_key="ls", bucket="training-checkpoints"
    )
    # one side configured on its own, the other falls back per variable
    mixed = {
        "EXTERNAL_STORAGE_ENDPOINT": "http://ext:9000",
        "EXTERNAL_STORAGE_ACCESS_KEY": "ek",
        "INTERNAL_STORAGE_SECRET_KEY": "is",
        "INTERNAL_STORAGE_ENDPOINT": "",  # empty means unset
    }
    cfg = settings_from(env, mixed).storage
    assert cfg.external == StoreConfig(
        endpoint="http://ext:9000", access_key="ek", secret_key="ls", bucket="training-datasets"
    )
    assert cfg.internal == StoreConfig(
        endpoint="http://minio:9000", access_key="lk", secret_key="is", bucket="training-checkpoints"
    )


# ------------------------------------------------------------------------- docs/configuration.md


def test_configuration_page_is_generated_from_settings() -> None:
    """docs/configuration.md is what `python -m web.config_docs` writes from Settings."""
    from web import config_docs

    assert config_docs.problems(config_docs.SECTIONS) == []
    current = config_docs.DOC_PATH.read_text()
    generated = config_docs.render()
    if current != generated:
        import difflib

        diff = "\n".join(difflib.unified_diff(current.splitlines(), generated.splitlines(), "docs", "generated"))
        pytest.fail(f"docs/configuration.md is out of date: run `{config_docs.COMMAND}`\n{diff}")


def test_the_page_check_finds_an_undocumented_setting_a_stray_row_and_a_wrong_default() -> None:
    from web.config_docs import SECTIONS, Row, Section, problems

    without_first = tuple(
        Section(s.title, s.rows[1:] if i == 0 else s.rows, s.intro, s.outro, s.settings) for i, s in enumerate(SECTIONS)
    )
    first = SECTIONS[0].rows[0].names[0]
    assert f"{first} is a setting but not documented in web/config_docs.py" in problems(without_first)
    stray = (*SECTIONS, Section("Extra", (Row(("NOT_A_SETTING",), "x"), Row(("DB_POOL_SIZE",), "x", "`11`"))))
    found = problems(stray)
    assert any("NOT_A_SETTING" in p and "not a field" in p for p in found)
    assert any("DB_POOL_SIZE is documented twice" in p for p in found)
    assert any("DB_POOL_SIZE: the documented default '`11`' does not name the real one `10`" in p for p in found)


def test_the_page_command_checks_and_writes(tmp_path: Path) -> None:
    from web.config_docs import main, render

    out = tmp_path / "configuration.md"
    out.write_text("stale\n")
    assert main(["--check", "--output", str(out)]) == 1 and out.read_text() == "stale\n"
    assert main(["--output", str(out)]) == 0 and out.read_text() == render()
    assert main(["--check", "--output", str(out)]) == 0


def test_every_inference_variable_is_a_setting_read_leniently(env: pytest.MonkeyPatch) -> None:
    """VTA_INFERENCE_* are the fields of Settings.inference (tools.inference reads them first); an
    empty or unreadable value means InferenceConfig's default, as when it read os.environ itself."""
    from tools.inference import InferenceConfig
    from web.config import InferenceSettings

    names = {f for f in InferenceConfig.__dataclass_fields__ if f != "python"}
    assert names <= set(InferenceSettings.model_fields)
    s = settings_from(
        env,
        {
            "VTA_INFERENCE_THREADS": "3",
            "VTA_INFERENCE_MAX_BATCH": "",
            "VTA_INFERENCE_DEVICE": "cpu",
            "VTA_INFERENCE_MAX_PIXELS": "lots",
        },
    )
    assert (s.inference.threads, s.inference.max_batch, s.inference.device, s.inference.max_pixels) == (
        3,
        None,
        "cpu",
        None,
    )
    cfg = InferenceConfig.from_settings(s)
    assert (cfg.threads, cfg.max_batch, cfg.device, cfg.max_pixels) == (3, 32, "cpu", 40_000_000)


def test_the_kubernetes_view_reads_the_cluster_conventions_through_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KUBERNETES_SERVICE_HOST", "KUBECONFIG", "K8S_IN_CLUSTER"):
        monkeypatch.delenv(name, raising=False)
    cfg = Settings(_env_file=None).kubernetes  # type: ignore[call-arg]
    assert (cfg.in_cluster, cfg.kubeconfig) == (False, None)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBECONFIG", "/etc/kube/a.yaml")
    cfg = Settings(_env_file=None).kubernetes  # type: ignore[call-arg]
    assert (cfg.in_cluster, cfg.kubeconfig) == (True, "/etc/kube/a.yaml")
    monkeypatch.setenv("K8S_IN_CLUSTER", "false")
    assert Settings(_env_file=None).kubernetes.in_cluster is False  # type: ignore[call-arg]


def test_slack_and_llm_are_nested_models_read_from_the_same_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SLACK_* / LLM_* keep their names: each is a field of `Settings.slack` / `Settings.llm`."""
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_API_BASE_URL", "LLM_BASE_URL", "LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.slack.bot_token, s.slack.enabled, s.slack.progress_interval_s, s.slack.link_code_ttl_s) == (
        None,
        False,
        1.0,
        600,
    )
    assert (s.llm.base_url, s.llm.model, s.llm.timeout_s) == (None, "gpt-4o-mini", 30.0)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.setenv("slack_signing_secret", "sig")  # names are case-insensitive
    monkeypatch.setenv("SLACK_PROGRESS_INTERVAL_S", "2.5")
    monkeypatch.setenv("SLACK_SOMETHING_ELSE", "ignored")
    monkeypatch.setenv("LLM_BASE_URL", "http://llm:8000/v1")
    monkeypatch.setenv("LLM_MODEL", "")  # empty: the default model
    monkeypatch.setenv("LLM_TIMEOUT_S", "7")
    s = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (s.slack.bot_token, s.slack.signing_secret, s.slack.progress_interval_s, s.slack.enabled) == (
        "xoxb-1",
        "sig",
        2.5,
        True,
    )
    assert (s.llm.base_url, s.llm.model, s.llm.timeout_s) == ("http://llm:8000/v1", "gpt-4o-mini", 7.0)
    # code passes the nested values; the environment fills in the rest
    s = Settings(_env_file=None, slack={"api_base_url": "http://fake/api"})  # type: ignore[call-arg]
    assert (s.slack.bot_token, s.slack.api_base_url) == ("xoxb-1", "http://fake/api")
    # a .env file is read the same way
    for name in ("SLACK_BOT_TOKEN", "LLM_BASE_URL"):
        monkeypatch.delenv(name)
    dotenv = tmp_path / ".env"
    dotenv.write_text("SLACK_BOT_TOKEN=xoxb-2\nLLM_BASE_URL=http://other/v1\n")
    s = Settings(_env_file=dotenv)  # type: ignore[call-arg]
    assert (s.slack.bot_token, s.llm.base_url) == ("xoxb-2", "http://other/v1")
    monkeypatch.setenv("SLACK_PROGRESS_INTERVAL_S", "0.01")
    with pytest.raises(ValueError, match="progress_interval_s"):
        Settings(_env_file=None)  # type: ignore[call-arg]


# Where the server may touch os.environ, and why: each hands an environment to a child process
# (or, agent/cli.py, is the terminal client's own defaults); nothing else reads a setting there.
ENVIRON_USERS = {
    "web/cli.py": "serve --reload passes the flags to the reloader's app process",
    "tools/inference/client.py": "an inference worker inherits the server's environment",
    "tools/executors/local.py": "a trainer inherits the allow-listed part of it",
    "tools/executors/sandbox.py": "trainer_env's default source",
    "agent/cli.py": "the terminal client's --email/--password defaults",
}


def test_the_server_reads_its_settings_only_through_settings() -> None:
    """No os.environ / getenv / from_env outside web/config.py (one way to configure): a new
    setting is a field of Settings, so docs/configuration.md lists it."""
    import re

    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"\bos\.environ\b|\bgetenv\(|\bfrom_env\b|^from os import .*environ", re.MULTILINE)
    found = set()
    for package in ("web", "agent", "tools"):
        for path in (root / package).rglob("*.py"):
            rel = path.relative_to(root).as_posix()
            if rel == "web/config.py":
                continue
            text = "\n".join(line.split("#", 1)[0] for line in path.read_text().splitlines())
            if pattern.search(text):
                found.add(rel)
    assert found <= set(ENVIRON_USERS), sorted(found - set(ENVIRON_USERS))


def test_the_trainers_close_timeout_is_a_setting_handed_over_in_the_spec(env: pytest.MonkeyPatch) -> None:
    """VTA_REPORTER_CLOSE_TIMEOUT_S is read here and reaches a trainer through its spec, not its environment."""
    env.delenv("VTA_REPORTER_CLOSE_TIMEOUT_S", raising=False)
    assert settings_from(env, {}).reporter_close_timeout_s == 120.0
    assert settings_from(env, {"VTA_REPORTER_CLOSE_TIMEOUT_S": "20"}).reporter_close_timeout_s == 20.0
