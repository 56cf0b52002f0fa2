"""Drawing-board generation training (SPEC S2): ``python -m training.generate [--config FILE] [--set k=v]``.

Samples are (image, label map) pairs: the procedural landscapes (``data.source`` =
``landscapes``) or a user's folder (``folder``: see :meth:`training.data.LabelledImageSet.from_folder`).
The generator (``spade`` family) maps (one-hot labels, stroke-grid latent) to RGB; the latent is
``pyfill.ops.stroke_grid_from_image`` of the ground truth with ``data.drop`` of the cells zeroed.
The multi-scale PatchGAN discriminator sees (labels, image). Per batch one D step and one G step:

- D: hinge loss, mean(relu(1 - D(real))) + mean(relu(1 + D(fake))), averaged over the scales;
- G: -mean(D(fake)) averaged over the scales + ``fm_weight`` x discriminator feature matching
  (L1 between D's intermediate features of fake and real, summed over layers, averaged over
  scales) + ``l1_weight`` x L1(fake, real) (0 = off; not part of SPEC S2, an option for short
  budgets);
- ``data.empty_latent``: the probability that a sample's latent is all zeros instead (what the
  Engine feeds for an empty stroke image), so that no strokes is a case the model has seen (0 =
  SPEC S2's synthesis only);
- Adam with betas (0, 0.999) and TTUR learning rates (``lr_d`` > ``lr_g``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pyfill.export import save_checkpoint
from pyfill.models import build_model, full_config, make_manifest
from pyfill.models.spade import MultiScaleDiscriminator
from pyfill.ops import stroke_grid_from_image, stroke_grid_latent
from training import harness as H
from training.data import LabelledImageSet

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "device": "auto",
    "amp": True,
    "out": "runs/generate",
    "model": {"base": 64, "size": 128, "hidden": 32, "min_width": 16, "stroke_map": False},
    "disc": {"base": 32, "layers": 3, "scales": 2},
    "data": {"source": "landscapes", "folder": "", "count": 2000, "batch": 8, "drop": 0.75, "empty_latent": 0.0},
    "lr_g": 1e-4,
    "lr_d": 4e-4,
    "fm_weight": 10.0,
    "l1_weight": 0.0,
    "max_steps": 10000,
    "log_every": 1,
    "checkpoint_every": 500,
    "sample_every": 1000,
}

LOSS_FIELDS = ("loss_g", "loss_d", "adv_g", "fm", "l1")


def hinge_d(real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """The discriminator's hinge loss averaged over scales."""
    terms = [F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits)]
    return torch.stack(terms).mean()


def hinge_g(fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """The generator's hinge loss, -mean(D(fake)), averaged over scales."""
    return torch.stack([-f.mean() for f in fake_logits]).mean()


def feature_matching(fake: Sequence[Sequence[torch.Tensor]], real: Sequence[Sequence[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminator's intermediate features (all layers but the logits) of the
    fake and the real images, summed over layers and averaged over scales."""
    per_scale = [sum(F.l1_loss(f, r.detach()) for f, r in zip(fs[:-1], rs[:-1])) for fs, rs in zip(fake, real)]
    return torch.stack(per_scale).mean()


def one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    """int64 (B, H, W) -> float32 (B, classes, H, W)."""
    return F.one_hot(labels, classes).permute(0, 3, 1, 2).float()


def make_inputs(images: np.ndarray, labels: np.ndarray, classes: int, drop: float, seed: int,
                device: torch.device, empty: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 (B, H, W, 3) images and int64 (B, H, W) labels -> (one-hot labels (B, classes, H, W),
    latent (B, 648) from ``stroke_grid_from_image(images, drop=drop, seed=seed)`` (all zeros for
    the samples where the bool (B,) ``empty`` is set), real RGB (B, 3, H, W) in [-1, 1])."""
    latent = stroke_grid_latent(stroke_grid_from_image(images, grid=(9, 9), drop=drop, seed=seed))
    if empty is not None:
        latent[empty] = 0.0
    real = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    seg = one_hot(torch.from_numpy(labels), classes)
    return seg.to(device), torch.from_numpy(latent).to(device), real.to(device)


def set_frozen(module: nn.Module, frozen: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(not frozen)


class Trainer:
    """The G and D modules, their Adam optimizers (betas (0, 0.999)) and one training step."""

    def __init__(self, config: dict[str, Any], classes: int, ctx: H.DistContext) -> None:
        self.config, self.ctx = config, ctx
        self.generator = build_model("spade", {**config["model"], "classes": classes}).to(ctx.device)
        self.discriminator = MultiScaleDiscriminator(classes, **config["disc"]).to(ctx.device)
        self.g_train, self.d_train = ctx.wrap(self.generator), ctx.wrap(self.discriminator)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config["lr_g"], betas=(0.0, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config["lr_d"], betas=(0.0, 0.999))

    def step(self, seg: torch.Tensor, latent: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            fake = self.generator(seg, latent)
        n = len(real)
        logits = [f[-1] for f in self.d_train(torch.cat([seg, seg]), torch.cat([real, fake]))]
        loss_d = hinge_d([x[:n] for x in logits], [x[n:] for x in logits])
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        set_frozen(self.discriminator, True)
        fake = self.g_train(seg, latent)
        d_fake = self.discriminator(seg, fake)
        with torch.no_grad():
            d_real = self.discriminator(seg, real)
        adv = hinge_g([f[-1] for f in d_fake])
        fm = feature_matching(d_fake, d_real)
        l1 = F.l1_loss(fake, real)
        loss_g = adv + self.config["fm_weight"] * fm + self.config["l1_weight"] * l1
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        set_frozen(self.discriminator, False)
        m = self.ctx.mean
        return {"loss_g": m(loss_g.item()), "loss_d": m(loss_d.item()), "adv_g": m(adv.item()),
                "fm": m(fm.item()), "l1": m(l1.item())}


def load_data(config: dict[str, Any]) -> LabelledImageSet:
    data, size = config["data"], int(config["model"]["size"])
    if data["source"] == "landscapes":
        return LabelledImageSet.from_landscapes(int(data["count"]), size, seed=int(config["seed"]) * 1_000_003)
    if data["source"] == "folder":
        if not data["folder"]:
            raise ValueError("data.source is 'folder' but data.folder is empty")
        return LabelledImageSet.from_folder(data["folder"], size)
    raise ValueError(f"data.source must be 'landscapes' or 'folder', got {data['source']!r}")


def sample_rows(generator: nn.Module, seg: torch.Tensor, latent: torch.Tensor, real: torch.Tensor,
                colours: np.ndarray, count: int = 4) -> list[list[np.ndarray]]:
    """Rows of (legend-coloured labels, real, generated from the latent, generated from a zero
    latent) as float (H, W, 3) images in [0, 1]."""
    n = min(count, len(real))
    with torch.no_grad():
        fake = generator(seg[:n], latent[:n])
        blank = generator(seg[:n], torch.zeros_like(latent[:n]))

    def hwc(t: torch.Tensor) -> np.ndarray:
        return ((t.permute(1, 2, 0).float().cpu().numpy() + 1) / 2).clip(0, 1)

    legend = colours[seg[:n].argmax(1).cpu().numpy()].astype(np.float32) / 255.0
    return [[legend[i], hwc(real[i]), hwc(fake[i]), hwc(blank[i])] for i in range(n)]


def train(config: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """Run a training; returns {"out", "steps", "seconds", "data_seconds", "model"} (``model``: the
    trained generator).

    Writes to ``config["out"]``: ``state.safetensors`` / ``state.json`` (resumable state),
    ``generate.safetensors`` / ``generate.json`` (the generator checkpoint for ``pyfill export``),
    ``log.csv``, ``losses.png`` and ``samples_<step>.png``.
    """
    return H.run_distributed(_train, config, resume)


def _train(config: dict[str, Any], resume: bool, ctx: H.DistContext) -> dict[str, Any]:
    out = Path(config["out"])
    H.seed_everything(int(config["seed"]))
    began = time.perf_counter()
    data = load_data(config)
    data_seconds = time.perf_counter() - began
    classes = len(data.names)
    trainer = Trainer(config, classes, ctx)
    model_config = full_config("spade", {**config["model"], "classes": classes, "class_names": data.names,
                                         "palette": data.colours})
    manifest = make_manifest("spade", model_config, task="generate")
    modules = {"generator": trainer.generator, "discriminator": trainer.discriminator}
    optimizers = {"g": trainer.opt_g, "d": trainer.opt_d}
    meta, log = H.start_run(out, modules, optimizers, LOSS_FIELDS, resume, ctx)
    start = int(meta["step"])
    palette = np.asarray(data.colours or [[(37 * i) % 256, (91 * i) % 256, (173 * i) % 256] for i in range(classes)],
                         np.uint8)

    def save(step: int) -> None:
        if ctx.main:
            H.save_training_state(out, modules, optimizers, {"step": step, "config": config})

    max_steps, batch = int(config["max_steps"]), int(config["data"]["batch"])
    step = start
    with H.progress(max_steps, start, ctx.main) as bar:
        while step < max_steps:
            gen = H.step_generator(int(config["seed"]), step, ctx.rank)
            images, labels = data.batch(batch, gen)
            seed = int(torch.randint(2**62, (1,), generator=gen))
            empty = (torch.rand(batch, generator=gen) < float(config["data"]["empty_latent"])).numpy()
            seg, latent, real = make_inputs(images, labels, classes, float(config["data"]["drop"]), seed, ctx.device, empty)
            with H.autocast(ctx, bool(config["amp"])):
                logs = trainer.step(seg, latent, real)
            step += 1
            if log is not None and step % int(config["log_every"]) == 0:
                log.write(step, logs)
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k in ("loss_g", "loss_d", "fm")})
            if step % int(config["checkpoint_every"]) == 0:
                save(step)
            if ctx.main and config["sample_every"] and step % int(config["sample_every"]) == 0:
                H.save_image_grid(sample_rows(trainer.generator, seg, latent, real, palette), out / f"samples_{step:06d}.png")
    seconds = time.perf_counter() - began
    save(step)
    if ctx.main:
        save_checkpoint(trainer.generator.cpu(), manifest, out / "generate")
        H.plot_losses(out / "log.csv", out / "losses.png", ("loss_g", "loss_d", "fm"))
    return {"out": str(out), "steps": step, "seconds": seconds, "data_seconds": data_seconds,
            "model": trainer.generator}


def main(argv: Sequence[str] | None = None) -> int:
    return H.run_trainer(
        "Train the drawing-board generator (SPEC S2).", DEFAULTS, train, argv,
        lambda r: f"trained {r['steps']} steps in {r['seconds']:.1f} s (data {r['data_seconds']:.1f} s) -> {r['out']}",
    )


if __name__ == "__main__":
    sys.exit(main())
