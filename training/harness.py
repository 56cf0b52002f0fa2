"""The shared training harness: one training loop for every trainer.

A trainer (``python -m training.<system>``) describes its networks, optimizers, batches and one
training step in a :class:`Task`; :func:`train_loop` does the rest: configs with command-line
overrides, seeding, single-process or ``torchrun`` DistributedDataParallel runs, streaming
batches from DataLoader workers, gradient accumulation and clipping, fp16 loss scaling or bf16
autocast on CUDA, learning-rate warm-up and schedules, an EMA of the generator (the exported
weights), validation metrics with best and last-N checkpoints, early stopping, step-numbered
checkpoint folders written atomically, exact resume, a lock per run folder, saving on
SIGTERM / Ctrl-C, a CSV log (and TensorBoard when installed), loss plots, sample grids and
provenance in every exported manifest.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import datetime
import hashlib
import json
import math
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import distributed as dist
from torch import nn
from torch.nn import functional as F


# ---- configs ---------------------------------------------------------------------------------
#: The options every trainer shares (merged into each trainer's ``DEFAULTS`` by
#: :func:`with_harness_defaults`; a trainer's own value wins).
HARNESS_DEFAULTS: dict[str, Any] = {
    "amp": True,
    "amp_dtype": "bfloat16",
    "amp_cpu": False,
    "workers": 2,
    "global_batch": 0,
    "accumulate": 1,
    "grad_clip": 0.0,
    "lr_schedule": {"kind": "constant", "warmup": 0, "min_factor": 0.0, "milestones": [], "gamma": 0.5},
    "ema": {"decay": 0.999},
    "validate": True,
    "val_batches": 2,
    "keep_last": 3,
    "early_stop": {"patience": 0, "min_delta": 0.0},
    "tensorboard": True,
    "log_every": 1,
    "checkpoint_every": 100,
    "sample_every": 0,
}

#: Config keys that may change when a run is resumed (``fnmatch``-style ``*``); any other
#: difference from the saved config is refused.
RESUME_CHANGEABLE = ("max_steps", "lr", "lr_*", "lr_schedule.*", "grad_clip", "ema.decay", "log_every",
                     "checkpoint_every", "sample_every", "validate", "val_batches", "keep_last", "early_stop.*",
                     "tensorboard", "workers", "threads", "device", "amp", "amp_dtype", "amp_cpu", "out")


def with_harness_defaults(defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` with every :data:`HARNESS_DEFAULTS` key it lacks added (its own values win)."""
    out = copy.deepcopy(HARNESS_DEFAULTS)
    for key, value in defaults.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **copy.deepcopy(value)}
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_value(text: str) -> Any:
    """A command-line value: JSON when it parses (numbers, true/false, lists), else the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def apply_override(config: dict[str, Any], assignment: str) -> None:
    """Apply ``a.b.c=value`` to a nested config in place; unknown keys are refused."""
    if "=" not in assignment:
        raise ValueError(f"override {assignment!r} must look like key=value (nested keys with dots)")
    key, text = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = config
    for i, part in enumerate(parts):
        if not isinstance(node, dict) or part not in node:
            known = sorted(node) if isinstance(node, dict) else []
            raise ValueError(f"unknown config key {'.'.join(parts[: i + 1])!r}; known here: {known}")
        if i == len(parts) - 1:
            node[part] = parse_value(text)
        else:
            node = node[part]


def merge_config(defaults: dict[str, Any], update: dict[str, Any], where: str = "") -> dict[str, Any]:
    """``defaults`` deep-updated by ``update``; keys absent from ``defaults`` are refused."""
    out = copy.deepcopy(defaults)
    for key, value in update.items():
        if key not in out:
            raise ValueError(f"unknown config key {where + key!r}; known: {sorted(out)}")
        if isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = merge_config(out[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def load_config(defaults: dict[str, Any], path: str | os.PathLike[str] | None = None,
                overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Defaults, then the JSON config file at ``path``, then ``key=value`` overrides."""
    config = copy.deepcopy(defaults)
    if path is not None:
        config = merge_config(config, _read_json_object(path))
    for assignment in overrides:
        apply_override(config, assignment)
    return config


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _changeable(key: str) -> bool:
    import fnmatch

    return any(fnmatch.fnmatchcase(key, pattern) for pattern in RESUME_CHANGEABLE)


def config_changes(saved: dict[str, Any], config: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The flattened keys of ``saved`` whose value differs in ``config`` -> (saved, new). Keys
    that ``saved`` lacks (options added since it was written) are not compared; tuples and
    lists compare equal (JSON has no tuples)."""
    a, b = _flatten(json.loads(json.dumps(saved))), _flatten(json.loads(json.dumps(config)))
    return {k: (a[k], b.get(k)) for k in sorted(a) if a[k] != b.get(k)}


def check_resume_config(saved: dict[str, Any], config: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Refuse (ValueError) a resumed run whose config changes a key outside
    :data:`RESUME_CHANGEABLE`; return the changes that are applied."""
    changes = config_changes(saved, config)
    refused = {k: v for k, v in changes.items() if not _changeable(k)}
    if refused:
        listed = "; ".join(f"{k}: saved {v[0]!r}, given {v[1]!r}" for k, v in refused.items())
        raise ValueError(f"cannot change {listed} when resuming (it would not be the same run); keys that can "
                         f"change on --resume: {', '.join(RESUME_CHANGEABLE)}. Start a new run with --out or --force")
    return changes


def config_argparser(description: str) -> argparse.ArgumentParser:
    """The command line every trainer shares: ``--config FILE``, ``--set key=value`` (repeatable),
    ``--out DIR``, ``--resume`` and ``--force``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help="JSON config file (defaults fill the rest; with --resume, the saved config)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (nested keys with dots; value parsed as JSON)")
    parser.add_argument("--out", help="output folder (overrides the config's 'out')")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the last checkpoint in the output folder")
    group.add_argument("--force", action="store_true",
                       help="start over in an output folder that holds an earlier run (deletes its checkpoints and logs)")
    return parser


def run_trainer(description: str, defaults: dict[str, Any], train: Callable[..., dict[str, Any]],
                argv: Sequence[str] | None, summary: Callable[[dict[str, Any]], str]) -> int:
    """The ``main`` of every trainer: parse :func:`config_argparser`'s options, build the config
    (on ``--resume``: the saved config, then ``--config`` and ``--set``), train, and print
    ``summary(result)`` on the main process. A user's mistake (a refused resume, an occupied
    folder, a bad option) is printed as one line and exits with status 2; a run stopped by
    SIGTERM / Ctrl-C after saving (``result["signal"]``) exits with 128 + the signal number."""
    args = config_argparser(description).parse_args(argv)
    main = int(os.environ.get("RANK", "0")) == 0
    try:
        config = load_config(defaults, None, ())
        out = Path(args.out or config["out"])
        if args.resume:
            saved = saved_config(out)
            if saved is not None:
                config = merge_config(config, saved)
        if args.config:
            config = merge_config(config, _read_json_object(args.config))
        for assignment in args.overrides:
            apply_override(config, assignment)
        if args.out:
            config["out"] = args.out
        if args.force and main:
            clear_run(Path(config["out"]))
        result = train(config, resume=args.resume)
    except (ValueError, FileNotFoundError, RunLockedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if main:
        print(summary(result))
        if result.get("signal"):
            print(f"stopped by {result['signal']} after saving step {result['steps']}; continue with --resume",
                  file=sys.stderr)
    if result.get("signal"):
        return 128 + int(getattr(signal, str(result["signal"]), signal.SIGTERM))
    return 0


def _read_json_object(path: str | os.PathLike[str]) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a config file must hold a JSON object")
    return data


def run_distributed(fn: Callable[..., dict[str, Any]], config: dict[str, Any], resume: bool) -> dict[str, Any]:
    """Call ``fn(config, resume, ctx)`` inside :func:`init_distributed` / :func:`close_distributed`;
    run-folder locks taken during the call (:func:`start_run`) are released after it."""
    ctx = init_distributed(config["device"])
    held = set(_LOCKS)
    try:
        return fn(config, resume, ctx)
    finally:
        for path in [p for p in _LOCKS if p not in held]:
            release_lock(path)
        close_distributed(ctx)


# ---- seeding and distribution ----------------------------------------------------------------
def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) and ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def step_generator(seed: int, step: int, rank: int) -> torch.Generator:
    """A CPU generator for one step on one rank, so the data of step s is the same whether or
    not the run was interrupted before s (and whichever loader worker draws it)."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63))


def validation_generator(seed: int, index: int) -> torch.Generator:
    """The generator of validation batch ``index``: the same batches at every validation, on
    every rank, and never one of the training steps' generators."""
    return torch.Generator().manual_seed((seed * 1_000_003 + 2**61 + index * 7919) % (2**63))


@dataclass
class DistContext:
    """Where this process runs: rank, world size and device. ``world_size == 1`` is a plain run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value: float) -> float:
        """The mean of a float over all ranks (the value itself in a plain run)."""
        if not self.distributed:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any rank."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.all_reduce(t)
        return bool(t.item() > 0)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` in DistributedDataParallel when distributed, else itself."""
        if not self.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids)


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE`` > 1): gloo on the
    CPU, NCCL on CUDA. ``device``: ``auto`` | ``cpu`` | ``cuda``."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but torch sees no CUDA device")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device("cuda", local) if use_cuda else torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=rank, world_size=world)
    return DistContext(rank, world, local, dev)


def close_distributed(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def autocast(ctx: DistContext, enabled: bool, dtype: str = "bfloat16", cpu: bool = False) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` (``bfloat16`` | ``float16``) on CUDA when ``enabled``, and on the CPU
    too when ``cpu``; a no-op otherwise. Wrap forward passes and losses only, never
    ``backward`` or an optimizer step."""
    if dtype not in AMP_DTYPES:
        raise ValueError(f"amp_dtype must be one of {sorted(AMP_DTYPES)}, got {dtype!r}")
    if enabled and (ctx.device.type == "cuda" or (cpu and ctx.device.type == "cpu")):
        return torch.autocast(ctx.device.type, dtype=AMP_DTYPES[dtype])
    return contextlib.nullcontext()


def process_batch(config: dict[str, Any], ctx: DistContext) -> int:
    """The batch one process draws per step: ``global_batch`` / world size when ``global_batch``
    is set (it must divide evenly), else ``data.batch`` (then the global batch is ``data.batch``
    x world size). Either way it must divide by ``accumulate``."""
    global_batch, accumulate = int(config["global_batch"]), int(config["accumulate"])
    if accumulate < 1:
        raise ValueError(f"accumulate must be >= 1, got {accumulate}")
    if global_batch > 0:
        if global_batch % ctx.world_size:
            raise ValueError(f"global_batch {global_batch} does not divide over {ctx.world_size} processes")
        batch = global_batch // ctx.world_size
    else:
        batch = int(config["data"]["batch"])
    if batch < 1 or batch % accumulate:
        raise ValueError(f"the batch per process ({batch}) must be a positive multiple of accumulate ({accumulate})")
    return batch


def split_batch(batch: Any, parts: int) -> list[Any]:
    """Cut a batch (a tensor, array, or a tuple / list / dict of them, all with the batch on
    dimension 0) into ``parts`` equal micro-batches."""
    if parts == 1:
        return [batch]
    if isinstance(batch, (torch.Tensor, np.ndarray)):
        n = len(batch)
        if n % parts:
            raise ValueError(f"a batch of {n} does not split into {parts} micro-batches")
        size = n // parts
        return [batch[i * size:(i + 1) * size] for i in range(parts)]
    if isinstance(batch, dict):
        cut = {k: split_batch(v, parts) for k, v in batch.items()}
        return [{k: cut[k][i] for k in batch} for i in range(parts)]
    if isinstance(batch, (tuple, list)):
        cut_items = [split_batch(v, parts) for v in batch]
        return [type(batch)(c[i] for c in cut_items) for i in range(parts)]
    raise TypeError(f"cannot split a batch of type {type(batch).__name__}")


class Updater:
    """Optimizer steps for every trainer: gradient accumulation over micro-batches, autocast on
    the forward pass only, fp16 loss scaling (one ``GradScaler`` per optimizer, enabled for
    ``amp_dtype`` float16 on CUDA, or on the CPU with ``amp_cpu``), gradient clipping of the unscaled gradients, and the
    learning rate of the step set from the schedule.

    ``optimizers``: name -> optimizer; ``config``: the run's config (``accumulate``,
    ``grad_clip``, ``amp``, ``amp_dtype``, ``amp_cpu``).
    """

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer], ctx: DistContext, config: dict[str, Any]) -> None:
        self.optimizers, self.ctx = optimizers, ctx
        self.accumulate = int(config.get("accumulate", 1))
        self.grad_clip = float(config.get("grad_clip", 0.0))
        self.amp = bool(config.get("amp", False))
        self.amp_dtype = str(config.get("amp_dtype", "bfloat16"))
        self.amp_cpu = bool(config.get("amp_cpu", False))
        if self.accumulate < 1:
            raise ValueError(f"accumulate must be >= 1, got {self.accumulate}")
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be >= 0 (0 = off), got {self.grad_clip}")
        autocast(ctx, False, self.amp_dtype)  # validates the dtype name
        on = ctx.device.type == "cuda" or (self.amp_cpu and ctx.device.type == "cpu")
        fp16 = self.amp and self.amp_dtype == "float16" and on
        kind = ctx.device.type if ctx.device.type in ("cuda", "cpu") else "cuda"
        self.scalers = {name: torch.amp.GradScaler(kind, enabled=fp16) for name in optimizers}
        self.last_grad_norm: dict[str, float] = {}

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward-pass autocast of this run (a no-op with ``amp`` off, and on the CPU unless
        ``amp_cpu``)."""
        return autocast(self.ctx, self.amp, self.amp_dtype, self.amp_cpu)

    def update(self, name: str, batch: Any, loss_fn: Callable[[Any], tuple[torch.Tensor, dict[str, Any]]]) -> dict[str, float]:
        """One step of optimizer ``name``: ``loss_fn(micro_batch) -> (loss, logs)`` runs under
        autocast on each of ``accumulate`` micro-batches; each loss / ``accumulate`` is scaled
        and back-propagated outside autocast; then the gradients are unscaled, clipped to
        ``grad_clip`` (global L2 norm; 0 = off) and the optimizer steps. Returns the logs
        (floats) averaged over the micro-batches."""
        opt, scaler = self.optimizers[name], self.scalers[name]
        opt.zero_grad(set_to_none=True)
        parts = split_batch(batch, self.accumulate)
        totals: dict[str, float] = {}
        for part in parts:
            with self.autocast():
                loss, logs = loss_fn(part)
            scaler.scale(loss.float() / len(parts)).backward()
            for key, value in logs.items():
                totals[key] = totals.get(key, 0.0) + float(value) / len(parts)
        scaler.unscale_(opt)
        if self.grad_clip > 0:
            params = [p for g in opt.param_groups for p in g["params"] if p.grad is not None]
            norm = torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
            self.last_grad_norm[name] = float(norm)
        scaler.step(opt)
        scaler.update()
        return totals

    def state_dict(self) -> dict[str, Any]:
        return {name: s.state_dict() for name, s in self.scalers.items() if s.is_enabled()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, s in state.items():
            if name in self.scalers and self.scalers[name].is_enabled():
                self.scalers[name].load_state_dict(s)


def bce(prob: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Binary cross-entropy of probabilities in float32, outside autocast (which refuses it on
    CUDA); ``F.binary_cross_entropy`` otherwise."""
    off = torch.autocast("cuda", enabled=False) if prob.is_cuda else contextlib.nullcontext()
    with off:
        return F.binary_cross_entropy(prob.float(), target.float(), reduction=reduction)


def set_frozen(module: nn.Module, frozen: bool) -> None:
    """Turn ``requires_grad`` off (``frozen``) or on for every parameter of ``module``."""
    for p in module.parameters():
        p.requires_grad_(not frozen)


# ---- EMA and learning-rate schedules -------------------------------------------------------------
class EMA(nn.Module):
    """An exponential moving average of a module's parameters (buffers are copied).

    After each optimizer step, ``update(step)`` sets shadow = d * shadow + (1 - d) * param with
    d = min(decay, (1 + step) / (10 + step)) (the usual warm-up, so early averages are not
    dominated by the initial weights). ``decay`` 0 turns the average off (the shadow follows the
    weights). ``swapped()`` puts the averaged weights into the module for a while (export,
    validation, samples).
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema.decay must be in [0, 1) (0 = off), got {decay}")
        self.decay = float(decay)
        self.target = [module]  # a list, so the target is not a submodule of the shadow
        self.shadow = copy.deepcopy(module)
        set_frozen(self.shadow, True)

    def factor(self, step: int) -> float:
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = self.factor(step)
        for s, p in zip(self.shadow.parameters(), self.target[0].parameters()):
            s.mul_(d).add_(p.detach(), alpha=1.0 - d)
        for s, b in zip(self.shadow.buffers(), self.target[0].buffers()):
            s.copy_(b)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[nn.Module]:
        """The target module holding the averaged weights inside the block, its own after."""
        module = self.target[0]
        raw = {k: v.detach().clone() for k, v in module.state_dict().items()}
        module.load_state_dict(self.shadow.state_dict())
        try:
            yield module
        finally:
            module.load_state_dict(raw)


def lr_factor(step: int, max_steps: int, schedule: dict[str, Any]) -> float:
    """The learning-rate multiplier of step ``step`` (0-based).

    ``warmup`` steps rise linearly to 1 ((step + 1) / warmup); then ``kind``: ``constant`` (1),
    ``cosine`` (from 1 down to ``min_factor`` at ``max_steps``), ``linear`` (likewise, a straight
    line) or ``step`` (``gamma`` ** the number of ``milestones`` <= step).
    """
    kind, warmup = schedule["kind"], int(schedule["warmup"])
    if kind not in ("constant", "cosine", "linear", "step"):
        raise ValueError(f"lr_schedule.kind must be constant, cosine, linear or step, got {kind!r}")
    if warmup < 0:
        raise ValueError(f"lr_schedule.warmup must be >= 0, got {warmup}")
    if step < warmup:
        return (step + 1) / warmup
    low = float(schedule["min_factor"])
    t = min(1.0, (step - warmup) / max(1, max_steps - warmup))
    if kind == "cosine":
        return low + (1.0 - low) * 0.5 * (1.0 + math.cos(math.pi * t))
    if kind == "linear":
        return 1.0 - (1.0 - low) * t
    if kind == "step":
        return float(schedule["gamma"]) ** sum(1 for m in schedule["milestones"] if step >= int(m))
    return 1.0


# ---- metrics ----------------------------------------------------------------------------------
def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image of two (N, C, H, W) batches in [0, 1] -> (N,) (inf where equal)."""
    mse = ((a.double() - b.double()) ** 2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / mse)


def ssim(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """SSIM per image of two (N, C, H, W) batches in [0, 1] -> (N,): Gaussian window (sigma 1.5,
    radius 3.5 sigma), K1 = 0.01, K2 = 0.03, population covariances, mean over channels and the
    positions whose window lies inside the image (Wang et al. 2004, as scikit-image computes it
    with ``gaussian_weights=True``)."""
    radius = int(3.5 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    c = a.shape[1]
    kh = g.reshape(1, 1, -1, 1).repeat(c, 1, 1, 1).to(a.device)
    kw = g.reshape(1, 1, 1, -1).repeat(c, 1, 1, 1).to(a.device)

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, kh, groups=c), kw, groups=c)

    a, b = a.double(), b.double()
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.flatten(1).mean(1)


# ---- training state (no pickle) --------------------------------------------------------------
STATE_WEIGHTS, STATE_META = "state.safetensors", "state.json"
CHECKPOINTS = "checkpoints"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def _flatten_optimizer(name: str, opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for idx, entry in sd["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{name}.{idx}.{key}"] = value.detach().contiguous().cpu()
            else:
                plain.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "plain_state": plain, "indices": [str(i) for i in sd["state"]]}


def _unflatten_optimizer(name: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                         meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    prefix = f"optim.{name}."
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, field_name = key[len(prefix):].split(".", 1)
            state.setdefault(int(idx), {})[field_name] = value
    for idx, fields in meta["plain_state"].items():
        state.setdefault(int(idx), {}).update(fields)
    # JSON turns tuples (Adam's betas) into lists; the optimizer expects them as written.
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
              for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def save_training_state(folder: str | os.PathLike[str], modules: dict[str, nn.Module],
                        optimizers: dict[str, torch.optim.Optimizer], meta: dict[str, Any]) -> Path:
    """Write ``state.safetensors`` (every module's weights, every optimizer's tensors; the step
    in its metadata) and ``state.json`` (``meta``: step, schedule state, config; the optimizers'
    hyper-parameters and non-tensor state) into ``folder``, each file through a temporary file
    and a rename. :func:`write_checkpoint` makes the pair atomic as a whole. Returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            tensors[f"model.{name}.{key}"] = value.detach().contiguous().cpu()
    optim_meta = {}
    for name, opt in optimizers.items():
        t, m = _flatten_optimizer(name, opt)
        tensors.update(t)
        optim_meta[name] = m
    step = str(int(meta.get("step", 0)))
    tmp_w, tmp_m = folder / (STATE_WEIGHTS + ".tmp"), folder / (STATE_META + ".tmp")
    save_file(tensors, str(tmp_w), metadata={"format": "pt", "step": step})
    tmp_m.write_text(json.dumps({**meta, "optimizers": optim_meta}, indent=2, sort_keys=True))
    for tmp in (tmp_w, tmp_m):
        _fsync_file(tmp)
    os.replace(tmp_w, folder / STATE_WEIGHTS)
    os.replace(tmp_m, folder / STATE_META)
    return folder


def has_training_state(folder: str | os.PathLike[str]) -> bool:
    folder = Path(folder)
    return (folder / STATE_WEIGHTS).is_file() and (folder / STATE_META).is_file()


def weights_step(path: str | os.PathLike[str]) -> int | None:
    """The step recorded in a state file's safetensors metadata (None when absent)."""
    with safe_open(str(path), framework="pt") as f:
        step = (f.metadata() or {}).get("step")
    return None if step is None else int(step)


def load_training_state(folder: str | os.PathLike[str], modules: dict[str, nn.Module],
                        optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
    """Load what :func:`save_training_state` wrote into ``modules`` and ``optimizers`` (strictly)
    and return the ``meta`` it was given. A partial state (one of the two files) raises
    FileNotFoundError; weights whose recorded step differs from ``state.json``'s (a mix of two
    checkpoints) raise ValueError."""
    folder = Path(folder)
    present = [n for n in (STATE_WEIGHTS, STATE_META) if (folder / n).is_file()]
    if len(present) < 2:
        what = f"only {present[0]}" if present else "neither file"
        raise FileNotFoundError(f"no complete training state in {folder} (expected {STATE_WEIGHTS} and "
                                f"{STATE_META}; found {what})")
    try:
        meta = json.loads((folder / STATE_META).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{folder / STATE_META}: not valid JSON ({exc}); the checkpoint is damaged") from exc
    recorded = weights_step(folder / STATE_WEIGHTS)
    if recorded is not None and recorded != int(meta.get("step", -1)):
        raise ValueError(f"{folder}: {STATE_WEIGHTS} holds step {recorded} but {STATE_META} says step "
                         f"{meta.get('step')}: a mixed training state; refusing to resume from it")
    tensors = load_file(str(folder / STATE_WEIGHTS))
    for name, module in modules.items():
        prefix = f"model.{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
    for name, opt in optimizers.items():
        if name not in meta["optimizers"]:
            raise ValueError(f"{folder}: the training state has no optimizer '{name}'")
        _unflatten_optimizer(name, opt, tensors, meta["optimizers"][name])
    return meta


# ---- checkpoint folders ------------------------------------------------------------------------
def checkpoint_dirs(out: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """The complete step-numbered checkpoint folders of a run, oldest first: (step, folder)."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := _STEP_DIR.match(p.name))]
    return sorted(found)


def latest_checkpoint(out: str | os.PathLike[str]) -> Path | None:
    """The folder to resume a run from: its newest step folder, or ``out`` itself when it holds
    a state written by :func:`save_training_state` directly (older runs); None when neither."""
    dirs = checkpoint_dirs(out)
    if dirs:
        return dirs[-1][1]
    out = Path(out)
    if (out / STATE_WEIGHTS).exists() or (out / STATE_META).exists():
        return out
    return None


def saved_config(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The config recorded in a run's newest checkpoint (None when it has none)."""
    folder = latest_checkpoint(out)
    if folder is None or not (folder / STATE_META).is_file():
        return None
    return json.loads((folder / STATE_META).read_text()).get("config")


def write_checkpoint(out: str | os.PathLike[str], step: int, write: Callable[[Path], None]) -> Path:
    """Create ``out/checkpoints/step_<step>`` atomically: ``write(folder)`` fills a temporary
    folder, which is then renamed; a kill at any moment leaves either the complete folder or
    none (leftover temporary folders are removed by the next run). Returns the folder."""
    root = Path(out) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}_{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    write(tmp)
    for path in tmp.iterdir():
        _fsync_file(path)
    _fsync_dir(tmp)
    if final.exists():  # the same step saved again (a resumed run that stopped at once)
        old = root / f".old_step_{step:08d}_{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old)
    else:
        os.rename(tmp, final)
    _fsync_dir(root)
    return final


def prune_checkpoints(out: str | os.PathLike[str], keep_last: int, keep: Sequence[int] = ()) -> None:
    """Delete step folders but the newest ``keep_last`` and the steps in ``keep`` (the best)."""
    dirs = checkpoint_dirs(out)
    for step, path in dirs[: max(0, len(dirs) - keep_last)]:
        if step not in keep:  # renamed first, so that a kill never leaves half a step folder
            doomed = path.with_name(f".old_{path.name}_{os.getpid()}")
            os.rename(path, doomed)
            shutil.rmtree(doomed)


def _remove_stale_temporaries(out: Path) -> None:
    root = out / CHECKPOINTS
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith((".tmp_", ".old_")):
                shutil.rmtree(p, ignore_errors=True)
    for p in out.glob("*.tmp"):
        p.unlink(missing_ok=True)


# ---- run folders: locks, fresh runs, resumes -------------------------------------------------
LOCK_FILE = "run.lock"
_LOCKS: dict[Path, Any] = {}


class RunLockedError(RuntimeError):
    """Another process is training in this run folder."""


def acquire_lock(out: str | os.PathLike[str]) -> Path:
    """Take the run folder's lock (``out/run.lock``, an exclusive POSIX record lock held until
    :func:`release_lock` or the process ends, so a killed run leaves no stale lock; loader
    workers forked from the run do not inherit it). Raises :class:`RunLockedError` when another
    process holds it."""
    out = Path(out).resolve()
    if out in _LOCKS:
        return out
    out.mkdir(parents=True, exist_ok=True)
    f = open(out / LOCK_FILE, "a+")
    try:
        import fcntl
    except ImportError:  # no POSIX locks on this platform: the lock file records the owner only
        fcntl = None
    if fcntl is not None:
        try:
            fcntl.lockf(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise RunLockedError(f"{out} is in use by another training process (pid {holder}); wait for it to "
                                 f"finish or choose another --out") from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    _LOCKS[out] = f
    return out


def release_lock(out: str | os.PathLike[str]) -> None:
    f = _LOCKS.pop(Path(out).resolve(), None)
    if f is not None:
        f.close()


def clear_run(out: str | os.PathLike[str]) -> None:
    """Delete what a training run wrote into ``out`` (checkpoints, logs, plots, samples, exported
    checkpoints, TensorBoard events) so that a new run can start there (``--force``). Other
    files are left alone. Refuses while another process trains there."""
    out = Path(out)
    if not out.is_dir():
        return
    acquire_lock(out)
    try:
        for name in (CHECKPOINTS, "tensorboard"):
            shutil.rmtree(out / name, ignore_errors=True)
        for pattern in ("log.csv", "losses.png", "samples_*.png", STATE_WEIGHTS, STATE_META, "*.tmp"):
            for p in out.glob(pattern):
                p.unlink()
        written = out / "exported.json"
        if written.is_file():
            for name in json.loads(written.read_text()):
                (out / name).unlink(missing_ok=True)
            written.unlink()
    finally:
        release_lock(out)


def holds_run(out: str | os.PathLike[str]) -> bool:
    """Whether ``out`` holds an earlier run that a new one would overwrite: a checkpoint (a run
    stopped before its first checkpoint left nothing to keep; its log is replaced)."""
    return latest_checkpoint(out) is not None


def open_run(out: str | os.PathLike[str], resume: bool, ctx: DistContext) -> Path | None:
    """Prepare ``out`` for a run and return the checkpoint folder to resume from (None for a
    fresh run). The main process takes the folder's lock. Refuses (ValueError) ``resume``
    without a checkpoint, and a fresh run in a folder that holds an earlier one."""
    out = Path(out)
    refusal: Exception | None = None
    if ctx.main:  # the main process decides; the others follow its verdict
        try:
            acquire_lock(out)
            _remove_stale_temporaries(out)
            folder = latest_checkpoint(out)
            if resume and folder is None:
                raise ValueError(f"nothing to resume in {out}: no checkpoint there (start a new run without --resume)")
            if not resume and holds_run(out):
                raise ValueError(f"{out} holds an earlier run (a checkpoint at {folder}); continue it with --resume, "
                                 f"start over with --force (deletes its checkpoints and logs), or choose another --out")
        except (ValueError, RunLockedError, OSError) as exc:
            refusal = exc
    if ctx.any(refusal is not None):
        if refusal is not None:
            raise refusal
        raise RuntimeError(f"the main process refused the run folder {out}; see its message")
    return latest_checkpoint(out) if resume else None


# ---- logs, plots, samples --------------------------------------------------------------------
class CsvLog:
    """Append-only CSV of per-step values. Opening it for a resumed run keeps the rows up to
    ``resume_step`` (rows written after the last saved checkpoint, and a line cut short by a
    kill, are dropped), so every step appears once."""

    def __init__(self, path: str | os.PathLike[str], fields: Sequence[str], resume_step: int = 0) -> None:
        self.path, self.fields = Path(path), ["step", *fields]
        rows = []
        if resume_step > 0 and self.path.is_file():
            with self.path.open(newline="") as f:
                for r in csv.DictReader(f):
                    try:
                        if int(r["step"]) <= resume_step:
                            rows.append(r)
                    except (TypeError, ValueError):
                        continue
        tmp = self.path.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, self.path)

    def write(self, step: int, values: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow({"step": step, **values})


def read_csv_log(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


class TensorBoardLog:
    """Scalars to ``out/tensorboard`` when the ``tensorboard`` package is installed; without it a
    one-line note is printed and nothing is written."""

    def __init__(self, folder: Path, enabled: bool, purge_step: int | None = None) -> None:
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("note: TensorBoard logs skipped (pip install tensorboard to get them); log.csv has the same values",
                  file=sys.stderr)
            return
        self.writer = SummaryWriter(str(folder), purge_step=purge_step)

    def write(self, step: int, values: dict[str, Any]) -> None:
        if self.writer is not None:
            for key, value in values.items():
                if isinstance(value, (int, float)) and math.isfinite(float(value)):
                    self.writer.add_scalar(key, float(value), step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def plot_losses(csv_path: str | os.PathLike[str], png_path: str | os.PathLike[str], fields: Sequence[str]) -> Path:
    """A PNG with one loss curve per field of the CSV log (empty cells skipped), written through
    a temporary file and a rename."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = read_csv_log(csv_path)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for name in fields:
        pts = [(int(r["step"]), float(r[name])) for r in rows if r.get(name) not in (None, "")]
        if pts:
            ax.plot(*zip(*pts), label=name, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if ax.lines:
        ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = Path(str(png_path) + ".tmp")
    fig.savefig(str(tmp), format="png")
    plt.close(fig)
    os.replace(tmp, png_path)
    return Path(png_path)


def save_image_grid(rows: Sequence[Sequence[np.ndarray]], path: str | os.PathLike[str], pad: int = 2) -> Path:
    """Save a grid of float (H, W, 3) images in [0, 1] (all the same size) as a PNG."""
    from PIL import Image

    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    canvas = np.ones((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, 3), dtype=np.float32)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y : y + h, x : x + w] = img
    Image.fromarray(np.rint(np.clip(canvas, 0, 1) * 255).astype(np.uint8)).save(str(path))
    return Path(path)


@contextlib.contextmanager
def progress(total: int, initial: int, enabled: bool) -> Iterator[Any]:
    """A tqdm bar (``set_postfix`` takes the losses); a silent stand-in when not enabled."""
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, disable=not enabled, dynamic_ncols=True, unit="step")
    try:
        yield bar
    finally:
        bar.close()


def rss_mb() -> float:
    """This process's resident memory in MiB (Linux ``/proc``; NaN elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return float("nan")


# ---- provenance ---------------------------------------------------------------------------------
def git_commit() -> dict[str, Any] | None:
    """The checkout's commit and whether it has uncommitted changes (None outside git)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head, "dirty": bool(dirty)}


def provenance(config: dict[str, Any], data: dict[str, Any], step: int, seconds: float,
               history: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """What a trained model came from: the data manifest (with its hash), the config, the steps,
    the training time, the versions and the git commit when available."""
    import pyfill

    out: dict[str, Any] = {
        "data": data,
        "config": config,
        "steps": int(step),
        "train_seconds": round(float(seconds), 3),
        "written_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "pyfill_version": pyfill.__version__,
        "torch_version": torch.__version__,
        "resumes": list(history),
    }
    commit = git_commit()
    if commit is not None:
        out["git"] = commit
    return out


def data_manifest(files: Sequence[tuple[str, int]], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A data manifest: the count and SHA-256 of the sorted (name, size in bytes) list of the
    training files, plus ``extra`` (package images, procedural data settings)."""
    h = hashlib.sha256()
    for name, size in sorted(files):
        h.update(f"{name}\t{size}\n".encode())
    h.update(json.dumps(extra or {}, sort_keys=True).encode())
    return {"files": len(files), "sha256": h.hexdigest(), **(extra or {})}


# ---- the API of the first harness: start_run for a trainer's own loop --------------------------
def start_run(out: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
              fields: Sequence[str], resume: bool, ctx: DistContext) -> tuple[dict[str, Any], CsvLog | None]:
    """Begin or resume a training run in ``out`` for a trainer that runs its own loop: take the
    folder's lock, refuse to overwrite an earlier run without ``resume`` and to resume nothing,
    load the newest checkpoint (a step folder, or a state saved in ``out`` itself) when
    ``resume``, and open the CSV log (main process only).

    Returns (the saved state's metadata, ``{"step": 0}`` for a fresh run; the log or None).
    """
    out = Path(out)
    folder = open_run(out, resume, ctx)
    meta: dict[str, Any] = {"step": 0}
    if folder is not None:
        meta = load_training_state(folder, modules, optimizers)
    log = CsvLog(out / "log.csv", fields, resume_step=int(meta["step"])) if ctx.main else None
    return meta, log


# ---- the training loop ------------------------------------------------------------------------
@dataclass
class Task:
    """What a trainer gives :func:`train_loop`: its networks, optimizers, batches and one step.

    - ``name``: the exported checkpoint's stem (``colorize`` -> ``colorize.safetensors``);
    - ``modules`` / ``optimizers``: everything in the training state (the loop adds the EMA);
      ``lr_keys`` maps each optimizer to the config key of its base learning rate;
    - ``updater``: the :class:`Updater` that the step's optimizer updates go through;
    - ``batches(step, generator)``: the CPU batch of one step, drawn from ``generator`` only
      (called in DataLoader workers; tensors / arrays, or tuples / dicts of them);
    - ``step(step, batch)``: one training step on the batch (moved to the device) -> losses;
    - ``fields`` / ``plot_fields``: the step's CSV columns and the ones plotted;
    - ``export_module`` and ``manifest``: what ``pyfill export`` gets (with the EMA weights);
    - ``ema_target``: the generator whose weights are averaged (None: no EMA);
    - ``validate()`` -> metrics (run with the EMA weights), ``metric`` / ``mode``: the one that
      picks the best checkpoint (``max`` or ``min``), ``val_fields``: its CSV columns;
    - ``sample(batch, path)``: a sample grid; ``state`` / ``load_state`` / ``done``: a schedule's
      own state and end; ``data``: the data manifest (:func:`data_manifest`); ``result()``:
      extra entries for the result;
    - ``extra_exports``: name -> (module, manifest) of further models exported at every
      checkpoint beside the main one (their own weights, no EMA), e.g. an identity encoder.

    A validation that returns no ``metric`` (a phase that does not train the measured model)
    leaves the best checkpoint and the early-stop count as they were.
    """

    name: str
    modules: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    lr_keys: dict[str, str]
    updater: Updater
    batches: Callable[[int, torch.Generator], Any]
    step: Callable[[int, Any], dict[str, float]]
    fields: Sequence[str]
    plot_fields: Sequence[str]
    export_module: nn.Module
    manifest: Any
    ema_target: nn.Module | None = None
    validate: Callable[[], dict[str, float]] | None = None
    metric: str = ""
    mode: str = "max"
    val_fields: Sequence[str] = ()
    sample: Callable[[Any, Path], None] | None = None
    state: Callable[[], dict[str, Any]] | None = None
    load_state: Callable[[dict[str, Any]], None] | None = None
    done: Callable[[], bool] | None = None
    data: dict[str, Any] = field(default_factory=dict)
    result: Callable[[], dict[str, Any]] | None = None
    extra_exports: dict[str, tuple[nn.Module, Any]] = field(default_factory=dict)


class _StepData(torch.utils.data.Dataset):
    """Item ``s`` is the batch of step ``s`` on this rank, drawn from :func:`step_generator`."""

    def __init__(self, batches: Callable[[int, torch.Generator], Any], seed: int, rank: int, length: int) -> None:
        self.batches, self.seed, self.rank, self.length = batches, seed, rank, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, step: int) -> Any:
        return self.batches(step, step_generator(self.seed, step, self.rank))


def step_batches(batches: Callable[[int, torch.Generator], Any], seed: int, rank: int, start: int, stop: int,
                 workers: int, pin: bool = False) -> Iterator[Any]:
    """The batches of steps ``start`` .. ``stop - 1``, made by ``workers`` DataLoader processes
    (0: in this process). The batch of a step depends on (seed, step, rank) only."""
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    data = _StepData(batches, seed, rank, stop)
    if workers == 0:
        for step in range(start, stop):
            yield data[step]
        return
    import multiprocessing

    context = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    loader = torch.utils.data.DataLoader(data, batch_size=None, sampler=range(start, stop), num_workers=workers,
                                         multiprocessing_context=context, pin_memory=pin, prefetch_factor=2)
    it = iter(loader)
    try:
        yield from it
    finally:
        shutdown = getattr(it, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def to_device(batch: Any, device: torch.device) -> Any:
    """Tensors of a batch (also inside tuples, lists, dicts) moved to ``device``; arrays stay."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class _Signals:
    """SIGTERM / SIGINT set ``received`` instead of ending the process, so the loop can save
    first; a second Ctrl-C ends it at once. Only in the main thread."""

    def __init__(self) -> None:
        self.received: str | None = None
        self.previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.received == "SIGINT" and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __enter__(self) -> _Signals:
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def _copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _improved(value: float, best: dict[str, Any] | None, mode: str, min_delta: float) -> bool:
    if best is None:
        return math.isfinite(value)
    return value > best["value"] + min_delta if mode == "max" else value < best["value"] - min_delta


def train_loop(task: Task, config: dict[str, Any], resume: bool, ctx: DistContext) -> dict[str, Any]:
    """Run (or resume) a training in ``config["out"]`` and return {"out", "steps", "seconds",
    "signal" (None, or the signal that stopped the run after saving), "early_stopped", "best"
    ({"step", "value", "metric"} or None), "val" (the last validation), **task.result()}.

    Writes ``checkpoints/step_<n>/`` (training state + exported model, atomically) every
    ``checkpoint_every`` steps and at the end, keeping the newest ``keep_last`` and the best;
    ``<name>.safetensors`` / ``.json`` (the newest export, EMA weights) and
    ``<name>_best.*`` beside them; ``log.csv``; ``tensorboard/``; ``losses.png``;
    ``samples_<step>.png``.
    """
    out = Path(config["out"])
    try:
        return _train_loop(task, config, resume, ctx, out)
    finally:
        if ctx.main:
            release_lock(out)


def _train_loop(task: Task, config: dict[str, Any], resume: bool, ctx: DistContext, out: Path) -> dict[str, Any]:
    folder = open_run(out, resume, ctx)
    if task.mode not in ("max", "min"):
        raise ValueError(f"a task's metric mode is 'max' or 'min', got {task.mode!r}")
    decay = float(config["ema"]["decay"])
    ema = EMA(task.ema_target, decay) if task.ema_target is not None else None
    modules = {**task.modules, **({"ema": ema.shadow} if ema is not None else {})}
    meta: dict[str, Any] = {"step": 0}
    history: list[dict[str, Any]] = []
    if folder is not None:
        changes: dict[str, tuple[Any, Any]] = {}
        with contextlib.suppress(OSError, json.JSONDecodeError):  # load_training_state reports these
            changes = check_resume_config(json.loads((folder / STATE_META).read_text()).get("config", {}), config)
        meta = load_training_state(folder, modules, task.optimizers)
        history = list(meta.get("history", []))
        changes.pop("out", None)
        history.append({"step": int(meta["step"]), "changed": {k: list(v) for k, v in changes.items()}})
        if task.load_state is not None and "task" in meta:
            task.load_state(meta["task"])
        task.updater.load_state_dict(meta.get("scalers", {}))
    start = step = int(meta["step"])
    best: dict[str, Any] | None = meta.get("best")
    bad = int(meta.get("early", {}).get("bad", 0))
    seconds_before = float(meta.get("seconds", 0.0))
    max_steps = int(config["max_steps"])
    every = {k: int(config[k]) for k in ("log_every", "checkpoint_every", "sample_every", "keep_last")}
    if every["checkpoint_every"] < 1 or every["log_every"] < 1 or every["keep_last"] < 1:
        raise ValueError("checkpoint_every, log_every and keep_last must be >= 1")
    patience, min_delta = int(config["early_stop"]["patience"]), float(config["early_stop"]["min_delta"])
    for name in task.optimizers:
        if task.lr_keys.get(name) not in config:
            raise ValueError(f"optimizer {name!r} has no learning-rate key in the config")
    lr_fields = [f"lr_{n}" for n in task.optimizers]
    clip_fields = [f"grad_norm_{n}" for n in task.optimizers] if float(config["grad_clip"]) > 0 else []
    fields = [*task.fields, *lr_fields, *clip_fields, *[f"val_{k}" for k in task.val_fields], "rss_mb"]
    log = CsvLog(out / "log.csv", fields, resume_step=start) if ctx.main else None
    tb = TensorBoardLog(out / "tensorboard", bool(config["tensorboard"]) and ctx.main,
                        purge_step=start + 1 if start else None)
    val: dict[str, float] = {}
    last_saved = start if folder is not None else -1
    stopped: str | None = None
    early_stopped = False
    began = time.perf_counter()

    def averaged() -> contextlib.AbstractContextManager:
        return ema.swapped() if ema is not None else contextlib.nullcontext()

    improved = False

    def validate() -> None:
        """Validation metrics (EMA weights) into ``val``; best and early-stop counts updated."""
        nonlocal best, bad, improved
        improved = False
        if ctx.main and bool(config["validate"]) and task.validate is not None:
            with averaged(), torch.no_grad():
                val.clear()
                val.update(task.validate())
            if task.metric and task.metric in val:
                value = float(val[task.metric])
                improved = _improved(value, best, task.mode, min_delta)
                if improved:
                    best = {"step": step, "value": value, "metric": task.metric}
                    bad = 0
                else:
                    bad += 1

    def checkpoint(step: int) -> None:
        """Save step ``step`` (after :func:`validate` and the step's log row)."""
        nonlocal early_stopped, last_saved
        seconds = seconds_before + time.perf_counter() - began
        state = {"step": step, "config": config, "task": task.state() if task.state else {},
                 "scalers": task.updater.state_dict(), "best": best, "early": {"bad": bad},
                 "history": history, "seconds": seconds, "val": dict(val)}
        if ctx.main:
            manifest = copy.deepcopy(task.manifest)
            manifest.provenance = {**manifest.provenance,
                                   "training": provenance(config, task.data, step, seconds, history)}

            def write(d: Path) -> None:
                from pyfill.export import save_checkpoint

                save_training_state(d, modules, task.optimizers, state)
                with averaged():
                    save_checkpoint(task.export_module, manifest, d / task.name)
                for name, (module, extra_manifest) in task.extra_exports.items():
                    extra_manifest = copy.deepcopy(extra_manifest)
                    extra_manifest.provenance = {**extra_manifest.provenance, "training": manifest.provenance["training"]}
                    save_checkpoint(module, extra_manifest, d / name)

            saved_at = write_checkpoint(out, step, write)
            names = [f"{task.name}.safetensors", f"{task.name}.json"]
            for n in [*names, *(f"{e}{x}" for e in task.extra_exports for x in (".safetensors", ".json"))]:
                _copy_atomic(saved_at / n, out / n)
            if improved:
                for n in names:
                    _copy_atomic(saved_at / n, out / n.replace(task.name, f"{task.name}_best", 1))
            (out / "exported.json").write_text(json.dumps(
                names + [n.replace(task.name, f"{task.name}_best", 1) for n in names]))
            if (out / "log.csv").is_file():
                plot_losses(out / "log.csv", out / "losses.png", task.plot_fields)
            prune_checkpoints(out, every["keep_last"], keep=[best["step"]] if best else [])
        last_saved = step
        if patience > 0 and ctx.any(bad >= patience if ctx.main else False):
            early_stopped = True

    def done() -> bool:
        return task.done is not None and task.done()

    pin = ctx.device.type == "cuda"
    batches = step_batches(task.batches, int(config["seed"]), ctx.rank, start, max_steps, int(config["workers"]), pin)
    try:
        with _Signals() as signals, progress(max_steps, start, ctx.main) as bar:
            while step < max_steps and not done() and not early_stopped:
                if ctx.any(signals.received is not None):
                    stopped = signals.received or "SIGTERM"
                    break
                batch = to_device(next(batches), ctx.device)
                for name, opt in task.optimizers.items():
                    lr = float(config[task.lr_keys[name]]) * lr_factor(step, max_steps, config["lr_schedule"])
                    for group in opt.param_groups:
                        group["lr"] = lr
                logs = dict(task.step(step, batch))
                if ema is not None:
                    ema.update(step)
                step += 1
                logs.update({f"lr_{n}": o.param_groups[0]["lr"] for n, o in task.optimizers.items()})
                logs.update({f"grad_norm_{n}": v for n, v in task.updater.last_grad_norm.items()})
                due = step % every["checkpoint_every"] == 0 or step >= max_steps or done()
                if due:
                    validate()
                    logs.update({f"val_{k}": v for k, v in val.items()})
                if step % every["log_every"] == 0 or due:
                    logs["rss_mb"] = rss_mb()
                    if log is not None:
                        log.write(step, logs)  # before the checkpoint: a resume drops rows after it
                    tb.write(step, logs)
                if due:
                    checkpoint(step)
                bar.update(1)
                bar.set_postfix({k: f"{logs[k]:.3g}" for k in task.plot_fields if k in logs})
                if ctx.main and task.sample is not None and every["sample_every"] and step % every["sample_every"] == 0:
                    with averaged(), torch.no_grad():
                        task.sample(batch, out / f"samples_{step:06d}.png")
            if step != last_saved:  # stopped by a signal between checkpoints, or nothing to do
                validate()
                checkpoint(step)
    finally:
        batches.close()
        tb.close()
    seconds = time.perf_counter() - began
    result = {"out": str(out), "steps": step, "seconds": seconds, "signal": stopped,
              "early_stopped": early_stopped, "best": best, "val": dict(val)}
    if task.result is not None:
        result.update(task.result())
    return result
