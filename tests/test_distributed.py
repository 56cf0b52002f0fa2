"""Ray batch inference on a local two-CPU Ray instance: outputs equal the single-process CLI's
files and ``pyfill.restore`` pixel for pixel, a killed worker loses no item, a rerun does no work."""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import pyfill
from pyfill.cli import build_parser, main
from pyfill.images import read_image, write_image

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
from pyfill.distributed import list_images, map_images, read_manifest, resolve_filesystem, run_cli_on_ray  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _images(folder: Path, n_rgb: int, size: tuple[int, int] = (48, 64)) -> list[Path]:
    """RGB PNGs in two sub-folders, plus a gray PNG, an RGBA PNG, a 16-bit PNG and a JPEG."""
    rng = np.random.default_rng(7)
    h, w = size
    paths = []
    for i in range(n_rgb):
        paths.append(write_image(folder / f"part{i % 2}" / f"rgb{i:03d}.png", rng.integers(0, 256, (h, w, 3), np.uint8)))
    paths.append(write_image(folder / "gray.png", rng.integers(0, 256, (h, w), np.uint8)))
    paths.append(write_image(folder / "alpha.png", rng.integers(0, 256, (h, w, 4), np.uint8)))
    paths.append(write_image(folder / "deep.png", rng.integers(0, 65536, (h, w, 3), np.uint16)))
    paths.append(write_image(folder / "photo.jpg", rng.integers(0, 256, (h + 8, w, 3), np.uint8)))
    return paths


@pytest.fixture(scope="module")
def mapped(cluster, tmp_path_factory: pytest.TempPathFactory):
    """One Ray run over a mixed folder: (inputs folder, Ray output folder, report)."""
    root = tmp_path_factory.mktemp("ray")
    _images(root / "in", n_rgb=9)
    report = map_images(root / "in", root / "out", "restore", batch_size=3, progress=False)
    return root / "in", root / "out", report


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and "_pyfill" not in p.parts)


def test_outputs_equal_the_single_process_cli_file_by_file(mapped, tmp_path: Path) -> None:
    src, out, report = mapped
    assert (report.total, report.done, report.failed, report.skipped) == (13, 13, 0, 0)
    assert main(["restore", str(src), "-o", str(tmp_path / "cli")]) == 0
    assert _files(out) == _files(tmp_path / "cli")
    assert "deep.png" in _files(out) and "photo.jpg" in _files(out)
    for rel in _files(out):
        assert (out / rel).read_bytes() == (tmp_path / "cli" / rel).read_bytes(), rel
        if rel.endswith(".png"):
            assert np.array_equal(read_image(out / rel), pyfill.restore(read_image(src / rel))), rel


def test_manifest_records_each_item_once(mapped) -> None:
    src, out, _ = mapped
    rows = read_manifest(out)
    assert sorted(r["rel"] for r in rows) == _files(src)
    assert {r["status"] for r in rows} == {"ok"} and all(r["worker"] and r["seconds"] > 0 for r in rows)
    assert all((out / r["output"]).is_file() for r in rows)


def test_rerun_does_no_work_and_redoes_a_changed_input(mapped, tmp_path: Path) -> None:
    src, out, _ = mapped
    stamps = {rel: (out / rel).stat().st_mtime_ns for rel in _files(out)}
    again = map_images(src, out, "restore", batch_size=3, progress=False)
    assert (again.done, again.skipped, again.workers) == (0, 13, 0)
    assert {rel: (out / rel).stat().st_mtime_ns for rel in _files(out)} == stamps

    changed = src / "part0" / "rgb000.png"
    new = np.full((48, 64, 3), 90, np.uint8)
    write_image(changed, new)
    third = map_images(src, out, "restore", batch_size=3, progress=False)
    assert (third.done, third.skipped) == (1, 12)
    assert np.array_equal(read_image(out / "part0" / "rgb000.png"), pyfill.restore(new))


def test_a_killed_worker_loses_no_item(cluster, tmp_path: Path) -> None:
    _images(tmp_path / "in", n_rgb=36, size=(96, 128))
    result: dict = {}

    def run() -> None:
        result["report"] = map_images(tmp_path / "in", tmp_path / "out", "restore", batch_size=2,
                                      progress=False, manifest_every=1)

    thread = threading.Thread(target=run)
    thread.start()
    killed = None
    deadline = time.monotonic() + 240
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        rows = read_manifest(tmp_path / "out")
        if rows:
            killed = int(rows[0]["worker"].rsplit(":", 1)[1])
            assert killed != os.getpid(), "the item ran in the test's own process, not in a Ray worker"
            done_when_killed = len(rows)
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    thread.join(timeout=300)
    assert killed is not None and done_when_killed < 40, "the run ended before a worker could be killed"
    report = result["report"]
    assert (report.done, report.failed) == (40, 0)
    rows = read_manifest(tmp_path / "out")
    assert sorted(r["rel"] for r in rows) == _files(tmp_path / "in")
    with pytest.raises(ProcessLookupError, match="No such process"):
        os.kill(killed, 0)
    for rel in _files(tmp_path / "in")[:6]:
        assert np.array_equal(read_image(tmp_path / "out" / rel), pyfill.restore(read_image(tmp_path / "in" / rel)))


def _cli_args(*argv: str) -> argparse.Namespace:
    args = build_parser().parse_args(list(argv))
    args.ray = ""
    return args


def test_cli_form_colorize_scores_and_bad_files(cluster, tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(3)
    grays = {f"g{i}.png": rng.integers(0, 256, (32, 40), np.uint8) for i in range(3)}
    for name, arr in grays.items():
        write_image(tmp_path / "in" / name, arr)
    (tmp_path / "in" / "broken.png").write_bytes(b"not an image")
    args = _cli_args("colorize", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                     "--scores", str(tmp_path / "scores.csv"))
    assert run_cli_on_ray("colorize", args) == 1
    printed = capsys.readouterr()
    assert "colourised 3 of 4 images" in printed.out and "broken.png" in printed.err
    lines = (tmp_path / "scores.csv").read_text().splitlines()
    assert lines[0] == "input,output,realness" and len(lines) == 4
    for line in lines[1:]:
        src, dst, score = line.split(",")
        expected = pyfill.colorize(read_image(src))
        assert np.array_equal(read_image(dst), expected.image)
        assert abs(float(score) - expected.realness) < 1e-6
    assert run_cli_on_ray("colorize", args) == 1
    again = capsys.readouterr().out
    assert "colourised 0 of 4 images" in again and "3 done before" in again


def test_an_engine_maps_with_its_tile_settings(cluster, tmp_path: Path) -> None:
    engine = pyfill.Engine("restore", tile=80)
    image = np.random.default_rng(5).integers(0, 256, (120, 200, 3), np.uint8)
    write_image(tmp_path / "in" / "big.png", image)
    report = map_images(tmp_path / "in", tmp_path / "out", engine, progress=False, format="bmp")
    assert report.done == 1
    assert np.array_equal(read_image(tmp_path / "out" / "big.bmp"), engine(image))


def test_filesystems_and_bad_arguments(tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    _images(tmp_path, n_rgb=2)
    fs, files = list_images([tmp_path.as_uri()])
    fs2, files2 = list_images([str(tmp_path)], filesystem=fsspec.filesystem("file"))
    assert [f.rel for f in files] == [f.rel for f in files2] == _files(tmp_path)
    assert fs.type_name == "local" and fs2.type_name.startswith("py::fsspec")
    assert resolve_filesystem("relative/dir")[1] == (Path.cwd() / "relative/dir").as_posix()
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        list_images([tmp_path / "missing"])
    with pytest.raises(ValueError, match="unknown task 'sharpen'"):
        map_images(tmp_path, tmp_path / "out", "sharpen")
    with pytest.raises(TypeError, match="task must be a task name or a pyfill.Engine"):
        map_images(tmp_path, tmp_path / "out", 3)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        map_images(tmp_path, tmp_path / "out", batch_size=0)
    with pytest.raises(ValueError, match="names a file; with --ray give an output folder"):
        run_cli_on_ray("restore", _cli_args("restore", str(tmp_path), "-o", str(tmp_path / "x.png")))


# ---- video -------------------------------------------------------------------------------------
def _clip(path: Path, frames: int = 90, fps: int = 30, gop: int = 15, w: int = 64, h: int = 48) -> Path:
    """An H.264 + AAC MP4 with a keyframe every ``gop`` frames and a 440 Hz tone."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.options = {"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"}
        audio = out.add_stream("aac", rate=16000)
        audio.layout = "mono"
        for i in range(frames):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = i * 3 % 256
            img[:, : i % w] = 200
            img[h // 3:, w // 3: 2 * w // 3, 1] = 120
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(vs.encode(frame))
        out.mux(vs.encode(None))
        n = 16000 * frames // fps
        tone = (np.sin(np.arange(n) / 16000 * 2 * np.pi * 440) * 0.3).astype(np.float32)[None]
        for s in range(0, n, 1024):
            af = av.AudioFrame.from_ndarray(tone[:, s:s + 1024], format="fltp", layout="mono")
            af.sample_rate, af.pts = 16000, s
            out.mux(audio.encode(af))
        out.mux(audio.encode(None))
    return path


def _streams(path: Path) -> tuple[list[int], list[np.ndarray], list[bytes], list[int]]:
    """(video pts, RGB frames, audio packet bytes, keyframe pts) of a file."""
    import av

    with av.open(str(path)) as c:
        decoded = [(f.pts, f.to_ndarray(format="rgb24")) for f in c.decode(video=0)]
    with av.open(str(path)) as c:
        packets = [(p.stream.type, p.pts, p.is_keyframe, bytes(p)) for p in c.demux() if p.dts is not None]
    audio = [data for kind, _, _, data in packets if kind == "audio"]
    keys = [pts for kind, pts, key, _ in packets if kind == "video" and key]
    return [p for p, _ in decoded], [f for _, f in decoded], audio, keys


def test_video_segments_at_keyframes_processed_in_parallel_and_joined(cluster, tmp_path: Path) -> None:
    from pyfill.distributed import keyframe_segments, map_video
    from pyfill.tasks import frame_processor

    src = _clip(tmp_path / "clip.mp4")
    pts, frames, audio, keys = _streams(src)
    segments = keyframe_segments(src, segment_seconds=1.0)
    assert [s.start for s in segments] == keys[::2] and len(segments) == 3  # keyframes every 0.5 s
    assert [s.end for s in segments] == [s.start for s in segments[1:]] + [None]

    report = map_video(src, tmp_path / "out.mp4", "restore", segment_seconds=1.0)
    assert (report.segments, report.frames) == (3, 90)
    out_pts, out_frames, out_audio, _ = _streams(tmp_path / "out.mp4")
    assert out_pts == pts
    assert out_audio == audio  # copied packet for packet
    expected = frame_processor("restore")(frames)
    errors = [np.abs(e.astype(np.int16) - o).mean() for e, o in zip(expected, out_frames)]
    assert max(errors) < 3.0, max(errors)  # one H.264 encode at crf 18 away from the restored frames
    assert not (tmp_path / ".out.mp4.segments").exists()


def test_video_segments_with_other_settings_are_refused(tmp_path: Path) -> None:
    from pyfill.distributed import concat_segments, encode_segment, keyframe_segments

    src = _clip(tmp_path / "clip.mp4", frames=30)
    first, second = keyframe_segments(src, segment_seconds=0.5)[:2]
    encode_segment(str(src), first, str(tmp_path / "a.mp4"), lambda f: f, {})
    encode_segment(str(src), second, str(tmp_path / "b.mp4"), lambda f: [x[:32] for x in f], {})
    with pytest.raises(ValueError, match="codec parameters differ from the first segment's"):
        concat_segments(src, [tmp_path / "a.mp4", tmp_path / "b.mp4"], tmp_path / "out.mp4")
    with pytest.raises(ValueError, match="segment_seconds must be > 0"):
        keyframe_segments(src, 0)


def test_settings_hash_tells_array_options_apart() -> None:
    from pyfill.distributed import Job

    a = np.zeros((64, 64, 3), np.uint8)
    b = a.copy()
    b[40, 40] = 1  # the same printed form, other contents
    assert str(a) == str(b)
    job = Job("swap", None, {"source": a}, "/out", None, 95, 1)
    assert job.signature == Job("swap", None, {"source": a.copy()}, "/out", None, 95, 1).signature
    assert job.signature != Job("swap", None, {"source": b}, "/out", None, 95, 1).signature
    assert job.signature != Job("swap", None, {"source": a}, "/out", "png", 95, 1).signature
