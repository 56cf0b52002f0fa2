"""Editing stage 1, the decoder (SPEC S4): ``python -m training.edit_decoder [--config FILE] [--set k=v]``.

A StyleGAN-like GAN (:class:`pyfill.models.edit.StyleGenerator`: mapping network, modulated
convolutions, W+) trained on aligned procedural faces (:mod:`training.edit_data`, 64 x 64 by
default) whose identity and attribute parameters vary. The mapping network's input z is the
face's exact parameter vector (:func:`training.edit_data.parameter_vector`, 40 values scaled to
[-1, 1]) rather than Gaussian noise, so each generated face has a rendered counterpart:

- D: logistic loss softplus(D(fake)) + softplus(-D(real)), with a lazy R1 penalty
  (``r1_gamma`` / 2 * |grad D(real)|^2 every ``r1_every`` steps, scaled by ``r1_every``);
- G: ``k_adv`` * softplus(-D(G(z))) + ``k_rec`` * L1(G(z), render(z)); the reconstruction term
  is what lets the GAN learn on a CPU budget. With probability ``mixing`` a sample's W+ switches
  to the w of another face at a random layer (style mixing, so that the layers of W+ act
  separately); such samples get the adversarial term only;
- ``w_avg`` follows the mean of w (decay 0.995); the EMA generator is what is exported
  (``edit_generator.safetensors``: the mapping network and the decoder, whose input is W+
  (N, num_ws, w_dim)).

Adam with betas (0, 0.99). Runs resume (``--resume``), write checkpoints, ``log.csv``,
``losses.png`` and sample grids like every trainer (docs/training.md).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from pyfill.models import full_config, make_manifest
from pyfill.models.edit import StyleDiscriminator, StyleGenerator
from training import edit_data as D
from training import harness as H

DEFAULTS: dict[str, Any] = H.with_harness_defaults({
    "seed": 0,
    "device": "auto",
    "amp": False,
    "workers": 0,
    "threads": 1,
    "out": "runs/edit/decoder",
    "model": {"size": 64, "z_dim": 40, "w_dim": 128, "mapping_layers": 4, "base": 16, "cap": 64, "z_norm": False,
              "mapping_lr_mul": 1.0},
    "disc": {"base": 16, "cap": 64},
    "data": {"count": 8000, "val_count": 256, "val_seed": 1, "batch": 16, "cache": "runs/edit/data"},
    "lr_g": 2e-3,
    "lr_d": 2e-3,
    "r1_gamma": 0.5,
    "r1_every": 4,
    "mixing": 0.2,
    "k_adv": 0.05,
    "k_rec": 1.0,
    "max_steps": 20000,
    "log_every": 10,
    "checkpoint_every": 500,
    "sample_every": 500,
})
DEFAULTS["ema"]["decay"] = 0.995

LOSS_FIELDS = ("loss_g", "loss_d", "r1", "d_real", "d_fake", "adv", "rec")


def param_z(params: np.ndarray) -> torch.Tensor:
    """Face parameter vectors (N, 40) in [0, 1] -> the mapping network's z in [-1, 1]."""
    return torch.from_numpy(np.asarray(params, np.float32)) * 2.0 - 1.0


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


class DecoderTrainer:
    """G, D, their optimizers and one GAN step on real batches (N, 3, size, size) in [-1, 1]."""

    def __init__(self, config: dict[str, Any], ctx: H.DistContext) -> None:
        self.config, self.ctx = config, ctx
        self.generator = StyleGenerator(**config["model"]).to(ctx.device)
        self.discriminator = StyleDiscriminator(int(config["model"]["size"]), **config["disc"]).to(ctx.device)
        self.g_train, self.d_train = ctx.wrap(self.generator), ctx.wrap(self.discriminator)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config["lr_g"], betas=(0.0, 0.99))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config["lr_d"], betas=(0.0, 0.99))
        self.updater = H.Updater({"g": self.opt_g, "d": self.opt_d}, ctx, config)

    def fake(self, z: torch.Tensor, z2: torch.Tensor, cut: torch.Tensor) -> torch.Tensor:
        """Raw G output (about [-1, 1]) with style mixing: layers >= cut[i] take w(z2[i])."""
        g = self.generator
        w1, w2 = g.mapping(z), g.mapping(z2)
        if g.training:
            with torch.no_grad():
                g.w_avg.lerp_(w1.detach().mean(0), 0.005)
        layer = torch.arange(g.decoder.num_ws, device=z.device)[None, :, None]
        ws = torch.where(layer < cut[:, None, None], w1[:, None, :], w2[:, None, :])
        return g.decoder.raw(ws)

    def step(self, step: int, real: torch.Tensor, z: torch.Tensor, z2: torch.Tensor,
             cut: torch.Tensor) -> dict[str, float]:
        c = self.config
        r1_now = float(c["r1_gamma"]) > 0 and step % int(c["r1_every"]) == 0

        def d_loss(part: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
            x, zz, zz2, cc = part
            with torch.no_grad():
                fake = self.fake(zz, zz2, cc)
            if r1_now:
                x = x.detach().requires_grad_(True)
            real_logits, fake_logits = self.d_train(x), self.d_train(fake)
            loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
            r1 = torch.zeros((), device=x.device)
            if r1_now:
                (grad,) = torch.autograd.grad(real_logits.sum(), x, create_graph=True)
                r1 = grad.pow(2).sum(dim=(1, 2, 3)).mean()
                loss = loss + 0.5 * float(c["r1_gamma"]) * int(c["r1_every"]) * r1
            return loss, {"loss_d": loss.detach(), "r1": r1.detach(), "d_real": real_logits.mean().detach(),
                          "d_fake": fake_logits.mean().detach()}

        def g_loss(part: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
            x, zz, zz2, cc = part
            fake = self.fake(zz, zz2, cc)
            adv = F.softplus(-self.discriminator(fake)).mean()
            whole = (cc >= self.generator.decoder.num_ws).float()[:, None, None, None]
            rec = ((fake - x).abs() * whole).sum() / (whole.sum() * fake[0].numel()).clamp(min=1.0)
            loss = float(c["k_adv"]) * adv + float(c["k_rec"]) * rec
            return loss, {"loss_g": loss.detach(), "adv": adv.detach(), "rec": rec.detach()}

        logs = self.updater.update("d", (real, z, z2, cut), d_loss)
        H.set_frozen(self.discriminator, True)
        logs.update(self.updater.update("g", (real, z, z2, cut), g_loss))
        H.set_frozen(self.discriminator, False)
        return {k: self.ctx.mean(v) for k, v in logs.items()}


def train(config: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """Run a training; returns :func:`training.harness.train_loop`'s result plus "generator"."""
    if int(config["threads"]) > 0:
        torch.set_num_threads(int(config["threads"]))
    return H.run_distributed(_train, config, resume)


def _train(config: dict[str, Any], resume: bool, ctx: H.DistContext) -> dict[str, Any]:
    seed = int(config["seed"])
    H.seed_everything(seed)
    began = time.perf_counter()
    d = config["data"]
    data = D.make_faces(seed, int(d["count"]), int(config["model"]["size"]), d["cache"] or None)
    val = D.make_faces(int(d["val_seed"]), int(d["val_count"]), int(config["model"]["size"]), d["cache"] or None)
    if int(config["model"]["z_dim"]) != data.params.shape[1]:
        raise ValueError(f"model.z_dim must be {data.params.shape[1]} (the face parameter vector's length)")
    data_seconds = time.perf_counter() - began
    trainer = DecoderTrainer(config, ctx)
    manifest = make_manifest("edit_generator", full_config("edit_generator", config["model"]), task="edit")
    batch = H.process_batch(config, ctx)
    num_ws = trainer.generator.decoder.num_ws
    mixing = float(config["mixing"])

    def batches(step: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        idx = torch.randint(len(data), (batch,), generator=gen).numpy()
        other = torch.randint(len(data), (batch,), generator=gen).numpy()
        real = to_tensor(data.images[idx])
        z, z2 = param_z(data.params[idx]), param_z(data.params[other])
        cut = torch.randint(1, num_ws, (batch,), generator=gen)
        cut = torch.where(torch.rand(batch, generator=gen) < mixing, cut, torch.full_like(cut, num_ws))
        return real, z, z2, cut

    val_z, val_x = param_z(val.params).to(ctx.device), to_tensor(val.images).to(ctx.device)

    def validate() -> dict[str, float]:
        trainer.generator.eval()
        try:
            fake = trainer.generator(val_z)
            real = val_x * 0.5 + 0.5
            return {"l1": float(F.l1_loss(fake, real)), "psnr": float(H.psnr(fake, real).mean())}
        finally:
            trainer.generator.train()

    def sample(_: Any, path: Any) -> None:
        trainer.generator.eval()
        img = trainer.generator(val_z[:8]).permute(0, 2, 3, 1).cpu().numpy()
        trainer.generator.train()
        real = (val_x[:8] * 0.5 + 0.5).permute(0, 2, 3, 1).cpu().numpy()
        H.save_image_grid([list(real), list(img)], path)

    task = H.Task(
        name="edit_generator", modules={"generator": trainer.generator, "discriminator": trainer.discriminator},
        optimizers={"g": trainer.opt_g, "d": trainer.opt_d}, lr_keys={"g": "lr_g", "d": "lr_d"},
        updater=trainer.updater, batches=batches, step=lambda s, b: trainer.step(s, *b), fields=LOSS_FIELDS,
        plot_fields=("loss_g", "loss_d", "r1"), export_module=trainer.generator, manifest=manifest,
        ema_target=trainer.generator, sample=sample, validate=validate, metric="l1", mode="min",
        val_fields=("l1", "psnr"),
        data=H.data_manifest([], {**D.describe(), "count": len(data), "seed": seed}),
        result=lambda: {"data_seconds": data_seconds, "generator": trainer.generator})
    return H.train_loop(task, config, resume, ctx)


def main(argv: Sequence[str] | None = None) -> int:
    return H.run_trainer(
        "Train the editing decoder, a StyleGAN-like GAN on procedural faces (SPEC S4).", DEFAULTS, train, argv,
        lambda r: f"trained {r['steps']} steps in {r['seconds']:.1f} s (data {r['data_seconds']:.1f} s) -> {r['out']}",
    )


if __name__ == "__main__":
    sys.exit(main())
