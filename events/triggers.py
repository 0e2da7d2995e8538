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

    @property
    def path(self) -> str:
        """Where the function receives this trigger's events (same path locally and on
        Knative, where the Trigger's subscriber is the Service plus this URI)."""
        return f"/events/{self.function}"


TRIGGERS: list[Trigger] = [
    Trigger("process-image-on-uploaded", types.IMAGE_UPLOADED, "process-image"),
    Trigger("extract-on-validated", types.IMAGE_VALIDATED, "extract"),
    Trigger("index-vector-on-extracted", types.FEATURES_EXTRACTED, "index-vector"),
]
DEAD_LETTER_PATH = "/events/dead-letter"
SWEEPER_PATH = "/events/sweeper"


def triggers_for(event_type: str) -> list[Trigger]:
    return [t for t in TRIGGERS if t.event_type == event_type]
