"""Probe: identify an input (video_id), read its container metadata, and reject what cannot be used.

Reject reasons: not_found, empty_file, unreadable, probe_failed, no_video_stream, no_audio_stream,
audio_decode_error, too_short, too_long, resolution_too_low, timeout.
"""
from __future__ import annotations

import hashlib
import os

from operators.base import CODE_VERSION, Deadline, Operator, Resources, VideoTask
from operators.media import MediaError, decode_audio, ffprobe, is_remote, local_path

STAGE = "probe"


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
        w, h = task.video["width"], task.video["height"]
        if w < cfg.probe.min_width_px or h < cfg.probe.min_height_px:
            return task.reject(STAGE, "resolution_too_low", f"{w}x{h} below {cfg.probe.min_width_px}x{cfg.probe.min_height_px}")
        if info.audio is None:
            if cfg.probe.require_audio:
                return task.reject(STAGE, "no_audio_stream", "the file has no audio stream (probe.require_audio)")
            return task
        if cfg.probe.check_audio_decode:
            deadline.check("audio check")
            try:
                audio = decode_audio(path, deadline.timeout_for(cfg.run.subprocess_timeout_s), strict=True)
            except MediaError as exc:
                task.video["audio_decoded_s"] = 0.0
                if cfg.probe.require_audio:
                    return task.reject(STAGE, exc.reason, str(exc))
                task.video["has_audio"] = False
                return task
            task.video["audio_decoded_s"] = round(len(audio) / 16000.0, 4)
            if cfg.probe.require_audio and len(audio) < 0.5 * 16000 * min(dur, 2.0):
                return task.reject(STAGE, "audio_decode_error", f"only {len(audio) / 16000:.2f} s of audio decoded")
        return task


def _int(v) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None
