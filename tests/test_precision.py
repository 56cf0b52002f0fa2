"""bf16 on CPUs that have it, guarded against fp32 on a probe input."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from pyfill.engine.selection import Environment, ModelForm, choose_backend, cpu_has_bf16

_FORM = ModelForm(onnx=True, checkpoint=True, tensorrt_engine=False, foreign=False, fp16=True, bf16=True)
needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no AMX or AVX512-BF16")


def test_auto_precision_is_guarded_bf16_only_where_the_cpu_has_it() -> None:
    c = choose_backend("auto", "auto", "auto", _FORM, Environment(openvino=True, cpu_bf16=True))
    assert (c.backend, c.precision, c.guard) == ("openvino", "bf16", True) and "native bf16" in c.precision_reason
    c = choose_backend("torch", "cpu", "auto", _FORM, Environment(torch=True, cpu_bf16=True))
    assert (c.precision, c.guard) == ("bf16", True)
    c = choose_backend("auto", "auto", "auto", _FORM, Environment(openvino=True, cpu_bf16=False))
    assert (c.precision, c.guard) == ("fp32", False) and "no native bf16" in c.precision_reason
    c = choose_backend("onnxruntime", "auto", "auto", _FORM, Environment(cpu_bf16=True))
    assert c.precision == "fp32"
    no_bf16 = ModelForm(onnx=True, checkpoint=False, tensorrt_engine=False, foreign=False, fp16=True, bf16=False)
    c = choose_backend("auto", "auto", "auto", no_bf16, Environment(openvino=True, cpu_bf16=True))
    assert c.precision == "fp32" and "does not support bf16" in c.precision_reason


def test_forced_bf16_is_refused_where_it_cannot_run() -> None:
    c = choose_backend("openvino", "cpu", "bf16", _FORM, Environment(openvino=True, cpu_bf16=True))
    assert (c.precision, c.guard) == ("bf16", False)
    with pytest.raises(ValueError, match="needs a CPU with AMX or AVX512-BF16"):
        choose_backend("openvino", "cpu", "bf16", _FORM, Environment(openvino=True))
    with pytest.raises(ValueError, match="bf16 runs on the CPU with the openvino or torch backend, not onnxruntime"):
        choose_backend("onnxruntime", "cpu", "bf16", _FORM, Environment(cpu_bf16=True))


@needs_bf16
def test_shipped_restore_runs_bf16_within_two_grey_levels_of_fp32() -> None:
    import pyfill

    photo = np.random.default_rng(0).integers(0, 256, (96, 128, 3), dtype=np.uint8)
    auto, fp32 = pyfill.Engine("restore"), pyfill.Engine("restore", precision="fp32")
    assert auto.info["precision"] == "bf16"
    # the choice's own reason, then the probe's verdict added to it
    assert re.fullmatch(r"auto: this CPU has native bf16 \(AMX or AVX512-BF16\); a probe input agrees with fp32 "
                        r"\(restored: [0-2] grey levels?\)", auto.info["precision_because"]), auto.info["precision_because"]
    assert fp32.info["precision"] == "fp32"
    a, b = auto(photo), fp32(photo)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2
    assert not np.array_equal(a, b)  # it really ran in bf16


torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from pyfill.manifest import Manifest, TensorSpec  # noqa: E402


class _WideRange(nn.Module):
    """y = ((4096 + 1024 x) - 4096) / 1024 = x in exact arithmetic; bf16's 8-bit mantissa
    cannot hold 4096 + 1024 x finely enough, so x comes back in steps of 1/32 (8 grey levels)."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Conv2d(3, 3, 1)
        self.down = nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.up.weight.copy_(torch.eye(3)[:, :, None, None] * 1024.0)
            self.up.bias.fill_(4096.0)
            self.down.weight.copy_(torch.eye(3)[:, :, None, None] / 1024.0)
            self.down.bias.fill_(-4.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.up(x))


@needs_bf16
def test_a_model_that_bf16_breaks_falls_back_to_fp32(tmp_path: Path) -> None:
    import pyfill
    from pyfill.export import export_onnx

    manifest = Manifest(task="image-to-image", family="test-wide-range", config={},
                        inputs=[TensorSpec("image", "image", 3)], outputs=[TensorSpec("out", "image", 3)])
    onnx = export_onnx(_WideRange().eval(), tmp_path / "wide.onnx", manifest)
    x = np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    forced = pyfill.Engine(onnx, precision="bf16")
    assert np.abs(forced(x).astype(int) - x.astype(int)).max() > 2  # bf16 really breaks it
    auto = pyfill.Engine(onnx)
    assert auto.info["precision"] == "fp32"
    assert "bf16 was tried and differs from fp32" in auto.info["precision_because"]
    assert np.abs(auto(x).astype(int) - x.astype(int)).max() <= 1


@needs_bf16
def test_torch_backend_autocasts_to_bf16_on_the_cpu(unet_files) -> None:
    import pyfill

    x = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    bf16 = pyfill.Engine(unet_files[0], backend="torch", precision="bf16")
    fp32 = pyfill.Engine(unet_files[0], backend="torch", precision="fp32")
    assert bf16.info["precision"] == "bf16"
    d = np.abs(bf16(x).astype(int) - fp32(x).astype(int)).max()
    assert 0 < d <= 8  # rounded differently, but the same picture


@needs_bf16
def test_a_failed_guard_falls_back_to_fp32_on_the_same_backend_and_threads(monkeypatch) -> None:
    """Where bf16 differs from fp32 on the probe, the engine keeps its backend and thread count
    and runs fp32, and says why."""
    import pyfill
    import pyfill.engine.engine as E

    monkeypatch.setattr(E, "outputs_agree", lambda got, want: (False, "restored: 9 grey levels"))
    engine = pyfill.Engine("restore", threads=1)
    assert (engine.info["backend"], engine.info["precision"]) == ("openvino", "fp32")
    assert engine.backend._config["INFERENCE_NUM_THREADS"] == 1
    assert engine.backend.compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert engine.info["precision_because"] == ("fp32: bf16 was tried and differs from fp32 on a probe input "
                                                "(restored: 9 grey levels; allowed: 2 grey levels, relative 1e-2)")
