"""Helpers of benchmarks/gpu_check.sh (standard library and NumPy only, so that they run before
anything else is installed):

    python benchmarks/gpu_check.py ensure MODULE=PACKAGE ...   # pip-install what does not import
    python benchmarks/gpu_check.py ensure-project              # the same for pyproject's dependencies
    python benchmarks/gpu_check.py index-reachable             # exit 0 when pip's index answers
    python benchmarks/gpu_check.py kernels [--host]             # every CUDA kernel once, small
    python benchmarks/gpu_check.py onnxruntime-cuda OUT.json    # restore model, CUDA provider vs CPU
    python benchmarks/gpu_check.py summary --work DIR --out DIR --dry-run 0|1 --seconds N

``kernels`` is the program compute-sanitizer runs: it calls each CUDA binding of pyfill._C on
small images in device memory from cuda-python (no torch, so the sanitizer has little else to
watch) and compares every result with the C++ kernel's, bit for bit. ``--host`` runs only the
C++ side, to rehearse the script where there is no GPU.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

# ---- ensure ---------------------------------------------------------------------------------


def ensure(pairs: list[str]) -> int:
    missing = []
    for pair in pairs:
        module, _, package = pair.partition("=")
        try:
            importlib.import_module(module)
        except Exception:
            missing.append(package or module)
    if not missing:
        print("all present:", ", ".join(p.partition("=")[0] for p in pairs))
        return 0
    print("installing:", " ".join(missing))
    return subprocess.call([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *missing])


# Distributions whose import name differs from their name.
_MODULES = {"pillow": "PIL", "opencv-python-headless": "cv2", "scikit-build-core": "scikit_build_core",
            "pytest-benchmark": "pytest_benchmark"}


def project_dependencies() -> list[str]:
    """MODULE=PACKAGE pairs of the project's runtime dependencies (pyproject.toml)."""
    import re

    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M)
    names = re.findall(r'"([A-Za-z0-9_.-]+)', block.group(1)) if block else []
    return [f"{_MODULES.get(n.lower(), n.replace('-', '_'))}={n}" for n in names]


def index_reachable() -> int:
    """Whether pip's package index answers within a few seconds (pip itself retries for minutes
    on a machine without network)."""
    import urllib.request

    url = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"], capture_output=True,
                         text=True).stdout.strip() or "https://pypi.org/simple"
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/pip/", timeout=8) as reply:
            print(f"package index {url}: HTTP {reply.status}")
            return 0
    except Exception as exc:
        print(f"package index {url} not reachable: {exc}")
        return 1


# ---- kernels ----------------------------------------------------------------------------------


def _images(b: int = 2, h: int = 37, w: int = 45):
    import numpy as np

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w * 200 + 20, yy / h * 180 + 40, (xx + yy) / (h + w) * 150 + 60], -1)
    return np.clip(base[None] + rng.normal(0, 25, (b, h, w, 3)), 0, 255).astype(np.uint8)


def kernels(host_only: bool) -> int:
    import numpy as np

    from pyfill import ops
    from pyfill._core import _C

    u8 = _images()
    f32 = (u8.astype(np.float32) / 255).copy()
    seeds, streams = np.full(2, 7, np.uint64), np.arange(2, dtype=np.uint32)
    k1 = ops.gaussian_kernel(7, 1.5)
    k2 = ops.motion_kernel(9.0, 30.0)
    cases = {  # name: (C++ call, CUDA binding name, CUDA extra args, output shape)
        "sep_filter": (lambda a: _C.degrade_sep_filter(a, k1, k1), "sep_filter", (k1, k1), None),
        "filter2d": (lambda a: _C.degrade_filter2d(a, k2), "filter2d", (k2,), None),
        "resize_bicubic": (lambda a: _C.degrade_resize(a, 29, 51, 2), "resize", (29, 51, 2), (29, 51)),
        "resize_area": (lambda a: _C.degrade_resize(a, 19, 20, 3), "resize", (19, 20, 3), (19, 20)),
        "gaussian_noise": (lambda a: _C.degrade_gaussian_noise(a, 12.0, 1.0, False, seeds, streams),
                           "gaussian_noise", (12.0, 1.0, False, seeds, streams), None),
        "poisson_noise": (lambda a: _C.degrade_poisson_noise(a, 1.5, True, seeds, streams),
                          "poisson_noise", (1.5, True, seeds, streams), None),
        "salt_pepper": (lambda a: _C.degrade_salt_pepper(a, 0.05, seeds, streams), "salt_pepper",
                        (0.05, seeds, streams), None),
        "jpeg_420": (lambda a: _C.degrade_jpeg(a, 55, True), "jpeg", (55, True), None),
        "jpeg_444": (lambda a: _C.degrade_jpeg(a, 90, False), "jpeg", (90, False), None),
    }
    failures = 0
    if host_only:
        for name, (cpu, *_rest) in cases.items():
            for img in (u8, f32):
                out = cpu(img)
                print(f"{name} {img.dtype}: C++ ran, output {out.shape}")
        print("host run only: no GPU")
        return 0
    from cuda.bindings import runtime as rt

    def ok(result):
        err = result[0]
        if int(err) != 0:
            raise RuntimeError(f"CUDA error {err}")
        return result[1] if len(result) > 1 else None

    def upload(a):
        ptr = ok(rt.cudaMalloc(max(1, a.nbytes)))
        ok(rt.cudaMemcpy(ptr, a.ctypes.data, a.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice))
        return ptr

    for name, (cpu, binding, extra, out_hw) in cases.items():
        for img in (u8, f32):
            want = cpu(img)
            src = upload(img)
            dst = ok(rt.cudaMalloc(want.nbytes))
            b, h, w, c = img.shape
            getattr(_C, f"degrade_cuda_{binding}")(int(src), int(dst), b, h, w, c, img.dtype == np.uint8, *extra, 0, 0)
            ok(rt.cudaDeviceSynchronize())
            got = np.empty_like(want)
            ok(rt.cudaMemcpy(got.ctypes.data, dst, got.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost))
            ok(rt.cudaFree(src))
            ok(rt.cudaFree(dst))
            same = np.array_equal(got, want)
            failures += not same
            diff = float(np.abs(got.astype(np.float64) - want).max())
            print(f"{name} {img.dtype}: CUDA {'==' if same else '!='} C++ (max diff {diff:g})")
    strokes = np.zeros((2, 40, 52, 3), np.uint8)
    strokes[:, 5:9, 3:30] = (200, 10, 30)
    strokes[1, 20:35, 40:44] = (5, 250, 90)
    want = _C.stroke_grid_cpu(strokes, None, 4, 5)
    src = upload(strokes)
    out = ok(rt.cudaMalloc(want.nbytes))
    labels = ok(rt.cudaMalloc(2 * 40 * 52 * 4))
    boxes = ok(rt.cudaMalloc(4 * 2 * 4 * 5 * 4))
    _C.stroke_grid_cuda(int(src), False, 0, int(out), int(labels), int(boxes), 2, 40, 52, 4, 5, 0, 0)
    ok(rt.cudaDeviceSynchronize())
    got = np.empty_like(want)
    ok(rt.cudaMemcpy(got.ctypes.data, out, got.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost))
    for ptr in (src, out, labels, boxes):
        ok(rt.cudaFree(ptr))
    same = np.allclose(got, want, atol=1e-6)
    failures += not same
    print(f"stroke_grid: CUDA {'matches' if same else 'differs from'} C++")
    print(f"{failures} mismatches")
    return 1 if failures else 0


# ---- onnxruntime CUDA provider --------------------------------------------------------------


def onnxruntime_cuda(out: str) -> int:
    import numpy as np

    from pyfill.engine import Engine

    x = np.random.default_rng(0).uniform(0, 1, (512, 512, 3)).astype(np.float32)
    report: dict[str, Any] = {}
    for device in ("cpu", "cuda"):
        engine = Engine.from_pretrained("restore", backend="onnxruntime", device=device)
        y = engine(x)
        t0 = time.perf_counter()
        for _ in range(5):
            y = engine(x)
        report[device] = {"mean_s": (time.perf_counter() - t0) / 5, "providers": engine.info.get("providers"),
                          "output": y}
    diff = float(np.abs(report["cuda"].pop("output") - report["cpu"].pop("output")).max())
    report["max_abs_diff"] = diff
    report["speedup_cuda_vs_cpu"] = report["cpu"]["mean_s"] / report["cuda"]["mean_s"]
    Path(out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0 if diff < 1e-3 else 1


# ---- summary ----------------------------------------------------------------------------------


def _versions() -> dict[str, Any]:
    found: dict[str, Any] = {"python": platform.python_version()}
    for name in ("numpy", "torch", "cupy", "tensorrt", "onnxruntime", "onnxconverter_common", "cuda.bindings"):
        try:
            mod = importlib.import_module(name)
            found[name] = str(getattr(mod, "__version__", "present"))
        except Exception:
            found[name] = None
    try:
        import torch

        found["torch_cuda"] = torch.version.cuda
        found["torch_sees_gpu"] = bool(torch.cuda.is_available())
    except Exception:
        pass
    try:
        import onnxruntime

        found["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except Exception:
        pass
    return found


def _tests(xml: Path) -> list[dict[str, Any]]:
    if not xml.is_file():
        return []
    rows = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        outcome, detail = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
                detail = (node.get("message") or "").splitlines()[0][:200] if node.get("message") else ""
                break
        rows.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome,
                     "seconds": float(case.get("time") or 0), "detail": detail})
    return rows


def _benchmarks(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    rows = []
    for b in data.get("benchmarks", []):
        s = b["stats"]
        rows.append({"name": b["fullname"], "group": b.get("group"), "mean_s": s["mean"], "median_s": s["median"],
                     "stddev_s": s["stddev"], "min_s": s["min"], "rounds": s["rounds"], "extra": b.get("extra_info", {})})
    return rows


def summary(work: Path, out: Path, dry: bool, seconds: int) -> int:
    gpus = [line.split(", ") for line in (work / "gpus.csv").read_text().splitlines()] if (work / "gpus.csv").is_file() else []
    smi = (work / "nvidia-smi.txt").read_text() if (work / "nvidia-smi.txt").is_file() else ""
    cuda_line = next((line for line in smi.splitlines() if "CUDA Version" in line), "")
    steps = [json.loads(line) for line in (work / "steps.jsonl").read_text().splitlines()] \
        if (work / "steps.jsonl").is_file() else []
    build = json.loads((work / "build_config.json").read_text()) if (work / "build_config.json").is_file() \
        and (work / "build_config.json").read_text().strip() else None
    ratios = json.loads((work / "ratios.json").read_text()) if (work / "ratios.json").is_file() else {}
    ort = json.loads((work / "ort_cuda.json").read_text()) if (work / "ort_cuda.json").is_file() else None
    tests = _tests(out / "tests.xml")
    bench = _benchmarks(out / "bench.json")
    counts: dict[str, int] = {}
    for t in tests:
        counts[t["outcome"]] = counts.get(t["outcome"], 0) + 1
    report = {
        "mode": "rehearsal without a GPU (--dry-run)" if dry else "GPU run",
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "seconds": seconds,
        "gpus": [dict(zip(("name", "driver", "memory", "compute_capability"), g)) for g in gpus],
        "driver_cuda": cuda_line.split("CUDA Version:")[-1].strip(" |") if cuda_line else None,
        "host": {"cpu": _cpu_model(), "cores": _cores()},
        "pyfill_build": build,
        "versions": _versions(),
        "steps": steps,
        "tests": {"counts": counts, "cases": tests},
        "benchmarks": bench,
        "ratios": ratios,
        "onnxruntime_cuda": ort,
    }
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "gpu_check.md").write_text(_markdown(report))
    print((out / "gpu_check.md").read_text())
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def _cores() -> int:
    import os

    return os.cpu_count() or 0


def _markdown(r: dict[str, Any]) -> str:
    lines = [f"# pyfill GPU check: {r['mode']}", "", f"{r['date']}, {r['seconds']} s in all.", ""]
    if r["gpus"]:
        for g in r["gpus"]:
            lines.append(f"- GPU: {g.get('name')} (sm {g.get('compute_capability')}, {g.get('memory')}), "
                         f"driver {g.get('driver')}, CUDA {r['driver_cuda']}")
    else:
        lines.append("- GPU: none found")
    lines.append(f"- host: {r['host']['cpu']}, {r['host']['cores']} cores")
    b = r["pyfill_build"] or {}
    lines.append(f"- pyfill build: CUDA kernels {'yes' if b.get('cuda') else 'no'}"
                 + (f" (CUDA {b.get('cuda_version')}, archs {b.get('cuda_archs')})" if b.get("cuda") else ""))
    v = r["versions"]
    lines.append("- versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if not isinstance(val, (list, bool))))
    lines += ["", "## Steps", "", "| step | status | s |", "| --- | --- | --- |"]
    lines += [f"| {s['name']} | {s['status']} | {s['seconds']} |" for s in r["steps"]]
    c = r["tests"]["counts"]
    lines += ["", f"## Tests: {c.get('passed', 0)} passed, {c.get('failed', 0) + c.get('error', 0)} failed, "
              f"{c.get('skipped', 0)} skipped", "", "| test | outcome | s | detail |", "| --- | --- | --- | --- |"]
    lines += [f"| {t['test']} | {t['outcome']} | {t['seconds']:.2f} | {t['detail'].replace('|', '/')} |"
              for t in r["tests"]["cases"]]
    lines += ["", "## Benchmarks", ""]
    if r["benchmarks"]:
        lines += ["| benchmark | mean ms | median ms | stddev ms | rounds |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {x['name']} | {x['mean_s'] * 1e3:.3f} | {x['median_s'] * 1e3:.3f} | {x['stddev_s'] * 1e3:.3f} | "
                  f"{x['rounds']} |" for x in r["benchmarks"]]
    else:
        lines.append("none ran")
    if r["ratios"]:
        lines += ["", "| case | method | mean ms | speed-up vs baseline |", "| --- | --- | --- | --- |"]
        for case, methods in r["ratios"].items():
            for method, m in methods.items():
                ratio = next((val for key, val in m.items() if key.startswith("speedup")), float("nan"))
                lines.append(f"| {case} | {method} | {m['mean_s'] * 1e3:.3f} | {ratio:.2f} |")
    if r["onnxruntime_cuda"]:
        o = r["onnxruntime_cuda"]
        lines += ["", f"onnxruntime CUDA provider on the restore model, 512 x 512: {o['cuda']['mean_s'] * 1e3:.2f} ms "
                  f"vs {o['cpu']['mean_s'] * 1e3:.2f} ms on the CPU (x{o['speedup_cuda_vs_cpu']:.2f}), "
                  f"max difference {o['max_abs_diff']:.2g}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("ensure")
    p.add_argument("pairs", nargs="+")
    sub.add_parser("index-reachable")
    sub.add_parser("ensure-project")
    p = sub.add_parser("kernels")
    p.add_argument("--host", action="store_true")
    p = sub.add_parser("onnxruntime-cuda")
    p.add_argument("out")
    p = sub.add_parser("summary")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dry-run", type=int, default=0)
    p.add_argument("--seconds", type=int, default=0)
    a = parser.parse_args(argv)
    if a.cmd == "ensure":
        return ensure(a.pairs)
    if a.cmd == "ensure-project":
        return ensure(project_dependencies())
    if a.cmd == "index-reachable":
        return index_reachable()
    if a.cmd == "kernels":
        return kernels(a.host)
    if a.cmd == "onnxruntime-cuda":
        return onnxruntime_cuda(a.out)
    return summary(a.work, a.out, bool(a.dry_run), a.seconds)


if __name__ == "__main__":
    sys.exit(main())
