"""``pyfill.Engine``: one object that runs a model on whatever this machine has.

The Engine orchestrates small modules with one job each: model resolution
(:mod:`pyfill.store`, :mod:`pyfill.engine.files`), backend choice
(:mod:`pyfill.engine.selection`), input conversion per tensor kind (:mod:`pyfill.engine.inputs`),
fixed-size placement (:mod:`pyfill.engine.geometry`), tiling (:mod:`pyfill.engine.tiling`) and
the runtimes (:mod:`pyfill.engine.backends`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np

from pyfill.engine import files as F
from pyfill.engine import inputs as I
from pyfill.engine import processing as P
from pyfill.engine.backends import Backend, OnnxRuntimeBackend, OpenVINOBackend, TensorRTBackend, TorchBackend
from pyfill.engine.geometry import Placement
from pyfill.engine.selection import (
    BackendName,
    DeviceName,
    ModelForm,
    PrecisionName,
    check_options,
    choose_backend,
    probe_environment,
)
from pyfill.engine.tiling import run_tiled
from pyfill.ops.convert import chw_to_image
from pyfill.manifest import DERIVE_EXTRA_ARGS, POINT_KINDS, Manifest, ManifestError, TensorSpec
from pyfill.store import available_models, resolve_model

TilingMode = Literal["manifest", "probe"]
PROBE_TOLERANCE = 1.0 / 255.0  # tiled vs whole, in output units of [0, 1]: one grey level


def pretrained_models() -> list[str]:
    """Names of the models :meth:`Engine.from_pretrained` finds: shipped in the package, then
    those in the local model store (:mod:`pyfill.store`)."""
    return list(available_models())


class Result(dict):
    """A model's outputs for one item, by output name. Images come back in the form the input
    came in (NumPy, PIL or torch); other kinds as NumPy arrays (landmarks and boxes in the
    input's pixel coordinates). ``result.image`` is the first image output."""

    def __init__(self, *args: Any, image_names: tuple[str, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.image_names = image_names

    @property
    def image(self) -> Any:
        if not self.image_names:
            raise AttributeError("this model has no image output")
        return self[self.image_names[0]]


def outputs_agree(got: Result, want: Result) -> tuple[bool, str]:
    """Whether two results of the same input agree: 8-bit images within 2 grey levels, other
    outputs within a relative 1e-2 of the reference's largest magnitude; and what was measured."""
    ok, parts = True, []
    for name, ref in want.items():
        a, b = np.asarray(got[name]), np.asarray(ref)
        if b.dtype == np.uint8:
            levels = int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())
            ok &= levels <= 2
            parts.append(f"{name}: {levels} grey levels")
        else:
            rel = float(np.abs(a.astype(np.float64) - b).max() / max(float(np.abs(b).max()), 1e-6))
            ok &= rel <= 1e-2
            parts.append(f"{name}: relative {rel:.2e}")
    return ok, ", ".join(parts)


class Engine:
    """Run a model (a pyfill checkpoint, ONNX file or TensorRT engine, another project's ONNX
    file, or a model name) on the best backend present.

    Args:
        model: a path (``.onnx``, ``.safetensors`` with its ``.json`` beside it, or a TensorRT
            ``.engine``/``.plan`` with its ``.json``) or the name of a shipped or stored model
            (see :func:`pyfill.store.resolve_model`).
        backend: ``auto`` | ``tensorrt`` | ``torch`` | ``openvino`` | ``onnxruntime``. ``auto``
            picks TensorRT > torch CUDA > OpenVINO > ONNX Runtime by what is installed and present
            and says why in ``info["selected_because"]``.
        device: ``auto`` | ``cpu`` | ``cuda``.
        precision: ``auto`` | ``fp32`` | ``fp16`` | ``bf16``. ``auto`` is fp16 on CUDA where the
            manifest allows it; on a CPU with AMX or AVX512-BF16 it is bf16 (OpenVINO, or torch
            autocast) when the manifest allows it and a probe input's output stays within 2 grey
            levels (8-bit images) or a relative 1e-2 (other outputs) of fp32, else fp32;
            ``info["precision_because"]`` says which and why.
        tile: None = tile only images larger than twice the manifest's advised tile (models whose
            manifest says they tile); 0 = never; N = tiles of N pixels. For a model without a
            pyfill manifest an explicit N is the caller's word that the model tiles.
        tile_overlap: overlap of neighbouring tiles in pixels (blended with a raised cosine).
        tiling: ``manifest`` (trust the manifest, or the caller's ``tile``) or ``probe`` (run a
            probe image tiled and whole at load and tile only when they agree within one grey
            level; ``info["tiling"]`` says what was found).
        threads: CPU threads for the CPU runtimes (0 = runtime default).
        static_shapes: OpenVINO: compile the model once per input shape (the last four kept)
            instead of running it with dynamic shapes; faster for streams of same-size frames
            (video), a compile for every new size otherwise.
        throughput: OpenVINO: compile for throughput (one inference stream per group of cores)
            and run the images of a batch, or the tiles of a tiled image, as concurrent
            requests: more images per second for batches of frames (video), slower for one
            image at a time. Other backends run a batch as one call and ignore it.
        cuda_graphs: torch backend on CUDA: capture one CUDA graph per input shape.
        input_range, output_range, layout, channel_order, scale: conventions of a foreign ONNX
            model without a pyfill manifest (defaults: (0, 1), (0, 1), ``NCHW``, ``rgb``, and the
            output scale found by a probe run).
        manifest: a :class:`pyfill.manifest.Manifest` describing a foreign ONNX model that the
            conventions above cannot (several inputs, e.g. a face swapper's crop and identity
            embedding); its input and output names must be the model's. Refused for a model
            that has its own manifest.

    Calls: ``engine.run(image, **other_inputs)`` returns a :class:`Result` (a dict of outputs);
    a list as the first argument runs a batch and returns a list of results. ``engine(...)`` is
    the same, except that a model whose only output is an image returns that image directly.
    Models without spatial inputs (a latent -> image decoder) are called with keywords only.
    Images are NumPy (H, W) / (H, W, C) uint8, uint16 or float in [0, 1], PIL images, or torch
    (C, H, W) tensors. Calls may come from several threads.
    """

    def __init__(
        self,
        model: str | os.PathLike[str],
        backend: BackendName = "auto",
        device: DeviceName = "auto",
        precision: PrecisionName = "auto",
        tile: int | None = None,
        tile_overlap: int = 32,
        *,
        tiling: TilingMode = "manifest",
        threads: int = 0,
        static_shapes: bool = False,
        throughput: bool = False,
        cuda_graphs: bool = False,
        input_range: tuple[float, float] | None = None,
        output_range: tuple[float, float] | None = None,
        layout: Literal["NCHW", "NHWC"] = "NCHW",
        channel_order: Literal["rgb", "bgr"] = "rgb",
        scale: int | None = None,
        manifest: Manifest | None = None,
    ) -> None:
        check_options(backend, device, precision)
        if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 0):
            raise ValueError(f"tile must be None, 0 or a positive int, got {tile!r}")
        if tile_overlap < 0:
            raise ValueError(f"tile_overlap must be >= 0, got {tile_overlap}")
        if tile and tile <= 2 * tile_overlap:
            raise ValueError(f"tile ({tile}) must be larger than twice the overlap ({tile_overlap}); "
                             f"smaller tiles spend most of their work on overlap")
        if tiling not in ("manifest", "probe"):
            raise ValueError(f"tiling must be 'manifest' or 'probe', got {tiling!r}")
        if layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")

        self.path = resolve_model(model)
        self.files = F.locate(self.path)
        self._layout, self._bgr = layout, channel_order == "bgr"
        self.manifest, self.foreign = F.load_manifest(self.files, layout, channel_order,
                                                      input_range or (0.0, 1.0), output_range or (0.0, 1.0), manifest)
        self.tile, self.tile_overlap = tile, tile_overlap
        env = probe_environment(device)
        form = ModelForm(self.files.onnx is not None, self.files.checkpoint is not None,
                         self.files.tensorrt_engine is not None, self.foreign, self.manifest.fp16,
                         self.manifest.bf16, self._torch_only_reason())
        choice = choose_backend(backend, device, precision, form, env)
        self._static_shapes, self._throughput = static_shapes, throughput
        self.backend = self._make_backend(choice.backend, choice.device, choice.precision, threads, cuda_graphs)
        self._selected_because = choice.reason
        self._precision_note = choice.precision_reason
        self._scale = self.manifest.size.scale
        if self.foreign:
            self._scale = scale or (manifest.size.scale if manifest is not None else self._probe_scale())
        if choice.guard:
            self._guard_precision(choice.precision, lambda: self._make_backend(
                choice.backend, choice.device, "fp32", threads, cuda_graphs))
        self.on_tile: Callable[[int, int], None] | None = None
        """Called with (tiles done, tiles in the image) while a large image runs in tiles."""
        self._tiling_note = self._decide_tiling(tiling)

    def _torch_only_reason(self) -> str:
        if self.files.manifest is None:
            return ""
        return str(self.files.manifest.provenance.get("onnx_export") or "it does not export to ONNX")

    @classmethod
    def from_pretrained(cls, name: str, **kwargs: Any) -> Engine:
        """An Engine for a model by name: shipped in the package, else in the local model store
        (``pyfill models list``); ``kwargs`` are those of :class:`Engine`. Never downloads."""
        if Path(name).suffix:
            raise ValueError(f"from_pretrained takes a model name, not a file ({name!r}); use Engine({name!r})")
        return cls(resolve_model(name), **kwargs)

    # ---- construction ------------------------------------------------------------------------
    def _make_backend(self, backend: str, device: str, precision: str, threads: int, cuda_graphs: bool) -> Backend:
        if backend == "tensorrt":
            engine_file = self.files.tensorrt_engine
            if engine_file is None:
                from pyfill.export import build_tensorrt_engine

                engine_file = build_tensorrt_engine(F.onnx_for_runtime(self.files), precision=precision)
            return TensorRTBackend(engine_file, precision)
        if backend == "torch":
            from pyfill.export import load_checkpoint

            if self.files.checkpoint is None:
                raise ValueError("the torch backend runs pyfill checkpoints (.safetensors + .json)")
            module, _ = load_checkpoint(self.files.checkpoint)
            return TorchBackend(module, [s.name for s in self.manifest.inputs], device, precision, cuda_graphs)
        onnx_path = F.onnx_for_runtime(self.files)
        if backend == "openvino":
            return OpenVINOBackend(onnx_path, device, precision, threads, self._static_shapes, self._throughput)
        return OnnxRuntimeBackend(onnx_path, device, precision, threads)

    def _probe_item(self, hw: tuple[int, int] | None = None) -> dict[str, Any]:
        """A plausible input for every non-optional model input, at ``hw`` (default: the fixed
        size, else 64 px rounded to the size rules): smooth uint8 images (a low-resolution random
        picture upsampled), blob-shaped label maps, small random vectors."""
        size = self.manifest.size
        side = max(64, size.min_size)
        h, w = hw or size.fixed or (-(-side // size.multiple_of) * size.multiple_of,) * 2
        rng = np.random.default_rng(0)
        item: dict[str, Any] = {}
        for spec in self.manifest.inputs:
            if spec.optional or spec.derive:
                continue
            if spec.kind == "image":
                coarse = rng.random((1, 3, 6, 6)).astype(np.float32)
                smooth = P.resize_bilinear(coarse, (h, w))[0].transpose(1, 2, 0)
                item[spec.name] = np.rint(smooth * 255).astype(np.uint8)
            elif spec.kind == "labels":
                blobs = rng.integers(0, spec.classes, (1, 4, 4))
                item[spec.name] = P.resize_nearest(blobs, (h, w))[0]
            elif spec.kind == "tokens":
                item[spec.name] = np.ones([d or 8 for d in spec.shape], np.int64)
            elif spec.kind in ("landmarks", "boxes"):
                n = (spec.shape[0] or 5) if spec.shape else 5
                corners = rng.random((n, 2, 2)) * [w - 1, h - 1]  # one point, or two corners, per row
                if spec.kind == "landmarks":
                    xy = corners[:, 0]
                else:  # x0, y0, x1, y1 (and a score where the model takes five columns)
                    xy = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
                    if spec.shape and spec.shape[-1] == 5:
                        xy = np.concatenate([xy, np.ones((n, 1))], axis=1)
                item[spec.name] = xy.astype(np.float32)
            else:
                item[spec.name] = (rng.standard_normal([d or 4 for d in spec.shape]) * 0.5).astype(np.float32)
        return item

    def _guard_precision(self, precision: str, make_fp32: Callable[[], Backend]) -> None:
        """Keep the reduced precision only where its output on a probe input is within 2 grey
        levels of fp32 (8-bit image outputs) or a relative 1e-2 (other outputs)."""
        reduced = self.backend
        item = self._probe_item()
        got = self._run_items([dict(item)], force_tile=0)[0]
        self.backend = make_fp32()
        want = self._run_items([dict(item)], force_tile=0)[0]
        ok, measured = outputs_agree(got, want)
        if ok:
            self.backend = reduced
            self._precision_note += f"; a probe input agrees with fp32 ({measured})"
        else:
            self._precision_note = (f"fp32: {precision} was tried and differs from fp32 on a probe input "
                                    f"({measured}; allowed: 2 grey levels, relative 1e-2)")

    def _probe_scale(self) -> int:
        spec = self.manifest.inputs[0]
        h, w = self.manifest.size.fixed or (64, 64)
        x = np.full((1, spec.channels, h, w), 0.5, dtype=np.float32)
        out = self._run_backend({spec.name: x})[0]
        ratio = out.shape[-1] / w
        if ratio < 1 or ratio != int(ratio) or out.shape[-2] / h != ratio:
            raise ValueError(f"{self.path}: output shape {tuple(out.shape)} is not an integer upscale of {x.shape}")
        return int(ratio)

    def _decide_tiling(self, mode: str) -> str:
        """Set ``self._may_tile`` and return the sentence ``info["tiling"]`` shows."""
        m = self.manifest
        if mode == "manifest":
            self._may_tile = m.tiling.supported or (self.foreign and bool(self.tile))
            if self.tile and not self._may_tile:
                raise ValueError(f"{self.path.name}: its manifest says tiling is not supported for this model")
            if self.foreign and self.tile:
                return f"tiles of {self.tile} px: asked for (the caller vouches that this model tiles)"
            return "manifest: supported" if m.tiling.supported else "manifest: not supported"
        self._may_tile = False
        if not m.spatial or m.size.fixed or len(m.outputs) != 1 or m.outputs[0].kind != "image":
            return "probe: not tried (tiling needs a spatial model with one image output and no fixed size)"
        tile = self.tile or m.tiling.tile
        side = max(2 * tile, 3 * m.size.multiple_of)
        probe = self._probe_item((side, side + tile // 2))
        tiled = self._run_items([probe], force_tile=tile)[0].image
        whole = self._run_items([probe], force_tile=0)[0].image
        # The probe image is uint8, so the outputs are too: the difference in grey levels, in [0, 1] units.
        levels = 255.0 if np.asarray(whole).dtype == np.uint8 else 1.0
        diff = float(np.abs(np.asarray(tiled, np.float32) - np.asarray(whole, np.float32)).max()) / levels
        self._may_tile = diff <= PROBE_TOLERANCE
        verdict = "agree: tiling on" if self._may_tile else "differ: tiling off"
        return f"probe: tiles of {tile} px vs whole image, max difference {diff * 255:.2f} grey levels, {verdict}"

    # ---- information -----------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        """Backend, device, precision, runtime details, why the backend was chosen, tiling, manifest."""
        return {
            **self.backend.describe(),
            "selected_because": self._selected_because,
            "precision_because": self._precision_note,
            "model": str(self.path),
            "foreign_model": self.foreign,
            "output_scale": self._scale,
            "tiling": self._tiling_note,
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
    def stream(self, frames: Any, batch: int = 4, **options: Any) -> Any:
        """Run a stream of RGB uint8 (H, W, 3) frames the caller owns (a camera, a generator),
        pipelined in batches: reading, inference and the caller's loop overlap, order is kept.
        Returns an iterator of results; ``options`` as :func:`pyfill.video.stream`."""
        from pyfill.video import stream

        return stream(self, frames, batch=batch, **options)

    def __call__(self, image: Any = None, /, **inputs: Any) -> Any:
        results = self.run(image, **inputs)
        outs = self.manifest.outputs
        if len(outs) == 1 and outs[0].kind == "image":
            name = outs[0].name
            return [r[name] for r in results] if isinstance(results, list) else results[name]
        return results

    def run(self, image: Any = None, /, **inputs: Any) -> Result | list[Result]:
        """Run the model; returns a :class:`Result` (a list of them for a batch)."""
        primary = self.manifest.primary_input
        if image is not None:
            if primary.name in inputs:
                raise TypeError(f"input '{primary.name}' given both positionally and by name")
            inputs[primary.name] = image
        accepted = self.input_names
        unknown = sorted(set(inputs) - set(accepted))
        if unknown:
            raise TypeError(f"unknown inputs {unknown}; this model takes {accepted}")
        if not inputs:
            raise TypeError(f"no inputs given; this model takes {accepted}")
        lead = primary.name if primary.name in inputs else next(iter(inputs))
        if not isinstance(inputs[lead], (list, tuple)):
            return self._run_items([inputs])[0]
        n = len(inputs[lead])
        if n == 0:
            raise ValueError(f"{lead}: empty batch")
        items: list[dict[str, Any]] = [{} for _ in range(n)]
        for k, v in inputs.items():
            if isinstance(v, (list, tuple)):
                if len(v) != n:
                    raise ValueError(f"{k}: batch of {len(v)} does not match {lead}'s {n}")
                for item, vi in zip(items, v):
                    item[k] = vi
            else:
                for item in items:
                    item[k] = v
        return self._run_items(items)

    def _run_items(self, items: list[dict[str, Any]], force_tile: int | None = None) -> list[Result]:
        prepared = [self._prepare(item, i) for i, item in enumerate(items)]
        groups: dict[tuple, list[int]] = {}
        for i, p in enumerate(prepared):
            groups.setdefault(p["key"], []).append(i)
        results: list[Result] = [Result() for _ in items]  # every slot is filled below
        for indices in groups.values():
            for i, out in zip(indices, self._run_group([prepared[i] for i in indices], force_tile)):
                results[i] = out
        return results

    def _prepare(self, item: dict[str, Any], index: int) -> dict[str, Any]:
        """Validate one item -> {"tensors": per-input arrays, "kind", "size", "key"}."""
        tensors: dict[str, Any] = {}
        kind = None
        size = None
        derived: list[TensorSpec] = []
        keep_torch = self.backend.name in ("torch", "tensorrt")  # CUDA tensors stay on the device
        for spec in self.manifest.inputs:
            label = f"{spec.name}[{index}]"
            value = item.get(spec.name)
            source = item.get(spec.derive["from"]) if spec.derive else None
            if spec.derive and source is None and any(item.get(n) is not None for n in DERIVE_EXTRA_ARGS[spec.derive["op"]]):
                raise TypeError(f"{list(DERIVE_EXTRA_ARGS[spec.derive['op']])} go with '{spec.derive['from']}'")
            if source is not None:
                if value is not None:
                    raise TypeError(f"give '{spec.name}' or '{spec.derive['from']}', not both")
                derived.append(spec)
                continue
            if value is None:
                if spec.optional:
                    tensors[spec.name] = None
                    continue
                raise ValueError(f"missing input '{spec.name}' (this model takes {[s.name for s in self.manifest.inputs]})")
            if spec.kind == "image":
                tensors[spec.name], k = I.image(spec, value, label, self._bgr, keep_torch)
                kind = kind or k
                hw = tuple(tensors[spec.name].shape[-2:])
            elif spec.kind == "labels":
                tensors[spec.name] = P.labels_to_index(value, spec, label)
                hw = tensors[spec.name].shape
            else:
                tensors[spec.name] = I.convert(spec, value, label)
                continue
            if size is not None and hw != size:
                raise ValueError(f"{label}: spatial size {hw} differs from the other inputs' {size}")
            size = hw
        for spec in derived:
            extra = {n: item.get(n) for n in DERIVE_EXTRA_ARGS[spec.derive["op"]]}
            tensors[spec.name] = P.derive_vector(spec, item[spec.derive["from"]], extra, size,
                                                 f"{spec.derive['from']}[{index}]")
        kind = kind or P.ImageKind("numpy", "uint8", "HWC")
        shapes = tuple((k, v.shape) for k, v in tensors.items() if v is not None and not self.manifest.input(k).spatial)
        return {"tensors": tensors, "kind": kind, "size": size, "key": (size, kind.device, shapes)}

    def _placement(self, size: tuple[int, int] | None) -> Placement | None:
        fixed = self.manifest.size.fixed
        if size is None or not fixed or self.manifest.size.resize == "pad":
            return None  # "pad" runs the spatial path: padded up to the fixed size, tiled beyond it
        return Placement.for_size(size[0], size[1], fixed, self.manifest.size.resize)

    def _run_group(self, group: list[dict[str, Any]], force_tile: int | None) -> list[Result]:
        size = group[0]["size"]
        place = self._placement(size)
        feeds: dict[str, Any] = {}
        for spec in self.manifest.inputs:
            vals = [g["tensors"][spec.name] for g in group]
            if spec.kind == "labels":
                idx = np.stack(vals)
                feeds[spec.name] = P.one_hot(place.image_in(idx, nearest=True) if place else idx, spec.classes)
            elif spec.kind == "image":
                if P.is_torch(vals[0]) and place is None:
                    import torch

                    feeds[spec.name] = torch.stack(vals)
                else:
                    host = [v.cpu().numpy() if P.is_torch(v) else v for v in vals]
                    arr = (host[0][None] if len(host) == 1 else np.stack(host)).astype(np.float32, copy=False)
                    feeds[spec.name] = place.image_in(arr) if place else arr
            else:
                x = np.stack([v if v is not None else I.zeros(spec) for v in vals])
                if spec.kind in POINT_KINDS and place is not None:
                    x = self._map_points(spec, x, place.points_in)
                feeds[spec.name] = x
        if size is None or place is not None:
            outs = self._run_backend(feeds)
        else:
            outs = self._run_spatial(feeds, size[0], size[1], force_tile)
        return self._finish(outs, group, size, place)

    @staticmethod
    def _map_points(spec: TensorSpec, x: np.ndarray, fn: Any) -> np.ndarray:
        if spec.kind == "boxes" and x.shape[-1] == 5:
            return np.concatenate([fn(x[..., :4]), x[..., 4:]], axis=-1)
        return fn(x.reshape(*x.shape[:-2], -1)).reshape(x.shape) if spec.kind == "landmarks" else fn(x)

    def _tile_for(self, h: int, w: int, force_tile: int | None) -> int:
        if force_tile is not None:
            return force_tile
        allowed = self._may_tile
        if self.tile is not None:
            return self.tile if allowed else 0
        advised = self.manifest.tiling.tile
        big = max(h, w) > 2 * advised or (self.manifest.size.max_size is not None and max(h, w) > self.manifest.size.max_size)
        return advised if allowed and big else 0

    def _run_spatial(self, feeds: dict[str, Any], h: int, w: int, force_tile: int | None) -> list[Any]:
        spatial = [s.name for s in self.manifest.inputs if s.spatial]
        size = self.manifest.size
        m = size.multiple_of
        tile, overlap = self._tile_for(h, w, force_tile), self.tile_overlap
        # The largest window the runtime takes: a fixed size, or a TensorRT profile's maximum.
        limit_hw = size.fixed or getattr(self.backend, "max_spatial", None)
        if limit_hw and (h > limit_hw[0] or w > limit_hw[1]):
            limit = min(limit_hw)
            if not self._may_tile:
                raise ValueError(f"{self.path.name}: the runtime takes at most {limit} px per side here and the "
                                 f"model does not tile; this input is {h} x {w}")
            # Tiles whose windows (tile + context on both sides + alignment) fit the limit.
            overlap = min(overlap, limit // 4)
            fit = max(m, (limit - 2 * overlap - m) // m * m)
            tile = min(tile, fit) if tile else fit
        if not tile and size.max_size is not None and max(h, w) > size.max_size:
            raise ValueError(f"{self.path.name}: the model takes at most {size.max_size} px per side and does not "
                             f"tile; this input is {h} x {w}")

        def run_padded(sp: dict[str, Any]) -> list[Any]:
            first = next(iter(sp.values()))
            th, tw = first.shape[-2:]
            ph, pw = size.fixed or P.padded_size(th, tw, m, size.min_size)
            reps = first.shape[0] // next(iter(feeds.values())).shape[0]  # tiles batched per item
            local = {k: v if reps == 1 else np.concatenate([v] * reps) for k, v in feeds.items() if k not in sp}
            for k, v in sp.items():
                local[k] = P.pad_bottom_right(v, ph - th, pw - tw)
            s = self._scale
            return [o[..., : th * s, : tw * s] if o.ndim == 4 else o for o in self._run_backend(local)]

        sp_feeds = {k: feeds[k] for k in spatial}
        if not tile:
            return run_padded(sp_feeds)
        if len(self.manifest.outputs) != 1:
            raise ValueError("tiling runs models with one image output")
        splits = np.cumsum([sp_feeds[k].shape[1] for k in spatial])[:-1]
        stacked: Any
        if P.is_torch(sp_feeds[spatial[0]]):
            import torch

            stacked = torch.cat([sp_feeds[k] for k in spatial], dim=1)
        else:
            stacked = np.concatenate([sp_feeds[k] for k in spatial], axis=1)

        def run_tile(x: Any) -> Any:
            parts = list(x.tensor_split(list(splits), dim=1)) if P.is_torch(x) else np.split(x, splits, axis=1)
            return run_padded(dict(zip(spatial, parts)))[0]

        return [run_tiled(run_tile, stacked, tile, overlap, m, progress=self.on_tile)]

    def _run_backend(self, feeds: dict[str, Any]) -> list[Any]:
        cap = self.backend.max_batch
        n = next(iter(feeds.values())).shape[0]
        if cap is not None and n > cap:  # a fixed-batch export: run the batch in pieces
            parts = [self._run_backend({k: v[i:i + cap] for k, v in feeds.items()}) for i in range(0, n, cap)]
            return [np.concatenate(outs) for outs in zip(*parts)]
        if self._layout == "NHWC":
            feeds = {k: v.transpose(0, 2, 3, 1) if v.ndim == 4 else v for k, v in feeds.items()}
        outs = self.backend.run(feeds)
        if self._layout == "NHWC":
            outs = [o.transpose(0, 3, 1, 2) if o.ndim == 4 else o for o in outs]
        return outs

    def _finish(self, outs: list[Any], group: list[dict[str, Any]], size: tuple[int, int] | None,
                place: Placement | None) -> list[Result]:
        images = tuple(o.name for o in self.manifest.outputs if o.kind == "image")
        results = [Result(image_names=images) for _ in group]
        s = self._scale
        for spec, out in zip(self.manifest.outputs, outs):
            if spec.kind != "image" or out.ndim != 4:
                arr = out.detach().cpu().numpy() if P.is_torch(out) else np.asarray(out)
                if spec.kind in POINT_KINDS and place is not None:
                    arr = self._map_points(spec, arr.astype(np.float32), place.points_out)
                for i in range(len(group)):
                    results[i][spec.name] = arr[i]
                continue
            lo, hi = spec.value_range
            folded = place is None and not P.is_torch(out)  # the range is folded into the uint8 conversion
            y = out if folded else P.from_range(out, spec.value_range)
            if self._bgr:
                y = y.flip(1) if P.is_torch(y) else y[:, ::-1]
            if place is not None:
                y = place.image_out(y.cpu().numpy() if P.is_torch(y) else y, s)
            for i, g in enumerate(group):
                kind: P.ImageKind = g["kind"]
                yi = y[i]
                if kind.container == "numpy" and kind.dtype == "uint8" and not P.is_torch(yi):
                    scale, offset = (255.0 / (hi - lo), -lo * 255.0 / (hi - lo)) if folded else (255.0, 0.0)
                    img = chw_to_image(np.asarray(yi, np.float32), scale, offset)
                    results[i][spec.name] = img[..., 0] if kind.layout == "HW" and img.shape[-1] == 1 else img
                    continue
                if folded:
                    yi = P.from_range(yi, spec.value_range)
                if kind.container == "torch":
                    import torch

                    yi = torch.as_tensor(np.ascontiguousarray(yi)) if not P.is_torch(yi) else yi
                    yi = yi.to(kind.device).float().permute(1, 2, 0)
                else:
                    yi = (yi.float().cpu().numpy() if P.is_torch(yi) else np.asarray(yi)).transpose(1, 2, 0)
                results[i][spec.name] = P.float_to_output(yi, kind)
        return results


__all__ = ["Engine", "Result", "ManifestError", "Manifest", "pretrained_models"]
