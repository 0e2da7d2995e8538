"""infra/knative rendered offline (`kubectl kustomize`) and validated: core objects against the
Kubernetes schemas (kubernetes-validate), Knative / Kafka / Gateway API objects against typed
models, and cross-checks against the code (trigger table, functions, routes, image)."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Literal

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from events.triggers import DEAD_LETTER_PATH, SWEEPER_PATH, TRIGGERS
from functions import FUNCTIONS

ROOT = Path(__file__).resolve().parents[2]
KNATIVE = ROOT / "infra" / "knative"
K8S_VERSION = "1.32.0"


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(KNATIVE)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


# --- typed models for the CRDs (only the fields we use; anything else is an error) --------
class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Meta(Strict):
    name: str
    namespace: str
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}


class Ref(Strict):
    apiVersion: str
    kind: str
    name: str


class Destination(Strict):
    ref: Ref
    uri: str | None = None
    audience: str | None = None  # OIDC sender identity (Knative Eventing authentication-oidc)


class KService(Strict):
    apiVersion: Literal["serving.knative.dev/v1"]
    kind: Literal["Service"]
    metadata: Meta
    spec: dict[str, Any]


class Delivery(Strict):
    retry: int
    backoffPolicy: Literal["exponential", "linear"]
    backoffDelay: str
    timeout: str | None = None
    deadLetterSink: Destination


class BrokerSpec(Strict):
    config: dict[str, str]
    delivery: Delivery


class Broker(Strict):
    apiVersion: Literal["eventing.knative.dev/v1"]
    kind: Literal["Broker"]
    metadata: Meta
    spec: BrokerSpec


class TriggerSpec(Strict):
    broker: str
    filters: list[dict[Literal["exact", "prefix", "suffix"], dict[str, str]]]
    subscriber: Destination


class TriggerObj(Strict):
    apiVersion: Literal["eventing.knative.dev/v1"]
    kind: Literal["Trigger"]
    metadata: Meta
    spec: TriggerSpec


class KafkaSourceSpec(Strict):
    consumerGroup: str
    bootstrapServers: list[str]
    topics: list[str]
    initialOffset: Literal["earliest", "latest"]
    sink: Destination


class KafkaSource(Strict):
    apiVersion: Literal["sources.knative.dev/v1beta1"]
    kind: Literal["KafkaSource"]
    metadata: Meta
    spec: KafkaSourceSpec


class PingSpec(Strict):
    schedule: str
    contentType: str
    data: str
    sink: Destination


class PingSource(Strict):
    apiVersion: Literal["sources.knative.dev/v1"]
    kind: Literal["PingSource"]
    metadata: Meta
    spec: PingSpec


class SinkBinding(Strict):
    apiVersion: Literal["sources.knative.dev/v1"]
    kind: Literal["SinkBinding"]
    metadata: Meta
    spec: dict[str, Any]


class RouteMatch(Strict):
    path: dict[Literal["type", "value"], str]
    method: Literal["GET", "POST", "PUT", "DELETE"] | None = None


class RouteRule(Strict):
    matches: list[RouteMatch]
    filters: list[dict[str, Any]]
    backendRefs: list[dict[str, Any]]


class HTTPRouteSpec(Strict):
    parentRefs: list[dict[str, str]]
    hostnames: list[str]
    rules: list[RouteRule]


class HTTPRoute(Strict):
    apiVersion: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["HTTPRoute"]
    metadata: Meta
    spec: HTTPRouteSpec


class ReferenceGrant(Strict):
    apiVersion: Literal["gateway.networking.k8s.io/v1beta1"]
    kind: Literal["ReferenceGrant"]
    metadata: Meta
    spec: dict[str, Any]


TYPED: dict[str, type[BaseModel]] = {
    "Broker": Broker,
    "Trigger": TriggerObj,
    "KafkaSource": KafkaSource,
    "PingSource": PingSource,
    "SinkBinding": SinkBinding,
    "HTTPRoute": HTTPRoute,
    "ReferenceGrant": ReferenceGrant,
}


def test_generated_manifests_are_current() -> None:
    sys.path.insert(0, str(KNATIVE))
    try:
        import generate  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    for name, text in generate.render().items():
        assert (KNATIVE / name).read_text() == text, f"{name} is stale: run generate.py"


def test_every_object_validates(objects: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in objects}
    assert {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Broker",
        "Trigger",
        "KafkaSource",
        "PingSource",
        "HTTPRoute",
    } <= kinds
    for obj in objects:
        if obj["kind"] in TYPED:
            TYPED[obj["kind"]].model_validate(obj)
        elif obj["apiVersion"] == "serving.knative.dev/v1":
            svc = KService.model_validate(obj)
            # A Knative revision template is a PodSpec: validate it as one.
            # Knative fills in a probe's port from the container's; a Pod needs it spelled.
            import copy

            podspec = copy.deepcopy(obj["spec"]["template"]["spec"])
            for k in ("containerConcurrency", "timeoutSeconds"):
                podspec.pop(k, None)
            for c in podspec["containers"]:
                for probe in ("readinessProbe", "livenessProbe"):
                    c[probe]["httpGet"].setdefault("port", c["ports"][0]["containerPort"])
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": svc.metadata.name, "namespace": "deeplens"},
                "spec": podspec,
            }
            kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
        else:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    assert not of_kind(objects, "Secret"), "secrets are created out of band, never committed"


def test_services_match_functions_and_image(objects: list[dict[str, Any]]) -> None:
    func = yaml.safe_load((ROOT / "func.yaml").read_text())
    services = {
        o["metadata"]["name"]: o for o in objects if o["apiVersion"] == "serving.knative.dev/v1"
    }
    assert set(services) == {f"deeplens-{n}" for n in FUNCTIONS}
    for name, svc in services.items():
        spec = svc["spec"]["template"]["spec"]
        [container] = spec["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env["FUNCTION_TARGET"]["value"] == name.removeprefix("deeplens-")
        assert env["FUNCTION_TARGET"]["value"] in FUNCTIONS
        assert container["image"] == func["image"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/health/readiness"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health/liveness"
        assert spec["serviceAccountName"] == "deeplens-function"
        assert ("DEEPLENS_JWT__PRIVATE_KEY" in env) == (name == "deeplens-auth")
    gpu = services["deeplens-extract"]
    spec = gpu["spec"]["template"]["spec"]
    ann = gpu["spec"]["template"]["metadata"]["annotations"]
    [container] = spec["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert spec["containerConcurrency"] == int(env["DEEPLENS_FEATURES__MAX_BATCH"])
    assert ann["autoscaling.knative.dev/target-burst-capacity"] == "-1"
    assert "autoscaling.knative.dev/scale-down-delay" in ann
    assert "serving.knative.dev/progress-deadline" in ann
    assert spec["nodeSelector"] and spec["tolerations"]


def test_triggers_match_the_trigger_table(objects: list[dict[str, Any]]) -> None:
    rendered = {o["metadata"]["name"]: o["spec"] for o in of_kind(objects, "Trigger")}
    assert set(rendered) == {t.name for t in TRIGGERS}
    for t in TRIGGERS:
        spec = rendered[t.name]
        assert {"exact": {"type": t.event_type}} in spec["filters"]
        if t.source_prefix:
            assert {"prefix": {"source": t.source_prefix}} in spec["filters"]
        assert spec["subscriber"]["ref"]["name"] == f"deeplens-{t.function}"
        assert spec["subscriber"]["uri"] == t.path
        assert _has_route(t.function, "POST", t.path)


def test_event_endpoints_are_cluster_local_and_authenticated(
    objects: list[dict[str, Any]],
) -> None:
    """Every service that consumes events is cluster-local (never on the public ingress) and
    accepts only OIDC tokens for its own audience, the one its Triggers and sinks name."""
    services = {o["metadata"]["name"]: o for o in of_kind(objects, "Service")}
    consumers = {t.function for t in TRIGGERS} | {"dead-letter", "sweeper"}
    audiences: dict[str, str] = {}
    for obj in objects:
        spec = obj.get("spec", {})
        for dest in (
            spec.get("subscriber"),
            spec.get("sink"),
            spec.get("delivery", {}).get("deadLetterSink"),
        ):
            if dest and dest["ref"]["kind"] == "Service":
                audiences[dest["ref"]["name"]] = dest.get("audience", "")
    for function in consumers:
        svc = services[f"deeplens-{function}"]
        labels = svc["metadata"]["labels"]
        assert labels["networking.knative.dev/visibility"] == "cluster-local", function
        env = {
            e["name"]: e.get("value")
            for e in svc["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["DEEPLENS_EVENTS_AUTH"] == "oidc"
        assert env["DEEPLENS_EVENTS_OIDC_AUDIENCE"] == audiences[f"deeplens-{function}"]


def _has_route(function: str, method: str, path: str, prefix: bool = False) -> bool:
    import importlib

    router = importlib.import_module(FUNCTIONS[function]).router
    for route in router.routes:
        p = getattr(route, "path", "")
        if method in getattr(route, "methods", set()) or method == "ANY":
            if p == path or (prefix and (p == path or p.startswith(path.rstrip("/") + "/"))):
                return True
    return False


def test_dead_letter_sweeper_and_sources_point_at_real_endpoints(
    objects: list[dict[str, Any]],
) -> None:
    services = {
        o["metadata"]["name"] for o in objects if o["apiVersion"] == "serving.knative.dev/v1"
    }
    [broker] = of_kind(objects, "Broker")
    dls = broker["spec"]["delivery"]["deadLetterSink"]
    assert dls["ref"]["name"] in services and dls["uri"] == DEAD_LETTER_PATH
    assert _has_route("dead-letter", "POST", DEAD_LETTER_PATH)
    assert broker["metadata"]["annotations"]["eventing.knative.dev/broker.class"] == "Kafka"
    [ping] = of_kind(objects, "PingSource")
    assert ping["spec"]["sink"]["ref"]["name"] == "deeplens-sweeper"
    assert ping["spec"]["sink"]["uri"] == SWEEPER_PATH and _has_route(
        "sweeper", "POST", SWEEPER_PATH
    )
    [kafka] = of_kind(objects, "KafkaSource")
    assert kafka["spec"]["sink"]["ref"]["kind"] == "Broker"
    source = f"/apis/v1/namespaces/deeplens/kafkasources/{kafka['metadata']['name']}"
    assert any(t.source_prefix == source for t in TRIGGERS)


def test_every_route_reaches_a_real_path(objects: list[dict[str, Any]]) -> None:
    [route] = of_kind(objects, "HTTPRoute")
    targets = set()
    for rule in route["spec"]["rules"]:
        [match] = rule["matches"]
        host = rule["filters"][0]["urlRewrite"]["hostname"]
        function = host.split(".")[0].removeprefix("deeplens-")
        assert function in FUNCTIONS
        path, kind = match["path"]["value"], match["path"]["type"]
        if kind == "RegularExpression":
            pattern = re.compile(path)
            method = match.get("method")
            router = importlib.import_module(FUNCTIONS[function]).router
            concrete = [
                getattr(r, "path", "").replace("{tenant_id}", str(uuid.uuid4()))
                for r in router.routes
                if method is None or method in getattr(r, "methods", ())
            ]
            assert any(pattern.match(p) for p in concrete), (path, function)
        else:
            assert _has_route(function, "ANY", path, prefix=kind == "PathPrefix"), (path, function)
        targets.add(function)
    assert {"auth", "tenants", "images", "search", "admin"} <= targets
    [grant] = of_kind(objects, "ReferenceGrant")
    assert (
        grant["metadata"]["namespace"] == route["spec"]["rules"][0]["backendRefs"][0]["namespace"]
    )


def test_func_yaml() -> None:
    func = yaml.safe_load((ROOT / "func.yaml").read_text())
    assert func["specVersion"] == "0.36.0" and func["runtime"] == "python"
    assert func["build"]["builder"] == "host"
    assert func["deploy"]["healthEndpoints"] == {
        "liveness": "/health/liveness",
        "readiness": "/health/readiness",
    }
    for env in func["run"]["envs"]:
        v = str(env["value"])
        if "SECRET" in env["name"] or "PASSWORD" in env["name"] or "DATABASE_URL" in env["name"]:
            assert v.startswith("{{ secret:"), env["name"]
