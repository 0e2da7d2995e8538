"""Model references, feature-map pooling of operators' ONNX models, calibration fitting,
custom model validation — no database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.calibration import fit_raw_threshold
from shared.custom_models import Registration, read_source, validate
from shared.errors import InvalidInput, Unprocessable
from shared.features.onnx_backend import finish
from shared.features.registry import model_spec, parse_ref
from shared.model_spaces import custom_spec


def test_refs_parse_and_name_their_space() -> None:
    assert parse_ref("efficientnet-lite0") == ("efficientnet-lite0", None, None)
    assert parse_ref("efficientnet-lite0:gem:320") == ("efficientnet-lite0", "gem", 320)
    assert parse_ref("mine::256") == ("mine", None, 256)
    for bad in ("", ":gem", "a:b:c:d", "a:gem:x", "a:gem:9999"):
        with pytest.raises(InvalidInput):
            parse_ref(bad)
    spec = model_spec("efficientnet-lite0", pooling="gem", input_size=320)
    assert spec.ref == "efficientnet-lite0:gem:320"
    assert spec.space_name == "images_efficientnet_lite0_gem_320_v1"
    assert spec.calibration is not None
    assert model_spec("efficientnet-lite0", input_size=288).calibration is None  # not fitted


def test_feature_maps_are_pooled_and_every_vector_normalised() -> None:
    spec = custom_spec(
        {
            "name": "m",
            "sha256": "ab" * 32,
            "dim": 4,
            "input_size": 64,
            "mean": [0.5] * 3,
            "std": [0.5] * 3,
            "pooling": "avg",
            "path": "/x.onnx",
        }
    )
    fmap = np.arange(4 * 2 * 2, dtype=np.float32).reshape(4, 2, 2)
    v = finish(fmap, spec)
    assert v.shape == (4,) and abs(float(np.linalg.norm(v)) - 1) < 1e-6
    expect = fmap.mean(axis=(1, 2))
    assert np.allclose(v, expect / np.linalg.norm(expect))
    assert spec.version == "abababab" and spec.ref == "m:avg:64"


def test_calibration_is_the_lowest_raw_cosine_with_the_precision() -> None:
    # Three queries; each matches its own original at 0.8; one impostor pair scores 0.6.
    sims = np.array([[0.8, 0.1, 0.6], [0.2, 0.8, 0.1], [0.1, 0.2, 0.8]])
    target = np.array([0, 1, 2])
    assert fit_raw_threshold(sims, target) == pytest.approx(0.605, abs=0.006)


def test_bad_models_are_refused_clearly(tmp_path: Path) -> None:
    reg = Registration(name="x", source="", input_size=64, mean=(0.5,) * 3, std=(0.5,) * 3, dim=8)
    with pytest.raises(Unprocessable) as e:
        validate(b"definitely not onnx", reg)
    assert e.value.code == "invalid_model_file"
    with pytest.raises(InvalidInput) as e2:
        read_source(str(tmp_path / "missing.onnx"))
    assert e2.value.code == "model_file_not_found"


@pytest.mark.parametrize("size", ["²", "٣٢٠", "9" * 5000, "0320x"])
def test_a_size_that_is_not_plain_digits_is_a_4xx(size: str) -> None:
    """str.isdigit() accepts superscripts (int() then raised: a 500) and 5,000-digit strings
    (past int()'s digit limit)."""
    with pytest.raises(InvalidInput) as e:
        parse_ref(f"efficientnet-lite0:gem:{size}")
    assert e.value.code == "invalid_input_size"
