"""Shot splitting with PySceneDetect.

Reject reasons (level shot): shot_too_short.
"""
from __future__ import annotations

from operators.base import Deadline, Operator, Resources, VideoTask
from operators.media import local_path

STAGE = "shots"


class ShotOperator(Operator):
    name = STAGE
    reads = ("video",)
    writes = ("shots",)
    resources = Resources(num_cpus=1.0, memory_mb=1024)

    def process(self, task: VideoTask, deadline: Deadline) -> VideoTask:
        from scenedetect import ContentDetector, detect

        cfg = self.settings.shots
        v = task.video
        fps = v["fps"]
        with local_path(task.uri) as path:
            scenes = detect(path, ContentDetector(threshold=cfg.content_threshold, min_scene_len=cfg.min_scene_len_frames), backend="pyav")
        n = v["frame_count"]
        bounds = [(s.frame_num, e.frame_num) for s, e in scenes] or [(0, n)]
        for i, (a, b) in enumerate(bounds):
            shot = {"video_id": task.video_id, "shot_index": i, "start_frame": a, "end_frame": b,
                    "start_s": a / fps, "end_s": b / fps, "duration_s": (b - a) / fps,
                    "cut_in": "start" if i == 0 else "content", "kept": True, "reason": ""}
            task.shots.append(shot)
            if shot["duration_s"] < self.settings.shots.min_clip_s:
                task.drop_shot(shot, STAGE, "shot_too_short", f"{shot['duration_s']:.2f} s < shots.min_clip_s={cfg.min_clip_s}")
        return task
