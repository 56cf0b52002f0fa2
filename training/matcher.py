"""Editing: the image-text matcher and the attribute regressor (SPEC S4):
``python -m training.matcher [--set kind=matcher|regressor] [--config FILE] [--set k=v]``.

``kind=matcher`` trains the dual encoder (:class:`pyfill.models.edit.DualEncoder`) contrastively
on aligned procedural faces and captions generated from their exact attributes
(:func:`training.edit_data.caption_for`). A batch has one caption per face; caption j is a
positive for face i whenever it is true of face i (:func:`training.edit_data.caption_matches`,
so the many faces a caption such as "a smiling person" fits are not pushed apart); the loss is
the cross-entropy of cosine / ``tau`` against the positives (spread evenly), image -> text and
text -> image, averaged. Training images are blurred (random Gaussian) and noised at random, so
that the matcher also reads the decoder's softer images. Validation ``zero_shot``: on held-out
faces, the share of (attribute, face) pairs for which the phrase that is true ("a smiling
person") scores above its opposite ("a frowning person").

``kind=regressor`` trains :class:`pyfill.models.edit.AttributeRegressor` (mean squared error on
the seven attributes scaled to [0, 1]); validation ``mae``, the mean absolute error on held-out
faces. It is only used to evaluate edits.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from pyfill.models import build_model, full_config, make_manifest
from pyfill.tasks.edit import Tokenizer
from training import edit_data as D
from training import harness as H

DEFAULTS: dict[str, Any] = H.with_harness_defaults({
    "seed": 0,
    "device": "auto",
    "amp": False,
    "workers": 0,
    "threads": 1,
    "kind": "matcher",
    "out": "runs/edit/matcher",
    "model": {"size": 64, "embed": 64, "base": 16, "cap": 128, "length": 16, "width": 128},
    "data": {"count": 8000, "val_count": 256, "val_seed": 1, "batch": 64, "cache": "runs/edit/data",
             "max_parts": 2, "blur": 0.5, "noise": 0.03},
    "tau": 0.1,
    "lr": 1e-3,
    "max_steps": 1500,
    "log_every": 10,
    "checkpoint_every": 250,
    "sample_every": 0,
})
DEFAULTS["ema"]["decay"] = 0.0
DEFAULTS["val_batches"] = 1

#: (positive phrase, opposite phrase) per edited attribute, for the zero-shot validation.
OPPOSITES: tuple[tuple[str, str, str, float, float], ...] = (
    ("smile", "a smiling person", "a frowning person", 0.62, 0.3),
    ("mouth_open", "a person with an open mouth", "a person with a closed mouth", 0.65, 0.2),
    ("eye_open", "a person with open eyes", "a person with closed eyes", 0.65, 0.2),
    ("glasses", "a person with glasses", "a person without glasses", 0.5, 0.5),
    ("hair_lightness", "a person with blond hair", "a person with black hair", 0.7, 0.25),
    ("age", "an old person", "a young person", 0.7, 0.2),
)


def tokenizer(length: int = 16) -> Tokenizer:
    """The matcher's tokenizer: the captions' vocabulary and the attributes' example phrases."""
    return Tokenizer(D.vocabulary(), length, D.caption_attributes())


def to_unit(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float (N, 3, H, W) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div(255.0)


def degrade(x: torch.Tensor, gen: torch.Generator, blur: float, noise: float) -> torch.Tensor:
    """Random horizontal flips; with probability ``blur`` a Gaussian blur (sigma 0.3 .. 1.2
    pixels); Gaussian noise of standard deviation up to ``noise``. (N, 3, H, W) in [0, 1]."""
    n = len(x)
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    sig = 0.3 + 0.9 * torch.rand(n, generator=gen)
    r = torch.arange(-2, 3, dtype=torch.float32)
    k1 = torch.exp(-(r[None, :] ** 2) / (2 * sig[:, None] ** 2))
    k1 = k1 / k1.sum(1, keepdim=True)
    out = []
    use = (torch.rand(n, generator=gen) < blur).tolist()
    for i in range(n):
        if use[i]:
            k = (k1[i][:, None] * k1[i][None, :])[None, None].repeat(3, 1, 1, 1)
            out.append(F.conv2d(F.pad(x[i:i + 1], (2, 2, 2, 2), mode="replicate"), k, groups=3))
        else:
            out.append(x[i:i + 1])
    x = torch.cat(out)
    amp = noise * torch.rand(n, 1, 1, 1, generator=gen)
    return (x + amp * torch.randn(x.shape, generator=gen)).clamp(0.0, 1.0)


def contrastive_loss(img: torch.Tensor, txt: torch.Tensor, positives: torch.Tensor, tau: float) -> torch.Tensor:
    """Multi-positive contrastive loss of unit embeddings img (N, E), txt (M, E) with
    ``positives`` (N, M) bool (every row and column has at least one True): cross-entropy of
    the cosine / tau against the positives spread evenly, both directions, averaged."""
    logits = img @ txt.T / tau
    p = positives.float()
    i2t = -(F.log_softmax(logits, dim=1) * p / p.sum(1, keepdim=True)).sum(1).mean()
    t2i = -(F.log_softmax(logits, dim=0) * p / p.sum(0, keepdim=True)).sum(0).mean()
    return 0.5 * (i2t + t2i)


def zero_shot(model: Any, tok: Tokenizer, images: torch.Tensor, attributes: np.ndarray) -> dict[str, float]:
    """Per attribute of :data:`OPPOSITES`: the share of held-out faces clearly on one side whose
    true phrase scores above the opposite one; and their mean ``zero_shot``."""
    emb = model.encode_image(images)
    out = {}
    for name, pos, neg, hi, lo in OPPOSITES:
        t = model.encode_text(torch.from_numpy(tok([pos, neg])).to(images.device))
        s = (emb @ t.T).cpu().numpy()
        a = attributes[:, D.ATTRIBUTES.index(name)]
        sel_pos, sel_neg = a >= hi, a <= lo if name != "glasses" else a < lo
        right = np.concatenate([s[sel_pos, 0] > s[sel_pos, 1], s[sel_neg, 1] > s[sel_neg, 0]])
        out[f"zs_{name}"] = float(right.mean()) if len(right) else float("nan")
    out["zero_shot"] = float(np.nanmean([out[f"zs_{n}"] for n, *_ in OPPOSITES]))
    return out


def train(config: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """Run a training; returns :func:`training.harness.train_loop`'s result plus "model"."""
    if int(config["threads"]) > 0:
        torch.set_num_threads(int(config["threads"]))
    if config["kind"] not in ("matcher", "regressor"):
        raise ValueError(f"kind must be 'matcher' or 'regressor', got {config['kind']!r}")
    return H.run_distributed(_train, config, resume)


def _train(config: dict[str, Any], resume: bool, ctx: H.DistContext) -> dict[str, Any]:
    seed = int(config["seed"])
    H.seed_everything(seed)
    d, m = config["data"], config["model"]
    size = int(m["size"])
    data = D.make_faces(seed, int(d["count"]), size, d["cache"] or None)
    val = D.make_faces(int(d["val_seed"]), int(d["val_count"]), size, d["cache"] or None)
    val_x = to_unit(val.images).to(ctx.device)
    batch = H.process_batch(config, ctx)
    tok = tokenizer(int(m["length"]))
    matcher = config["kind"] == "matcher"
    if matcher:
        mc = full_config("edit_matcher", {**m, "vocab": len(tok.vocabulary) + 1, "vocabulary": tok.vocabulary,
                                          "attributes": tok.attributes})
        family, name, metric, mode = "edit_matcher", "edit_matcher", "zero_shot", "max"
        fields, val_fields = ("loss", "acc"), ("zero_shot", *[f"zs_{n}" for n, *_ in OPPOSITES])
    else:
        mc = full_config("edit_attributes", {"size": size, "base": m["base"], "cap": m["cap"],
                                             "attributes": list(D.ATTRIBUTES)})
        family, name, metric, mode = "edit_attributes", "edit_attributes", "mae", "min"
        fields, val_fields = ("loss", "mae"), ("mae", *[f"mae_{a}" for a in D.ATTRIBUTES])
    model = build_model(family, mc).to(ctx.device)
    opt = torch.optim.Adam(model.parameters(), lr=float(config["lr"]))
    updater = H.Updater({"net": opt}, ctx, config)
    net = ctx.wrap(model)

    def batches(step: int, gen: torch.Generator) -> tuple[torch.Tensor, ...]:
        idx = torch.randperm(len(data), generator=gen)[:batch].numpy()
        x = degrade(to_unit(data.images[idx]), gen, float(d["blur"]), float(d["noise"]))
        attrs = data.attributes[idx]
        if not matcher:
            return x, torch.from_numpy(attrs)
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen)))
        caps = [D.caption_for(a, rng, int(d["max_parts"])) for a in attrs]
        pos = np.stack([D.caption_matches(c, attrs) for c in caps], axis=1)  # (image, caption)
        return x, torch.from_numpy(tok([c.text for c in caps])), torch.from_numpy(pos)

    def step(s: int, b: tuple[torch.Tensor, ...]) -> dict[str, float]:
        def loss_fn(part: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
            if matcher:
                x, tokens, pos = part
                img, txt = model.encode_image(x), model.encode_text(tokens)
                loss = contrastive_loss(img, txt, pos, float(config["tau"]))
                acc = pos[torch.arange(len(x)), (img @ txt.T).argmax(1)].float().mean()
                return loss, {"loss": loss.detach(), "acc": acc}
            x, y = part
            pred = net(x)
            loss = F.mse_loss(pred, y)
            return loss, {"loss": loss.detach(), "mae": (pred - y).abs().mean().detach()}
        return {k: ctx.mean(v) for k, v in updater.update("net", b, loss_fn).items()}

    def validate() -> dict[str, float]:
        model.eval()
        try:
            if matcher:
                return zero_shot(model, tok, val_x, val.attributes)
            err = (model(val_x).cpu().numpy() - val.attributes).__abs__()
            per = {f"mae_{a}": float(err[:, i].mean()) for i, a in enumerate(D.ATTRIBUTES)}
            return {"mae": float(err.mean()), **per}
        finally:
            model.train()

    task = H.Task(
        name=name, modules={"model": model}, optimizers={"net": opt}, lr_keys={"net": "lr"}, updater=updater,
        batches=batches, step=step, fields=fields, plot_fields=fields, export_module=model,
        manifest=make_manifest(family, mc, task="edit"), validate=validate, metric=metric, mode=mode,
        val_fields=val_fields, data=H.data_manifest([], {**D.describe(), "count": len(data), "seed": seed}),
        result=lambda: {"model": model})
    return H.train_loop(task, config, resume, ctx)


def main(argv: Sequence[str] | None = None) -> int:
    return H.run_trainer(
        "Train the editing matcher (dual encoder) or the attribute regressor (SPEC S4).", DEFAULTS, train, argv,
        lambda r: f"trained {r['steps']} steps in {r['seconds']:.1f} s -> {r['out']} (validation {r['val']})",
    )


if __name__ == "__main__":
    sys.exit(main())
