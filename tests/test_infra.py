"""Offline checks of the cluster infrastructure: docker-compose.yml and infra/.

Neither Docker nor Kubernetes runs here, so each file is checked against the schema its consumer
applies: the Compose specification (check-jsonschema's vendored copy), Kubernetes' OpenAPI
schemas (kubernetes-validate), KubeRay's CRDs (tests/data/kuberay) and Ray's own cluster-launcher
validation. Every validator is also handed a broken copy, to show that it can fail. The rest are
consistency rules: versions agree, ports stay on loopback, secrets come from .env or from
Kubernetes Secrets that are never committed.
"""

from __future__ import annotations

import copy
import importlib.metadata
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
INFRA = ROOT / "infra"
KUBERAY = INFRA / "kuberay"
LAUNCHER_CONFIG = INFRA / "ray-cluster" / "aws-gpu.yaml"
RAY_DOCKERFILE = INFRA / "docker" / "Dockerfile"
MLFLOW_DOCKERFILE = INFRA / "docker" / "mlflow.Dockerfile"
CRD_DIR = Path(__file__).parent / "data" / "kuberay"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
# A Kubernetes release whose schemas ship with kubernetes-validate (offline).
KUBERNETES_VERSION = "1.33.0"

# Names of settings that hold secrets: their values must come from .env / a Secret.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN", re.IGNORECASE)
# ${VAR}, ${VAR:?message}, ${VAR:-default}, ...; `$${...}` is an escaped `$` for a container shell.
INTERPOLATION = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)((?::?[-?+])?)([^}]*)\}")
URL_USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://([^/@\s]*)@", re.IGNORECASE)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=_Loader) if doc is not None]


def load_yaml(path: Path) -> Any:
    (document,) = load_yaml_documents(path)
    return document


def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def pinned(package: str) -> str:
    """The version constraints.txt pins for `package`."""
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            if requirement.name.lower() == package:
                (specifier,) = requirement.specifier
                assert specifier.operator == "==", line
                return specifier.version
    raise AssertionError(f"constraints.txt pins no {package}")


def dockerfile_base(path: Path) -> str:
    froms = [line.split()[1] for line in path.read_text().splitlines() if line.startswith("FROM ")]
    assert len(froms) == 1, f"{path}: expected one FROM line, got {froms}"
    return froms[0]


def kuberay_documents() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in sorted(KUBERAY.glob("*.yaml")):
        for document in load_yaml_documents(path):
            yield path, document


def walk(node: Any) -> Iterator[Any]:
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from walk(child)


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def is_interpolation(value: str) -> bool:
    """The whole value is one required `${VAR:?message}` reference."""
    match = INTERPOLATION.fullmatch(value)
    return bool(match) and match.group(2) == ":?"


def click_options(command) -> set[str]:
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


# ---- every file parses ----------------------------------------------------------------------


def test_every_infra_yaml_parses_to_mappings():
    paths = [COMPOSE_FILE, *sorted(INFRA.rglob("*.yaml")), *sorted(INFRA.rglob("*.yml"))]
    names = {path.relative_to(ROOT).as_posix() for path in paths}
    assert {
        "docker-compose.yml",
        "infra/kuberay/raycluster.yaml",
        "infra/kuberay/rayjob.yaml",
        "infra/kuberay/mlflow.yaml",
        "infra/ray-cluster/aws-gpu.yaml",
    } <= names
    for path in paths:
        documents = load_yaml_documents(path)
        assert documents, f"{path} holds no YAML document"
        for document in documents:
            assert isinstance(document, dict) and document, f"{path}: a document is not a mapping"


# ---- schemas --------------------------------------------------------------------------------


def run_check_jsonschema(path: Path) -> subprocess.CompletedProcess:
    command = ["check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)]
    return subprocess.run(
        [sys.executable, "-m", *command],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compose_file_validates_against_the_compose_specification(tmp_path):
    result = run_check_jsonschema(COMPOSE_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout

    broken = compose()
    broken["services"]["ray-worker"]["gpus_please"] = True  # not a Compose key
    broken["services"]["mlflow"]["ports"] = "127.0.0.1:5000:5000"  # must be a list
    broken_file = tmp_path / "docker-compose.yml"
    broken_file.write_text(yaml.safe_dump(broken))
    result = run_check_jsonschema(broken_file)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "gpus_please" in result.stdout


def test_core_kubernetes_objects_validate_strictly():
    validated = set()
    for path, document in kuberay_documents():
        if document["apiVersion"].startswith("ray.io/"):
            continue
        try:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(map(str, error.path))
            pytest.fail(f"{path.name}: {document['kind']}: {where}: {error.message}")
        validated.add(document["kind"])
    assert {"Deployment", "Service"} <= validated

    (deployment,) = [d for _, d in kuberay_documents() if d["kind"] == "Deployment"]
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["envFrom"][0]["secretRef"]["nam"] = "x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    broken = copy.deepcopy(deployment)
    broken["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def forbid_unknown_fields(schema: Any) -> Any:
    """The CRD schema with unknown fields rejected, as `kubectl apply` (strict field
    validation, its default) does; CRD schemas leave that to the API server's pruning."""
    if isinstance(schema, list):
        return [forbid_unknown_fields(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: forbid_unknown_fields(value) for key, value in schema.items()}
    if (
        "properties" in schema
        and "additionalProperties" not in schema
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ):
        strict["additionalProperties"] = False
    return strict


def crd_validator(kind: str, api_version: str) -> jsonschema.Draft4Validator:
    crd = load_yaml(CRD_DIR / CRD_FILES[kind])
    group, version = api_version.split("/")
    assert crd["spec"]["group"] == group and crd["spec"]["names"]["kind"] == kind
    (served,) = [v for v in crd["spec"]["versions"] if v["name"] == version and v["served"]]
    schema = forbid_unknown_fields(served["schema"]["openAPIV3Schema"])
    # OpenAPI v3.0 schemas follow JSON Schema draft 4.
    return jsonschema.Draft4Validator(schema)


def kuberay_object(kind: str) -> dict[str, Any]:
    (document,) = [d for _, d in kuberay_documents() if d["kind"] == kind]
    assert document["apiVersion"] == "ray.io/v1"
    return document


def assert_valid(validator: jsonschema.Draft4Validator, document: dict[str, Any]) -> None:
    errors = [
        f"{'.'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator.iter_errors(document)
    ]
    assert not errors, "\n".join(errors)


def test_raycluster_validates_against_kuberay_crd():
    cluster = kuberay_object("RayCluster")
    validator = crd_validator("RayCluster", cluster["apiVersion"])
    assert_valid(validator, cluster)

    typo = copy.deepcopy(cluster)
    typo["spec"]["workerGroupSpecs"][0]["maxReplica"] = 8
    assert not validator.is_valid(typo)
    not_a_string = copy.deepcopy(cluster)
    not_a_string["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    assert not validator.is_valid(not_a_string)
    bad_auth = copy.deepcopy(cluster)
    bad_auth["spec"]["authOptions"]["mode"] = "password"
    assert not validator.is_valid(bad_auth)
    no_template = copy.deepcopy(cluster)
    del no_template["spec"]["workerGroupSpecs"][0]["template"]
    assert not validator.is_valid(no_template)


def test_rayjob_validates_against_kuberay_crd():
    job = kuberay_object("RayJob")
    validator = crd_validator("RayJob", job["apiVersion"])
    assert_valid(validator, job)

    typo = copy.deepcopy(job)
    typo["spec"]["entryPoint"] = typo["spec"].pop("entrypoint")
    assert not validator.is_valid(typo)
    bad_container = copy.deepcopy(job)
    bad_container["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["imag"] = "x"
    assert not validator.is_valid(bad_container)


def test_rayjob_targets_the_raycluster_and_runs_a_sweep():
    job, cluster = kuberay_object("RayJob"), kuberay_object("RayCluster")
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": cluster["metadata"]["name"]}
    command = job["spec"]["entrypoint"].split()
    assert command[:2] == ["tucker-sweep", "launch"]
    config = command[2].removeprefix("/home/ray/tucker-sweep/")
    assert (ROOT / config).is_file(), f"the RayJob runs {command[2]}, not a config of the repo"
    dockerfile = RAY_DOCKERFILE.read_text()
    assert "WORKDIR /home/ray/tucker-sweep" in dockerfile and "./configs" in dockerfile


def test_launcher_config_passes_rays_own_validation():
    # What `ray up` runs: fill in the provider's defaults, then check the schema and node types.
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load_yaml(LAUNCHER_CONFIG)
    validate_config(prepare_config(copy.deepcopy(config)))

    workers = config["available_node_types"]["gpu_worker"]
    assert workers["min_workers"] < workers["max_workers"] <= config["max_workers"]
    assert workers["node_config"]["InstanceType"].startswith(("g", "p")), "not a GPU instance"

    typo = copy.deepcopy(config)
    typo["available_node_types"]["gpu_worker"]["max_worker"] = 8
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(typo))


# ---- versions -------------------------------------------------------------------------------


def test_images_and_ray_versions_agree():
    ray, mlflow = pinned("ray"), pinned("mlflow")
    # The installed metadata: `make` reinstalls whenever pyproject.toml changes.
    dependencies = {
        requirement.name: requirement
        for requirement in map(Requirement, importlib.metadata.requires("tucker-sweep") or [])
        if requirement.marker is None
    }
    assert dependencies["ray"].specifier.contains(ray), "pyproject's ray range excludes the pin"
    assert dependencies["mlflow"].specifier.contains(mlflow)

    ray_base = dockerfile_base(RAY_DOCKERFILE)
    assert re.fullmatch(rf"rayproject/ray:{re.escape(ray)}-py3\d+-gpu", ray_base), ray_base
    assert f"ray.__version__ == '{ray}'" in RAY_DOCKERFILE.read_text()
    project_image = f"tucker-sweep-ray:{ray_base.split(':')[1]}"

    mlflow_base = dockerfile_base(MLFLOW_DOCKERFILE)
    assert mlflow_base == f"ghcr.io/mlflow/mlflow:v{mlflow}"
    assert f'"mlflow[auth]=={mlflow}"' in MLFLOW_DOCKERFILE.read_text()
    mlflow_image = f"tucker-sweep-mlflow:{mlflow}"

    services = compose()["services"]
    for name in ("ray-head", "ray-worker"):
        assert services[name]["image"] == project_image, name
        assert services[name]["build"]["dockerfile"] == "infra/docker/Dockerfile"
    assert services["mlflow"]["image"] == mlflow_image
    assert services["mlflow"]["build"]["dockerfile"] == "infra/docker/mlflow.Dockerfile"

    cluster, job = kuberay_object("RayCluster"), kuberay_object("RayJob")
    assert cluster["spec"]["rayVersion"] == ray
    pod_specs = [cluster["spec"]["headGroupSpec"]["template"]["spec"]]
    pod_specs += [group["template"]["spec"] for group in cluster["spec"]["workerGroupSpecs"]]
    pod_specs.append(job["spec"]["submitterPodTemplate"]["spec"])
    for pod_spec in pod_specs:
        for container in containers(pod_spec):
            assert container["image"] == project_image, container["name"]
    (deployment,) = [d for _, d in kuberay_documents() if d["kind"] == "Deployment"]
    for container in containers(deployment["spec"]["template"]["spec"]):
        assert container["image"] == mlflow_image

    launcher = load_yaml(LAUNCHER_CONFIG)
    assert launcher["docker"]["image"] == ray_base
    assert not {"head_image", "worker_image"} & set(launcher["docker"])


# ---- compose: exposure, secrets, start-up order ----------------------------------------------


def test_every_published_port_binds_loopback():
    published = []
    for name, service in compose()["services"].items():
        assert service.get("network_mode") != "host", f"{name} shares the host's network"
        for port in service.get("ports", []):
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: {port}"
                published.append(int(port["published"]))
            else:
                host_ip, host_port, _container = str(port).split(":")
                assert host_ip == "127.0.0.1", f"{name}: {port} is reachable from other hosts"
                published.append(int(host_port))
    assert {5000, 8265, 10001} <= set(published)
    assert len(published) == len(set(published)), "a host port is published twice"


def test_compose_takes_every_secret_from_env():
    text = COMPOSE_FILE.read_text()
    references = INTERPOLATION.findall(text)
    assert references
    for variable, operator, _message in references:
        assert operator == ":?", f"${{{variable}}} must be required (${{{variable}:?...}})"

    for name, service in compose()["services"].items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), f"{name}: write environment as a mapping"
        for key, value in environment.items():
            if SECRET_NAME.search(key):
                assert is_interpolation(str(value)), f"{name}: {key} is not taken from .env"
    urls_with_credentials = 0
    for node in walk(compose()):
        if isinstance(node, str):
            for userinfo in URL_USERINFO.findall(INTERPOLATION.sub("\0", node)):
                urls_with_credentials += 1
                literal = userinfo.replace("\0", "").replace(":", "")
                assert not literal, f"credentials written into a URL: {node}"
    assert urls_with_credentials >= 1  # the Postgres URIs of the mlflow service


def test_env_example_lists_every_variable_with_empty_secrets():
    example: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            example[key.strip()] = value.strip()
    referenced = {variable for variable, *_ in INTERPOLATION.findall(COMPOSE_FILE.read_text())}
    assert referenced - set(example) == set(), ".env.example lacks variables compose needs"
    assert set(example) - referenced == set(), ".env.example has variables compose ignores"
    secrets = {key for key in example if SECRET_NAME.search(key)}
    assert {"POSTGRES_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "RAY_AUTH_TOKEN"} <= secrets
    for key in secrets:
        assert example[key] == "", f".env.example must not hold a working {key}"


def test_compose_starts_in_dependency_order():
    services = compose()["services"]
    expected = {
        "minio-init": {"minio": "service_healthy"},
        "mlflow": {
            "postgres": "service_healthy",
            "minio-init": "service_completed_successfully",
        },
        "ray-head": {"mlflow": "service_healthy", "minio-init": "service_completed_successfully"},
        "ray-worker": {"ray-head": "service_healthy"},
    }
    for name, service in services.items():
        conditions = {
            dependency: spec["condition"]
            for dependency, spec in service.get("depends_on", {}).items()
        }
        assert conditions == expected.get(name, {}), name
        for dependency, condition in conditions.items():
            target = services[dependency]
            if condition == "service_healthy":
                assert target["healthcheck"]["test"], f"{dependency} has no health check"
            if condition == "service_completed_successfully":
                assert target.get("restart") == "no", f"{dependency} is not a one-shot job"
    for name, service in services.items():
        if name != "minio-init":
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"


def test_ray_workers_scale_with_gpus_and_shared_memory():
    services = compose()["services"]
    worker = services["ray-worker"]
    assert "container_name" not in worker and "ports" not in worker, "would block --scale"
    (device,) = worker["deploy"]["resources"]["reservations"]["devices"]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    size = re.fullmatch(r"(\d+)\s*([kmg])b?", str(worker["shm_size"]).lower())
    assert size and size.group(2) == "g" and int(size.group(1)) >= 4, worker["shm_size"]
    assert "--address=ray-head:6379" in worker["command"]


def test_ray_start_and_mlflow_server_flags_exist():
    from mlflow.cli import server
    from ray.scripts.scripts import start

    ray_options, mlflow_options = click_options(start), click_options(server)
    services = compose()["services"]
    for name in ("ray-head", "ray-worker"):
        command = services[name]["command"]
        assert command[:2] == ["ray", "start"]
        for argument in command[2:]:
            assert argument.split("=")[0] in ray_options, f"{name}: ray start {argument}"
    cluster = kuberay_object("RayCluster")
    for group in [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]:
        for key in group["rayStartParams"]:
            assert f"--{key}" in ray_options, f"rayStartParams: {key}"

    (deployment,) = [d for _, d in kuberay_documents() if d["kind"] == "Deployment"]
    for arguments in (
        services["mlflow"]["command"],
        deployment["spec"]["template"]["spec"]["containers"][0]["args"],
    ):
        assert arguments[:2] == ["mlflow", "server"]
        flags = {argument.split("=")[0] for argument in arguments[2:]}
        assert flags <= mlflow_options, flags - mlflow_options
        assert {"--app-name", "--serve-artifacts", "--artifacts-destination"} <= flags
        assert {"--allowed-hosts", "--host", "--port"} <= flags
        assert "--app-name=basic-auth" in arguments


def test_ray_nodes_reach_mlflow_and_storage():
    services = compose()["services"]
    command = services["mlflow"]["command"]
    allowed_hosts = next(a for a in command if a.startswith("--allowed-hosts=")).split("=")[1]
    (artifacts,) = [a.split("=")[1] for a in command if a.startswith("--artifacts-destination=")]
    init_script = services["minio-init"]["command"][0]
    storage_path = load_yaml(ROOT / "configs" / "cifar10-gpu.yaml")["cluster"]["storage_path"]
    for uri in (artifacts, storage_path):
        assert uri.startswith("s3://")
        bucket = uri.removeprefix("s3://").split("/")[0]
        assert f"local/{bucket}" in init_script, f"minio-init does not create bucket {bucket}"

    for name in ("ray-head", "ray-worker"):
        environment = services[name]["environment"]
        tracking = environment["MLFLOW_TRACKING_URI"]
        assert tracking.removeprefix("http://") in allowed_hosts.split(","), tracking
        assert environment["AWS_ENDPOINT_URL"] == "http://minio:9000"
        for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "AWS_ACCESS_KEY_ID"):
            assert is_interpolation(environment[key]), f"{name}: {key}"
    assert services["mlflow"]["environment"]["MLFLOW_S3_ENDPOINT_URL"] == "http://minio:9000"


def test_ray_token_auth_is_on_everywhere():
    services = compose()["services"]
    for name in ("ray-head", "ray-worker"):
        environment = services[name]["environment"]
        assert environment["RAY_AUTH_MODE"] == "token", name
        assert INTERPOLATION.fullmatch(environment["RAY_AUTH_TOKEN"]).group(1) == "RAY_AUTH_TOKEN"

    cluster, job = kuberay_object("RayCluster"), kuberay_object("RayJob")
    auth = cluster["spec"]["authOptions"]
    assert auth["mode"] == "token"
    (submitter,) = job["spec"]["submitterPodTemplate"]["spec"]["containers"]
    environment = {variable["name"]: variable for variable in submitter["env"]}
    assert environment["RAY_AUTH_MODE"]["value"] == "token"
    token = environment["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token == {"name": auth["secretName"], "key": "auth_token"}

    launcher = load_yaml(LAUNCHER_CONFIG)
    for commands in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = [c for c in launcher[commands] if "ray start" in c]
        assert starts and all("RAY_AUTH_MODE=token ray start" in c for c in starts), commands
    assert launcher["file_mounts"]["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"


# ---- Kubernetes secrets ---------------------------------------------------------------------


def test_kubernetes_secrets_are_referenced_never_committed_and_documented():
    readme = (ROOT / "README.md").read_text()
    assert "## Cluster" in readme
    cluster_section = readme.split("## Cluster", 1)[1]
    referenced: dict[str, set[str]] = {}
    for path, document in kuberay_documents():
        assert document["kind"] != "Secret", f"{path} commits a Secret"
        for node in walk(document):
            if not isinstance(node, dict):
                continue
            if "secretKeyRef" in node:
                ref = node["secretKeyRef"]
                referenced.setdefault(ref["name"], set()).add(ref["key"])
            if "secretRef" in node:
                referenced.setdefault(node["secretRef"]["name"], set())
        auth = document.get("spec", {}).get("authOptions", {})
        if "secretName" in auth:
            referenced.setdefault(auth["secretName"], set()).add("auth_token")
    assert len(referenced) >= 4
    for name, keys in referenced.items():
        created = re.search(
            rf"kubectl create secret generic {re.escape(name)}\b(.*?)(?:\n\n|$)",
            cluster_section,
            re.DOTALL,
        )
        assert created, f"README's Cluster section does not create Secret {name}"
        for key in keys:
            assert f"--from-literal={key}=" in created.group(1), f"{name} lacks key {key}"


# ---- stopping: a sweep driver gets the time to stop cleanly on SIGTERM -----------------------


def test_the_driver_host_gives_a_sweep_time_to_stop_on_sigterm():
    # Ray's `ray job stop` kills 3 s after its SIGTERM by default, Docker 10 s after, Kubernetes
    # 30 s after: too short to stop trials and end MLflow runs (README, "Stopping a sweep").
    head = compose()["services"]["ray-head"]
    assert head["stop_grace_period"] == "120s"
    assert int(head["environment"]["RAY_JOB_STOP_WAIT_TIME_S"]) >= 60
    cluster = kuberay_object("RayCluster")
    pod = cluster["spec"]["headGroupSpec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] >= 90
    (container,) = [c for c in containers(pod) if c["name"] == "ray-head"]
    wait = {e["name"]: e.get("value") for e in container["env"]}["RAY_JOB_STOP_WAIT_TIME_S"]
    assert 60 <= int(wait) < pod["terminationGracePeriodSeconds"]
