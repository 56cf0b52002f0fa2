"""Attach the quality gate to a restoration model:
``python -m training.restore_gate RESTORE QUALITY -o OUT.safetensors [--low 45] [--high 55]``.

``RESTORE``: a restore checkpoint (``restore.safetensors`` with its ``.json``) or an exported
restore ONNX file (the generator's weights are read from its initializers, e.g. the shipped
``pyfill/models/pretrained/restore.onnx``); ``QUALITY``: a quality classifier checkpoint
(``python -m training.quality``). Writes a ``restore`` checkpoint with ``gate`` on, whose
forward pass rates the input with the classifier and scales the generator's correction by
clip((high - score) / (high - low), 0, 1) (see :class:`pyfill.models.restore.Restorer`); export
it with ``pyfill export``. A discriminator is not carried over (it plays no part at inference).

``--calibrate`` chooses ``low`` and ``high`` on calibration images (image files or folders, and
``--package`` scikit-image names; never the evaluation images): ``high`` is the lowest score of
any good input (each image clean and saved as JPEG at quality 90) less ``--margin``, so no good
calibration input is changed; ``low`` is the value below ``high`` that gives the largest mean
PSNR gain on the images degraded at the ``medium`` evaluation level (seeds 100 ..
100 + ``--seeds`` - 1, draws the evaluation's seeds 0 .. 3 do not share). :func:`calibrate`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pyfill.export import load_checkpoint, save_checkpoint
from pyfill.manifest import Manifest
from pyfill.models import build_model, make_manifest
from pyfill.models.restore import quality_score


def generator_state(path: str | Path) -> tuple[dict[str, torch.Tensor], Manifest]:
    """(the generator's state dict with ``generator.`` keys, the restore model's manifest) from a
    restore checkpoint or an exported restore ONNX file."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path))
        meta = {p.key: p.value for p in model.metadata_props}
        if "pyfill.manifest" not in meta:
            raise ValueError(f"{path}: not a pyfill model (no manifest in its metadata)")
        manifest = Manifest.from_json(meta["pyfill.manifest"])
        state = {i.name: torch.from_numpy(numpy_helper.to_array(i).astype("float32").copy())
                 for i in model.graph.initializer if i.name.startswith("generator.")}
    else:
        module, manifest = load_checkpoint(path)
        state = {k: v for k, v in module.state_dict().items() if k.startswith("generator.")}
    if manifest.family != "restore":
        raise ValueError(f"{path}: a '{manifest.family}' model, not a restore model")
    return state, manifest


def load_generator(net: torch.nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> None:
    """Load ``generator.``-prefixed weights (:func:`generator_state`) into ``net``'s generator;
    ValueError naming ``source`` when they are shaped for another generator."""
    try:
        net.generator.load_state_dict({k[len("generator."):]: v for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{source} has a generator of another shape than this model's settings "
                         f"({str(exc).splitlines()[0]})") from exc


def gated(restore: str | Path, quality: str | Path, low: float, high: float) -> tuple[torch.nn.Module, Manifest]:
    """The gated :class:`pyfill.models.restore.Restorer` and its manifest."""
    state, r_manifest = generator_state(restore)
    config = dict(r_manifest.config)
    q_module, q_manifest = load_checkpoint(quality)
    if q_manifest.family != "quality":
        raise ValueError(f"{quality}: a '{q_manifest.family}' checkpoint, not a quality classifier")
    config.update(gate=True, quality_base=q_manifest.config["base"], quality_layers=q_manifest.config["layers"],
                  gate_low=float(low), gate_high=float(high))
    net = build_model("restore", config)
    load_generator(net, state, restore)
    net.quality.load_state_dict(q_module.state_dict(), strict=True)
    manifest = make_manifest("restore", config)
    manifest.provenance = {"generator": {"source": Path(restore).name, **r_manifest.provenance},
                           "quality": {"source": Path(quality).name, **q_manifest.provenance},
                           "gate": {"low": float(low), "high": float(high)}}
    return net.eval(), manifest


def calibration_images(paths: Sequence[str], package: Sequence[str], max_side: int = 512) -> list[Any]:
    """uint8 (H, W, 3) images from files, folders (recursively) and scikit-image names, each
    shrunk (area) so that its longer side is at most ``max_side``."""
    import numpy as np
    from PIL import Image

    from training.data import load_image_file, package_image

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in {".jpg", ".jpeg", ".png", ".webp"})
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no such calibration image or folder: {p}")
    arrays = [load_image_file(f) for f in files] + [package_image(n) for n in package]
    if not arrays:
        raise ValueError("no calibration images given")
    out = []
    for a in arrays:
        img = Image.fromarray(np.rint(a * 255.0).astype(np.uint8))
        if max(img.size) > max_side:
            k = max_side / max(img.size)
            img = img.resize((max(1, round(img.width * k)), max(1, round(img.height * k))), Image.BOX)
        out.append(np.asarray(img))
    return out


def _padded(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Padded at the bottom and right to a multiple, as the Engine pads its inputs."""
    from pyfill.engine.processing import pad_bottom_right

    h, w = x.shape[-2:]
    return pad_bottom_right(x, -h % multiple, -w % multiple)


@torch.no_grad()
def calibrate(restore: str | Path, quality: str | Path, images: Sequence[Any], seeds: int = 4,
              margin: float = 1.0, level: str = "medium") -> dict[str, Any]:
    """Gate thresholds from calibration images (uint8 (H, W, 3) arrays); see the module doc.

    Returns {"low", "high", "good_scores", "degraded": [{"score", "gain_full"}], "gain": mean dB
    gain of the gated output at (low, high) over the degraded inputs, "gain_full": the same
    ungated}. The blend input + g (G(input) - input) is evaluated in closed form per image:
    MSE(g) = a + 2 g b + g^2 e with a = mean((x - c)^2), b = mean((x - c)(G(x) - x)),
    e = mean((G(x) - x)^2), c the clean image."""
    import io

    import numpy as np
    from PIL import Image

    from training.restore_data import level_pipeline

    net, manifest = gated(restore, quality, 0.0, 100.0)
    multiple = int(manifest.size.multiple_of)

    def tensor(img: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(img, np.float32)).permute(2, 0, 1)[None] / 255.0

    def score(x: torch.Tensor) -> float:
        return float(quality_score(torch.softmax(net.quality(_padded(x, multiple)).float(), dim=1))[0])

    good, rows = [], []
    for clean in images:
        buf = io.BytesIO()
        Image.fromarray(clean).save(buf, "JPEG", quality=90)
        jpeg = np.asarray(Image.open(buf).convert("RGB"))
        good += [score(tensor(clean)), score(tensor(jpeg))]
        c = tensor(clean)
        for seed in range(100, 100 + seeds):
            degraded, _ = level_pipeline(level, seed)(clean[None])
            x = tensor(degraded[0])
            h, w = x.shape[-2:]
            gx = net.generator(_padded(x, multiple))[..., :h, :w].clamp(0, 1)
            d, r = x - c, gx - x
            rows.append({"score": score(x), "a": float((d * d).mean()), "b": float((d * r).mean()),
                         "e": float((r * r).mean())})
    high = min(good) - margin

    def gain(row: dict[str, float], g: float) -> float:
        mse = max(row["a"] + 2 * g * row["b"] + g * g * row["e"], 1e-12)
        return 10.0 * float(np.log10(row["a"] / mse))

    def mean_gain(low: float) -> float:
        return float(np.mean([gain(r, min(max((high - r["score"]) / (high - low), 0.0), 1.0)) for r in rows]))

    candidates = [high - wdt for wdt in np.arange(0.5, high + 1e-9, 0.5)]
    low = max(candidates, key=mean_gain)
    return {"low": float(low), "high": float(high), "good_scores": good,
            "degraded": [{"score": r["score"], "gain_full": gain(r, 1.0)} for r in rows],
            "gain": mean_gain(low), "gain_full": float(np.mean([gain(r, 1.0) for r in rows]))}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Gate a restoration model by the quality classifier.")
    parser.add_argument("restore", help="restore checkpoint (.safetensors) or exported restore model (.onnx)")
    parser.add_argument("quality", help="quality classifier checkpoint (.safetensors)")
    parser.add_argument("-o", "--output", required=True, help="the gated checkpoint to write (.safetensors)")
    parser.add_argument("--low", type=float, default=45.0, help="score at or below which the full correction applies")
    parser.add_argument("--high", type=float, default=55.0, help="score at or above which the input is kept")
    parser.add_argument("--calibrate", nargs="*", default=None, metavar="IMAGE_OR_FOLDER",
                        help="choose --low / --high on these calibration images (not the evaluation images)")
    parser.add_argument("--package", nargs="*", default=[], help="scikit-image images to calibrate on as well")
    parser.add_argument("--seeds", type=int, default=4, help="degradation draws per calibration image")
    parser.add_argument("--margin", type=float, default=1.0, help="score margin below the lowest good input")
    parser.add_argument("--max-side", type=int, default=512, help="calibration images are shrunk to this side")
    args = parser.parse_args(argv)
    try:
        low, high = args.low, args.high
        if args.calibrate is not None:
            images = calibration_images(args.calibrate, args.package, args.max_side)
            result = calibrate(args.restore, args.quality, images, args.seeds, args.margin)
            low, high = result["low"], result["high"]
            print(f"calibrated on {len(images)} images: low {low:.1f}, high {high:.1f} (lowest good score "
                  f"{min(result['good_scores']):.1f}); mean gain on medium degradations {result['gain']:+.2f} dB "
                  f"gated, {result['gain_full']:+.2f} dB ungated")
        net, manifest = gated(args.restore, args.quality, low, high)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {save_checkpoint(net, manifest, args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
