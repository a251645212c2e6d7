"""One low-resolution decode per video, shared by shot detection and quality scoring.

:func:`iter_frames` decodes the first video stream once with PyAV (frame-threaded, like the ffmpeg CLI)
and yields every source frame, in presentation order, scaled to a small size (``width`` px wide, the
display aspect kept: sample aspect ratio and rotation applied) and turned upright from the stream's
display matrix. Each frame comes with its source frame number (0-based index in presentation order)
and its PTS in seconds from the video stream start, so variable-frame-rate files map frames to times
exactly. Frames live only inside the stage that iterates: nothing here keeps them.

Typical use::

    with open_video(path) as vid:
        for f in vid.frames(deadline):       # DecodedFrame(index, time_s, image BGR uint8 HxWx3)
            ...
        times = vid.times                     # PTS seconds of every frame seen
        end_s = vid.end_s                     # end of the last frame
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from operators.media import MediaError


@dataclass
class DecodedFrame:
    index: int          # source frame number (presentation order, 0-based)
    time_s: float       # PTS seconds from the video stream start
    image: np.ndarray   # BGR uint8, upright, reduced size


@dataclass
class VideoInfo:
    width: int              # upright display width of the source (SAR and rotation applied)
    height: int             # upright display height of the source
    coded_width: int
    coded_height: int
    rotation_deg: int       # counter-clockwise display rotation (0, 90, 180, 270)
    fps: float              # average frame rate (nominal; times come from PTS)
    decode_width: int       # size of the decoded frames
    decode_height: int


def display_rotation(stream, first_frame=None) -> int:
    """Counter-clockwise display rotation of a stream (0/90/180/270) from its display matrix."""
    rot = None
    if first_frame is not None:
        try:
            rot = first_frame.rotation
        except Exception:
            rot = None
    if not rot:
        try:
            tag = (stream.metadata or {}).get("rotate")
            if tag:
                rot = -int(tag)  # the legacy tag is clockwise
        except (TypeError, ValueError):
            rot = None
    rot = int(round((rot or 0) / 90.0)) * 90
    return rot % 360


def _even(x: float) -> int:
    return max(2, int(round(x / 2.0)) * 2)


def decode_size(width: int, height: int, sar: float, rotation_deg: int, target_w: int) -> tuple[int, int, int, int]:
    """(upright display w, h, decoder output w, h before rotation) for a decode target_w px wide upright."""
    disp_w = width * (sar if sar and sar > 0 else 1.0)
    disp_h = float(height)
    if rotation_deg in (90, 270):
        disp_w, disp_h = disp_h, disp_w
    tw = min(target_w, _even(disp_w))
    th = _even(tw * disp_h / disp_w)
    if rotation_deg in (90, 270):
        return int(round(disp_w)), int(round(disp_h)), th, tw
    return int(round(disp_w)), int(round(disp_h)), tw, th


def upright(img: np.ndarray, rotation_deg: int) -> np.ndarray:
    """Rotate a decoded frame counter-clockwise by the display rotation (what players show)."""
    k = (rotation_deg // 90) % 4
    return np.ascontiguousarray(np.rot90(img, k)) if k else img


_YUV420 = ("yuv420p", "yuvj420p")


def shrink(plane: np.ndarray, tw: int, th: int) -> np.ndarray:
    """Downscale one 8-bit plane: exact 2x2 box averages (OpenCV's fast INTER_AREA path) while the result
    stays at least the target size, then bilinear to the target. 5-15x faster than a direct INTER_AREA
    with a fractional factor, and nearly the same pixels."""
    import cv2

    h, w = plane.shape[:2]
    while w // 2 >= tw and h // 2 >= th:
        w //= 2
        h //= 2
        plane = cv2.resize(plane[: 2 * h, : 2 * w], (w, h), interpolation=cv2.INTER_AREA)
    if (w, h) != (tw, th):
        plane = cv2.resize(plane, (tw, th), interpolation=cv2.INTER_LINEAR)
    return plane


def to_small_bgr(frame, w: int, h: int) -> np.ndarray:
    """Scale a decoded frame to w x h BGR. 8-bit 4:2:0 frames are scaled plane by plane with OpenCV
    (:func:`shrink`) and converted at the small size, a fraction of swscale's cost; other pixel formats
    go through swscale."""
    import cv2

    if frame.format.name in _YUV420 and w % 2 == 0 and h % 2 == 0:
        fw, fh = frame.width, frame.height
        out = []
        for i, (pw, ph, tw, th) in enumerate(((fw, fh, w, h), ((fw + 1) // 2, (fh + 1) // 2, w // 2, h // 2),
                                              ((fw + 1) // 2, (fh + 1) // 2, w // 2, h // 2))):
            pl = frame.planes[i]
            arr = np.frombuffer(pl, np.uint8).reshape(-1, pl.line_size)[:ph, :pw]
            out.append(shrink(arr, tw, th).ravel())
        i420 = np.concatenate(out).reshape(h * 3 // 2, w)
        return cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(width=w, height=h, format="bgr24", interpolation="AREA")


@dataclass
class LowResVideo:
    """An opened video: iterate :meth:`frames` once; afterwards `times`/`end_s` describe every frame."""

    path: str
    width: int = 256
    fast: bool = True
    info: VideoInfo | None = None
    times: list[float] = field(default_factory=list)
    end_s: float = 0.0
    decode_errors: int = 0
    _container: object = None

    def open(self) -> "LowResVideo":
        import av

        try:
            self._container = av.open(self.path, metadata_errors="ignore")
        except Exception as exc:  # av.error.* and OSError: unreadable input
            raise MediaError("decode_failed", f"cannot open video: {type(exc).__name__}: {exc}") from exc
        streams = [s for s in self._container.streams.video
                   if not (getattr(s, "disposition", 0) and "attached_pic" in str(s.disposition).lower())]
        if not streams:
            self.close()
            raise MediaError("no_video_stream", "no video stream")
        self._stream = streams[0]
        cc = self._stream.codec_context
        cc.thread_type = "AUTO"
        if self.fast:
            # Deblocking is skipped for the small analysis frames: about 10-20% less decode time and no
            # visible effect once frames are downscaled 3-8x.
            cc.options = {"skip_loop_filter": "all"}
        return self

    def close(self) -> None:
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None

    def __enter__(self) -> "LowResVideo":
        return self.open() if self._container is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    def _setup_info(self, frame) -> None:
        st = self._stream
        rot = display_rotation(st, frame)
        sar = 1.0
        try:
            sar_f = st.sample_aspect_ratio or st.codec_context.sample_aspect_ratio
            if sar_f:
                sar = float(sar_f)
        except Exception:
            sar = 1.0
        if not (0.2 < sar < 5.0):
            sar = 1.0
        W, H, dw, dh = decode_size(frame.width, frame.height, sar, rot, self.width)
        fps = float(st.average_rate or st.guessed_rate or 25.0) if (st.average_rate or st.guessed_rate) else 25.0
        self.info = VideoInfo(W, H, frame.width, frame.height, rot, fps, dw if rot in (0, 180) else dh,
                              dh if rot in (0, 180) else dw)
        self._dec_wh = (dw, dh)

    def frames(self, deadline=None, check_every: int = 64) -> Iterator[DecodedFrame]:
        """Every frame of the first video stream, in presentation order, reduced and upright."""
        import av

        if self._container is None:
            self.open()
        st = self._stream
        tb = Fraction(st.time_base) if st.time_base else None
        start_pts = st.start_time
        idx = 0
        last_t = -math.inf
        last_dur = None
        try:
            packets = self._container.demux(st)
            for packet in packets:
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError:
                    self.decode_errors += 1
                    if self.decode_errors > 100:
                        raise MediaError("decode_failed", "too many corrupt video packets") from None
                    continue
                for frame in decoded:
                    if self.info is None:
                        self._setup_info(frame)
                        if start_pts is None:
                            start_pts = frame.pts if frame.pts is not None else 0
                    t = self._time(frame, tb, start_pts, last_t, last_dur)
                    if frame.duration and tb is not None:
                        last_dur = float(frame.duration * tb)
                    elif last_t > -math.inf:
                        last_dur = t - last_t if t > last_t else last_dur
                    last_t = t
                    img = upright(to_small_bgr(frame, *self._dec_wh), self.info.rotation_deg)
                    self.times.append(t)
                    yield DecodedFrame(idx, t, img)
                    idx += 1
                    if deadline is not None and idx % check_every == 0:
                        deadline.check("decoding")
        except av.error.FFmpegError as exc:
            if idx == 0:
                raise MediaError("decode_failed", f"{type(exc).__name__}: {exc}") from exc
            self.decode_errors += 1  # keep what decoded before the stream broke
        if idx == 0:
            raise MediaError("decode_failed", "no video frame could be decoded")
        step = last_dur if last_dur and last_dur > 0 else (1.0 / self.info.fps if self.info.fps else 0.04)
        self.end_s = self.times[-1] + step

    def audio_offset_s(self) -> float | None:
        """Start of the first audio stream minus start of the video stream (s); None without audio."""
        if self._container is None or not self._container.streams.audio:
            return None
        a = self._container.streams.audio[0]
        v = self._stream
        try:
            a0 = float(a.start_time * a.time_base) if a.start_time is not None and a.time_base else 0.0
            v0 = float(v.start_time * v.time_base) if v.start_time is not None and v.time_base else 0.0
        except Exception:
            return None
        return a0 - v0

    def _time(self, frame, tb, start_pts, last_t: float, last_dur: float | None) -> float:
        t = None
        if frame.pts is not None and tb is not None:
            t = float((frame.pts - (start_pts or 0)) * tb)
        if t is None or not math.isfinite(t) or t <= last_t:
            # missing or non-increasing PTS (broken muxing): continue from the previous frame
            step = last_dur if last_dur and last_dur > 0 else (1.0 / (self.info.fps or 25.0))
            t = (last_t + step) if last_t > -math.inf else max(0.0, t or 0.0)
        return t


def time_of(frame: int, times: list[float], end_s: float) -> float:
    """Presentation time of a source frame index; one past the last frame is the end of the video."""
    if frame >= len(times):
        return end_s
    return times[max(0, frame)]


def open_video(path: str, width: int = 256, fast: bool = True) -> LowResVideo:
    return LowResVideo(path, width=width, fast=fast)


def decode_audio_track(path: str, sample_rate: int = 16000, deadline=None, check_every: int = 256) -> np.ndarray | None:
    """The first audio stream as mono float32 at sample_rate, decoded in-process with PyAV (libavcodec +
    libswresample, the same code and defaults as ``ffmpeg -i F -ac 1 -ar 16000 -f f32le``: the samples
    match operators.media.decode_audio to ~1e-7 on the shared media) at a fraction of the CPU of starting
    an ffmpeg process (about 10 ms instead of 70-100 ms per file). None when the file has no audio
    stream. Corrupt packets are skipped (what decodes is kept, like the non-strict ffmpeg decode);
    an unreadable file raises MediaError('audio_decode_error')."""
    import av

    try:
        container = av.open(path, metadata_errors="ignore")
    except Exception as exc:
        raise MediaError("audio_decode_error", f"cannot open audio: {type(exc).__name__}: {exc}") from exc
    out: list[np.ndarray] = []
    try:
        if not container.streams.audio:
            return None
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        try:
            for i, packet in enumerate(container.demux(stream)):
                if deadline is not None and i % check_every == 0:
                    deadline.check("audio decoding")
                try:
                    frames = packet.decode()
                except av.error.FFmpegError:
                    continue
                for frame in frames:
                    for o in resampler.resample(frame):
                        out.append(o.to_ndarray().reshape(-1))
            for o in resampler.resample(None):
                out.append(o.to_ndarray().reshape(-1))
        except (av.error.FFmpegError, ValueError):
            pass  # keep what decoded before the stream broke (or the resampler refused a frame)
    finally:
        container.close()
    return np.concatenate(out).astype(np.float32, copy=False) if out else np.zeros(0, dtype=np.float32)
