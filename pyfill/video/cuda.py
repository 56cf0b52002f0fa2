"""The GPU path of the video pipeline: frames go to the GPU through pinned host buffers on a
copy stream, the model runs on a compute stream (the Engine converts the uint8 frames to float
on the device), and the results come back through pinned buffers, so that the copies of one
batch overlap the inference of the next while the decode and encode threads keep working.

:class:`CudaFrames` serves an :class:`pyfill.Engine` that runs on CUDA through torch (the torch
backend, or TensorRT fed torch tensors). The inference thread of :class:`pyfill.video.pipeline.Stages`
keeps one batch in flight: it submits batch k + 1 before it collects batch k.

With ``device="cpu"`` the same steps run without streams or pinned memory; that is how the
path is tested on machines without a GPU.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from pyfill._core import require


def engine_on_cuda(engine: Any) -> bool:
    """Whether ``engine`` runs on a CUDA device through torch tensors (the GPU path's case)."""
    info = getattr(engine, "info", {})
    return info.get("device") == "cuda" and info.get("backend") in ("torch", "tensorrt")


def gpu_frames(engine: Any) -> CudaFrames | None:
    """The GPU path for ``engine`` when it applies (on CUDA through torch, one image output),
    else None."""
    outputs = engine.manifest.outputs
    if engine_on_cuda(engine) and len(outputs) == 1 and outputs[0].kind == "image":
        return CudaFrames(engine)
    return None


@dataclass
class _Slot:
    host_in: Any  # pinned (n, h, w, 3) uint8 input frames
    host_out: Any | None  # pinned uint8 results, sized to the model's output when first needed
    done: Any  # a CUDA event recorded after the batch's copy back (None on the CPU)
    busy: bool = False


class CudaFrames:
    """A batch frame function with a GPU path for an Engine whose only output is an image.

    ``frames(list of RGB uint8 (H, W, 3))`` runs one batch synchronously; the pipeline uses
    :meth:`submit` / :meth:`collect` to keep ``depth - 1`` batches in flight.

    Args:
        engine: a :class:`pyfill.Engine` on CUDA (:func:`engine_on_cuda`), or any Engine with
            ``device="cpu"``.
        depth: pinned buffer sets in the ring (2: one batch copies while another computes).
        device: ``cuda`` (default) or ``cpu`` (the same steps without streams or pinning).
    """

    def __init__(self, engine: Any, depth: int = 2, device: str = "cuda") -> None:
        torch = require("torch", "train")
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        if device not in ("cuda", "cpu"):
            raise ValueError(f"device must be 'cuda' or 'cpu', got {device!r}")
        outputs = engine.manifest.outputs
        if len(outputs) != 1 or outputs[0].kind != "image":
            raise ValueError("the GPU video path serves models whose only output is an image")
        if device == "cuda":
            if not torch.cuda.is_available():
                raise RuntimeError("device='cuda' but torch sees no CUDA device")
            if not engine_on_cuda(engine):
                raise ValueError(f"the engine runs on {engine.info.get('backend')}/{engine.info.get('device')}; the "
                                 "GPU video path needs the torch or TensorRT backend on CUDA")
        self.torch, self.engine, self.depth = torch, engine, depth
        self.device = torch.device(device)
        cuda = device == "cuda"
        self.copy_stream = torch.cuda.Stream() if cuda else None
        self.compute_stream = torch.cuda.Stream() if cuda else None
        self._shape: tuple[int, int, int] | None = None
        self._batch = 0
        self._slots: list[_Slot] = []
        self._next = 0

    def _stream(self, stream: Any) -> contextlib.AbstractContextManager:
        return self.torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()

    def _ring(self, n: int, h: int, w: int) -> None:
        """(Re)allocate the pinned buffers for batches of up to ``n`` frames of h x w."""
        if self._shape is not None and self._shape[1:] == (h, w) and self._shape[0] >= n:
            return
        torch, pinned = self.torch, self.device.type == "cuda"
        for slot in self._slots:  # buffers still in use by an unfinished batch must not be freed under it
            if slot.done is not None:
                slot.done.synchronize()
        self._slots = [_Slot(torch.empty((n, h, w, 3), dtype=torch.uint8, pin_memory=pinned), None,
                             torch.cuda.Event() if pinned else None)
                       for _ in range(self.depth)]
        self._shape, self._batch, self._next = (n, h, w), n, 0

    def submit(self, frames: list[np.ndarray]) -> Any:
        """Queue one batch of equal-size RGB uint8 (H, W, 3) frames; returns a handle for
        :meth:`collect`. Blocks only when every buffer set holds an uncollected batch."""
        if not frames:
            raise ValueError("empty batch")
        h, w = frames[0].shape[:2]
        for f in frames:
            if f.dtype != np.uint8 or f.shape != (h, w, 3):
                raise ValueError(f"the GPU video path takes RGB uint8 ({h}, {w}, 3) frames, got {f.dtype} {f.shape}")
        torch, n = self.torch, len(frames)
        self._ring(n, h, w)
        slot = self._slots[self._next]
        if slot.busy:
            raise RuntimeError(f"more than {self.depth} batches submitted without collecting them")
        self._next = (self._next + 1) % self.depth
        host = slot.host_in[:n]
        np.stack(frames, out=host.numpy())
        with self._stream(self.copy_stream):
            dev = host.to(self.device, non_blocking=True)
            copied = torch.cuda.Event() if self.copy_stream is not None else None
            if copied is not None:
                copied.record(self.copy_stream)
        with self._stream(self.compute_stream):
            if copied is not None and self.compute_stream is not None:
                self.compute_stream.wait_event(copied)
                dev.record_stream(self.compute_stream)  # the allocator keeps it until compute is done
            chw = dev.permute(0, 3, 1, 2)  # views: the Engine converts uint8 -> float on the device
            results = self.engine.run([chw[i] for i in range(n)])
            out = torch.stack([r.image for r in results]).permute(0, 2, 3, 1)
            if slot.done is not None:
                # the output may be larger than the input (an upscaler): size the slot's buffer to it
                if slot.host_out is None or slot.host_out.shape[0] < n or slot.host_out.shape[1:] != out.shape[1:]:
                    slot.host_out = torch.empty((max(n, self._batch), *out.shape[1:]), dtype=torch.uint8,
                                                pin_memory=True)
                slot.host_out[:n].copy_(out, non_blocking=True)
                slot.done.record(self.compute_stream)
                kept = None
            else:
                kept = out.contiguous()
        slot.busy = True
        return slot, n, kept

    def collect(self, handle: Any) -> list[np.ndarray]:
        """Wait for a submitted batch and return its RGB uint8 (H, W, 3) frames."""
        slot, n, kept = handle
        if slot.done is not None:
            slot.done.synchronize()
            frames = [slot.host_out[i].numpy().copy() for i in range(n)]
        else:
            frames = [kept[i].numpy().copy() for i in range(n)]
        slot.busy = False
        return frames

    def __call__(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        return self.collect(self.submit(list(frames)))
