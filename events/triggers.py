"""THE trigger table: which function consumes which event type.

It drives the local broker and is the source of the Trigger manifests in infra/knative
(a test fails when they disagree).
"""

from __future__ import annotations

from dataclasses import dataclass

from events import types


@dataclass(frozen=True)
class Trigger:
    name: str
    event_type: str
    function: str  # a FUNCTION_TARGET
    source_prefix: str | None = None  # also match the event's source (Trigger filter prefix)

    def matches(self, event_type: str, source: str) -> bool:
        return event_type == self.event_type and (
            self.source_prefix is None or source.startswith(self.source_prefix)
        )

    @property
    def path(self) -> str:
        """Where the function receives this trigger's events (same path locally and on
        Knative, where the Trigger's subscriber is the Service plus this URI)."""
        return f"/events/{self.function}"


# The CloudEvent source a KafkaSource stamps on its records: /apis/v1/namespaces/<ns>/
# kafkasources/<name>#<topic>.
MINIO_KAFKA_SOURCE = "/apis/v1/namespaces/deeplens/kafkasources/minio-object-created"

TRIGGERS: list[Trigger] = [
    Trigger("process-image-on-uploaded", types.IMAGE_UPLOADED, "process-image"),
    Trigger("extract-on-validated", types.IMAGE_VALIDATED, "extract"),
    Trigger("extract-on-reembed", types.IMAGE_REEMBED, "extract"),
    Trigger("index-vector-on-extracted", types.FEATURES_EXTRACTED, "index-vector"),
    # MinIO bucket notifications, read from Kafka by the KafkaSource in infra/knative.
    Trigger(
        "process-image-on-object-created",
        types.KAFKA_RECORD,
        "process-image",
        source_prefix=MINIO_KAFKA_SOURCE,
    ),
]
DEAD_LETTER_PATH = "/events/dead-letter"
SWEEPER_PATH = "/events/sweeper"


def triggers_for(event_type: str, source: str = "") -> list[Trigger]:
    return [t for t in TRIGGERS if t.matches(event_type, source)]
