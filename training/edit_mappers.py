"""Editing stage 3, the editing models (SPEC S4): ``python -m training.edit_mappers --set target=NAME``.

Encoder and decoder frozen. For faces x with latents w = E(x) (W+), an editing model M gives
dw = M(w) (the conditional model: dw = M(w, T(t)) for a text embedding T(t)), and

    loss1 = 1 - cos(I(decode(w + dw)), T(text))       (the matcher's image and text embeddings)
    loss2 = ||dw||                                     (L2 norm of the whole W+ offset, per face)
    loss3 = 1 - cos(R(decode(w)), R(decode(w + dw)))   (R: the face_id identity encoder)
    loss  = loss1 + l1 * loss2 + l2 * loss3

each averaged over the batch. ``target``: one of :data:`training.edit_data.EDIT_TARGETS`
(its text; ``text`` overrides it), ``conditional`` (each face gets a random text of
:data:`CONDITIONAL_TEXTS`), or ``all`` (every target then the conditional model, each in
``out/<name>``, resuming or skipping finished ones). ``matcher``: the shipped matcher's
checkpoint, or ``clip:MODEL[:CHECKPOINT]`` for an open_clip model on disk
(:func:`pyfill.models.edit_matcher.load_matcher`).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pyfill.export import load_checkpoint
from pyfill.models import full_config, make_manifest
from pyfill.models.edit import LatentMapper
from pyfill.models.edit_matcher import load_matcher
from training import edit_data as D
from training import harness as H
from training.edit_encoder import identity_network, load_generator
from training.matcher import to_unit

DEFAULTS: dict[str, Any] = H.with_harness_defaults({
    "seed": 0,
    "device": "auto",
    "amp": False,
    "workers": 0,
    "threads": 1,
    "out": "runs/edit/mappers",
    "target": "smile",
    "text": "",
    "decoder": "runs/edit/decoder/edit_generator.safetensors",
    "encoder": "runs/edit/encoder/edit_encoder.safetensors",
    "matcher": "runs/edit/matcher/edit_matcher.safetensors",
    "identity": "face_id",
    "model": {"hidden": 64, "blocks": 1},
    "data": {"count": 8000, "val_count": 32, "val_seed": 1, "batch": 8, "cache": "runs/edit/data"},
    "l1": 0.02,
    "l2": 0.5,
    "lr": 5e-4,
    "max_steps": 300,
    "cond_steps": 600,
    "log_every": 10,
    "checkpoint_every": 100,
    "sample_every": 100,
})
DEFAULTS["ema"]["decay"] = 0.0
DEFAULTS["val_batches"] = 1

LOSS_FIELDS = ("loss", "loss1", "loss2", "loss3")
#: texts the conditional model is trained on (the six targets and their opposites).
CONDITIONAL_TEXTS = tuple(t for t, *_ in D.EDIT_TARGETS.values()) + (
    "a frowning face", "a person with a closed mouth", "a person with open eyes", "a person without glasses",
    "a person with black hair", "a person with red hair", "a young person")


def loss1(image_emb: torch.Tensor, text_emb: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of 1 - cos between image embeddings (N, E) and text embeddings
    ((N, E), or (1, E) for one text); neither needs to be unit length."""
    return (1.0 - torch.nn.functional.cosine_similarity(image_emb, text_emb.expand_as(image_emb), dim=1)).mean()


def loss2(dw: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the L2 norm of each face's whole offset dw (N, num_ws, w_dim)."""
    return dw.flatten(1).norm(dim=1).mean()


def loss3(emb_before: torch.Tensor, emb_after: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the identity distance 1 - cos between identity embeddings (N, D)."""
    return (1.0 - torch.nn.functional.cosine_similarity(emb_before, emb_after, dim=1)).mean()


def edit_loss(l_1: torch.Tensor, l_2: torch.Tensor, l_3: torch.Tensor, lam1: float, lam2: float) -> torch.Tensor:
    """The seed's total: loss1 + l1 * loss2 + l2 * loss3."""
    return l_1 + lam1 * l_2 + lam2 * l_3


def train(config: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """Train one editing model (``target``), or all of them (``target=all``: returns
    {"out", "runs": {name: result}})."""
    if int(config["threads"]) > 0:
        torch.set_num_threads(int(config["threads"]))
    if config["target"] == "all":
        runs = {}
        for name in [*D.EDIT_TARGETS, "conditional"]:
            c = copy.deepcopy(config)
            c["target"], c["text"], c["out"] = name, "", str(Path(config["out"]) / name)
            if name == "conditional":
                c["max_steps"] = int(config["cond_steps"])
            done = H.latest_checkpoint(c["out"])
            if done is not None and H.weights_step(done / "state.safetensors") == int(c["max_steps"]):
                continue
            runs[name] = H.run_distributed(_train, c, done is not None)
        return {"out": config["out"], "runs": runs, "steps": sum(r["steps"] for r in runs.values()),
                "seconds": sum(r["seconds"] for r in runs.values())}
    return H.run_distributed(_train, config, resume)


def _train(config: dict[str, Any], resume: bool, ctx: H.DistContext) -> dict[str, Any]:
    seed = int(config["seed"])
    H.seed_everything(seed)
    target = str(config["target"])
    conditional = target == "conditional"
    if not conditional and target not in D.EDIT_TARGETS:
        raise ValueError(f"target must be one of {[*D.EDIT_TARGETS, 'conditional', 'all']}, got {target!r}")
    text = str(config["text"]) or ("" if conditional else D.EDIT_TARGETS[target][0])
    decoder = load_generator(config["decoder"]).decoder.to(ctx.device)
    encoder, em = load_checkpoint(config["encoder"])
    if em.family != "edit_encoder":
        raise ValueError(f"{config['encoder']}: an edit_encoder checkpoint is needed, got {em.family}")
    encoder = encoder.to(ctx.device).eval()
    H.set_frozen(encoder, True)
    matcher = load_matcher(config["matcher"]).to(ctx.device)
    ident = identity_network(config["identity"]).to(ctx.device)
    d = config["data"]
    data = D.make_faces(seed, int(d["count"]), decoder.size, d["cache"] or None)
    val = D.make_faces(int(d["val_seed"]), int(d["val_count"]), decoder.size, d["cache"] or None)
    val_x = to_unit(val.images).to(ctx.device)
    texts = list(CONDITIONAL_TEXTS) if conditional else [text]
    with torch.no_grad():
        text_emb = matcher.encode_text(matcher.tokenize(texts)).float().to(ctx.device)
    cond = int(text_emb.shape[1]) if conditional else 0
    mc = full_config("edit_mapper", {"num_ws": decoder.num_ws, "w_dim": decoder.w_dim, **config["model"],
                                     "cond": cond, "text": text, "vocabulary": texts if conditional else []})
    mapper = LatentMapper(**{k: mc[k] for k in ("num_ws", "w_dim", "hidden", "blocks", "cond")}).to(ctx.device)
    opt = torch.optim.Adam(mapper.parameters(), lr=float(config["lr"]))
    updater = H.Updater({"m": opt}, ctx, config)
    net = ctx.wrap(mapper)
    batch = H.process_batch(config, ctx)
    lam1, lam2 = float(config["l1"]), float(config["l2"])

    def batches(step: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(data), (batch,), generator=g).numpy()
        return to_unit(data.images[idx]), torch.randint(len(texts), (batch,), generator=g)

    def losses(x: torch.Tensor, which: torch.Tensor, model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
        with torch.no_grad():
            w = encoder(x)
            before = ident(decoder(w))
        t = text_emb[which]
        dw = model(w, t) if conditional else model(w)
        edited = decoder(w + dw)
        l_1 = loss1(matcher.encode_image(edited), t)
        l_2 = loss2(dw)
        l_3 = loss3(before, ident(edited))
        return edit_loss(l_1, l_2, l_3, lam1, lam2), l_1, l_2, l_3

    def step(s: int, b: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        def loss_fn(part: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
            total, l_1, l_2, l_3 = losses(*part, net)
            return total, {"loss": total.detach(), "loss1": l_1.detach(), "loss2": l_2.detach(), "loss3": l_3.detach()}
        return {k: ctx.mean(v) for k, v in updater.update("m", b, loss_fn).items()}

    val_which = torch.arange(len(val_x)) % len(texts)

    def validate() -> dict[str, float]:
        total, l_1, l_2, l_3 = losses(val_x, val_which, mapper)
        return {"loss": float(total), "loss1": float(l_1), "loss2": float(l_2), "loss3": float(l_3)}

    def sample(_: Any, path: Path) -> None:
        x = val_x[:6]
        w = encoder(x)
        which = val_which[:6]
        dw = mapper(w, text_emb[which]) if conditional else mapper(w)
        rows = [list(t.permute(0, 2, 3, 1).cpu().numpy()) for t in (x, decoder(w), decoder(w + dw))]
        H.save_image_grid(rows, path)

    task = H.Task(
        name="edit_mapper", modules={"mapper": mapper}, optimizers={"m": opt}, lr_keys={"m": "lr"}, updater=updater,
        batches=batches, step=step, fields=LOSS_FIELDS, plot_fields=LOSS_FIELDS, export_module=mapper,
        manifest=make_manifest("edit_mapper", mc, task="edit"), validate=validate, metric="loss", mode="min",
        val_fields=LOSS_FIELDS, sample=sample,
        data=H.data_manifest([], {**D.describe(), "count": len(data), "seed": seed, "texts": texts,
                                  "matcher": str(config["matcher"])}),
        result=lambda: {"mapper": mapper, "text_embedding": text_emb})
    return H.train_loop(task, config, resume, ctx)


def main(argv: Sequence[str] | None = None) -> int:
    return H.run_trainer(
        "Train the latent editing models (per text, or conditional) with the encoder and decoder frozen (SPEC S4).",
        DEFAULTS, train, argv, lambda r: f"trained {r['steps']} steps in {r['seconds']:.1f} s -> {r['out']}",
    )


if __name__ == "__main__":
    sys.exit(main())
