"""Face-swap training (SPEC S5): the losses, the two phases, the reproducible triplet pool,
exact resume, the plateau stop and the exported models (tiny runs of a few seconds)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("cv2")
pytest.importorskip("onnx")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: the installed pyfill stays first

from pyfill.export import export_onnx, load_checkpoint  # noqa: E402
from pyfill.manifest import read_onnx_manifest  # noqa: E402
from training import harness as H  # noqa: E402
from training import swap as S  # noqa: E402

TINY_MODEL = {"base": 4, "emb": 8, "blocks": 1, "depth": 3, "size": 128, "disc_base": 4, "disc_layers": 2}


def tiny_config(tmp_path: Path, *overrides: str) -> dict:
    cfg = H.load_config(S.DEFAULTS, None, [
        "device=cpu", "threads=1", "encoder_steps=2", "max_steps=4", "val_count=2", "workers=0",
        "tensorboard=false", "checkpoint_every=2", "sample_every=0", "encoder.base=4", "data.pool=6", "data.refresh=1",
        "data.batch=2", "data.encoder_batch=3", "data.render_size=64", *overrides,
    ])
    cfg["model"] = dict(TINY_MODEL)
    cfg["out"] = str(tmp_path / "run")
    return cfg


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_info_nce_matches_a_hand_computation() -> None:
    anchor = torch.tensor([[1.0, 0.0]])
    positive = torch.tensor([[1.0, 0.0]])
    negative = torch.tensor([[0.0, 1.0]])
    loss, acc = S.info_nce(anchor, positive, negative, tau=1.0)
    # each direction: softmax over logits (1, 0) with the match first -> -log(e / (e + 1))
    assert loss.item() == pytest.approx(math.log(1.0 + math.exp(-1.0)), rel=1e-6)
    assert acc == 1.0


def test_cosine_gap() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert S.cosine_gap(a, a).item() == pytest.approx(0.0)
    assert S.cosine_gap(a, -a).item() == pytest.approx(2.0)
    b = torch.tensor([[0.6, 0.8], [0.0, 1.0]])
    assert S.cosine_gap(a, b).item() == pytest.approx(((1 - 0.6) + 0.0) / 2)


def test_the_triplet_pool_at_a_step_is_the_same_however_it_got_there() -> None:
    walked = S.TripletPool(3, 4, 2, 64, 128)
    for _ in range(3):
        walked.advance()
    jumped = S.TripletPool(3, 4, 2, 64, 128, step=3)
    for a, b in zip(walked.slots, jumped.slots):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    s, f, t = jumped.batch(3, torch.Generator().manual_seed(0))
    assert s.shape == (3, 3, 128, 128) and float(s.max()) <= 1.0 and float(s.min()) >= 0.0
    with pytest.raises(ValueError, match="needs data.pool >= 5"):
        jumped.batch(5, torch.Generator())
    # at(step) brings any pool to a step: ahead by advancing, behind or far ahead by rebuilding
    for start, step in ((0, 3), (5, 3), (0, 40)):
        moved = S.TripletPool(3, 4, 2, 64, 128, step=start).at(step)
        fresh = S.TripletPool(3, 4, 2, 64, 128, step=step)
        assert all(np.array_equal(x, y) for a, b in zip(moved.slots, fresh.slots) for x, y in zip(a, b))


def test_the_swap_step_trains_g_and_d_and_leaves_the_encoder_alone(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    net = S.build_model("swap", TINY_MODEL)
    enc = S.build_model("face_id", {"base": 4, "emb": 8, "size": 112})
    trainer = S.SwapTrainer(net, enc, cfg, H.DistContext())
    s, f, t = S.TripletPool(0, 4, 0, 64, 128).batch(2, torch.Generator().manual_seed(0))
    before = params(net.generator), params(net.discriminator), params(enc)
    logs = trainer.step(5, s, f, t)
    assert logs["phase"] == 2.0 and {"l1", "id_s", "id_t", "l_adv", "loss_d"} <= set(logs)
    assert not same(before[0], params(net.generator)) and not same(before[1], params(net.discriminator))
    assert same(before[2], params(enc))
    before_e = params(enc)
    logs = trainer.step(0, s, f, t)
    assert logs["phase"] == 1.0 and not same(before_e, params(enc))


def test_bad_weights_are_refused(tmp_path: Path) -> None:
    net, enc = S.build_model("swap", TINY_MODEL), S.build_model("face_id", {"base": 4, "emb": 8, "size": 112})
    with pytest.raises(ValueError, match="k_l1 must be >= 0"):
        S.SwapTrainer(net, enc, tiny_config(tmp_path, "k_l1=-1"), H.DistContext())
    with pytest.raises(ValueError, match="tau must be > 0"):
        S.SwapTrainer(net, enc, tiny_config(tmp_path, "tau=0"), H.DistContext())


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path: Path) -> None:
    straight = S.train(tiny_config(tmp_path / "a"))
    S.train(tiny_config(tmp_path / "b", "max_steps=3"))
    resumed = S.train(tiny_config(tmp_path / "b"), resume=True)
    assert straight["steps"] == resumed["steps"] == 4
    assert same(params(straight["model"]), params(resumed["model"]))
    assert same(params(straight["encoder"]), params(resumed["encoder"]))
    rows = H.read_csv_log(tmp_path / "b" / "run" / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert rows[1]["val_id"] != "" and rows[1]["val_l1"] == "" and rows[3]["val_l1"] != ""
    assert (tmp_path / "b" / "run" / "losses.png").is_file()
    assert [s for s, _ in H.checkpoint_dirs(tmp_path / "b" / "run")] == [2, 3, 4]


def test_training_stops_at_a_validation_plateau(tmp_path: Path) -> None:
    result = S.train(tiny_config(tmp_path, "max_steps=40", "checkpoint_every=1", "early_stop.patience=1",
                                 "early_stop.min_delta=10.0"))
    assert result["stopped"] == "validation L1 plateau at step 4" and result["steps"] == 4
    # the encoder phase reports no L1: the best checkpoint is the first phase-2 one (step 3)
    assert result["best"]["step"] == 3 and result["best"]["metric"] == "l1"


def _write_people(root: Path, counts: dict[str, int]) -> dict[str, list[np.ndarray]]:
    from PIL import Image

    rng = np.random.default_rng(0)
    crops: dict[str, list[np.ndarray]] = {}
    for person, n in counts.items():
        (root / person).mkdir(parents=True)
        crops[person] = [rng.integers(0, 256, (128, 128, 3), dtype=np.uint8) for _ in range(n)]
        for i, c in enumerate(crops[person]):
            Image.fromarray(c).save(root / person / f"{i}.png")
    return crops


def _which(crop: np.ndarray, crops: dict[str, list[np.ndarray]]) -> tuple[str, int]:
    """(person, photo) of a crop or its mirror image."""
    for person, cs in crops.items():
        for i, c in enumerate(cs):
            if np.array_equal(crop, c) or np.array_equal(crop, c[:, ::-1]):
                return person, i
    raise AssertionError("not one of the photos")


def test_real_faces_give_same_person_and_self_reconstruction_triplets(tmp_path: Path) -> None:
    crops = _write_people(tmp_path / "faces", {"ada": 3, "bob": 1})
    real = S.RealFaces(tmp_path / "faces", 128)
    assert len(real) == 4
    kinds = set()
    for k in range(40):
        s, f, t = real.triplet(5, k)
        assert f is t or np.array_equal(f, t)
        (ps, i), (pt, j) = _which(s, crops), _which(t, crops)
        assert ps == pt  # S is the same person as T
        assert (i != j) == (ps == "ada")  # another photo when there is one, else the same photo
        kinds.add(ps)
        again = real.triplet(5, k)
        assert all(np.array_equal(a, b) for a, b in zip((s, f, t), again))  # its own seed
    assert kinds == {"ada", "bob"}
    pool = S.TripletPool(5, 6, 1, 64, 128, real=real, real_share=1.0)
    for slot in pool.slots:
        _which(slot[0], crops)
    mixed = S.TripletPool(5, 40, 1, 64, 128, real=real, real_share=0.5)
    real_slots = 0
    for slot in mixed.slots:
        try:
            _which(slot[0], crops)
            real_slots += 1
        except AssertionError:
            pass
    assert 8 <= real_slots <= 32


def test_real_face_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="real_folder not found"):
        S.RealFaces(tmp_path / "missing", 128)
    (tmp_path / "empty" / "x").mkdir(parents=True)
    with pytest.raises(ValueError, match="no face crops"):
        S.RealFaces(tmp_path / "empty", 128)
    with pytest.raises(ValueError, match="needs data.real_folder"):
        S.TripletPool(0, 4, 1, 64, 128, real_share=0.5)
    with pytest.raises(ValueError, match=r"real_share must be in \[0, 1\]"):
        S.TripletPool(0, 4, 1, 64, 128, real_share=1.5)
    from PIL import Image

    (tmp_path / "small" / "p").mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "small" / "p" / "a.png")
    with pytest.raises(ValueError, match="an aligned crop is 128 x 128"):
        S.RealFaces(tmp_path / "small", 128).triplet(0, 0)


def test_training_on_real_faces_runs_and_records_them(tmp_path: Path) -> None:
    _write_people(tmp_path / "faces", {"ada": 2, "bob": 2})
    result = S.train(tiny_config(tmp_path, f"data.real_folder={tmp_path / 'faces'}", "data.real_share=0.5",
                                 "max_steps=3"))
    assert result["steps"] == 3
    import json

    provenance = json.loads((Path(result["out"]) / "swap.json").read_text())["provenance"]["training"]
    assert provenance["data"]["real_share"] == 0.5
    assert provenance["data"]["real"]["files"] == 4 and provenance["data"]["real"]["people"] == 2


def test_the_trained_models_export_with_manifests(tmp_path: Path) -> None:
    result = S.train(tiny_config(tmp_path, "max_steps=3"))
    out = Path(result["out"])
    swap_onnx = export_onnx(out / "swap", tmp_path / "swap.onnx")
    face_onnx = export_onnx(out / "face_id", tmp_path / "face_id.onnx")
    m = read_onnx_manifest(swap_onnx)
    assert m.task == "swap" and [s.kind for s in m.inputs] == ["image", "embedding"] and m.inputs[1].length == 8
    e = read_onnx_manifest(face_onnx)
    assert e.task == "face_id" and e.outputs[0].kind == "embedding" and e.size.fixed == (112, 112)
    # a new run can start from the trained identity encoder and skip its phase
    enc_cfg = ["encoder_steps=0", f"encoder.checkpoint={out / 'face_id.safetensors'}", "max_steps=1"]
    again = S.train(tiny_config(tmp_path / "c", *enc_cfg))
    assert same(params(load_checkpoint(out / "face_id")[0]), params(again["encoder"]))


class _RedSquareAnalyzer:
    """Finds pure red squares; five landmarks around each one's centre, scaled by its size."""

    def detect(self, image: np.ndarray) -> list:
        import cv2

        from pyfill.faces.analysis import DetectedFace

        red = (image[..., 0] == 255) & (image[..., 1] == 0) & (image[..., 2] == 0)
        count, labels = cv2.connectedComponents(red.astype(np.uint8))
        faces = []
        for i in range(1, count):
            ys, xs = np.nonzero(labels == i)
            c, side = np.array([xs.mean(), ys.mean()]), float(xs.max() - xs.min() + 1)
            lm = c + np.array([[-1.0, -0.8], [1.0, -0.8], [0.0, 0.2], [-0.8, 1.2], [0.8, 1.2]]) * side
            faces.append(DetectedFace(np.array([*(c - 2 * side), *(c + 2 * side)]), lm, 1.0))
        return faces


def test_face_crops_align_the_largest_face_per_person(tmp_path: Path) -> None:
    from PIL import Image

    from pyfill.faces.align import align_face
    from training import face_crops

    rng = np.random.default_rng(1)
    photos = tmp_path / "photos"
    (photos / "ada" / "2019").mkdir(parents=True)
    images = {}
    for name, squares in {"ada/a.png": [(60, 50, 10)], "ada/2019/b.png": [(40, 40, 6), (90, 70, 14)],
                          "solo.png": [(70, 60, 12)], "ada/none.png": []}.items():
        img = rng.integers(0, 200, (120, 160, 3), dtype=np.uint8)
        for x, y, side in squares:
            img[y:y + side, x:x + side] = (255, 0, 0)
        Image.fromarray(img).save(photos / name)
        images[name] = img
    (photos / "broken.jpg").write_bytes(b"not an image")
    report = face_crops.make_crops(photos, tmp_path / "crops", 128, analyzer=_RedSquareAnalyzer())
    assert report.written == 3 and len(report.no_face) == 1 and len(report.several) == 1
    assert len(report.unreadable) == 1
    assert sorted(str(p.relative_to(tmp_path / "crops")) for p in (tmp_path / "crops").rglob("*.png")) == \
        ["ada/a.png", "ada/b.png", "solo/solo.png"]
    # b.png's crop is the larger square's face
    big = _RedSquareAnalyzer().detect(images["ada/2019/b.png"])
    want, _ = align_face(images["ada/2019/b.png"], max(big, key=lambda f: f.area).landmarks, 128)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "crops" / "ada" / "b.png")), want)
    # a second run keeps what is there; the crops train as real faces
    again = face_crops.make_crops(photos, tmp_path / "crops", 128, analyzer=_RedSquareAnalyzer())
    assert again.written == 0 and again.kept == 3
    assert len(S.RealFaces(tmp_path / "crops", 128)) == 3
    with pytest.raises(ValueError, match="must lie outside the photo folder"):
        face_crops.make_crops(photos, photos / "crops", analyzer=_RedSquareAnalyzer())
    assert face_crops.main([str(tmp_path / "nothing"), str(tmp_path / "x")]) == 2


@pytest.mark.skipif(importlib.util.find_spec("dlib") is None or importlib.util.find_spec("face_recognition_models") is None,
                    reason="dlib / face_recognition_models not installed (pyfill[face])")
def test_face_crops_of_a_photo_with_dlib(tmp_path: Path) -> None:
    from PIL import Image
    from skimage import data

    from pyfill.faces import FaceAnalyzer
    from training import face_crops

    (tmp_path / "photos" / "eileen").mkdir(parents=True)
    Image.fromarray(data.astronaut()).save(tmp_path / "photos" / "eileen" / "astronaut.png")
    report = face_crops.make_crops(tmp_path / "photos", tmp_path / "crops")
    assert report.written == 1
    crop = np.asarray(Image.open(tmp_path / "crops" / "eileen" / "astronaut.png"))
    # dlib finds the face again in the aligned crop, with its eyes near the template's
    found = FaceAnalyzer.default().detect(np.ascontiguousarray(np.pad(crop, ((64, 64), (64, 64), (0, 0)), mode="edge")))
    from pyfill.faces.align import template

    assert found and np.abs(found[0].landmarks[:2] - 64 - template(128)[:2]).max() < 6
