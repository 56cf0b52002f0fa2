"""The long fuzz run: every target of tests/fuzz_targets.py (every pyfill.ops function, the
Engine's input conversion, the image reader, the manifest reader, the board's request parser)
with up to N inputs each, in one process, writing its figures as JSON.

    nice -n 10 python benchmarks/fuzz.py --inputs 100000 --budget 4000 --out fuzz.json

Per target: inputs tried, defects (an exception other than ValueError/TypeError; the first few
are kept with their input), hangs (an input slower than the hang limit, or stopped by the
watchdog), the slowest input, and the process's RSS before and after. ``--budget`` (seconds)
is shared evenly by the targets still to run, so the figures say honestly how far each got.
Address space is capped (``--max-memory-gb``), so an input that would allocate without bound
shows up as a MemoryError defect instead of exhausting the machine. A crash of the process
(a fault in compiled code) leaves the JSON of the targets finished before it, and the fault's
traceback on stderr (faulthandler).
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import os
import platform
import resource
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzz_targets import ALLOWED, HANG_SECONDS, targets  # noqa: E402
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import seed as hypothesis_seed  # noqa: E402

WATCHDOG_SECONDS = 60


class Hang(BaseException):
    """Raised by the watchdog inside an input that runs past WATCHDOG_SECONDS."""


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fuzz_target(target: Any, inputs: int, budget: float, chunk: int, seed: int) -> dict[str, Any]:
    stats: dict[str, Any] = {"target": target.name, "inputs": 0, "defects": 0, "hangs": 0, "slowest_s": 0.0,
                             "examples": [], "rss_start_mb": round(_rss_mb(), 1)}
    start = time.monotonic()
    round_no = 0
    while stats["inputs"] < inputs and time.monotonic() - start < budget:
        round_no += 1
        deadline = start + budget

        @settings(max_examples=min(chunk, inputs - stats["inputs"]), database=None, deadline=None,
                  phases=[Phase.generate], suppress_health_check=list(HealthCheck))
        @hypothesis_seed(seed * 1_000_003 + round_no)
        @given(target.strategy)
        def run(case: Any) -> None:
            if time.monotonic() > deadline:
                return
            stats["inputs"] += 1
            t0 = time.perf_counter()
            signal.alarm(WATCHDOG_SECONDS)
            try:
                target.run(case)
            except ALLOWED:
                pass
            except Hang:
                stats["hangs"] += 1
                _keep(stats, case, "hang (watchdog)")
            except Exception as exc:  # noqa: BLE001 - every other exception is the defect being counted
                stats["defects"] += 1
                _keep(stats, case, "".join(traceback.format_exception_only(type(exc), exc)).strip())
            finally:
                signal.alarm(0)
            elapsed = time.perf_counter() - t0
            if elapsed > stats["slowest_s"]:
                stats["slowest_s"] = round(elapsed, 3)
                stats["slowest_input"] = repr(case)[:300]
            if elapsed > HANG_SECONDS:
                stats["hangs"] += 1
                _keep(stats, case, f"slow: {elapsed:.1f} s")

        try:
            run()
        except Exception as exc:  # noqa: BLE001 - the strategy itself failing is reported, not fatal
            stats.setdefault("harness_errors", []).append(repr(exc)[:300])
            break
    stats["seconds"] = round(time.monotonic() - start, 1)
    stats["rss_end_mb"] = round(_rss_mb(), 1)
    return stats


def _keep(stats: dict[str, Any], case: Any, what: str) -> None:
    if len(stats["examples"]) < 5:
        stats["examples"].append({"error": what[:500], "input": repr(case)[:500]})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="inputs per target (default 100,000)")
    parser.add_argument("--budget", type=float, default=3600.0, help="seconds for all targets (default 3600)")
    parser.add_argument("--chunk", type=int, default=2000, help="inputs per Hypothesis run (default 2,000)")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--only", nargs="*", help="target names to run (default: all)")
    parser.add_argument("--max-memory-gb", type=float, default=12.0, help="address-space cap (default 12)")
    parser.add_argument("--out", default="fuzz-results.json")
    args = parser.parse_args(argv)

    cap = int(args.max_memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    faulthandler.enable()
    warnings.simplefilter("ignore")  # decoders warn about the damaged files they are fed

    def on_alarm(signum: int, frame: Any) -> None:
        raise Hang()

    signal.signal(signal.SIGALRM, on_alarm)
    chosen = [t for t in targets() if not args.only or t.name in args.only]
    report: dict[str, Any] = {"cpu": _cpu_model(), "python": platform.python_version(), "inputs_per_target": args.inputs,
                              "budget_s": args.budget, "seed": args.seed, "targets": []}
    began = time.monotonic()
    for i, target in enumerate(chosen):
        left = args.budget - (time.monotonic() - began)
        share = max(1.0, left / (len(chosen) - i))
        stats = fuzz_target(target, args.inputs, share, args.chunk, args.seed)
        report["targets"].append(stats)
        report["total_inputs"] = sum(t["inputs"] for t in report["targets"])
        report["total_defects"] = sum(t["defects"] for t in report["targets"])
        report["total_hangs"] = sum(t["hangs"] for t in report["targets"])
        Path(args.out).write_text(json.dumps(report, indent=2))
        print(f"{target.name}: {stats['inputs']} inputs, {stats['defects']} defects, {stats['hangs']} hangs, "
              f"slowest {stats['slowest_s']} s, {stats['seconds']} s, RSS {stats['rss_start_mb']} -> "
              f"{stats['rss_end_mb']} MB", flush=True)
    return 1 if report.get("total_defects") or report.get("total_hangs") else 0


if __name__ == "__main__":
    sys.exit(main())
