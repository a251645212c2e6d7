"""ffmpeg/ffprobe access with hard timeouts and argument lists (never shell strings).

Inputs are read through fsspec-compatible paths: local files are passed to ffmpeg directly; other URIs
(s3://, gs://, http(s)://) are opened by :func:`local_path`, which stages them to a temporary file.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


class MediaError(Exception):
    """A media tool failed on this input. `reason` is a reject reason code."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def ffmpeg_bin() -> str:
    return os.environ.get("LPM_FFMPEG", shutil.which("ffmpeg") or "ffmpeg")


def ffprobe_bin() -> str:
    return os.environ.get("LPM_FFPROBE", shutil.which("ffprobe") or "ffprobe")


def run_tool(args: list[str], timeout_s: float, reason: str = "tool_failed", input_bytes: bytes | None = None) -> subprocess.CompletedProcess:
    """Run a media tool with a hard timeout; the process is killed when it runs over."""
    try:
        return subprocess.run(args, input=input_bytes, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise MediaError("timeout", f"{os.path.basename(args[0])} ran over {timeout_s:.0f} s") from exc
    except FileNotFoundError as exc:
        raise MediaError(reason, f"{args[0]} not found: install ffmpeg (scripts/setup.sh does)") from exc


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


@contextlib.contextmanager
def local_path(uri: str) -> Iterator[str]:
    """A local filesystem path for the URI (remote objects are copied to a temp file for the duration)."""
    if not is_remote(uri):
        yield uri[len("file://"):] if uri.startswith("file://") else uri
        return
    import fsspec

    suffix = os.path.splitext(uri)[1]
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=True) as tmp:
        with fsspec.open(uri, "rb") as src:
            shutil.copyfileobj(src, tmp, length=8 << 20)
        tmp.flush()
        yield tmp.name


def _fraction(text: str | None) -> float | None:
    if not text or text in ("0/0", "N/A"):
        return None
    try:
        value = float(Fraction(text))
    except (ValueError, ZeroDivisionError):
        return None
    return value if value > 0 else None


def _float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) else None


@dataclass
class ProbeInfo:
    container: str | None
    duration_s: float | None
    size_bytes: int | None
    video: dict | None
    audio: dict | None
    fps: float | None
    frame_count: int | None
    rotation_deg: int
    video_start_s: float
    variable_frame_rate: bool


def ffprobe(path: str, timeout_s: float, count_frames: bool = True) -> ProbeInfo:
    args = [ffprobe_bin(), "-v", "error", "-print_format", "json", "-show_format", "-show_streams"]
    if count_frames:
        args += ["-count_packets"]
    args.append(path)
    proc = run_tool(args, timeout_s, reason="probe_failed")
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise MediaError("probe_failed", (err[-1] if err else f"ffprobe exit {proc.returncode}")[:500])
    try:
        data = json.loads(proc.stdout.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError as exc:
        raise MediaError("probe_failed", f"unreadable ffprobe output: {exc}") from exc
    streams = data.get("streams") or []
    fmt = data.get("format") or {}
    video = next((s for s in streams if s.get("codec_type") == "video" and not (s.get("disposition") or {}).get("attached_pic")), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    fps = None
    frame_count = None
    rotation = 0
    start = 0.0
    vfr = False
    if video is not None:
        avg = _fraction(video.get("avg_frame_rate"))
        real = _fraction(video.get("r_frame_rate"))
        fps = avg or real
        vfr = bool(avg and real and abs(avg - real) / real > 0.01)
        for key in ("nb_read_packets", "nb_frames"):
            try:
                n = int(video.get(key))
            except (TypeError, ValueError):
                continue
            if n > 0:
                frame_count = n
                break
        for sd in video.get("side_data_list") or []:
            if "rotation" in sd:
                try:
                    rotation = int(round(float(sd["rotation"]))) % 360
                except (TypeError, ValueError):
                    pass
        tag_rot = (video.get("tags") or {}).get("rotate")
        if tag_rot and not rotation:
            rotation = int(tag_rot) % 360
        start = _float(video.get("start_time")) or 0.0
    duration = _float(fmt.get("duration"))
    if duration is None and video is not None:
        duration = _float(video.get("duration"))
    size = None
    try:
        size = int(fmt.get("size"))
    except (TypeError, ValueError):
        pass
    return ProbeInfo(
        container=fmt.get("format_name"),
        duration_s=duration,
        size_bytes=size,
        video=video,
        audio=audio,
        fps=fps,
        frame_count=frame_count,
        rotation_deg=rotation,
        video_start_s=start,
        variable_frame_rate=vfr,
    )


def decode_audio(path: str, timeout_s: float, sample_rate: int = 16000, start_s: float | None = None,
                 duration_s: float | None = None) -> np.ndarray:
    """Decode the first audio stream to mono float32 at sample_rate (what decodes is returned)."""
    return decode_audio_verdict(path, timeout_s, sample_rate, start_s, duration_s)[0]


def decode_audio_verdict(path: str, timeout_s: float, sample_rate: int = 16000, start_s: float | None = None,
                         duration_s: float | None = None) -> tuple[np.ndarray, int, list[str]]:
    """(samples, ffmpeg exit status, ffmpeg's messages condensed by :func:`condense_messages`).

    ffmpeg's own verdict: a non-zero exit is a failure; its messages (timestamp warnings, a few corrupt
    packets) are not, by themselves. Callers compare the decoded length with what the container promises."""
    args = [ffmpeg_bin(), "-nostdin", "-hide_banner", "-v", "warning"]
    if start_s is not None:
        args += ["-ss", f"{max(0.0, start_s):.6f}"]
    args += ["-i", path]
    if duration_s is not None:
        args += ["-t", f"{max(0.0, duration_s):.6f}"]
    args += ["-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    proc = run_tool(args, timeout_s, reason="audio_decode_error")
    samples = np.frombuffer(proc.stdout, dtype=np.float32).copy()
    return samples, proc.returncode, condense_messages(proc.stderr.decode("utf-8", "replace"))


def condense_messages(stderr: str, limit: int = 5) -> list[str]:
    """Distinct ffmpeg messages (component addresses stripped), most frequent first, with their counts."""
    import re
    from collections import Counter

    counts: Counter[str] = Counter()
    for line in stderr.splitlines():
        line = re.sub(r"\[(\w+) @ 0x[0-9a-f]+\]\s*", r"[\1] ", line.strip())
        line = re.sub(r"\d+ >= \d+", "N >= M", line)
        if not line or line.startswith("Last message repeated"):
            continue
        counts[line[:200]] += 1
    return [f"{m} (x{n})" if n > 1 else m for m, n in counts.most_common(limit)]


def encode_flac(samples: np.ndarray, sample_rate: int, timeout_s: float = 60.0) -> bytes:
    """Encode mono float32 samples in [-1, 1] as FLAC bytes."""
    pcm = np.clip(samples, -1.0, 1.0).astype(np.float32).tobytes()
    args = [ffmpeg_bin(), "-nostdin", "-hide_banner", "-v", "error", "-f", "f32le", "-ar", str(sample_rate), "-ac", "1",
            "-i", "pipe:0", "-c:a", "flac", "-f", "flac", "-fflags", "+bitexact", "pipe:1"]
    proc = run_tool(args, timeout_s, input_bytes=pcm)
    if proc.returncode != 0:
        raise MediaError("encode_failed", proc.stderr.decode("utf-8", "replace")[-300:])
    return proc.stdout


def decode_flac(data: bytes, sample_rate: int = 16000, timeout_s: float = 60.0) -> np.ndarray:
    args = [ffmpeg_bin(), "-nostdin", "-hide_banner", "-v", "error", "-i", "pipe:0", "-ac", "1", "-ar", str(sample_rate),
            "-f", "f32le", "pipe:1"]
    proc = run_tool(args, timeout_s, input_bytes=data)
    if proc.returncode != 0:
        raise MediaError("audio_decode_error", proc.stderr.decode("utf-8", "replace")[-300:])
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()
