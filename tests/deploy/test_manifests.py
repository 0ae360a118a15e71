"""deploy/kubernetes, checked offline: every manifest against the Kubernetes schemas that
kubernetes-validate bundles (strict: an unknown or misspelt field fails), and what
the schemas cannot know: the control plane's flags are `fusebox serve`'s, the probes
hit the port `--http-listen` opens, mounted files are where the flags look, the
pods run as the Dockerfile's user, and the example app's environment is a valid
FUSEBOX_* contract (docs/deploy.md)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from fusebox.agent import Agent
from fusebox.agent.environment import VARIABLES, agent_keywords
from fusebox.controlplane.cli._parser import build_parser
from tests.support.specs import REPOSITORY

DEPLOY = REPOSITORY / "deploy" / "kubernetes"
#: The oldest Kubernetes the manifests are written for, and the newest schema bundled.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
KUSTOMIZATIONS = (DEPLOY / "kustomization.yaml", DEPLOY / "example" / "kustomization.yaml")
TEMPLATES = (DEPLOY / "secrets.example.yaml", DEPLOY / "example" / "secrets.example.yaml")
SPECS = (DEPLOY / "example" / "resiliency.yaml",)  # Fusebox's, not Kubernetes' (fusebox apply)


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomization_resources() -> list[Path]:
    found = []
    for kustomization in KUSTOMIZATIONS:
        for entry in documents(kustomization)[0]["resources"]:
            found.append(kustomization.parent / entry)
    return found


MANIFESTS = [*kustomization_resources(), *TEMPLATES]
RESOURCES = [(path, doc) for path in MANIFESTS for doc in documents(path)]


def resource(kind: str, name: str) -> dict[str, Any]:
    for _, doc in RESOURCES:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} in deploy/kubernetes")


def container(kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = resource(kind, name)["spec"]["template"]["spec"]["containers"][0]
    return found


def pod_spec(kind: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = resource(kind, name)["spec"]["template"]["spec"]
    return found


def resource_id(item: tuple[Path, dict[str, Any]]) -> str:
    path, doc = item
    return f"{path.relative_to(DEPLOY)}:{doc['kind']}/{doc['metadata']['name']}"


# ---- the schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("item", RESOURCES, ids=[resource_id(r) for r in RESOURCES])
def test_every_manifest_is_valid_for_the_pinned_kubernetes_versions(
    item: tuple[Path, dict[str, Any]], version: str,
) -> None:
    _, doc = item
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        where = ".".join(str(p) for p in e.path)
        pytest.fail(f"{resource_id(item)} (Kubernetes {version}): {where}: {e.message}")


def test_the_strict_schemas_catch_a_misspelt_field() -> None:
    doc = resource("Deployment", "fusebox")
    broken = yaml.safe_load(yaml.safe_dump(doc))
    probe = broken["spec"]["template"]["spec"]["containers"][0].pop("readinessProbe")
    broken["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = probe
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_every_yaml_file_is_a_validated_manifest_a_kustomization_or_a_spec() -> None:
    known = {*MANIFESTS, *KUSTOMIZATIONS, *SPECS}
    on_disk = {*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")}
    assert on_disk == known


def test_generated_config_maps_name_files_that_exist() -> None:
    for kustomization in KUSTOMIZATIONS:
        for generator in documents(kustomization)[0].get("configMapGenerator", []):
            for entry in generator["files"]:
                assert (kustomization.parent / entry.split("=")[-1]).is_file(), entry


def test_the_templates_are_left_out_of_the_kustomizations() -> None:
    # Applying them would replace real Secrets with placeholders.
    assert not set(TEMPLATES) & set(kustomization_resources())


#: What the kustomizations use; kustomize's other features would need a renderer here.
KUSTOMIZE_FIELDS = {"apiVersion", "kind", "resources", "configMapGenerator", "images"}


def pod_specs(paths: list[Path]) -> list[dict[str, Any]]:
    return [doc["spec"]["template"]["spec"] for path in paths for doc in documents(path)
            if "template" in doc.get("spec", {})]


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS, ids=lambda p: str(p.parent.name))
def test_each_kustomization_renders_what_its_resources_use(kustomization: Path) -> None:
    """What `kubectl kustomize` would check, offline (CI has no kubectl): only the
    fields handled here, every image it renames is one its pods run, and every
    ConfigMap it generates is one its pods mount."""
    spec = documents(kustomization)[0]
    assert spec["kind"] == "Kustomization" and set(spec) <= KUSTOMIZE_FIELDS, sorted(spec)
    pods = pod_specs([kustomization.parent / entry for entry in spec["resources"]])
    assert pods, "no workload in the kustomization"
    images = {c["image"] for pod in pods for c in pod["containers"]}
    assert {image["name"] for image in spec.get("images", [])} <= images
    mounted = {v["configMap"]["name"] for pod in pods for v in pod.get("volumes", [])
               if "configMap" in v}
    assert {g["name"] for g in spec.get("configMapGenerator", [])} <= mounted


# ---- the control plane ----------------------------------------------------------------------


def serve_args() -> Any:
    args = container("Deployment", "fusebox")["args"]
    return build_parser().parse_args(args)


def test_the_control_plane_flags_are_accepted_by_fusebox_serve() -> None:
    args = serve_args()
    assert args.command == "serve"
    assert args.listen == "0.0.0.0:50051"
    assert args.store.startswith("redis://")
    assert (args.tokens_file, args.tls_cert, args.tls_key) != (None, None, None)
    assert not args.insecure  # tokens and TLS instead


def test_several_replicas_roll_one_at_a_time_without_losing_one() -> None:
    deployment = resource("Deployment", "fusebox")["spec"]
    assert deployment["replicas"] >= 2
    assert deployment["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    assert resource("PodDisruptionBudget", "fusebox")["spec"]["minAvailable"] >= 1


def test_the_probes_are_the_http_health_paths_on_the_metrics_port() -> None:
    spec = container("Deployment", "fusebox")
    metrics_port = int(serve_args().http_listen.rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
    assert ports["metrics"] == metrics_port
    assert ports["grpc"] == int(serve_args().listen.rsplit(":", 1)[1])
    probes = {kind: spec[kind]["httpGet"] for kind in
              ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["readinessProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == probes["startupProbe"]["path"] == "/healthz"
    assert {p["port"] for p in probes.values()} == {"metrics"}


def test_the_service_is_headless_over_the_replicas_ports() -> None:
    service = resource("Service", "fusebox")["spec"]
    assert service["clusterIP"] == "None"
    assert service["selector"].items() <= resource("Deployment", "fusebox")["spec"]["template"][
        "metadata"]["labels"].items()
    assert {p["targetPort"] for p in service["ports"]} == {"grpc", "metrics"}


def mounted_secret(pod: dict[str, Any], path: str) -> str:
    """The Secret (or ConfigMap) whose volume holds ``path`` in the pod's first container."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in pod["containers"][0]["volumeMounts"]:
        if path.startswith(mount["mountPath"].rstrip("/") + "/"):
            volume = volumes[mount["name"]]
            source = volume.get("secret") or volume.get("configMap")
            assert source is not None, f"{path} is on volume {mount['name']}, not a Secret"
            key = path[len(mount["mountPath"].rstrip("/")) + 1:]
            name: str = source.get("secretName") or source["name"]
            return f"{name}/{key}"
    raise AssertionError(f"nothing is mounted where {path} is")


def template_keys() -> set[str]:
    keys = set()
    for path in TEMPLATES:
        for doc in documents(path):
            data = {**doc.get("data", {}), **doc.get("stringData", {})}
            keys |= {f"{doc['metadata']['name']}/{key}" for key in data}
    return keys


def test_the_tokens_file_and_the_key_pair_come_from_the_secrets_the_templates_describe() -> None:
    args = serve_args()
    pod = pod_spec("Deployment", "fusebox")
    assert mounted_secret(pod, args.tokens_file) == "fusebox-tokens/tokens.yaml"
    assert mounted_secret(pod, args.tls_cert) == "fusebox-tls/tls.crt"
    assert mounted_secret(pod, args.tls_key) == "fusebox-tls/tls.key"
    assert {"fusebox-tokens/tokens.yaml", "fusebox-tls/tls.crt",
            "fusebox-tls/tls.key"} <= template_keys()


def test_the_store_is_the_redis_pod_with_an_append_only_file() -> None:
    statefulset = resource("StatefulSet", "redis")
    service = statefulset["spec"]["serviceName"]
    assert resource("Service", service)["spec"]["clusterIP"] == "None"
    namespace = statefulset["metadata"]["namespace"]
    assert serve_args().store == (
        f"redis://redis-0.{service}.{namespace}.svc.cluster.local:6379/0")
    args = container("StatefulSet", "redis")["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    claims = statefulset["spec"]["volumeClaimTemplates"]
    assert [c["metadata"]["name"] for c in claims] == ["data"]
    assert {"name": "data", "mountPath": "/data"} in container("StatefulSet", "redis")[
        "volumeMounts"]


# ---- every pod: non-root, read-only root, requests ---------------------------------------------

WORKLOADS = [(d["kind"], d["metadata"]["name"]) for _, d in RESOURCES
             if d["kind"] in ("Deployment", "StatefulSet")]


@pytest.mark.parametrize(("kind", "name"), WORKLOADS, ids=[f"{k}/{n}" for k, n in WORKLOADS])
def test_every_pod_runs_non_root_on_a_read_only_root_with_requests(kind: str, name: str) -> None:
    pod = pod_spec(kind, name)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    for spec in pod["containers"]:
        context = spec["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert {"cpu", "memory"} <= spec["resources"]["requests"].keys()
        assert "memory" in spec["resources"]["limits"]


def test_the_fusebox_pods_run_as_the_dockerfiles_user() -> None:
    user = re.search(r"^USER (\d+):(\d+)$", (REPOSITORY / "Dockerfile").read_text(), re.M)
    assert user is not None, "the Dockerfile names no numeric USER"
    uid, gid = int(user.group(1)), int(user.group(2))
    for kind, name in WORKLOADS:
        pod = pod_spec(kind, name)
        if pod["containers"][0]["image"] == "fusebox":
            assert (pod["securityContext"]["runAsUser"],
                    pod["securityContext"]["runAsGroup"]) == (uid, gid), name


# ---- the example app's environment ----------------------------------------------------------

#: What the downward API gives the example's pods.
POD_FIELDS = {"metadata.name": "checkout-5f7c9d8b6-x2k4q", "metadata.namespace": "shop"}
FILE_CONTENTS = {
    "checkout-fusebox-token/token": "fbx_example_token\n",
    "fusebox-ca/ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
}


def example_environment(root: Path) -> dict[str, str]:
    """checkout's env as the pod sees it, its mounted files laid out under ``root``."""
    pod = pod_spec("Deployment", "checkout")
    env: dict[str, str] = {}
    for entry in pod["containers"][0]["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            env[entry["name"]] = POD_FIELDS[entry["valueFrom"]["fieldRef"]["fieldPath"]]
    for name in ("FUSEBOX_TOKEN_FILE", "FUSEBOX_TLS_CA"):
        source = mounted_secret(pod, env[name])
        local = root / env[name].lstrip("/")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_text(FILE_CONTENTS[source])
        env[name] = str(local)
    return env


def test_the_example_env_is_a_valid_contract_read_as_agent_from_env(tmp_path: Path) -> None:
    env = example_environment(tmp_path)
    keywords = agent_keywords(env)
    assert keywords == {
        "server": "dns:///fusebox.fusebox.svc.cluster.local:50051",
        "app_id": "checkout",
        "namespace": "shop",
        "instance_id": "checkout-5f7c9d8b6-x2k4q",
        "token": "fbx_example_token",
        "tls_ca": env["FUSEBOX_TLS_CA"],
        "initial_fetch_timeout": 5.0,
    }
    agent = Agent.from_env(environ=env)
    try:
        assert (agent.app_id, agent.namespace, agent.instance_id) == (
            "checkout", "shop", "checkout-5f7c9d8b6-x2k4q")
    finally:
        agent.close()


def test_the_example_sets_only_contract_variables_and_its_own() -> None:
    names = {e["name"] for e in container("Deployment", "checkout")["env"]}
    fusebox = {n for n in names if n.startswith("FUSEBOX_")}
    assert fusebox <= {v.name for v in VARIABLES}
    assert names - fusebox == {"ORDER_PROCESSOR_URL"}


def test_the_example_cache_dir_is_a_writable_volume() -> None:
    pod = pod_spec("Deployment", "checkout")
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    mounts = {m["mountPath"]: m["name"] for m in pod["containers"][0]["volumeMounts"]}
    volume = next(v for v in pod["volumes"] if v["name"] == mounts[env["FUSEBOX_CACHE_DIR"]])
    assert "emptyDir" in volume


def test_the_example_spec_is_in_the_namespace_the_pods_are() -> None:
    spec = documents(SPECS[0])[0]
    assert spec["metadata"]["namespace"] == resource("Deployment", "checkout")["metadata"][
        "namespace"]
    assert spec["scopes"] == ["checkout"]


# ---- docs/deploy.md documents the contract once -------------------------------------------


def test_docs_deploy_lists_every_variable_of_the_contract() -> None:
    text = (REPOSITORY / "docs" / "deploy.md").read_text()
    for variable in VARIABLES:
        assert re.search(rf"^\| `{variable.name}` \|", text, re.M), variable.name
    for page in ("agent.md", "sidecar.md"):
        assert "deploy.md#the-fusebox_-environment" in (REPOSITORY / "docs" / page).read_text()
