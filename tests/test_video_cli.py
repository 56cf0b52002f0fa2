"""The ``video`` command (pyfill.video.cli) on an argparse parser: a run, and clear errors
without tracebacks."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

av = pytest.importorskip("av")

from pyfill.video.cli import add_parser  # noqa: E402
from pyfill.video.samples import write_test_clip  # noqa: E402


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pyfill")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_clip(tmp_path_factory.mktemp("cli") / "in.mp4", frames=12)


def test_video_command_restores_a_clip(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out.mkv"
    assert run(["video", str(clip), "-o", str(out), "--task", "restore", "--batch", "3", "--crf", "20",
                "--codec-threads", "1"]) == 0
    printed = capsys.readouterr()
    assert "12/12 frames" in printed.out and printed.err == ""
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 12
        assert len(c.streams.audio) == 1


def test_video_command_errors_are_one_line(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(["video", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "o.mp4"), "--task", "restore"]) == 1
    err = capsys.readouterr().err
    assert "video file not found" in err and "Traceback" not in err
    junk = tmp_path / "junk.mkv"
    junk.write_bytes(b"\x00\x01garbage" * 100)
    assert run(["video", str(junk), "-o", str(tmp_path / "o.mp4"), "--task", "colorize"]) == 1
    err = capsys.readouterr().err
    assert "not a video" in err and "Traceback" not in err
    assert run(["video", str(clip), "-o", str(tmp_path / "o.mp4"), "--task", "restore", "--codec", "nonesuch"]) == 1
    assert "codec 'nonesuch' is not available" in capsys.readouterr().err
    assert run(["video", str(clip), "-o", str(tmp_path / "o.mp4"), "--task", "restore", "--codec-threads", "-1"]) == 1
    err = capsys.readouterr().err
    assert "threads must be >= 0" in err and "Traceback" not in err
    with pytest.raises(SystemExit, match="2"):
        run(["video", str(clip), "-o", str(tmp_path / "o.mp4"), "--task", "sharpen"])
    assert "invalid choice: 'sharpen'" in capsys.readouterr().err
