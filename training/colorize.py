"""Colour filling training (SPEC S1): ``python -m training.colorize [--config FILE] [--set k=v]``.

Samples: a colour image (label real) and its gray version, i.e. its L channel (label fake).
G predicts ab from L; D judges (L, ab). Two schedules:

``phased`` (the seed's procedure), one outer round at a time:
  1. the current D is frozen as the *target discriminator*;
  2. generator phase: r1 = D(colour), r2 = D(G(gray)); the generation loss from r1 and r2
     (``gen_loss`` ``bce``: BCE(r1, 1) + BCE(r2, 1); ``difference``: r1 - r2) plus
     ``g_image_weight`` x L1(ab); G steps until the loss <= ``g_loss_threshold`` or
     ``g_max_steps`` steps (the generation termination condition) -> *target generator*;
  3. discriminator phase with G frozen: the samples whose fill the target discriminator judged
     real (r2 > ``real_threshold``) are selected; r3 = D(fill) for them; discrimination error =
     ``image_weight`` x image loss (``image_distance`` ``l1`` Manhattan or ``l2`` Euclidean, fill
     ab vs colour ab) + ``result_weight`` x BCE(r3, label) with label r2 (``result_label``
     ``r2``, the seed's) or 0 (``fake``); D steps until the error <= ``d_loss_threshold`` or
     ``d_max_steps`` steps (the discrimination convergence condition);
  4. total = last generation loss + last discrimination error; training ends when total <=
     ``total_threshold`` or after ``max_rounds`` rounds, else D carries into the next round.

``alternating`` (standard pix2pix): per batch one D step (colour -> real, fill -> fake) and one
G step (fill -> real, plus ``g_image_weight`` x L1).

``bins`` (Zhang et al., 2016; needs ``model.head`` ``bins``): G predicts a distribution over
quantised ab bins, trained with cross-entropy against a soft encoding of the true ab (its
``bins.neighbours`` nearest bins, Gaussian weights of width ``bins.sigma``), each pixel weighted
by class rebalancing: w ~ 1 / ((1 - ``bins.rebalance``) p + ``bins.rebalance`` / K) with p the
bins' smoothed frequency in the training data (measured on ``bins.prior_batches`` batches at the
start), normalised so E_p[w] = 1. D is trained on the side as a realness critic: real colour
crops against G's fills and randomly tinted copies of the real crops (``bins.tint_share`` of the
fakes); G gets D's gradient only with ``adv_weight`` > 0 (a weak GAN phase).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pyfill.models import build_model, make_manifest
from pyfill.models.colorize import AB_SCALE, BinGenerator, Colorizer, lab_to_rgb, normalise_l, realness, rgb_to_lab
from training import harness as H
from training.data import ImageSet

DEFAULTS: dict[str, Any] = H.with_harness_defaults({
    "seed": 0,
    "device": "auto",
    "threads": 0,
    "amp": True,
    "out": "runs/colorize",
    "model": {"base": 16, "depth": 3, "disc_base": 16, "disc_layers": 3, "head": "regression", "bin_size": 10.0,
              "temperature": 0.38},
    "data": {"folders": [], "package_images": ["astronaut", "rocket", "immunohistochemistry", "hubble_deep_field",
                                               "retina", "stereo_motorcycle"],
             "max_side": 256, "crop": 64, "batch": 8, "val_folders": [], "in_memory": False},
    "lr_g": 2e-4,
    "lr_d": 2e-4,
    "max_steps": 1000,
    "schedule": "phased",
    "g_image_weight": 10.0,
    "adv_weight": 0.0,
    "bins": {"rebalance": 0.5, "sigma": 5.0, "neighbours": 5, "prior_batches": 50, "tint_share": 0.5},
    "phased": {
        "gen_loss": "bce",
        "g_loss_threshold": 0.0,
        "g_max_steps": 20,
        "real_threshold": 0.5,
        "image_distance": "l1",
        "image_weight": 1.0,
        "result_weight": 1.0,
        "result_label": "r2",
        "d_loss_threshold": 0.0,
        "d_max_steps": 20,
        "total_threshold": 0.0,
        "max_rounds": 1000,
    },
    "log_every": 1,
    "checkpoint_every": 100,
    "sample_every": 200,
})

LOSS_FIELDS = ("loss_g", "loss_d", "r1", "r2", "r3", "selected", "round", "real", "fake", "tinted")


def split_lab(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """sRGB (N, 3, H, W) in [0, 1] -> (normalised L (N, 1, H, W) in [-1, 1],
    ab / AB_SCALE (N, 2, H, W) in about [-1, 1])."""
    lab = rgb_to_lab(rgb)
    return normalise_l(lab[:, :1]), lab[:, 1:] / AB_SCALE


set_frozen = H.set_frozen


def select_fooled(r2: torch.Tensor, threshold: float) -> torch.Tensor:
    """The samples whose fill the target discriminator judged real: (N, 1) probabilities ->
    (N,) bool."""
    return r2.reshape(-1) > threshold


class Schedule:
    """One training step at a time over G and D; ``done`` says the schedule has ended.

    ``g_train`` / ``d_train`` are the modules that take gradient steps (DDP-wrapped in a
    distributed run); the plain ``net.generator`` / ``net.discriminator`` serve frozen uses.
    Optimizer steps go through ``updater`` (:class:`training.harness.Updater`: accumulation,
    clipping, loss scaling) with the optimizers ``g`` and ``d``.
    """

    def __init__(self, net: Colorizer, g_train: nn.Module, d_train: nn.Module, updater: H.Updater,
                 config: dict[str, Any], ctx: H.DistContext) -> None:
        self.net, self.g_train, self.d_train = net, g_train, d_train
        self.updater, self.config, self.ctx = updater, config, ctx
        self.opt_g, self.opt_d = updater.optimizers["g"], updater.optimizers["d"]
        self.done = False

    def step(self, rgb: torch.Tensor) -> dict[str, float]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {"done": self.done}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.done = bool(state["done"])

    def extra_modules(self) -> dict[str, nn.Module]:
        """Modules besides G and D whose weights belong to the training state."""
        return {}

    def mean(self, logs: dict[str, float]) -> dict[str, float]:
        return {k: self.ctx.mean(v) for k, v in logs.items()}


class AlternatingSchedule(Schedule):
    """Standard per-batch alternation: a D step (colour -> real, fill -> fake) then a G step."""

    def step(self, rgb: torch.Tensor) -> dict[str, float]:
        g, d = self.net.generator, self.net.discriminator

        def d_loss(part: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
            l_norm, ab = part
            with torch.no_grad():
                fake = g(l_norm)
            logits = self.d_train(torch.cat([l_norm, l_norm]), torch.cat([ab, fake])).float()
            target = torch.cat([torch.ones_like(logits[: len(ab)]), torch.zeros_like(logits[len(ab):])])
            loss = F.binary_cross_entropy_with_logits(logits, target)
            return loss, {"loss_d": loss.detach()}

        def g_loss(part: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
            l_norm, ab = part
            fill = self.g_train(l_norm)
            logits_fake = d(l_norm, fill).float()
            loss = F.binary_cross_entropy_with_logits(logits_fake, torch.ones_like(logits_fake)) \
                + self.config["g_image_weight"] * F.l1_loss(fill.float(), ab)
            return loss, {"loss_g": loss.detach()}

        batch = split_lab(rgb)
        logs = self.updater.update("d", batch, d_loss)
        set_frozen(d, True)
        logs.update(self.updater.update("g", batch, g_loss))
        set_frozen(d, False)
        return self.mean(logs)


class PhasedSchedule(Schedule):
    """The seed's procedure (see the module docstring). State: ``round``, ``phase``
    (``generator`` | ``discriminator``), ``phase_step``, the last losses, and ``ended`` (why the
    last phase or the whole loop stopped: ``threshold`` / ``cap`` / ``converged`` / ``max_rounds``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.p = self.config["phased"]
        for key, allowed in (("gen_loss", ("bce", "difference")), ("image_distance", ("l1", "l2")),
                             ("result_label", ("r2", "fake"))):
            if self.p[key] not in allowed:
                raise ValueError(f"phased.{key} must be one of {allowed}, got {self.p[key]!r}")
        for key in ("g_max_steps", "d_max_steps", "max_rounds"):
            if int(self.p[key]) < 1:
                raise ValueError(f"phased.{key} must be >= 1 (every condition has a step cap)")
        self.round, self.phase, self.phase_step = 0, "generator", 0
        self.last_g: float | None = None
        self.last_d: float | None = None
        self.ended: dict[str, str] = {}
        self.target_d = copy.deepcopy(self.net.discriminator)
        self._start_generator_phase()

    def _start_generator_phase(self) -> None:
        """A new round: the current D becomes the frozen target discriminator."""
        self.target_d.load_state_dict(self.net.discriminator.state_dict())
        set_frozen(self.target_d, True)
        set_frozen(self.net.discriminator, True)
        set_frozen(self.net.generator, False)

    def _start_discriminator_phase(self) -> None:
        set_frozen(self.net.generator, True)
        set_frozen(self.net.discriminator, False)

    def extra_modules(self) -> dict[str, nn.Module]:
        return {"target_discriminator": self.target_d}

    def generation_loss(self, r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        if self.p["gen_loss"] == "difference":
            return (r1 - r2).mean()
        return H.bce(r1, torch.ones_like(r1)) + H.bce(r2, torch.ones_like(r2))

    def generator_step(self, l_norm: torch.Tensor, ab: torch.Tensor) -> dict[str, float]:
        def loss_fn(part: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
            l_part, ab_part = part
            with torch.no_grad():
                r1 = realness(self.target_d(l_part, ab_part).float())
            fill = self.g_train(l_part)
            r2 = realness(self.target_d(l_part, fill).float())
            loss = self.generation_loss(r1, r2) + self.config["g_image_weight"] * F.l1_loss(fill.float(), ab_part)
            return loss, {"loss_g": loss.detach(), "r1": r1.mean(), "r2": r2.detach().mean()}

        return self.mean(self.updater.update("g", (l_norm, ab), loss_fn))

    def discriminator_step(self, l_norm: torch.Tensor, ab: torch.Tensor) -> dict[str, float]:
        selections: list[torch.Tensor] = []

        def loss_fn(part: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
            l_part, ab_part = part
            with torch.no_grad():
                fill = self.net.generator(l_part)
                r2 = realness(self.target_d(l_part, fill).float())
            chosen = select_fooled(r2, self.p["real_threshold"])
            selections.append(chosen)
            r3 = realness(self.d_train(l_part, fill).float())
            fill = fill.float()
            diff = (fill - ab_part).abs() if self.p["image_distance"] == "l1" else (fill - ab_part) ** 2
            image_loss = diff.mean(dim=(1, 2, 3))
            label = r2 if self.p["result_label"] == "r2" else torch.zeros_like(r2)
            result_loss = H.bce(r3, label, reduction="none").reshape(-1)
            per_sample = self.p["image_weight"] * image_loss + self.p["result_weight"] * result_loss
            weights = chosen.to(per_sample.dtype)
            loss = (per_sample * weights).sum() / weights.sum().clamp(min=1.0)
            r3_sel = (r3.detach().reshape(-1) * weights).sum() / weights.sum().clamp(min=1.0)
            return loss, {"loss_d": loss.detach(), "r2": r2.mean(), "r3": r3_sel, "selected": weights.mean()}

        logs = self.updater.update("d", (l_norm, ab), loss_fn)
        self.last_selection = torch.cat(selections)
        return self.mean(logs)

    def step(self, rgb: torch.Tensor) -> dict[str, float]:
        if self.done:
            raise RuntimeError("the phased schedule has ended; no more steps")
        l_norm, ab = split_lab(rgb)
        logs: dict[str, float] = {"round": float(self.round)}
        if self.phase == "generator":
            logs.update(self.generator_step(l_norm, ab))
            self.phase_step += 1
            self.last_g = logs["loss_g"]
            stop = "threshold" if self.last_g <= self.p["g_loss_threshold"] else \
                "cap" if self.phase_step >= self.p["g_max_steps"] else None
            if stop:
                self.ended["generator"] = stop
                self.phase, self.phase_step = "discriminator", 0
                self._start_discriminator_phase()
            return logs
        logs.update(self.discriminator_step(l_norm, ab))
        self.phase_step += 1
        self.last_d = logs["loss_d"]
        stop = "threshold" if self.last_d <= self.p["d_loss_threshold"] else \
            "cap" if self.phase_step >= self.p["d_max_steps"] else None
        if stop:
            self.ended["discriminator"] = stop
            self.round += 1
            self.phase, self.phase_step = "generator", 0
            total = self.last_g + self.last_d
            if total <= self.p["total_threshold"]:
                self.done, self.ended["loop"] = True, "converged"
            elif self.round >= self.p["max_rounds"]:
                self.done, self.ended["loop"] = True, "max_rounds"
            else:
                self._start_generator_phase()
        return logs

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "round": self.round, "phase": self.phase, "phase_step": self.phase_step,
                "last_g": self.last_g, "last_d": self.last_d, "ended": self.ended}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.round, self.phase, self.phase_step = int(state["round"]), state["phase"], int(state["phase_step"])
        self.last_g, self.last_d, self.ended = state["last_g"], state["last_d"], dict(state["ended"])
        if self.phase == "generator":
            set_frozen(self.target_d, True)
            set_frozen(self.net.discriminator, True)
            set_frozen(self.net.generator, False)
        else:
            set_frozen(self.target_d, True)
            self._start_discriminator_phase()


def random_tint(ab: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Randomly tinted copies of ab / AB_SCALE (N, 2, H, W): per image one of a global colour
    cast (an offset of 15-40 ab units in a random direction), a hue rotation by 60-180 degrees
    either way, or chroma scaled by 2-3; clipped to [-1, 1]."""
    n = len(ab)
    u = torch.rand(n, 3, generator=generator).to(ab.device)
    kind = (u[:, 0] * 3).long()
    angle = u[:, 1] * 2 * torch.pi
    cast = torch.stack([torch.cos(angle), torch.sin(angle)], 1) * (15.0 + 25.0 * u[:, 2:3]) / AB_SCALE
    turn = torch.where(u[:, 1] < 0.5, 1.0, -1.0) * (torch.pi / 3 + u[:, 2] * 2 * torch.pi / 3)
    cos, sin = torch.cos(turn)[:, None, None], torch.sin(turn)[:, None, None]
    rotated = torch.stack([ab[:, 0] * cos - ab[:, 1] * sin, ab[:, 0] * sin + ab[:, 1] * cos], 1)
    scaled = ab * (2.0 + u[:, 2])[:, None, None, None]
    shifted = ab + cast[:, :, None, None]
    pick = kind[:, None, None, None]
    return torch.where(pick == 0, shifted, torch.where(pick == 1, rotated, scaled)).clamp(-1.0, 1.0)


def nearest_bins(ab: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """ab in ab units (N, 2, h, w), bin centres (K, 2) -> index of the nearest bin (N, h, w)."""
    d2 = ((ab.permute(0, 2, 3, 1)[..., None, :] - centres) ** 2).sum(-1)
    return d2.argmin(-1)


def soft_encode(ab: torch.Tensor, centres: torch.Tensor, neighbours: int,
                sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Soft encoding of ab (N, 2, h, w) in ab units: Gaussian weights (width ``sigma``) on the
    ``neighbours`` nearest of the bins ``centres`` (K, 2), summing to 1 -> (target (N, K, h, w),
    index of the nearest bin (N, h, w))."""
    d2 = ((ab.permute(0, 2, 3, 1)[..., None, :] - centres) ** 2).sum(-1)  # (N, h, w, K)
    near, index = d2.topk(neighbours, dim=-1, largest=False)
    weights = torch.softmax(-near / (2 * sigma**2), dim=-1)
    target = torch.zeros_like(d2).scatter_(-1, index, weights)
    return target.permute(0, 3, 1, 2), index[..., 0]


def rebalancing_weights(counts: torch.Tensor, centres: torch.Tensor, rebalance: float, sigma: float) -> torch.Tensor:
    """Class rebalancing (Zhang et al., 2016): bin counts (K,) -> weights (K,) proportional to
    1 / ((1 - rebalance) p + rebalance / K), p the counts' distribution smoothed by a Gaussian
    of width ``sigma`` over the bin centres, normalised so that sum p w = 1."""
    if not 0.0 <= rebalance <= 1.0:
        raise ValueError(f"bins.rebalance must be in [0, 1], got {rebalance}")
    p = counts.double() / counts.sum().clamp(min=1)
    kernel = torch.exp(-torch.cdist(centres.double(), centres.double()) ** 2 / (2 * sigma**2))
    p = kernel @ p / kernel.sum(1)
    p = p / p.sum()
    w = 1.0 / ((1.0 - rebalance) * p + rebalance / len(p))
    return (w / (p * w).sum()).float()


class BinSchedule(Schedule):
    """Classification with class rebalancing for G, plus a realness critic D (see the module
    docstring). ``weights``: the rebalancing weights per bin, set by :meth:`fit_prior`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.net.generator, BinGenerator):
            raise ValueError("schedule 'bins' needs model.head 'bins'")
        self.b = self.config["bins"]
        self.centres = self.net.generator.centres
        self.weights: torch.Tensor | None = None

    def fit_prior(self, batches: Any) -> None:
        """Count the nearest bins of the true ab over ``batches`` (an iterable of sRGB crops
        (N, 3, H, W)) and set the rebalancing weights."""
        counts = torch.zeros(len(self.centres), dtype=torch.float64)
        for rgb in batches:
            ab = F.avg_pool2d(split_lab(rgb.to(self.centres.device))[1] * AB_SCALE, 4)
            counts += torch.bincount(nearest_bins(ab, self.centres).reshape(-1), minlength=len(counts)).double().cpu()
        self.weights = rebalancing_weights(counts, self.centres.cpu(), float(self.b["rebalance"]),
                                           float(self.b["sigma"])).to(self.centres.device)

    def step(self, rgb: torch.Tensor) -> dict[str, float]:
        if self.weights is None:
            raise RuntimeError("call fit_prior before training with the 'bins' schedule")
        g, d = self.net.generator, self.net.discriminator
        assert isinstance(g, BinGenerator)
        tint_share = float(self.b["tint_share"])
        fills: list[torch.Tensor] = []

        def g_loss(part: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
            l_norm, ab = part
            logits = self.g_train(l_norm, return_logits=True)
            ab_small = F.avg_pool2d(ab * AB_SCALE, 4)
            target, nearest = soft_encode(ab_small, self.centres, int(self.b["neighbours"]), float(self.b["sigma"]))
            pixel_w = self.weights[nearest]
            ce = -(target * F.log_softmax(logits.float(), dim=1)).sum(1)
            loss = (ce * pixel_w).sum() / pixel_w.sum()
            fill = g.decode_logits(logits, (l_norm.shape[-2], l_norm.shape[-1]))
            fills.append(fill.detach())
            if self.config["adv_weight"] > 0:
                adv = d(l_norm, fill).float()
                loss = loss + self.config["adv_weight"] * F.binary_cross_entropy_with_logits(adv, torch.ones_like(adv))
            return loss, {"loss_g": loss.detach()}

        def d_loss(part: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
            l_norm, ab = part
            fill = fills.pop(0)
            n_tint = int(round(len(ab) * tint_share))
            fakes = torch.cat([random_tint(ab[:n_tint]), fill[n_tint:]])
            logits = self.d_train(torch.cat([l_norm, l_norm]), torch.cat([ab, fakes])).float()
            real, fake = logits[: len(ab)], logits[len(ab):]
            loss = 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                          + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
            probs = realness(logits.detach())
            return loss, {"loss_d": loss.detach(), "real": probs[: len(ab)].mean(),
                          "tinted": probs[len(ab): len(ab) + n_tint].mean() if n_tint else probs.new_tensor(0.0),
                          "fake": probs[len(ab) + n_tint:].mean()}

        batch = split_lab(rgb)
        set_frozen(d, True)
        logs = self.updater.update("g", batch, g_loss)
        set_frozen(d, False)
        logs.update(self.updater.update("d", batch, d_loss))
        return self.mean(logs)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "weights": None if self.weights is None else self.weights.cpu().tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get("weights") is not None:
            self.weights = torch.tensor(state["weights"], device=self.centres.device)


SCHEDULES = {"phased": PhasedSchedule, "alternating": AlternatingSchedule, "bins": BinSchedule}


def make_schedule(net: Colorizer, config: dict[str, Any], ctx: H.DistContext) -> Schedule:
    """The configured schedule with Adam optimizers, their :class:`training.harness.Updater`
    (and DDP wrappers when distributed)."""
    if config["schedule"] not in SCHEDULES:
        raise ValueError(f"schedule must be one of {sorted(SCHEDULES)}, got {config['schedule']!r}")
    opt_g = torch.optim.Adam(net.generator.parameters(), lr=config["lr_g"], betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(net.discriminator.parameters(), lr=config["lr_d"], betas=(0.5, 0.999))
    updater = H.Updater({"g": opt_g, "d": opt_d}, ctx, config)
    return SCHEDULES[config["schedule"]](net, ctx.wrap(net.generator), ctx.wrap(net.discriminator),
                                         updater, config, ctx)


def colorized(net: Colorizer, rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the fill of ``rgb``'s gray version, that gray version): sRGB (N, 3, H, W) in [0, 1]."""
    l_norm, _ = split_lab(rgb)
    lightness = (l_norm + 1.0) * 50.0
    fill = lab_to_rgb(torch.cat([lightness, net.generator(l_norm).float() * AB_SCALE], dim=1))
    gray = lab_to_rgb(torch.cat([lightness, torch.zeros_like(lightness).repeat(1, 2, 1, 1)], dim=1))
    return fill, gray


def sample_rows(net: Colorizer, rgb: torch.Tensor, count: int = 4) -> list[list]:
    """Rows of (gray, fill, original) float (H, W, 3) images for a sample grid."""
    with torch.no_grad():
        fill, gray = colorized(net, rgb[:count])

    def hwc(t: torch.Tensor) -> Any:
        return t.permute(1, 2, 0).float().cpu().numpy()

    return [[hwc(gray[i]), hwc(fill[i]), hwc(rgb[i])] for i in range(min(count, len(rgb)))]


def train(config: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """Run a training; returns :func:`training.harness.train_loop`'s result plus "skipped",
    "ended" and "model" (the trained :class:`Colorizer`, raw weights).

    Writes to ``config["out"]`` what :func:`training.harness.train_loop` writes, with
    ``colorize.safetensors`` / ``colorize.json`` the model checkpoint for ``pyfill export``
    (EMA weights) and validation PSNR / SSIM of the fills against the colour crops.
    ``threads`` > 0 limits torch's CPU threads.
    """
    if int(config["threads"]) > 0:
        torch.set_num_threads(int(config["threads"]))
    return H.run_distributed(_train, config, resume)


def _train(config: dict[str, Any], resume: bool, ctx: H.DistContext) -> dict[str, Any]:
    seed = int(config["seed"])
    H.seed_everything(seed)
    net = build_model("colorize", config["model"]).to(ctx.device)
    manifest = make_manifest("colorize", config["model"])
    data_cfg = config["data"]
    crop = int(data_cfg["crop"])
    images = ImageSet(data_cfg["folders"], data_cfg["package_images"], int(data_cfg["max_side"]), crop,
                      in_memory=bool(data_cfg["in_memory"]))
    held_out = ImageSet(data_cfg["val_folders"], (), int(data_cfg["max_side"]), crop) if data_cfg["val_folders"] \
        else images
    batch = H.process_batch(config, ctx)
    schedule = make_schedule(net, config, ctx)
    if isinstance(schedule, BinSchedule):
        prior_gen = H.validation_generator(seed, 10_000)
        schedule.fit_prior(images.random_crops(batch, crop, prior_gen)
                           for _ in range(int(config["bins"]["prior_batches"])))

    def validate() -> dict[str, float]:
        psnrs, ssims = [], []
        for k in range(int(config["val_batches"])):
            rgb = held_out.random_crops(batch, crop, H.validation_generator(seed, k)).to(ctx.device)
            fill, _ = colorized(net, rgb)
            psnrs.append(H.psnr(fill, rgb))
            ssims.append(H.ssim(fill, rgb))
        return {"psnr": float(torch.cat(psnrs).mean()), "ssim": float(torch.cat(ssims).mean())}

    task = H.Task(
        name="colorize", modules={"model": net, **schedule.extra_modules()},
        optimizers={"g": schedule.opt_g, "d": schedule.opt_d}, lr_keys={"g": "lr_g", "d": "lr_d"},
        updater=schedule.updater, batches=lambda step, gen: images.random_crops(batch, crop, gen),
        step=lambda step, rgb: schedule.step(rgb), fields=LOSS_FIELDS, plot_fields=("loss_g", "loss_d"),
        export_module=net, manifest=manifest, ema_target=net.generator, validate=validate, metric="psnr",
        val_fields=("psnr", "ssim"), sample=lambda rgb, path: H.save_image_grid(sample_rows(net, rgb), path),
        state=schedule.state_dict, load_state=schedule.load_state_dict, done=lambda: schedule.done,
        data=images.manifest(),
        result=lambda: {"skipped": images.skipped, "ended": getattr(schedule, "ended", {}), "model": net})
    return H.train_loop(task, config, resume, ctx)


def main(argv: Sequence[str] | None = None) -> int:
    return H.run_trainer(
        "Train the colour filling model (SPEC S1).", DEFAULTS, train, argv,
        lambda r: f"trained {r['steps']} steps in {r['seconds']:.1f} s -> {r['out']}"
        + (f" (skipped {len(r['skipped'])} unreadable images)" if r["skipped"] else ""),
    )


if __name__ == "__main__":
    sys.exit(main())
