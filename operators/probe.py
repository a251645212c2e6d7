"""Probe: identify an input (video_id), read its container metadata, and reject what cannot be used.

Reject reasons: not_found, empty_file, unreadable, probe_failed, no_video_stream, no_audio_stream,
audio_decode_error, too_short, too_long, resolution_too_low, timeout.

Decoding follows ffmpeg's own verdict: audio is broken when ffmpeg fails or decodes less than
``AUDIO_MIN_SHARE`` of what the container promises; its messages (timestamp warnings, a few corrupt
packets, a short tail) become ``warnings`` on the videos row and the video is processed. A video whose
timestamps are broken (operators/timeline.py) gets a local copy with regenerated timestamps that every
later stage reads (``VideoTask.source``).
"""
from __future__ import annotations

import hashlib
import os

from operators.base import CODE_VERSION, Deadline, Operator, Resources, VideoTask
from operators.media import MediaError, _float, _fraction, decode_audio_verdict, ffprobe, is_remote, local_path
from operators.timeline import inspect_timeline, normalise

STAGE = "probe"
AUDIO_MIN_SHARE = 0.9   # decoded audio below this share of the container's audio duration is broken


def content_video_id(uri: str, path: str, head_tail_bytes: int = 0) -> tuple[str, int]:
    """Stable id from the URI and the file content: sha256(uri NUL size NUL content)[:16].

    head_tail_bytes > 0 hashes only the first and last N bytes (for huge remote objects)."""
    size = os.path.getsize(path)
    h = hashlib.sha256()
    h.update(uri.encode("utf-8", "surrogateescape"))
    h.update(b"\0")
    h.update(str(size).encode())
    h.update(b"\0")
    with open(path, "rb") as fh:
        if head_tail_bytes and size > 2 * head_tail_bytes:
            h.update(fh.read(head_tail_bytes))
            fh.seek(size - head_tail_bytes)
            h.update(fh.read(head_tail_bytes))
        else:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16], size


def uri_only_id(uri: str) -> str:
    return "u" + hashlib.sha256(uri.encode("utf-8", "surrogateescape")).hexdigest()[:15]


class ProbeOperator(Operator):
    name = STAGE
    reads = ()
    writes = ("video",)
    resources = Resources(num_cpus=0.25, memory_mb=256)

    def process(self, task: VideoTask, deadline: Deadline) -> VideoTask:
        cfg = self.settings
        task.video.update({"video_id": task.video_id, "uri": task.uri, "status": "ok", "reason": "",
                           "code_version": CODE_VERSION, "config_hash": cfg.config_hash()})
        if not is_remote(task.uri) and not os.path.exists(task.uri):
            task.video_id = task.video["video_id"] = uri_only_id(task.uri)
            return task.reject(STAGE, "not_found", f"no such file: {task.uri}")
        try:
            with local_path(task.uri) as path:
                return self._probe(task, path, deadline)
        except OSError as exc:
            if not task.video_id:
                task.video_id = task.video["video_id"] = uri_only_id(task.uri)
            return task.reject(STAGE, "unreadable", f"{type(exc).__name__}: {exc}")

    def _probe(self, task: VideoTask, path: str, deadline: Deadline) -> VideoTask:
        cfg = self.settings
        vid, size = content_video_id(task.uri, path, cfg.input.content_hash_bytes)
        task.video_id = vid
        task.video["video_id"] = vid
        task.video["size_bytes"] = size
        if size == 0:
            return task.reject(STAGE, "empty_file", "file has zero bytes")
        deadline.check("hashing")
        try:
            info = ffprobe(path, deadline.timeout_for(cfg.run.subprocess_timeout_s))
        except MediaError as exc:
            return task.reject(STAGE, exc.reason, str(exc))
        v = info.video
        task.video.update({
            "container": info.container, "duration_s": info.duration_s, "fps": info.fps,
            "frame_count": info.frame_count, "rotation_deg": info.rotation_deg,
            "video_start_s": info.video_start_s, "variable_frame_rate": info.variable_frame_rate,
            "has_audio": info.audio is not None,
        })
        if v is not None:
            task.video.update({"width": _int(v.get("width")), "height": _int(v.get("height")),
                               "video_codec": v.get("codec_name"), "pix_fmt": v.get("pix_fmt")})
            dw, dh = display_size(task.video["width"], task.video["height"], v.get("sample_aspect_ratio"),
                                  info.rotation_deg)
            task.video.update({"display_width": dw, "display_height": dh})
        if info.audio is not None:
            a = info.audio
            task.video.update({"audio_codec": a.get("codec_name"), "audio_sample_rate": _int(a.get("sample_rate")),
                               "audio_channels": _int(a.get("channels"))})
        if v is None or not task.video.get("width") or not task.video.get("height"):
            return task.reject(STAGE, "no_video_stream", "the file has no decodable video stream")
        if not info.fps or not info.frame_count:
            return task.reject(STAGE, "probe_failed", "no frame rate or no frames in the video stream")
        if info.duration_s is None:
            task.video["duration_s"] = info.frame_count / info.fps
        dur = task.video["duration_s"]
        if dur < cfg.probe.min_duration_s:
            return task.reject(STAGE, "too_short", f"{dur:.2f} s < probe.min_duration_s={cfg.probe.min_duration_s}")
        if dur > cfg.run.max_video_s:
            return task.reject(STAGE, "too_long", f"{dur:.0f} s > run.max_video_s={cfg.run.max_video_s:.0f}")
        w, h = task.video["display_width"], task.video["display_height"]
        if w < cfg.probe.min_width_px or h < cfg.probe.min_height_px:
            return task.reject(STAGE, "resolution_too_low", f"{w}x{h} below {cfg.probe.min_width_px}x{cfg.probe.min_height_px}")
        if info.audio is None:
            if cfg.probe.require_audio:
                return task.reject(STAGE, "no_audio_stream", "the file has no audio stream (probe.require_audio)")
        elif cfg.probe.check_audio_decode and self._check_audio(task, path, info, deadline) is not None:
            return task
        deadline.check("timestamp check")
        self._check_timeline(task, path, info, deadline)
        return task

    def _check_audio(self, task: VideoTask, path: str, info, deadline: Deadline) -> VideoTask | None:
        """Decode the whole audio stream once; returns the task when it was rejected."""
        cfg = self.settings
        audio, rc, messages = decode_audio_verdict(path, deadline.timeout_for(cfg.run.subprocess_timeout_s))
        got = len(audio) / 16000.0
        task.video["audio_decoded_s"] = round(got, 4)
        expected = _float((info.audio or {}).get("duration")) or task.video.get("duration_s") or 0.0
        problem = None
        if rc != 0 and got == 0:
            problem = f"ffmpeg could not decode the audio (exit {rc}): " + (messages[0] if messages else "")
        elif expected and got < AUDIO_MIN_SHARE * expected - 0.5:
            problem = (f"only {got:.2f} s of {expected:.2f} s of audio decoded"
                       + (f" ({messages[0]})" if messages else ""))
        if problem is None:
            for m in messages:
                task.warn("audio_decode", m)
            if rc != 0:
                task.warn("audio_decode", f"ffmpeg exit {rc} after {got:.2f} s of {expected:.2f} s")
            return None
        if cfg.probe.require_audio:
            return task.reject(STAGE, "audio_decode_error", problem)
        task.warn("audio_decode", problem + "; processed without audio (probe.require_audio is false)")
        task.video["has_audio"] = False
        return None

    def _check_timeline(self, task: VideoTask, path: str, info, deadline: Deadline) -> None:
        """Record timestamp problems; when the video timeline is broken, make the normalised copy."""
        cfg = self.settings
        nominal = _fraction((info.video or {}).get("r_frame_rate")) or info.fps
        tl = inspect_timeline(path, nominal, deadline)
        for w in tl.warnings:
            task.warn("timestamps", w)
        task.video["timestamps_regenerated"] = False
        if not tl.broken:
            return
        import os

        folder = os.path.join(cfg.run.work_dir or os.path.join(__import__("tempfile").gettempdir(), "lpm-work"),
                              task.video_id)
        out = os.path.join(folder, "source.mkv")
        try:
            normalise(path, out, float(tl.nominal_fps or info.fps), deadline.timeout_for(cfg.run.subprocess_timeout_s),
                      with_audio=task.video.get("has_audio", False),
                      size=(task.video["display_width"], task.video["display_height"]))
        except MediaError as exc:
            task.warn("timestamps", f"broken ({tl.why}) and could not be regenerated: {exc}; original timestamps used")
            return
        task.scratch["work_dir"] = folder
        task.scratch["source_path"] = out
        task.video["timestamps_regenerated"] = True
        fps = float(tl.nominal_fps or info.fps)
        if task.video.get("fps") and abs(task.video["fps"] - fps) > 0.01 * fps:
            task.warn("timestamps", f"container frame rate {task.video['fps']:.3f} fps; frames re-timed at {fps:.3f} fps")
        task.video.update({"fps": fps, "frame_count": tl.n_video, "video_start_s": 0.0, "variable_frame_rate": False})
        regenerated_s = tl.n_video / fps
        if task.video.get("duration_s") and abs(task.video["duration_s"] - regenerated_s) > 0.5:
            task.warn("timestamps", f"container duration {task.video['duration_s']:.2f} s; {regenerated_s:.2f} s of frames")
            task.video["duration_s"] = regenerated_s
        task.warn("timestamps_regenerated", f"{tl.why}; frames re-timed at {tl.nominal_fps:.3f} fps, audio by sample count")


def display_size(width: int | None, height: int | None, sar: str | None, rotation_deg: int) -> tuple[int, int]:
    """Upright display size: sample aspect ratio applied to the width, then the rotation."""
    w, h = int(width or 0), int(height or 0)
    r = _fraction((sar or "").replace(":", "/")) if sar and sar not in ("0:1", "1:1") else None
    if r and 0.2 < r < 5.0:
        w = int(round(w * r))
    return (h, w) if rotation_deg in (90, 270) else (w, h)



def _int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None
