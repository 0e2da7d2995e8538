from __future__ import annotations

import json
import uuid

import pytest

from events import types
from events.codec import decode, encode_binary, encode_structured, from_json, make_event, to_json
from events.payloads import PAYLOADS, SCHEMA_DIR, ImageUploaded, schema_for, schema_name
from events.triggers import TRIGGERS
from functions import FUNCTIONS
from shared.errors import InvalidInput


def _uploaded() -> ImageUploaded:
    return ImageUploaded(
        image_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        bucket="b",
        key="k",
        filename="f.jpg",
        content_type="image/jpeg",
        size_bytes=3,
        sha256="x",
    )


def test_event_attributes_follow_the_contract() -> None:
    p = _uploaded()
    e = make_event(types.IMAGE_UPLOADED, p)
    assert e.type == "io.deeplens.image.uploaded.v1"
    assert e.subject == f"tenants/{p.tenant_id}/images/{p.image_id}"
    assert e.extensions["tenantid"] == str(p.tenant_id)
    assert e.extensions["partitionkey"] == str(p.image_id)
    assert e.dataschema and e.dataschema.endswith("image.uploaded.v1.json")
    for name in e.extensions:  # CloudEvents extension names: lowercase alphanumeric, <= 20
        assert name.isalnum() and name.islower() and len(name) <= 20


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_round_trip_in_both_modes(mode: str) -> None:
    e = make_event(types.IMAGE_UPLOADED, _uploaded())
    e.extensions["traceparent"] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers, body = encode_binary(e) if mode == "binary" else encode_structured(e)
    if mode == "binary":
        assert headers["ce-type"] == e.type and headers["traceparent"].startswith("00-")
    else:
        assert headers["content-type"].startswith("application/cloudevents+json")
    back = decode(headers, body)
    assert (back.id, back.type, back.subject, back.data) == (e.id, e.type, e.subject, e.data)
    assert back.extensions["tenantid"] == e.extensions["tenantid"]
    assert back.extensions["traceparent"] == e.extensions["traceparent"]
    assert from_json(to_json(e)).data == e.data


def test_derived_event_ids_are_deterministic() -> None:
    cause = make_event(types.IMAGE_UPLOADED, _uploaded())
    p = _uploaded()
    one = make_event(types.IMAGE_UPLOADED, p, causation=cause)
    two = make_event(types.IMAGE_UPLOADED, p, causation=cause)
    assert one.id == two.id and one.id != cause.id


@pytest.mark.parametrize("body", [b"", b"{", b'{"type": "x"}', b"[]"])
def test_malformed_events_are_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        decode({"content-type": "application/cloudevents+json"}, body)


def test_schema_files_match_the_models() -> None:
    for event_type in PAYLOADS:
        path = SCHEMA_DIR / schema_name(event_type)
        assert json.loads(path.read_text()) == json.loads(json.dumps(schema_for(event_type))), (
            f"{path} is stale: run python -m events.payloads"
        )


def test_trigger_table_names_real_functions_and_types() -> None:
    names = [t.name for t in TRIGGERS]
    assert len(names) == len(set(names))
    for t in TRIGGERS:
        assert t.function in FUNCTIONS
        assert t.event_type in types.ALL or t.event_type == types.KAFKA_RECORD
    consumed = {t.event_type for t in TRIGGERS}
    assert {types.IMAGE_UPLOADED, types.IMAGE_VALIDATED, types.FEATURES_EXTRACTED} <= consumed


def test_new_event_chains_carry_the_current_trace() -> None:
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("t")
    with tracer.start_as_current_span("upload") as s:
        e = make_event(types.IMAGE_UPLOADED, _uploaded())
    trace_id = format(s.get_span_context().trace_id, "032x")
    assert e.extensions["traceparent"].split("-")[1] == trace_id
    derived = make_event(types.IMAGE_UPLOADED, _uploaded(), causation=e)
    assert derived.extensions["traceparent"] == e.extensions["traceparent"]
    headers, _ = encode_binary(derived)
    assert headers["traceparent"] == e.extensions["traceparent"]


def test_features_payload_carries_the_vector_compactly_and_checks_it() -> None:
    from events.codec import Event, payload
    from events.payloads import FeaturesExtracted

    vec = [0.5, -0.25, 1.0, 0.0]
    p = FeaturesExtracted(
        image_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        model="m",
        dim=4,
        space="s",
        vector_b64=FeaturesExtracted.pack(vec),
    )
    assert p.vector == vec
    doc = p.model_dump(mode="json", by_alias=True)
    assert isinstance(doc["vectorB64"], str)
    for bad in ({**doc, "vectorB64": "not base64!"}, {**doc, "dim": 5}):
        with pytest.raises(InvalidInput):
            payload(Event(type=types.FEATURES_EXTRACTED, source="/t", data=bad))


def test_features_extracted_carries_region_vectors_as_float16() -> None:
    from pydantic import ValidationError

    from events.payloads import FeaturesExtracted
    from shared.features.nets import REGION_ANCHORS, region_windows
    from shared.vectors.regions import WINDOWS

    assert WINDOWS == len(REGION_ANCHORS) == len(region_windows(7, 7))
    # 4/7 of a 7x7 map: the four corners and the centre.
    assert region_windows(7, 7) == [
        (0, 4, 0, 4),
        (0, 4, 3, 7),
        (3, 7, 0, 4),
        (3, 7, 3, 7),
        (2, 6, 2, 6),
    ]
    base = {
        "imageId": str(uuid.uuid4()),
        "tenantId": str(uuid.uuid4()),
        "model": "m",
        "dim": 4,
        "space": "s",
        "vectorB64": FeaturesExtracted.pack([0.5, 0.5, 0.5, 0.5]),
    }
    regions = [[1.0, 0.0, 0.0, 0.0], [0.0, 0.25, -0.5, 0.125]]
    p = FeaturesExtracted.model_validate(
        {**base, "regionsB64": FeaturesExtracted.pack_regions(regions)}
    )
    assert p.regions == regions
    assert FeaturesExtracted.model_validate(base).regions == []  # older events: none
    for bad in (
        "not base64!",
        FeaturesExtracted.pack_regions([[1.0, 0.0, 0.0]]),  # not a multiple of dim
        FeaturesExtracted.pack_regions([[1.0, 0.0, 0.0, 0.0]] * 9),  # more than 8
        FeaturesExtracted.pack_regions([[float("nan"), 0.0, 0.0, 0.0]]),
    ):
        with pytest.raises(ValidationError):
            FeaturesExtracted.model_validate({**base, "regionsB64": bad})


def test_malformed_event_data_is_a_400_not_a_500() -> None:
    """Binary-mode data that is not UTF-8, or nested past the recursion limit, is refused as
    an invalid CloudEvent (a 400 the broker never retries)."""
    headers = {
        "ce-specversion": "1.0",
        "ce-id": "1",
        "ce-source": "/x",
        "ce-type": types.IMAGE_UPLOADED,
        "content-type": "application/json",
    }
    for body in (b"\xff\xfe{", b"[" * 100_000):
        with pytest.raises(InvalidInput) as err:
            decode(headers, body)
        assert err.value.code == "invalid_cloudevent"


def test_dead_letter_attempts_extension_is_read_defensively() -> None:
    from shared.failed_events import _attempts

    assert [_attempts(v) for v in (None, "", "3", "abc", "-5", "9" * 30)] == [
        1,
        1,
        3,
        1,
        1,
        2**31 - 1,
    ]
