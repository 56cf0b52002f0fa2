"""Face analysis (SPEC S5): the procedural face renderer's exact triplets and landmarks,
similarity alignment and its inverse, paste-back, and the bring-your-own ONNX detector and
embedder conventions (tiny models built here with torch)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: the installed pyfill stays first

from pyfill.faces import align as A  # noqa: E402
from pyfill.faces.analysis import ArcFaceEmbedder, DetectedFace, ScrfdDetector, check_rgb  # noqa: E402
from pyfill.faces.paste import face_mask, match_colours, paste_back  # noqa: E402
from training import faces as FR  # noqa: E402


# ---- the renderer ----------------------------------------------------------------------------
def test_every_parameter_has_a_documented_range_and_samples_stay_inside() -> None:
    rng = np.random.default_rng(0)
    for cls, sample in ((FR.Identity, FR.sample_identity), (FR.Attributes, FR.sample_attributes)):
        ranges = FR.parameter_ranges(cls)
        for f in dataclasses.fields(cls):
            assert f.metadata["doc"], f.name
            lo, hi = ranges[f.name]
            assert lo < hi and lo <= f.default <= hi, f.name
        for _ in range(20):
            p = sample(rng)
            for name, (lo, hi) in ranges.items():
                assert lo <= getattr(p, name) <= hi, name


def test_triplets_are_exact() -> None:
    t = FR.triplet(np.random.default_rng(3), 96)
    assert t.target.identity == t.source.identity
    assert t.target.attributes == t.first.attributes
    assert t.source.identity != t.first.identity and t.source.attributes != t.first.attributes
    # T is what rendering S's identity under F's attributes gives, pixel for pixel
    again = FR.render(t.source.identity, t.first.attributes, 96)
    np.testing.assert_array_equal(again.image, t.target.image)
    np.testing.assert_array_equal(again.landmarks, t.target.landmarks)
    assert not np.array_equal(t.source.image, t.target.image)


def test_frontal_landmarks_match_the_parameters() -> None:
    ident = FR.Identity()
    attrs = FR.Attributes(yaw=0.0, pitch=0.0, roll=0.0, shift_x=0.0, shift_y=0.0, smile=0.0)
    size = 128
    lm = FR.render(ident, attrs, size).landmarks
    ppu = attrs.scale * size / 2
    centre = (size - 1) / 2
    # eyes: symmetric, eye_spacing apart, at eye_height
    np.testing.assert_allclose(lm[1, 0] - lm[0, 0], ident.eye_spacing * ppu, atol=1e-9)
    np.testing.assert_allclose(lm[:2, 1], centre + ident.eye_height * ppu, atol=1e-9)
    np.testing.assert_allclose(lm[2], [centre, centre + (ident.eye_height + ident.nose_length) * ppu], atol=1e-9)
    mouth_y = centre + (ident.eye_height + ident.nose_length + ident.mouth_drop) * ppu
    np.testing.assert_allclose(lm[3:, 1], mouth_y, atol=1e-9)
    np.testing.assert_allclose(lm[4, 0] - lm[3, 0], ident.mouth_width * ppu, atol=1e-9)


def test_roll_rotates_the_landmarks_about_the_face_centre() -> None:
    ident, size = FR.Identity(), 128
    flat = FR.render(ident, FR.Attributes(roll=0.0), size).landmarks
    rolled = FR.render(ident, FR.Attributes(roll=15.0), size).landmarks
    c, r = (size - 1) / 2, np.radians(15.0)
    rot = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
    np.testing.assert_allclose(rolled, (flat - c) @ rot.T + c, atol=1e-9)


@pytest.mark.parametrize("yaw", [-20.0, 0.0, 20.0])
def test_eye_landmarks_sit_on_the_rendered_pupils(yaw: float) -> None:
    ident = FR.Identity(eye_size=0.09, iris_hue=1.0)
    attrs = FR.Attributes(yaw=yaw, eye_open=1.0, glasses=0, light_elevation=30.0)
    face = FR.render(ident, attrs, 192)
    for x, y in face.landmarks[:2]:
        pupil = face.image[int(round(y)), int(round(x))].astype(int)
        skin = face.image[int(round(y)) + 25, int(round(x))].astype(int)
        assert pupil.sum() < 90 and pupil.sum() < skin.sum() / 3, (pupil, skin)


def test_rendering_into_an_aligned_crop_equals_warping_the_render() -> None:
    rng = np.random.default_rng(5)
    ident, attrs = FR.sample_identity(rng), FR.sample_attributes(rng)
    full = FR.render(ident, attrs, 256)
    crop = FR.render(ident, attrs, 256, A.template(128), 128)
    m = A.alignment_matrix(full.landmarks, 128)
    np.testing.assert_allclose(crop.landmarks, A.apply_affine(m, full.landmarks), atol=1e-9)
    warped = cv2.warpAffine(full.image, m, (128, 128), flags=cv2.INTER_LINEAR)
    face = crop.mask > 0.99
    diff = np.abs(warped.astype(int) - crop.image.astype(int))[face]
    assert face.mean() > 0.3 and diff.mean() < 4.0


# ---- alignment -------------------------------------------------------------------------------
def test_similarity_transform_recovers_a_known_transform() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -40.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = A.similarity_transform(src, src @ rot.T + shift)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)
    np.testing.assert_allclose(A.invert_affine(m) @ np.append(m[:, 2], 1.0), [0.0, 0.0], atol=1e-9)


def test_similarity_transform_agrees_with_opencv_on_noisy_points() -> None:
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 100, (40, 2))
    dst = src @ np.array([[0.9, -0.4], [0.4, 0.9]]).T + 5 + rng.normal(0, 0.5, src.shape)
    ours = A.similarity_transform(src, dst)
    theirs, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    np.testing.assert_allclose(ours, theirs, atol=0.05)


def test_similarity_transform_refuses_bad_points() -> None:
    with pytest.raises(ValueError, match=r"\(N, 2\) array"):
        A.similarity_transform(np.zeros((5, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="coincide"):
        A.similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="NaN"):
        A.alignment_matrix(np.full((5, 2), np.nan), 112)
    with pytest.raises(ValueError, match="five landmarks"):
        A.alignment_matrix(np.arange(8.0).reshape(4, 2), 112)


def _dots(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    """A black RGB image with a small bright blob at each point."""
    img = np.zeros((*shape, 3), np.float32)
    ys, xs = np.mgrid[0 : shape[0], 0 : shape[1]]
    for x, y in points:
        img += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * 2.0**2))[..., None]
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def _centroids(img: np.ndarray, near: np.ndarray, radius: int = 6) -> np.ndarray:
    """Intensity centroids of the blobs near the given points (measured, not computed)."""
    g = img[..., 0].astype(np.float64)
    out = []
    for x, y in near:
        x0, y0 = int(round(x)) - radius, int(round(y)) - radius
        win = g[max(y0, 0) : y0 + 2 * radius + 1, max(x0, 0) : x0 + 2 * radius + 1]
        ys, xs = np.mgrid[0 : win.shape[0], 0 : win.shape[1]]
        out.append([(xs * win).sum() / win.sum() + max(x0, 0), (ys * win).sum() / win.sum() + max(y0, 0)])
    return np.array(out)


def test_alignment_round_trip_keeps_landmarks_within_a_pixel() -> None:
    landmarks = np.array([[180.3, 201.7], [251.2, 190.4], [220.8, 240.1], [192.6, 281.9], [250.4, 274.3]])
    image = _dots((400, 420), landmarks)
    crop, m = A.align_face(image, landmarks, 112)
    in_crop = _centroids(crop, A.apply_affine(m, landmarks))
    assert np.abs(in_crop - A.apply_affine(m, landmarks)).max() < 1.0
    # the landmarks land near ArcFace's template (a similarity cannot fit five points exactly)
    assert np.abs(in_crop - A.ARCFACE_112).max() < 6.0
    back = cv2.warpAffine(crop, A.invert_affine(m), (420, 400), flags=cv2.INTER_LINEAR)
    assert np.abs(_centroids(back, landmarks) - landmarks).max() < 1.0


# ---- paste-back ------------------------------------------------------------------------------
def test_paste_back_leaves_every_pixel_outside_the_mask_untouched() -> None:
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    landmarks = np.array([[140.0, 100.0], [180.0, 98.0], [160.0, 125.0], [145.0, 150.0], [177.0, 149.0]])
    crop = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    m = A.alignment_matrix(landmarks, 128)
    out = paste_back(image, crop, m)
    support = cv2.warpAffine(face_mask(128), A.invert_affine(m), (320, 240), flags=cv2.INTER_LINEAR)
    outside = support == 0
    assert outside.mean() > 0.6
    np.testing.assert_array_equal(out[outside], image[outside])
    assert (out[support > 0.999] != image[support > 0.999]).any()


def test_paste_back_puts_the_crop_where_the_mask_is_full() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    landmarks = A.template(128) * 0.9 + 30.0
    crop = np.full((128, 128, 3), 200, np.uint8)
    out = paste_back(image, crop, A.alignment_matrix(landmarks, 128))
    nose = np.rint(landmarks[2]).astype(int)
    np.testing.assert_array_equal(out[nose[1], nose[0]], [200, 200, 200])


def test_colour_matching_moves_mean_and_spread_inside_the_mask() -> None:
    rng = np.random.default_rng(6)
    swapped = rng.uniform(0, 100, (64, 64, 3)).astype(np.float32)
    original = rng.uniform(100, 250, (64, 64, 3)).astype(np.float32)
    mask = np.zeros((64, 64), np.float32)
    mask[16:48, 16:48] = 1.0
    out = match_colours(swapped, original, mask)
    inside = mask > 0
    np.testing.assert_allclose(out[inside].mean(0), original[inside].mean(0), rtol=1e-4)
    np.testing.assert_allclose(out[inside].std(0), original[inside].std(0), rtol=1e-4)


def test_paste_back_refuses_bad_crops() -> None:
    image = np.zeros((50, 50, 3), np.uint8)
    with pytest.raises(ValueError, match="square uint8"):
        paste_back(image, np.zeros((64, 32, 3), np.uint8), np.eye(2, 3))
    with pytest.raises(ValueError, match="original_crop"):
        paste_back(image, np.zeros((64, 64, 3), np.uint8), np.eye(2, 3), colour_match=True)


def test_check_rgb_names_the_problem() -> None:
    with pytest.raises(TypeError, match="uint8"):
        check_rgb(np.zeros((20, 20, 3), np.float32))
    with pytest.raises(ValueError, match=r"RGB \(H, W, 3\)"):
        check_rgb(np.zeros((20, 20), np.uint8))


# ---- bring-your-own ONNX conventions ---------------------------------------------------------
torch = pytest.importorskip("torch")

SCRFD_SIZE = 128
# one face, on stride 16's anchor 1 at column 3, row 4 (anchor centre (48, 64) in the 128 square)
FACE_STRIDE, FACE_COL, FACE_ROW, FACE_ANCHOR = 16, 3, 4, 1
FACE_DIST = np.array([2.0, 3.0, 2.5, 3.5])  # left, top, right, bottom, in strides
FACE_KPS = np.array([[-1.0, -1.0], [1.0, -1.1], [0.1, 0.3], [-0.8, 1.5], [0.9, 1.4]])  # in strides


class TinyScrfd(torch.nn.Module):
    """Outputs of an SCRFD-style detector that always sees the face above (scores, boxes, kps for
    strides 8, 16, 32; two anchors per location); the input only enters as zero times its mean."""

    def __init__(self, score: float = 0.9) -> None:
        super().__init__()
        outs = []
        for kind in ("score", "box", "kps"):
            for stride in (8, 16, 32):
                n = (SCRFD_SIZE // stride) ** 2 * 2
                t = torch.zeros(n, {"score": 1, "box": 4, "kps": 10}[kind])
                if stride == FACE_STRIDE:
                    i = (FACE_ROW * (SCRFD_SIZE // stride) + FACE_COL) * 2 + FACE_ANCHOR
                    t[i] = torch.tensor({"score": [score], "box": FACE_DIST.tolist(),
                                         "kps": FACE_KPS.ravel().tolist()}[kind], dtype=torch.float32)
                    # anchor 0 at the same place: a weaker, overlapping box that NMS must drop
                    t[i - 1] = t[i] * (0.9 if kind != "kps" else 1.0)
                outs.append(t)
        self.outs = torch.nn.ParameterList(torch.nn.Parameter(t, requires_grad=False) for t in outs)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        z = x.mean() * 0.0
        return tuple(t + z for t in self.outs)


def export(module: torch.nn.Module, path: Path, inputs: tuple, input_names: list[str],
           output_names: list[str]) -> Path:
    torch.onnx.export(module, inputs, str(path), input_names=input_names, output_names=output_names,
                      opset_version=17, dynamo=False)
    return path


def test_scrfd_style_detector_decodes_the_convention(tmp_path: Path) -> None:
    path = export(TinyScrfd(), tmp_path / "det.onnx", (torch.zeros(1, 3, SCRFD_SIZE, SCRFD_SIZE),), ["input.1"],
                  [f"o{i}" for i in range(9)])
    det = ScrfdDetector(path)
    image = np.full((192, 256, 3), 90, np.uint8)  # resized by 128 / 256 into the square
    faces = det.detect(image)
    assert len(faces) == 1
    centre = np.array([FACE_COL, FACE_ROW]) * FACE_STRIDE
    box = np.concatenate([centre - FACE_DIST[:2] * FACE_STRIDE, centre + FACE_DIST[2:] * FACE_STRIDE]) * 2.0
    np.testing.assert_allclose(faces[0].box, box, atol=1e-4)
    np.testing.assert_allclose(faces[0].landmarks, (centre + FACE_KPS * FACE_STRIDE) * 2.0, atol=1e-4)
    assert faces[0].score == pytest.approx(0.9)
    assert ScrfdDetector(path, min_score=0.95).detect(image) == []


def test_a_detector_with_the_wrong_outputs_is_refused(tmp_path: Path) -> None:
    path = export(torch.nn.Conv2d(3, 1, 1), tmp_path / "bad.onnx", (torch.zeros(1, 3, 32, 32),), ["x"], ["y"])
    with pytest.raises(ValueError, match="1 input and 9 outputs"):
        ScrfdDetector(path)


class TinyArcFace(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(3 * 112 * 112, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


def test_arcface_style_embedder_aligns_normalises_and_embeds(tmp_path: Path) -> None:
    net = TinyArcFace()
    path = export(net, tmp_path / "emb.onnx", (torch.zeros(1, 3, 112, 112),), ["data"], ["fc1"])
    emb = ArcFaceEmbedder(path)
    assert emb.length == 16 and emb.size == 112
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (300, 300, 3), dtype=np.uint8)
    face = DetectedFace(np.array([50.0, 50, 250, 250]), A.template(112) * 1.5 + 60, 1.0)
    got = emb.embed(image, face)
    crop = cv2.warpAffine(image, A.similarity_transform(face.landmarks, A.ARCFACE_112), (112, 112),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    x = (crop.astype(np.float64) - 127.5) / 127.5
    w, b = net.fc.weight.detach().double().numpy(), net.fc.bias.detach().double().numpy()
    want = w @ x.transpose(2, 0, 1).ravel() + b
    np.testing.assert_allclose(got, want / np.linalg.norm(want), atol=1e-4)
    assert emb.distance(got, got) == pytest.approx(0.0, abs=1e-6)
    assert emb.distance(got, -got) == pytest.approx(2.0, abs=1e-6)
