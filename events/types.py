"""CloudEvent types: reverse-DNS, versioned, ending in the seed's names."""

from __future__ import annotations

PREFIX = "io.deeplens"
IMAGE_UPLOADED = f"{PREFIX}.image.uploaded.v1"
IMAGE_VALIDATED = f"{PREFIX}.image.validated.v1"
FEATURES_EXTRACTED = f"{PREFIX}.features.extracted.v1"
IMAGE_INDEXED = f"{PREFIX}.image.indexed.v1"
IMAGE_FAILED = f"{PREFIX}.image.failed.v1"
IMAGE_DELETED = f"{PREFIX}.image.deleted.v1"
# Re-embed an indexed image into another vector space (model migration backfill, reindex).
IMAGE_REEMBED = f"{PREFIX}.image.reembed.v1"
SWEEP_TICK = "dev.knative.sources.ping"  # what a PingSource sends
KAFKA_RECORD = "dev.knative.kafka.event"  # what a KafkaSource sends (MinIO notifications)

ALL = [
    IMAGE_UPLOADED,
    IMAGE_VALIDATED,
    FEATURES_EXTRACTED,
    IMAGE_INDEXED,
    IMAGE_FAILED,
    IMAGE_DELETED,
    IMAGE_REEMBED,
]
