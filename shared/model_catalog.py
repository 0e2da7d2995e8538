"""Which models exist and how their similarities are scaled: a model reference
``name:pooling:size`` resolved to a ModelSpec — built-in models from the registry, operators'
own ONNX encoders from ``custom_models`` — with the calibration ``deeplens eval --model``
fitted (``model_calibrations``), cached for a short while."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from typing import Any

from shared.config import Settings
from shared.db import Database
from shared.errors import InvalidInput
from shared.features.registry import MODELS, ModelSpec, model_spec, parse_ref, spec_for
from shared.store import custom_models as custom_store
from shared.store import model_spaces as store

SPEC_TTL = 30.0  # seconds a resolved model (and its calibration) is cached


class ModelCatalog:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db, self.settings = db, settings
        self._specs: dict[str, ModelSpec] = {}
        self._specs_at = time.monotonic()
        self._lock = threading.Lock()

    @property
    def default_ref(self) -> str:
        """The model the settings ask for (DEEPLENS_FEATURES__MODEL)."""
        return spec_for(self.settings.features).ref

    def spec(self, ref: str) -> ModelSpec:
        """The ModelSpec of a reference (built-in or registered), with its calibration:
        the fitted one if ``deeplens eval --model`` stored one, else the registry's, else None
        (similarities are then raw cosine)."""
        if time.monotonic() - self._specs_at > SPEC_TTL:
            self.forget()  # another process may have stored a calibration
        cached = self._specs.get(ref)
        if cached is not None:
            return cached
        name, pooling, size = parse_ref(ref)
        with self.db.one() as conn:
            if name in MODELS:
                spec = model_spec(name, pooling=pooling, input_size=size)
            else:
                row = custom_store.get(conn, name=name)
                if row is None:
                    raise InvalidInput(
                        f"unknown model {name!r}; built-in: {sorted(MODELS)}, or register"
                        " your own ONNX model",
                        code="unknown_model",
                    )
                spec = custom_spec(row)
                if (pooling and pooling != spec.pooling) or (size and size != spec.input_size):
                    raise InvalidInput(
                        f"{name} is registered as {spec.ref}", code="invalid_model_ref"
                    )
            fitted = store.calibration(conn, model=spec.ref)
        if fitted is not None:
            spec = replace(spec, calibration=fitted)
        with self._lock:
            self._specs[ref] = spec
            self._specs[spec.ref] = spec
        return spec

    def in_use(self, spec: ModelSpec) -> bool:
        """Whether the platform serves this model: some tenant's active or other space, the
        platform's models, or a registered ONNX encoder."""
        with self.db.one() as conn:
            return store.in_use(conn, ref=spec.ref, name=spec.name)

    def forget(self) -> None:
        """Drop cached specs (after a calibration is stored or a model registered)."""
        with self._lock:
            self._specs.clear()
            self._specs_at = time.monotonic()

    def save_calibration(self, ref: str, raw: float, samples: int) -> None:
        """Store a fitted calibration; every process picks it up within SPEC_TTL."""
        with self.db.tx() as conn:
            store.save_calibration(conn, model=ref, raw=raw, samples=samples)
        self.forget()


def custom_spec(row: dict[str, Any]) -> ModelSpec:
    """The ModelSpec of a registered ONNX encoder (its file's hash is its version, so a new
    file under the same name never shares a space with the old one)."""
    mean, std = tuple(row["mean"]), tuple(row["std"])
    return ModelSpec(
        name=row["name"],
        arch="onnx",
        variant=row["sha256"][:12],
        dim=int(row["dim"]),
        input_size=int(row["input_size"]),
        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
        std=(float(std[0]), float(std[1]), float(std[2])),
        weights_file=None,
        weights_url=None,
        pooling=str(row["pooling"]),
        version=row["sha256"][:8],
        onnx_path=str(row["path"]),
    )
