"""One settings class for the whole platform (pydantic-settings, ``DEEPLENS_`` prefix).

Nested groups use ``__``: ``DEEPLENS_JWT__PRIVATE_KEY``, ``DEEPLENS_STORAGE__BACKEND``.
Outside development, placeholder secrets are refused so a deployment cannot run on defaults.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.envmap import PLATFORM_VARIABLES, nested_from_env, user_cache

PLACEHOLDERS = {"", "changeme", "change-me", "secret", "minioadmin", "password"}
# Markers the repository's templates use (infra/knative/secrets.example.yaml, config.yaml).
TEMPLATE_MARKERS = ("CHANGE-ME", "REPLACE-WITH")


def _placeholder(value: str) -> bool:
    return value.strip().lower() in PLACEHOLDERS or any(m in value for m in TEMPLATE_MARKERS)


def _postgres_url(value: str) -> str:
    """A libpq connection URI (``postgresql://`` or ``postgres://``; the host may be in a
    ``host=`` parameter, a socket directory, as the embedded server's URL has it), with a
    numeric port if any. Kept as given."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError("must be a postgresql:// URL")
    parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    return value


# A PostgreSQL URL, validated at start (a typo fails there, not at the first query); unset,
# the platform starts an embedded PostgreSQL under the data dir (shared/embedded.py).
DatabaseUrl = Annotated[str, AfterValidator(_postgres_url)]


class JwtSettings(BaseModel):
    # PEM of an Ed25519 (EdDSA) or RSA (RS256) private key: set only on the auth function.
    private_key: SecretStr | None = None
    # PEM public key(s) for verification when the private key is absent.
    public_key: str | None = None
    issuer: str = "deeplens"
    audience: str = "deeplens-api"
    access_ttl_seconds: int = 900
    refresh_ttl_seconds: int = 14 * 24 * 3600


class StorageSettings(BaseModel):
    backend: Literal["local", "s3"] = "local"
    endpoint: str = "127.0.0.1:9000"
    access_key: str = "minioadmin"
    secret_key: SecretStr = SecretStr("minioadmin")
    secure: bool = False
    region: str | None = None
    bucket_prefix: str = "deeplens-"
    # MinIO target ARN for s3:ObjectCreated notifications on every tenant bucket (Kafka).
    notify_arn: str | None = None


class VectorSettings(BaseModel):
    backend: Literal["edge", "qdrant"] = "edge"
    url: str | None = None  # Qdrant server URL; ":memory:" or a path for qdrant-client local mode
    api_key: SecretStr | None = None
    hnsw_m: int = 16
    hnsw_ef_construct: int = 128
    hnsw_ef: int = 128


class FeatureSettings(BaseModel):
    model: str = "efficientnet-lite0"
    device: str = "auto"  # auto | cpu | cuda
    weights_dir: Path | None = None  # where resnet50/efficientnet-b0 weight files are looked up
    # The machine-wide copy of model exports, shared by every data directory (the user's
    # cache: $XDG_CACHE_HOME or ~/.cache, + deeplens/models; "" turns it off); onnx_backend.py
    model_cache: Path | None = None
    extract_url: str | None = None  # call a remote extract function instead of in-process torch
    # Override the model's registered pooling / input size (part of the vectors' identity).
    pooling: Literal["avg", "gem"] | None = None
    input_size: int | None = None
    backend: Literal["auto", "torch", "onnx"] = "auto"  # auto: onnx on CPU, torch on CUDA
    bf16: bool = False  # opt-in: faster, but vectors agree with fp32 only to cosine ~0.998
    max_batch: int = 16
    cuda_graphs: bool = True  # CUDA: the forward pass replayed as a graph per batch bucket
    max_wait_ms: int = 5
    threads: int = 0  # 0 = one worker (onnx) or torch's default per core
    # Index each image's region vectors too (five windows; search finds crops through them).
    # Off: ~13 KB less vector storage an image, and crops are found only by the whole vector.
    regions: bool = True


class Settings(BaseSettings):
    """All settings; see the README's table for the ones operators set most."""

    model_config = SettingsConfigDict(
        env_prefix="DEEPLENS_",
        env_nested_delimiter="__",
        extra="ignore",
        hide_input_in_errors=True,  # a refused URL or key never reaches the logs
    )

    env: Literal["development", "test", "production"] = "development"
    data_dir: Path = Path(".deeplens")
    database_url: DatabaseUrl | None = None
    db_pool_min: int = 1
    db_pool_max: int = 10
    # GET /api/images/{id} reads on the event loop with psycopg's async driver
    # (shared/hotpath/asyncread.py) instead of a worker thread.
    async_reads: bool = True
    # Bulk and backfill events run on lower-priority threads (shared/lanes.py).
    background_lane: bool = True
    # Bulk uploads (``?priority=bulk``) a function process handles at once; 0: no limit.
    bulk_uploads_at_once: int = 2
    bcrypt_rounds: int = 12
    login_max_failures_per_account: int = 5
    login_max_failures_per_address: int = 30
    login_failure_window_seconds: float = 900
    max_upload_bytes: int = 20 * 1024 * 1024
    max_json_bytes: int = 1024 * 1024
    max_image_pixels: int = 50_000_000
    # Memory budget for decoding (shared/imaging.py): one image may decode to at most
    # max_decoded_bytes, and the decodes running at once in a process share decode_budget_bytes.
    max_decoded_bytes: int = 256 * 1024 * 1024
    decode_budget_bytes: int = 512 * 1024 * 1024
    # Slow clients (slowloris): request headers must arrive within header_timeout_seconds
    # (deeplens up's server), and each read of a body within body_read_timeout_seconds.
    header_timeout_seconds: float = 10.0
    body_read_timeout_seconds: float = 30.0
    # Comma-separated addresses or CIDR ranges of the proxies in front of DeepLens whose
    # X-Forwarded-For is believed; empty: the peer address is the client's, whatever the
    # headers say (shared/clientip.py).
    trusted_proxies: str = ""
    # Public sign-ups per client address per hour.
    signups_per_address_per_hour: int = 20
    public_url: str = ""  # prefix for URLs handed to clients (thumbnailUrl); empty = relative
    broker: Literal["local", "http"] = "local"
    broker_url: str | None = None  # the broker's ingress in production (else K_SINK below)
    # The in-process broker of single-process mode starts with the function (off: tests,
    # benchmarks and ``deeplens up``'s function processes, whose supervisor delivers).
    broker_autostart: bool = True
    broker_max_attempts: int = 5
    broker_backoff_seconds: float = 0.5
    broker_lease_seconds: float = 60.0
    # Shared secret the broker presents to the event endpoints (events/auth.py); generated
    # under the data dir in development when unset.
    events_token: SecretStr | None = None
    # How event endpoints know the sender: "token" (the shared secret above; the local broker)
    # or "oidc" (Knative Eventing's sender identity: a JWT for events_oidc_audience, verified
    # against the cluster's JWKS; infra/knative sets this on every service).
    events_auth: Literal["token", "oidc"] = "token"
    events_oidc_jwks_url: str = "https://kubernetes.default.svc/openid/v1/jwks"
    events_oidc_audience: str | None = None
    events_oidc_issuer: str | None = None
    # Senders (the token's ``sub``) accepted, comma-separated shell patterns: by default the
    # service accounts Knative Eventing creates for Triggers and Sources (oidc-<group>-<kind>-
    # <name> or <name>-oidc-<group>-<kind>), not any pod that can mint a token for the audience.
    events_oidc_subjects: str = "system:serviceaccount:*:*oidc-*knative.dev-*"
    sweeper_stuck_seconds: float = 120
    sweeper_interval_seconds: float = 15
    # Near-duplicates: calibrated similarity at or above this joins a duplicate group; within
    # a group, a perceptual-hash distance at most copy_max_hash_distance marks a true copy
    # (re-encoded, resized, recoloured), anything else a similar shot (burst, re-framing).
    near_duplicate_threshold: float = 0.9
    # Local features for geometric verification, computed in process-image (issue 15); off only
    # to measure what they cost (tests/perf/bench_ingest.py --compare-local-features).
    local_features: bool = True
    copy_max_hash_distance: int = 2
    # Model migrations: images queued per backfill batch, and after how long a queued
    # re-embedding with no result is queued again (its event presumed lost).
    models_backfill_batch: int = 4
    models_backfill_stale_seconds: float = 600
    # Observability (shared/metrics/, shared/logs.py): /metrics on every function (off only
    # for benchmarks), a bearer token a scrape must present when set, log lines as JSON or
    # text (auto: text on a terminal), and a JSON-lines span file (tests, local debugging).
    metrics: bool = True
    metrics_token: SecretStr | None = None
    log_format: Literal["auto", "json", "text"] = "auto"
    traces_file: Path | None = None
    # Set by the platform, not by an operator (no DEEPLENS_ prefix): the function(s) this
    # process serves (func-python; comma-separated for a group under ``deeplens up``) and the
    # sink Knative's SinkBinding injects (where events are published when broker_url is unset).
    function_target: str | None = Field(default=None, validation_alias="FUNCTION_TARGET")
    k_sink: str | None = Field(default=None, validation_alias="K_SINK")
    # Set by ``deeplens up``'s supervisor for its children: the process's name in log lines,
    # replica counts ("extract=4,process-image=2", shared/local/layout.py) and, for the
    # ingress, the JSON map of function -> backend addresses.
    process: str | None = None
    scale: str = ""
    ingress_backends: str = "{}"
    jwt: JwtSettings = Field(default_factory=JwtSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    vectors: VectorSettings = Field(default_factory=VectorSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_parse(cls, value: str) -> str:
        import ipaddress

        for part in value.split(","):
            if part.strip():
                ipaddress.ip_network(part.strip(), strict=False)  # ValueError: refused at start
        return value

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.env != "production":
            return self
        problems = []
        if self.database_url is None:
            problems.append("DEEPLENS_DATABASE_URL must be set")
        if self.storage.backend == "s3" and (
            _placeholder(self.storage.secret_key.get_secret_value())
        ):
            problems.append("DEEPLENS_STORAGE__SECRET_KEY is a placeholder")
        pk = self.jwt.private_key
        if pk is not None and _placeholder(pk.get_secret_value()):
            problems.append("DEEPLENS_JWT__PRIVATE_KEY is a placeholder")
        if self.jwt.public_key and _placeholder(self.jwt.public_key):
            problems.append("DEEPLENS_JWT__PUBLIC_KEY is the template's placeholder")
        if self.metrics_token is not None and _placeholder(self.metrics_token.get_secret_value()):
            problems.append("DEEPLENS_METRICS_TOKEN is a placeholder")
        if self.database_url and _placeholder(self.database_url):
            problems.append("DEEPLENS_DATABASE_URL holds a placeholder password")
        if pk is None and not self.jwt.public_key:
            problems.append("DEEPLENS_JWT__PRIVATE_KEY or DEEPLENS_JWT__PUBLIC_KEY must be set")
        if self.jwt.public_key and not self.jwt.public_key.lstrip().startswith("-----BEGIN"):
            problems.append("DEEPLENS_JWT__PUBLIC_KEY is not a PEM public key")
        if problems:
            raise ValueError("refusing to start in production: " + "; ".join(problems))
        return self

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build settings from a mapping of environment variables (func passes ``start(cfg)``)."""
        if env is None:
            return cls()
        values = nested_from_env(env)
        values.update({k: env[k] for k in PLATFORM_VARIABLES if k in env})
        features = values.setdefault("features", {})
        if isinstance(features, dict):
            cache = features.get("model_cache", user_cache(env))
            features["model_cache"] = cache or None
        return cls.model_validate(values)


class ClientSettings(BaseSettings):
    """What the ``deeplens`` command's client side reads (shared/cli/): where the platform is,
    the API key of ``ingest``/``search``, the administrator of ``models``, the log format."""

    model_config = SettingsConfigDict(env_prefix="DEEPLENS_", extra="ignore")

    url: str = "http://127.0.0.1:8080"
    api_key: str | None = None
    admin_email: str | None = None
    admin_password: str | None = None
    log_format: Literal["auto", "json", "text"] = "auto"


# --- variables other libraries own ------------------------------------------------------
# prometheus_client and the OpenTelemetry SDK read these themselves; DeepLens only needs to
# know whether they are set, and reads them here so every environment read is in this module.
def metrics_multiprocess_dir() -> str | None:
    """PROMETHEUS_MULTIPROC_DIR: metrics in multiprocess mode (shared/metrics/)."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def otlp_configured() -> bool:
    """An OTLP endpoint for traces is configured (the SDK's exporter reads it)."""
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
