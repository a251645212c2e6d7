"""Encoding and reading single-person clip media (MP4: H.264 video + AAC audio, moov atom first).

Every stage that needs pixels or samples of a clip reads them from the clip row through these
functions, so rows carry compact encoded media and never decoded frames.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from operators.media import MediaError, decode_audio, ffmpeg_bin, run_tool


def encode_crop(src_path: str, start_s: float, duration_s: float, crop_box: list[float] | None, out_w: int, out_h: int,
                fps: float, timeout_s: float, with_audio: bool = True, crf: int = 20, rotation_deg: int = 0) -> bytes:
    """Cut [start_s, start_s+duration_s) of the source, crop crop_box ([x0,y0,x1,y1] in upright source
    pixels; None: whole frame), scale to out_w x out_h, resample to fps, and encode to MP4 bytes.

    Output is deterministic for the same inputs (single-threaded x264, bitexact flags)."""
    vf = []
    if crop_box is not None:
        x0, y0, x1, y1 = (int(round(v)) for v in crop_box)
        w, h = max(2, x1 - x0), max(2, y1 - y0)
        vf.append(f"crop={w}:{h}:{max(0, x0)}:{max(0, y0)}")
    vf += [f"scale={out_w}:{out_h}:flags=bicubic", f"fps={fps:.6f}", "format=yuv420p"]
    with tempfile.TemporaryDirectory(prefix="lpm-clip-") as tmp:
        out = os.path.join(tmp, "clip.mp4")
        args = [ffmpeg_bin(), "-nostdin", "-hide_banner", "-v", "error", "-ss", f"{start_s:.6f}", "-i", src_path,
                "-t", f"{duration_s:.6f}", "-map", "0:v:0"]
        if with_audio:
            args += ["-map", "0:a:0?", "-c:a", "aac", "-b:a", "128k", "-ac", "1", "-ar", "16000"]
        args += ["-vf", ",".join(vf), "-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-threads", "1",
                 "-x264-params", "threads=1", "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
                 "-map_metadata", "-1", "-movflags", "+faststart", "-f", "mp4", out]
        proc = run_tool(args, timeout_s, reason="encode_failed")
        if proc.returncode != 0 or not os.path.exists(out):
            raise MediaError("encode_failed", proc.stderr.decode("utf-8", "replace")[-400:])
        with open(out, "rb") as fh:
            return fh.read()


def _materialize(clip: dict, tmp: str) -> str:
    if clip.get("video_bytes"):
        p = os.path.join(tmp, "clip.mp4")
        with open(p, "wb") as fh:
            fh.write(clip["video_bytes"])
        return p
    uri = clip.get("video_uri")
    if not uri:
        raise MediaError("no_media", "clip row has neither video_bytes nor video_uri")
    return uri


def read_clip_frames(clip: dict, size: tuple[int, int] | None = None, gray: bool = False, fps: float | None = None,
                     timeout_s: float = 120.0) -> np.ndarray:
    """Decode a clip's frames: uint8 array [T, H, W, 3] (RGB) or [T, H, W] when gray.
    size=(w, h) rescales; fps resamples (default: the clip's own rate)."""
    w = int(size[0]) if size else int(clip.get("clip_width") or 0)
    h = int(size[1]) if size else int(clip.get("clip_height") or 0)
    with tempfile.TemporaryDirectory(prefix="lpm-read-") as tmp:
        path = _materialize(clip, tmp)
        if not (w and h):
            from operators.media import ffprobe

            info = ffprobe(path, timeout_s, count_frames=False)
            w, h = int(info.video["width"]), int(info.video["height"])
        vf = []
        if fps:
            vf.append(f"fps={fps:.6f}")
        vf.append(f"scale={w}:{h}")
        pix = "gray" if gray else "rgb24"
        args = [ffmpeg_bin(), "-nostdin", "-hide_banner", "-v", "error", "-i", path, "-map", "0:v:0", "-vf", ",".join(vf),
                "-f", "rawvideo", "-pix_fmt", pix, "pipe:1"]
        proc = run_tool(args, timeout_s, reason="video_decode_error")
        if proc.returncode != 0:
            raise MediaError("video_decode_error", proc.stderr.decode("utf-8", "replace")[-300:])
    ch = 1 if gray else 3
    n = len(proc.stdout) // (w * h * ch)
    arr = np.frombuffer(proc.stdout[: n * w * h * ch], dtype=np.uint8)
    return arr.reshape((n, h, w) if gray else (n, h, w, 3))


def read_clip_audio(clip: dict, sample_rate: int = 16000, timeout_s: float = 120.0) -> np.ndarray:
    """The clip's own audio track (mixture) as mono float32."""
    with tempfile.TemporaryDirectory(prefix="lpm-read-") as tmp:
        return decode_audio(_materialize(clip, tmp), timeout_s, sample_rate=sample_rate)
