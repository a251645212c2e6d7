"""Test inputs for the faces/references/captions/embeddings stages, built at test time from real media.

The composite: talking_face_1 [0, 3.0) s, talking_face_2 [0, 2.6) s, talking_face_1 [3.1, 6.1) s,
talking_face_2 [2.6, 5.0) s, each scaled to 480x480 at 25 fps: two people, each in two shots, so
every clip has footage of its identity outside itself. Until the people stage runs in these tests,
clip rows are built here the way the people stage builds them (operators.clipmedia.encode_crop of a
head-and-shoulders crop, frame_boxes = per clip frame head box in source pixels, identity ids).
"""
from __future__ import annotations

import functools
import shutil
from pathlib import Path

from conftest import ffmpeg

SEGMENTS = [  # (file, start_s, duration_s, identity)
    ("talking_face_1.mp4", 0.0, 3.0, "A"),
    ("talking_face_2.mp4", 0.0, 2.6, "B"),
    ("talking_face_1.mp4", 3.1, 3.0, "A"),
    ("talking_face_2.mp4", 2.6, 2.4, "B"),
]
SIZE = 480
FPS = 25


def make_composite(media_dir: Path, out: Path) -> Path:
    args = []
    for f, a, d, _ in SEGMENTS:
        args += ["-ss", f"{a}", "-t", f"{d}", "-i", str(media_dir / "video" / f)]
    parts = []
    for i in range(len(SEGMENTS)):
        parts.append(f"[{i}:v]scale={SIZE}:{SIZE},fps={FPS},setsar=1,format=yuv420p[v{i}];"
                     f"[{i}:a]aresample=16000,aformat=channel_layouts=mono[a{i}]")
    concat = "".join(f"[v{i}][a{i}]" for i in range(len(SEGMENTS))) + f"concat=n={len(SEGMENTS)}:v=1:a=1[v][a]"
    ffmpeg(*args, "-filter_complex", ";".join(parts) + ";" + concat, "-map", "[v]", "-map", "[a]",
           "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-g", "25", "-c:a", "aac", str(out))
    return out


def segment_bounds() -> list[tuple[float, float]]:
    out, t = [], 0.0
    for _, _, d, _ in SEGMENTS:
        out.append((t, t + d))
        t += d
    return out


def head_box(settings, src: Path, t: float) -> list[float]:
    """Head box in source pixels from the MediaPipe landmarks of one frame (the people stage's stand-in)."""
    from models.landmarks import FaceLandmarker
    from operators.references import decode_frame

    frame = decode_frame(str(src), t, 60)
    lm = FaceLandmarker.from_settings(settings, num_faces=1)
    try:
        faces = lm.detect(frame)
    finally:
        lm.close()
    x0, y0, x1, y1 = faces[0].box.tolist()
    h = y1 - y0
    return [x0 - 0.1 * h, y0 - 0.25 * h, x1 + 0.1 * h, y1 + 0.05 * h]


def build_task(settings, src: Path, clip_px: int = 256):
    """A VideoTask after probe, with shots and people-stage-like clip rows for the composite."""
    from operators.base import Deadline
    from operators.clipmedia import encode_crop
    from operators.clips import clip_id
    from operators.probe import ProbeOperator
    from operators.base import VideoTask

    task = ProbeOperator(settings).process(VideoTask(uri=str(src)), Deadline(120))
    assert task.ok, task.rejects
    trim = 2 / FPS
    for i, ((a, b), seg) in enumerate(zip(segment_bounds(), SEGMENTS)):
        sf, ef = int(round(a * FPS)), int(round(b * FPS))
        task.shots.append({"video_id": task.video_id, "shot_index": i, "start_frame": sf, "end_frame": ef, "start_s": a,
                           "end_s": b, "duration_s": b - a, "cut_in": "start" if i == 0 else "content", "kept": True,
                           "reason": "", "n_people": 1})
        s, e = a + trim, b - trim
        hb = head_box(settings, src, (s + e) / 2)
        hh = hb[3] - hb[1]
        cx, cy = (hb[0] + hb[2]) / 2, (hb[1] + hb[3]) / 2 + 0.3 * hh
        side = min(SIZE, 2.2 * hh)
        x0 = min(max(0.0, cx - side / 2), SIZE - side)
        y0 = min(max(0.0, cy - side / 2), SIZE - side)
        crop = [x0, y0, x0 + side, y0 + side]
        n = int(round((e - s) * FPS))
        vb = encode_crop(str(src), s, e - s, crop, clip_px, clip_px, FPS, 120)
        task.clips.append({
            "clip_id": clip_id(task.video_id, i, 0, sf + 2, ef - 2), "video_id": task.video_id, "shot_index": i,
            "track_id": 0, "start_frame": sf + 2, "end_frame": ef - 2, "start_s": s, "end_s": e, "duration_s": e - s,
            "fps": float(FPS), "identity_id": f"{task.video_id}:{seg[3]}", "crop_box": crop, "frame_boxes": [hb] * n,
            "face_size_px": hh, "n_faces_in_shot": 1, "video_codec": "h264", "video_bytes": vb, "clip_width": clip_px,
            "clip_height": clip_px, "clip_fps": float(FPS),
        })
    task.identities = [{"identity_id": f"{task.video_id}:{x}"} for x in ("A", "B")]
    return task


def run_stages(settings, task):
    from operators.base import run_operator
    from operators.captions import CaptionOperator
    from operators.embeddings import EmbeddingOperator
    from operators.faces import FaceAnalysisOperator
    from operators.references import ReferenceOperator

    for cls in (FaceAnalysisOperator, ReferenceOperator, CaptionOperator, EmbeddingOperator):
        task = run_operator(cls(settings), task, 600)
        assert task.ok, task.rejects
    return task


@functools.cache
def processed_composite(base: str, media_dir: str, model_dir: str):
    """(settings, source path, processed task) built once per test session."""
    from schemas.settings import Settings

    settings = Settings()
    settings.models.dir = model_dir
    d = Path(base) / "issue6"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    src = make_composite(Path(media_dir), d / "composite two shots.mp4")
    task = run_stages(settings, build_task(settings, src))
    return settings, src, task
