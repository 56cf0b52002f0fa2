"""Mutation testing of pyfill with mutmut, one module group at a time, each against the fast
tests that target it.

    python tools/mutation.py                 # every group
    python tools/mutation.py tiling manifest # some groups
    python tools/mutation.py --list
    python tools/mutation.py swap --sample 0.15 --seed 0   # a uniform random 15% of the group's mutants
    python tools/mutation.py swap --recheck --with-untested --recheck-tests tests/test_swap.py

Each group runs in its own scratch copy of the repository (``--work``, default
``/tmp/pyfill-mutation/GROUP``): pyfill/, training/, tests/ and pyproject.toml are copied and the
installed compiled core (``pyfill._C``) is linked in, so the checkout is never touched. mutmut
runs there with one worker (``--max-children 1``) in fork-server isolation (the test processes
start ONNX Runtime, OpenVINO and torch thread pools, which do not survive a plain fork), under
``nice``. An editable install's import redirect is removed from ``sys.meta_path`` in mutmut's
process so that ``import pyfill`` finds the mutated copy.

The result per group (killed, survived, timed out, no covering test, per module) goes to
``--out`` (JSON, default ``/tmp/pyfill-mutation/scores.json``) and to stdout. Score = killed
(timeouts, type-check catches and crashes included) / mutants run (killed + survived +
suspicious); mutants that no selected test reaches ("no tests") are listed but not in the score.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Group:
    """Files mutated together, the tests run against them, and optional mutant-name globs that
    restrict the run to some functions (``module.x_function*``, ``module.xǁClassǁmethod*``)."""

    files: tuple[str, ...]
    tests: tuple[str, ...]
    select: str = ""
    mutants: tuple[str, ...] = field(default_factory=tuple)


ENGINE_TESTS = ("tests/test_engine_default_install.py", "tests/test_runtime2.py", "tests/test_precision.py",
                "tests/test_engine_fastpath.py", "tests/test_engine_inputs.py", "tests/test_engine_foreign.py",
                "tests/test_engine_selection.py")

ENGINE_BUILD_TESTS = ENGINE_TESTS + ("tests/test_engine.py", "tests/test_hostile_models.py", "tests/test_engine_files.py")

GROUPS: dict[str, Group] = {
    "tiling": Group(("pyfill/engine/tiling.py",), ("tests/test_tiling.py",), "run_tiled or layout or grid"),
    "losses": Group(("training/generate.py",), ("tests/test_generate_training.py",), "hinge or feature or widen or one_hot",
                    ("training.generate.x_hinge_d*", "training.generate.x_hinge_g*",
                     "training.generate.x_feature_matching*", "training.generate.x_one_hot*")),
    "ops": Group(("pyfill/ops/convert.py",), ("tests/test_convert_ops.py",)),
    "arrays": Group(("pyfill/ops/_arrays.py",), ("tests/test_degrade_ops.py", "tests/test_convert_ops.py",
                                                "tests/test_stroke_grid.py", "tests/test_arrays.py")),
    "manifest": Group(("pyfill/manifest.py",), ("tests/test_manifest.py", "tests/test_manifest_schema.py",
                                                "tests/test_engine_default_install.py"),
                      "manifest or foreign or bad_model"),
    "schedules": Group(("training/colorize.py",), ("tests/test_colorize_training.py", "tests/test_phased_schedule.py"),
                       "test_phased_schedule or frozen or seed_result or selection or unselected or select_fooled or stops or fixed_batch "
                       "or difference or alternating or round_trips_with_phase or discrimination_error",
                       ("training.colorize.xǁPhasedScheduleǁ*", "training.colorize.x_select_fooled*",
                        "training.colorize.x_split_lab*")),
    # the functions the first manifest and schedules runs did not reach (they were stopped)
    "manifest_rest": Group(("pyfill/manifest.py",), ("tests/test_manifest.py", "tests/test_manifest_schema.py",
                                                     "tests/test_engine_default_install.py",
                                                     "tests/test_runtime2.py"),
                           "manifest or foreign or bad_model or schema or format or kinds",
                           ("pyfill.manifest.x__positive_int*", "pyfill.manifest.x_validate_manifest_dict*",
                            "pyfill.manifest.xǁTensorSpecǁ__post_init__*", "pyfill.manifest.xǁManifestǁfrom_dict*",
                            "pyfill.manifest.xǁManifestǁfrom_json*", "pyfill.manifest.x_manifest_schema*")),
    "schedules_rest": Group(("training/colorize.py",), ("tests/test_colorize_training.py",
                                                          "tests/test_phased_schedule.py"),
                            "test_phased_schedule or frozen or seed_result or selection or unselected or select_fooled or stops or fixed_batch "
                            "or difference or alternating or round_trips_with_phase or discrimination_error or phase",
                            ("training.colorize.xǁPhasedScheduleǁstep*", "training.colorize.xǁPhasedScheduleǁ__init__*",
                             "training.colorize.xǁPhasedScheduleǁgenerator_step*",
                             "training.colorize.xǁPhasedScheduleǁgeneration_loss*",
                             "training.colorize.xǁPhasedScheduleǁ_start_generator_phase*", "training.colorize.x_split_lab*")),
    "geometry": Group(("pyfill/engine/geometry.py",), ("tests/test_geometry.py", "tests/test_references.py",
                                                       "tests/test_runtime2.py"),
                      "test_geometry or (generate_at and onnxruntime) or letterbox"),
    "tasks": Group(("pyfill/tasks/_common.py", "pyfill/tasks/colorize.py", "pyfill/tasks/generate.py",
                    "pyfill/tasks/restore.py"), ("tests/test_task_helpers.py", "tests/test_tasks.py", "tests/test_references.py"),
                   "not openvino and not torch_module and not cli"),
    "processing": Group(("pyfill/engine/processing.py",), ("tests/test_processing.py", "tests/test_engine_default_install.py",
                                                           "tests/test_references.py"),
                        "not openvino and not torch_module"),
    "engine": Group(("pyfill/engine/engine.py", "pyfill/engine/inputs.py", "pyfill/engine/files.py",
                     "pyfill/engine/selection.py"), ENGINE_TESTS),
    # (not tests/test_throughput.py: its OpenVINO request queues hang in mutmut's own process; the
    # rechecks run it)
    "backends": Group(("pyfill/engine/backends.py",),
                      ("tests/test_engine_default_install.py", "tests/test_runtime2.py", "tests/test_engine.py",
                       "tests/test_engine_fastpath.py", "tests/test_precision.py", "tests/test_tensorrt.py")),
    # selection.py's functions the engine run did not reach (it was stopped)
    "selection": Group(("pyfill/engine/selection.py",), ("tests/test_engine_selection.py", "tests/test_precision.py"),
                       "", ("pyfill.engine.selection.x_choose_backend*", "pyfill.engine.selection.x__precision*",
                            "pyfill.engine.selection.x_check_options*")),
    # inputs.py's image converters, which the engine run did not reach
    "images_in": Group(("pyfill/engine/inputs.py",), ("tests/test_engine_inputs.py", "tests/test_engine_default_install.py"),
                       "", ("pyfill.engine.inputs.x_image*", "pyfill.engine.inputs.x__uint8_for*")),
    # the rest of the engine modules, which the engine run did not reach (it was stopped): building an Engine
    # (construction, backend, placement, the environment probe, the model files); a full run reached these ...
    "engine_build": Group(("pyfill/engine/engine.py", "pyfill/engine/files.py"), ENGINE_BUILD_TESTS, "",
                          ("pyfill.engine.engine.xǁResultǁ__init__*", "pyfill.engine.engine.xǁEngineǁ_guard_precision*",
                           "pyfill.engine.engine.xǁEngineǁ_placement*", "pyfill.engine.files.x_onnx_for_runtime*")),
    # ... and was stopped (each survivor took half a minute); the rest runs as a sample (--sample)
    "engine_build_rest": Group(("pyfill/engine/engine.py", "pyfill/engine/files.py", "pyfill/engine/selection.py"),
                               ENGINE_BUILD_TESTS, "",
                               ("pyfill.engine.engine.xǁEngineǁ__init__*", "pyfill.engine.engine.xǁEngineǁ_make_backend*",
                                "pyfill.engine.engine.xǁEngineǁ_torch_only_reason*",
                                "pyfill.engine.files.x_locate*", "pyfill.engine.files.x_load_manifest*",
                                "pyfill.engine.selection.x_probe_environment*",
                                "pyfill.engine.selection.x_cpu_has_bf16*")),
    # ... and running one (preparation, tiling decision, grouping, the backend call, finishing)
    "engine_run": Group(("pyfill/engine/engine.py",),
                        ENGINE_TESTS + ("tests/test_engine.py", "tests/test_tiling.py", "tests/test_processing.py"), "",
                        ("pyfill.engine.engine.xǁEngineǁ_decide_tiling*", "pyfill.engine.engine.xǁEngineǁ_finish*",
                         "pyfill.engine.engine.xǁEngineǁ_prepare*", "pyfill.engine.engine.xǁEngineǁ_run_backend*",
                         "pyfill.engine.engine.xǁEngineǁ_run_group*", "pyfill.engine.engine.xǁEngineǁ_run_items*",
                         "pyfill.engine.engine.xǁEngineǁ_run_spatial*", "pyfill.engine.engine.xǁEngineǁ_tile_for*",
                         "pyfill.engine.engine.xǁEngineǁ_probe_item*")),
    # the ops wrappers around the compiled degradation and stroke-grid kernels
    "degrade": Group(("pyfill/ops/degrade.py",), ("tests/test_degrade_ops.py", "tests/test_degrade_pipeline.py")),
    "stroke_grid": Group(("pyfill/ops/stroke_grid.py",), ("tests/test_stroke_grid.py",
                                                          "tests/test_generate_smooth_strokes.py")),
    "swap": Group(("pyfill/tasks/swap.py",), ("tests/test_swap.py",)),
    "edit": Group(("pyfill/tasks/edit.py",), ("tests/test_edit.py",)),
    "export": Group(("pyfill/export.py",), ("tests/test_engine.py", "tests/test_tensorrt.py", "tests/test_export_static.py",
                                            "tests/test_export_checks.py"),
                    "test_tensorrt or test_export_static or test_export_checks or manifest or checkpoint or operators or allowlist or bad_model"),
    # the export run was stopped after 669 of 1004 mutants; these functions had not run (or changed since)
    # (against the two fast export test files only: the group's full selection took minutes per mutant)
    "export_rest": Group(("pyfill/export.py",), ("tests/test_export_static.py", "tests/test_export_checks.py"), "",
                         ("pyfill.export.x_example_inputs*", "pyfill.export.x_export_onnx*", "pyfill.export.x__unique_temp*",
                          "pyfill.export.x__compare_with_torch*", "pyfill.export.x_static_export_size*",
                          "pyfill.export.x__dynamic_checks*", "pyfill.export.x_default_tensorrt_profile*")),
}

RUNNER = textwrap.dedent("""\
    import sys
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "ScikitBuildRedirectingFinder"]
    sys.argv[0] = "mutmut"
    from mutmut.__main__ import cli
    sys.exit(cli())
    """)


def compiled_core() -> Path:
    """The installed pyfill._C extension file."""
    out = subprocess.run([sys.executable, "-c", "import pyfill._C as C; print(C.__file__)"], cwd="/",
                         capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


def prepare(name: str, group: Group, work: Path) -> Path:
    """A fresh scratch copy for ``group`` with its mutmut configuration; returns its folder."""
    folder = work / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "runs", "mutants")
    for part in ("pyfill", "training", "tests"):
        shutil.copytree(ROOT / part, folder / part, ignore=ignore)
    shutil.copy2(ROOT / "pyproject.toml", folder / "pyproject.toml")
    core = compiled_core()
    (folder / "pyfill" / core.name).symlink_to(core)
    args = ["-p", "no:cacheprovider", "-q", "-x", "--reruns", "0"]
    if group.select:
        args += ["-k", group.select]
    def option(key: str, values: list[str]) -> str:
        return key + "=\n" + "".join(f"    {v}\n" for v in values)

    (folder / "setup.cfg").write_text("[mutmut]\n" + option("source_paths", ["pyfill", "training"])
                                      + option("only_mutate", list(group.files))
                                      + option("pytest_add_cli_args_test_selection", list(group.tests))
                                      + option("pytest_add_cli_args", args) + "process_isolation=forkserver\n")
    (folder / "run_mutmut.py").write_text(RUNNER)
    return folder


LIST_MUTANTS = textwrap.dedent("""\
    import sys
    from mutmut.mutation.file_mutation import mutate_file_contents
    for file in sys.argv[1:]:
        module = file[:-3].replace("/", ".")
        for name in mutate_file_contents(file, open(file).read()).mutant_names:
            print(f"{module}.{name}")
    """)


def population(folder: Path, group: Group) -> list[str]:
    """Every mutant name mutmut generates for ``group`` (restricted to its globs), sorted; read in
    the scratch copy ``folder``, where mutmut finds its configuration."""
    out = subprocess.run([sys.executable, "-c", LIST_MUTANTS, *group.files], cwd=folder, capture_output=True,
                         text=True, check=True)
    return sorted(n for n in out.stdout.split() if not group.mutants or any(_matches(n, g) for g in group.mutants))


def sample(folder: Path, group: Group, fraction: float, seed: int) -> tuple[list[str], int]:
    """A uniform random sample (without replacement) of ``fraction`` of the group's mutants,
    drawn with ``seed``; returns the sample and the population's size."""
    import random

    names = population(folder, group)
    k = max(1, round(fraction * len(names)))
    return sorted(random.Random(seed).sample(names, k)), len(names)


def wilson(killed: int, drawn: int) -> tuple[float, float]:
    """The Wilson score 95% interval (SciPy's) for a score measured on a random sample of
    ``drawn`` mutants of which ``killed`` were killed."""
    from scipy.stats import binomtest

    ci = binomtest(killed, drawn).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


DETECTED = ("killed", "timeout", "caught by type check", "segfault")


def score(folder: Path, group: Group) -> dict[str, dict[str, float]]:
    """Per mutated file: mutmut's verdicts counted from its .meta files, and the score (over the
    mutants listed in ``sample.txt`` where the run was a sample)."""
    from mutmut.stats import status_by_exit_code

    listed = folder / "sample.txt"
    drawn = set(listed.read_text().split()) if listed.is_file() else None
    result: dict[str, dict[str, float]] = {}
    for file in group.files:
        meta = folder / "mutants" / f"{file}.meta"
        if not meta.is_file():
            continue
        counts: dict[str, float] = {}
        for key, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            if group.mutants and not any(_matches(key, g) for g in group.mutants):
                continue
            if drawn is not None and key not in drawn:
                continue
            verdict = status_by_exit_code[code]
            counts[verdict] = counts.get(verdict, 0) + 1
        run = sum(v for k, v in counts.items() if k in (*DETECTED, "survived", "suspicious"))
        detected = sum(counts.get(k, 0) for k in DETECTED)
        counts["score_percent"] = round(100.0 * detected / run, 1) if run else 0.0
        if drawn is not None and run:
            lo, hi = wilson(int(detected), int(run))
            counts["ci95_percent"] = [round(100 * lo, 1), round(100 * hi, 1)]
        result[file] = counts
    return result


def _matches(key: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(key, pattern)


def survivors(folder: Path) -> str:
    """mutmut's list of surviving mutants (names), for triage."""
    out = subprocess.run([sys.executable, "run_mutmut.py", "results"], cwd=folder, capture_output=True, text=True)
    return out.stdout


PYTEST_RUNNER = textwrap.dedent("""\
    import sys
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "ScikitBuildRedirectingFinder"]
    sys.path.insert(0, ".")
    import pytest
    sys.exit(pytest.main(sys.argv[1:]))
    """)


def apply_mutant(folder: Path, file: str, key: str) -> None:
    """Write mutant ``key`` into ``folder/file``: the function it mutates, or the method in its
    own class. (``mutmut apply`` 3.8.1 replaces the first function of that name in the file, so a
    mutant of ``PhasedSchedule.step`` landed in ``Schedule.step``.)"""
    import ast

    mangled = key.rsplit(".", 1)[-1]
    base = mangled.rsplit("__mutmut_", 1)[0]
    cls, func = (base.split("ǁ")[1], base.split("ǁ")[2]) if base.startswith("xǁ") else (None, base[2:])
    mutant_text = (folder / "mutants" / file).read_text()
    node = next(n for n in ast.walk(ast.parse(mutant_text)) if isinstance(n, ast.FunctionDef) and n.name == mangled)
    lines = mutant_text.splitlines()[node.lineno - 1:node.end_lineno]
    body = textwrap.dedent("\n".join(lines)).replace(f"def {mangled}(", f"def {func}(", 1)
    source = folder / file
    text = source.read_text()
    tree = ast.parse(text)
    scope = tree.body
    if cls is not None:
        scope = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
    target = next(n for n in scope if isinstance(n, ast.FunctionDef) and n.name == func)
    src_lines = text.splitlines()
    indent = " " * target.col_offset
    new = [indent + line if line else line for line in body.splitlines()]
    source.write_text("\n".join(src_lines[:target.lineno - 1] + new + src_lines[target.end_lineno:]) + "\n")


def recheck(name: str, group: Group, work: Path, env: dict[str, str], tests: list[str] | None = None,
            only: list[str] | None = None, with_untested: bool = False) -> dict[str, object]:
    """Run the checkout's current tests against each mutant that survived the last run of
    ``group``: the mutant is written into the scratch copy's source (``mutmut apply``), the
    group's tests run there, the source is restored. Returns the survivors now killed and those
    still alive."""
    folder = work / name
    from mutmut.stats import status_by_exit_code

    untested = ("no tests",) if with_untested else ()
    alive = []
    for file in group.files:
        meta = folder / "mutants" / f"{file}.meta"
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.is_file() else {}
        alive += [k for k, v in codes.items() if status_by_exit_code[v] in ("survived", *untested)
                  and (not group.mutants or any(_matches(k, g) for g in group.mutants))
                  and (not only or any(_matches(k, g) for g in only))]
    shutil.rmtree(folder / "tests")
    shutil.copytree(ROOT / "tests", folder / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyfill", "training"):  # the rest of the code as it is now (the run may be older)
        shutil.copytree(ROOT / part, folder / part, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "runs", "mutants"))
    (folder / "run_pytest.py").write_text(PYTEST_RUNNER)
    args = ["-p", "no:cacheprovider", "-q", "-x", "--reruns", "0", *(tests or group.tests)]
    args += ["-k", group.select] if group.select else []
    for file in group.files:
        shutil.copy2(ROOT / file, folder / file)
    clean = subprocess.run(["nice", "-n", "10", sys.executable, "run_pytest.py", *args], cwd=folder, env=env,
                           capture_output=True, text=True)
    if clean.returncode != 0:
        raise RuntimeError(f"{name}: the tests fail on the unmutated code:\n{clean.stdout[-3000:]}")
    killed, survived = [], []
    for mutant in alive:
        for file in group.files:
            shutil.copy2(ROOT / file, folder / file)
        apply_mutant(folder, next(f for f in group.files if mutant.startswith(f[:-3].replace("/", ".") + ".")), mutant)
        result = subprocess.run(["nice", "-n", "10", sys.executable, "run_pytest.py", *args], cwd=folder, env=env,
                                capture_output=True, text=True)
        (killed if result.returncode != 0 else survived).append(mutant)
    for file in group.files:
        shutil.copy2(ROOT / file, folder / file)
    return {"rechecked": len(alive), "killed_now": killed, "still_alive": survived}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Mutation testing of pyfill with mutmut, module group by group.")
    parser.add_argument("groups", nargs="*", help=f"groups to run (default: all): {', '.join(GROUPS)}")
    parser.add_argument("--work", type=Path, default=Path("/tmp/pyfill-mutation"))
    parser.add_argument("--out", type=Path, default=None, help="JSON scores (default: WORK/scores.json)")
    parser.add_argument("--nice", type=int, default=10)
    parser.add_argument("--list", action="store_true", help="list the groups and exit")
    parser.add_argument("--recheck", action="store_true",
                        help="run the current tests against the survivors of the last run of each group (after triage)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="with --recheck: only the survivors whose names match these globs (e.g. the functions "
                             "that did not change since the run)")
    parser.add_argument("--with-untested", action="store_true",
                        help="with --recheck: also run the mutants no selected test reached in the run (new tests "
                             "may reach them; they then count as run)")
    parser.add_argument("--recheck-tests", nargs="*", default=None,
                        help="with --recheck: only these test files (the new ones; the group's other tests were "
                             "already run against every survivor)")
    parser.add_argument("--sample", type=float, default=None, metavar="FRACTION",
                        help="run a uniform random sample of this fraction of each group's mutants (the score is "
                             "then an estimate; the sample is written to WORK/GROUP/sample.txt)")
    parser.add_argument("--seed", type=int, default=0, help="with --sample: the random seed")
    args = parser.parse_args(argv)
    if args.sample is not None and not 0 < args.sample <= 1:
        parser.error("--sample takes a fraction in (0, 1]")
    if args.list:
        for name, g in GROUPS.items():
            print(f"{name:<11} {', '.join(g.files)}  <-  {', '.join(g.tests)}" + (f"  -k {g.select!r}" if g.select else ""))
        return 0
    unknown = sorted(set(args.groups) - set(GROUPS))
    if unknown:
        parser.error(f"unknown groups {unknown}; groups: {', '.join(GROUPS)}")
    out = args.out or args.work / "scores.json"
    scores = json.loads(out.read_text()) if out.is_file() else {}
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYFILL_THREADS": "1"}
    for name in args.groups or list(GROUPS):
        group = GROUPS[name]
        if args.recheck:
            scores.setdefault(name, {})["recheck"] = recheck(name, group, args.work, env, args.recheck_tests, args.only,
                                                         args.with_untested)
            out.write_text(json.dumps(scores, indent=2))
            r = scores[name]["recheck"]
            print(name, f"rechecked {r['rechecked']}: killed now {len(r['killed_now'])}, still alive "
                        f"{len(r['still_alive'])}", flush=True)
            continue
        folder = prepare(name, group, args.work)
        start = time.time()
        chosen, drawn_from = list(group.mutants), None
        if args.sample is not None:
            chosen, drawn_from = sample(folder, group, args.sample, args.seed)
            (folder / "sample.txt").write_text("\n".join(chosen) + "\n")
        cmd = ["nice", "-n", str(args.nice), sys.executable, "run_mutmut.py", "run", "--max-children", "1", *chosen]
        with open(folder / "mutmut.log", "w") as log:
            subprocess.run(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
        scores[name] = {"files": score(folder, group), "seconds": round(time.time() - start),
                        "tests": list(group.tests), "select": group.select, "mutants": list(group.mutants)}
        if drawn_from is not None:
            scores[name].update(sample={"fraction": args.sample, "seed": args.seed, "drawn": len(chosen),
                                        "population": drawn_from})
        (folder / "survivors.txt").write_text(survivors(folder))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(scores, indent=2))
        print(name, json.dumps(scores[name]["files"]), f"{scores[name]['seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
