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

from pyfill.models import build_model, full_config, make_manifest
from pyfill.models.spade import MultiScaleDiscriminator
from pyfill.ops import stroke_grid_from_image, stroke_grid_latent
from training import harness as H
from training.data import LabelledImageSet

DEFAULTS: dict[str, Any] = H.with_harness_defaults({
    "seed": 0,
    "device": "auto",
    "amp": True,
    "out": "runs/generate",
    "model": {"base": 64, "size": 128, "hidden": 32, "min_width": 16, "stroke_map": False,
              "stroke_upsample": "nearest"},
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
})

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


set_frozen = H.set_frozen


class Trainer:
    """The G and D modules, their Adam optimizers (betas (0, 0.999)), the
    :class:`training.harness.Updater` they step through, and one training step."""

    def __init__(self, config: dict[str, Any], classes: int, ctx: H.DistContext) -> None:
        self.config, self.ctx = config, ctx
        self.generator = build_model("spade", {**config["model"], "classes": classes}).to(ctx.device)
        self.discriminator = MultiScaleDiscriminator(classes, **config["disc"]).to(ctx.device)
        self.g_train, self.d_train = ctx.wrap(self.generator), ctx.wrap(self.discriminator)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config["lr_g"], betas=(0.0, 0.999))
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=config["lr_d"], betas=(0.0, 0.999))
        self.updater = H.Updater({"g": self.opt_g, "d": self.opt_d}, ctx, config)

    def step(self, seg: torch.Tensor, latent: torch.Tensor, real: torch.Tensor) -> dict[str, float]:
        def d_loss(part: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
            s, z, x = part
            with torch.no_grad():
                fake = self.generator(s, z)
            logits = [f[-1].float() for f in self.d_train(torch.cat([s, s]), torch.cat([x, fake]))]
            loss = hinge_d([y[: len(x)] for y in logits], [y[len(x):] for y in logits])
            return loss, {"loss_d": loss.detach()}

        def g_loss(part: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
            s, z, x = part
            fake = self.g_train(s, z)
            d_fake = self.discriminator(s, fake)
            with torch.no_grad():
                d_real = self.discriminator(s, x)
            adv = hinge_g([f[-1].float() for f in d_fake])
            fm = feature_matching(d_fake, d_real).float()
            l1 = F.l1_loss(fake.float(), x)
            loss = adv + self.config["fm_weight"] * fm + self.config["l1_weight"] * l1
            return loss, {"loss_g": loss.detach(), "adv_g": adv.detach(), "fm": fm.detach(), "l1": l1.detach()}

        logs = self.updater.update("d", (seg, latent, real), d_loss)
        set_frozen(self.discriminator, True)
        logs.update(self.updater.update("g", (seg, latent, real), g_loss))
        set_frozen(self.discriminator, False)
        return {k: self.ctx.mean(v) for k, v in logs.items()}


def load_data(config: dict[str, Any]) -> LabelledImageSet:
    data, size = config["data"], int(config["model"]["size"])
    if data["source"] == "landscapes":
        return LabelledImageSet.from_landscapes(int(data["count"]), size, seed=int(config["seed"]) * 1_000_003)
    if data["source"] == "folder":
        if not data["folder"]:
            raise ValueError("data.source is 'folder' but data.folder is empty")
        return LabelledImageSet.from_folder(data["folder"], size)
    raise ValueError(f"data.source must be 'landscapes' or 'folder', got {data['source']!r}")


def data_files(config: dict[str, Any]) -> list[tuple[str, int]]:
    """(name under the folder, bytes) of a folder source's files, for the data manifest."""
    if config["data"]["source"] != "folder":
        return []
    root = Path(config["data"]["folder"])
    return [(str(p.relative_to(root)), p.stat().st_size) for p in sorted(root.rglob("*")) if p.is_file()]


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
    """Run a training; returns :func:`training.harness.train_loop`'s result plus "data_seconds"
    and "model" (the trained generator, raw weights).

    Writes to ``config["out"]`` what :func:`training.harness.train_loop` writes, with
    ``generate.safetensors`` / ``generate.json`` the generator checkpoint for ``pyfill export``
    (EMA weights) and the validation L1 distance and PSNR of generated images (from the full
    stroke grid) to the real ones.
    """
    return H.run_distributed(_train, config, resume)


def _train(config: dict[str, Any], resume: bool, ctx: H.DistContext) -> dict[str, Any]:
    seed = int(config["seed"])
    H.seed_everything(seed)
    began = time.perf_counter()
    data = load_data(config)
    data_seconds = time.perf_counter() - began
    classes = len(data.names)
    trainer = Trainer(config, classes, ctx)
    model_config = full_config("spade", {**config["model"], "classes": classes, "class_names": data.names,
                                         "palette": data.colours})
    manifest = make_manifest("spade", model_config, task="generate")
    palette = np.asarray(data.colours or [[(37 * i) % 256, (91 * i) % 256, (173 * i) % 256] for i in range(classes)],
                         np.uint8)
    batch, drop, empty_share = H.process_batch(config, ctx), float(config["data"]["drop"]), \
        float(config["data"]["empty_latent"])

    def batches(step: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        images, labels = data.batch(batch, gen)
        latent_seed = int(torch.randint(2**62, (1,), generator=gen))
        empty = (torch.rand(batch, generator=gen) < empty_share).numpy()
        return make_inputs(images, labels, classes, drop, latent_seed, torch.device("cpu"), empty)

    def validate() -> dict[str, float]:
        l1s, psnrs = [], []
        for k in range(int(config["val_batches"])):
            images, labels = data.batch(batch, H.validation_generator(seed, k))
            seg, latent, real = make_inputs(images, labels, classes, 0.0, k, ctx.device)
            fake = trainer.generator(seg, latent).float()
            l1s.append((fake - real).abs().flatten(1).mean(1))
            psnrs.append(H.psnr((fake + 1) / 2, (real + 1) / 2))
        return {"l1": float(torch.cat(l1s).mean()), "psnr": float(torch.cat(psnrs).mean())}

    task = H.Task(
        name="generate", modules={"generator": trainer.generator, "discriminator": trainer.discriminator},
        optimizers={"g": trainer.opt_g, "d": trainer.opt_d}, lr_keys={"g": "lr_g", "d": "lr_d"},
        updater=trainer.updater, batches=batches, step=lambda step, b: trainer.step(*b), fields=LOSS_FIELDS,
        plot_fields=("loss_g", "loss_d", "fm"), export_module=trainer.generator, manifest=manifest,
        ema_target=trainer.generator, validate=validate, metric="l1", mode="min", val_fields=("l1", "psnr"),
        sample=lambda b, path: H.save_image_grid(sample_rows(trainer.generator, *b, palette), path),
        data=H.data_manifest(data_files(config), {"source": config["data"]["source"], "count": len(data),
                                                  "classes": data.names}),
        result=lambda: {"data_seconds": data_seconds, "model": trainer.generator})
    return H.train_loop(task, config, resume, ctx)


def main(argv: Sequence[str] | None = None) -> int:
    return H.run_trainer(
        "Train the drawing-board generator (SPEC S2).", DEFAULTS, train, argv,
        lambda r: f"trained {r['steps']} steps in {r['seconds']:.1f} s (data {r['data_seconds']:.1f} s) -> {r['out']}",
    )


if __name__ == "__main__":
    sys.exit(main())
