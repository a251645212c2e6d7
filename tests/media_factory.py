"""Builds bad and tricky inputs at test time from real media (nothing is committed)."""
from __future__ import annotations

import random
import shutil
from pathlib import Path

from conftest import ffmpeg

ODD_NAMES = ["with space.mp4", "quote's \"double\".mp4", "$(touch pwned).mp4", "ünïcødé 视频.mp4", "-leading-dash.mp4"]


def make_good(src: Path, dst: Path, seconds: float = 3.6, height: int = 360, start_s: float = 0.0) -> Path:
    """A short, small re-encode of a real clip (keeps full-pipeline tests cheap)."""
    ffmpeg("-ss", f"{start_s}", "-i", str(src), "-t", f"{seconds}", "-vf", f"scale=-2:{height}", "-c:v", "libx264",
           "-preset", "veryfast", "-c:a", "aac", str(dst))
    return dst


def make_bad_inputs(src: Path, folder: Path) -> dict[str, str]:
    """Create every bad input of the foundation issue. Returns file name -> expected reject reason."""
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}
    (folder / "zero_bytes.mp4").write_bytes(b"")
    expected["zero_bytes.mp4"] = "empty_file"
    (folder / "not_a_video.mp4").write_text("this is a text file pretending to be a video\n" * 50)
    expected["not_a_video.mp4"] = "probe_failed"
    whole = folder / ".whole.mp4"
    ffmpeg("-i", str(src), "-t", "4", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(whole))
    data = whole.read_bytes()  # moov atom at the end: a cut-off download loses it
    (folder / "truncated.mp4").write_bytes(data[: len(data) // 2])
    expected["truncated.mp4"] = "probe_failed"
    whole.unlink()
    ffmpeg("-i", str(src), "-t", "4", "-vn", "-c:a", "aac", "-f", "mp4", str(folder / "audio_only.mp4"))
    expected["audio_only.mp4"] = "no_video_stream"
    ffmpeg("-i", str(src), "-t", "4", "-an", "-c:v", "libx264", "-preset", "veryfast", str(folder / "no_audio.mp4"))
    expected["no_audio.mp4"] = "no_audio_stream"
    # an MP3 stream whose second half is noise: ffprobe sees a normal audio stream, decoding fails part-way
    mp3 = folder / ".a.mp3"
    v = folder / ".v.mp4"
    ffmpeg("-i", str(src), "-t", "4", "-vn", "-c:a", "libmp3lame", "-b:a", "64k", str(mp3))
    ffmpeg("-i", str(src), "-t", "4", "-an", "-c:v", "libx264", "-preset", "veryfast", str(v))
    raw = bytearray(mp3.read_bytes())
    rng = random.Random(0)
    for i in range(len(raw) // 4, len(raw)):
        raw[i] = rng.randrange(256)
    mp3.write_bytes(bytes(raw))
    ffmpeg("-i", str(v), "-i", str(mp3), "-map", "0:v", "-map", "1:a", "-c", "copy", str(folder / "broken_audio.mkv"))
    expected["broken_audio.mkv"] = "audio_decode_error"
    mp3.unlink()
    v.unlink()
    return expected


def make_odd_names(good: Path, folder: Path) -> list[Path]:
    """Copies of a good file under names with spaces, quotes, $(), non-ASCII and a leading dash."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ODD_NAMES:
        p = folder / name
        shutil.copyfile(good, p)
        out.append(p)
    return out
