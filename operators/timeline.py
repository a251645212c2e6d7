"""Timestamp verdict of an input, and a normalised copy when its timestamps cannot be trusted.

Real uploads are often joined with ``ffmpeg -f concat -c copy``. When the parts have different time bases
the joined file's video timestamps are scaled wrongly part by part (frames 0.28 s or 2 ms apart at a
nominal 25 fps) and ffmpeg warns about "non monotonically increasing dts"; yet every frame and sample
decodes, so the file is good training material once its timeline is regenerated.

:func:`inspect_timeline` reads the packet timestamps of the first video and audio stream (demux only, no
decoding) and decides whether the video timeline is broken:

- a stretch of at least ``MIN_RUN_S`` (counted at the nominal rate) whose median frame interval is off the
  nominal interval by more than ``MAX_STRETCH`` times (concatenated time bases), or
- more than 1% duplicate presentation times, or
- the video span disagrees with the audio span by more than max(1 s, 20%) while the frame count at the
  nominal rate agrees with the audio (within 5%).

Variable-frame-rate video with dropped frames keeps a median interval near nominal, so it is not flagged.
:func:`normalise` then writes a local copy whose video frame n is at n / fps and whose audio sample k is at
k / sample_rate (what a plain decode of the samples gives), so audio stays aligned with frames across the
parts of a concatenation.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from operators.media import MediaError, ffmpeg_bin, run_tool

MAX_STRETCH = 2.5       # median frame interval this many times off nominal (either way) = broken
MIN_RUN_S = 1.0         # over a stretch at least this long
MAX_DUP_SHARE = 0.01    # duplicate presentation times


@dataclass
class Timeline:
    n_video: int = 0
    video_span_s: float = 0.0
    audio_span_s: float | None = None
    nominal_fps: float | None = None
    dts_backwards: int = 0           # video+audio packets whose DTS does not increase
    duplicate_pts: int = 0
    stretched_s: float = 0.0         # seconds (at the nominal rate) of frames with off-nominal spacing
    broken: bool = False
    why: str = ""
    warnings: list[str] = field(default_factory=list)


def _stream_packets(container, stream, deadline=None) -> tuple[np.ndarray, int]:
    pts, back, last_dts = [], 0, None
    tb = float(stream.time_base) if stream.time_base else 0.0
    for i, p in enumerate(container.demux(stream)):
        if deadline is not None and i % 2048 == 0:
            deadline.check("timestamp check")
        if p.size == 0:
            continue
        if p.dts is not None:
            if last_dts is not None and p.dts <= last_dts:
                back += 1
            last_dts = p.dts
        if p.pts is not None:
            pts.append(p.pts * tb)
    return np.asarray(pts, dtype=np.float64), back


def inspect_timeline(path: str, nominal_fps: float | None, deadline=None) -> Timeline:
    """Packet-timestamp verdict of the first video (and audio) stream; never raises for bad timestamps."""
    import av

    tl = Timeline(nominal_fps=nominal_fps if nominal_fps and 1.0 <= nominal_fps <= 240.0 else None)
    try:
        with av.open(path, metadata_errors="ignore") as c:
            if not c.streams.video:
                return tl
            v_pts, v_back = _stream_packets(c, c.streams.video[0], deadline)
        a_pts, a_back = np.zeros(0), 0
        with av.open(path, metadata_errors="ignore") as c:
            if c.streams.audio:
                a_pts, a_back = _stream_packets(c, c.streams.audio[0], deadline)
    except av.error.FFmpegError as exc:
        tl.warnings.append(f"timestamps: demux stopped early ({type(exc).__name__})")
        return tl
    tl.dts_backwards = v_back + a_back
    if tl.dts_backwards:
        tl.warnings.append(f"timestamps: {tl.dts_backwards} packets with non-increasing dts")
    v = np.sort(v_pts)
    tl.n_video = len(v)
    if len(v) < 2:
        return tl
    tl.video_span_s = float(v[-1] - v[0])
    if len(a_pts) > 1:
        tl.audio_span_s = float(a_pts.max() - a_pts.min())
    d = np.diff(v)
    tl.duplicate_pts = int(np.sum(d <= 1e-9))
    fps = tl.nominal_fps
    if fps is None and tl.audio_span_s:
        fps = len(v) / max(tl.audio_span_s, 1e-3)
        tl.nominal_fps = fps if 1.0 <= fps <= 240.0 else None
        fps = tl.nominal_fps
    reasons = []
    if tl.duplicate_pts > MAX_DUP_SHARE * len(v):
        reasons.append(f"{tl.duplicate_pts} frames share a presentation time")
    if fps:
        step = 1.0 / fps
        win = max(3, int(round(MIN_RUN_S * fps)))
        if len(d) >= win:
            from numpy.lib.stride_tricks import sliding_window_view

            med = np.median(sliding_window_view(d, win), axis=1)
            ratio = med / step
            bad = (ratio > MAX_STRETCH) | (ratio < 1.0 / MAX_STRETCH)
            if bad.any():
                # frames covered by at least one bad window
                cover = np.zeros(len(d), dtype=bool)
                for i in np.nonzero(bad)[0]:
                    cover[i:i + win] = True
                tl.stretched_s = float(cover.sum() * step)
                r = ratio[bad]
                reasons.append(f"{tl.stretched_s:.1f} s of frames spaced {float(r.min()):.2g}-{float(r.max()):.2g}x "
                               f"the nominal {step * 1000:.1f} ms")
        if tl.audio_span_s and not reasons:
            gap = abs(tl.video_span_s - tl.audio_span_s)
            counted = len(v) / fps
            if gap > max(1.0, 0.2 * tl.audio_span_s) and abs(counted - tl.audio_span_s) <= 0.05 * tl.audio_span_s:
                reasons.append(f"video timestamps span {tl.video_span_s:.1f} s, audio {tl.audio_span_s:.1f} s, "
                               f"{len(v)} frames at {fps:.3f} fps = {counted:.1f} s")
    if reasons:
        tl.broken = True
        tl.why = "; ".join(reasons)
    return tl


def normalise(path: str, out_path: str, fps: float, timeout_s: float, with_audio: bool = True,
              size: tuple[int, int] | None = None) -> str:
    """Write out_path (Matroska, H.264 with a keyframe every second + FLAC) with regenerated timestamps:
    video frame n at n / fps, audio by sample count. Rotation is applied by ffmpeg (the copy is upright);
    ``size`` (upright display size) keeps one frame size and square pixels when the parts of a
    concatenation differ (the filter graph is not re-initialised, so the frame count stays continuous)."""
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    tmp = out_path + ".part.mkv"
    gop = max(1, int(round(fps)))
    vf = f"setpts=N/({fps:.6f}*TB)"
    if size:
        vf = f"scale={max(2, size[0] // 2 * 2)}:{max(2, size[1] // 2 * 2)},setsar=1," + vf
    args = [ffmpeg_bin(), "-nostdin", "-hide_banner", "-v", "error", "-y", "-reinit_filter", "0", "-i", path,
            "-map", "0:v:0", "-vf", vf, "-fps_mode", "passthrough", "-r", f"{fps:.6f}",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "12", "-g", str(gop), "-pix_fmt", "yuv420p"]
    if with_audio:
        args += ["-map", "0:a:0?", "-af", "aresample=async=1:min_hard_comp=0.01:first_pts=0", "-c:a", "flac"]
    args += ["-map_metadata", "-1", "-f", "matroska", tmp]
    proc = run_tool(args, timeout_s, reason="decode_failed")
    if proc.returncode != 0 or not os.path.exists(tmp):
        if os.path.exists(tmp):
            os.remove(tmp)
        raise MediaError("decode_failed", "could not regenerate timestamps: "
                         + proc.stderr.decode("utf-8", "replace").strip()[-300:])
    os.replace(tmp, out_path)
    return out_path
