"""Restoration training (SPEC S3): ``python -m training.restore [--config FILE] [--set k=v]``.

Pairs are made on the fly: random clean crops (``data.crop`` square, default 256) degraded by
:class:`pyfill.degrade.Pipeline` (``data.preset``, "seed" by default, with ``data.degrade``
overrides) on the training device. Each step's pipeline is seeded from (seed, step, rank), so a
resumed run sees the same pairs as an uninterrupted one.

``init``: a restore checkpoint or exported restore ONNX file (e.g. the shipped model) whose
generator weights start the run instead of the identity initialisation, for fine-tuning; the
``model`` settings must match it. A resumed run continues from its own checkpoint.

Two phases:
  1. discriminator pre-training (``d_pretrain_steps`` steps, G untouched): D learns clean ->
     real, degraded and generated -> fake (BCE on D's patch logits);
  2. joint training, per batch one D step (clean -> real, generated -> fake) and one G step on
     L = k1 * L1(clean, G(x)) + k2 * L_GAN with L_GAN = -sum log D(G(x)) over D's patch outputs
     (mean over the batch), computed stably as softplus(-logits).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch.nn import functional as F

from pyfill.degrade import Pipeline
from pyfill.models import build_model, make_manifest
from pyfill.models.restore import Restorer
from training import harness as H
from training.data import ImageSet
from training.restore_data import degrade

DEFAULTS: dict[str, Any] = H.with_harness_defaults({
    "seed": 0,
    "device": "auto",
    "amp": True,
    "threads": 0,
    "out": "runs/restore",
    "init": "",
    "model": {"base": 32, "depth": 4, "disc_base": 32, "disc_layers": 3},
    "data": {"folders": [], "package_images": ["astronaut", "rocket", "immunohistochemistry", "hubble_deep_field",
                                               "retina", "stereo_motorcycle"],
             "max_side": 1024, "crop": 256, "batch": 8, "preset": "seed", "degrade": {}, "val_folders": []},
    "lr_g": 2e-4,
    "lr_d": 2e-4,
    "k1": 1.0,
    "k2": 1e-4,
    "d_pretrain_steps": 200,
    "max_steps": 10000,
    "log_every": 1,
    "checkpoint_every": 500,
    "sample_every": 1000,
})

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


set_frozen = H.set_frozen


class JointTrainer:
    """D pre-training then joint G/D steps over (degraded, clean) batches (N, 3, H, W) in [0, 1].

    ``g_train`` / ``d_train`` are the modules that take gradient steps (DDP-wrapped in a
    distributed run); ``net.discriminator`` serves the frozen use in the G step. Optimizer steps
    go through ``updater`` (:class:`training.harness.Updater`).
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
        self.updater = H.Updater({"g": self.opt_g, "d": self.opt_d}, ctx, config)

    def mean(self, logs: dict[str, float]) -> dict[str, float]:
        return {k: self.ctx.mean(v) for k, v in logs.items()}

    def pretrain_step(self, degraded: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
        """One D step: clean -> real; degraded and G(degraded) -> fake. G is not changed."""
        def loss_fn(part: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
            x, y = part
            with torch.no_grad():
                generated = self.net.generator(x)
            logits = self.d_train(torch.cat([y, x, generated])).float()
            loss = discriminator_loss(logits[: len(y)], logits[len(y):])
            return loss, {"loss_d": loss.detach()}

        return {**self.mean(self.updater.update("d", (degraded, clean), loss_fn)), "phase": 1.0}

    def joint_step(self, degraded: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
        """One D step (clean -> real, G(x) -> fake), then one G step on the joint loss with D frozen."""
        def d_loss(part: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
            x, y = part
            with torch.no_grad():
                generated = self.net.generator(x)
            logits = self.d_train(torch.cat([y, generated])).float()
            loss = discriminator_loss(logits[: len(y)], logits[len(y):])
            return loss, {"loss_d": loss.detach()}

        def g_loss(part: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
            x, y = part
            restored = self.g_train(x)
            loss, l1, l_gan = joint_loss(restored.float(), y, self.net.discriminator(restored).float(),
                                         float(self.config["k1"]), float(self.config["k2"]))
            return loss, {"loss_g": loss.detach(), "l1": l1.detach(), "l_gan": l_gan.detach()}

        logs = self.updater.update("d", (degraded, clean), d_loss)
        set_frozen(self.net.discriminator, True)
        logs.update(self.updater.update("g", (degraded, clean), g_loss))
        set_frozen(self.net.discriminator, False)
        return {**self.mean(logs), "phase": 2.0}

    def step(self, step: int, degraded: torch.Tensor, clean: torch.Tensor) -> dict[str, float]:
        """Training step number ``step`` (0-based): pre-training while step < d_pretrain_steps."""
        if step < int(self.config["d_pretrain_steps"]):
            return self.pretrain_step(degraded, clean)
        return self.joint_step(degraded, clean)


def init_generator(net: Restorer, source: str) -> None:
    """Load the generator weights of ``source`` (a restore checkpoint or exported restore ONNX
    file) into ``net``; ValueError when its generator is shaped differently."""
    from training.restore_gate import generator_state, load_generator

    load_generator(net, generator_state(source)[0], f"init: {source}")


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
    """Run a training; returns :func:`training.harness.train_loop`'s result plus "skipped" and
    "model" (the trained :class:`Restorer`, raw weights).

    Writes to ``config["out"]`` what :func:`training.harness.train_loop` writes, with
    ``restore.safetensors`` / ``restore.json`` the checkpoint for ``pyfill export`` (EMA
    weights) and validation PSNR / SSIM of the restored crops against the clean ones (and of
    the degraded inputs, for reference).
    """
    if int(config["threads"]) > 0:
        torch.set_num_threads(int(config["threads"]))
    return H.run_distributed(_train, config, resume)


def _train(config: dict[str, Any], resume: bool, ctx: H.DistContext) -> dict[str, Any]:
    seed = int(config["seed"])
    H.seed_everything(seed)
    net = build_model("restore", config["model"])
    if config["init"]:
        init_generator(net, config["init"])
    net = net.to(ctx.device)
    manifest = make_manifest("restore", config["model"])
    data_cfg = config["data"]
    crop = int(data_cfg["crop"])
    if crop % int(manifest.size.multiple_of):
        raise ValueError(f"data.crop ({crop}) must be a multiple of {manifest.size.multiple_of} for this model")
    images = ImageSet(data_cfg["folders"], data_cfg["package_images"], int(data_cfg["max_side"]), crop)
    held_out = ImageSet(data_cfg["val_folders"], (), int(data_cfg["max_side"]), crop) if data_cfg["val_folders"] \
        else images
    batch = H.process_batch(config, ctx)
    trainer = JointTrainer(net, config, ctx)

    def step(index: int, clean: torch.Tensor) -> dict[str, float]:
        degraded = degrade(step_pipeline(config, index, ctx.rank), clean)
        return trainer.step(index, degraded, clean)

    def validate() -> dict[str, float]:
        scores: dict[str, list[torch.Tensor]] = {"psnr": [], "ssim": [], "psnr_input": []}
        for k in range(int(config["val_batches"])):
            clean = held_out.random_crops(batch, crop, H.validation_generator(seed, k)).to(ctx.device)
            degraded = degrade(Pipeline(data_cfg["preset"], seed=k, **data_cfg["degrade"]), clean)
            restored = net.generator(degraded).float()
            scores["psnr"].append(H.psnr(restored, clean))
            scores["ssim"].append(H.ssim(restored, clean))
            scores["psnr_input"].append(H.psnr(degraded, clean))
        return {k: float(torch.cat(v)[torch.cat(v).isfinite()].mean()) for k, v in scores.items()}

    def sample(clean: torch.Tensor, path: Any) -> None:
        degraded = degrade(Pipeline(data_cfg["preset"], seed=0, **data_cfg["degrade"]), clean)
        H.save_image_grid(sample_rows(net, degraded, clean), path)

    task = H.Task(
        name="restore", modules={"model": net}, optimizers={"g": trainer.opt_g, "d": trainer.opt_d},
        lr_keys={"g": "lr_g", "d": "lr_d"}, updater=trainer.updater,
        batches=lambda index, gen: images.random_crops(batch, crop, gen), step=step, fields=LOSS_FIELDS,
        plot_fields=("loss_g", "loss_d", "l1"), export_module=net, manifest=manifest, ema_target=net.generator,
        validate=validate, metric="psnr", val_fields=("psnr", "ssim", "psnr_input"), sample=sample,
        data={**images.manifest(), "preset": data_cfg["preset"], "degrade": data_cfg["degrade"]},
        result=lambda: {"skipped": images.skipped, "model": net})
    return H.train_loop(task, config, resume, ctx)


def main(argv: Sequence[str] | None = None) -> int:
    return H.run_trainer(
        "Train the restoration model (SPEC S3).", DEFAULTS, train, argv,
        lambda r: f"trained {r['steps']} steps in {r['seconds']:.1f} s -> {r['out']}"
        + (f" (skipped {len(r['skipped'])} unreadable images)" if r["skipped"] else ""),
    )


if __name__ == "__main__":
    sys.exit(main())
