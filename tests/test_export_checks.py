"""What ``export_onnx`` checks before it writes a file, and the exporter's small helpers.

A module that bakes its batch size or its image size into the traced graph (a Python number
taken from a shape) gives an ONNX file that runs at other shapes but computes something else
there. The export must refuse it: the dynamic export compares ONNX Runtime with PyTorch at batch 1
and at a second, non-square size; the fixed-size export at batches 1 and 2."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from pyfill.manifest import Manifest, SizeRequirements, TensorSpec

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from pyfill.export import (  # noqa: E402
    ExportError,
    _dynamic_checks,
    cache_dir,
    default_tensorrt_profile,
    export_onnx,
    onnx_operators,
)


def manifest(fixed: tuple[int, int] | None = None, multiple_of: int = 8, min_size: int = 1) -> Manifest:
    return Manifest(task="restore", family="probe", config={}, inputs=[TensorSpec("image")],
                    outputs=[TensorSpec("out")],
                    size=SizeRequirements(multiple_of=multiple_of, min_size=min_size, fixed=fixed))


class BakedBatch(torch.nn.Module):
    def forward(self, x):
        return x * float(x.shape[0])  # a Python number: the traced batch is baked into the graph


class BakedWidth(torch.nn.Module):
    def forward(self, x):
        return x * (float(x.shape[3]) / 64.0)


class Honest(torch.nn.Module):
    def forward(self, x):
        return x * 0.5 + x.mean(dim=(2, 3), keepdim=True)


def test_a_graph_with_a_baked_batch_size_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"^ONNX output 'out' differs from PyTorch \(shape \(1, 3, 32, 32\) vs "
                                          r"\(1, 3, 32, 32\), max abs error"):
        export_onnx(BakedBatch(), tmp_path / "batch.onnx", manifest=manifest())
    with pytest.raises(ExportError, match=r"^ONNX output 'out' differs from PyTorch \(shape \(1, 3, 48, 48\)"):
        export_onnx(BakedBatch(), tmp_path / "batch.onnx", manifest=manifest(fixed=(48, 48)), dynamic=True)
    assert not list(tmp_path.iterdir())  # nothing written, no temporary left


def test_a_graph_with_a_baked_image_size_is_refused_unless_the_size_is_fixed(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"^ONNX output 'out' differs from PyTorch \(shape \(2, 3, 40, 48\)"):
        export_onnx(BakedWidth(), tmp_path / "width.onnx", manifest=manifest())
    # with a fixed size the width never changes, so the same module exports
    out = export_onnx(BakedWidth(), tmp_path / "fixed.onnx", manifest=manifest(fixed=(32, 64)))
    assert out.is_file()
    assert export_onnx(Honest(), tmp_path / "honest.onnx", manifest=manifest()).is_file()


@pytest.mark.parametrize("multiple_of,min_size", [(8, 1), (64, 1), (48, 64), (1, 1), (16, 40)])
def test_dynamic_checks_cover_batches_1_and_2_and_two_sizes_within_the_rules(multiple_of: int, min_size: int) -> None:
    m = manifest(multiple_of=multiple_of, min_size=min_size)
    first, second = _dynamic_checks(m, spatial_dynamic=True)
    assert (first["batch"], second["batch"]) == (1, 2)
    assert first["height"] == first["width"] and second["height"] != second["width"]  # the second is not square
    assert (first["height"], first["width"]) != (second["height"], second["width"])
    for check in (first, second):
        for side in (check["height"], check["width"]):
            assert side % multiple_of == 0 and side >= min_size and side >= 32
    # the first is the smallest size the rules allow at or above 32 pixels
    assert first["height"] == max(-(-max(min_size, 32) // multiple_of) * multiple_of, multiple_of)
    assert _dynamic_checks(m, spatial_dynamic=False) == [{"batch": 1}, {"batch": 2}]


def test_cache_dir_follows_pyfill_cache_then_xdg_then_home_and_creates_it(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PYFILL_CACHE", str(tmp_path / "a" / "b"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()
    monkeypatch.delenv("PYFILL_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "pyfill" and (tmp_path / "xdg" / "pyfill").is_dir()
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "pyfill" and (tmp_path / "home" / ".cache" / "pyfill").is_dir()


def test_onnx_operators_lists_the_graphs_operators_and_names_the_extra_when_onnx_is_missing(monkeypatch,
                                                                                         tmp_path: Path) -> None:
    path = export_onnx(Honest(), tmp_path / "honest.onnx", manifest=manifest())
    import onnx

    assert onnx_operators(path) == {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Mul", "ReduceMean", "Add"} <= onnx_operators(path)
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ImportError, match=r"pip install 'pyfill\[train\]'"):
        onnx_operators(path)


def test_default_profile_rounds_to_the_rules_and_fills_free_axes_of_other_inputs() -> None:
    m = Manifest(task="generate", family="probe", config={},
                 inputs=[TensorSpec("image"), TensorSpec("latent", kind="tensor", shape=[None, 512]),
                         TensorSpec("labels", kind="labels", classes=5)],
                 outputs=[TensorSpec("out")], size=SizeRequirements(multiple_of=48, min_size=100))
    prof = default_tensorrt_profile(m)
    assert prof["latent"] == {"min": (1, 1, 512), "opt": (1, 1, 512), "max": (8, 1, 512)}
    # 64 -> 144 (the next multiple of 48 at or above min_size 100), 512 -> 528, and 2048 -> 2064 (a model
    # that cannot tile: Tiling() is off by default)
    assert prof["image"] == {"min": (1, 3, 144, 144), "opt": (1, 3, 528, 528), "max": (8, 3, 2064, 2064)}
    assert prof["labels"]["min"] == (1, 5, 144, 144)
    small = default_tensorrt_profile(manifest(multiple_of=128, min_size=1))
    assert small["image"]["min"] == (1, 3, 128, 128) and small["image"]["opt"] == (1, 3, 512, 512)
    fixed = default_tensorrt_profile(manifest(fixed=(96, 160)))
    assert fixed["image"] == {"min": (1, 3, 96, 160), "opt": (1, 3, 96, 160), "max": (8, 3, 96, 160)}
    assert m.tiling.supported is False


# ---- checkpoints ------------------------------------------------------------------------------

def test_checkpoint_paths_take_either_file_or_the_stem_and_keep_dotted_names(tmp_path: Path) -> None:
    from pyfill.export import checkpoint_paths

    pair = (tmp_path / "m.safetensors", tmp_path / "m.json")
    assert checkpoint_paths(tmp_path / "m") == checkpoint_paths(tmp_path / "m.safetensors") == pair
    assert checkpoint_paths(str(tmp_path / "m.json")) == pair
    assert checkpoint_paths(tmp_path / "restore.v2") == (tmp_path / "restore.v2.safetensors", tmp_path / "restore.v2.json")
    assert checkpoint_paths(tmp_path / "restore.v2.json") == (tmp_path / "restore.v2.safetensors",
                                                              tmp_path / "restore.v2.json")


def test_save_checkpoint_makes_folders_and_tags_the_weights_for_other_readers(tmp_path: Path) -> None:
    from safetensors import safe_open

    from pyfill.export import load_checkpoint, save_checkpoint
    from pyfill.models import build_model, make_manifest

    module = build_model("unet", {"base": 4, "depth": 2})
    path = save_checkpoint(module, make_manifest("unet", {"base": 4, "depth": 2}), tmp_path / "a" / "b" / "unet.v1")
    assert path == tmp_path / "a" / "b" / "unet.v1.safetensors" and path.with_suffix(".json").is_file()
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"format": "pt", "family": "unet"}
        assert sorted(f.keys()) == sorted(module.state_dict())
    loaded, manifest = load_checkpoint(path)
    assert manifest.family == "unet" and not loaded.training
    for k, v in module.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_missing_safetensors_names_the_train_extra(monkeypatch, tmp_path: Path) -> None:
    from pyfill.export import load_checkpoint, save_checkpoint
    from pyfill.models import build_model, make_manifest

    saved = save_checkpoint(build_model("unet", {"base": 4, "depth": 2}), make_manifest("unet", {"base": 4, "depth": 2}),
                            tmp_path / "unet")
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(ImportError, match=r"'safetensors\.torch'.*pip install 'pyfill\[train\]'"):
        save_checkpoint(build_model("unet", {"base": 4, "depth": 2}), make_manifest("unet", {"base": 4, "depth": 2}),
                        tmp_path / "again")
    with pytest.raises(ImportError, match=r"'safetensors\.torch'.*pip install 'pyfill\[train\]'"):
        load_checkpoint(saved)
    monkeypatch.setitem(sys.modules, "torch", None)
    from pyfill.export import _check_config_fits

    with pytest.raises(ImportError, match=r"'torch'.*pip install 'pyfill\[train\]'"):
        _check_config_fits(make_manifest("unet", {"base": 4, "depth": 2}), saved)


def test_refused_checkpoints_say_which_file_and_why(tmp_path: Path) -> None:
    import json

    from safetensors.torch import save_file

    from pyfill.export import load_checkpoint, save_checkpoint
    from pyfill.models import build_model, make_manifest

    small = {"base": 4, "depth": 2}
    module = build_model("unet", small)
    path = save_checkpoint(module, make_manifest("unet", small), tmp_path / "unet")
    with pytest.raises(FileNotFoundError, match=rf"^checkpoint weights not found: {tmp_path / 'nope.safetensors'}$"):
        load_checkpoint(tmp_path / "nope")
    # a manifest whose config cannot build the model
    meta = json.loads(path.with_suffix(".json").read_text())
    bad = tmp_path / "bad"
    (tmp_path / "bad.safetensors").write_bytes(path.read_bytes())
    (tmp_path / "bad.json").write_text(json.dumps({**meta, "config": {**meta["config"], "base": -3}}))
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'bad.json'}: config .* does not build a 'unet' model \("):
        load_checkpoint(bad)
    # a config describing more weights than the file holds: the figure is the config's float32 bytes
    big = {**meta["config"], "base": 8}
    (tmp_path / "big.safetensors").write_bytes(path.read_bytes())
    (tmp_path / "big.json").write_text(json.dumps({**meta, "config": big}))
    need = sum(v.numel() * 4 for v in build_model("unet", big).state_dict().values())
    have = path.stat().st_size
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'big.safetensors'}: the 'unet' config in big\.json describes "
                                         rf"{need:,} bytes of weights but the file holds {have:,}$"):
        load_checkpoint(tmp_path / "big")
    # weights with one tensor more than the model has: the strict load refuses them
    state = {k: v.contiguous() for k, v in module.state_dict().items()}
    save_file({**state, "extra.weight": torch.zeros(3)}, str(tmp_path / "extra.safetensors"))
    (tmp_path / "extra.json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'extra.safetensors'}: weights do not match the 'unet' config "
                                         rf"in .*extra\.json: [\s\S]*extra\.weight"):
        load_checkpoint(tmp_path / "extra")
    (tmp_path / "junk.safetensors").write_bytes(b"\x08" + b"\x00" * 7 + b"not json")
    (tmp_path / "junk.json").write_text(path.with_suffix(".json").read_text())
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'junk.safetensors'}: not a readable safetensors file \("):
        load_checkpoint(tmp_path / "junk")


def test_example_inputs_are_reproducible_and_draw_every_class() -> None:
    from pyfill.export import example_inputs

    m = Manifest(task="generate", family="probe", config={},
                 inputs=[TensorSpec("labels", kind="labels", classes=4, colour_space="none"), TensorSpec("image")],
                 outputs=[TensorSpec("out")], size=SizeRequirements(multiple_of=16, min_size=40))
    a, b = example_inputs(m, batch=2), example_inputs(m, batch=2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert a["image"].shape == (2, 3, 48, 48)  # 32 rounded to the rules: at least 40, a multiple of 16
    onehot = a["labels"]
    assert onehot.shape == (2, 4, 48, 48) and np.all(onehot.sum(axis=1) == 1)
    assert set(np.unique(onehot.argmax(axis=1))) == {0, 1, 2, 3}
    assert not np.array_equal(example_inputs(m, seed=1)["image"], example_inputs(m, seed=0)["image"])


def test_static_sizes_follow_the_fixed_size_or_round_the_given_one() -> None:
    from pyfill.export import static_export_size

    assert static_export_size(manifest(fixed=(96, 160))) == (96, 160)
    assert static_export_size(manifest(multiple_of=8), (1, 1)) == (8, 8)
    assert static_export_size(manifest(multiple_of=8), (100, 30)) == (104, 32)
    for bad in ((0, 5), (5, 0)):
        with pytest.raises(ValueError, match=rf"^static_size must be positive, got \({bad[0]}, {bad[1]}\)$"):
            static_export_size(manifest(), bad)


def test_default_profile_of_a_tiling_model_reaches_1024_rounded_up() -> None:
    from pyfill.manifest import Tiling

    m = manifest(multiple_of=24)
    m.tiling = Tiling(supported=True, tile=256, overlap=16)
    prof = default_tensorrt_profile(m)["image"]
    # 64 -> 72, 512 -> 528, 1024 -> 1032 (multiples of 24)
    assert prof == {"min": (1, 3, 72, 72), "opt": (1, 3, 528, 528), "max": (8, 3, 1032, 1032)}
    one = default_tensorrt_profile(manifest(multiple_of=1))["image"]
    assert one == {"min": (1, 3, 64, 64), "opt": (1, 3, 512, 512), "max": (8, 3, 2048, 2048)}
    tiled_one = manifest(multiple_of=1)
    tiled_one.tiling = Tiling(supported=True, tile=256, overlap=16)
    assert default_tensorrt_profile(tiled_one)["image"]["max"] == (8, 3, 1024, 1024)


def test_the_exported_graph_carries_the_manifests_names_and_folders_are_made(tmp_path: Path) -> None:
    import onnx

    path = export_onnx(Honest(), tmp_path / "a" / "b" / "honest.onnx", manifest=manifest())
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["out"]
    with pytest.raises(ValueError, match=r"^export_onnx\(module, \.\.\.\) needs the module's manifest$"):
        export_onnx(Honest(), tmp_path / "x.onnx")


@pytest.mark.parametrize("missing", ["torch", "onnx"])
def test_exporting_without_torch_or_onnx_names_the_train_extra(monkeypatch, tmp_path: Path, missing: str) -> None:
    monkeypatch.setitem(sys.modules, missing, None)
    with pytest.raises(ImportError, match=rf"'{missing}'.*pip install 'pyfill\[train\]'"):
        export_onnx(Honest(), tmp_path / "x.onnx", manifest=manifest())


def _dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_dynamic_axes_are_named_batch_height_width_and_a_fixed_size_stays_fixed(tmp_path: Path) -> None:
    import onnx

    graph = onnx.load(str(export_onnx(Honest(), tmp_path / "dyn.onnx", manifest=manifest()))).graph
    assert _dims(graph.input[0]) == ["batch", 3, "height", "width"]
    assert _dims(graph.output[0]) == ["batch", 3, "height", "width"]
    graph = onnx.load(str(export_onnx(Honest(), tmp_path / "fixed.onnx", manifest=manifest(fixed=(48, 40))))).graph
    assert _dims(graph.input[0]) == ["batch", 3, 48, 40]
    graph = onnx.load(str(export_onnx(Honest(), tmp_path / "static.onnx", manifest=manifest(), dynamic=False,
                                      static_size=(30, 20)))).graph
    assert _dims(graph.input[0]) == [1, 3, 32, 24]


class Cumulative(torch.nn.Module):
    def forward(self, x):
        return x.cumsum(dim=3)  # CumSum: outside the operator allow-list


class Untraceable(torch.nn.Module):
    def __init__(self, message: str) -> None:
        super().__init__()
        self.message = message

    def forward(self, x):
        raise RuntimeError(self.message)


def test_operators_outside_the_allow_list_and_untraceable_models_are_export_errors(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"^exported graph uses operators outside the allow-list: \['CumSum'\]$"):
        export_onnx(Cumulative(), tmp_path / "cum.onnx", manifest=manifest())
    with pytest.raises(ExportError, match=r"^PyTorch could not trace the model to ONNX: first line$"):
        export_onnx(Untraceable("  first line\nsecond line"), tmp_path / "u.onnx", manifest=manifest())
    with pytest.raises(ExportError, match=r"^PyTorch could not trace the model to ONNX: RuntimeError$"):
        export_onnx(Untraceable(""), tmp_path / "u.onnx", manifest=manifest())
    assert not list(tmp_path.iterdir())


def test_exports_use_pyfills_opset_and_static_files_pad_to_their_size(tmp_path: Path) -> None:
    import onnx

    from pyfill.export import OPSET
    from pyfill.manifest import read_onnx_manifest

    path = export_onnx(Honest(), tmp_path / "h.onnx", manifest=manifest())
    assert [o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    boxed = manifest()
    boxed.size = SizeRequirements(multiple_of=8, resize="letterbox")
    static = read_onnx_manifest(export_onnx(Honest(), tmp_path / "s.onnx", manifest=boxed, dynamic=False,
                                            static_size=(40, 24)))
    assert (static.size.fixed, static.size.resize) == ((40, 24), "pad")


def test_temporaries_are_hidden_unique_files_beside_their_target(tmp_path: Path) -> None:
    from pyfill.export import _unique_temp

    target = tmp_path / "model.onnx"
    a, b = _unique_temp(target), _unique_temp(target)
    assert a != b and a.parent == b.parent == tmp_path
    for t in (a, b):
        assert t.name.startswith(".model.onnx.") and t.name.endswith(".tmp") and t.is_file() and t.stat().st_size == 0


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_exported_models_get_the_mode_open_would_give_them(tmp_path: Path, umask: int) -> None:
    """Like any file the user writes: 0o666 less the umask (not mkstemp's owner-only 0o600)."""
    import stat

    old = os.umask(umask)
    try:
        out = export_onnx(Honest(), tmp_path / "m.onnx", manifest=manifest())
        with open(tmp_path / "plain", "w") as f:  # the reference: what open() makes here
            f.write("x")
    finally:
        os.umask(old)
    want = stat.S_IMODE((tmp_path / "plain").stat().st_mode)
    assert want == 0o666 & ~umask
    assert stat.S_IMODE(out.stat().st_mode) == want


def test_example_inputs_for_tokens_and_tensors() -> None:
    from pyfill.export import example_inputs

    m = Manifest(task="edit", family="probe", config={}, inputs=[
        TensorSpec("image"), TensorSpec("text", kind="tokens", shape=[None]),
        TensorSpec("words", kind="tokens", shape=[5], vocabulary=["a", "b", "c"]),
        TensorSpec("latent", kind="tensor", shape=[None, 6])], outputs=[TensorSpec("out")])
    one = example_inputs(m)
    assert one["image"].shape[0] == 1  # batch 1 unless asked
    got = example_inputs(m, batch=64)
    text, words, latent = got["text"], got["words"], got["latent"]
    assert text.dtype == np.int64 and text.shape == (64, 16) and set(np.unique(text)) == {0, 1}
    assert words.shape == (64, 5) and set(np.unique(words)) == {0, 1, 2}
    assert latent.dtype == np.float32 and latent.shape == (64, 4, 6)
    assert 0.0 <= latent.min() < 0.05 and 0.95 < latent.max() < 1.0


class BakedRepeat(torch.nn.Module):
    def forward(self, x):
        return x.repeat(int(x.shape[0]), 1, 1, 1)  # the traced batch fixes how often x repeats


def test_the_comparison_reports_the_shapes_and_the_largest_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"^ONNX output 'out' differs from PyTorch \(shape \(2, 3, 32, 32\) vs "
                                          r"\(1, 3, 32, 32\), max abs error nan\)$"):
        export_onnx(BakedRepeat(), tmp_path / "r.onnx", manifest=manifest())
    with pytest.raises(ExportError, match=r"differs from PyTorch") as caught:
        export_onnx(BakedBatch(), tmp_path / "b.onnx", manifest=manifest())
    # batch 1 through a graph traced at batch 2 computes 2x instead of x: the error is max |x|
    from pyfill.export import example_inputs

    x = example_inputs(manifest(), batch=1, height=32, width=32, seed=100)["image"]
    err = float(str(caught.value).rsplit("max abs error ", 1)[1].rstrip(")"))
    assert err == pytest.approx(float(np.abs(x).max()), rel=1e-5)
