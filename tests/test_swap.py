"""The face-swap task (SPEC S5): a bring-your-own swapper with the FaceFusion signature through
the whole pipeline, images without faces, bad inputs, video tracking, the dlib backend on real
photos, the shipped models and the ``pyfill swap`` command."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
torch = pytest.importorskip("torch")

from pyfill.faces.align import alignment_matrix, invert_affine, template  # noqa: E402
from pyfill.faces.analysis import DetectedFace, FaceAnalyzer  # noqa: E402
from pyfill.faces.paste import face_mask  # noqa: E402
from pyfill.tasks.swap import FaceWarning, Swapper, swap  # noqa: E402

HAS_DLIB = importlib.util.find_spec("dlib") is not None and importlib.util.find_spec("face_recognition_models") is not None
needs_dlib = pytest.mark.skipif(not HAS_DLIB, reason="dlib / face_recognition_models not installed (pyfill[face])")

# landmarks relative to the red marker's centre
OFFSETS = np.array([[-20.0, -15.0], [20.0, -15.0], [0.0, 5.0], [-15.0, 25.0], [15.0, 25.0]])


class MarkerDetector:
    """A detector (the :class:`pyfill.faces.analysis.Detector` protocol) that finds pure red
    square markers (255, 0, 0) and puts five landmarks around each one's centre."""

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        red = (image[..., 0] == 255) & (image[..., 1] == 0) & (image[..., 2] == 0)
        count, labels = cv2.connectedComponents(red.astype(np.uint8))
        faces = []
        for i in range(1, count):
            ys, xs = np.nonzero(labels == i)
            c = np.array([xs.mean(), ys.mean()])
            lm = c + OFFSETS * (1.0 + 0.1 * i)
            faces.append(DetectedFace(np.array([*(lm.min(0) - 10), *(lm.max(0) + 10)]), lm, 1.0 / i))
        return faces


class TinyArcFace(torch.nn.Module):
    def __init__(self, length: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(3, length)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean(dim=(2, 3)))


class InvertingSwapper(torch.nn.Module):
    """The FaceFusion swapper signature: target (1, 3, 128, 128) in [0, 1] and source (1, D)
    in, one image out; this one returns the negative of the target."""

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        return (1.0 - target + 0.0 * source.mean()).clamp(0.0, 1.0)


def _export(module: torch.nn.Module, path: Path, inputs: tuple, names: list[str], outputs: list[str]) -> Path:
    torch.onnx.export(module, inputs, str(path), input_names=names, output_names=outputs, opset_version=17,
                      dynamo=False)
    return path


@pytest.fixture(scope="module")
def byo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("byo")
    return {
        "swapper": _export(InvertingSwapper(), d / "swapper.onnx", (torch.zeros(1, 3, 128, 128), torch.zeros(1, 16)),
                           ["target", "source"], ["output"]),
        "embedder": _export(TinyArcFace(), d / "arcface.onnx", (torch.zeros(1, 3, 112, 112),), ["data"], ["fc1"]),
        "embedder32": _export(TinyArcFace(32), d / "arcface32.onnx", (torch.zeros(1, 3, 112, 112),), ["data"], ["fc1"]),
    }


def scene(h: int = 240, w: int = 320, markers: tuple[tuple[int, int], ...] = ((160, 120),), seed: int = 0) -> np.ndarray:
    """A smooth, textured RGB image with a 6 x 6 red marker (a "face") at each (x, y)."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.uniform(40, 200, (h, w, 3)).astype(np.float32), (0, 0), 3.0)
    img = np.clip(base, 0, 254).astype(np.uint8)
    img[..., 0] = np.minimum(img[..., 0], 250)
    for x, y in markers:
        img[y - 3 : y + 3, x - 3 : x + 3] = (255, 0, 0)
    return img


def analyzer(paths: dict[str, Path]) -> FaceAnalyzer:
    from pyfill.faces.analysis import ArcFaceEmbedder

    return FaceAnalyzer(MarkerDetector(), ArcFaceEmbedder(paths["embedder"]))


# ---- a bring-your-own swapper through the pipeline -------------------------------------------
def test_a_bring_your_own_swapper_runs_through_the_pipeline(byo: dict[str, Path]) -> None:
    source, target = scene(seed=1), scene(seed=2)
    result = swap(source, target, model=byo["swapper"], embedder=byo["embedder"], analyzer=analyzer(byo),
                  colour_match=False)
    assert (result.faces_found, result.faces_swapped) == (1, 1)
    lm = MarkerDetector().detect(target)[0].landmarks
    m = alignment_matrix(lm, 128)
    weight = cv2.warpAffine(face_mask(128), invert_affine(m), (320, 240), flags=cv2.INTER_LINEAR)
    outside = weight == 0
    np.testing.assert_array_equal(result.image[outside], target[outside])
    # inside, the target blended with the swapper's output (its negative) by the warped mask
    t = target.astype(np.float64)
    expected = (1.0 - weight[..., None]) * t + weight[..., None] * (255.0 - t)
    inside = weight > 0
    inside[110:131, 150:171] = False  # the marker itself (sharp edges do not survive two warps)
    err = np.abs(result.image[inside] - expected[inside])
    assert inside.sum() > 3000 and np.median(err) <= 1.0 and err.max() <= 12


def test_a_foreign_swapper_needs_its_embedder(byo: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="pass embedder="):
        Swapper(scene(), model=byo["swapper"], analyzer=analyzer(byo))
    with pytest.raises(ValueError, match="32-d embeddings but swapper.onnx takes 16-d"):
        Swapper(scene(), model=byo["swapper"], embedder=byo["embedder32"], analyzer=analyzer(byo))


def test_a_model_that_is_not_a_swapper_is_refused(byo: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match=r"takes \(target crop, source embedding\)"):
        Swapper(scene(), model=byo["embedder"], embedder=byo["embedder"], analyzer=analyzer(byo))


# ---- images without faces, bad inputs ---------------------------------------------------------
def test_a_target_without_a_face_comes_back_unchanged_with_a_warning(byo: dict[str, Path]) -> None:
    target = scene(markers=())
    with pytest.warns(FaceWarning, match="no face found in the target image"):
        result = swap(scene(), target, model=byo["swapper"], embedder=byo["embedder"], analyzer=analyzer(byo))
    np.testing.assert_array_equal(result.image, target)
    assert (result.faces_found, result.faces_swapped) == (0, 0)
    assert result.warnings == ["no face found in the target image; it is returned unchanged"]


def test_a_source_without_a_face_is_an_error(byo: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="no face found in the source image"):
        swap(scene(markers=()), scene(), model=byo["swapper"], embedder=byo["embedder"], analyzer=analyzer(byo))


def test_several_source_faces_use_the_largest_with_a_warning(byo: dict[str, Path]) -> None:
    with pytest.warns(FaceWarning, match="2 faces in the source image; using the largest"):
        result = swap(scene(markers=((100, 100), (220, 150))), scene(), model=byo["swapper"],
                      embedder=byo["embedder"], analyzer=analyzer(byo))
    assert result.faces_swapped == 1 and "2 faces in the source image; using the largest" in result.warnings


def test_every_target_face_is_swapped(byo: dict[str, Path]) -> None:
    target = scene(h=300, w=420, markers=((110, 120), (300, 160)))
    result = swap(scene(), target, model=byo["swapper"], embedder=byo["embedder"], analyzer=analyzer(byo),
                  colour_match=False)
    assert (result.faces_found, result.faces_swapped) == (2, 2)
    for x, y in ((110, 130), (300, 170)):
        assert abs(int(result.image[y, x + 8, 1]) - (255 - int(target[y, x + 8, 1]))) <= 3


def test_gray_stays_gray_and_alpha_is_kept(byo: dict[str, Path]) -> None:
    kw = dict(model=byo["swapper"], embedder=byo["embedder"], analyzer=analyzer(byo))
    rgba = np.dstack([scene(), np.random.default_rng(0).integers(0, 256, (240, 320), dtype=np.uint8)])
    out = swap(scene(), rgba, **kw).image
    assert out.shape == rgba.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    assert (out[..., :3] != rgba[..., :3]).any()
    # a gray target has no red marker: nothing to swap, and it comes back as it was, still gray
    gray = cv2.cvtColor(scene(), cv2.COLOR_RGB2GRAY)
    with pytest.warns(FaceWarning, match="no face found"):
        result = swap(scene(), gray, **kw)
    assert result.image.shape == gray.shape
    np.testing.assert_array_equal(result.image, gray)


def test_bad_images_are_refused_with_a_clear_error(byo: dict[str, Path]) -> None:
    kw = dict(model=byo["swapper"], embedder=byo["embedder"], analyzer=analyzer(byo))
    with pytest.raises(TypeError, match="target: face swapping takes uint8 images, got float32"):
        swap(scene(), scene().astype(np.float32), **kw)
    with pytest.raises(ValueError, match=r"source: expected an \(H, W\) gray"):
        swap(np.zeros((10, 10, 2), np.uint8), scene(), **kw)
    with pytest.raises(TypeError, match="expected a NumPy array or a PIL image"):
        swap("face.jpg", scene(), **kw)
    with pytest.raises(FileNotFoundError, match="model file not found"):
        swap(scene(), scene(), model="no/such/swapper.onnx", embedder=byo["embedder"], analyzer=analyzer(byo))


# ---- video: detection every N frames, optical flow in between --------------------------------
def test_video_tracks_the_face_between_detections(byo: dict[str, Path]) -> None:
    swapper = Swapper(scene(), model=byo["swapper"], embedder=byo["embedder"], analyzer=analyzer(byo),
                      detect_every=4, smoothing=0.0)
    canvas = scene(h=280, w=420, markers=((200, 140),), seed=3)
    errors = []
    for k in range(8):
        dx, dy = 3 * k, k  # the whole scene moves left and up a little every frame
        frame = np.ascontiguousarray(canvas[20 + dy : 260 + dy, 40 + dx : 360 + dx])
        out = swapper([frame])[0]
        assert out.shape == frame.shape and (out != frame).any()
        truth = np.array([199.5 - 40 - dx, 139.5 - 20 - dy]) + OFFSETS * 1.1  # the 6 x 6 marker's centre
        errors.append(np.abs(swapper.tracked_landmarks[0] - truth).max())
    # detection frames (0 and 4) are exact; optical flow keeps the others within a pixel
    assert errors[0] < 1e-6 and errors[4] < 1e-6
    assert max(errors) < 1.0 and max(errors[1:4] + errors[5:]) > 0.0


def test_video_pipeline_swaps_every_frame_as_the_image_path_does(byo: dict[str, Path], tmp_path: Path) -> None:
    """``pyfill.video.process(..., "swap")`` on a lossless clip with a moving face: each output
    frame equals the image path's swap of that frame (detection on every frame, no smoothing)."""
    av = pytest.importorskip("av")
    from pyfill.video import process

    canvas = scene(h=280, w=420, markers=((200, 140),), seed=3)
    frames = [np.ascontiguousarray(canvas[20 + k : 260 + k, 40 + 3 * k : 360 + 3 * k]) for k in range(6)]
    src = tmp_path / "faces.mkv"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "bgr0"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode())
    options = {"source": scene(seed=1), "model": byo["swapper"], "embedder": byo["embedder"],
               "analyzer": analyzer(byo), "colour_match": False, "detect_every": 1, "smoothing": 0.0}
    report = process(src, tmp_path / "swapped.mkv", "swap", codec="ffv1", pix_fmt="bgr0",
                     task_options={k: v for k, v in options.items() if k != "model"}, model=str(byo["swapper"]))
    assert report.frames_out == 6
    with av.open(str(tmp_path / "swapped.mkv")) as container:
        got = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    image_path = Swapper(options["source"], model=byo["swapper"], embedder=byo["embedder"], analyzer=analyzer(byo),
                         colour_match=False)
    for frame, out_frame in zip(frames, got):
        expected = image_path.swap_image(frame).image
        assert (expected != frame).sum() > 1000
        np.testing.assert_array_equal(out_frame, expected)


# ---- the swapper runs on the Engine; restoration of the swapped face ---------------------------
def test_the_swapper_runs_on_the_engine_and_matches_onnx_runtime() -> None:
    """The shipped swapper through :class:`SwapModel` (the Engine, every CPU backend present)
    against the ONNX file run directly with ONNX Runtime and NumPy pre/post-processing."""
    import onnxruntime as ort

    from pyfill.engine.selection import probe_environment
    from pyfill.store import resolve_model
    from pyfill.tasks.swap import SwapModel

    rng = np.random.default_rng(0)
    crop = cv2.GaussianBlur(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8), (0, 0), 2.0)
    model = SwapModel("swap", backend="onnxruntime")
    emb = rng.normal(size=model.length).astype(np.float32)
    emb /= np.linalg.norm(emb)
    session = ort.InferenceSession(str(resolve_model("swap")), providers=["CPUExecutionProvider"])
    names = {i.name: i for i in session.get_inputs()}
    x = (crop.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
    y = session.run(None, {model.crop_name: x, model.embedding_name: emb[None]})[0][0]
    want = np.clip(np.rint(y.transpose(1, 2, 0) * 255.0), 0, 255).astype(np.uint8)
    assert set(names) == {model.crop_name, model.embedding_name}
    backends = ["onnxruntime"] + (["openvino"] if probe_environment("cpu").openvino else [])
    for backend in backends:
        got = SwapModel("swap", backend=backend)(crop, emb)
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 1, backend
    assert model.engine.info["backend"] == "onnxruntime" and not model.engine.info["foreign_model"]


def test_engine_takes_a_manifest_only_for_a_foreign_model(byo: dict[str, Path]) -> None:
    import pyfill
    from pyfill.tasks.swap import SwapModel, _foreign_swapper_manifest

    foreign = SwapModel(byo["swapper"])
    assert foreign.engine.info["foreign_model"] and (foreign.size, foreign.length) == (128, 16)
    crop = scene(128, 128, markers=())
    np.testing.assert_array_equal(foreign(crop, np.zeros(16, np.float32)), 255 - crop)  # the inverting swapper
    with pytest.raises(ValueError, match="has its own manifest"):
        pyfill.Engine("swap", manifest=_foreign_swapper_manifest(byo["swapper"]))
    with pytest.raises(TypeError, match="must be a pyfill.manifest.Manifest"):
        pyfill.Engine(byo["swapper"], manifest={"task": "swap"})  # type: ignore[arg-type]


class NearestX2(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")


class Negative(torch.nn.Module):
    """An image-to-image "restoration" that visibly changes every pixel: 1 - x."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 1.0 - x


def _image_model(module: torch.nn.Module, path: Path) -> Path:
    torch.onnx.export(module, (torch.zeros(1, 3, 64, 64),), str(path), input_names=["input"],
                      output_names=["output"], opset_version=17, dynamo=False,
                      dynamic_axes={"input": {2: "h", 3: "w"}, "output": {2: "h2", 3: "w2"}})
    return path


def test_swapped_faces_can_be_restored_before_paste_back(byo: dict[str, Path], tmp_path: Path) -> None:
    import pyfill

    source, target = scene(seed=1), scene(seed=2)
    kwargs = {"model": byo["swapper"], "embedder": byo["embedder"], "analyzer": analyzer(byo), "colour_match": False}
    crop = scene(128, 128, markers=())
    # the crop goes through the shipped restoration model as pyfill.restore would run it
    shipped = Swapper(source, restore="restore", **kwargs)
    np.testing.assert_array_equal(shipped.restored(crop), pyfill.restore(crop, tile=0))
    # a restoration that changes every pixel changes the pasted face and nothing else
    negative = _image_model(Negative(), tmp_path / "negative.onnx")
    plain = Swapper(source, backend="onnxruntime", **kwargs)
    restoring = Swapper(source, restore=negative, backend="onnxruntime", **kwargs)
    np.testing.assert_array_equal(restoring.restored(crop), 255 - crop)
    a, b = plain.swap_image(target).image, restoring.swap_image(target).image
    lm = MarkerDetector().detect(target)[0].landmarks
    weight = cv2.warpAffine(face_mask(128), invert_affine(alignment_matrix(lm, 128)), (320, 240),
                            flags=cv2.INTER_LINEAR)
    np.testing.assert_array_equal(a[weight == 0], b[weight == 0])  # nothing outside the face moves
    assert (a != b)[weight > 0.5].all(axis=-1).mean() > 0.9
    # an upscaler's result comes back to the crop size: nearest x2, then area / 2, is the crop itself
    x2 = _image_model(NearestX2(), tmp_path / "x2.onnx")
    exact = Swapper(source, restore=x2, backend="onnxruntime", **kwargs)  # fp32: no bf16 rounding
    np.testing.assert_array_equal(exact.restored(crop), crop)


# ---- dlib on real photos, the shipped models, the command line -------------------------------
@pytest.fixture(scope="module")
def dlib_analyzer() -> FaceAnalyzer:
    if not HAS_DLIB:
        pytest.skip("dlib / face_recognition_models not installed (pyfill[face])")
    return FaceAnalyzer.default()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    skimage_data = pytest.importorskip("skimage.data")
    return skimage_data.astronaut()


@needs_dlib
def test_dlib_finds_the_astronauts_face_and_its_landmarks(dlib_analyzer: FaceAnalyzer, astronaut: np.ndarray) -> None:
    faces = dlib_analyzer.detect(astronaut)
    assert len(faces) == 1  # the badge on the suit (dlib score 0.12) is below the default 0.3
    face = faces[0]
    x0, y0, x1, y1 = face.box
    lm = face.landmarks
    assert ((lm[:, 0] > x0) & (lm[:, 0] < x1) & (lm[:, 1] > y0) & (lm[:, 1] < y1)).all()
    assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]  # viewer's left first
    assert lm[:2, 1].max() < lm[2, 1] < lm[3:, 1].min()  # eyes above the nose tip above the mouth
    assert 30 < np.linalg.norm(lm[1] - lm[0]) < 60


@needs_dlib
def test_dlib_embedding_knows_a_mirror_image_is_the_same_person(dlib_analyzer: FaceAnalyzer,
                                                                 astronaut: np.ndarray) -> None:
    mirrored = np.ascontiguousarray(astronaut[:, ::-1])
    e1 = dlib_analyzer.embed(astronaut, dlib_analyzer.detect(astronaut)[0])
    e2 = dlib_analyzer.embed(mirrored, dlib_analyzer.detect(mirrored)[0])
    assert e1.shape == (128,)
    assert dlib_analyzer.distance(e1, e2) < dlib_analyzer.embedder.same_person


@needs_dlib
def test_dlib_photo_without_a_face_comes_back_unchanged(dlib_analyzer: FaceAnalyzer, astronaut: np.ndarray,
                                                        byo: dict[str, Path]) -> None:
    coffee = pytest.importorskip("skimage.data").coffee()
    with pytest.warns(FaceWarning, match="no face found in the target image"):
        result = swap(astronaut, coffee, model=byo["swapper"], embedder=byo["embedder"], analyzer=dlib_analyzer)
    np.testing.assert_array_equal(result.image, coffee)


@needs_dlib
def test_the_shipped_models_swap_a_photo(dlib_analyzer: FaceAnalyzer, astronaut: np.ndarray) -> None:
    target = np.ascontiguousarray(astronaut[:, ::-1])
    result = swap(astronaut, target, analyzer=dlib_analyzer)
    assert (result.faces_found, result.faces_swapped) == (1, 1)
    changed = (result.image != target).any(axis=-1)
    ys, xs = np.nonzero(changed)
    x0, y0, x1, y1 = dlib_analyzer.detect(target)[0].box
    # only the face region changed: every changed pixel lies near the detected face
    assert changed.any() and xs.min() > x0 - 40 and xs.max() < x1 + 40 and ys.min() > y0 - 60 and ys.max() < y1 + 60


@needs_dlib
def test_reference_selects_the_faces_of_one_person(dlib_analyzer: FaceAnalyzer, astronaut: np.ndarray,
                                                   byo: dict[str, Path]) -> None:
    with pytest.warns(FaceWarning, match="none of the 1 faces matches the reference face"):
        other = swap(astronaut, astronaut, model=byo["swapper"], embedder=byo["embedder"],
                     analyzer=dlib_analyzer, reference=_hopper())
    np.testing.assert_array_equal(other.image, astronaut)
    same = swap(astronaut, astronaut, model=byo["swapper"], embedder=byo["embedder"], analyzer=dlib_analyzer,
                reference=np.ascontiguousarray(astronaut[:, ::-1]))
    assert same.faces_swapped == 1


def _hopper() -> np.ndarray:
    """Matplotlib's sample photo of Grace Hopper (evaluation only; never training data)."""
    cbook = pytest.importorskip("matplotlib.cbook")
    from PIL import Image

    return np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))


def _run_cli(argv: list[str]) -> int:
    from pyfill.faces import cli

    parser = argparse.ArgumentParser(prog="pyfill")
    sub = parser.add_subparsers(dest="command")
    cli.add_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


@needs_dlib
def test_cli_swaps_a_folder_and_counts_images_without_a_face(tmp_path: Path, astronaut: np.ndarray,
                                                             byo: dict[str, Path],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    coffee = pytest.importorskip("skimage.data").coffee()
    (tmp_path / "in").mkdir()
    Image.fromarray(astronaut).save(tmp_path / "face.png")
    Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).save(tmp_path / "in" / "mirrored.png")
    Image.fromarray(coffee).save(tmp_path / "in" / "coffee.png")
    status = _run_cli(["swap", "--source", str(tmp_path / "face.png"), str(tmp_path / "in"), "-o",
                       str(tmp_path / "out"), "--model", str(byo["swapper"]), "--embedder", str(byo["embedder"])])
    captured = capsys.readouterr()
    assert status == 0
    assert "swapped 1 faces in 1 of 2 images" in captured.out and "1 without a face" in captured.out
    assert "no face found in" in captured.err and "coffee.png" in captured.err
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "coffee.png")), coffee)
    plain = np.asarray(Image.open(tmp_path / "out" / "mirrored.png"))
    assert (plain != astronaut[:, ::-1]).any()
    # --restore MODEL runs a restoration model on the swapped face: only the face changes
    negative = _image_model(Negative(), tmp_path / "negative.onnx")
    status = _run_cli(["swap", "--source", str(tmp_path / "face.png"), str(tmp_path / "in" / "mirrored.png"), "-o",
                       str(tmp_path / "restored"), "--model", str(byo["swapper"]), "--embedder", str(byo["embedder"]),
                       "--restore", "--restore-model", str(negative)])
    assert status == 0
    restored = np.asarray(Image.open(tmp_path / "restored" / "mirrored.png"))
    changed = (restored != plain).any(axis=-1)
    ys, xs = np.nonzero((plain != astronaut[:, ::-1]).any(axis=-1))  # the pasted face region
    box = np.zeros_like(changed)
    box[ys.min():ys.max() + 1, xs.min():xs.max() + 1] = True
    assert changed.any() and not (changed & ~box).any()


@needs_dlib
def test_cli_source_without_a_face_is_a_clear_error(tmp_path: Path, byo: dict[str, Path]) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "blank.png")
    with pytest.raises(ValueError, match="no face found in the source image"):
        _run_cli(["swap", "--source", str(tmp_path / "blank.png"), str(tmp_path / "blank.png"), "-o",
                  str(tmp_path / "out"), "--model", str(byo["swapper"]), "--embedder", str(byo["embedder"])])


# ---- found by mutation testing (tools/mutation.py swap) ------------------------------------------
def test_a_foreign_swappers_derived_manifest_in_full(byo: dict[str, Path], tmp_path: Path) -> None:
    """Fixed-side swappers keep their side, dynamic ones get 128; the embedding's length is
    declared; no tiling, no fp16; a dynamic embedding length is refused with its message."""
    from pyfill.tasks.swap import _foreign_swapper_manifest

    m = _foreign_swapper_manifest(byo["swapper"])
    assert (m.task, m.family, m.config) == ("swap", "foreign-onnx", {"source": "swapper.onnx"})
    assert [(s.name, s.kind, s.channels, s.value_range) for s in m.inputs] == [
        ("target", "image", 3, (0.0, 1.0)), ("source", "embedding", 1, (-1.0, 1.0))]
    assert (m.inputs[1].length, m.inputs[1].shape) == (16, [16])
    assert (m.size.fixed, m.size.resize, m.tiling.supported, m.fp16) == ((128, 128), "stretch", False, False)
    torch.onnx.export(InvertingSwapper(), (torch.zeros(1, 3, 96, 96), torch.zeros(1, 16)),
                      str(tmp_path / "dynamic.onnx"), input_names=["target", "source"], output_names=["output"],
                      opset_version=17, dynamo=False, dynamic_axes={"target": {2: "s", 3: "s"}, "output": {2: "s", 3: "s"}})
    assert _foreign_swapper_manifest(tmp_path / "dynamic.onnx").size.fixed == (128, 128)
    torch.onnx.export(InvertingSwapper(), (torch.zeros(1, 3, 96, 96), torch.zeros(1, 16)),
                      str(tmp_path / "free-length.onnx"), input_names=["target", "source"], output_names=["output"],
                      opset_version=17, dynamo=False, dynamic_axes={"source": {1: "d"}})
    with pytest.raises(ValueError, match=r"free-length\.onnx: the embedding input 'source' has no fixed length "
                                         r"\(\[1, 'd'\]\)$"):
        _foreign_swapper_manifest(tmp_path / "free-length.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match=r"broken\.onnx: not a readable ONNX swapper model"):
        _foreign_swapper_manifest(tmp_path / "broken.onnx")


def test_warnings_point_at_the_callers_line(byo: dict[str, Path]) -> None:
    swapper = Swapper(scene(), model=byo["swapper"], embedder=byo["embedder"], analyzer=analyzer(byo))
    with pytest.warns(FaceWarning) as record:
        swapper.swap_image(scene(markers=()))
    assert [Path(w.filename).name for w in record] == [Path(__file__).name]


def test_video_frames_are_checked_and_named(byo: dict[str, Path]) -> None:
    swapper = Swapper(scene(), model=byo["swapper"], embedder=byo["embedder"], analyzer=analyzer(byo))
    with pytest.raises(TypeError, match=r"^frame must be uint8, got float32$"):
        swapper([scene().astype(np.float32)])


def test_without_opencv_the_restored_crop_and_the_video_path_name_the_extra(byo: dict[str, Path], monkeypatch) -> None:
    from pyfill._core import MissingExtraError

    swapper = Swapper(scene(), model=byo["swapper"], embedder=byo["embedder"], analyzer=analyzer(byo),
                      restore=_image_model(NearestX2(), Path(byo["swapper"]).with_name("x2.onnx")))
    assert swapper.restorer.tile == 0  # a crop is restored whole, never in tiles
    crop = scene(64, 64, markers=())
    monkeypatch.setitem(sys.modules, "cv2", None)
    with pytest.raises(MissingExtraError, match=r"pyfill\[face\]"):
        swapper.restored(crop)  # an x2 model's output is brought back with OpenCV
    with pytest.raises(MissingExtraError, match=r"pyfill\[face\]"):
        swapper([scene()])


def test_swapper_options_reach_the_swap(byo: dict[str, Path]) -> None:
    """backend, colour_match and feather each change what runs or what comes out."""
    kw = {"model": byo["swapper"], "embedder": byo["embedder"], "analyzer": analyzer(byo)}
    source, target = scene(seed=1), scene(seed=2)
    for backend in ("onnxruntime", "openvino"):
        assert Swapper(source, backend=backend, **kw).model.engine.info["backend"] == backend
    plain = Swapper(source, colour_match=False, **kw).swap_image(target).image
    matched = Swapper(source, colour_match=True, **kw).swap_image(target).image
    soft = Swapper(source, colour_match=False, feather=0.3, **kw).swap_image(target).image
    assert np.abs(matched.astype(int) - plain.astype(int)).max() > 10
    assert np.abs(soft.astype(int) - plain.astype(int)).max() > 10


def test_source_and_reference_errors_name_the_image(byo: dict[str, Path]) -> None:
    kw = {"model": byo["swapper"], "embedder": byo["embedder"], "analyzer": analyzer(byo)}
    with pytest.raises(TypeError, match=r"^source: face swapping takes uint8 images, got float32$"):
        Swapper(scene().astype(np.float32), **kw)
    with pytest.raises(TypeError, match=r"^reference: face swapping takes uint8 images, got float32$"):
        Swapper(scene(), reference=scene().astype(np.float32), **kw)
    with pytest.raises(ValueError, match=r"^no face found in the reference image$"):
        Swapper(scene(), reference=scene(markers=()), **kw)


def _swap_with_manifest(byo: dict[str, Path], path: Path, inputs: list, fixed: tuple[int, int] | None) -> Path:
    """The inverting swapper's ONNX file with a pyfill manifest (task swap) in its metadata."""
    import onnx

    from pyfill.manifest import ONNX_METADATA_KEY, Manifest, SizeRequirements, TensorSpec, Tiling

    m = Manifest(task="swap", family="inverting", config={}, inputs=inputs,
                 outputs=[TensorSpec("output", "image", 3, "rgb", (0.0, 1.0))],
                 size=SizeRequirements(fixed=fixed, resize="stretch") if fixed else SizeRequirements(multiple_of=1),
                 tiling=Tiling(supported=False))
    model = onnx.load(str(byo["swapper"]))
    onnx.helper.set_model_props(model, {ONNX_METADATA_KEY: m.to_json()})
    onnx.save(model, str(path))
    return path


def test_a_pyfill_swapper_may_declare_its_embedding_as_a_vector_and_needs_no_fixed_size(byo: dict[str, Path],
                                                                                         tmp_path: Path) -> None:
    from pyfill.manifest import TensorSpec
    from pyfill.tasks.swap import SwapModel

    crop = TensorSpec("target", "image", 3, "rgb", (0.0, 1.0))
    for kind in ("embedding", "vector"):
        source = TensorSpec("source", kind, 1, "none", (-1.0, 1.0), length=16, shape=[16])
        for fixed, size in (((128, 128), 128), (None, 128)):
            model = SwapModel(_swap_with_manifest(byo, tmp_path / f"{kind}-{size}.onnx", [crop, source], fixed),
                              backend="onnxruntime")
            assert (model.size, model.length, model.embedding_name) == (size, 16, "source")
    extra = TensorSpec("strength", "tensor", shape=[1])
    path = _swap_with_manifest(byo, tmp_path / "three.onnx", [crop, TensorSpec("source", "embedding", length=16,
                                                                                shape=[16]), extra], (128, 128))
    with pytest.raises(ValueError, match="a swapper takes one image crop and one embedding and returns one image$"):
        SwapModel(path, backend="onnxruntime")
