"""Writes services.yaml and triggers.yaml from the code's own tables: every function in
functions.FUNCTIONS becomes a Knative Service (FUNCTION_TARGET), every row of the trigger
table a Trigger. A test fails when the committed files differ from what this writes.

    python infra/knative/generate.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from events.triggers import TRIGGERS  # noqa: E402
from functions import FUNCTIONS  # noqa: E402
from functions.routes import ROUTES  # noqa: E402  (shared with the local ingress)

IMAGE = "deeplens-function"  # replaced by kustomization `images:` with func.yaml's image
NAMESPACE = "deeplens"

# Scale and size per function. Public HTTP functions may scale to zero, except auth and
# search: a sign-in or a search is interactive, and a cold start (~0.5 s, plus the pool)
# would be on the user's critical path. Event functions scale to zero: the broker buffers.
PROFILE: dict[str, dict[str, Any]] = {
    "auth": {
        "public": True,
        "min": 1,
        "max": 10,
        "cc": 50,
        "timeout": 30,
        "cpu": "500m",
        "mem": "256Mi",
    },
    "tenants": {
        "public": True,
        "min": 0,
        "max": 5,
        "cc": 50,
        "timeout": 30,
        "cpu": "250m",
        "mem": "256Mi",
    },
    "images": {
        "public": True,
        "min": 0,
        "max": 20,
        "cc": 20,
        "timeout": 120,
        "cpu": "500m",
        "mem": "512Mi",
    },
    "search": {
        "public": True,
        "min": 1,
        "max": 20,
        "cc": 50,
        "timeout": 30,
        "cpu": "500m",
        "mem": "512Mi",
    },
    "process-image": {
        "public": False,
        "min": 0,
        "max": 20,
        "cc": 4,
        "timeout": 120,
        "cpu": "1",
        "mem": "1Gi",
    },
    "index-vector": {
        "public": False,
        "min": 0,
        "max": 10,
        "cc": 20,
        "timeout": 60,
        "cpu": "250m",
        "mem": "256Mi",
    },
    "sweeper": {
        "public": False,
        "min": 0,
        "max": 1,
        "cc": 1,
        "timeout": 300,
        "cpu": "250m",
        "mem": "256Mi",
    },
    "dead-letter": {
        "public": False,
        "min": 0,
        "max": 2,
        "cc": 20,
        "timeout": 30,
        "cpu": "100m",
        "mem": "256Mi",
    },
    "web": {
        "public": True,
        "min": 0,
        "max": 3,
        "cc": 100,
        "timeout": 30,
        "cpu": "100m",
        "mem": "192Mi",
    },
    "admin": {
        "public": True,
        "min": 0,
        "max": 3,
        "cc": 20,
        "timeout": 60,
        "cpu": "250m",
        "mem": "256Mi",
    },
    # The GPU service: containerConcurrency = the micro-batch size, so a pod takes one batch
    # of requests at a time; target-burst-capacity -1 keeps the activator in the path to
    # buffer bursts while a GPU pod starts; scale-down-delay keeps a warm GPU through lulls;
    # the progress deadline covers GPU node provisioning and model loading.
    "extract": {
        "public": False,
        "min": 0,
        "max": 4,
        "cc": 16,
        "timeout": 300,
        "cpu": "4",
        "mem": "8Gi",
        "gpu": True,
    },
}


def env_var(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "value": value}


def from_secret(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def from_config(name: str, cm: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"configMapKeyRef": {"name": cm, "key": key}}}


def audience(function: str) -> str:
    """The OIDC audience of a function's event endpoints (Trigger subscriber.audience)."""
    return f"deeplens-{function}"


def service(name: str) -> dict[str, Any]:
    p = PROFILE[name]
    annotations = {
        "autoscaling.knative.dev/min-scale": str(p["min"]),
        "autoscaling.knative.dev/max-scale": str(p["max"]),
        "autoscaling.knative.dev/target": str(max(1, int(p["cc"] * 0.7))),
        # Prometheus' kubernetes-pods job scrapes every function pod's own /metrics
        # (infra/prometheus/prometheus.yml; the bearer token is DEEPLENS_METRICS_TOKEN).
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8080",
        "prometheus.io/path": "/metrics",
    }
    env = [
        env_var("FUNCTION_TARGET", name),
        from_secret("DEEPLENS_DATABASE_URL", "deeplens-secrets", "database-url"),
        from_secret("DEEPLENS_STORAGE__ACCESS_KEY", "deeplens-secrets", "s3-access-key"),
        from_secret("DEEPLENS_STORAGE__SECRET_KEY", "deeplens-secrets", "s3-secret-key"),
        from_config("DEEPLENS_JWT__PUBLIC_KEY", "deeplens-jwt", "public.pem"),
        # Event endpoints accept Knative Eventing's OIDC sender identity for this service's
        # audience only (events/auth.py; the Triggers name the same audience).
        env_var("DEEPLENS_EVENTS_AUTH", "oidc"),
        # The shared secret one function presents to another's internal route (search by
        # image → extract's /extract).
        from_secret("DEEPLENS_EVENTS_TOKEN", "deeplens-secrets", "events-token"),
        env_var("DEEPLENS_EVENTS_OIDC_AUDIENCE", audience(name)),
        # Public services are reachable from outside: a scrape must present this token.
        {
            "name": "DEEPLENS_METRICS_TOKEN",
            "valueFrom": {
                "secretKeyRef": {
                    "name": "deeplens-secrets",
                    "key": "metrics-token",
                    "optional": True,
                }
            },
        },
    ]
    if name == "auth":  # the only holder of the signing key
        env.append(from_secret("DEEPLENS_JWT__PRIVATE_KEY", "deeplens-jwt-signing", "private.pem"))
    container: dict[str, Any] = {
        "name": "function",
        "image": IMAGE,
        "ports": [{"containerPort": 8080, "name": "http1"}],
        "env": env,
        "envFrom": [{"configMapRef": {"name": "deeplens-config"}}],
        "readinessProbe": {"httpGet": {"path": "/health/readiness"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/health/liveness"}, "periodSeconds": 10},
        "resources": {
            "requests": {"cpu": p["cpu"], "memory": p["mem"]},
            "limits": {"memory": p["mem"]},
        },
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod: dict[str, Any] = {
        "serviceAccountName": "deeplens-function",
        "containerConcurrency": p["cc"],
        "timeoutSeconds": p["timeout"],
        "containers": [container],
    }
    if p.get("gpu"):
        annotations.update(
            {
                "autoscaling.knative.dev/target-burst-capacity": "-1",
                "autoscaling.knative.dev/scale-down-delay": "10m",
                "serving.knative.dev/progress-deadline": "15m",
            }
        )
        container["resources"]["limits"]["nvidia.com/gpu"] = "1"
        container["env"].append(env_var("DEEPLENS_FEATURES__DEVICE", "cuda"))
        container["env"].append(env_var("DEEPLENS_FEATURES__MAX_BATCH", str(p["cc"])))
        pod["nodeSelector"] = {"nvidia.com/gpu.present": "true"}
        pod["tolerations"] = [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
    labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "deeplens"}
    if not p["public"]:
        labels["networking.knative.dev/visibility"] = "cluster-local"
    return {
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": {"name": f"deeplens-{name}", "namespace": NAMESPACE, "labels": labels},
        "spec": {
            "template": {
                "metadata": {
                    "annotations": annotations,
                    "labels": {"app.kubernetes.io/name": name},
                },
                "spec": pod,
            }
        },
    }


def trigger(t: Any) -> dict[str, Any]:
    return {
        "apiVersion": "eventing.knative.dev/v1",
        "kind": "Trigger",
        "metadata": {
            "name": t.name,
            "namespace": NAMESPACE,
            "labels": {"app.kubernetes.io/part-of": "deeplens"},
        },
        "spec": {
            "broker": "default",
            "filters": [{"exact": {"type": t.event_type}}]
            + ([{"prefix": {"source": t.source_prefix}}] if t.source_prefix else []),
            "subscriber": {
                "ref": {
                    "apiVersion": "serving.knative.dev/v1",
                    "kind": "Service",
                    "name": f"deeplens-{t.function}",
                },
                "uri": t.path,
                "audience": audience(t.function),
            },
        },
    }


# Ingress path routes: (match type, path, method or None, function). Exact and
# RegularExpression beat PathPrefix, and a method match beats none, so the admin routes under
# /api/tenants/{id}/… and /api/images/search leave the rest of their prefix to its owner.
INTERNAL_GATEWAY = {"name": "kourier-internal", "namespace": "kourier-system", "port": 80}


def routes() -> list[dict[str, Any]]:
    rules = []
    for kind, path, method, fn in ROUTES:
        match: dict[str, Any] = {"path": {"type": kind, "value": path}}
        if method:
            match["method"] = method
        rules.append({
            "matches": [match],
            "filters": [{"type": "URLRewrite", "urlRewrite": {
                "hostname": f"deeplens-{fn}.{NAMESPACE}.svc.cluster.local"}}],
            "backendRefs": [dict(INTERNAL_GATEWAY)],
        })
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "deeplens", "namespace": NAMESPACE,
                     "labels": {"app.kubernetes.io/part-of": "deeplens"}},
        "spec": {"parentRefs": [{"name": "public", "namespace": "gateway-system"}],
                 "hostnames": ["deeplens.example.com"], "rules": rules},
    }
    grant = {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": {"name": "deeplens-to-kourier",
                     "namespace": INTERNAL_GATEWAY["namespace"],
                     "labels": {"app.kubernetes.io/part-of": "deeplens"}},
        "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                           "namespace": NAMESPACE}],
                 "to": [{"group": "", "kind": "Service", "name": INTERNAL_GATEWAY["name"]}]},
    }
    return [route, grant]


ROUTES_NOTE = """\
# Path routes at the ingress, so the seed's URLs work under one host. Each rule rewrites the
# Host to the Knative Service's cluster-local name and sends the request through Knative's
# internal gateway (Kourier's kourier-internal here), which keeps scale-from-zero working
# (the activator stays in the path).
"""

HEADER = "# Generated by infra/knative/generate.py from {src}. Do not edit by hand.\n"


def render() -> dict[str, str]:
    services = [service(n) for n in FUNCTIONS]
    triggers = [trigger(t) for t in TRIGGERS]
    dump = lambda docs: yaml.safe_dump_all(docs, sort_keys=False, width=100)  # noqa: E731
    return {
        "services.yaml": HEADER.format(src="functions.FUNCTIONS") + dump(services),
        "triggers.yaml": HEADER.format(src="events.triggers.TRIGGERS") + dump(triggers),
        "routes.yaml": HEADER.format(src="ROUTES") + ROUTES_NOTE + dump(routes()),
    }


if __name__ == "__main__":
    for name, text in render().items():
        (HERE / name).write_text(text)
