"""Clip planning: turn kept shots into clip rows of at most shots.max_clip_s (the training unit).

Window policy: a kept shot longer than max_clip_s is cut into consecutive windows of equal length
(ceil(duration / max_clip_s) windows, each <= max_clip_s, overlapping by shots.window_overlap_s). All
windows are >= min_clip_s because the shot is. The people stage later replaces whole-frame clips
(track_id -1) with one clip per tracked person.
"""
from __future__ import annotations

import hashlib
import math

from operators.base import Deadline, Operator, Resources, VideoTask

STAGE = "clips"


def clip_id(video_id: str, shot_index: int, track_id: int, start_frame: int, end_frame: int) -> str:
    key = f"{video_id}:{shot_index}:{track_id}:{start_frame}:{end_frame}"
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def plan_windows(start_frame: int, end_frame: int, fps: float, max_clip_s: float, overlap_s: float = 0.0) -> list[tuple[int, int]]:
    """Split [start_frame, end_frame) into near-equal windows of at most max_clip_s seconds."""
    n = end_frame - start_frame
    max_n = max(1, int(math.floor(max_clip_s * fps + 1e-6)))
    if n <= max_n:
        return [(start_frame, end_frame)]
    ov = int(round(overlap_s * fps))
    ov = min(ov, max_n - 1)
    count = math.ceil((n - ov) / (max_n - ov))
    length = min(max_n, math.ceil((n + (count - 1) * ov) / count))
    step = (n - length) / (count - 1) if count > 1 else 0
    out = []
    for k in range(count):
        a = start_frame + int(round(k * step))
        out.append((a, min(end_frame, a + length)))
    return out


def frame_time(video: dict, frame: int, frame_times: list[float] | None = None) -> float:
    if frame_times and 0 <= frame < len(frame_times):
        return frame_times[frame]
    return frame / video["fps"]


class ClipPlanOperator(Operator):
    name = STAGE
    reads = ("video", "shots")
    writes = ("clips",)
    resources = Resources(num_cpus=0.1, memory_mb=128)
    scope = "shot"

    def process(self, task: VideoTask, deadline: Deadline) -> VideoTask:
        cfg = self.settings.shots
        v = task.video
        times = task.scratch.get("frame_times")
        for shot in task.kept_shots():
            for a, b in plan_windows(shot["start_frame"], shot["end_frame"], v["fps"], cfg.max_clip_s, cfg.window_overlap_s):
                s = frame_time(v, a, times)
                e = frame_time(v, b, times) if b < (len(times) if times else 10**12) else shot["end_s"]
                task.clips.append({
                    "clip_id": clip_id(task.video_id, shot["shot_index"], -1, a, b), "video_id": task.video_id,
                    "shot_index": shot["shot_index"], "track_id": -1, "start_frame": a, "end_frame": b,
                    "start_s": s, "end_s": e, "duration_s": e - s, "fps": v["fps"], "quality": shot.get("quality"),
                })
        return task
