"""Bring your own encoder: an operator registers an ONNX image model (a file path or a URL)
under a name, with its input size, mean/std, output dimension and pooling (done inside the
network, or avg/gem applied to its feature map). It is validated before it is stored: loaded
by ONNX Runtime and run on a probe image, its output checked for shape and finiteness. It is
then a migration target like the built-in models.

The file is copied under ``<data_dir>/models/custom/`` named by its hash; its source and hash
are kept, so an instance that lacks the file fetches it again and checks it is the same.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from shared.auth.principal import Principal
from shared.db import Database
from shared.errors import Conflict, InvalidInput, TransientError, Unprocessable
from shared.features.registry import MODELS
from shared.model_catalog import ModelCatalog, custom_spec
from shared.store import custom_models as store

log = logging.getLogger(__name__)
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MAX_MODEL_BYTES = 1 << 30


@dataclass(frozen=True)
class Registration:
    name: str
    source: str  # a local path or an http(s) URL
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dim: int
    pooling: str = "inside"  # inside | avg | gem


def read_source(source: str, *, timeout: float = 60.0) -> bytes:
    """The model bytes from a path or an http(s) URL (bounded in size)."""
    if source.startswith(("http://", "https://")):
        try:
            with httpx.stream("GET", source, timeout=timeout, follow_redirects=True) as r:
                if r.status_code != 200:
                    raise InvalidInput(
                        f"fetching the model answered {r.status_code}", code="model_fetch_failed"
                    )
                chunks, total = [], 0
                for chunk in r.iter_bytes():
                    total += len(chunk)
                    if total > MAX_MODEL_BYTES:
                        raise InvalidInput("the model file is over 1 GiB", code="model_too_large")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise InvalidInput(f"cannot fetch the model: {exc}", code="model_fetch_failed") from exc
    path = Path(source)
    if not path.is_file():
        raise InvalidInput(f"no model file at {source}", code="model_file_not_found")
    if path.stat().st_size > MAX_MODEL_BYTES:
        raise InvalidInput("the model file is over 1 GiB", code="model_too_large")
    return path.read_bytes()


def probe_image(size: int) -> np.ndarray:
    """A deterministic, textured probe image (H×W×3 uint8)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    img = np.stack([x, y, (x * y * 7) % 1.0], axis=-1) * 255
    return img.astype(np.uint8)


def validate(data: bytes, reg: Registration) -> None:
    """Load the model and run it on a probe image: a clear 422 for a file ONNX Runtime cannot
    load, an input it does not take, a wrong output dimension or non-finite output."""
    import onnxruntime as ort

    from shared.features.onnx_backend import finish

    try:
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - any load failure is a bad file
        raise Unprocessable(
            f"not a loadable ONNX model: {str(exc)[:200]}", code="invalid_model_file"
        ) from None
    spec = custom_spec(
        {
            "name": reg.name,
            "sha256": "0" * 12,
            "dim": reg.dim,
            "input_size": reg.input_size,
            "mean": reg.mean,
            "std": reg.std,
            "pooling": reg.pooling,
            "path": "",
        }
    )
    mean = (np.array(spec.mean, np.float32) * 255).reshape(3, 1, 1)
    std = (np.array(spec.std, np.float32) * 255).reshape(3, 1, 1)
    x = (probe_image(reg.input_size).transpose(2, 0, 1).astype(np.float32) - mean) / std
    try:
        out = session.run(None, {session.get_inputs()[0].name: x[None]})[0]
    except Exception as exc:  # noqa: BLE001
        raise Unprocessable(
            f"the model does not run on a 1×3×{reg.input_size}×{reg.input_size} image:"
            f" {str(exc)[:200]}",
            code="model_input_mismatch",
        ) from None
    out = np.asarray(out)
    pooled = reg.pooling == "inside"
    expected = "N×dim" if pooled else "N×dim×H×W"
    if out.ndim != (2 if pooled else 4) or out.shape[0] != 1 or out.shape[1] != reg.dim:
        raise Unprocessable(
            f"the model outputs shape {list(out.shape)}; expected {expected} with dim {reg.dim}",
            code="model_dimension_mismatch",
        )
    if not np.all(np.isfinite(out)):
        raise Unprocessable("the model's output is not finite", code="model_output_not_finite")
    vec = finish(out[0].astype(np.float32), spec)
    if not np.all(np.isfinite(vec)) or float(np.linalg.norm(vec)) == 0.0:
        raise Unprocessable("the model outputs a zero vector", code="model_output_not_finite")


class CustomModels:
    def __init__(self, db: Database, models: ModelCatalog, root: Path) -> None:
        self.db, self.models, self.root = db, models, root

    def register(self, principal: Principal, reg: Registration) -> dict[str, Any]:
        principal.require_system_admin()
        if not NAME_RE.match(reg.name):
            raise InvalidInput(
                "model names are lowercase letters, digits, '.', '_' and '-'",
                code="invalid_model_name",
            )
        if reg.name in MODELS:
            raise Conflict(f"{reg.name} is a built-in model", code="model_exists")
        if reg.pooling not in ("inside", "avg", "gem"):
            raise InvalidInput("pooling is inside, avg or gem", code="invalid_pooling")
        if not 32 <= reg.input_size <= 1024 or not 8 <= reg.dim <= 8192:
            raise InvalidInput("inputSize 32..1024, dim 8..8192", code="invalid_model_shape")
        if any(s <= 0 for s in reg.std):
            raise InvalidInput("std values must be positive", code="invalid_model_std")
        data = read_source(reg.source)
        validate(data, reg)
        sha = hashlib.sha256(data).hexdigest()
        path = self.root / f"{reg.name}-{sha[:16]}.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        with self.db.tx() as conn:
            if store.get(conn, name=reg.name) is not None:
                raise Conflict(f"a model named {reg.name} is registered", code="model_exists")
            store.insert(
                conn,
                name=reg.name,
                source=reg.source,
                path=str(path),
                sha256=sha,
                dim=reg.dim,
                input_size=reg.input_size,
                mean=list(reg.mean),
                std=list(reg.std),
                pooling=reg.pooling,
            )
        self.models.forget()
        spec = self.models.spec(reg.name)
        log.info("registered model %s (%s, %d-d)", spec.ref, sha[:12], spec.dim)
        return self.describe(spec.name)

    def describe(self, name: str) -> dict[str, Any]:
        spec = self.models.spec(name)
        return {
            "name": spec.name,
            "ref": spec.ref,
            "dimension": spec.dim,
            "inputSize": spec.input_size,
            "pooling": spec.pooling,
            "sha256": spec.variant,
            "space": spec.space_name,
            "similarity": "calibrated" if spec.calibration is not None else "raw cosine",
        }

    def list(self, principal: Principal) -> list[dict[str, Any]]:
        principal.require_system_admin()
        with self.db.tx() as conn:
            names = store.names(conn)
        return [self.describe(name) for name in names]

    def ensure_file(self, name: str) -> None:
        """An instance without the file (another node) fetches it from its source again and
        checks it is the registered one."""
        with self.db.tx() as conn:
            row = store.get(conn, name=name)
        if row is None or Path(row["path"]).is_file():
            return
        data = read_source(row["source"])
        if hashlib.sha256(data).hexdigest() != row["sha256"]:
            raise TransientError(f"{row['source']} no longer holds the registered model")
        path = Path(row["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
