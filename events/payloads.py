"""One pydantic model per payload; events/schemas/*.json are generated from these
(``python -m events.payloads``) and a test keeps them in step."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from events import types


class Payload(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    image_id: uuid.UUID
    tenant_id: uuid.UUID


class ImageUploaded(Payload):
    bucket: str
    key: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str


class ImageValidated(Payload):
    bucket: str
    key: str
    width: int
    height: int
    thumbnails: dict[str, str] = Field(description="size → object key")


class FeaturesExtracted(Payload):
    model: str
    dim: int
    space: str
    # Base64 of the little-endian float32 vector: ~7 KB instead of ~27 KB of JSON numbers,
    # and it crosses every JSON encode/decode of the event (several per hop) as one string.
    vector_b64: str = Field(description="base64 of little-endian float32, dim values")
    # The model reference (name:pooling:size). primary: the image's pipeline vector for its
    # active space; otherwise a copy for another space (migration target, previous space,
    # reindex), which moves no pipeline status. backfillId: the re-embedding job, if any.
    ref: str | None = None
    primary: bool = True
    backfill_id: uuid.UUID | None = None
    # The image's region vectors (shared/features/nets: windows of about a third of the image),
    # searched when a query may be a crop: base64 of little-endian float16, dim values each
    # (half the bytes of float32; they only nominate candidates that verification checks).
    regions_b64: str | None = Field(
        default=None, description="base64 of little-endian float16, a multiple of dim values"
    )

    @model_validator(mode="after")
    def _vector_fits(self) -> FeaturesExtracted:
        try:
            raw = base64.b64decode(self.vector_b64, validate=True)
            regions = base64.b64decode(self.regions_b64 or "", validate=True)
        except ValueError as exc:
            raise ValueError("vectorB64 or regionsB64 is not base64") from exc
        if len(raw) != 4 * self.dim:
            raise ValueError(f"vectorB64 holds {len(raw) // 4} values, dim says {self.dim}")
        if self.dim <= 0 or len(regions) % (2 * self.dim) or len(regions) > 8 * 2 * self.dim:
            raise ValueError("regionsB64 must hold at most 8 vectors of dim values")
        if (
            not np.isfinite(np.frombuffer(raw, "<f4")).all()
            or not np.isfinite(np.frombuffer(regions, "<f2")).all()
        ):
            raise ValueError("vectors must be finite numbers")
        return self

    @classmethod
    def pack_regions(cls, regions: Sequence[Sequence[float]]) -> str | None:
        if not regions:
            return None
        return base64.b64encode(np.asarray(regions, dtype="<f2").tobytes()).decode()

    @property
    def regions(self) -> list[list[float]]:
        if not self.regions_b64:
            return []
        flat = np.frombuffer(base64.b64decode(self.regions_b64), dtype="<f2").astype(np.float32)
        out: list[list[float]] = flat.reshape(-1, self.dim).tolist()
        return out

    @classmethod
    def pack(cls, vector: Sequence[float]) -> str:
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()

    @property
    def vector(self) -> list[float]:
        out: list[float] = np.frombuffer(base64.b64decode(self.vector_b64), dtype="<f4").tolist()
        return out


class ImageIndexed(Payload):
    space: str
    model: str


class ImageReembed(Payload):
    model: str = Field(description="model reference name:pooling:size")
    space: str
    backfill_id: uuid.UUID | None = None


class ImageFailed(Payload):
    stage: str
    code: str
    reason: str


class ImageDeleted(Payload):
    space: str | None = None


PAYLOADS: dict[str, type[Payload]] = {
    types.IMAGE_UPLOADED: ImageUploaded,
    types.IMAGE_VALIDATED: ImageValidated,
    types.FEATURES_EXTRACTED: FeaturesExtracted,
    types.IMAGE_INDEXED: ImageIndexed,
    types.IMAGE_FAILED: ImageFailed,
    types.IMAGE_DELETED: ImageDeleted,
    types.IMAGE_REEMBED: ImageReembed,
}
SCHEMA_DIR = Path(__file__).parent / "schemas"
SCHEMA_BASE = "https://deeplens.io/schemas/"


def schema_name(event_type: str) -> str:
    return event_type.removeprefix(types.PREFIX + ".") + ".json"


def dataschema(event_type: str) -> str:
    return SCHEMA_BASE + schema_name(event_type)


def schema_for(event_type: str) -> dict[str, object]:
    schema = PAYLOADS[event_type].model_json_schema(by_alias=True)
    schema["$id"] = dataschema(event_type)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def write_schemas() -> None:
    SCHEMA_DIR.mkdir(exist_ok=True)
    for event_type in PAYLOADS:
        text = json.dumps(schema_for(event_type), indent=2, sort_keys=True) + "\n"
        (SCHEMA_DIR / schema_name(event_type)).write_text(text)


if __name__ == "__main__":
    write_schemas()
