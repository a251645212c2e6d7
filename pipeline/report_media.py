"""Gallery thumbnails for the report: contact-sheet strips of a few frames, encoded as JPEG.

Kept clips are decoded from their own media (clips.video_bytes / video_uri) with
operators.clipmedia.read_clip_frames; rejected items, which have no media of their own, from the source
video (videos.uri) at the reject's start_s..end_s with ffmpeg. Every decode is one ffmpeg call with a
hard timeout; a source that cannot be read gives a note instead of a picture, never an exception.
"""
from __future__ import annotations

import io

import numpy as np

from operators.media import MediaError, ffmpeg_bin, ffprobe, local_path, run_tool


def to_jpeg(img: np.ndarray, quality: int = 80) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(img)).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def resize_h(img: np.ndarray, height: int) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    width = max(2, int(round(w * height / max(1, h))))
    return np.asarray(Image.fromarray(img).resize((width, height), Image.BILINEAR))


def strip(frames: list[np.ndarray], height: int, gap: int = 2) -> np.ndarray:
    """Frames side by side at one height, with a thin dark gap."""
    frames = [resize_h(f, height) for f in frames]
    parts = []
    for i, f in enumerate(frames):
        if i:
            parts.append(np.full((height, gap, 3), 32, np.uint8))
        parts.append(f)
    return np.concatenate(parts, axis=1)


def jpeg_thumb(data: bytes, height: int) -> bytes:
    """A stored JPEG (reference, first frame) scaled to the gallery height."""
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return to_jpeg(resize_h(img, height))


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def source_frames(uri: str, start_s: float | None, end_s: float | None, n: int, height: int, timeout_s: float,
                  crop_box=None, src_wh: tuple[int, int] | None = None, rotation_deg: int = 0) -> list[np.ndarray]:
    """n frames spread over [start_s, end_s) of a source video, height px tall (optionally cropped)."""
    with local_path(uri) as path:
        if not src_wh or not all(src_wh):
            info = ffprobe(path, timeout_s, count_frames=False)
            if info.video is None:
                raise MediaError("no_video", "no video stream")
            src_wh = (int(info.video.get("width") or 0), int(info.video.get("height") or 0))
            rotation_deg = info.rotation_deg
            if start_s is None or end_s is None:
                start_s, end_s = 0.0, info.duration_s or 10.0
        w, h = src_wh
        if rotation_deg in (90, 270):
            w, h = h, w
        start = max(0.0, float(start_s or 0.0))
        end = float(end_s) if end_s is not None else start + 10.0
        dur = max(0.08, end - start)
        vf = []
        if crop_box is not None and len(crop_box) == 4:
            x0, y0, x1, y1 = (int(round(v)) for v in crop_box)
            x0, y0 = max(0, x0), max(0, y0)
            x1, y1 = min(w, x1), min(h, y1)
            if x1 - x0 >= 2 and y1 - y0 >= 2:
                vf.append(f"crop={x1 - x0}:{y1 - y0}:{x0}:{y0}")
                w, h = x1 - x0, y1 - y0
        out_h = _even(height)
        out_w = _even(min(4 * height, max(8, height * w / max(1, h))))
        vf += [f"fps={n / dur:.6f}", f"scale={out_w}:{out_h}"]
        args = [ffmpeg_bin(), "-nostdin", "-hide_banner", "-v", "error", "-ss", f"{start:.3f}", "-i", path,
                "-t", f"{dur:.3f}", "-map", "0:v:0", "-vf", ",".join(vf), "-frames:v", str(n), "-f", "rawvideo",
                "-pix_fmt", "rgb24", "pipe:1"]
        proc = run_tool(args, timeout_s, reason="video_decode_error")
    size = out_w * out_h * 3
    count = len(proc.stdout) // size
    if proc.returncode != 0 or count == 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise MediaError("video_decode_error", (err[-1] if err else "no frame decoded")[:300])
    arr = np.frombuffer(proc.stdout[: count * size], np.uint8).reshape(count, out_h, out_w, 3)
    return list(arr)


def clip_frames(clip: dict, n: int, height: int, timeout_s: float) -> list[np.ndarray]:
    """n frames of a clip's own media (video_bytes or video_uri)."""
    from operators.clipmedia import read_clip_frames

    dur = float(clip.get("duration_s") or 0.0) or 1.0
    frames = read_clip_frames(clip, fps=n / dur, timeout_s=timeout_s)
    if not len(frames):
        raise MediaError("video_decode_error", "clip media decoded to no frame")
    idx = np.linspace(0, len(frames) - 1, num=min(n, len(frames))).round().astype(int)
    return [resize_h(frames[i], height) for i in idx]


def first_frame(data: bytes) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))]
