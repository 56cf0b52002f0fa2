"""Other projects' checkpoints through spandrel (pyfill.foreign): architectures built with
spandrel's own classes at random weights and small configs, saved as .pth / .safetensors the way
their projects publish them, then detected, exported, run by the Engine and compared with the
eager PyTorch module they were built from."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
try:
    import spandrel  # noqa: F401  (torchvision built for another torch fails here with a RuntimeError)
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.DAT import DAT
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.GFPGAN import GFPGAN
    from spandrel.architectures.HAT import HAT
    from spandrel.architectures.NAFNet import NAFNet
    from spandrel.architectures.SCUNet import SCUNet
    from spandrel.architectures.SwinIR import SwinIR
except Exception as exc:  # noqa: BLE001
    pytest.skip(f"spandrel cannot be imported here ({type(exc).__name__}: {exc})", allow_module_level=True)
from safetensors.torch import save_file  # noqa: E402

from pyfill import foreign  # noqa: E402
from pyfill.cli import main  # noqa: E402
from pyfill.engine import Engine  # noqa: E402
from pyfill.engine import files as F  # noqa: E402
from pyfill.manifest import read_onnx_manifest  # noqa: E402

# name -> (builder, spandrel architecture id, scale, whether spandrel says it tiles, exports to ONNX)
ARCHS: dict[str, tuple[Callable[[], Any], str, int, bool, bool]] = {
    "esrgan": (lambda: ESRGAN(num_filters=16, num_blocks=2, scale=4), "ESRGAN", 4, True, True),
    "compact": (lambda: Compact(num_feat=16, num_conv=4, upscale=4), "Compact", 4, True, True),
    "swinir": (lambda: SwinIR(img_size=64, embed_dim=24, depths=[2, 2], num_heads=[2, 2], window_size=8, upscale=2,
                              upsampler="pixelshuffle"), "SwinIR", 2, False, False),
    "hat": (lambda: HAT(img_size=64, embed_dim=24, depths=(2, 2), num_heads=(2, 2), window_size=8, upscale=2,
                        num_feat=16, squeeze_factor=6), "HAT", 2, True, False),
    "nafnet": (lambda: NAFNet(width=8, middle_blk_num=1, enc_blk_nums=[1, 1], dec_blk_nums=[1, 1]), "NAFNet", 1, True, True),
    "scunet": (lambda: SCUNet(config=[1] * 7, dim=64), "SCUNet", 1, False, False),
    "dat": (lambda: DAT(img_size=64, embed_dim=48, split_size=[4, 8], depth=[2, 2], num_heads=[2, 2], upscale=2),
            "DAT", 2, True, False),
}


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYFILL_CACHE", str(tmp_path_factory.mktemp("pyfill-cache")))
        yield


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Path]]:
    """name -> (eager module, file). ESRGAN as a BasicSR-style .pth ({"params_ema": state}),
    Compact and HAT as .safetensors, the rest as plain .pth state dicts."""
    folder = tmp_path_factory.mktemp("foreign")
    out: dict[str, tuple[Any, Path]] = {}
    for name, (build, *_rest) in ARCHS.items():
        torch.manual_seed(0)
        net = build().eval()
        state = {k: v.contiguous() for k, v in net.state_dict().items()}
        if name in ("compact", "hat"):
            path = folder / f"{name}.safetensors"
            save_file(state, str(path))
        else:
            path = folder / f"{name}.pth"
            torch.save({"params_ema": state} if name == "esrgan" else state, path)
        out[name] = (net, path)
    return out


def _image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((h, w, 3), dtype=np.float32)


def _eager(net: Any, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        y = net(torch.from_numpy(image.transpose(2, 0, 1)[None].copy())).clamp(0, 1)
    return y[0].numpy().transpose(1, 2, 0)


@pytest.mark.parametrize("name", list(ARCHS))
def test_detects_the_architecture_and_derives_the_manifest(built: dict[str, tuple[Any, Path]], name: str) -> None:
    _, arch_id, scale, tiles, _ = ARCHS[name]
    desc = foreign.load_descriptor(built[name][1])
    assert desc.architecture.id == arch_id
    m = foreign.manifest_from_descriptor(desc, built[name][1])
    assert m.family == f"spandrel-{arch_id}"
    assert m.size.scale == scale
    assert (m.inputs[0].channels, m.outputs[0].channels) == (3, 3)
    assert m.size.min_size == max(1, desc.size_requirements.minimum)
    assert m.tiling.supported is tiles
    assert m.fp16 is desc.supports_half and m.bf16 is desc.supports_bfloat16
    assert m.provenance["source"] == built[name][1].name


@pytest.mark.parametrize("name", [n for n, a in ARCHS.items() if a[4]])
def test_engine_exports_once_and_matches_eager(built: dict[str, tuple[Any, Path]], name: str) -> None:
    net, path = built[name]
    scale = ARCHS[name][2]
    engine = Engine(path, device="cpu", precision="fp32", tile=0)
    assert engine.info["backend"] in ("onnxruntime", "openvino")
    assert engine.info["manifest"]["family"] == f"spandrel-{ARCHS[name][1]}"
    onnx = F.locate(path).onnx
    assert onnx is not None and onnx.parent.name == "foreign"
    stamp = onnx.stat().st_mtime_ns
    image = _image(40, 52)
    got = engine(image)
    want = _eager(net, image)
    assert got.shape == (40 * scale, 52 * scale, 3)
    np.testing.assert_allclose(got, want, atol=1e-5)
    Engine(path, device="cpu")  # a second load reuses the cached export
    assert F.locate(path).onnx == onnx and onnx.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("name", [n for n, a in ARCHS.items() if not a[4]])
def test_models_that_do_not_export_run_on_torch_and_say_why(built: dict[str, tuple[Any, Path]], name: str) -> None:
    net, path = built[name]
    with pytest.warns(UserWarning, match="does not export to ONNX cleanly, so it runs on the torch backend"):
        files = F.locate(path)
    assert files.onnx is None and files.checkpoint == path
    assert files.manifest is not None
    why = {"swinir": "differs from PyTorch", "hat": "differs from PyTorch", "dat": "differs from PyTorch",
           "scunet": "outside the allow-list"}[name]
    assert files.manifest.provenance["onnx_export"].startswith("failed: ") and why in files.manifest.provenance["onnx_export"]
    with pytest.raises(ValueError, match="has no ONNX form .*run it with backend='torch'"):
        F.onnx_for_runtime(files)
    with pytest.warns(UserWarning, match="runs on the torch backend"):
        engine = Engine(path, backend="torch", device="cpu", precision="fp32", tile=0)
    image = _image(64, 72, seed=1)
    np.testing.assert_allclose(engine(image), _eager(net, image), atol=1e-5)
    with pytest.warns(UserWarning, match="runs on the torch backend"):
        auto = Engine(path, device="cpu", precision="fp32", tile=0)  # backend="auto" picks torch
    assert auto.info["backend"] == "torch" and "no ONNX form" in auto.info["selected_because"]


def test_tiled_upscale_matches_the_whole_image(built: dict[str, tuple[Any, Path]]) -> None:
    """A user's x4 upscaler on a large image, tiled on the CPU: seamless within one grey level,
    and equal to eager PyTorch on the whole image."""
    net, path = built["compact"]
    image = _image(150, 170, seed=2)
    tiled = Engine(path, device="cpu", precision="fp32", tile=64, tile_overlap=16)(image)
    whole = Engine(path, device="cpu", precision="fp32", tile=0)(image)
    assert tiled.shape == whole.shape == (600, 680, 3)
    assert np.abs(tiled - whole).max() <= 1 / 255
    assert np.abs(tiled - _eager(net, image)).max() <= 1 / 255


def test_tiling_is_advised_only_where_tiles_match(built: dict[str, tuple[Any, Path]]) -> None:
    """spandrel calls NAFNet tileable, but its channel attention pools the whole image: the
    measured difference keeps tiling off; ESRGAN's stays within one grey level."""
    for name, expected in (("nafnet", False), ("esrgan", True)):
        net, path = built[name]
        manifest = Engine(path, device="cpu", precision="fp32").manifest
        desc_manifest = foreign.manifest_from_descriptor(foreign.load_descriptor(path))
        assert desc_manifest.tiling.supported is True
        diff = foreign.tiling_difference(foreign.descriptor_module(foreign.load_descriptor(path)), desc_manifest)
        assert manifest.tiling.supported is expected and (diff <= 1 / 255) is expected
        assert manifest.provenance["tiling_probe_grey_levels"] == round(diff * 255, 3)


def test_tiling_probe_on_a_window_attention_model(built: dict[str, tuple[Any, Path]]) -> None:
    """SwinIR: spandrel discourages tiling, so the manifest says no; the probe measures it."""
    with pytest.warns(UserWarning, match="runs on the torch backend"):
        engine = Engine(built["swinir"][1], backend="torch", device="cpu", tiling="probe", tile=64, tile_overlap=16)
    assert engine.manifest.tiling.supported is False
    assert engine.info["tiling"].startswith("probe: tiles of 64 px vs whole image, max difference")


def test_face_model_runs_at_its_one_size() -> None:
    torch.manual_seed(0)
    desc = foreign.load_descriptor_from_state_dict(GFPGAN().state_dict())
    m = foreign.manifest_from_descriptor(desc)
    assert m.config["purpose"] == "FaceSR"
    assert m.size.fixed == (512, 512) and m.size.resize == "stretch"
    assert m.tiling.supported is False


def test_cli_export_and_info(built: dict[str, tuple[Any, Path]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime as ort

    net, path = built["esrgan"]
    out = tmp_path / "esrgan.onnx"
    assert main(["export", str(path), "-o", str(out)]) == 0
    manifest = read_onnx_manifest(out)
    assert manifest is not None and manifest.family == "spandrel-ESRGAN" and manifest.size.scale == 4
    x = _image(24, 20, seed=3)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        None, {"image": x.transpose(2, 0, 1)[None].copy()})[0][0].transpose(1, 2, 0)
    np.testing.assert_allclose(got, _eager(net, x), atol=2e-4)
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    text = capsys.readouterr().out
    assert "family spandrel-ESRGAN" in text and "'scale': 4" in text


def test_a_stored_checkpoint_runs_by_name(built: dict[str, tuple[Any, Path]], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYFILL_HOME", str(tmp_path / "home"))
    net, path = built["esrgan"]
    assert main(["models", "add", str(path), "--name", "my-x4"]) == 0
    engine = Engine.from_pretrained("my-x4", device="cpu", precision="fp32", tile=0)
    image = _image(20, 24, seed=4)
    np.testing.assert_allclose(engine(image), _eager(net, image), atol=1e-5)


def test_pyfill_checkpoint_beside_its_json_is_not_foreign(tmp_path: Path) -> None:
    (tmp_path / "a.safetensors").write_bytes(b"")
    assert foreign.is_foreign_file(tmp_path / "a.safetensors")
    (tmp_path / "a.json").write_text("{}")
    assert not foreign.is_foreign_file(tmp_path / "a.safetensors")
    assert foreign.is_foreign_file(tmp_path / "b.pth") and not foreign.is_foreign_file(tmp_path / "b.onnx")


def test_unknown_architecture_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "mystery.pth"
    torch.save({"encoder.weight": torch.zeros(4, 3, 3, 3), "head.bias": torch.zeros(4)}, path)
    with pytest.raises(ValueError, match=r"mystery\.pth: spandrel .* does not recognise this architecture"):
        Engine(path, device="cpu")
    assert main(["info", str(path)]) != 0


class _Payload:
    """A pickle that creates a file when it is unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_a_pickle_that_runs_code_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        torch.save({"conv.weight": torch.zeros(1), "payload": _Payload(marker)}, f)
    # the same pickle does run code when loaded without weights_only: the test can fail
    probe = tmp_path / "probe.pkl"
    probe.write_bytes(pickle.dumps(_Payload(tmp_path / "ran")))
    pickle.loads(probe.read_bytes()).close()
    assert (tmp_path / "ran").exists()
    with pytest.raises(ValueError, match=r"evil\.pth: refused: the file holds Python objects other than tensors"):
        Engine(path, device="cpu")
    with pytest.raises(ValueError, match="refused"):
        foreign.read_state_dict(path)
    assert not marker.exists()


def test_missing_extra_message_names_the_pair(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def broken(name: str, *args: Any) -> Any:
        if name == "spandrel":
            raise RuntimeError("operator torchvision::nms does not exist")
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ImportError, match="torch and torchvision must be a matching pair"):
        foreign._spandrel()

