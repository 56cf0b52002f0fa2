"""Text-driven editing (SPEC S4): the renderer's age, the losses against hand-computed values,
each training stage on a tiny run, the tokenizer and its errors, the CLIP plug-in, ONNX export
with manifests, the inference chain (alpha = 0 is the reconstruction, paste-back) and bad inputs."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: the installed pyfill stays first

from pyfill.export import export_onnx  # noqa: E402
from pyfill.faces.analysis import DetectedFace  # noqa: E402
from pyfill.models import build_model, make_manifest  # noqa: E402
from pyfill.models.edit import LatentMapper, StyleDecoder, num_ws_for  # noqa: E402
from pyfill.tasks.edit import Editor, Tokenizer, UnknownTextError, check_strength  # noqa: E402
from training import edit_data as D  # noqa: E402
from training import faces as FR  # noqa: E402
from training.edit_mappers import edit_loss, loss1, loss2, loss3  # noqa: E402

HAS_OPEN_CLIP = importlib.util.find_spec("open_clip") is not None


# ---- the renderer's age ----------------------------------------------------------------------
def test_age_is_off_by_default_and_not_drawn_by_sample_attributes() -> None:
    rng = np.random.default_rng(3)
    assert FR.Attributes().age == 0.0
    assert all(FR.sample_attributes(rng).age == 0.0 for _ in range(5))
    # the random stream of the other fields is that of drawing every other field in order
    rng_a, rng_b = np.random.default_rng(11), np.random.default_rng(11)
    drawn = FR.sample_attributes(rng_a)
    for f in dataclasses.fields(FR.Attributes):
        if f.name == "age":
            continue
        lo, hi = f.metadata["range"]
        want = int(rng_b.integers(lo, hi + 1)) if f.type in ("int", int) else float(rng_b.uniform(lo, hi))
        assert getattr(drawn, f.name) == want, f.name


def test_age_greys_the_hair_and_adds_wrinkles() -> None:
    ident = dataclasses.replace(FR.sample_identity(np.random.default_rng(5)), hair_style=3, hair_redness=0.9,
                                hair_lightness=0.3)
    young = FR.render(ident, FR.Attributes(age=0.0), size=128)
    old = FR.render(ident, FR.Attributes(age=1.0), size=128)
    hsv_y = cv2.cvtColor(young.image, cv2.COLOR_RGB2HSV).astype(float)
    hsv_o = cv2.cvtColor(old.image, cv2.COLOR_RGB2HSV).astype(float)
    hair = (young.mask > 0.9) & (np.arange(128)[:, None] < 20)  # the top of the head is hair
    assert hair.sum() > 50
    assert hsv_o[..., 1][hair].mean() < 0.5 * hsv_y[..., 1][hair].mean()  # grey hair: far less saturated
    # forehead lines: the old face has more fine dark detail (high-pass energy) between the brows and hair
    lap_y = np.abs(cv2.Laplacian(cv2.cvtColor(young.image, cv2.COLOR_RGB2GRAY), cv2.CV_64F))
    lap_o = np.abs(cv2.Laplacian(cv2.cvtColor(old.image, cv2.COLOR_RGB2GRAY), cv2.CV_64F))
    forehead = (slice(26, 44), slice(48, 80))
    assert lap_o[forehead].mean() > 1.5 * lap_y[forehead].mean()


# ---- data and captions -----------------------------------------------------------------------
def test_captions_are_true_of_their_face_and_checkable_on_others() -> None:
    rng = np.random.default_rng(0)
    attrs = np.stack([D.attribute_vector(*D.sample_face(np.random.default_rng((9, k)))) for k in range(200)])
    tok = Tokenizer(D.vocabulary())
    for a in attrs[:50]:
        cap = D.caption_for(a, rng)
        assert D.caption_matches(cap, a[None])[0]
        tok(cap.text)  # every caption word is in the vocabulary
    smiling = D.Caption("a smiling person", ((D.ATTRIBUTES.index("smile"), 0.62, 1.0),))
    np.testing.assert_array_equal(D.caption_matches(smiling, attrs), attrs[:, 0] >= 0.62)


# ---- losses against hand-computed values -----------------------------------------------------
def test_loss1_loss2_loss3_and_the_total_match_hand_computed_values() -> None:
    img = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    txt = torch.tensor([[0.0, 2.0]])
    # cosines: (3,4).(0,1)/5 = 0.8 and (1,0).(0,1) = 0 -> mean(1 - cos) = (0.2 + 1.0) / 2
    assert float(loss1(img, txt)) == pytest.approx(0.6)
    dw = torch.zeros(2, 3, 2)
    dw[0, 0, 0], dw[0, 2, 1] = 3.0, 4.0  # norm 5
    dw[1, 1, 1] = -2.0  # norm 2
    assert float(loss2(dw)) == pytest.approx(3.5)
    a = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    b = torch.tensor([[1.0, 1.0, 0.0], [0.0, -1.0, 0.0]])
    # cos = 1/sqrt(2) and -1 -> mean(1 - cos) = (1 - 0.70710678 + 2) / 2
    assert float(loss3(a, b)) == pytest.approx((3.0 - 1.0 / math.sqrt(2.0)) / 2.0)
    assert float(edit_loss(torch.tensor(0.6), torch.tensor(3.5), torch.tensor(0.25), 0.1, 2.0)) == pytest.approx(1.45)


# ---- models ------------------------------------------------------------------------------------
def test_modulated_convolution_equals_the_grouped_stylegan2_form() -> None:
    from pyfill.models.edit import ModulatedConv

    torch.manual_seed(0)
    conv = ModulatedConv(4, 5, 8)
    x, w = torch.randn(2, 4, 6, 6), torch.randn(2, 8)
    got = conv(x, w)
    style = conv.affine(w)
    want = []
    for i in range(2):  # StyleGAN2: modulate the weights per sample, demodulate, convolve
        wt = conv.weight * conv.scale * style[i][None, :, None, None]
        wt = wt / torch.sqrt((wt * wt).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        want.append(torch.nn.functional.conv2d(x[i:i + 1], wt, padding=1) + conv.bias[None, :, None, None])
    torch.testing.assert_close(got, torch.cat(want), rtol=1e-4, atol=1e-5)


def test_an_untrained_mapper_does_not_edit_and_bad_latents_are_refused() -> None:
    m = LatentMapper(num_ws=9, w_dim=16, hidden=8)
    ws = torch.randn(3, 9, 16)
    assert torch.count_nonzero(m(ws)) == 0
    with pytest.raises(ValueError, match="W\\+ must have shape"):
        m(torch.randn(3, 8, 16))
    with pytest.raises(ValueError, match="W\\+ must have shape"):
        StyleDecoder(size=16, w_dim=16, base=4, cap=8)(torch.randn(1, 2, 16))
    with pytest.raises(ValueError, match="text embedding"):
        LatentMapper(num_ws=9, w_dim=16, hidden=8, cond=4)(ws)


# ---- tokenizer --------------------------------------------------------------------------------
def test_the_tokenizer_maps_known_words_and_refuses_unknown_ones_listing_the_attributes() -> None:
    tok = Tokenizer(D.vocabulary(), 16, D.caption_attributes())
    ids = tok(["a smiling face", "an old person with glasses"])
    vocab = D.vocabulary()
    assert ids.dtype == np.int64 and ids.shape == (2, 16)
    assert [vocab[i - 1] for i in ids[0] if i] == ["a", "smiling", "face"]
    with pytest.raises(UnknownTextError, match=r"\['elephant', 'purple'\].*smile.*glasses.*age"):
        tok("a purple elephant")
    with pytest.raises(UnknownTextError, match="no words"):
        tok("  !! ")
    with pytest.raises(TypeError, match="text must be a str"):
        tok([3])  # type: ignore[list-item]
    with pytest.raises(UnknownTextError, match="at most 16"):
        tok(" ".join(["a"] * 17))


# ---- a tiny exported chain ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Untrained (seeded) encoder, decoder, two mappers and a text tower at 32 x 32, exported."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("chain")
    size, w_dim = 32, 16
    num_ws = num_ws_for(size)
    out: dict[str, Path] = {}
    dec_cfg = {"size": size, "w_dim": w_dim, "z_dim": 8, "base": 4, "cap": 8}
    out["decoder"] = export_onnx(build_model("edit_decoder", dec_cfg), d / "dec.onnx",
                                 make_manifest("edit_decoder", dec_cfg, task="edit"))
    enc_cfg = {"size": size, "w_dim": w_dim, "base": 4, "cap": 8, "hidden": 16}
    enc = build_model("edit_encoder", enc_cfg)
    torch.nn.init.normal_(enc.head[-1].weight, std=0.05)
    out["encoder"] = export_onnx(enc, d / "enc.onnx", make_manifest("edit_encoder", enc_cfg, task="edit"))
    vocab = D.vocabulary()
    txt_cfg = {"vocab": len(vocab) + 1, "length": 16, "embed": 8, "width": 8, "vocabulary": vocab}
    tm = make_manifest("edit_matcher_text", txt_cfg, task="edit")
    tm.config["attributes"] = D.caption_attributes()
    out["text"] = export_onnx(build_model("edit_matcher_text", txt_cfg), d / "text.onnx", tm)
    for name, cond in (("smile", 0), ("cond", 8)):
        cfg = {"num_ws": num_ws, "w_dim": w_dim, "hidden": 8, "cond": cond}
        m = build_model("edit_mapper", cfg)
        for net in m.nets:
            torch.nn.init.normal_(net[-1].weight, std=0.3)
        out[name] = export_onnx(m, d / f"mapper_{name}.onnx", make_manifest("edit_mapper", cfg, task="edit"))
    return out


def editor(chain: dict[str, Path], **kw) -> Editor:
    return Editor(encoder=chain["encoder"], decoder=chain["decoder"], text_encoder=chain["text"],
                  conditional=chain["cond"], mappers={"a smiling face": chain["smile"]}, **kw)


def test_the_exports_declare_w_plus_latents_and_embeddings_with_their_shapes(chain: dict[str, Path]) -> None:
    import onnxruntime as ort

    from pyfill.faces.analysis import onnx_manifest

    num_ws = num_ws_for(32)
    shapes = {}
    for key in ("encoder", "decoder", "smile", "cond", "text"):
        sess = ort.InferenceSession(str(chain[key]), providers=["CPUExecutionProvider"])
        m = onnx_manifest(sess)
        shapes[key] = (m.family, [(s.name, s.kind, list(s.shape)) for s in m.inputs],
                       [(s.name, s.kind, list(s.shape)) for s in m.outputs])
    assert shapes["encoder"][2] == [("wplus", "tensor", [num_ws, 16])]
    assert shapes["decoder"][1] == [("wplus", "tensor", [num_ws, 16])]
    assert shapes["smile"] == ("edit_mapper", [("wplus", "tensor", [num_ws, 16])], [("delta", "tensor", [num_ws, 16])])
    assert shapes["cond"][1] == [("wplus", "tensor", [num_ws, 16]), ("text_embedding", "embedding", [8])]
    assert shapes["text"][1] == [("tokens", "tokens", [16])] and shapes["text"][2] == [("embedding", "embedding", [8])]


def test_onnx_exports_match_pytorch_at_batch_3(tmp_path: Path) -> None:
    import onnxruntime as ort

    torch.manual_seed(1)
    cfg = {"size": 32, "w_dim": 16, "z_dim": 8, "base": 4, "cap": 8}
    dec = build_model("edit_decoder", cfg).eval()
    path = export_onnx(dec, tmp_path / "d.onnx", make_manifest("edit_decoder", cfg, task="edit"))
    ws = np.random.default_rng(0).normal(size=(3, num_ws_for(32), 16)).astype(np.float32)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"wplus": ws})[0]
    with torch.no_grad():
        want = dec(torch.from_numpy(ws)).numpy()
    assert got.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_strength_zero_returns_the_reconstruction_and_strength_scales_the_offset(chain: dict[str, Path]) -> None:
    ed = editor(chain)
    crop = D.render_face(*D.sample_face(np.random.default_rng(4)), size=64)
    crop = cv2.resize(crop, (32, 32), interpolation=cv2.INTER_AREA)
    ws = ed.latent(crop)
    recon = ed.decode(ws)
    zero, name = ed.edit_crop(crop, "a smiling face", 0.0)
    assert name == "mapper_smile"
    np.testing.assert_array_equal(zero, recon)
    dw, _ = ed.delta(ws, "A  smiling face!")  # the text is matched case- and punctuation-free
    assert np.abs(dw).max() > 0.01
    half, _ = ed.edit_crop(crop, "a smiling face", 0.5)
    np.testing.assert_array_equal(half, ed.decode(ws + 0.5 * dw))
    # a text without its own model goes to the conditional model, with the text's embedding
    other, name = ed.edit_crop(crop, "a person with glasses", 1.0)
    assert name == "mapper_cond"
    emb = ed.text_embedding("a person with glasses")
    assert emb.shape == (8,) and np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-4)
    assert not np.array_equal(other, recon)


def test_unknown_text_is_refused_before_any_image_work(chain: dict[str, Path]) -> None:
    ed = editor(chain)
    with pytest.raises(UnknownTextError, match=r"does not know the word\(s\) \['unicorn'\].*attributes"):
        ed.edit(np.zeros((40, 40, 3), np.uint8), "a unicorn", 0.5, align=False)
    assert isinstance(UnknownTextError("x"), ValueError)


class LandmarkDetector:
    """Returns the given five landmarks as the one face (the Detector protocol)."""

    def __init__(self, landmarks: np.ndarray | None) -> None:
        self.landmarks = landmarks

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        if self.landmarks is None:
            return []
        lm = self.landmarks
        return [DetectedFace(np.array([*(lm.min(0) - 20), *(lm.max(0) + 20)]), lm, 1.0)]


def test_aligned_editing_pastes_the_face_back_and_leaves_the_rest(chain: dict[str, Path]) -> None:
    from pyfill.faces.analysis import FaceAnalyzer

    face = FR.render(*D.sample_face(np.random.default_rng(2)), size=160)
    canvas = np.full((240, 320, 3), 90, np.uint8)
    canvas[40:200, 80:240] = face.image
    lm = face.landmarks + np.array([80.0, 40.0])
    ed = editor(chain, analyzer=FaceAnalyzer(LandmarkDetector(lm), None))
    res = ed.edit(canvas, "a smiling face", 1.0)
    assert res.faces_found == 1 and res.faces_edited == 1 and res.model == "mapper_smile"
    assert res.image.shape == canvas.shape and res.image.dtype == np.uint8
    centre = lm.mean(0)
    far = np.ones(canvas.shape[:2], bool)
    yy, xx = np.mgrid[:240, :320]
    far &= (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2 > 110**2
    np.testing.assert_array_equal(res.image[far], canvas[far])
    assert np.abs(res.image.astype(int) - canvas).max() > 0  # the face changed
    none = editor(chain, analyzer=FaceAnalyzer(LandmarkDetector(None), None))
    from pyfill.tasks.swap import FaceWarning

    with pytest.warns(FaceWarning, match="no face found"):
        res = none.edit(canvas, "a smiling face", 1.0)
    np.testing.assert_array_equal(res.image, canvas)
    assert res.faces_found == 0


def test_unaligned_crops_keep_their_size_gray_and_alpha(chain: dict[str, Path]) -> None:
    ed = editor(chain)
    rgba = np.dstack([np.full((50, 60, 3), 120, np.uint8), np.full((50, 60), 200, np.uint8)])
    out = ed.edit(rgba, "a smiling face", 0.5, align=False).image
    assert out.shape == (50, 60, 4)
    np.testing.assert_array_equal(out[..., 3], rgba[..., 3])
    gray = ed.edit(np.full((40, 40), 100, np.uint8), "a smiling face", 0.5, align=False).image
    assert gray.shape == (40, 40)


def test_bad_inputs_get_clear_errors(chain: dict[str, Path], tmp_path: Path) -> None:
    ed = editor(chain)
    img = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(TypeError, match="uint8"):
        ed.edit(img.astype(np.float32), "a smiling face", align=False)
    with pytest.raises(ValueError, match="shape"):
        ed.edit(np.zeros((40, 40, 5), np.uint8), "a smiling face", align=False)
    with pytest.raises(ValueError, match="too small"):
        ed.edit(np.zeros((8, 8, 3), np.uint8), "a smiling face", align=False)
    with pytest.raises(TypeError, match="NumPy array or a PIL image"):
        ed.edit("face.png", "a smiling face", align=False)
    with pytest.raises(TypeError, match="text must be a str"):
        ed.edit(img, None, align=False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="strength must be a finite number"):
        check_strength(float("nan"))
    with pytest.raises(ValueError, match="strength must be a finite number"):
        check_strength(5.0)
    with pytest.raises(TypeError, match="strength must be a number"):
        check_strength("0.5")
    with pytest.raises(ValueError, match="must be a pyfill edit_decoder model"):
        Editor(encoder=chain["encoder"], decoder=chain["encoder"], text_encoder=chain["text"], conditional=None)
    with pytest.raises(FileNotFoundError, match="not found"):
        Editor(encoder=tmp_path / "missing.onnx")


def test_the_tokenizers_attribute_list_and_dict_round_trip() -> None:
    tok = Tokenizer(["a", "smiling", "face", "old", "man"], 5,
                    {"smile": ["a smiling face", "smiling", "a face smiling"], "age": ["an old man"]})
    assert tok.known() == "it knows these attributes: smile (e.g. 'a smiling face' / 'smiling'); age (e.g. 'an old man')"
    assert Tokenizer(["a", "b"]).known() == "known words: a, b"
    again = Tokenizer.from_dict(tok.to_dict())
    assert (again.vocabulary, again.length, again.attributes) == (tok.vocabulary, 5, tok.attributes)
    bare = Tokenizer.from_dict({"vocabulary": ("x", "y")})
    assert (bare.vocabulary, bare.length, bare.attributes) == (["x", "y"], 16, {})


def _crop32(seed: int) -> np.ndarray:
    crop = D.render_face(*D.sample_face(np.random.default_rng(seed)), size=64)
    return cv2.resize(crop, (32, 32), interpolation=cv2.INTER_AREA)


def test_decode_is_the_decoders_output_in_grey_levels_for_any_float_latent(chain: dict[str, Path]) -> None:
    ed = editor(chain)
    ws = ed.latent(_crop32(5))
    for w in (ws, 40.0 * ws):  # the second saturates: levels 0 and 255 occur
        raw = ed.decoder(w[None].astype(np.float32))[0].transpose(1, 2, 0)
        want = np.clip(np.rint(raw * 255.0), 0, 255).astype(np.uint8)
        np.testing.assert_array_equal(ed.decode(w), want)
        np.testing.assert_array_equal(ed.decode(w.astype(np.float64)), want)
    assert (ed.decode(40.0 * ws) == 0).any() and (ed.decode(40.0 * ws) == 255).any()


def test_whole_image_editing_uses_the_strength_and_the_default_is_0_8(chain: dict[str, Path]) -> None:
    ed = editor(chain)
    crop = _crop32(6)
    np.testing.assert_array_equal(ed.edit_crop(crop, "a smiling face")[0], ed.edit_crop(crop, "a smiling face", 0.8)[0])
    for strength in (0.0, 0.3, -1.5):
        res = ed.edit(crop, "a smiling face", strength, align=False)
        np.testing.assert_array_equal(res.image, ed.edit_crop(crop, "a smiling face", strength)[0])
        assert (res.model, res.faces_found, res.faces_edited, res.warnings) == ("mapper_smile", 1, 1, [])
    for ok in (-2.0, 2.0, 0, np.float32(1.5)):
        assert check_strength(ok) == float(ok)
    for bad in (2.5, -2.5, 3.0):
        with pytest.raises(ValueError, match=rf"^strength must be a finite number in \[-2, 2\], got {bad}$"):
            check_strength(bad)


def test_size_limits_and_image_errors_name_the_image(chain: dict[str, Path]) -> None:
    ed = editor(chain)
    assert ed.edit(np.full((16, 16, 3), 90, np.uint8), "a smiling face", 0.5, align=False).image.shape == (16, 16, 3)
    with pytest.raises(ValueError, match=r"^image: too small to edit \(16 x 15 pixels; at least 16 x 16\)$"):
        ed.edit(np.zeros((15, 16, 3), np.uint8), "a smiling face", align=False)
    with pytest.raises(TypeError, match=r"^image: editing takes uint8 images, got float32$"):
        ed.edit(np.zeros((40, 40, 3), np.float32), "a smiling face", align=False)


def test_no_conditional_model_means_only_the_per_text_models(chain: dict[str, Path]) -> None:
    ed = Editor(encoder=chain["encoder"], decoder=chain["decoder"], text_encoder=chain["text"], conditional=None,
                mappers={"a smiling face": chain["smile"]})
    assert ed.conditional is None
    assert ed.edit_crop(_crop32(7), "a smiling face", 0.5)[1] == "mapper_smile"
    with pytest.raises(UnknownTextError, match=r"^no editing model for 'a person with glasses'; texts with their own "
                                               r"model: \['a smiling face'\]$"):
        ed.edit_crop(_crop32(7), "a person with glasses", 0.5)


def test_a_checkpoint_in_place_of_an_onnx_file_is_refused(chain: dict[str, Path], tmp_path: Path) -> None:
    ckpt = tmp_path / "enc.safetensors"
    ckpt.write_bytes(b"weights")
    with pytest.raises(ValueError, match=r"enc\.safetensors: the editing encoder is an ONNX file \(export a checkpoint "
                                         r"with pyfill export\)$"):
        Editor(encoder=ckpt, decoder=chain["decoder"], text_encoder=chain["text"])


def _face_canvas(alpha: bool) -> tuple[np.ndarray, np.ndarray]:
    face = FR.render(*D.sample_face(np.random.default_rng(2)), size=160)
    canvas = np.full((240, 320, 3), 90, np.uint8)
    canvas[40:200, 80:240] = face.image
    if alpha:
        canvas = np.dstack([canvas, np.random.default_rng(3).integers(0, 256, (240, 320), dtype=np.uint8)])
    return canvas, face.landmarks + np.array([80.0, 40.0])


def test_aligned_editing_keeps_alpha_reports_what_it_did_and_follows_the_feather(chain: dict[str, Path]) -> None:
    from pyfill.faces.analysis import FaceAnalyzer
    from pyfill.tasks.swap import FaceWarning

    canvas, lm = _face_canvas(alpha=True)
    finds = FaceAnalyzer(LandmarkDetector(lm), None)
    res = editor(chain, analyzer=finds).edit(canvas, "a smiling face", 1.0)
    assert res.image.shape == (240, 320, 4)
    np.testing.assert_array_equal(res.image[..., 3], canvas[..., 3])
    soft = editor(chain, analyzer=finds, feather=0.3).edit(canvas, "a smiling face", 1.0)
    assert np.abs(soft.image.astype(int) - res.image.astype(int)).max() > 0  # the paste-back mask changed
    with pytest.warns(FaceWarning):
        none = editor(chain, analyzer=FaceAnalyzer(LandmarkDetector(None), None)).edit(canvas, "a smiling face", 1.0)
    assert (none.model, none.faces_found, none.faces_edited) == ("", 0, 0)
    assert none.warnings == ["no face found in the image; it is returned unchanged (pass align=False for an aligned crop)"]


def test_edit_builds_one_editor_per_set_of_models_or_takes_one(chain: dict[str, Path], monkeypatch) -> None:
    from pyfill.tasks import edit as E

    monkeypatch.setattr(E, "_EDITORS", {})
    crop = _crop32(8)
    models = {"encoder": chain["encoder"], "decoder": chain["decoder"], "text_encoder": chain["text"],
              "conditional": chain["cond"], "mappers": {"a smiling face": chain["smile"]}}
    a = E.edit(crop, "a smiling face", 0.4, align=False, **models)
    b = E.edit(crop, "a smiling face", 0.4, align=False, **models)
    assert len(E._EDITORS) == 1 and np.array_equal(a.image, b.image)
    ed = editor(chain)
    np.testing.assert_array_equal(E.edit(crop, "a smiling face", 0.4, align=False, editor=ed).image,
                                  ed.edit(crop, "a smiling face", 0.4, align=False).image)
    with pytest.raises(ValueError, match="^pass either editor= or model arguments, not both$"):
        E.edit(crop, "a smiling face", editor=ed, encoder=chain["encoder"])
    # align (the default) reaches the editor: the face is found, aligned and pasted back
    from pyfill.faces.analysis import FaceAnalyzer

    canvas, lm = _face_canvas(alpha=False)
    finds = editor(chain, analyzer=FaceAnalyzer(LandmarkDetector(lm), None))
    aligned = E.edit(canvas, "a smiling face", 1.0, editor=finds).image
    np.testing.assert_array_equal(aligned, finds.edit(canvas, "a smiling face", 1.0, align=True).image)
    assert not np.array_equal(aligned, finds.edit(canvas, "a smiling face", 1.0, align=False).image)


def test_the_command_line_edits_an_aligned_crop_and_refuses_unknown_text(chain: dict[str, Path], tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from pyfill import cli
    from pyfill.images import read_image, write_image

    from pyfill.store import add_model

    monkeypatch.setenv("PYFILL_HOME", str(tmp_path / "home"))  # the default names resolve in this store
    for key, name in (("encoder", "edit_encoder"), ("decoder", "edit_decoder"), ("text", "edit_matcher_text"),
                      ("cond", "edit_mapper_cond"), ("smile", "edit_mapper_smile")):
        add_model(chain[key], name)
    src = tmp_path / "face.png"
    write_image(src, cv2.resize(D.render_face(*D.sample_face(np.random.default_rng(1))), (32, 32)))
    out = tmp_path / "out.png"
    code = cli.main(["edit", str(src), "--text", "a smiling face", "--strength", "0.7", "--no-align", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    assert read_image(out).shape == (32, 32, 3)
    assert "edited 1 faces in 1 of 1 images" in capsys.readouterr().out
    code = cli.main(["edit", str(src), "--text", "a flying saucer", "--no-align", "-o", str(tmp_path / "o2.png")])
    err = capsys.readouterr().err
    assert code == 1 and "does not know the word(s) ['flying', 'saucer']" in err and "Traceback" not in err
    code = cli.main(["edit", str(src), "--text", "a smiling face", "--strength", "9", "-o", str(tmp_path / "o3.png")])
    assert code == 1 and "strength must be" in capsys.readouterr().err


# ---- the CLIP plug-in ---------------------------------------------------------------------------
TINY_CLIP = {"embed_dim": 16,
             "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not HAS_OPEN_CLIP:
        pytest.skip("open_clip_torch not installed (pyfill[clip])")
    import open_clip

    d = tmp_path_factory.mktemp("clipcfg")
    (d / "pyfill-tiny-clip.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(d / "pyfill-tiny-clip.json")
    return "pyfill-tiny-clip"


def test_a_clip_model_plugs_in_as_the_matcher(tiny_clip: str) -> None:
    import open_clip

    from pyfill.models.edit_matcher import load_matcher

    matcher = load_matcher(f"clip:{tiny_clip}")
    torch.manual_seed(0)
    images = torch.rand(2, 3, 64, 64)
    tokens = matcher.tokenize(["a smiling face", "an old man"])
    assert tokens.shape == (2, 16)
    img, txt = matcher.encode_image(images), matcher.encode_text(tokens)
    # the reference: open_clip's own calls on the resized, normalised images
    x = torch.nn.functional.interpolate(images, size=(32, 32), mode="bilinear", align_corners=False)
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).reshape(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).reshape(1, 3, 1, 1)
    with torch.no_grad():
        ref_i = matcher.model.encode_image((x - mean) / std)
        ref_t = matcher.model.encode_text(open_clip.get_tokenizer(tiny_clip)(["a smiling face", "an old man"]))
    ref_i, ref_t = ref_i / ref_i.norm(dim=1, keepdim=True), ref_t / ref_t.norm(dim=1, keepdim=True)
    torch.testing.assert_close(img, ref_i, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(txt, ref_t, rtol=1e-4, atol=1e-5)
    want = float((1.0 - (ref_i * ref_t[:1]).sum(1)).mean())
    assert float(loss1(img, txt[:1])) == pytest.approx(want, abs=1e-5)
    # loss1 through the CLIP matcher gives the editing model gradients
    mapper = LatentMapper(num_ws=5, w_dim=8, hidden=8)
    decoder = StyleDecoder(size=16, w_dim=8, base=4, cap=8)
    ws = torch.randn(2, 5, 8)
    loss1(matcher.encode_image(decoder(ws + mapper(ws))), txt[:1]).backward()
    assert mapper.nets[0][-1].weight.grad is not None and mapper.nets[0][-1].weight.grad.abs().sum() > 0


def test_a_missing_clip_checkpoint_is_a_clear_error(tiny_clip: str, tmp_path: Path) -> None:
    from pyfill.models.edit_matcher import load_matcher

    with pytest.raises(FileNotFoundError, match="CLIP checkpoint not found"):
        load_matcher(f"clip:{tiny_clip}:{tmp_path / 'nope.pt'}")
    with pytest.raises(ValueError, match="clip:MODEL"):
        load_matcher("clip:")


# ---- the shipped models ---------------------------------------------------------------------------
def test_the_shipped_chain_edits_a_rendered_face() -> None:
    from pyfill.store import shipped_models
    from pyfill.tasks.edit import DEFAULT_MODELS, TARGETS

    shipped = shipped_models()
    if not all(n in shipped for n in [*DEFAULT_MODELS.values(), *TARGETS]):
        pytest.skip("the editing models are not shipped in this build")
    ed = Editor()
    crop = D.render_face(*D.sample_face(np.random.default_rng((1, 3))), size=64)
    recon = ed.decode(ed.latent(crop))
    for text in TARGETS.values():
        out, name = ed.edit_crop(crop, text, 1.0)
        assert out.shape == (64, 64, 3) and name in TARGETS
        assert np.abs(out.astype(int) - recon).mean() > 0.5, text  # every model moves the face
    out, name = ed.edit_crop(crop, "a frowning face", 1.0)
    assert name == "edit_mapper_cond"
