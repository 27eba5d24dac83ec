"""Camera options: bad values fail before connecting; frames from a folder are cycled."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from testkit import ROOT

from workloads.vei.camera_settings import CameraSettings, load_frames, parse_camera_args


@pytest.mark.parametrize("argv, problem", [
    (["--fps", "0"], "--fps must be > 0"),
    (["--fps", "-1"], "--fps must be > 0"),
    (["--frames", "-1"], "--frames must be >= 0"),
    (["--frame-bytes", "0"], "--frame-bytes must be in 1..4194304"),
    (["--frame-bytes", str(4 * 1024 * 1024 + 1)], "the gateway's maximum"),
    (["--buffer-frames", "0"], "--buffer-frames must be >= 1"),
    (["--resend-after", "0"], "--resend-after must be > 0"),
    (["--connect-timeout", "-1"], "--connect-timeout must be >= 0"),
    (["--camera-id", ""], "--camera-id must not be empty"),
    (["--image-dir", "/nonexistent/frames"], "is not a directory"),
])
def test_bad_camera_flags(argv: list[str], problem: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_camera_args(["--gateway", "127.0.0.1:1", *argv])
    assert exc.value.code == 2
    assert problem in capsys.readouterr().err


def test_gateway_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_camera_args([])
    assert "--gateway" in capsys.readouterr().err


def test_defaults_are_the_thesis_settings() -> None:
    s = parse_camera_args(["--gateway", "127.0.0.1:1"])
    assert (s.fps, s.frame_bytes, s.buffer_frames) == (10.0, 24 * 1024, 1000)
    assert (s.resend_after_s, s.acks, s.frames) == (1.0, True, 0)


def test_synthetic_payload_is_made_once() -> None:
    frames = load_frames(CameraSettings(gateway="x:1", frame_bytes=1000))
    assert len(frames) == 1 and len(frames[0]) == 1000


def test_images_from_a_folder_are_cycled_in_name_order(tmp_path: Path) -> None:
    for name, data in (("b.jpg", b"B"), ("a.png", b"AA"), ("notes.txt", b"skip")):
        (tmp_path / name).write_bytes(data)
    assert load_frames(CameraSettings(gateway="x:1", image_dir=tmp_path)) == [b"AA", b"B"]


def test_folder_without_images_is_refused(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no image files"):
        load_frames(CameraSettings(gateway="x:1", image_dir=tmp_path))


def test_oversized_image_in_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "huge.jpg").write_bytes(b"x" * 101)
    with pytest.raises(ValueError, match=r"huge\.jpg"):
        load_frames(CameraSettings(gateway="x:1", image_dir=tmp_path, max_frame_bytes=100))


def test_camera_cli_rejects_bad_flag_before_connecting() -> None:
    # Nothing listens on the gateway address: the flag error must come first, and fast.
    proc = subprocess.run([sys.executable, "-m", "experiments", "vei", "camera", "--gateway", "127.0.0.1:1",
                           "--fps", "0"], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert proc.returncode == 2
    assert "--fps must be > 0" in proc.stderr
