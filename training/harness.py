"""The shared training harness: configs with command-line overrides, seeding, single-process or
``torchrun`` DistributedDataParallel runs, safetensors + JSON training state (weights, optimizer
state, schedule state) for exact resume, a CSV log, loss plots and sample grids.

Every system's trainer (``python -m training.<system>``) builds on these pieces.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import json
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import distributed as dist
from torch import nn


# ---- configs ---------------------------------------------------------------------------------
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
        try:
            data = json.loads(Path(path).read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config file must hold a JSON object")
        config = merge_config(config, data)
    for assignment in overrides:
        apply_override(config, assignment)
    return config


def config_argparser(description: str) -> argparse.ArgumentParser:
    """The command line every trainer shares: ``--config FILE``, ``--set key=value`` (repeatable),
    ``--out DIR`` and ``--resume``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help="JSON config file (defaults fill the rest)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (nested keys with dots; value parsed as JSON)")
    parser.add_argument("--out", help="output folder (overrides the config's 'out')")
    parser.add_argument("--resume", action="store_true", help="continue from the training state in the output folder")
    return parser


def run_trainer(description: str, defaults: dict[str, Any], train: Callable[..., dict[str, Any]],
                argv: Sequence[str] | None, summary: Callable[[dict[str, Any]], str]) -> int:
    """The ``main`` of every trainer: parse :func:`config_argparser`'s options, build the config,
    train, and print ``summary(result)`` on the main process."""
    args = config_argparser(description).parse_args(argv)
    config = load_config(defaults, args.config, args.overrides)
    if args.out:
        config["out"] = args.out
    result = train(config, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:
        print(summary(result))
    return 0


def run_distributed(fn: Callable[..., dict[str, Any]], config: dict[str, Any], resume: bool) -> dict[str, Any]:
    """Call ``fn(config, resume, ctx)`` inside :func:`init_distributed` / :func:`close_distributed`."""
    ctx = init_distributed(config["device"])
    try:
        return fn(config, resume, ctx)
    finally:
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
    not the run was interrupted before s."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63))


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


def autocast(ctx: DistContext, enabled: bool) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on CUDA when ``enabled``; a no-op on the CPU."""
    if enabled and ctx.device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---- training state (no pickle) --------------------------------------------------------------
STATE_WEIGHTS, STATE_META = "state.safetensors", "state.json"


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
            idx, field = key[len(prefix):].split(".", 1)
            state.setdefault(int(idx), {})[field] = value
    for idx, fields in meta["plain_state"].items():
        state.setdefault(int(idx), {}).update(fields)
    # JSON turns tuples (Adam's betas) into lists; the optimizer expects them as written.
    groups = [{k: tuple(v) if isinstance(v, list) and k != "params" else v for k, v in g.items()}
              for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def save_training_state(folder: str | os.PathLike[str], modules: dict[str, nn.Module],
                        optimizers: dict[str, torch.optim.Optimizer], meta: dict[str, Any]) -> Path:
    """Write ``state.safetensors`` (every module's weights, every optimizer's tensors) and
    ``state.json`` (``meta``: step, schedule state, config; the optimizers' hyper-parameters and
    non-tensor state) atomically. Returns the folder."""
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
    tmp_w, tmp_m = folder / (STATE_WEIGHTS + ".tmp"), folder / (STATE_META + ".tmp")
    save_file(tensors, str(tmp_w))
    tmp_m.write_text(json.dumps({**meta, "optimizers": optim_meta}, indent=2, sort_keys=True))
    os.replace(tmp_w, folder / STATE_WEIGHTS)
    os.replace(tmp_m, folder / STATE_META)
    return folder


def has_training_state(folder: str | os.PathLike[str]) -> bool:
    folder = Path(folder)
    return (folder / STATE_WEIGHTS).is_file() and (folder / STATE_META).is_file()


def load_training_state(folder: str | os.PathLike[str], modules: dict[str, nn.Module],
                        optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, Any]:
    """Load what :func:`save_training_state` wrote into ``modules`` and ``optimizers`` (strictly)
    and return the ``meta`` it was given."""
    folder = Path(folder)
    if not has_training_state(folder):
        raise FileNotFoundError(f"no training state in {folder} (expected {STATE_WEIGHTS} and {STATE_META})")
    tensors = load_file(str(folder / STATE_WEIGHTS))
    meta = json.loads((folder / STATE_META).read_text())
    for name, module in modules.items():
        prefix = f"model.{name}."
        module.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}, strict=True)
    for name, opt in optimizers.items():
        if name not in meta["optimizers"]:
            raise ValueError(f"{folder}: the training state has no optimizer '{name}'")
        _unflatten_optimizer(name, opt, tensors, meta["optimizers"][name])
    return meta


# ---- logs, plots, samples --------------------------------------------------------------------
class CsvLog:
    """Append-only CSV of per-step values. Opening it for a resumed run drops the rows after
    ``resume_step`` (written after the last saved state), so every step appears once."""

    def __init__(self, path: str | os.PathLike[str], fields: Sequence[str], resume_step: int = 0) -> None:
        self.path, self.fields = Path(path), ["step", *fields]
        rows = []
        if resume_step > 0 and self.path.is_file():
            with self.path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, self.fields)
            writer.writeheader()
            writer.writerows(rows)

    def write(self, step: int, values: dict[str, Any]) -> None:
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow({"step": step, **values})


def start_run(out: Path, modules: dict[str, nn.Module], optimizers: dict[str, torch.optim.Optimizer],
              fields: Sequence[str], resume: bool, ctx: DistContext) -> tuple[dict[str, Any], CsvLog | None]:
    """Begin or resume a training run in ``out``: load the saved state when ``resume`` and one
    exists, create the folder, and open the CSV log (main process only).

    Returns (the saved state's metadata, ``{"step": 0}`` for a fresh run; the log or None).
    """
    meta: dict[str, Any] = {"step": 0}
    if resume and has_training_state(out):
        meta = load_training_state(out, modules, optimizers)
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
    log = CsvLog(out / "log.csv", fields, resume_step=int(meta["step"])) if ctx.main else None
    return meta, log


def read_csv_log(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def plot_losses(csv_path: str | os.PathLike[str], png_path: str | os.PathLike[str], fields: Sequence[str]) -> Path:
    """A PNG with one loss curve per field of the CSV log (empty cells skipped)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = read_csv_log(csv_path)
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for field in fields:
        pts = [(int(r["step"]), float(r[field])) for r in rows if r.get(field) not in (None, "")]
        if pts:
            ax.plot(*zip(*pts), label=field, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(loc="best")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(png_path))
    plt.close(fig)
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
