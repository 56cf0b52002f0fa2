"""Face-swap training (SPEC S5): the losses, the two phases, the reproducible triplet pool,
exact resume, the plateau stop and the exported models (tiny runs of a few seconds)."""

from __future__ import annotations

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
        "device=cpu", "threads=1", "encoder_steps=2", "max_steps=4", "val_every=2", "val_count=2",
        "checkpoint_every=2", "sample_every=0", "encoder.base=4", "data.pool=6", "data.refresh=1", "data.batch=2",
        "data.encoder_batch=3", "data.render_size=64", *overrides,
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


def test_cosine_gap_and_plateau() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert S.cosine_gap(a, a).item() == pytest.approx(0.0)
    assert S.cosine_gap(a, -a).item() == pytest.approx(2.0)
    assert not S.plateaued([0.5, 0.4, 0.3], patience=2, min_delta=0.0)
    assert S.plateaued([0.5, 0.3, 0.31, 0.30], patience=2, min_delta=0.0)
    assert S.plateaued([0.5, 0.3, 0.29, 0.295], patience=2, min_delta=0.05)
    assert not S.plateaued([0.5], patience=2, min_delta=0.0)


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
    assert rows[1]["val_id"] != "" and rows[3]["val_l1"] != ""
    assert (tmp_path / "b" / "run" / "losses.png").is_file()


def test_training_stops_at_a_validation_plateau(tmp_path: Path) -> None:
    result = S.train(tiny_config(tmp_path, "max_steps=40", "val_every=1", "patience=1", "min_delta=10.0"))
    assert result["stopped"] == "validation L1 plateau at step 4" and result["steps"] == 4


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
