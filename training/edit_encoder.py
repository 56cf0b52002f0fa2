"""Editing stage 2, the encoder (SPEC S4): ``python -m training.edit_encoder [--config FILE] [--set k=v]``.

The decoder (the EMA generator of stage 1, ``decoder`` = its ``edit_generator`` checkpoint) is
frozen; the encoder E (:class:`pyfill.models.edit.LatentEncoder`, aligned crop -> W+) learns

    loss4 = k_id * (1 - cos(R(x), R(decode(E(x))))) + k_pix * L1(x, decode(E(x)))

on rendered faces x (``k_id`` the seed's identity distance, ``k_pix`` its pixel term), where R
is the identity encoder the face swap ships (``face_id``, fed the 64 crop upsampled to the
ArcFace-128 frame and its centre 112 crop). ``k_latent`` > 0 adds, on a second half-batch of
images the decoder draws from known latents w (the mapping of other faces' parameter vectors),
``k_latent * mean((E(G(w)) - w)^2)``, which keeps E's output near the latents the decoder was
trained on. ``k_param`` > 0 adds ``k_param * mean((E(x) - w_x)^2)`` on the renders themselves,
w_x = the decoder's mapping of the render's own exact parameters (the latent the decoder was
taught to draw that face from), over the samples of the batch that are not mirrored (a mirrored
render has no known parameters). Both terms are regression targets the renderer gives for free;
``k_param`` makes E start from the decoder's own reconstruction of each face instead of
searching for it through the frozen decoder (0 for both = loss4 only).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pyfill.export import load_checkpoint
from pyfill.models import full_config, make_manifest
from pyfill.models.edit import LatentEncoder, StyleGenerator
from pyfill.models.swap import FaceIdEncoder
from training import edit_data as D
from training import harness as H
from training.edit_decoder import param_z
from training.matcher import to_unit

DEFAULTS: dict[str, Any] = H.with_harness_defaults({
    "seed": 0,
    "device": "auto",
    "amp": False,
    "workers": 0,
    "threads": 1,
    "out": "runs/edit/encoder",
    "decoder": "runs/edit/decoder/edit_generator.safetensors",
    "identity": "face_id",
    "model": {"size": 64, "w_dim": 128, "base": 16, "cap": 64, "hidden": 256},
    "data": {"count": 8000, "val_count": 256, "val_seed": 1, "batch": 16, "cache": "runs/edit/data"},
    "k_id": 1.0,
    "k_pix": 1.0,
    "k_latent": 0.1,
    "k_param": 0.0,
    "lr": 5e-4,
    "max_steps": 2000,
    "log_every": 10,
    "checkpoint_every": 200,
    "sample_every": 200,
})
DEFAULTS["ema"]["decay"] = 0.0
DEFAULTS["val_batches"] = 1

LOSS_FIELDS = ("loss", "id", "pix", "latent", "param")


class IdentityDistance(nn.Module):
    """R: aligned ``size`` crops (N, 3, size, size) in [0, 1] -> unit identity embeddings (N, 128)
    from the shipped ``face_id`` encoder (ArcFace-112 frame: the crop is resized to 128, whose
    centre 112 square is that frame). ``distance(a, b)`` = 1 - cos per pair (N,)."""

    def __init__(self, encoder: FaceIdEncoder) -> None:
        super().__init__()
        self.encoder = encoder
        H.set_frozen(self.encoder, True)
        self.encoder.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=(128, 128), mode="bilinear", align_corners=False)
        return self.encoder(x[:, :, 8:120, 8:120])

    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return 1.0 - (self(a) * self(b)).sum(dim=1)


def identity_network(model: str = "face_id") -> IdentityDistance:
    """The ``face_id`` identity encoder as a frozen torch module: a ``.safetensors`` checkpoint,
    or an ONNX file exported by pyfill (its weights are read from the graph's initializers)."""
    from pyfill.store import resolve_model

    path = resolve_model(model)
    if path.suffix == ".safetensors":
        module, manifest = load_checkpoint(path)
        if manifest.family != "face_id":
            raise ValueError(f"{path}: a face_id checkpoint is needed, got {manifest.family}")
        return IdentityDistance(module)
    import onnx
    from onnx import numpy_helper

    from pyfill.manifest import ONNX_METADATA_KEY, Manifest

    graph = onnx.load(str(path))
    meta = {p.key: p.value for p in graph.metadata_props}
    if ONNX_METADATA_KEY not in meta:
        raise ValueError(f"{path}: not a pyfill face_id export (no manifest in its metadata)")
    manifest = Manifest.from_json(meta[ONNX_METADATA_KEY])
    if manifest.family != "face_id":
        raise ValueError(f"{path}: a face_id model is needed, got {manifest.family}")
    encoder = FaceIdEncoder(**manifest.config)
    state = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.graph.initializer}
    encoder.load_state_dict({k: state[k] for k in encoder.state_dict()}, strict=True)
    return IdentityDistance(encoder)


def load_generator(path: str | Path) -> StyleGenerator:
    """The stage-1 generator (mapping + decoder, ``w_avg``) of an ``edit_generator`` checkpoint, frozen."""
    module, manifest = load_checkpoint(path)
    if manifest.family != "edit_generator":
        raise ValueError(f"{path}: an edit_generator checkpoint is needed, got {manifest.family}")
    H.set_frozen(module, True)
    return module.eval()


def train(config: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """Run a training; returns :func:`training.harness.train_loop`'s result plus "encoder"."""
    if int(config["threads"]) > 0:
        torch.set_num_threads(int(config["threads"]))
    return H.run_distributed(_train, config, resume)


def _train(config: dict[str, Any], resume: bool, ctx: H.DistContext) -> dict[str, Any]:
    seed = int(config["seed"])
    H.seed_everything(seed)
    d = config["data"]
    gen = load_generator(config["decoder"]).to(ctx.device)
    decoder = gen.decoder
    size = decoder.size
    if int(config["model"]["size"]) != size or int(config["model"]["w_dim"]) != decoder.w_dim:
        raise ValueError(f"model.size / model.w_dim must match the decoder's ({size}, {decoder.w_dim})")
    ident = identity_network(config["identity"]).to(ctx.device)
    data = D.make_faces(seed, int(d["count"]), size, d["cache"] or None)
    val = D.make_faces(int(d["val_seed"]), int(d["val_count"]), size, d["cache"] or None)
    val_x = to_unit(val.images).to(ctx.device)
    encoder = LatentEncoder(**config["model"]).to(ctx.device)
    encoder.w_avg.copy_(gen.w_avg)
    opt = torch.optim.Adam(encoder.parameters(), lr=float(config["lr"]))
    updater = H.Updater({"e": opt}, ctx, config)
    net = ctx.wrap(encoder)
    batch = H.process_batch(config, ctx)
    k_id, k_pix, k_lat = float(config["k_id"]), float(config["k_pix"]), float(config["k_latent"])
    k_par = float(config["k_param"])

    def batches(step: int, g: torch.Generator) -> tuple[torch.Tensor, ...]:
        idx = torch.randint(len(data), (batch,), generator=g).numpy()
        x = to_unit(data.images[idx])
        flip = torch.rand(batch, generator=g) < 0.5
        other = torch.randint(len(data), (batch // 2,), generator=g).numpy()
        return (torch.where(flip[:, None, None, None], x.flip(3), x), param_z(data.params[other]),
                param_z(data.params[idx]), flip)

    def loss4(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        y = decoder(w)
        ids = ident.distance(x, y).mean()
        pix = F.l1_loss(y, x)
        return k_id * ids + k_pix * pix, ids, pix

    def step(s: int, b: tuple[torch.Tensor, ...]) -> dict[str, float]:
        def loss_fn(part: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
            x, z, z_self, flip = part
            w = net(x)
            loss, ids, pix = loss4(x, w)
            par = torch.zeros((), device=x.device)
            keep = ~flip.to(x.device)
            if k_par > 0 and bool(keep.any()):
                with torch.no_grad():
                    target = gen.ws(z_self[keep])
                par = (w[keep] - target).pow(2).mean()
                loss = loss + k_par * par
            lat = torch.zeros((), device=x.device)
            if k_lat > 0 and len(z):
                with torch.no_grad():
                    ws = gen.ws(z)
                    synth = decoder(ws)
                lat = (net(synth) - ws).pow(2).mean()
                loss = loss + k_lat * lat
            return loss, {"loss": loss.detach(), "id": ids.detach(), "pix": pix.detach(), "latent": lat.detach(),
                          "param": par.detach()}
        return {k: ctx.mean(v) for k, v in updater.update("e", b, loss_fn).items()}

    def validate() -> dict[str, float]:
        encoder.eval()
        try:
            y = decoder(encoder(val_x))
            return {"id_cos": float(1.0 - ident.distance(val_x, y).mean()), "l1": float(F.l1_loss(y, val_x)),
                    "psnr": float(H.psnr(y, val_x).mean())}
        finally:
            encoder.train()

    def sample(_: Any, path: Path) -> None:
        encoder.eval()
        x = val_x[:8]
        y = decoder(encoder(x))
        encoder.train()
        H.save_image_grid([list(x.permute(0, 2, 3, 1).cpu().numpy()), list(y.permute(0, 2, 3, 1).cpu().numpy())], path)

    mc = full_config("edit_encoder", config["model"])
    task = H.Task(
        name="edit_encoder", modules={"encoder": encoder}, optimizers={"e": opt}, lr_keys={"e": "lr"}, updater=updater,
        batches=batches, step=step, fields=LOSS_FIELDS, plot_fields=LOSS_FIELDS, export_module=encoder,
        manifest=make_manifest("edit_encoder", mc, task="edit"), validate=validate, metric="id_cos", mode="max",
        val_fields=("id_cos", "l1", "psnr"), sample=sample,
        data=H.data_manifest([], {**D.describe(), "count": len(data), "seed": seed, "decoder": str(config["decoder"])}),
        result=lambda: {"encoder": encoder})
    return H.train_loop(task, config, resume, ctx)


def main(argv: Sequence[str] | None = None) -> int:
    return H.run_trainer(
        "Train the editing encoder (image -> W+) against the frozen decoder (SPEC S4).", DEFAULTS, train, argv,
        lambda r: f"trained {r['steps']} steps in {r['seconds']:.1f} s -> {r['out']} (validation {r['val']})",
    )


if __name__ == "__main__":
    sys.exit(main())
