"""Face-swap training (SPEC S5): ``python -m training.swap [--config FILE] [--set k=v] [--resume]``.

Runs on the shared loop of :mod:`training.harness` (step-numbered atomic checkpoints, EMA of
the generator, schedules, clipping, accumulation, validation with best / last-N checkpoints,
early stop, DataLoader workers, torchrun); see docs/training.md.

Data: exact procedural triplets (:mod:`training.faces`) rendered straight into aligned
128 x 128 crops (the ArcFace-128 template): S = (identity A, attributes a), F = (identity B,
attributes b), T = (identity A, attributes b). The 112 x 112 identity crop of any 128 crop is its
centre (the two templates differ by an 8-pixel shift). Rendering costs tens of milliseconds, so
a pool of ``data.pool`` triplets is kept and ``data.refresh`` of them are replaced per step;
triplet k is drawn from its own seed (seed, k), so the pool at any step, and therefore a resumed
run, is exactly reproducible.

Real faces (``data.real_folder``, aligned crops made by :mod:`training.face_crops`, one
sub-folder per person): a share ``data.real_share`` of the triplets comes from them. Two photos
of one person give S (one photo) and F = T (the other): the swap must reproduce the target when
the source is the same person; a person with one photo gives self-reconstruction, S = F = T.

Two phases:
  1. identity encoder E (``encoder_steps``; ``encoder.checkpoint`` starts it from a trained
     ``face_id`` checkpoint): S and T of a triplet are the same person under
     different attributes, F a different one; E is trained with a symmetric InfoNCE loss
     (temperature ``tau``) in which each S must pick its T among all T and F of the batch;
  2. swap GAN with E frozen: per batch one D step (D(T | S, F) -> real, D(O | S, F) -> fake,
     BCE on patch logits) and one G step on
     L = k_adv * L_GAN + k_l1 * L1(O, T) + k_id_t * (1 - cos(E(O), E(T))) + k_id_s * (1 - cos(E(O), E(S)))
     with O = G(F, E(S)).
Validation at every checkpoint: the encoder's identification rate ``val_id`` on ``val_count``
held-out triplets (seeds disjoint from training) and, in phase 2, ``val_l1`` = L1(O, T) (EMA
weights), which picks the best checkpoint; ``early_stop.patience`` > 0 stops the run when it
has improved by no more than ``early_stop.min_delta`` over that many validations.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from pyfill.faces.align import template
from pyfill.models import build_model, make_manifest
from pyfill.models.swap import FaceIdEncoder, FaceSwap
from training import faces
from training import harness as H

DEFAULTS: dict[str, Any] = H.with_harness_defaults({
    "seed": 0,
    "device": "auto",
    "amp": False,
    "threads": 0,
    "out": "runs/swap",
    "model": {"base": 16, "emb": 128, "blocks": 3, "depth": 3, "size": 128, "disc_base": 32, "disc_layers": 3},
    "encoder": {"base": 16, "checkpoint": ""},
    "data": {"pool": 512, "refresh": 4, "batch": 8, "encoder_batch": 32, "render_size": 160,
             "real_folder": "", "real_share": 0.0},
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
    "val_count": 32,
    "early_stop": {"patience": 5, "min_delta": 1e-4},
    "ema": {"decay": 0.999},
    "workers": 1,
    "log_every": 1,
    "checkpoint_every": 100,
    "sample_every": 500,
})

LOSS_FIELDS = ("phase", "loss_e", "id_acc", "loss_g", "loss_d", "l1", "l_adv", "id_t", "id_s")
VAL_FIELDS = ("l1", "id")
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


class RealFaces:
    """Aligned face crops in ``folder/<person>/<image>`` (as :mod:`training.face_crops` writes
    them), decoded when a triplet needs them. Triplet ``k`` is drawn from its own seed: a person,
    one photo as F = T and, when the person has more than one, another as S (else S = F = T:
    self-reconstruction); each crop is flipped horizontally with probability 1/2."""

    def __init__(self, folder: str | Path, size: int) -> None:
        from training.data import list_images

        root = Path(folder)
        people = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        if not root.is_dir():
            raise FileNotFoundError(f"data.real_folder not found: {root}")
        self.people = [(p.name, [str(f) for f in list_images(p)]) for p in people]
        self.people = [(n, fs) for n, fs in self.people if fs]
        if not self.people:
            raise ValueError(f"{root}: no face crops (expected one sub-folder of aligned crops per person; make them "
                             "with python -m training.face_crops)")
        self.size = int(size)

    def __len__(self) -> int:
        return sum(len(fs) for _, fs in self.people)

    def _crop(self, path: str, flip: bool) -> np.ndarray:
        from PIL import Image

        with Image.open(path) as im:
            rgb = np.asarray(im.convert("RGB"))
        if rgb.shape[:2] != (self.size, self.size):
            raise ValueError(f"{path}: an aligned crop is {self.size} x {self.size}, got {rgb.shape[1]} x {rgb.shape[0]}")
        return np.ascontiguousarray(rgb[:, ::-1]) if flip else rgb

    def triplet(self, seed: int, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Real triplet ``index`` of the stream seeded by ``seed``: (S, F, T) with F = T."""
        rng = np.random.default_rng((seed, index, 1))
        _, files = self.people[int(rng.integers(len(self.people)))]
        i = int(rng.integers(len(files)))
        j = i if len(files) == 1 else (i + 1 + int(rng.integers(len(files) - 1))) % len(files)
        target = self._crop(files[i], bool(rng.random() < 0.5))
        return self._crop(files[j], bool(rng.random() < 0.5)), target, target

    def manifest(self) -> dict[str, Any]:
        root = Path(self.people[0][1][0]).parents[1]
        files = [(str(Path(f).relative_to(root)), Path(f).stat().st_size) for _, fs in self.people for f in fs]
        return H.data_manifest(files, {"folder": str(root), "people": len(self.people)})


class TripletPool:
    """A pool of ``size`` triplets; slot ``k % size`` holds triplet ``k``. After step s the
    pool holds triplets [s * refresh, s * refresh + size). With ``real`` faces, triplet k is a
    real one when its own draw falls under ``real_share``."""

    def __init__(self, seed: int, size: int, refresh: int, render_size: int, crop: int, step: int = 0,
                 real: RealFaces | None = None, real_share: float = 0.0) -> None:
        if size < 2 or refresh < 0 or refresh > size:
            raise ValueError(f"data.pool must be >= 2 and 0 <= data.refresh <= data.pool, got {size}, {refresh}")
        if not 0.0 <= real_share <= 1.0:
            raise ValueError(f"data.real_share must be in [0, 1], got {real_share}")
        if real_share > 0 and real is None:
            raise ValueError("data.real_share > 0 needs data.real_folder (aligned face crops, one folder per person)")
        self.seed, self.size, self.refresh, self.render_size, self.crop = seed, size, refresh, render_size, crop
        self.real, self.real_share = real, float(real_share)
        self.slots: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = [None] * size  # type: ignore[list-item]
        self.step = step
        for k in range(step * refresh, step * refresh + size):
            self.slots[k % size] = self.triplet(k)
        self.next = step * refresh + size

    def triplet(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Triplet ``k``: a real one or a render, by triplet k's own draw."""
        if self.real is not None and self.real_share > 0 and np.random.default_rng((self.seed, k, 2)).random() < self.real_share:
            return self.real.triplet(self.seed, k)
        return render_triplet(self.seed, k, self.render_size, self.crop)

    def advance(self) -> None:
        """Replace the ``refresh`` oldest triplets by new ones (one step on)."""
        for _ in range(self.refresh):
            self.slots[self.next % self.size] = self.triplet(self.next)
            self.next += 1
        self.step += 1

    def at(self, step: int) -> TripletPool:
        """The pool as it is at ``step``: advanced when ``step`` is a little ahead, rebuilt when
        it lies behind or far ahead (the contents depend on the step only)."""
        if step < self.step or (step - self.step) * self.refresh > self.size:
            self.__init__(self.seed, self.size, self.refresh, self.render_size, self.crop, step,  # type: ignore[misc]
                          self.real, self.real_share)
        while self.step < step:
            self.advance()
        return self

    def batch(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``n`` distinct random triplets as (S, F, T) float tensors (n, 3, crop, crop)."""
        if n > self.size:
            raise ValueError(f"a batch of {n} needs data.pool >= {n}, got {self.size}")
        idx = torch.randperm(self.size, generator=gen)[:n].tolist()
        return tuple(crops_to_tensor([self.slots[i][j] for i in idx]) for j in range(3))  # type: ignore[return-value]


class PoolBatches:
    """``batches(step, generator)`` for the harness: the batch of a step drawn from the pool as
    it is at that step (each DataLoader worker keeps its own pool copy in step)."""

    def __init__(self, pool: TripletPool, encoder_steps: int, encoder_batch: int, batch: int) -> None:
        self.pool, self.encoder_steps, self.encoder_batch, self.batch = pool, encoder_steps, encoder_batch, batch

    def __call__(self, step: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = self.encoder_batch if step < self.encoder_steps else self.batch
        return self.pool.at(step).batch(n, gen)


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


class SwapTrainer:
    """The two phases over (S, F, T) batches (N, 3, 128, 128) in [0, 1]; optimizer steps go
    through a :class:`training.harness.Updater` (accumulation, clipping, loss scaling)."""

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
        self.updater = H.Updater({"e": self.opt_e, "g": self.opt_g, "d": self.opt_d}, ctx, config)

    def encoder_step(self, s: torch.Tensor, f: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
        self.encoder.train()
        H.set_frozen(self.encoder, False)

        def loss_fn(part: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
            ps, pf, pt = part
            n = len(ps)
            emb = self.e_train(id_crop(torch.cat([ps, pt, pf]))).float()
            loss, acc = info_nce(emb[:n], emb[n:2 * n], emb[2 * n:], float(self.config["tau"]))
            return loss, {"loss_e": loss.detach(), "id_acc": acc}

        logs = self.updater.update("e", (s, f, t), loss_fn)
        return {"phase": 1.0, **{k: self.ctx.mean(v) for k, v in logs.items()}}

    def swap_step(self, s: torch.Tensor, f: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
        c = self.config
        self.encoder.eval()
        H.set_frozen(self.encoder, True)
        d = self.net.discriminator

        def d_loss(part: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
            ps, pf, pt = part
            with torch.no_grad():
                o = self.net.generator(pf, self.encoder(id_crop(ps)))
            logits = self.d_train(torch.cat([pt, o]), torch.cat([ps, ps]), torch.cat([pf, pf])).float()
            loss = discriminator_loss(logits[: len(pt)], logits[len(pt):])
            return loss, {"loss_d": loss.detach()}

        def g_loss(part: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
            ps, pf, pt = part
            with torch.no_grad():
                e_s, e_t = self.encoder(id_crop(ps)).float(), self.encoder(id_crop(pt)).float()
            o = self.g_train(pf, e_s)
            l_adv = F.softplus(-d(o, ps, pf).float()).mean()
            l1 = F.l1_loss(o.float(), pt)
            e_o = self.encoder(id_crop(o)).float()
            id_t, id_s = cosine_gap(e_o, e_t), cosine_gap(e_o, e_s)
            loss = (float(c["k_adv"]) * l_adv + float(c["k_l1"]) * l1 + float(c["k_id_t"]) * id_t
                    + float(c["k_id_s"]) * id_s)
            return loss, {"loss_g": loss.detach(), "l1": l1.detach(), "l_adv": l_adv.detach(),
                          "id_t": id_t.detach(), "id_s": id_s.detach()}

        logs = self.updater.update("d", (s, f, t), d_loss)
        H.set_frozen(d, True)
        logs.update(self.updater.update("g", (s, f, t), g_loss))
        H.set_frozen(d, False)
        return {"phase": 2.0, **{k: self.ctx.mean(v) for k, v in logs.items()}}

    def step(self, step: int, s: torch.Tensor, f: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
        if step < int(self.config["encoder_steps"]):
            return self.encoder_step(s, f, t)
        return self.swap_step(s, f, t)

    @torch.no_grad()
    def validate(self, step: int, val: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict[str, float]:
        """``id``: the share of held-out S whose nearest T (among all T and F) is their own;
        after the encoder phase (``step`` > ``encoder_steps``) also ``l1`` = L1(G(F, E(S)), T)."""
        s, f, t = val
        self.encoder.eval()
        e_s, e_t, e_f = (self.encoder(id_crop(x)) for x in (s, t, f))
        sims = e_s @ torch.cat([e_t, e_f]).T
        out = {"id": float((sims.argmax(1) == torch.arange(len(s), device=sims.device)).float().mean())}
        if step > int(self.config["encoder_steps"]):
            was = self.net.generator.training
            self.net.generator.eval()
            out["l1"] = float(F.l1_loss(self.net.generator(f, e_s), t))
            self.net.generator.train(was)
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


def train(config: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """Run (or resume) a training; returns :func:`training.harness.train_loop`'s result plus
    "stopped" (why it ended), "model" (the :class:`FaceSwap`, raw weights) and "encoder".

    Writes to ``config["out"]`` what the harness writes (``checkpoints/step_<n>/``, log, plots),
    with ``swap.safetensors`` / ``.json`` (EMA generator) and ``face_id.safetensors`` / ``.json``
    the checkpoints for ``pyfill export``.
    """
    return H.run_distributed(_train, config, resume)


def _train(config: dict[str, Any], resume: bool, ctx: H.DistContext) -> dict[str, Any]:
    seed = int(config["seed"])
    H.seed_everything(seed)
    mcfg = config["model"]
    ecfg = {"base": int(config["encoder"]["base"]), "emb": int(mcfg["emb"]), "size": 112}
    net: FaceSwap = build_model("swap", mcfg).to(ctx.device)
    encoder: FaceIdEncoder = build_model("face_id", ecfg).to(ctx.device)
    if config["encoder"]["checkpoint"]:
        load_encoder(encoder, config["encoder"]["checkpoint"], ecfg)
    trainer = SwapTrainer(net, encoder, config, ctx)
    d = config["data"]
    if int(config["accumulate"]) > 1 or int(config["global_batch"]) > 0:
        raise ValueError("the swap trainer draws its own batch sizes (data.batch, data.encoder_batch); "
                         "accumulate and global_batch are not supported here")
    real = RealFaces(d["real_folder"], int(mcfg["size"])) if d["real_folder"] else None
    pool = TripletPool(seed + 7919 * ctx.rank, int(d["pool"]), int(d["refresh"]), int(d["render_size"]),
                       int(mcfg["size"]), real=real, real_share=float(d["real_share"]))
    val = tuple(x.to(ctx.device) for x in validation_set(config))
    current = {"step": 0}

    def step(index: int, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        current["step"] = index + 1
        return trainer.step(index, *batch)

    data = {"source": "procedural triplets (training/faces.py)", "pool": int(d["pool"]), "refresh": int(d["refresh"])}
    if real is not None:
        data = {**data, "real_share": float(d["real_share"]), "real": real.manifest()}
    task = H.Task(
        name="swap", modules={"swap": net, "face_id": encoder},
        optimizers={"e": trainer.opt_e, "g": trainer.opt_g, "d": trainer.opt_d},
        lr_keys={"e": "lr_e", "g": "lr_g", "d": "lr_d"}, updater=trainer.updater,
        batches=PoolBatches(pool, int(config["encoder_steps"]), int(d["encoder_batch"]), int(d["batch"])),
        step=step, fields=LOSS_FIELDS, plot_fields=("loss_e", "loss_g", "loss_d", "l1", "id_s"),
        export_module=net, manifest=make_manifest("swap", mcfg), ema_target=net.generator,
        validate=lambda: trainer.validate(current["step"], val), metric="l1", mode="min", val_fields=VAL_FIELDS,
        sample=lambda batch, path: H.save_image_grid(sample_rows(net, encoder, val), path),
        data=data, extra_exports={"face_id": (encoder, make_manifest("face_id", ecfg))},
        result=lambda: {"model": net, "encoder": encoder})
    result = H.train_loop(task, config, resume, ctx)
    if result["early_stopped"]:
        result["stopped"] = f"validation L1 plateau at step {result['steps']}"
    elif result["signal"]:
        result["stopped"] = f"stopped by {result['signal']} at step {result['steps']}"
    else:
        result["stopped"] = f"max_steps ({config['max_steps']})"
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return H.run_trainer(
        "Train the face-swap generator and its identity encoder (SPEC S5).", DEFAULTS, train, argv,
        lambda r: f"trained {r['steps']} steps in {r['seconds']:.1f} s ({r['stopped']}) -> {r['out']}",
    )


if __name__ == "__main__":
    sys.exit(main())
