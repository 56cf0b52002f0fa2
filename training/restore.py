"""Restoration training (SPEC S3): ``python -m training.restore [--config FILE] [--set k=v]``.

Pairs are made on the fly: random clean crops (``data.crop`` square, default 256) degraded by
:class:`pyfill.degrade.Pipeline` (``data.preset``, "seed" by default, with ``data.degrade``
overrides) on the training device. Each step's pipeline is seeded from (seed, step, rank), so a
resumed run sees the same pairs as an uninterrupted one.

Two phases:
  1. discriminator pre-training (``d_pretrain_steps`` steps, G untouched): D learns clean ->
     real, degraded and generated -> fake (BCE on D's patch logits);
  2. joint training, per batch one D step (clean -> real, generated -> fake) and one G step on
     L = k1 * L1(clean, G(x)) + k2 * L_GAN with L_GAN = -sum log D(G(x)) over D's patch outputs
     (mean over the batch), computed stably as softplus(-logits).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pyfill.degrade import Pipeline
from pyfill.export import save_checkpoint
from pyfill.models import build_model, make_manifest
from pyfill.models.restore import Restorer
from training import harness as H
from training.data import ImageSet
from training.restore_data import degrade

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "device": "auto",
    "amp": True,
    "threads": 0,
    "out": "runs/restore",
    "model": {"base": 32, "depth": 4, "disc_base": 32, "disc_layers": 3},
    "data": {"folders": [], "package_images": ["astronaut", "rocket", "immunohistochemistry", "hubble_deep_field",
                                               "retina", "stereo_motorcycle"],
             "max_side": 1024, "crop": 256, "batch": 8, "preset": "seed", "degrade": {}},
    "lr_g": 2e-4,
    "lr_d": 2e-4,
    "k1": 1.0,
    "k2": 1e-4,
    "d_pretrain_steps": 200,
    "max_steps": 10000,
    "log_every": 1,
    "checkpoint_every": 500,
    "sample_every": 1000,
}

LOSS_FIELDS = ("loss_g", "loss_d", "l1", "l_gan", "phase")


def gan_loss(logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -sum log D(G(x)) over D's patch outputs, mean over the
    batch; ``logits`` (N, 1, h, w). softplus(-z) = -log sigmoid(z) without overflow."""
    return F.softplus(-logits).flatten(1).sum(dim=1).mean()


def joint_loss(restored: torch.Tensor, clean: torch.Tensor, logits: torch.Tensor, k1: float,
               k2: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(k1 * L1 + k2 * L_GAN, L1, L_GAN): L1 is the mean absolute error of ``restored`` against
    ``clean`` (both (N, 3, H, W) in [0, 1]); L_GAN is :func:`gan_loss` of D's logits on ``restored``."""
    l1 = F.l1_loss(restored, clean)
    l_gan = gan_loss(logits)
    return k1 * l1 + k2 * l_gan, l1, l_gan


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """BCE with logits: real patches -> 1, fake patches -> 0 (mean of the two halves)."""
    return 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def set_frozen(module: nn.Module, frozen: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(not frozen)


class JointTrainer:
    """D pre-training then joint G/D steps over (degraded, clean) batches (N, 3, H, W) in [0, 1].

    ``g_train`` / ``d_train`` are the modules that take gradient steps (DDP-wrapped in a
    distributed run); ``net.discriminator`` serves the frozen use in the G step.
    """

    def __init__(self, net: Restorer, config: dict[str, Any], ctx: H.DistContext) -> None:
        for key in ("k1", "k2"):
            if float(config[key]) < 0:
                raise ValueError(f"{key} must be >= 0, got {config[key]}")
        if int(config["d_pretrain_steps"]) < 0:
            raise ValueError(f"d_pretrain_steps must be >= 0, got {config['d_pretrain_steps']}")
        self.net, self.config, self.ctx = net, config, ctx
        self.g_train, self.d_train = ctx.wrap(net.generator), ctx.wrap(net.discriminator)
        self.opt_g = torch.optim.Adam(net.generator.parameters(), lr=config["lr_g"], betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(net.discriminator.parameters(), lr=config["lr_d"], betas=(0.5, 0.999))

    def pretrain_step(self, degraded: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
        """One D step: clean -> real; degraded and G(degraded) -> fake. G is not changed."""
        with torch.no_grad():
            generated = self.net.generator(degraded)
        logits = self.d_train(torch.cat([clean, degraded, generated]))
        n = len(clean)
        loss = discriminator_loss(logits[:n], logits[n:])
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_d.step()
        return {"loss_d": self.ctx.mean(loss.item()), "phase": 1.0}

    def joint_step(self, degraded: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
        """One D step (clean -> real, G(x) -> fake), then one G step on the joint loss with D frozen."""
        with torch.no_grad():
            generated = self.net.generator(degraded)
        logits = self.d_train(torch.cat([clean, generated]))
        loss_d = discriminator_loss(logits[: len(clean)], logits[len(clean):])
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        d = self.net.discriminator
        set_frozen(d, True)
        restored = self.g_train(degraded)
        loss_g, l1, l_gan = joint_loss(restored, clean, d(restored), float(self.config["k1"]), float(self.config["k2"]))
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        set_frozen(d, False)
        m = self.ctx.mean
        return {"loss_g": m(loss_g.item()), "loss_d": m(loss_d.item()), "l1": m(l1.item()),
                "l_gan": m(l_gan.item()), "phase": 2.0}

    def step(self, step: int, degraded: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
        """Training step number ``step`` (0-based): pre-training while step < d_pretrain_steps."""
        if step < int(self.config["d_pretrain_steps"]):
            return self.pretrain_step(degraded, clean)
        return self.joint_step(degraded, clean)


def step_pipeline(config: dict[str, Any], step: int, rank: int) -> Pipeline:
    """The degradation pipeline of one step on one rank (seeded from seed, step and rank)."""
    data = config["data"]
    seed = (int(config["seed"]) * 1_000_003 + step * 7919 + rank * 104_729) % (2**63)
    return Pipeline(data["preset"], seed=seed, **data["degrade"])


def sample_rows(net: Restorer, degraded: torch.Tensor, clean: torch.Tensor, count: int = 4) -> list[list]:
    """Rows of (degraded, restored, clean) float (H, W, 3) images for a sample grid."""
    with torch.no_grad():
        restored = net.generator(degraded[:count])

    def hwc(t: torch.Tensor) -> Any:
        return t.permute(1, 2, 0).float().cpu().numpy()

    return [[hwc(degraded[i]), hwc(restored[i]), hwc(clean[i])] for i in range(min(count, len(clean)))]


def train(config: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """Run a training; returns {"out", "steps", "seconds", "skipped", "model"} (``model``: the
    trained :class:`Restorer`).

    Writes to ``config["out"]``: ``state.safetensors`` / ``state.json`` (resumable state),
    ``restore.safetensors`` / ``restore.json`` (the checkpoint for ``pyfill export``),
    ``log.csv``, ``losses.png`` and ``samples_<step>.png``.
    """
    if int(config["threads"]) > 0:
        torch.set_num_threads(int(config["threads"]))
    return H.run_distributed(_train, config, resume)


def _train(config: dict[str, Any], resume: bool, ctx: H.DistContext) -> dict[str, Any]:
    out = Path(config["out"])
    H.seed_everything(int(config["seed"]))
    net = build_model("restore", config["model"]).to(ctx.device)
    manifest = make_manifest("restore", config["model"])
    data_cfg = config["data"]
    crop = int(data_cfg["crop"])
    if crop % int(manifest.size.multiple_of):
        raise ValueError(f"data.crop ({crop}) must be a multiple of {manifest.size.multiple_of} for this model")
    images = ImageSet(data_cfg["folders"], data_cfg["package_images"], int(data_cfg["max_side"]), crop)
    trainer = JointTrainer(net, config, ctx)
    modules = {"model": net}
    optimizers = {"g": trainer.opt_g, "d": trainer.opt_d}
    meta, log = H.start_run(out, modules, optimizers, LOSS_FIELDS, resume, ctx)
    start = int(meta["step"])

    def save(step: int) -> None:
        if ctx.main:
            H.save_training_state(out, modules, optimizers, {"step": step, "config": config})

    max_steps = int(config["max_steps"])
    began = time.perf_counter()
    step = start
    with H.progress(max_steps, start, ctx.main) as bar:
        while step < max_steps:
            gen = H.step_generator(int(config["seed"]), step, ctx.rank)
            clean = images.random_crops(int(data_cfg["batch"]), crop, gen).to(ctx.device)
            degraded = degrade(step_pipeline(config, step, ctx.rank), clean)
            with H.autocast(ctx, bool(config["amp"])):
                logs = trainer.step(step, degraded, clean)
            step += 1
            if log is not None and step % int(config["log_every"]) == 0:
                log.write(step, logs)
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k in ("l1", "loss_d")})
            if step % int(config["checkpoint_every"]) == 0:
                save(step)
            if ctx.main and config["sample_every"] and step % int(config["sample_every"]) == 0:
                H.save_image_grid(sample_rows(net, degraded, clean), out / f"samples_{step:06d}.png")
    seconds = time.perf_counter() - began
    save(step)
    if ctx.main:
        save_checkpoint(net.cpu(), manifest, out / "restore")
        H.plot_losses(out / "log.csv", out / "losses.png", ("loss_g", "loss_d", "l1"))
    return {"out": str(out), "steps": step, "seconds": seconds, "skipped": images.skipped, "model": net}


def main(argv: Sequence[str] | None = None) -> int:
    return H.run_trainer(
        "Train the restoration model (SPEC S3).", DEFAULTS, train, argv,
        lambda r: f"trained {r['steps']} steps in {r['seconds']:.1f} s -> {r['out']}"
        + (f" (skipped {len(r['skipped'])} unreadable images)" if r["skipped"] else ""),
    )


if __name__ == "__main__":
    sys.exit(main())
