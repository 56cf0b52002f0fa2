"""What this installation of pyfill can use: compiled core, CUDA, runtimes and optional extras."""

from __future__ import annotations

import importlib
import importlib.util
import platform
import sys
from typing import Any

from pyfill._core import _C


def _optional_version(module: str) -> str | None:
    """The version of an installed optional module, or None when it is not importable."""
    if importlib.util.find_spec(module) is None:
        return None
    try:
        mod = importlib.import_module(module)
    except Exception:  # a broken install is reported as absent, never raised from a probe
        return None
    return str(getattr(mod, "__version__", "unknown"))


def _onnxruntime_info() -> dict[str, Any]:
    import onnxruntime as ort

    return {"version": ort.__version__, "providers": list(ort.get_available_providers())}


def _openvino_info() -> dict[str, Any] | None:
    if importlib.util.find_spec("openvino") is None:
        return None
    try:
        import openvino as ov

        return {"version": ov.get_version(), "devices": list(ov.Core().available_devices)}
    except Exception as exc:
        return {"version": None, "devices": [], "error": str(exc)}


def _torch_info() -> dict[str, Any] | None:
    if importlib.util.find_spec("torch") is None:
        return None
    try:
        import torch
    except Exception as exc:
        return {"version": None, "error": str(exc), "cuda": False, "cuda_version": None, "devices": []}
    available = bool(torch.cuda.is_available())
    devices = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if available else []
    return {
        "version": torch.__version__,
        "cuda": available,
        "cuda_version": torch.version.cuda,
        "devices": devices,
    }


def runtime_info() -> dict[str, Any]:
    """Describe what this install can use, probed now.

    Returns a JSON-serialisable dict with keys ``pyfill``, ``python``, ``platform``, ``core``
    (C++ threads and SIMD), ``cuda_kernels`` (compiled or not, CUDA version, architectures),
    ``cuda_devices`` (list of dicts; empty when none) with ``cuda_reason`` explaining an empty
    list, ``onnxruntime`` (version, providers), ``openvino``, ``torch``, ``tensorrt`` and ``av``
    (None when not installed).

    >>> import pyfill
    >>> info = pyfill.runtime_info()
    >>> info["core"]["threads"] >= 1
    True
    """
    from pyfill import __version__

    build = _C.build_config()
    devices, reason = _C.cuda_devices()
    return {
        "pyfill": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.machine()}",
        "core": {
            "threads": _C.get_num_threads(),
            "hardware_threads": _C.hardware_threads(),
            "threading": build["threading"],
            "simd_cpu": _C.cpu_simd(),
            "simd_compiled": build["simd_compiled"],
            "simd_dispatch": _C.dispatch_isa(),
            "compiler": build["compiler"],
        },
        "cuda_kernels": {
            "compiled": bool(build["cuda"]),
            "cuda_version": build["cuda_version"] or None,
            "archs": build["cuda_archs"] or None,
        },
        "cuda_devices": list(devices),
        "cuda_reason": reason or None,
        "onnxruntime": _onnxruntime_info(),
        "openvino": _openvino_info(),
        "torch": _torch_info(),
        "tensorrt": _optional_version("tensorrt"),
        "av": _optional_version("av"),
    }


def format_runtime_table(info: dict[str, Any]) -> str:
    """Render :func:`runtime_info` as the fixed-width table that ``pyfill doctor`` prints."""
    rows: list[tuple[str, str, str]] = []
    core = info["core"]
    rows.append(("pyfill", info["pyfill"], f"Python {info['python']} on {info['platform']}"))
    rows.append(
        (
            "C++ core",
            "yes",
            f"{core['threads']} threads ({core['threading']}), SIMD cpu={core['simd_cpu']} "
            f"compiled={core['simd_compiled']} hot loops={core['simd_dispatch']}, {core['compiler']}",
        )
    )
    ck = info["cuda_kernels"]
    rows.append(
        ("CUDA kernels", "compiled" if ck["compiled"] else "not built",
         f"CUDA {ck['cuda_version']}, archs {ck['archs']}" if ck["compiled"] else "CPU-only build")
    )
    devs = info["cuda_devices"]
    rows.append(
        ("CUDA devices", str(len(devs)),
         ", ".join(f"{d['name']} (sm_{d['compute_capability'][0]}{d['compute_capability'][1]})" for d in devs)
         or (info["cuda_reason"] or ""))
    )
    ort = info["onnxruntime"]
    rows.append(("onnxruntime", ort["version"], ", ".join(ort["providers"])))
    ov = info["openvino"]
    rows.append(("openvino", ov["version"] or "broken", ", ".join(ov["devices"])) if ov else ("openvino", "-", "pip install openvino"))
    tt = info["torch"]
    if tt:
        cuda = f"CUDA {tt['cuda_version']}: {', '.join(tt['devices'])}" if tt["cuda"] else "CPU only"
        rows.append(("torch", tt["version"] or "broken", tt.get("error") or cuda))
    else:
        rows.append(("torch", "-", "pip install 'pyfill[train]'"))
    rows.append(("tensorrt", info["tensorrt"] or "-", "" if info["tensorrt"] else "pip install 'pyfill[tensorrt]'"))
    rows.append(("PyAV", info["av"] or "-", "" if info["av"] else "pip install 'pyfill[video]'"))

    headers = ("component", "status", "details")
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers[:2])]
    lines = [f"{headers[0]:<{widths[0]}}  {headers[1]:<{widths[1]}}  {headers[2]}"]
    lines.append(f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * 40}")
    lines += [f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c}" for a, b, c in rows]
    return "\n".join(lines)
