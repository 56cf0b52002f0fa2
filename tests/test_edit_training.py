"""The editing trainers on tiny runs (SPEC S4): each stage's loss decreases, the stages chain
(decoder -> encoder -> matcher -> editing models -> export -> evaluation), runs resume."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("cv2")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: the installed pyfill stays first

from training import edit_decoder, edit_encoder, edit_mappers, matcher  # noqa: E402
from training import harness as H  # noqa: E402

SIZE = 32
COMMON = {"threads": 1, "workers": 0, "tensorboard": False, "log_every": 1}


def _config(module, out: Path, **overrides) -> dict:
    config = H.load_config(module.DEFAULTS)
    config.update(COMMON)
    config["out"] = str(out)
    for key, value in overrides.items():
        H.apply_override(config, f"{key}={json.dumps(value)}")
    return config


def _column(out: Path, name: str) -> np.ndarray:
    with open(out / "log.csv") as f:
        return np.array([float(r[name]) for r in csv.DictReader(f) if r.get(name) not in (None, "")])


def _decreased(values: np.ndarray) -> bool:
    """The mean of the last third of a loss curve is below the mean of its first third."""
    k = max(1, len(values) // 3)
    return float(values[-k:].mean()) < float(values[:k].mean())


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run of every stage at 32 x 32 on 48 faces."""
    root = tmp_path_factory.mktemp("edit_runs")
    cache = str(root / "data")
    data = {"data.count": 48, "data.val_count": 16, "data.cache": cache}
    edit_decoder.train(_config(edit_decoder, root / "decoder", **data, **{
        "model.size": SIZE, "model.base": 8, "model.cap": 16, "disc.base": 8, "disc.cap": 16, "data.batch": 8,
        "max_steps": 30, "checkpoint_every": 15, "sample_every": 0, "lr_g": 0.005, "lr_d": 0.002}))
    edit_encoder.train(_config(edit_encoder, root / "encoder", **data, **{
        "decoder": str(root / "decoder" / "edit_generator.safetensors"), "model.size": SIZE, "model.base": 8,
        "model.cap": 16, "model.hidden": 32, "data.batch": 8, "max_steps": 30, "checkpoint_every": 30,
        "sample_every": 0, "lr": 0.002}))
    for kind in ("matcher", "regressor"):
        matcher.train(_config(matcher, root / kind, **data, **{
            "kind": kind, "model.size": SIZE, "model.base": 8, "model.cap": 16, "model.width": 32, "model.embed": 16,
            "data.batch": 16, "max_steps": 60, "checkpoint_every": 60, "lr": 0.003}))
    for target in ("smile", "conditional"):
        edit_mappers.train(_config(edit_mappers, root / "mappers" / target, **{
            **data, "target": target, "decoder": str(root / "decoder" / "edit_generator.safetensors"),
            "encoder": str(root / "encoder" / "edit_encoder.safetensors"),
            "matcher": str(root / "matcher" / "edit_matcher.safetensors"), "data.val_count": 4,
            "data.batch": 4, "max_steps": 30, "checkpoint_every": 30, "sample_every": 0, "lr": 0.01}))
    return root


def test_every_stage_lowers_its_loss(runs: Path) -> None:
    assert _decreased(_column(runs / "decoder", "rec"))  # the decoder's reconstruction term
    assert _decreased(_column(runs / "encoder", "loss"))  # loss4 (+ the latent term)
    assert _decreased(_column(runs / "matcher", "loss"))  # contrastive
    assert _decreased(_column(runs / "regressor", "loss"))
    for target in ("smile", "conditional"):  # loss1 on the validation faces: below the unedited faces'
        assert _column(runs / "mappers" / target, "val_loss1")[-1] < _unedited_loss1(runs, target), target


@torch.no_grad()
def _unedited_loss1(runs: Path, target: str) -> float:
    """loss1 of the validation faces with dw = 0 (what an untrained mapper gives)."""
    from pyfill.export import load_checkpoint
    from pyfill.models.edit_matcher import load_matcher
    from training import edit_data as D
    from training.matcher import to_unit

    decoder = edit_encoder.load_generator(runs / "decoder" / "edit_generator.safetensors").decoder
    encoder = load_checkpoint(runs / "encoder" / "edit_encoder.safetensors")[0]
    m = load_matcher(runs / "matcher" / "edit_matcher.safetensors")
    x = to_unit(D.make_faces(1, 4, SIZE, runs / "data").images)
    texts = list(edit_mappers.CONDITIONAL_TEXTS) if target == "conditional" else [D.EDIT_TARGETS[target][0]]
    t = m.encode_text(m.tokenize(texts))[torch.arange(len(x)) % len(texts)]
    return float(edit_mappers.loss1(m.encode_image(decoder(encoder(x))), t))


def test_the_mapper_loss_is_the_seeds_combination(runs: Path) -> None:
    state = runs / "mappers" / "smile" / "checkpoints" / "step_00000030" / "state.json"
    cfg = json.loads(state.read_text())["config"]
    with open(runs / "mappers" / "smile" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    for r in rows[:5]:
        want = float(r["loss1"]) + cfg["l1"] * float(r["loss2"]) + cfg["l2"] * float(r["loss3"])
        assert float(r["loss"]) == pytest.approx(want, rel=1e-5)


def test_runs_resume_where_they_stopped(runs: Path, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "enc"
    shutil.copytree(runs / "encoder", out)
    (out / "run.lock").unlink(missing_ok=True)
    cfg = json.loads((out / "checkpoints" / "step_00000030" / "state.json").read_text())["config"]
    cfg["out"], cfg["max_steps"] = str(out), 34
    result = edit_encoder.train(cfg, resume=True)
    assert result["steps"] == 34
    assert [int(r["step"]) for r in csv.DictReader(open(out / "log.csv"))][-4:] == [31, 32, 33, 34]


@torch.no_grad()
def _param_error(runs: Path, encoder_file: Path) -> float:
    """Mean squared distance of E(render) from the decoder's mapping of the render's own
    parameters, over the validation faces."""
    from pyfill.export import load_checkpoint
    from training import edit_data as D
    from training.edit_decoder import param_z
    from training.matcher import to_unit

    gen = edit_encoder.load_generator(runs / "decoder" / "edit_generator.safetensors")
    encoder = load_checkpoint(encoder_file)[0].eval()
    faces = D.make_faces(1, 16, SIZE, runs / "data")
    return float((encoder(to_unit(faces.images)) - gen.ws(param_z(faces.params))).pow(2).mean())


def test_the_parameter_term_pulls_the_encoder_to_the_renders_own_latents(runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "enc_param"
    edit_encoder.train(_config(edit_encoder, out, **{
        "data.count": 48, "data.val_count": 16, "data.cache": str(runs / "data"),
        "decoder": str(runs / "decoder" / "edit_generator.safetensors"), "model.size": SIZE, "model.base": 8,
        "model.cap": 16, "model.hidden": 32, "data.batch": 8, "max_steps": 30, "checkpoint_every": 30,
        "sample_every": 0, "lr": 0.002, "k_param": 20.0}))
    param = _column(out, "param")
    assert (param > 0).all() and _decreased(param)
    assert (_column(runs / "encoder", "param") == 0).all()  # off by default
    # the same run without the term lands further from the renders' latents
    assert _param_error(runs, out / "edit_encoder.safetensors") < \
        0.8 * _param_error(runs, runs / "encoder" / "edit_encoder.safetensors")


def test_a_mismatched_decoder_is_refused(runs: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must match the decoder"):
        edit_encoder.train(_config(edit_encoder, tmp_path / "e", **{
            "decoder": str(runs / "decoder" / "edit_generator.safetensors"), "model.size": 64,
            "data.count": 8, "data.cache": str(runs / "data")}))
    with pytest.raises(ValueError, match="target must be one of"):
        edit_mappers.train(_config(edit_mappers, tmp_path / "m", target="moustache"))


def test_the_chain_exports_and_the_evaluation_runs(runs: Path, tmp_path: Path) -> None:
    from training import edit_export, evaluate_edit

    written = edit_export.export_all(runs, tmp_path / "onnx")
    names = sorted(p.name for p in written)
    assert names == ["edit_decoder.onnx", "edit_encoder.onnx", "edit_mapper_cond.onnx", "edit_mapper_smile.onnx",
                     "edit_matcher_image.onnx", "edit_matcher_text.onnx"]
    from pyfill.tasks.edit import Editor

    ed = Editor(encoder=tmp_path / "onnx" / "edit_encoder.onnx", decoder=tmp_path / "onnx" / "edit_decoder.onnx",
                text_encoder=tmp_path / "onnx" / "edit_matcher_text.onnx",
                conditional=tmp_path / "onnx" / "edit_mapper_cond.onnx",
                mappers={"a smiling face": tmp_path / "onnx" / "edit_mapper_smile.onnx"})
    res = ed.edit(np.full((48, 48, 3), 128, np.uint8), "a smiling face", 1.0, align=False)
    assert res.image.shape == (48, 48, 3) and res.model == "edit_mapper_smile"
    result = evaluate_edit.evaluate(runs, tmp_path / "eval", count=8, cache=runs / "data", data_count=48)
    smile = result["targets"]["smile"]
    assert [p["alpha"] for p in smile["mapper"]] == list(evaluate_edit.ALPHAS)
    assert smile["mapper"][0]["target"] == pytest.approx(0.0, abs=1e-6)  # alpha 0: the reconstruction
    assert set(smile) >= {"mapper", "global direction", "conditional"}
    assert (tmp_path / "eval" / "edit_smile.png").is_file()
