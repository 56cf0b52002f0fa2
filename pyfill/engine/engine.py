"""``pyfill.Engine``: one object that runs a model on whatever this machine has."""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np

from pyfill._core import _C
from pyfill.engine import processing as P
from pyfill.engine.backends import (
    Backend,
    OnnxRuntimeBackend,
    OpenVINOBackend,
    TensorRTBackend,
    TorchBackend,
)
from pyfill.engine.manifest import DERIVE_EXTRA_ARGS, Manifest, ManifestError, TensorSpec, read_onnx_manifest

BACKENDS = ("auto", "tensorrt", "torch", "openvino", "onnxruntime")
CHECKPOINT_SUFFIXES = (".safetensors", ".json")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "models" / "pretrained"


def pretrained_models() -> list[str]:
    """Names of the models shipped inside the package (``pyfill/models/pretrained/<name>.onnx``)."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.onnx")) if PRETRAINED_DIR.is_dir() else []


class Engine:
    """Run a pyfill model (checkpoint, ONNX file or TensorRT engine) or a foreign ONNX
    image-to-image model on the best backend present.

    Args:
        model: path to a ``.safetensors`` checkpoint (with its ``.json`` manifest beside it), an
            ``.onnx`` file (pyfill's or another project's), or a TensorRT ``.engine``/``.plan``.
        backend: ``auto`` | ``tensorrt`` | ``torch`` | ``openvino`` | ``onnxruntime``. ``auto``
            picks TensorRT > torch CUDA > OpenVINO > ONNX Runtime by what is installed and present
            and says why in ``info["selected_because"]``.
        device: ``auto`` | ``cpu`` | ``cuda``.
        precision: ``auto`` (fp16 on CUDA where the model allows, else fp32) | ``fp32`` | ``fp16``.
        tile: None = tile only images larger than twice the manifest's advised tile; 0 = never;
            N = tiles of N pixels. Only for models whose manifest says tiling is supported.
        tile_overlap: overlap of neighbouring tiles in pixels (blended with a raised cosine).
        threads: CPU threads for the CPU runtimes (0 = runtime default).
        cuda_graphs: torch backend on CUDA: capture one CUDA graph per input shape.
        input_range, output_range, layout, channel_order, scale: conventions of a foreign ONNX
            model without a pyfill manifest (defaults: (0, 1), (0, 1), ``NCHW``, ``rgb``, and the
            output scale found by a probe run).

    Calls: ``engine(image)`` or ``engine(image, **conditions)``; ``engine(list_of_images)`` runs
    a batch and returns a list. Images are NumPy (H, W) / (H, W, C) uint8, uint16 or float in
    [0, 1], PIL images, or torch (C, H, W) tensors; results come back in the same form (torch
    CUDA tensors stay on the device with the torch backend). Calls may come from several threads.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        backend: str = "auto",
        device: str = "auto",
        precision: str = "auto",
        tile: int | None = None,
        tile_overlap: int = 32,
        *,
        threads: int = 0,
        cuda_graphs: bool = False,
        input_range: tuple[float, float] | None = None,
        output_range: tuple[float, float] | None = None,
        layout: str = "NCHW",
        channel_order: str = "rgb",
        scale: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
        if precision not in ("auto", "fp32", "fp16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'fp16', got {precision!r}")
        if tile is not None and (not isinstance(tile, int) or tile < 0):
            raise ValueError(f"tile must be None, 0 or a positive int, got {tile!r}")
        if tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {tile_overlap}")
        if layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")

        self.path = Path(model)
        if not self.path.exists():
            raise FileNotFoundError(f"model file not found: {self.path}")
        self.tile, self.tile_overlap = tile, tile_overlap
        self._layout, self._bgr = layout, channel_order == "bgr"
        self._onnx, self._checkpoint, self._trt_engine = self._locate(self.path)
        self.foreign = False
        self.manifest = self._load_manifest(input_range, output_range)
        self._scale = int(self.manifest.size.get("scale", 1))
        self.backend, why = self._select_backend(backend, device, precision, threads, cuda_graphs)
        if self.foreign:
            self._scale = scale or self._probe_scale()
        self._selected_because = why

    @classmethod
    def from_pretrained(cls, name: str, **kwargs: Any) -> Engine:
        """An Engine for a model shipped with pyfill, by name (see :func:`pretrained_models`);
        ``kwargs`` are those of :class:`Engine`."""
        available = pretrained_models()
        if name not in available:
            raise ValueError(f"no pretrained model named {name!r}; available: {available}")
        return cls(PRETRAINED_DIR / f"{name}.onnx", **kwargs)

    # ---- model resolution ------------------------------------------------------------------
    @staticmethod
    def _locate(path: Path) -> tuple[Path | None, Path | None, Path | None]:
        suffix = path.suffix.lower()
        if suffix == ".onnx":
            return path, None, None
        if suffix in CHECKPOINT_SUFFIXES:
            weights = path.with_suffix(".safetensors")
            if not weights.is_file() or not path.with_suffix(".json").is_file():
                raise FileNotFoundError(
                    f"a checkpoint is a .safetensors file with its .json manifest beside it; missing "
                    f"{weights if not weights.is_file() else path.with_suffix('.json')}"
                )
            return None, weights, None
        if suffix in ENGINE_SUFFIXES:
            if not path.with_suffix(".json").is_file():
                raise FileNotFoundError(f"a TensorRT engine needs its manifest beside it: {path.with_suffix('.json')}")
            return None, None, path
        raise ValueError(
            f"{path}: not a model file pyfill knows (expected .onnx, .safetensors + .json, or .engine/.plan)"
        )

    def _load_manifest(self, input_range: Any, output_range: Any) -> Manifest:
        if self._checkpoint is not None:
            return Manifest.load(self._checkpoint.with_suffix(".json"))
        if self._trt_engine is not None:
            return Manifest.load(self._trt_engine.with_suffix(".json"))
        manifest = read_onnx_manifest(self._onnx)
        if manifest is not None:
            return manifest
        self.foreign = True
        return self._foreign_manifest(input_range or (0.0, 1.0), output_range or (0.0, 1.0))

    def _foreign_manifest(self, input_range: tuple[float, float], output_range: tuple[float, float]) -> Manifest:
        import onnxruntime as ort

        sess = ort.InferenceSession(str(self._onnx), providers=["CPUExecutionProvider"])
        ins, outs = sess.get_inputs(), sess.get_outputs()
        if len(ins) != 1:
            raise ValueError(
                f"{self._onnx}: a model without a pyfill manifest must have one image input; it has {len(ins)}"
            )
        shape = list(ins[0].shape)
        if len(shape) != 4:
            raise ValueError(f"{self._onnx}: expected a 4-D image input, got shape {shape}")
        c_axis, hw = (1, shape[2:4]) if self._layout == "NCHW" else (3, shape[1:3])
        channels = shape[c_axis] if isinstance(shape[c_axis], int) else 3
        fixed = list(hw) if all(isinstance(v, int) for v in hw) else None
        out_c = outs[0].shape[c_axis] if len(outs[0].shape) == 4 and isinstance(outs[0].shape[c_axis], int) else channels
        space = {1: "gray", 3: "rgb"}.get(channels, "none")
        return Manifest(
            task="image-to-image",
            family="foreign-onnx",
            config={"source": self._onnx.name, "layout": self._layout, "channel_order": "bgr" if self._bgr else "rgb"},
            inputs=[TensorSpec(ins[0].name, "image", channels, space, input_range)],
            outputs=[TensorSpec(outs[0].name, "image", out_c, {1: "gray", 3: "rgb"}.get(out_c, "none"), output_range)],
            size={"multiple_of": 1, "min_size": 1, "fixed": fixed},
            tiling={"supported": False, "tile": 512, "overlap": 32},
            fp16=False,
        )

    def _probe_scale(self) -> int:
        spec = self.manifest.inputs[0]
        h, w = self.manifest.size["fixed"] or (64, 64)
        x = np.full((1, spec.channels, h, w), 0.5, dtype=np.float32)
        out = self._run_backend({spec.name: x})[0]
        ratio = out.shape[-1] / w
        if ratio < 1 or ratio != int(ratio) or out.shape[-2] / h != ratio:
            raise ValueError(f"{self.path}: output shape {out.shape} is not an integer upscale of {x.shape}")
        return int(ratio)

    def _onnx_for_runtime(self) -> Path:
        """The ONNX file for ONNX Runtime / OpenVINO: the given one, or the checkpoint exported
        once into the cache (keyed by the checkpoint's contents)."""
        if self._onnx is not None:
            return self._onnx
        from pyfill.export import cache_dir, export_onnx

        h = hashlib.sha256()
        h.update(self._checkpoint.read_bytes())
        h.update(self._checkpoint.with_suffix(".json").read_bytes())
        target = cache_dir() / "onnx" / f"{h.hexdigest()[:32]}.onnx"
        if not target.is_file():
            export_onnx(self._checkpoint, target)
        return target

    # ---- backend selection -----------------------------------------------------------------
    def _select_backend(self, backend: str, device: str, precision: str, threads: int,
                        cuda_graphs: bool) -> tuple[Backend, str]:
        have_cuda = bool(_C.cuda_devices()[0])
        torch_cuda = False
        if importlib.util.find_spec("torch") is not None and (device != "cpu"):
            import torch

            torch_cuda = torch.cuda.is_available()
        if device == "cuda" and not (have_cuda or torch_cuda):
            raise RuntimeError(f"device='cuda' but no CUDA device is visible ({_C.cuda_devices()[1]})")

        if backend == "auto":
            if self._trt_engine is not None:
                backend, why = "tensorrt", "the model is a TensorRT engine"
            elif device != "cpu" and have_cuda and importlib.util.find_spec("tensorrt") is not None and not self.foreign \
                    and self._onnx is not None:
                backend, why = "tensorrt", "TensorRT and a CUDA GPU are present"
            elif device != "cpu" and torch_cuda and self._checkpoint is not None:
                backend, why = "torch", "torch with CUDA is present and the model is a checkpoint"
            elif device == "cuda":
                backend, why = "onnxruntime", "CUDA was asked for; ONNX Runtime's CUDA provider"
            elif importlib.util.find_spec("openvino") is not None:
                backend, why = "openvino", "no CUDA backend applies; OpenVINO is the fastest CPU runtime installed"
            else:
                backend, why = "onnxruntime", "no CUDA backend applies and OpenVINO is not installed"
        else:
            why = "asked for"
        if device == "auto":
            device = "cuda" if backend == "tensorrt" or (backend == "torch" and torch_cuda) else "cpu"
        if precision == "auto":
            precision = "fp16" if device == "cuda" and self.manifest.fp16 and backend in ("torch", "tensorrt") else "fp32"
        if precision == "fp16" and not self.manifest.fp16:
            raise ValueError(f"the manifest of {self.path.name} says the model does not support fp16")

        if backend == "tensorrt":
            if self._trt_engine is None:
                from pyfill.export import build_tensorrt_engine

                self._trt_engine = build_tensorrt_engine(self._onnx, precision=precision)
            return TensorRTBackend(self._trt_engine, precision), why
        if backend == "torch":
            if self._checkpoint is None:
                raise ValueError("the torch backend runs pyfill checkpoints (.safetensors + .json), not ONNX files")
            from pyfill.export import load_checkpoint

            module, _ = load_checkpoint(self._checkpoint)
            names = [s.name for s in self.manifest.inputs]
            return TorchBackend(module, names, device, precision, cuda_graphs), why
        if self._trt_engine is not None:
            raise ValueError(f"a TensorRT engine runs only on the tensorrt backend, not {backend}")
        onnx_path = self._onnx_for_runtime()
        if backend == "openvino":
            return OpenVINOBackend(onnx_path, device, precision, threads), why
        return OnnxRuntimeBackend(onnx_path, device, precision, threads), why

    # ---- information -----------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        """Backend, device, precision, runtime details, why the backend was chosen, manifest."""
        return {
            **self.backend.describe(),
            "selected_because": self._selected_because,
            "model": str(self.path),
            "foreign_model": self.foreign,
            "output_scale": self._scale,
            "manifest": self.manifest.to_dict(),
        }

    def __repr__(self) -> str:
        d = self.backend.describe()
        return f"Engine({self.path.name!r}, backend={d['backend']!r}, device={d['device']!r}, precision={d['precision']!r})"

    @property
    def input_names(self) -> list[str]:
        """The call's keyword arguments: the model's inputs, then the arguments their declared
        pre-processing steps take instead (e.g. ``strokes`` and ``occupancy`` for a latent derived
        by ``stroke_grid``)."""
        names = [s.name for s in self.manifest.inputs]
        for spec in self.manifest.inputs:
            if spec.derive:
                names += [n for n in (spec.derive["from"], *DERIVE_EXTRA_ARGS[spec.derive["op"]]) if n not in names]
        return names

    # ---- running ---------------------------------------------------------------------------
    def __call__(self, image: Any = None, /, **inputs: Any) -> Any:
        primary = self.manifest.primary_input
        if image is not None:
            if primary.name in inputs:
                raise TypeError(f"input '{primary.name}' given both positionally and by name")
            inputs[primary.name] = image
        accepted = self.input_names
        unknown = sorted(set(inputs) - set(accepted))
        if unknown:
            raise TypeError(f"unknown inputs {unknown}; this model takes {accepted}")
        batched = isinstance(inputs.get(primary.name), (list, tuple))
        if not batched:
            return self._run_items([inputs])[0]
        n = len(inputs[primary.name])
        if n == 0:
            raise ValueError(f"{primary.name}: empty batch")
        items = []
        for i in range(n):
            item = {}
            for k, v in inputs.items():
                if isinstance(v, (list, tuple)):
                    if len(v) != n:
                        raise ValueError(f"{k}: batch of {len(v)} does not match {primary.name}'s {n}")
                    item[k] = v[i]
                else:
                    item[k] = v
            items.append(item)
        return self._run_items(items)

    def _run_items(self, items: list[dict[str, Any]]) -> list[Any]:
        prepared = [self._prepare(item, i) for i, item in enumerate(items)]
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(prepared):
            groups.setdefault(p["key"], []).append(i)
        results: list[Any] = [None] * len(items)
        for indices in groups.values():
            outs = self._run_group([prepared[i] for i in indices])
            for i, out in zip(indices, outs):
                results[i] = out
        return results

    def _prepare(self, item: dict[str, Any], index: int) -> dict[str, Any]:
        """Validate one item and convert it to per-input arrays (C, H, W) / (D,)."""
        tensors: dict[str, Any] = {}
        kind = None
        size = None
        derived: list[TensorSpec] = []
        for spec in self.manifest.inputs:
            label = f"{spec.name}[{index}]"
            value = item.get(spec.name)
            if spec.derive and item.get(spec.derive["from"]) is None \
                    and any(item.get(n) is not None for n in DERIVE_EXTRA_ARGS[spec.derive["op"]]):
                raise TypeError(f"{list(DERIVE_EXTRA_ARGS[spec.derive['op']])} go with '{spec.derive['from']}'")
            if value is None and not (spec.derive and item.get(spec.derive["from"]) is not None):
                if spec.optional:
                    tensors[spec.name] = None
                    continue
                raise ValueError(f"missing input '{spec.name}' (this model takes {[s.name for s in self.manifest.inputs]})")
            if spec.kind == "image":
                x, k = P.image_to_float(value, label)
                x = P.adapt_channels(x, spec.channels, spec.colour_space)
                if self._bgr:
                    x = x[..., ::-1]
                kind = kind or k
                t = x.permute(2, 0, 1) if P.is_torch(x) else np.ascontiguousarray(x.transpose(2, 0, 1))
                if not (P.is_torch(t) and self.backend.name == "torch"):
                    t = t.cpu().numpy() if P.is_torch(t) else t
                tensors[spec.name] = P.to_range(t, spec.value_range)
                hw = tuple(x.shape[:2])
            elif spec.kind == "labels":
                idx = P.labels_to_index(value, spec, label)
                tensors[spec.name] = idx
                hw = idx.shape
            else:
                source = item.get(spec.derive["from"]) if spec.derive else None
                if source is not None:
                    if value is not None:
                        raise TypeError(f"give '{spec.name}' or '{spec.derive['from']}', not both")
                    derived.append(spec)
                    continue
                vec = value.detach().cpu().numpy() if P.is_torch(value) else np.asarray(value)
                if vec.dtype.kind not in "fiu":
                    raise TypeError(f"{label}: expected a numeric vector, got dtype {vec.dtype}")
                vec = vec.astype(np.float32).reshape(-1)
                if vec.size != spec.length:
                    raise ValueError(f"{label}: expected a vector of length {spec.length}, got {vec.size}")
                if not np.isfinite(vec).all():
                    raise ValueError(f"{label}: vector contains NaN or infinite values")
                tensors[spec.name] = vec
                continue
            if size is not None and hw != size:
                raise ValueError(f"{label}: spatial size {hw} differs from the other inputs' {size}")
            size = hw
        for spec in derived:
            extra = {n: item.get(n) for n in DERIVE_EXTRA_ARGS[spec.derive["op"]]}
            tensors[spec.name] = P.derive_vector(spec, item[spec.derive["from"]], extra, size,
                                                 f"{spec.derive['from']}[{index}]")
        if kind is None:
            kind = P.ImageKind("numpy", "uint8", "HWC")
        return {"tensors": tensors, "kind": kind, "size": size, "key": (size, kind.device)}

    def _run_group(self, group: list[dict[str, Any]]) -> list[Any]:
        specs = self.manifest.inputs
        h, w = group[0]["size"]
        fixed = self.manifest.size.get("fixed")
        feeds: dict[str, Any] = {}
        for spec in specs:
            vals = [g["tensors"][spec.name] for g in group]
            if spec.kind == "vector":
                feeds[spec.name] = np.stack([v if v is not None else np.zeros(spec.length, np.float32) for v in vals])
            elif spec.kind == "labels":
                idx = np.stack(vals)
                if fixed and tuple(fixed) != (h, w):
                    idx = P.resize_nearest(idx, tuple(fixed))
                feeds[spec.name] = P.one_hot(idx, spec.classes)
            else:
                if P.is_torch(vals[0]):
                    import torch

                    x = torch.stack(vals)
                else:
                    x = np.stack(vals).astype(np.float32)
                if fixed and tuple(fixed) != (h, w):
                    x = P.resize_bilinear(x if not P.is_torch(x) else x.cpu().numpy(), tuple(fixed)).astype(np.float32)
                feeds[spec.name] = x
        if fixed:
            outs = self._run_backend(feeds)
        else:
            outs = self._run_spatial(feeds, h, w)
        return self._finish(outs, group, (h, w), fixed)

    def _run_spatial(self, feeds: dict[str, Any], h: int, w: int) -> list[Any]:
        spatial = [s for s in self.manifest.inputs if s.spatial]
        m, min_size = int(self.manifest.size["multiple_of"]), int(self.manifest.size["min_size"])
        tiling = self.manifest.tiling
        tile = self.tile
        if tile is None:
            tile = int(tiling["tile"]) if tiling["supported"] and max(h, w) > 2 * int(tiling["tile"]) else 0
        elif tile and not tiling["supported"]:
            raise ValueError(f"{self.path.name}: its manifest says tiling is not supported for this model")

        def run_padded(sp: dict[str, Any]) -> list[Any]:
            th, tw = next(iter(sp.values())).shape[-2:]
            ph, pw = P.padded_size(th, tw, m, min_size)
            local = dict(feeds)
            for k, v in sp.items():
                local[k] = P.pad_bottom_right(v, ph - th, pw - tw)
            outs = self._run_backend(local)
            s = self._scale
            return [o[..., : th * s, : tw * s] if o.ndim == 4 else o for o in outs]

        sp_feeds = {s.name: feeds[s.name] for s in spatial}
        if not tile:
            return run_padded(sp_feeds)
        if len(self.manifest.outputs) != 1:
            raise ValueError("tiling runs models with one image output")
        names = list(sp_feeds)
        splits = np.cumsum([sp_feeds[k].shape[1] for k in names])[:-1]
        if P.is_torch(sp_feeds[names[0]]):
            import torch

            stacked = torch.cat([sp_feeds[k] for k in names], dim=1)
        else:
            stacked = np.concatenate([sp_feeds[k] for k in names], axis=1)

        def run_tile(x: Any) -> Any:
            parts = np.split(x, splits, axis=1) if not P.is_torch(x) else list(x.tensor_split(list(splits), dim=1))
            return run_padded(dict(zip(names, parts)))[0]

        return [P.run_tiled(run_tile, stacked, tile, self.tile_overlap, m)]

    def _run_backend(self, feeds: dict[str, Any]) -> list[Any]:
        if self._layout == "NHWC":
            feeds = {k: v.transpose(0, 2, 3, 1) if v.ndim == 4 else v for k, v in feeds.items()}
        outs = self.backend.run(feeds)
        if self._layout == "NHWC":
            outs = [o.transpose(0, 3, 1, 2) if o.ndim == 4 else o for o in outs]
        return outs

    def _finish(self, outs: list[Any], group: list[dict[str, Any]], size: tuple[int, int], fixed: Any) -> list[Any]:
        results: list[dict[str, Any]] = [{} for _ in group]
        s = self._scale
        for spec, out in zip(self.manifest.outputs, outs):
            if spec.kind != "image" or out.ndim != 4:
                for i in range(len(group)):
                    o = out[i]
                    results[i][spec.name] = o.detach().cpu().numpy() if P.is_torch(o) else np.asarray(o)
                continue
            y = P.from_range(out, spec.value_range)
            if self._bgr:
                y = y[:, ::-1] if not P.is_torch(y) else y.flip(1)
            if fixed and tuple(fixed) != size:
                y = P.resize_bilinear(y.cpu().numpy() if P.is_torch(y) else y, (size[0] * s, size[1] * s))
            for i, g in enumerate(group):
                kind: P.ImageKind = g["kind"]
                yi = y[i]
                if kind.container == "torch":
                    import torch

                    yi = torch.as_tensor(np.ascontiguousarray(yi)) if not P.is_torch(yi) else yi
                    yi = yi.to(kind.device).float().permute(1, 2, 0)
                else:
                    yi = (yi.float().cpu().numpy() if P.is_torch(yi) else np.asarray(yi)).transpose(1, 2, 0)
                results[i][spec.name] = P.float_to_output(yi, kind)
        if len(self.manifest.outputs) == 1:
            name = self.manifest.outputs[0].name
            return [r[name] for r in results]
        return results


__all__ = ["Engine", "ManifestError"]
