"""pyfill.video on the CPU, with clips these tests write themselves with PyAV (a moving
procedural scene, a sine-tone audio track). Output pixels are checked against an Engine run per
frame, through lossless FFV1 where they must match exactly."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

import pyfill  # noqa: E402
from pyfill.video import (  # noqa: E402
    ChromaSmoother,
    VideoInterrupted,
    chroma_change,
    frames,
    process,
    stream,
)


# ---- clips -----------------------------------------------------------------------------------
def picture(i: int, w: int, h: int) -> np.ndarray:
    """A moving scene: diagonal colour ramps that shift with i and a bright square moving right."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([(xx * 3 + i * 4) % 256, (yy * 4 + 40) % 256, (xx + yy + 90) % 256], -1).astype(np.uint8)
    x0 = (i * 2) % (w - 10)
    img[h // 3:h // 3 + 10, x0:x0 + 10] = (240, 220, 40)
    return img


def make_clip(path: Path, *, n: int = 30, w: int = 64, h: int = 48, fps: int = 30, codec: str = "libx264",
              pix_fmt: str = "yuv420p", audio: bool = True, rotation: int = 0, pts: list[int] | None = None,
              time_base: Fraction | None = None, colour: dict[str, int] | None = None,
              images: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Write a clip with PyAV; returns the RGB frames given to the encoder."""
    images = images if images is not None else [picture(i, w, h) for i in range(n)]
    time_base = time_base or Fraction(1, fps)
    pts = pts if pts is not None else list(range(len(images)))
    with av.open(str(path), "w") as c:
        v = c.add_stream(codec, rate=fps)
        v.width, v.height, v.pix_fmt = images[0].shape[1], images[0].shape[0], pix_fmt
        v.time_base = v.codec_context.time_base = time_base
        for k, val in (colour or {}).items():
            setattr(v.codec_context, k, val)
        if rotation:
            v.set_display_rotation(rotation)
        a = None
        if audio:
            a = c.add_stream("aac", rate=48000)
            a.layout = "mono"
        for img, p in zip(images, pts, strict=True):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pix_fmt != "rgb24":
                f = f.reformat(format=pix_fmt, dst_colorspace=(colour or {}).get("colorspace"),
                               dst_color_range=(colour or {}).get("color_range"))
            f.pts, f.time_base = p, time_base
            c.mux(v.encode(f))
        c.mux(v.encode(None))
        if a is not None:
            sr = 48000
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(sr * len(images) // fps) / sr)).astype(np.float32)
            for s in range(0, tone.size, 1024):
                af = av.AudioFrame.from_ndarray(tone[None, s:s + 1024], format="flt", layout="mono")
                af.sample_rate, af.pts, af.time_base = sr, s, Fraction(1, sr)
                c.mux(a.encode(af))
            c.mux(a.encode(None))
    return images


def decode_all(path: Path) -> tuple[list[np.ndarray], list[float]]:
    """(RGB frames, presentation times in seconds) of the first video stream, decoded by PyAV."""
    with av.open(str(path)) as c:
        out = [(f.to_ndarray(format="rgb24"), float(f.pts * f.time_base)) for f in c.decode(video=0)]
    return [o[0] for o in out], [o[1] for o in out]


def audio_packets(path: Path) -> list[tuple[bytes, float]]:
    with av.open(str(path)) as c:
        return [(bytes(p), float(p.pts * p.time_base)) for p in c.demux(audio=0) if p.size]


def identity(batch: list[np.ndarray]) -> list[np.ndarray]:
    return [f.copy() for f in batch]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """mp4: H.264 + AAC tone, 40 frames 64 x 48 at 30 FPS, rotation 90 degrees."""
    path = tmp_path_factory.mktemp("clip") / "in.mp4"
    return path, make_clip(path, n=40, rotation=90)


@pytest.fixture(scope="module")
def lossless_clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[np.ndarray]]:
    """mkv: FFV1 RGB (lossless), 12 frames 64 x 48, no audio."""
    path = tmp_path_factory.mktemp("ffv1") / "in.mkv"
    return path, make_clip(path, n=12, codec="ffv1", pix_fmt="bgr0", audio=False)


# ---- what is kept ----------------------------------------------------------------------------
def test_count_timestamps_rotation_and_audio_are_kept(clip, tmp_path: Path) -> None:
    src, _ = clip
    dst = tmp_path / "out.mp4"
    report = process(src, dst, identity, batch=3)
    in_frames, in_times = decode_all(src)
    out_frames, out_times = decode_all(dst)
    assert report.frames_in == report.frames_out == len(out_frames) == len(in_frames) == 40
    assert report.corrupt == 0 and report.dropped == 0 and report.warnings == []
    assert out_times == pytest.approx(in_times, abs=1e-6)
    with av.open(str(dst)) as c:
        assert next(c.decode(video=0)).rotation == 90
        assert c.streams.video[0].codec_context.name == "h264"
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p"
    assert audio_packets(dst) == audio_packets(src)          # byte-equal, same times
    assert len(audio_packets(src)) > 40
    # H.264 at CRF 18 of an identity pass: close to the decoded input
    diffs = [np.abs(a.astype(int) - b).mean() for a, b in zip(in_frames, out_frames, strict=True)]
    assert max(diffs) < 4.0
    assert not list(tmp_path.glob(".*partial*"))


def test_subtitles_are_copied(tmp_path: Path) -> None:
    src, dst = tmp_path / "subs.mkv", tmp_path / "out.mkv"
    with av.open(str(src), "w") as c:
        v = c.add_stream("ffv1", rate=10)
        v.width, v.height, v.pix_fmt = 32, 24, "bgr0"
        subs = c.add_mux_stream("subrip", time_base=Fraction(1, 1000))
        for i in range(10):
            f = av.VideoFrame.from_ndarray(picture(i, 32, 24), format="rgb24").reformat(format="bgr0")
            f.pts, f.time_base = i, Fraction(1, 10)
            c.mux(v.encode(f))
            if i % 3 == 0:
                p = av.Packet(f"line {i}".encode())
                p.stream, p.time_base, p.pts, p.dts, p.duration = subs, Fraction(1, 1000), i * 100, i * 100, 200
                c.mux(p)
        c.mux(v.encode(None))
    process(src, dst, identity, codec="ffv1")
    with av.open(str(dst)) as c:
        got = [(bytes(p), p.pts, p.duration) for p in c.demux(subtitles=0) if p.size]
    assert got == [(f"line {i}".encode(), i * 100, 200) for i in (0, 3, 6, 9)]


def test_variable_frame_rate_is_kept(tmp_path: Path) -> None:
    src, dst = tmp_path / "vfr.mkv", tmp_path / "out.mkv"
    pts = [0, 33, 66, 150, 183, 400, 433, 466, 700, 1000]      # milliseconds, irregular
    make_clip(src, n=len(pts), pts=pts, time_base=Fraction(1, 1000), audio=False)
    process(src, dst, identity, batch=4)
    _, times = decode_all(dst)
    assert times == pytest.approx([p / 1000 for p in pts], abs=1e-6)


def test_colour_tags_and_matrix_are_kept(tmp_path: Path) -> None:
    bt709 = {"colorspace": 1, "color_primaries": 1, "color_trc": 1, "color_range": 1}
    src, dst = tmp_path / "709.mkv", tmp_path / "out.mkv"
    images = make_clip(src, n=6, codec="ffv1", pix_fmt="yuv444p", colour=bt709, audio=False)
    process(src, dst, identity, codec="ffv1", pix_fmt="yuv444p")
    with av.open(str(dst)) as c:
        cc = c.streams.video[0].codec_context
        assert {k: int(getattr(cc, k)) for k in bt709} == bt709
    # RGB -> YUV (BT.709, limited) -> RGB twice: within rounding of the original pictures
    out, _ = decode_all(dst)
    with av.open(str(dst)) as c:
        out709 = [f.to_ndarray(format="rgb24", src_colorspace=1, src_color_range=1) for f in c.decode(video=0)]
    for img, o in zip(images, out709, strict=True):
        assert np.abs(img.astype(int) - o).max() <= 3
    assert len(out) == 6


@pytest.mark.parametrize("suffix,codec", [(".webm", "vp9"), (".mov", "h264"), (".mkv", "h264")])
def test_other_containers(clip, tmp_path: Path, suffix: str, codec: str) -> None:
    src, _ = clip
    dst = tmp_path / f"out{suffix}"
    report = process(src, dst, identity)
    with av.open(str(dst)) as c:
        assert c.streams.video[0].codec_context.name == codec
        assert sum(1 for _ in c.decode(video=0)) == 40
    if suffix == ".webm":                                     # WebM cannot hold AAC: said, not hidden
        assert any("cannot be stored" in w for w in report.warnings)
    else:
        # mkv/mov cannot start before 0: the muxer shifts every stream by the AAC priming delay
        # alike (sync kept); Matroska stores milliseconds
        got, want = audio_packets(dst), audio_packets(src)
        shift = decode_all(dst)[1][0] - decode_all(src)[1][0]
        assert [b for b, _ in got] == [b for b, _ in want]
        assert [t - shift for _, t in got] == pytest.approx([t for _, t in want], abs=1e-3)


def test_image_sequences_in_and_out(tmp_path: Path) -> None:
    from PIL import Image

    folder = tmp_path / "seq"
    folder.mkdir()
    images = [picture(i, 40, 30) for i in range(7)]
    for i, img in enumerate(images, 1):
        Image.fromarray(img).save(folder / f"frame_{i:05d}.png")
    out_seq = tmp_path / "out" / "frame_%05d.png"
    report = process(folder / "frame_%05d.png", out_seq, lambda b: [255 - f for f in b], batch=2)
    assert report.frames_out == 7
    written = sorted((tmp_path / "out").glob("frame_*.png"))
    assert [p.name for p in written] == [f"frame_{i:05d}.png" for i in range(1, 8)]
    for img, p in zip(images, written, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(p).convert("RGB")), 255 - img)
    # a sequence in, a lossless video out, at the frame rate asked for
    video = tmp_path / "seq.mkv"
    process(folder / "frame_%05d.png", video, identity, codec="ffv1", fps=10)
    decoded, times = decode_all(video)
    for img, d in zip(images, decoded, strict=True):
        np.testing.assert_array_equal(d, img)
    assert times == pytest.approx([i / 10 for i in range(7)])


# ---- output pixels against an Engine run per frame ----------------------------------------
@pytest.mark.parametrize("batch", [1, 4])
def test_restore_matches_engine_per_frame(lossless_clip, tmp_path: Path, batch: int) -> None:
    src, images = lossless_clip
    dst = tmp_path / "restored.mkv"
    report = process(src, dst, "restore", batch=batch, codec="ffv1")
    engine = pyfill.Engine.from_pretrained("restore", tile=0, static_shapes=True, throughput=True)  # as the task builds it
    reference = [engine(img) for img in images]
    out, _ = decode_all(dst)
    assert report.frames_out == len(out) == len(images)
    for ref, o in zip(reference, out, strict=True):
        if batch == 1:
            np.testing.assert_array_equal(o, ref)
        else:                                                 # batched inference: float summation order
            assert np.abs(o.astype(int) - ref).max() <= 1


def test_restore_at_360p_matches_the_whole_frame_engine(tmp_path: Path) -> None:
    src, dst = tmp_path / "360p.mkv", tmp_path / "out.mkv"
    images = make_clip(src, n=2, w=640, h=360, codec="ffv1", pix_fmt="bgr0", audio=False)
    process(src, dst, "restore", codec="ffv1")
    whole = pyfill.Engine.from_pretrained("restore", tile=0, static_shapes=True, throughput=True)
    for img, o in zip(images, decode_all(dst)[0], strict=True):
        np.testing.assert_array_equal(o, whole(img))


def test_colorize_without_smoothing_matches_engine_fill(lossless_clip, tmp_path: Path) -> None:
    src, images = lossless_clip
    dst = tmp_path / "colour.mkv"
    process(src, dst, "colorize", batch=1, codec="ffv1", smooth=False)
    engine = pyfill.Engine.from_pretrained("colorize", static_shapes=True, throughput=True)  # as the task builds it
    out, _ = decode_all(dst)
    for img, o in zip(images, out, strict=True):
        np.testing.assert_array_equal(o, engine(img)["fill"])


def test_engine_object_and_stream_api(lossless_clip) -> None:
    _, images = lossless_clip
    engine = pyfill.Engine.from_pretrained("restore")
    got = list(stream(engine, iter(images), batch=5))
    assert len(got) == len(images)
    for img, g in zip(images, got, strict=True):
        assert np.abs(g.astype(int) - engine(img)).max() <= 1


def test_stream_checks_its_arguments_at_once() -> None:
    with pytest.raises(ValueError, match="batch must be >= 1"):
        stream(identity, [], batch=0)
    with pytest.raises(TypeError, match="a task name, an Engine or a callable"):
        stream(42, [])


def test_frames_iterator(lossless_clip) -> None:
    src, images = lossless_clip
    got = list(frames(src))
    assert len(got) == len(images)
    for img, g in zip(images, got, strict=True):
        assert g.dtype == np.uint8 and g.shape == (48, 64, 3)
        np.testing.assert_array_equal(g, img)


def test_every_task_runs(lossless_clip, tmp_path: Path) -> None:
    src, _ = lossless_clip
    for task in ("restore", "colorize"):
        report = process(src, tmp_path / f"{task}.mp4", task, batch=4)
        assert report.frames_out == 12 and Path(report.output).is_file()
    # generate reads frames as colour-coded label maps of the model's legend
    palette = pyfill.Engine.from_pretrained("generate").manifest.inputs[0].palette
    labels = [np.zeros((48, 64, 3), np.uint8) for _ in range(5)]
    for i, lab in enumerate(labels):
        lab[:] = palette[0]
        lab[24:, :] = palette[5]
        lab[10:30, 5 + 4 * i:25 + 4 * i] = palette[4]
    src_labels = tmp_path / "labels.mkv"
    make_clip(src_labels, images=labels, codec="ffv1", pix_fmt="bgr0", audio=False)
    report = process(src_labels, tmp_path / "generated.mkv", "generate", codec="ffv1")
    out, _ = decode_all(tmp_path / "generated.mkv")
    assert report.frames_out == 5 and out[0].shape == (48, 64, 3)
    assert not np.array_equal(out[0], out[4])                # the moving tree region changes the picture
    with pytest.raises(ValueError, match="swap"):
        process(src, tmp_path / "swapped.mp4", "swap")


# ---- damage, interruption, errors ---------------------------------------------------------
def test_truncated_file_processes_up_to_the_damage(tmp_path: Path) -> None:
    src = tmp_path / "full.mkv"
    make_clip(src, n=60, codec="mjpeg", pix_fmt="yuvj420p")
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    report = process(cut, tmp_path / "out.mp4", identity)
    in_frames, _ = decode_all(cut)
    out, _ = decode_all(tmp_path / "out.mp4")
    assert 20 < report.frames_out == len(out) == len(in_frames) < 60
    assert report.frames_expected == 60
    assert any("truncated or damaged" in w for w in report.warnings)


def test_corrupt_packet_is_skipped_counted_and_the_rest_kept(tmp_path: Path) -> None:
    src = tmp_path / "full.mkv"
    make_clip(src, n=60, codec="mjpeg", pix_fmt="yuvj420p", audio=False)
    with av.open(str(src)) as c:
        packets = [(p.pos, p.size, float(p.pts * p.time_base)) for p in c.demux(video=0) if p.size]
    pos, size, _ = packets[30]
    data = bytearray(src.read_bytes())
    data[pos + size // 4: pos + size // 2] = bytes(size // 2 - size // 4)   # zeroes inside frame 30's JPEG
    bad = tmp_path / "bad.mkv"
    bad.write_bytes(bytes(data))
    report = process(bad, tmp_path / "out.mkv", identity, codec="ffv1")
    _, times = decode_all(tmp_path / "out.mkv")
    assert report.corrupt == 1 and len(report.errors) == 1
    assert report.frames_out == 59
    assert packets[30][2] not in times                        # the damaged frame is the one left out
    assert times[-1] == pytest.approx(packets[-1][2])          # and nothing after it was lost


def test_interrupt_leaves_a_playable_file(clip, tmp_path: Path) -> None:
    src, _ = clip
    dst = tmp_path / "out.mp4"
    calls = []

    def interrupted(batch: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return identity(batch)

    with pytest.raises(VideoInterrupted, match="interrupted: 8/") as info:
        process(src, dst, interrupted, batch=4)
    assert info.value.report.interrupted and info.value.report.frames_out == 8
    out, times = decode_all(dst)
    _, in_times = decode_all(src)
    assert len(out) == 8 and times == pytest.approx(in_times[:8])
    assert audio_packets(dst)                                 # audio muxed so far is there too
    assert not list(tmp_path.glob(".*partial*"))


def test_ctrl_c_in_the_main_thread_leaves_a_playable_file(clip, tmp_path: Path) -> None:
    import signal
    import time

    src, _ = clip
    dst = tmp_path / "out.mp4"
    calls = []

    def slow(batch: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(len(batch))
        if len(calls) == 4:
            # Ctrl-C while the main thread encodes/waits. Sent from inside the run (not from a
            # timer thread), so a loaded machine can never deliver it after the test has ended,
            # where it would interrupt whatever test the worker runs next.
            os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        return identity(batch)

    # Python's own Ctrl-C handler for this test: another test in the same worker process may have
    # left a handler of its own installed (seen once in a full parallel run)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(VideoInterrupted, match="interrupted") as info:
            process(src, dst, slow, batch=2)
    finally:
        signal.signal(signal.SIGINT, previous)
    done = info.value.report.frames_out
    assert 0 < done < 40
    assert len(decode_all(dst)[0]) == done
    assert not list(tmp_path.glob(".*partial*"))


def test_model_error_keeps_the_frames_done(clip, tmp_path: Path) -> None:
    src, _ = clip
    dst = tmp_path / "out.mkv"

    calls = []

    def failing(batch: list[np.ndarray]) -> list[np.ndarray]:
        calls.append(len(batch))
        if len(calls) == 2:
            raise RuntimeError("model failed")
        return identity(batch)

    with pytest.raises(RuntimeError, match="model failed"):
        process(src, dst, failing, batch=5)
    assert len(decode_all(dst)[0]) == 5


def test_wrong_callable_output_is_a_clear_error(clip, tmp_path: Path) -> None:
    src, _ = clip
    with pytest.raises(TypeError, match="list of 2 frames"):
        process(src, tmp_path / "a.mp4", lambda b: b[:1], batch=2)
    with pytest.raises(TypeError, match="RGB uint8"):
        process(src, tmp_path / "b.mp4", lambda b: [f.astype(np.float32) for f in b])


def test_bad_inputs_get_clear_errors(clip, tmp_path: Path) -> None:
    src, _ = clip
    with pytest.raises(FileNotFoundError, match="video file not found"):
        process(tmp_path / "missing.mp4", tmp_path / "o.mp4", identity)
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all\n" * 50)
    with pytest.raises(ValueError, match="not a video"):
        process(text, tmp_path / "o.mp4", identity)
    with pytest.raises(ValueError, match="unknown task 'sharpen'"):
        process(src, tmp_path / "o.mp4", "sharpen")
    with pytest.raises(FileNotFoundError, match="no image files match"):
        process(tmp_path / "none_%04d.png", tmp_path / "o.mp4", identity)
    with pytest.raises(ValueError, match="overwrite the input"):
        process(src, src, identity)
    assert not list(tmp_path.glob("o.mp4")) and not list(tmp_path.glob(".*partial*"))


def test_codec_threads_are_set_and_change_nothing_in_the_output(lossless_clip, tmp_path: Path) -> None:
    from pyfill.video.reader import VideoReader
    from pyfill.video.writer import VideoWriter

    src, frames = lossless_clip
    with VideoReader(src, threads=1) as reader:
        assert reader.stream.codec_context.thread_count == 1
    writer = VideoWriter(tmp_path / "w.mkv", codec="ffv1", threads=1)
    assert writer.threads == 1
    writer.close()
    for bad in (lambda: VideoReader(src, threads=-1), lambda: VideoWriter(tmp_path / "x.mkv", threads=-2)):
        with pytest.raises(ValueError, match=r"^threads must be >= 0 \(0: (FFmpeg's|the encoder's) choice\), got -[12]$"):
            bad()
    one = process(src, tmp_path / "one.mkv", identity, codec="ffv1", pix_fmt="bgr0", codec_threads=1)
    auto = process(src, tmp_path / "auto.mkv", identity, codec="ffv1", pix_fmt="bgr0")
    assert one.frames_out == auto.frames_out == len(frames)
    got_one, _ = decode_all(tmp_path / "one.mkv")
    got_auto, _ = decode_all(tmp_path / "auto.mkv")
    assert all(np.array_equal(a, b) and np.array_equal(a, f) for a, b, f in zip(got_one, got_auto, frames))


# ---- live sources: dropping late frames -----------------------------------------------------
def test_drop_late_drops_counts_and_keeps_order(clip, tmp_path: Path) -> None:
    import time

    src, _ = clip

    def slow(batch: list[np.ndarray]) -> list[np.ndarray]:
        time.sleep(0.2)
        return identity(batch)

    report = process(src, tmp_path / "out.mp4", slow, batch=2, queue_size=2, drop_late=True)
    _, times = decode_all(tmp_path / "out.mp4")
    _, in_times = decode_all(src)
    assert report.dropped > 0
    assert report.frames_out + report.dropped == report.frames_in == 40
    assert len(times) == report.frames_out
    assert times == sorted(times)
    # each frame kept its time (an MP4 that starts after 0 stores that offset in milliseconds)
    assert all(np.abs(np.asarray(in_times) - t).min() < 1e-3 for t in times)


def test_http_url(clip, tmp_path: Path) -> None:
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    src, _ = clip
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(src.parent))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        report = process(f"http://127.0.0.1:{server.server_port}/{src.name}", tmp_path / "out.mp4", identity)
    finally:
        server.shutdown()
        server.server_close()
    assert report.frames_out == 40 and report.dropped == 0
    assert audio_packets(tmp_path / "out.mp4") == audio_packets(src)


def test_capture_formats_are_live_and_drop_late_by_default(tmp_path: Path) -> None:
    import time

    def slow(batch: list[np.ndarray]) -> list[np.ndarray]:
        time.sleep(0.2)
        return identity(batch)

    # FFmpeg's lavfi test source stands in for a camera (a device format, no file)
    report = process("testsrc=size=64x48:rate=30:duration=2", tmp_path / "cam.mp4", slow, batch=2, queue_size=2,
                     input_format="lavfi")
    assert report.frames_in == 60 and report.dropped > 0
    assert report.frames_out + report.dropped == 60
    assert len(decode_all(tmp_path / "cam.mp4")[0]) == report.frames_out


# ---- flicker ---------------------------------------------------------------------------------
def test_chroma_change_matches_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    a, b = picture(0, 64, 48), picture(5, 64, 48)
    ya, yb = (cv2.cvtColor(x, cv2.COLOR_RGB2YCrCb).astype(float) for x in (a, b))
    expected = np.abs(ya[..., 1:] - yb[..., 1:]).mean()       # OpenCV rounds to integers
    assert chroma_change([a, b]) == pytest.approx(expected, abs=0.5)
    assert chroma_change([a, a, a]) == 0.0


def _flickering(base: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``base`` with a random colour cast per frame (luma kept), like a per-frame colouriser."""
    from pyfill.video.flicker import from_ycbcr, to_ycbcr

    out = []
    for _ in range(n):
        ycc = to_ycbcr(base)
        ycc[..., 1:] += rng.normal(0, 6, 2).astype(np.float32)
        out.append(from_ycbcr(ycc))
    return out


def test_smoothing_lowers_flicker_and_resets_at_a_cut() -> None:
    rng = np.random.default_rng(0)
    scene_a = _flickering(picture(0, 64, 48), 12, rng)
    scene_b = _flickering(255 - picture(0, 64, 48)[::-1], 12, rng)
    smoother = ChromaSmoother()
    smoothed = [smoother(f) for f in scene_a + scene_b]
    raw_a, smooth_a = chroma_change(scene_a), chroma_change(smoothed[:12])
    assert smooth_a < 0.6 * raw_a
    assert smoother.cuts == 1
    # no ghost of scene A after the cut: identical to smoothing scene B alone
    fresh = ChromaSmoother()
    reference = [fresh(f) for f in scene_b]
    for got, ref in zip(smoothed[12:], reference, strict=True):
        np.testing.assert_array_equal(got, ref)
    # luma is left alone (within rounding)
    from pyfill.video.flicker import to_ycbcr

    for got, raw in zip(smoothed, scene_a + scene_b, strict=True):
        assert np.abs(to_ycbcr(got)[..., 0] - to_ycbcr(raw)[..., 0]).max() <= 1.5


def test_smoothing_does_not_trail_moving_content() -> None:
    rng = np.random.default_rng(1)
    frames_ = []
    for i in range(10):                                        # a flickering background, a moving red block
        f = _flickering(np.full((48, 64, 3), 90, np.uint8), 1, rng)[0]
        f[10:30, 4 * i:4 * i + 12] = (230, 30, 30)
        frames_.append(f)
    smoother = ChromaSmoother()
    out = [smoother(f) for f in frames_]
    for i in range(1, 10):                                     # the block's new pixels take its colour at once
        new = np.zeros((48, 64), bool)
        new[10:30, 4 * i:4 * i + 12] = True
        new[10:30, 4 * (i - 1):4 * (i - 1) + 12] = False
        assert np.abs(out[i][new].astype(int) - frames_[i][new]).max() <= 1
        # and where it left, the background colour comes back at once (no red trail)
        left = np.zeros((48, 64), bool)
        left[10:30, 4 * (i - 1):4 * i] = True
        assert out[i][left][:, 0].max() < 150


def test_colorize_smooths_by_default_and_reports_flicker(clip, tmp_path: Path) -> None:
    src, _ = clip
    on = process(src, tmp_path / "on.mp4", "colorize", batch=4)
    off = process(src, tmp_path / "off.mp4", "colorize", batch=4, smooth=False)
    assert on.chroma_change_in == pytest.approx(off.chroma_change_in)
    assert on.chroma_change_out < off.chroma_change_out
    assert on.flicker == pytest.approx(on.chroma_change_out - on.chroma_change_in)


def test_progress_bar_only_when_asked_or_on_a_terminal(clip, tmp_path: Path, capfd) -> None:
    src, _ = clip
    process(src, tmp_path / "o.mp4", identity)                 # stderr is captured: not a terminal
    assert capfd.readouterr().err == ""
    process(src, tmp_path / "o.mp4", identity, progress=True)
    err = capfd.readouterr().err
    assert "40/40" in err and "frame/s" in err


def test_auto_batch_holds_about_a_megapixel() -> None:
    from pyfill.video import auto_batch

    assert [auto_batch(64, 48), auto_batch(640, 360), auto_batch(1280, 720), auto_batch(3840, 2160)] == [8, 4, 2, 2]
