"""Batch inference over many machines with Ray Data (the ``distributed`` extra:
``pip install 'pyfill[distributed]'``).

:func:`map_images` maps a task (``restore``, ``colorize``, any name
:func:`pyfill.tasks.frame_processor` knows) or a :class:`pyfill.Engine` over every image file
under one or more folders: a local folder, or any path a cluster can read through a pyarrow
filesystem (``s3://``, ``gs://``, ``hdfs://``, ``file://``) or an fsspec filesystem. Each Ray
actor holds one Engine (one actor per GPU where the cluster has GPUs, CPU actors otherwise) and
takes batches of files. Outputs keep the inputs' relative paths under the output folder; every
finished item is recorded in a JSON-lines manifest under ``OUTPUT/_pyfill/``, and a rerun skips
the items whose manifest row says done with the same settings and whose output file exists.

:func:`map_video` splits a video at keyframes into segments (stream copy, no decoding),
processes the segments in parallel Ray tasks and joins the processed segments with the source's
other streams (audio, subtitles) copied packet for packet, never re-encoded.

:func:`run_cli_on_ray` is ``pyfill restore|colorize ... --ray [ADDRESS]``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import os
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, cast

import numpy as np

from pyfill._core import require

MANIFEST_DIR = "_pyfill"
"""Folder under the output root holding the manifest parts ``manifest-<run>-<n>.jsonl``."""


# ---- files on any filesystem ---------------------------------------------------------------------
def resolve_filesystem(location: str | os.PathLike[str], filesystem: Any = None) -> tuple[Any, str]:
    """(pyarrow filesystem, path inside it) for a local path, a URI pyarrow knows (``s3://``,
    ``gs://``, ``hdfs://``, ``file://``) or one fsspec knows; ``filesystem`` (a pyarrow or fsspec
    filesystem) overrides the scheme, and ``location`` is then a path inside it."""
    pafs = require("pyarrow.fs", "distributed")
    text = os.fspath(location)
    if filesystem is not None:
        if not isinstance(filesystem, pafs.FileSystem):
            filesystem = pafs.PyFileSystem(pafs.FSSpecHandler(filesystem))
        return filesystem, text
    if "://" not in text:
        return pafs.LocalFileSystem(), Path(text).expanduser().resolve().as_posix()
    try:
        fs, path = pafs.FileSystem.from_uri(text)
        return fs, path
    except (ValueError, OSError):  # a scheme pyarrow does not know (ArrowInvalid is a ValueError)
        pass
    fsspec_core = require("fsspec.core", "distributed")
    try:
        fsspec_fs, path = fsspec_core.url_to_fs(text)
    except (ValueError, ImportError) as exc:
        raise ValueError(f"{text}: no pyarrow or fsspec filesystem reads this location ({exc})") from exc
    return pafs.PyFileSystem(pafs.FSSpecHandler(fsspec_fs)), path


@dataclass(frozen=True)
class InputFile:
    """One image file: its path in ``fs``, the output path relative to the output root (without
    the final suffix decision), its size in bytes and modification time in ns."""

    path: str
    rel: str
    size: int
    mtime_ns: int


def list_images(inputs: Sequence[str | os.PathLike[str]], filesystem: Any = None) -> tuple[Any, list[InputFile]]:
    """(filesystem, image files) under every input (folders searched recursively; a file is
    taken as it is, its output named after it). All inputs must be on one filesystem.

    Raises FileNotFoundError for an input that does not exist."""
    from pyfill.images import IMAGE_SUFFIXES

    pafs = require("pyarrow.fs", "distributed")
    found: list[InputFile] = []
    fs = None
    for item in inputs:
        item_fs, base = resolve_filesystem(item, filesystem)
        if fs is None:
            fs = item_fs
        elif item_fs.type_name != fs.type_name:
            raise ValueError(f"{item}: all inputs must be on one filesystem ({fs.type_name}), not {item_fs.type_name}")
        info = item_fs.get_file_info(base)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(f"{item}: no such file or folder")
        if info.type == pafs.FileType.Directory:
            entries = item_fs.get_file_info(pafs.FileSelector(base, recursive=True))
            root = PurePosixPath(base)
            for e in sorted(entries, key=lambda e: e.path):
                if e.type == pafs.FileType.File and PurePosixPath(e.path).suffix.lower() in IMAGE_SUFFIXES \
                        and MANIFEST_DIR not in PurePosixPath(e.path).relative_to(root).parts[:1]:
                    found.append(InputFile(e.path, PurePosixPath(e.path).relative_to(root).as_posix(),
                                           int(e.size or 0), int(e.mtime_ns or 0)))
        else:
            found.append(InputFile(info.path, PurePosixPath(info.path).name, int(info.size or 0), int(info.mtime_ns or 0)))
    return fs, found


# ---- what runs in each actor -------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """Everything an actor needs, small enough to ship to every node.

    ``task``: a task name (``restore``, ``colorize``, or any :func:`pyfill.tasks.frame_processor`
    name) or ``engine`` for a bare Engine; ``model``: a model name or a path every node can read
    (None: the task's shipped model); ``options``: the task's or Engine's keyword arguments."""

    task: str
    model: str | None
    options: dict[str, Any]
    output: str
    format: str | None
    quality: int
    threads: int

    @property
    def signature(self) -> str:
        """A short hash of the settings that decide an output: a rerun with other settings redoes
        the items."""
        text = json.dumps([self.task, self.model, sorted(self.options.items()), self.format, self.quality],
                          default=_settings_value)
        return hashlib.sha1(text.encode()).hexdigest()[:12]


def _settings_value(value: Any) -> str:
    """A JSON stand-in for an option value: arrays (e.g. a source face) by their contents."""
    if isinstance(value, np.ndarray):
        return f"array {value.dtype} {value.shape} {hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest()}"
    return repr(value)


ImageFn = Callable[[list[np.ndarray]], list[tuple[np.ndarray, dict[str, Any]]]]


def _same_shape_groups(arrays: list[np.ndarray]) -> list[list[int]]:
    groups: dict[tuple, list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault((a.shape, a.dtype.str), []).append(i)
    return list(groups.values())


def _as_rgb8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise TypeError(f"this task takes 8-bit images, got {arr.dtype}")
    if arr.ndim == 2:
        return np.repeat(arr[..., None], 3, axis=-1)
    return arr[..., :3]


def build_image_fn(job: Job) -> ImageFn:
    """The batch function an actor runs: decoded image arrays (as :func:`pyfill.images.read_image`
    gives them) -> [(output array, extra fields for the manifest)]. Items of one shape go through
    the model in one call."""
    from pyfill.engine import Engine
    from pyfill.tasks._common import check_task, split_alpha
    from pyfill.tasks.colorize import finish_colorized
    from pyfill.tasks.restore import finish_restored

    options = dict(job.options)
    if job.task in ("restore", "colorize", "engine"):
        engine = Engine(job.model or job.task, threads=job.threads, **options)
        kind = engine.manifest.task
        if job.task != "engine":
            check_task(engine, (job.task, "image-to-image"), job.task)
        if kind in ("restore", "image-to-image"):
            def run_group(arrays: list[np.ndarray]) -> list[tuple[np.ndarray, dict[str, Any]]]:
                outs = engine([split_alpha(a)[0] for a in arrays])
                return [(finish_restored(a, o), {}) for a, o in zip(arrays, outs)]
        elif kind == "colorize":
            def run_group(arrays: list[np.ndarray]) -> list[tuple[np.ndarray, dict[str, Any]]]:
                done = [finish_colorized(a, r) for a, r in zip(arrays, engine.run([split_alpha(a)[0] for a in arrays]))]
                return [(c.image, {"realness": c.realness}) for c in done]
        else:
            def run_group(arrays: list[np.ndarray]) -> list[tuple[np.ndarray, dict[str, Any]]]:
                results = engine.run(arrays)
                return [(r.image, {k: float(np.asarray(v).reshape(-1)[0]) for k, v in r.items()
                                   if k not in r.image_names and np.size(v) == 1}) for r in results]

        def run(arrays: list[np.ndarray]) -> list[tuple[np.ndarray, dict[str, Any]]]:
            out: list[Any] = [None] * len(arrays)
            for idx in _same_shape_groups(arrays):
                for i, pair in zip(idx, run_group([arrays[i] for i in idx])):
                    out[i] = pair
            return out

        return run
    from pyfill.tasks import frame_processor

    if job.model:
        options["model"] = job.model
    frames = frame_processor(job.task, **options)
    return lambda arrays: [(o, {}) for o in frames([_as_rgb8(a) for a in arrays])]


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _target_rel(rel: str, fmt: str | None, result: np.ndarray) -> str:
    from pyfill.images import output_suffix

    p = PurePosixPath(rel)
    return p.with_suffix(output_suffix(f".{fmt}" if fmt else p.suffix, result)).as_posix()


def _write_output(fs: Any, root: str, rel: str, array: np.ndarray, quality: int) -> None:
    """Write ``array`` to ``root/rel`` in ``fs`` under a temporary name, then rename (a reader
    never sees half a file)."""
    from pyfill.images import write_image

    pafs = require("pyarrow.fs", "distributed")
    target = f"{root.rstrip('/')}/{rel}"
    suffix = PurePosixPath(rel).suffix
    if isinstance(fs, pafs.LocalFileSystem):
        part = Path(target).with_name(f".{Path(target).stem}.{uuid.uuid4().hex[:8]}{suffix}")
        write_image(part, array, quality=quality)
        os.replace(part, target)
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = write_image(Path(tmp) / f"out{suffix}", array, quality=quality)
        fs.create_dir(str(PurePosixPath(target).parent), recursive=True)
        with fs.open_output_stream(target) as stream:
            stream.write(local.read_bytes())


class ImageWorker:
    """A Ray Data actor: builds its Engine once, then maps batches of file rows to manifest rows
    (``status`` ``ok`` or ``failed`` with the ``error``; one bad file never fails the batch)."""

    def __init__(self, job: Job, in_fs: Any, out_fs: Any) -> None:
        self.job, self.in_fs, self.out_fs = job, in_fs, out_fs
        self.fn = build_image_fn(job)
        self.name = _worker_name()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import warnings

        from pyfill.images import read_image

        n = len(batch["path"])
        rows: list[dict[str, Any]] = [{"status": "failed", "output": "", "error": "", "extra": "{}",
                                       "notes": ""} for _ in range(n)]
        arrays: dict[int, np.ndarray] = {}
        start = time.perf_counter()
        for i, path in enumerate(batch["path"]):
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    data = self.in_fs.open_input_file(str(path)).read()
                    arrays[i] = read_image(cast(Any, io.BytesIO(data)))
                rows[i]["notes"] = "; ".join(str(w.message) for w in caught)
            except ValueError as exc:
                rows[i]["error"] = f"{path}: not a readable image ({exc.__cause__ or exc})"
            except OSError as exc:
                rows[i]["error"] = f"{path}: {exc}"
        order = list(arrays)
        try:
            results = self.fn([arrays[i] for i in order]) if order else []
        except (ValueError, TypeError, RuntimeError) as exc:
            for i in order:
                rows[i]["error"] = f"{type(exc).__name__}: {exc}"
            results = []
        for i, (image, extra) in zip(order, results):
            try:
                rel = _target_rel(str(batch["rel"][i]), self.job.format, image)
                if f"{self.job.output.rstrip('/')}/{rel}" == str(batch["path"][i]):
                    raise ValueError(f"the output {rel} would overwrite its input; choose another output folder")
                _write_output(self.out_fs, self.job.output, rel, image, self.job.quality)
                rows[i].update(status="ok", output=rel, extra=json.dumps(extra))
            except (ValueError, TypeError, OSError) as exc:
                rows[i]["error"] = str(exc)
        seconds = (time.perf_counter() - start) / max(n, 1)
        out = {k: np.asarray(batch[k]) for k in ("path", "rel", "size", "mtime_ns")}
        for key in ("status", "output", "error", "extra", "notes"):
            out[key] = np.asarray([r[key] for r in rows], dtype=object)
        out["seconds"] = np.full(n, seconds)
        out["worker"] = np.asarray([self.name] * n, dtype=object)
        return out


# ---- the manifest ------------------------------------------------------------------------------
class ManifestWriter:
    """Appends rows to ``OUTPUT/_pyfill/manifest-<run>-<n>.jsonl`` parts: a new part every
    ``every`` rows or ``seconds`` (object stores cannot append; a killed driver loses at most
    the rows since the last part)."""

    def __init__(self, fs: Any, root: str, *, every: int = 256, seconds: float = 10.0) -> None:
        self.fs, self.dir = fs, f"{root.rstrip('/')}/{MANIFEST_DIR}"
        self.run = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.every, self.seconds = every, seconds
        self.pending: list[dict[str, Any]] = []
        self.parts = 0
        self.last = time.monotonic()

    def add(self, row: dict[str, Any]) -> None:
        self.pending.append(row)
        if len(self.pending) >= self.every or time.monotonic() - self.last >= self.seconds:
            self.flush()

    def flush(self) -> None:
        self.last = time.monotonic()
        if not self.pending:
            return
        self.fs.create_dir(self.dir, recursive=True)
        text = "".join(json.dumps(r) + "\n" for r in self.pending).encode()
        name = f"{self.dir}/manifest-{self.run}-{self.parts:05d}.jsonl"
        with self.fs.open_output_stream(name + ".part") as stream:
            stream.write(text)
        self.fs.move(name + ".part", name)
        self.parts += 1
        self.pending = []


def read_manifest(output: str | os.PathLike[str], filesystem: Any = None) -> list[dict[str, Any]]:
    """Every row of the manifest under ``output`` (oldest part first); [] when there is none.

    A row: ``input`` (path in its filesystem), ``rel``, ``size``, ``mtime_ns``, ``output``
    (relative to the output root), ``status`` (``ok``/``failed``), ``error``, ``extra`` (e.g.
    ``{"realness": 0.93}``), ``notes``, ``seconds`` (per item), ``worker`` (host:pid),
    ``settings`` (hash of task, model, options, format, quality), ``run``."""
    pafs = require("pyarrow.fs", "distributed")
    fs, root = resolve_filesystem(output, filesystem)
    folder = f"{root.rstrip('/')}/{MANIFEST_DIR}"
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return []
    parts = sorted(e.path for e in fs.get_file_info(pafs.FileSelector(folder)) if e.path.endswith(".jsonl"))
    rows: list[dict[str, Any]] = []
    for part in parts:
        with fs.open_input_stream(part) as stream:
            rows += [json.loads(line) for line in stream.read().decode().splitlines() if line.strip()]
    return rows


def _existing_outputs(fs: Any, root: str) -> set[str]:
    pafs = require("pyarrow.fs", "distributed")
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return set()
    base = PurePosixPath(root)
    return {PurePosixPath(e.path).relative_to(base).as_posix()
            for e in fs.get_file_info(pafs.FileSelector(root, recursive=True)) if e.type == pafs.FileType.File}


# ---- the call ----------------------------------------------------------------------------------
@dataclass
class MapReport:
    """What :func:`map_images` did: ``total`` inputs, ``skipped`` (done before), ``done`` and
    ``failed`` now (``failures``: (input, error)), ``workers``, wall ``seconds``, the
    ``manifest`` folder."""

    total: int
    skipped: int
    done: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    workers: int = 0
    seconds: float = 0.0
    manifest: str = ""

    @property
    def failed(self) -> int:
        return len(self.failures)

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0


def _job_for(task: Any, model: str | os.PathLike[str] | None, options: dict[str, Any]) -> tuple[str, str | None, dict]:
    """(task name, model, options) from a task name or an Engine (rebuilt in each actor from its
    model file with its tile settings; the backend is chosen again on each node)."""
    from pyfill.store import resolve_model

    if isinstance(task, str):
        from pyfill.tasks import TASK_NAMES

        if model is not None:
            model = str(resolve_model(model))
        if task not in TASK_NAMES and task not in _extra_task_names():
            raise ValueError(f"unknown task {task!r}; tasks: {', '.join(TASK_NAMES + _extra_task_names())}")
        return task, model, options
    if hasattr(task, "manifest") and hasattr(task, "path"):
        if model is not None:
            raise TypeError("give either an Engine or model=, not both")
        opts = {"tile": task.tile, "tile_overlap": task.tile_overlap, **options}
        return "engine", str(task.path), opts
    raise TypeError(f"task must be a task name or a pyfill.Engine, got {type(task).__name__}")


def _extra_task_names() -> tuple[str, ...]:
    """Task names :func:`pyfill.tasks.frame_processor` knows beyond ``TASK_NAMES`` (e.g. swap,
    where this pyfill has it)."""
    import pyfill.tasks as tasks

    return tuple(n for n in ("swap", "edit") if hasattr(tasks, n))


def _ray(address: str | None) -> Any:
    ray = require("ray", "distributed")
    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
    return ray


def _pool(ray: Any, workers: int | None, cpus_per_worker: float | None,
          gpus_per_worker: float | None) -> tuple[int, float, float]:
    """(actors, CPUs each, GPUs each): one actor per GPU where the cluster has GPUs, else one per
    ``cpus_per_worker`` CPUs (default 1)."""
    resources = ray.cluster_resources()
    gpus = float(resources.get("GPU", 0))
    if gpus_per_worker is None:
        gpus_per_worker = 1.0 if gpus >= 1 else 0.0
    cpus = cpus_per_worker if cpus_per_worker is not None else 1.0
    if workers is None:
        workers = int(gpus // gpus_per_worker) if gpus_per_worker else int(float(resources.get("CPU", 1)) // cpus)
    if workers < 1:
        raise ValueError(f"the cluster has no room for a worker of {cpus} CPUs and {gpus_per_worker} GPUs "
                         f"({dict(resources)})")
    return workers, cpus, gpus_per_worker


def map_images(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
               output: str | os.PathLike[str], task: Any = "restore", *,
               model: str | os.PathLike[str] | None = None, options: dict[str, Any] | None = None,
               workers: int | None = None, cpus_per_worker: float | None = None,
               gpus_per_worker: float | None = None, batch_size: int = 16,
               format: str | None = None, quality: int = 95, skip_existing: bool = False,
               address: str | None = None, progress: bool | None = None,
               filesystem: Any = None, output_filesystem: Any = None,
               manifest_every: int = 256) -> MapReport:
    """Map a task or an Engine over every image file under ``inputs`` on a Ray cluster and
    write the results under ``output``, keeping relative paths.

    Args:
        inputs: folders (searched recursively) or files: local paths or URIs a pyarrow or fsspec
            filesystem reads (``s3://bucket/photos``); every node must be able to read them.
        output: the output folder (local path or URI, written by the workers). The manifest is
            ``output/_pyfill/*.jsonl`` (see :func:`read_manifest`).
        task: ``restore`` | ``colorize`` (the task functions: gray, alpha and 16 bits kept) |
            another :func:`pyfill.tasks.frame_processor` name (8-bit RGB frames) | a
            :class:`pyfill.Engine` (rebuilt in each actor from its model file and tile settings).
        model: the task's model (a name, or a file at a path every node can read).
        options: keyword arguments of the Engine (``backend``, ``tile``, ...) or of the task.
        workers: actors (default: one per GPU, else one per ``cpus_per_worker`` CPUs of the cluster).
        cpus_per_worker: CPUs per actor (default 1); also the Engine's CPU threads.
        gpus_per_worker: GPUs per actor (default 1 where the cluster has GPUs, else 0).
        batch_size: files per actor call; files of one shape go through the model together.
        format, quality: output format (default: the input's, PNG where it cannot hold the
            result) and JPEG/WebP quality, as in the CLI.
        skip_existing: also skip inputs whose output file exists without a manifest row.
        address: the Ray cluster (``ray://host:10001``, ``host:6379`` or ``auto``); default: the
            running one, ``RAY_ADDRESS``, or a new local instance.
        progress: a tqdm bar on stderr (default: only when stderr is a terminal).
        filesystem, output_filesystem: pyarrow or fsspec filesystems for inputs and output.
        manifest_every: rows per manifest part (a part is also written every 10 s).

    Returns a :class:`MapReport`. Actors are restarted and their batches retried when a worker
    process or node dies (Ray Data's actor fault tolerance), so no item is lost; a file that
    cannot be decoded or processed is recorded as ``failed`` and retried by the next run.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if format is not None and format not in ("png", "jpg", "webp", "tif", "bmp"):
        raise ValueError(f"format must be png, jpg, webp, tif or bmp, got {format!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    name, model_str, opts = _job_for(task, model, dict(options or {}))
    start = time.perf_counter()
    sources = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    in_fs, files = list_images(sources, filesystem)
    if not files:
        raise ValueError(f"no input images found in {', '.join(map(str, sources))}")
    out_fs, out_root = resolve_filesystem(output, output_filesystem)
    if any(f.path == out_root for f in files):
        raise ValueError(f"the output {output} is an input file; give an output folder")

    ray = _ray(address)
    n_workers, cpus, gpus = _pool(ray, workers, cpus_per_worker, gpus_per_worker)
    job = Job(name, model_str, opts, out_root, format, quality, threads=max(int(cpus), 1))
    todo = _pending(files, job, out_fs, out_root, skip_existing)
    report = MapReport(total=len(files), skipped=len(files) - len(todo), manifest=f"{out_root}/{MANIFEST_DIR}")
    if not todo:
        report.seconds = time.perf_counter() - start
        return report
    report.workers = min(n_workers, -(-len(todo) // batch_size))
    writer = ManifestWriter(out_fs, out_root, every=manifest_every)
    bar = _progress_bar(progress, len(todo))
    try:
        for row in _run_dataset(ray, todo, job, in_fs, out_fs, report.workers, cpus, gpus, batch_size):
            row["settings"], row["run"] = job.signature, writer.run
            writer.add(row)
            if row["status"] == "ok":
                report.done += 1
            else:
                report.failures.append((row["input"], row["error"]))
            if bar is not None:
                bar.update(1)
    finally:
        writer.flush()
        if bar is not None:
            bar.close()
    report.seconds = time.perf_counter() - start
    return report


def _pending(files: list[InputFile], job: Job, out_fs: Any, out_root: str, skip_existing: bool) -> list[InputFile]:
    """The files not yet done: no ``ok`` manifest row with these settings, size and mtime whose
    output exists (and, with ``skip_existing``, no output file under the input's name)."""
    rows = read_manifest(out_root, out_fs)
    existing = _existing_outputs(out_fs, out_root) if rows or skip_existing else set()
    finished = {(r["input"], r["size"], r["mtime_ns"]) for r in rows
                if r["status"] == "ok" and r.get("settings") == job.signature and r["output"] in existing}
    todo = []
    for f in files:
        if (f.path, f.size, f.mtime_ns) in finished:
            continue
        if skip_existing:
            p = PurePosixPath(f.rel)
            names = {p.with_suffix(s).as_posix() for s in (f".{job.format}" if job.format else p.suffix, ".png")}
            if names & existing:
                continue
        todo.append(f)
    return todo


def _progress_bar(enabled: bool | None, total: int) -> Any:
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    tqdm = require("tqdm", "distributed")
    return tqdm.tqdm(total=total, unit="img", desc="pyfill", file=sys.stderr)


def _run_dataset(ray: Any, todo: list[InputFile], job: Job, in_fs: Any, out_fs: Any, workers: int,
                 cpus: float, gpus: float, batch_size: int) -> Iterator[dict[str, Any]]:
    """Manifest rows as the actors finish them (any order)."""
    data = require("ray.data", "distributed")
    ctx = data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = False
    items = [{"path": f.path, "rel": f.rel, "size": f.size, "mtime_ns": f.mtime_ns} for f in todo]
    blocks = max(min(len(items) // batch_size, 200), 1)
    ds = data.from_items(items, override_num_blocks=blocks)
    ds = ds.map_batches(ImageWorker, batch_size=batch_size, batch_format="numpy",
                        fn_constructor_kwargs={"job": job, "in_fs": in_fs, "out_fs": out_fs},
                        compute=data.ActorPoolStrategy(size=workers), num_cpus=cpus, num_gpus=gpus)
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
        for i in range(len(batch["path"])):
            yield {"input": str(batch["path"][i]), "rel": str(batch["rel"][i]), "size": int(batch["size"][i]),
                   "mtime_ns": int(batch["mtime_ns"][i]), "output": str(batch["output"][i]),
                   "status": str(batch["status"][i]), "error": str(batch["error"][i]),
                   "extra": json.loads(str(batch["extra"][i])), "notes": str(batch["notes"][i]),
                   "seconds": float(batch["seconds"][i]), "worker": str(batch["worker"][i])}


# ---- the command line --------------------------------------------------------------------------
def run_cli_on_ray(command: str, args: argparse.Namespace) -> int:
    """``pyfill restore|colorize INPUT... -o OUT --ray [ADDRESS]``: the command's arguments
    (``inputs``, ``output``, ``model``, ``backend``, ``format``, ``quality``,
    ``skip_existing``; restore's ``tile``; colorize's ``scores``) mapped with
    :func:`map_images` on the cluster at ``args.ray`` (empty: the running one, ``RAY_ADDRESS``,
    or a local instance). Prints one summary line; returns 0, or 1 when an item failed."""
    if command not in ("restore", "colorize"):
        raise ValueError(f"--ray runs restore and colorize, not {command}")
    options: dict[str, Any] = {"backend": args.backend}
    if command == "restore" and getattr(args, "tile", -1) >= 0:
        options["tile"] = args.tile
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # the summary line says what was done
    out = str(args.output)
    if "://" not in out and Path(out).suffix and not Path(out).is_dir():
        raise ValueError(f"-o {out} names a file; with --ray give an output folder")
    report = map_images(args.inputs, out, command, model=args.model, options=options, format=args.format,
                        quality=args.quality, skip_existing=args.skip_existing, address=args.ray or None)
    for src, error in report.failures:
        print(f"pyfill {command}: skipped {src}: {error}", file=sys.stderr)
    if command == "colorize" and getattr(args, "scores", None):
        latest = {r["input"]: r for r in read_manifest(out) if r["status"] == "ok"}
        with open(args.scores, "w") as f:
            f.write("input,output,realness\n")
            for src, r in sorted(latest.items()):
                score = r["extra"].get("realness")
                f.write(f"{src},{out.rstrip('/')}/{r['output']},{'' if score is None else f'{score:.6f}'}\n")
    verb = "restored" if command == "restore" else "colourised"
    where = f" on {report.workers} Ray worker{'s' if report.workers != 1 else ''}" if report.workers else ""
    print(f"{verb} {report.done} of {report.total} images{where} -> {out}"
          + (f"; {report.skipped} done before" if report.skipped else "")
          + (f"; {report.failed} skipped" if report.failed else ""))
    return 1 if report.failed else 0


# ---- video -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Segment:
    """One run of whole GOPs: frames with ``start <= pts < end`` (``end`` None: to the end) of
    the source's first video stream, in its time base; ``start`` is a keyframe's pts."""

    index: int
    start: int
    end: int | None


def keyframe_segments(src: str | os.PathLike[str], segment_seconds: float = 10.0) -> list[Segment]:
    """Split the first video stream of ``src`` at keyframes into segments of at least
    ``segment_seconds`` (the last may be shorter), reading packets only (nothing is decoded)."""
    av = require("av", "video")
    if segment_seconds <= 0:
        raise ValueError(f"segment_seconds must be > 0, got {segment_seconds}")
    with av.open(str(src)) as container:
        if not container.streams.video:
            raise ValueError(f"{src}: no video stream")
        stream = container.streams.video[0]
        tb = float(stream.time_base)
        keys = sorted({p.pts for p in container.demux(stream) if p.pts is not None and p.is_keyframe})
    if not keys:
        raise ValueError(f"{src}: no keyframe in the video stream")
    starts = [keys[0]]
    for k in keys[1:]:
        if (k - starts[-1]) * tb >= segment_seconds:
            starts.append(k)
    return [Segment(i, s, starts[i + 1] if i + 1 < len(starts) else None) for i, s in enumerate(starts)]


VideoFrameFn = Callable[[list[np.ndarray]], list[np.ndarray]]


def _frame_fn(task: Any, options: dict[str, Any]) -> VideoFrameFn:
    """A frame batch function from a task name (:func:`pyfill.tasks.frame_processor`), an Engine
    (re-created here from its model file) or such a function."""
    if isinstance(task, str):
        from pyfill.tasks import frame_processor

        return frame_processor(task, **options)
    if isinstance(task, tuple) and task[0] == "engine":
        from pyfill.engine import Engine

        engine = Engine(task[1], **options)
        return lambda frames: [r.image for r in engine.run(list(frames))]
    if callable(task):
        return cast(VideoFrameFn, task)
    raise TypeError(f"task must be a task name, a pyfill.Engine or a frame function, got {type(task).__name__}")


def encode_segment(src: str, segment: Segment, dst: str, task: Any, options: dict[str, Any], *,
                   codec: str = "libx264", crf: int = 18, batch: int = 8) -> int:
    """Decode ``segment`` of ``src`` (seek to its keyframe, frames in presentation order with
    ``start <= pts < end``), run the frames through ``task`` in batches of ``batch`` and encode
    them to ``dst`` with the source's timestamps. Returns the number of frames written."""
    av = require("av", "video")
    fn = _frame_fn(task, options)
    written = 0
    with av.open(src) as source, av.open(dst, "w") as out:
        vs = source.streams.video[0]
        vs.thread_type = "AUTO"
        source.seek(segment.start, stream=vs, backward=True, any_frame=False)
        ostream = None
        pending: list[tuple[int, np.ndarray]] = []

        def flush() -> None:
            nonlocal ostream, written
            if not pending:
                return
            images = fn([img for _, img in pending])
            if len(images) != len(pending):
                raise TypeError(f"the frame function returned {len(images)} frames for {len(pending)}")
            for (pts, _), image in zip(pending, images):
                if ostream is None:
                    ostream = out.add_stream(codec, rate=vs.average_rate or vs.guessed_rate)
                    ostream.width, ostream.height = image.shape[1], image.shape[0]
                    ostream.pix_fmt = "yuv420p"
                    ostream.time_base = vs.time_base
                    ostream.codec_context.time_base = vs.time_base
                    ostream.options = {"crf": str(crf)} if codec in ("libx264", "libx265") else {}
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
                frame.pts, frame.time_base = pts, vs.time_base
                out.mux(ostream.encode(frame))
                written += 1
            pending.clear()

        for frame in source.decode(vs):
            if frame.pts is None or frame.pts < segment.start:
                continue
            if segment.end is not None and frame.pts >= segment.end:
                break
            pending.append((frame.pts, frame.to_ndarray(format="rgb24")))
            if len(pending) >= batch:
                flush()
        flush()
        if ostream is not None:
            out.mux(ostream.encode(None))
    return written


def concat_segments(src: str | os.PathLike[str], segments: Sequence[str | os.PathLike[str]],
                    dst: str | os.PathLike[str]) -> Path:
    """Join processed video segments (in order) with every other stream of ``src`` (audio,
    subtitles) into ``dst``: all packets are copied, nothing is decoded or encoded. The
    segments must come from one encoder setting (the same codec parameters).

    Raises ValueError when the segments' codec parameters differ."""
    import heapq

    av = require("av", "video")
    dst = Path(dst)
    parts = [av.open(str(s)) for s in segments]
    source = av.open(str(src))
    try:
        first = parts[0].streams.video[0]
        for p, s in zip(parts[1:], segments[1:]):
            v = p.streams.video[0]
            if (v.codec_context.name, v.codec_context.extradata, v.width, v.height) != \
                    (first.codec_context.name, first.codec_context.extradata, first.width, first.height):
                raise ValueError(f"{s}: its codec parameters differ from the first segment's; segments must be "
                                 "encoded with one setting to be joined without re-encoding")
        others = [s for s in source.streams if s.type in ("audio", "subtitle")]
        tmp = dst.with_name(f".{dst.stem}.{uuid.uuid4().hex[:8]}{dst.suffix}")
        with av.open(str(tmp), "w") as out:
            ovideo = out.add_stream_from_template(first)
            omap = {s.index: out.add_stream_from_template(s) for s in others}

            def video_packets() -> Iterator[tuple[float, int, Any]]:
                last = None
                for part in parts:
                    for pkt in part.demux(part.streams.video[0]):
                        if pkt.dts is None:
                            continue
                        dts = pkt.dts * pkt.time_base
                        if last is not None and dts <= last:
                            raise ValueError("the segments' decode timestamps overlap; they cannot be joined")
                        last = dts
                        yield float(dts), 0, pkt

            def other_packets() -> Iterator[tuple[float, int, Any]]:
                if not others:
                    return
                for pkt in source.demux(others):
                    if pkt.dts is not None:
                        yield float(pkt.dts * pkt.time_base), 1, pkt

            for _, kind, pkt in heapq.merge(video_packets(), other_packets(), key=lambda t: (t[0], t[1])):
                pkt.stream = ovideo if kind == 0 else omap[pkt.stream.index]
                out.mux(pkt)
        os.replace(tmp, dst)
    finally:
        for p in parts:
            p.close()
        source.close()
    return dst


@dataclass
class VideoReport:
    """What :func:`map_video` did: ``segments``, ``frames`` written, wall ``seconds``."""

    output: str
    segments: int
    frames: int
    seconds: float


def map_video(src: str | os.PathLike[str], dst: str | os.PathLike[str], task: Any = "restore", *,
              options: dict[str, Any] | None = None, segment_seconds: float = 10.0,
              codec: str = "libx264", crf: int = 18, batch: int = 8, cpus_per_worker: float | None = None, gpus_per_worker: float | None = None,
              address: str | None = None, keep_segments: bool = False) -> VideoReport:
    """Process a video on a Ray cluster: split its video stream at keyframes into segments of at
    least ``segment_seconds``, process the segments in parallel Ray tasks (each decodes its
    frames from ``src``, runs ``task`` on them and encodes them with ``codec``/``crf`` and the
    source's timestamps) and join them with the source's audio and subtitle streams, which are
    copied packet for packet (never re-encoded). ``src``, ``dst`` and the segment folder beside
    ``dst`` must be on storage every node reads (one machine: any local path).

    ``task``: a task name, a :class:`pyfill.Engine` (re-created in each task from its model
    file) or a picklable ``f(list of RGB uint8 (H, W, 3)) -> list of the same``.
    """
    start = time.perf_counter()
    dst = Path(dst)
    if Path(src).resolve() == dst.resolve():
        raise ValueError(f"the output {dst} would overwrite the input")
    segments = keyframe_segments(src, segment_seconds)
    spec: Any = task
    if hasattr(task, "manifest") and hasattr(task, "path"):
        spec = ("engine", str(task.path))
    ray = _ray(address)
    _, cpus, gpus = _pool(ray, None, cpus_per_worker, gpus_per_worker)
    folder = dst.with_name(f".{dst.name}.segments")
    folder.mkdir(parents=True, exist_ok=True)
    names = [str(folder / f"{s.index:05d}.mp4") for s in segments]
    remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=3)(encode_segment)
    refs = [remote.remote(str(src), s, n, spec, dict(options or {}), codec=codec, crf=crf, batch=batch)
            for s, n in zip(segments, names)]
    frames = sum(ray.get(refs))
    concat_segments(src, names, dst)
    if not keep_segments:
        for n in names:
            os.remove(n)
        folder.rmdir()
    return VideoReport(str(dst), len(segments), frames, time.perf_counter() - start)
