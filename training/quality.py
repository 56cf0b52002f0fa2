"""The quality classifier for data curation (SPEC S3): ``python -m training.quality [--config FILE]
[--set k=v]``.

CNN features -> FC -> softmax over poor / medium / good, trained with cross-entropy on random
crops. Two sources of labels (``data.mode``):

``labelled``: ``data.labelled`` is a folder with one sub-folder per class (``poor``, ``medium``,
  ``good``); each batch draws classes uniformly, then an image of that class.
``self``: no manual labels. Clean images (``data.folders`` / ``data.package_images``) are degraded
  at a random strength t in [0, 1] (:func:`training.restore_data.strength_overrides`); the label is
  the class of the quality 100 (1 - t) on the 0-100 scale: poor below 30 (t > 0.7), medium from 30
  to 60 (0.4 < t <= 0.7), good from 60 (t <= 0.4). A share ``data.clean_share`` of the crops is
  left clean (quality 100, good). ``data.max_strength`` s < 1 degrades at strength s t while
  labelling by t, which narrows every class towards the clean end: with s = 0.4 "good" means
  strength <= 0.16 (noise sigma <= 4.8, JPEG quality >= 92), the classifier that gates restoration.

``measured``: no manual labels either, and the label is what the degradation did: clean crops
  (share ``data.clean_share``), crops saved as JPEG at a quality drawn from 80-100 (share
  ``data.jpeg_share`` of the rest), and crops degraded by the seed preset at a random level of
  :data:`training.restore_data.LEVELS`; the class is that of the crop's PSNR against its clean
  version: good from ``data.psnr_bounds[1]`` dB, medium from ``data.psnr_bounds[0]`` dB, poor
  below. This classifier gates restoration (an input rated good has little to restore).

Writes ``quality.safetensors`` / ``quality.json`` (a ``quality`` family checkpoint), the
resumable state, ``log.csv`` and ``losses.png`` to ``out``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from pyfill.degrade import Pipeline
from pyfill.export import load_checkpoint
from pyfill.models import build_model, make_manifest
from pyfill.models.restore import QUALITY_CLASSES, QualityNet, quality_class, quality_score
from training import harness as H
from training.data import ImageSet, shrink
from training.restore_data import degrade, quality_of_strength, strength_overrides

DEFAULTS: dict[str, Any] = H.with_harness_defaults({
    "seed": 0,
    "device": "auto",
    "threads": 0,
    "out": "runs/quality",
    "model": {"base": 16, "layers": 4},
    "data": {"mode": "self", "labelled": "", "folders": [],
             "package_images": ["astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
                                "stereo_motorcycle"],
             "max_side": 512, "crop": 128, "batch": 16, "clean_share": 0.2, "max_strength": 1.0,
             "jpeg_share": 0.3, "psnr_bounds": [27.0, 33.0]},
    "lr": 1e-3,
    "max_steps": 600,
    "log_every": 1,
    "checkpoint_every": 200,
})


def class_index(score: float) -> int:
    """A 0-100 quality -> the index of its class in :data:`QUALITY_CLASSES`."""
    return QUALITY_CLASSES.index(quality_class(score))


class SelfLabelled:
    """Batches of clean crops degraded at random strengths, labelled by :func:`quality_of_strength`."""

    def __init__(self, images: ImageSet, clean_share: float, max_strength: float = 1.0) -> None:
        if not 0.0 <= clean_share <= 1.0:
            raise ValueError(f"data.clean_share must be in [0, 1], got {clean_share}")
        if not 0.0 < max_strength <= 1.0:
            raise ValueError(f"data.max_strength must be in (0, 1], got {max_strength}")
        self.images, self.clean_share, self.max_strength = images, clean_share, max_strength

    def batch(self, n: int, crop: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (images (n, 3, crop, crop) float32 in [0, 1], labels (n,) int64)."""
        clean = self.images.random_crops(n, crop, gen)
        out, labels = clean.clone(), torch.empty(n, dtype=torch.int64)
        for i in range(n):
            if float(torch.rand((), generator=gen)) < self.clean_share:
                labels[i] = class_index(100.0)
                continue
            t = float(torch.rand((), generator=gen))
            seed = int(torch.randint(2**62, (1,), generator=gen))
            out[i] = degrade(Pipeline("seed", seed=seed, **strength_overrides(t * self.max_strength)), clean[i : i + 1])[0]
            labels[i] = class_index(quality_of_strength(t))
        return out, labels

    def manifest(self) -> dict[str, Any]:
        return {**self.images.manifest(), "mode": "self", "clean_share": self.clean_share,
                "max_strength": self.max_strength}


class Measured:
    """Batches labelled by the PSNR of each crop's degradation (see the module docstring)."""

    def __init__(self, images: ImageSet, clean_share: float, jpeg_share: float, bounds: Sequence[float]) -> None:
        for name, share in (("clean_share", clean_share), ("jpeg_share", jpeg_share)):
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"data.{name} must be in [0, 1], got {share}")
        if len(bounds) != 2 or not bounds[0] < bounds[1]:
            raise ValueError(f"data.psnr_bounds must be two increasing numbers, got {bounds}")
        self.images, self.clean_share, self.jpeg_share = images, clean_share, jpeg_share
        self.bounds = (float(bounds[0]), float(bounds[1]))

    def label(self, psnr: float) -> int:
        """A PSNR in dB -> the class index: poor, medium or good."""
        return sum(psnr >= b for b in self.bounds)

    def batch(self, n: int, crop: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (images (n, 3, crop, crop) float32 in [0, 1], labels (n,) int64)."""
        import io

        from PIL import Image

        from training.restore_data import LEVELS, level_pipeline

        clean = self.images.random_crops(n, crop, gen)
        out, labels = clean.clone(), torch.empty(n, dtype=torch.int64)
        for i in range(n):
            u = float(torch.rand((), generator=gen))
            if u < self.clean_share:
                labels[i] = QUALITY_CLASSES.index("good")
                continue
            if float(torch.rand((), generator=gen)) < self.jpeg_share:
                q = int(torch.randint(80, 101, (1,), generator=gen))
                buf = io.BytesIO()
                img8 = (clean[i].permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)
                Image.fromarray(img8).save(buf, "JPEG", quality=q)
                out[i] = torch.from_numpy(np.asarray(Image.open(buf), np.float32) / 255.0).permute(2, 0, 1)
            else:
                level = sorted(LEVELS)[int(torch.randint(len(LEVELS), (1,), generator=gen))]
                seed = int(torch.randint(2**62, (1,), generator=gen))
                out[i] = degrade(level_pipeline(level, seed), clean[i : i + 1])[0]
            mse = float(((out[i] - clean[i]) ** 2).mean())
            labels[i] = self.label(10.0 * np.log10(1.0 / max(mse, 1e-10)))
        return out, labels

    def manifest(self) -> dict[str, Any]:
        return {**self.images.manifest(), "mode": "measured", "clean_share": self.clean_share,
                "jpeg_share": self.jpeg_share, "psnr_bounds": list(self.bounds)}


class Labelled:
    """Batches from a folder with one sub-folder per class (``poor``, ``medium``, ``good``)."""

    def __init__(self, root: str | os.PathLike[str], max_side: int, crop: int) -> None:
        root = Path(root)
        missing = [c for c in QUALITY_CLASSES if not (root / c).is_dir()]
        if missing:
            raise FileNotFoundError(f"{root}: a labelled folder needs the sub-folders {list(QUALITY_CLASSES)}; "
                                    f"missing {missing}")
        self.sets = [ImageSet([root / c], (), max_side, crop) for c in QUALITY_CLASSES]
        self.skipped = [s for image_set in self.sets for s in image_set.skipped]

    def batch(self, n: int, crop: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (images (n, 3, crop, crop) float32 in [0, 1], labels (n,) int64); classes drawn uniformly."""
        labels = torch.randint(len(QUALITY_CLASSES), (n,), generator=gen)
        images = torch.cat([self.sets[int(c)].random_crops(1, crop, gen) for c in labels])
        return images, labels

    def manifest(self) -> dict[str, Any]:
        files = [(f"{c}/{name}", size) for c, image_set in zip(QUALITY_CLASSES, self.sets) for name, size in image_set.files]
        return H.data_manifest(files, {"mode": "labelled", "skipped": len(self.skipped)})


def make_source(config: dict[str, Any]) -> SelfLabelled | Labelled | Measured:
    data = config["data"]
    if data["mode"] == "labelled":
        if not data["labelled"]:
            raise ValueError("data.mode 'labelled' needs data.labelled: a folder with poor/medium/good sub-folders")
        return Labelled(data["labelled"], int(data["max_side"]), int(data["crop"]))
    if data["mode"] == "self":
        images = ImageSet(data["folders"], data["package_images"], int(data["max_side"]), int(data["crop"]))
        return SelfLabelled(images, float(data["clean_share"]), float(data["max_strength"]))
    if data["mode"] == "measured":
        images = ImageSet(data["folders"], data["package_images"], int(data["max_side"]), int(data["crop"]))
        return Measured(images, float(data["clean_share"]), float(data["jpeg_share"]), data["psnr_bounds"])
    raise ValueError(f"data.mode must be 'self', 'labelled' or 'measured', got {data['mode']!r}")


def train(config: dict[str, Any], resume: bool = False) -> dict[str, Any]:
    """Train the classifier; returns :func:`training.harness.train_loop`'s result plus
    "accuracy" (over the last 50 batches, measured before each step's update) and "model".
    Validation: accuracy and cross-entropy on fixed batches (the task's metric: accuracy)."""
    if int(config["threads"]) > 0:
        torch.set_num_threads(int(config["threads"]))
    return H.run_distributed(_train, config, resume)


def _train(config: dict[str, Any], resume: bool, ctx: H.DistContext) -> dict[str, Any]:
    seed = int(config["seed"])
    H.seed_everything(seed)
    net = build_model("quality", config["model"]).to(ctx.device)
    source = make_source(config)
    model = ctx.wrap(net)
    opt = torch.optim.Adam(net.parameters(), lr=config["lr"])
    updater = H.Updater({"opt": opt}, ctx, config)
    batch, crop = H.process_batch(config, ctx), int(config["data"]["crop"])
    recent: list[float] = []

    def step(index: int, data: tuple[torch.Tensor, torch.Tensor]) -> dict[str, float]:
        def loss_fn(part: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
            images, labels = part
            logits = model(images).float()
            loss = F.cross_entropy(logits, labels)
            return loss, {"loss": loss.detach(), "accuracy": (logits.detach().argmax(1) == labels).float().mean()}

        logs = {k: ctx.mean(v) for k, v in updater.update("opt", data, loss_fn).items()}
        recent[:] = (recent + [logs["accuracy"]])[-50:]
        return logs

    def validate() -> dict[str, float]:
        correct, total, loss = 0.0, 0, 0.0
        for k in range(int(config["val_batches"])):
            images, labels = source.batch(batch, crop, H.validation_generator(seed, k))
            logits = net(images.to(ctx.device)).float().cpu()
            correct += float((logits.argmax(1) == labels).sum())
            loss += float(F.cross_entropy(logits, labels, reduction="sum"))
            total += len(labels)
        return {"accuracy": correct / total, "loss": loss / total}

    task = H.Task(
        name="quality", modules={"model": net}, optimizers={"opt": opt}, lr_keys={"opt": "lr"}, updater=updater,
        batches=lambda index, gen: source.batch(batch, crop, gen), step=step, fields=("loss", "accuracy"),
        plot_fields=("loss",), export_module=net, manifest=make_manifest("quality", config["model"]),
        validate=validate, metric="accuracy", val_fields=("accuracy", "loss"), data=source.manifest(),
        result=lambda: {"accuracy": float(np.mean(recent)) if recent else float("nan"), "model": net})
    return H.train_loop(task, config, resume, ctx)


def load_classifier(path: str | os.PathLike[str]) -> QualityNet:
    """A trained classifier from its checkpoint (``quality.safetensors`` with its ``.json``)."""
    module, manifest = load_checkpoint(path)
    if manifest.family != "quality":
        raise ValueError(f"{path}: a '{manifest.family}' checkpoint, not a quality classifier")
    return module


def score_image(net: QualityNet, image: np.ndarray, max_side: int = 512) -> tuple[float, np.ndarray]:
    """Quality of one image: float32 (H, W, 3) in [0, 1] -> (score on the 0-100 scale, class
    probabilities (3,) for poor / medium / good). The image is shrunk (area filter) to at most
    ``max_side`` like the training images and cropped to a multiple of the network's stride."""
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    img = shrink(image.astype(np.float32), max_side)
    m = net.stride
    h, w = (img.shape[0] // m) * m, (img.shape[1] // m) * m
    if h == 0 or w == 0:
        raise ValueError(f"image of {image.shape[0]} x {image.shape[1]} is too small to score")
    x = torch.from_numpy(np.ascontiguousarray(img[:h, :w].transpose(2, 0, 1)))[None]
    with torch.no_grad():
        probs = torch.softmax(net.eval()(x), dim=1)
    return float(quality_score(probs)[0]), probs[0].numpy()


def main(argv: Sequence[str] | None = None) -> int:
    return H.run_trainer(
        "Train the quality classifier for restoration data curation (SPEC S3).", DEFAULTS, train, argv,
        lambda r: f"trained {r['steps']} steps in {r['seconds']:.1f} s (recent batch accuracy {r['accuracy']:.2f}) -> {r['out']}",
    )


if __name__ == "__main__":
    sys.exit(main())
