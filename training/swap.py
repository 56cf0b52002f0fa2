"""Face-swap training (SPEC S5): ``python -m training.swap [--config FILE] [--set k=v] [--resume]``.

Data: exact procedural triplets (:mod:`training.faces`) rendered straight into aligned
128 x 128 crops (the ArcFace-128 template): S = (identity A, attributes a), F = (identity B,
attributes b), T = (identity A, attributes b). The 112 x 112 identity crop of any 128 crop is its
centre (the two templates differ by an 8-pixel shift). Rendering costs tens of milliseconds, so
a pool of ``data.pool`` triplets is kept and ``data.refresh`` of them are replaced per step;
triplet k is drawn from its own seed (seed, k), so the pool at any step, and therefore a resumed
run, is exactly reproducible.

Two phases:
  1. identity encoder E (``encoder_steps``; ``encoder.checkpoint`` starts it from a trained
     ``face_id`` checkpoint): S and T of a triplet are the same person under
     different attributes, F a different one; E is trained with a symmetric InfoNCE loss
     (temperature ``tau``) in which each S must pick its T among all T and F of the batch;
  2. swap GAN with E frozen: per batch one D step (D(T | S, F) -> real, D(O | S, F) -> fake,
     BCE on patch logits) and one G step on
     L = k_adv * L_GAN + k_l1 * L1(O, T) + k_id_t * (1 - cos(E(O), E(T))) + k_id_s * (1 - cos(E(O), E(S)))
     with O = G(F, E(S)).
Training stops at ``max_steps`` or when the validation L1(O, T) on ``val_count`` held-out
triplets (seeds disjoint from training) has improved by no more than ``min_delta`` over
``patience`` evaluations (``val_every`` steps apart).
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
from pyfill.faces.align import template
from pyfill.models import build_model, make_manifest
from pyfill.models.swap import FaceIdEncoder, FaceSwap
from training import faces
from training import harness as H

DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "device": "auto",
    "amp": False,
    "threads": 0,
    "out": "runs/swap",
    "model": {"base": 16, "emb": 128, "blocks": 3, "depth": 3, "size": 128, "disc_base": 32, "disc_layers": 3},
    "encoder": {"base": 16, "checkpoint": ""},
    "data": {"pool": 512, "refresh": 4, "batch": 8, "encoder_batch": 32, "render_size": 160},
    "lr_e": 1e-3,
    "lr_g": 5e-4,
    "lr_d": 2e-4,
    "tau": 0.1,
    "k_adv": 0.05,
    "k_l1": 1.0,
    "k_id_t": 0.5,
    "k_id_s": 0.5,
    "encoder_steps": 600,
    "max_steps": 3000,
    "val_every": 100,
    "val_count": 32,
    "patience": 5,
    "min_delta": 1e-4,
    "log_every": 1,
    "checkpoint_every": 100,
    "sample_every": 500,
}

LOSS_FIELDS = ("phase", "loss_e", "id_acc", "loss_g", "loss_d", "l1", "l_adv", "id_t", "id_s", "val_l1", "val_id")
VAL_SEED_OFFSET = 1_000_000_007


def crops_to_tensor(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 (H, W, 3) images -> float (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div_(255.0)


def id_crop(crops: torch.Tensor, size: int = 128, id_size: int = 112) -> torch.Tensor:
    """The identity encoder's crop of aligned ``size`` crops (N, 3, size, size): the centre
    ``id_size`` square (the 112 template is the 128 template shifted by 8 pixels)."""
    off = (size - id_size) // 2
    return crops[:, :, off:off + id_size, off:off + id_size]


def render_triplet(seed: int, index: int, render_size: int, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Triplet number ``index`` of the stream seeded by ``seed``: (S, F, T) aligned uint8 crops."""
    t = faces.triplet(np.random.default_rng((seed, index)), render_size, template(size), size)
    return t.source.image, t.first.image, t.target.image


class TripletPool:
    """A pool of ``size`` triplets; slot ``k % size`` holds triplet ``k``. After step s the
    pool holds triplets [s * refresh, s * refresh + size)."""

    def __init__(self, seed: int, size: int, refresh: int, render_size: int, crop: int, step: int = 0) -> None:
        if size < 2 or refresh < 0 or refresh > size:
            raise ValueError(f"data.pool must be >= 2 and 0 <= data.refresh <= data.pool, got {size}, {refresh}")
        self.seed, self.size, self.refresh, self.render_size, self.crop = seed, size, refresh, render_size, crop
        self.slots: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [None] * size  # type: ignore[list-item]
        for k in range(step * refresh, step * refresh + size):
            self.slots[k % size] = render_triplet(seed, k, render_size, crop)
        self.next = step * refresh + size

    def advance(self) -> None:
        """Replace the ``refresh`` oldest triplets by new ones."""
        for _ in range(self.refresh):
            self.slots[self.next % self.size] = render_triplet(self.seed, self.next, self.render_size, self.crop)
            self.next += 1

    def batch(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` distinct random triplets as (S, F, T) float tensors (n, 3, crop, crop)."""
        if n > self.size:
            raise ValueError(f"a batch of {n} needs data.pool >= {n}, got {self.size}")
        idx = torch.randperm(self.size, generator=gen)[:n].tolist()
        return tuple(crops_to_tensor([self.slots[i][j] for i in idx]) for j in range(3))  # type: ignore[return-value]


def info_nce(anchor: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor, tau: float) -> tuple[torch.Tensor, float]:
    """Symmetric InfoNCE over unit embeddings (N, D): anchor i's match is positive i among all
    positives and negatives (and vice versa). Returns (loss, share of anchors whose best match
    is their positive)."""
    n = len(anchor)
    candidates = torch.cat([positive, negative])
    logits = anchor @ candidates.T / tau
    back = positive @ torch.cat([anchor, negative]).T / tau
    labels = torch.arange(n, device=anchor.device)
    loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(back, labels))
    return loss, float((logits.argmax(1) == labels).float().mean())


def cosine_gap(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean of 1 - cos between rows of unit embeddings (N, D)."""
    return (1.0 - (a * b).sum(dim=1)).mean()


def discriminator_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                  + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))


def set_frozen(module: nn.Module, frozen: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(not frozen)


class SwapTrainer:
    """The two phases over (S, F, T) batches (N, 3, 128, 128) in [0, 1]."""

    def __init__(self, net: FaceSwap, encoder: FaceIdEncoder, config: dict[str, Any], ctx: H.DistContext) -> None:
        for key in ("k_adv", "k_l1", "k_id_t", "k_id_s"):
            if float(config[key]) < 0:
                raise ValueError(f"{key} must be >= 0, got {config[key]}")
        if float(config["tau"]) <= 0:
            raise ValueError(f"tau must be > 0, got {config['tau']}")
        self.net, self.encoder, self.config, self.ctx = net, encoder, config, ctx
        self.e_train = ctx.wrap(encoder)
        self.g_train, self.d_train = ctx.wrap(net.generator), ctx.wrap(net.discriminator)
        self.opt_e = torch.optim.Adam(encoder.parameters(), lr=config["lr_e"])
        self.opt_g = torch.optim.Adam(net.generator.parameters(), lr=config["lr_g"], betas=(0.5, 0.999))
        self.opt_d = torch.optim.Adam(net.discriminator.parameters(), lr=config["lr_d"], betas=(0.5, 0.999))

    def encoder_step(self, s: torch.Tensor, f: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
        self.encoder.train()
        set_frozen(self.encoder, False)
        n = len(s)
        emb = self.e_train(id_crop(torch.cat([s, t, f])))
        loss, acc = info_nce(emb[:n], emb[n:2 * n], emb[2 * n:], float(self.config["tau"]))
        self.opt_e.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_e.step()
        return {"phase": 1.0, "loss_e": self.ctx.mean(loss.item()), "id_acc": self.ctx.mean(acc)}

    def swap_step(self, s: torch.Tensor, f: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
        c = self.config
        self.encoder.eval()
        set_frozen(self.encoder, True)
        with torch.no_grad():
            e_s, e_t = self.encoder(id_crop(s)), self.encoder(id_crop(t))
            o = self.net.generator(f, e_s)
        logits = self.d_train(torch.cat([t, o]), torch.cat([s, s]), torch.cat([f, f]))
        loss_d = discriminator_loss(logits[: len(t)], logits[len(t):])
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        d = self.net.discriminator
        set_frozen(d, True)
        o = self.g_train(f, e_s)
        l_adv = F.softplus(-d(o, s, f)).mean()
        l1 = F.l1_loss(o, t)
        e_o = self.encoder(id_crop(o))
        id_t, id_s = cosine_gap(e_o, e_t), cosine_gap(e_o, e_s)
        loss_g = (float(c["k_adv"]) * l_adv + float(c["k_l1"]) * l1 + float(c["k_id_t"]) * id_t
                  + float(c["k_id_s"]) * id_s)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        set_frozen(d, False)
        m = self.ctx.mean
        return {"phase": 2.0, "loss_g": m(loss_g.item()), "loss_d": m(loss_d.item()), "l1": m(l1.item()),
                "l_adv": m(l_adv.item()), "id_t": m(id_t.item()), "id_s": m(id_s.item())}

    def step(self, step: int, s: torch.Tensor, f: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
        if step < int(self.config["encoder_steps"]):
            return self.encoder_step(s, f, t)
        return self.swap_step(s, f, t)

    @torch.no_grad()
    def validate(self, step: int, val: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[str, float]:
        """Encoder phase: ``val_id``, the share of held-out S whose nearest T (among all T and F)
        is their own. Swap phase: also ``val_l1``, L1(G(F, E(S)), T)."""
        s, f, t = val
        self.encoder.eval()
        e_s, e_t, e_f = (self.encoder(id_crop(x)) for x in (s, t, f))
        sims = e_s @ torch.cat([e_t, e_f]).T
        out = {"val_id": float((sims.argmax(1) == torch.arange(len(s))).float().mean())}
        if step > int(self.config["encoder_steps"]):
            self.net.generator.eval()
            out["val_l1"] = float(F.l1_loss(self.net.generator(f, e_s), t))
            self.net.generator.train()
        return out


def load_encoder(encoder: FaceIdEncoder, path: str, config: dict[str, Any]) -> None:
    """Start ``encoder`` from a ``face_id`` checkpoint (``.safetensors`` with its ``.json``),
    e.g. to train a swapper with ``encoder_steps=0`` on an identity encoder trained before."""
    from pyfill.export import load_checkpoint

    trained, manifest = load_checkpoint(path)
    if manifest.family != "face_id" or dict(manifest.config) != config:
        raise ValueError(f"{path}: a face_id checkpoint with config {config} is needed, got the "
                         f"{manifest.family} config {manifest.config}")
    encoder.load_state_dict(trained.state_dict())


def validation_set(config: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``val_count`` held-out triplets (a seed stream no training triplet uses)."""
    d = config["data"]
    size = int(config["model"]["size"])
    rows = [render_triplet(int(config["seed"]) + VAL_SEED_OFFSET, k, int(d["render_size"]), size)
            for k in range(int(config["val_count"]))]
    return tuple(crops_to_tensor([r[j] for r in rows]) for j in range(3))  # type: ignore[return-value]


def sample_rows(net: FaceSwap, encoder: FaceIdEncoder, batch: tuple[torch.Tensor, ...], count: int = 4) -> list[list]:
    """Rows of (S, F, O, T) float (H, W, 3) images."""
    s, f, t = (x[:count] for x in batch)
    with torch.no_grad():
        encoder.eval()
        o = net.generator(f, encoder(id_crop(s)))

    def hwc(x: torch.Tensor) -> Any:
        return x.permute(1, 2, 0).float().cpu().numpy()

    return [[hwc(s[i]), hwc(f[i]), hwc(o[i]), hwc(t[i])] for i in range(len(s))]


def plateaued(history: Sequence[float], patience: int, min_delta: float) -> bool:
    """True when the best of the last ``patience`` values improves on the best before them by no
    more than ``min_delta``."""
    if patience < 1 or len(history) <= patience:
        return False
    return min(history[:-patience]) - min(history[-patience:]) <= min_delta


def train(config: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """Run a training; returns {"out", "steps", "seconds", "stopped", "model", "encoder"}.

    Writes to ``config["out"]``: ``state.safetensors`` / ``state.json`` (resumable state),
    ``swap.safetensors`` / ``.json`` and ``face_id.safetensors`` / ``.json`` (checkpoints for
    ``pyfill export``), ``log.csv``, ``losses.png`` and ``samples_<step>.png``.
    """
    if int(config["threads"]) > 0:
        torch.set_num_threads(int(config["threads"]))
    return H.run_distributed(_train, config, resume)


def _train(config: dict[str, Any], resume: bool, ctx: H.DistContext) -> dict[str, Any]:
    out = Path(config["out"])
    H.seed_everything(int(config["seed"]))
    mcfg = config["model"]
    ecfg = {"base": int(config["encoder"]["base"]), "emb": int(mcfg["emb"]), "size": 112}
    net: FaceSwap = build_model("swap", mcfg).to(ctx.device)
    encoder: FaceIdEncoder = build_model("face_id", ecfg).to(ctx.device)
    if config["encoder"]["checkpoint"]:
        load_encoder(encoder, config["encoder"]["checkpoint"], ecfg)
    trainer = SwapTrainer(net, encoder, config, ctx)
    modules = {"swap": net, "face_id": encoder}
    optimizers = {"e": trainer.opt_e, "g": trainer.opt_g, "d": trainer.opt_d}
    meta, log = H.start_run(out, modules, optimizers, LOSS_FIELDS, resume, ctx)
    start = int(meta["step"])
    history: list[float] = list(meta.get("val_history", []))
    stopped = meta.get("stopped", "")
    d = config["data"]
    pool = TripletPool(int(config["seed"]) + 7919 * ctx.rank, int(d["pool"]), int(d["refresh"]),
                       int(d["render_size"]), int(mcfg["size"]), step=start)
    val = validation_set(config)

    def save(step: int) -> None:
        if ctx.main:
            H.save_training_state(out, modules, optimizers, {"step": step, "config": config,
                                                             "val_history": history, "stopped": stopped})

    max_steps = int(config["max_steps"])
    began = time.perf_counter()
    step = start
    with H.progress(max_steps, start, ctx.main) as bar:
        while step < max_steps and not stopped:
            gen = H.step_generator(int(config["seed"]), step, ctx.rank)
            n = int(d["encoder_batch"] if step < int(config["encoder_steps"]) else d["batch"])
            s, f, t = (x.to(ctx.device) for x in pool.batch(n, gen))
            with H.autocast(ctx, bool(config["amp"])):
                logs = trainer.step(step, s, f, t)
            pool.advance()
            step += 1
            if step % int(config["val_every"]) == 0 or step == int(config["encoder_steps"]):
                logs.update(trainer.validate(step, val))
                if "val_l1" in logs:
                    history.append(logs["val_l1"])
                    if plateaued(history, int(config["patience"]), float(config["min_delta"])):
                        stopped = f"validation L1 plateau at step {step}"
            if log is not None and (step % int(config["log_every"]) == 0 or "val_id" in logs):
                log.write(step, logs)
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in logs.items() if k in ("loss_e", "l1", "id_s", "val_l1")})
            if step % int(config["checkpoint_every"]) == 0 or stopped:
                save(step)
            if ctx.main and config["sample_every"] and step % int(config["sample_every"]) == 0:
                H.save_image_grid(sample_rows(net, encoder, val), out / f"samples_{step:06d}.png")
    seconds = time.perf_counter() - began
    save(step)
    if ctx.main:
        save_checkpoint(net.cpu(), make_manifest("swap", mcfg), out / "swap")
        save_checkpoint(encoder.cpu(), make_manifest("face_id", ecfg), out / "face_id")
        H.plot_losses(out / "log.csv", out / "losses.png", ("loss_e", "loss_g", "loss_d", "l1", "id_s", "val_l1"))
    return {"out": str(out), "steps": step, "seconds": seconds, "stopped": stopped or f"max_steps ({max_steps})",
            "model": net, "encoder": encoder}


def main(argv: Sequence[str] | None = None) -> int:
    return H.run_trainer(
        "Train the face-swap generator and its identity encoder (SPEC S5).", DEFAULTS, train, argv,
        lambda r: f"trained {r['steps']} steps in {r['seconds']:.1f} s ({r['stopped']}) -> {r['out']}",
    )


if __name__ == "__main__":
    sys.exit(main())
