"""The codec: the only module that touches the CloudEvents SDK (2.x, ``cloudevents.core``).

In: binary or structured HTTP mode. Out: binary mode (headers + JSON body).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, overload

from cloudevents.core.bindings import http as ce_http
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.v1.event import CloudEvent
from opentelemetry import propagate

from events.payloads import PAYLOADS, Payload, dataschema
from shared.errors import InvalidInput

SOURCE = "/deeplens"


@dataclass
class Event:
    type: str
    source: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    subject: str | None = None
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    extensions: dict[str, str] = field(default_factory=dict)
    dataschema: str | None = None

    @property
    def tenant_id(self) -> str | None:
        return self.extensions.get("tenantid")


def make_event(
    event_type: str, payload: Payload, *, source: str = SOURCE, causation: Event | None = None
) -> Event:
    """A DeepLens event: subject tenants/{t}/images/{i}, tenantid and partitionkey set.

    Derived events get deterministic ids (type + image + causing event), so a handler that
    runs twice for the same input emits the same event id and the broker drops the copy.
    """
    tid, iid = str(payload.tenant_id), str(payload.image_id)
    event_id = (
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"{event_type}/{iid}/{causation.id}"))
        if causation is not None
        else str(uuid.uuid4())
    )
    ext = {"tenantid": tid, "partitionkey": iid}
    if causation is not None and "traceparent" in causation.extensions:
        ext["traceparent"] = causation.extensions["traceparent"]
    else:  # a new chain starts inside the current span (the upload request, say)
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        if "traceparent" in carrier:
            ext["traceparent"] = carrier["traceparent"]
    return Event(
        type=event_type,
        source=source,
        id=event_id,
        subject=f"tenants/{tid}/images/{iid}",
        data=payload.model_dump(mode="json", by_alias=True),
        extensions=ext,
        dataschema=dataschema(event_type),
    )


def decode(headers: dict[str, str], body: bytes) -> Event:
    """Binary or structured mode → Event; malformed input is a 400 (never retried)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        ce = ce_http.from_http_event(ce_http.HTTPMessage(headers=lowered, body=body))
    except (
        BaseCloudEventException,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        RecursionError,
    ) as exc:
        raise InvalidInput("not a valid CloudEvent", code="invalid_cloudevent") from exc
    attrs = ce.get_attributes()
    data = ce.get_data()
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data) if data else {}
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise InvalidInput("CloudEvent data is not JSON", code="invalid_cloudevent") from exc
    core = {
        "id",
        "source",
        "type",
        "specversion",
        "subject",
        "time",
        "datacontenttype",
        "dataschema",
        "data",
        "data_base64",
    }
    extensions = {k: str(v) for k, v in attrs.items() if k not in core}
    if "traceparent" in lowered and "traceparent" not in extensions:
        extensions["traceparent"] = lowered["traceparent"]
    t = attrs.get("time")
    return Event(
        type=str(attrs["type"]),
        source=str(attrs["source"]),
        id=str(attrs["id"]),
        subject=attrs.get("subject"),
        data=data if isinstance(data, dict) else {"value": data},
        time=t if isinstance(t, datetime) else datetime.now(UTC),
        extensions=extensions,
        dataschema=attrs.get("dataschema"),
    )


# payload() is generic: a handler gets the model it asked for, typed as such.
P = TypeVar("P", bound=Payload)


@overload
def payload(event: Event, model: type[P]) -> P: ...
@overload
def payload(event: Event, model: None = None) -> Payload: ...
def payload(event: Event, model: type[Payload] | None = None) -> Payload:
    """The event's data as its payload model (``model``, else the one its type names)."""
    cls = model or PAYLOADS.get(event.type)
    if cls is None:
        raise InvalidInput(f"unexpected event type {event.type}", code="unexpected_event_type")
    try:
        return cls.model_validate(event.data)
    except ValueError as exc:
        raise InvalidInput(f"invalid {event.type} payload", code="invalid_payload") from exc


def _to_ce(event: Event) -> CloudEvent:
    attrs: dict[str, Any] = {
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "specversion": "1.0",
        "time": event.time,
        "datacontenttype": "application/json",
        **event.extensions,
    }
    if event.subject:
        attrs["subject"] = event.subject
    if event.dataschema:
        attrs["dataschema"] = event.dataschema
    return CloudEvent(attributes=attrs, data=event.data)


def encode_binary(event: Event) -> tuple[dict[str, str], bytes]:
    msg = ce_http.to_binary_event(_to_ce(event))
    headers = dict(msg.headers)
    if "traceparent" in event.extensions:
        headers["traceparent"] = event.extensions["traceparent"]
    return headers, msg.body


def encode_structured(event: Event) -> tuple[dict[str, str], bytes]:
    msg = ce_http.to_structured_event(_to_ce(event))
    return dict(msg.headers), msg.body


def to_json(event: Event) -> dict[str, Any]:
    """Structured-mode JSON, for storage (broker queue, failed events)."""
    _, body = encode_structured(event)
    out: dict[str, Any] = json.loads(body)
    return out


def from_json(doc: dict[str, Any]) -> Event:
    return decode({"content-type": "application/cloudevents+json"}, json.dumps(doc).encode())


def read_event_json(event: Event) -> dict[str, Any]:
    """The event as stored for replay: structured JSON without the broker's error extensions."""
    clean = Event(
        type=event.type,
        source=event.source,
        data=event.data,
        id=event.id,
        subject=event.subject,
        time=event.time,
        dataschema=event.dataschema,
        extensions={
            k: v
            for k, v in event.extensions.items()
            if not k.startswith(("knativeerror", "deeplens"))
        },
    )
    return to_json(clean)
