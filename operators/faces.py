"""Faces stage: per clip face and body analysis -> head pose, blendshapes, expression and motion stats.

For every clip the clip media is decoded at ``references.face_sample_fps``; the MediaPipe face
landmarker (models/landmarks.py, VIDEO mode, the face nearest the tracked head box) gives per analysed
frame 52 blendshapes, the head pose matrix (-> yaw/pitch/roll) and mouth openness; BlazePose lite
(models/pose.py) runs on every k-th analysed frame (``references.pose_sample_fps``) for body motion and
body orientation. Columns written:

* ``face_times_s`` / ``head_pose``: clip-relative time and [yaw, pitch, roll] (degrees, NaN without a
  face) of each analysed frame. yaw > 0: the face turns toward image-right; pitch > 0: looking down.
* ``blendshapes_mean``: mean 52-d blendshape vector (MediaPipe order, models.landmarks.BLENDSHAPE_NAMES).
* ``expression_stats``: label shares of the 8 expression classes (operators/expressions.py), dominant
  and neutral share, entropy, change rate, oscillation, blink rate, mouth openness mean/std/max/p90.
* ``motion_stats``: head yaw/pitch/roll std, head angular speed (deg/s), head translation speed (face
  heights/s), body motion (upper-body landmark speed in shoulder widths/s), body_seen_share and a
  combined ``motion_intensity`` in [0, 1] (see MOTION_SCALES).
* ``mouth_open``: per clip frame, filled (interpolated) only when the conversation stage left it empty.

Per-frame arrays the references and captions stages need stay in ``task.scratch["faces"][clip_id]``.
"""
from __future__ import annotations


import numpy as np

from operators.base import Deadline, Operator, Resources, VideoTask
from operators.clipmedia import read_clip_frames
from operators.expressions import expression_stats
from operators.media import MediaError

STAGE = "faces"
# motion_intensity = mean over the available parts of min(1, value / scale)
MOTION_SCALES = {"head_angular_speed_deg_s": 40.0, "head_translation_speed": 0.6, "body_motion": 0.4}


def has_media(clip: dict) -> bool:
    return bool(clip.get("video_bytes") or clip.get("video_uri"))


def to_clip_box(box, clip: dict) -> list[float] | None:
    """A source-pixel box mapped into the clip media's pixels (through crop_box)."""
    cb = clip.get("crop_box")
    w, h = clip.get("clip_width"), clip.get("clip_height")
    if box is None or cb is None or not w or not h:
        return None
    sx = float(w) / max(1e-6, cb[2] - cb[0])
    sy = float(h) / max(1e-6, cb[3] - cb[1])
    return [(box[0] - cb[0]) * sx, (box[1] - cb[1]) * sy, (box[2] - cb[0]) * sx, (box[3] - cb[1]) * sy]


def face_sharpness(rgb: np.ndarray, box) -> float:
    import cv2

    if box is None:
        return 0.0
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return 0.0
    g = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
    g = cv2.resize(g, (128, 128), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(g, cv2.CV_64F).var())


def _angular_speed(hp: np.ndarray, t: np.ndarray) -> float:
    ok = np.all(np.isfinite(hp), axis=1)
    if ok.sum() < 2:
        return 0.0
    d = np.linalg.norm(np.diff(hp[ok], axis=0), axis=1)
    dt = np.maximum(np.diff(t[ok]), 1e-3)
    return float(np.median(d / dt))


def motion_stats(t: np.ndarray, hp: np.ndarray, head_boxes: list | None, box_times: np.ndarray | None,
                 pose_t: np.ndarray, body_pts: list[np.ndarray | None]) -> dict[str, float]:
    out: dict[str, float] = {}
    ok = np.all(np.isfinite(hp), axis=1) if len(hp) else np.zeros(0, bool)
    if ok.sum() >= 2:
        out["head_yaw_std"] = float(np.std(hp[ok, 0]))
        out["head_pitch_std"] = float(np.std(hp[ok, 1]))
        out["head_roll_std"] = float(np.std(hp[ok, 2]))
        out["head_yaw_range"] = float(np.ptp(hp[ok, 0]))
        out["head_pitch_range"] = float(np.ptp(hp[ok, 1]))
        out["head_angular_speed_deg_s"] = _angular_speed(hp, t)
    if head_boxes is not None and len(head_boxes) >= 2:
        b = np.asarray(head_boxes, dtype=np.float64)
        c = (b[:, :2] + b[:, 2:]) / 2
        size = np.maximum(np.median(b[:, 3] - b[:, 1]), 1.0)
        dt = np.maximum(np.diff(box_times), 1e-3)
        sp = np.linalg.norm(np.diff(c, axis=0), axis=1) / size / dt
        out["head_translation_speed"] = float(np.median(sp))
        out["head_scale_change"] = float(np.std((b[:, 3] - b[:, 1]) / size))
    seen = [i for i, p in enumerate(body_pts) if p is not None]
    out["body_seen_share"] = len(seen) / len(body_pts) if body_pts else 0.0
    speeds = []
    for a, b in zip(seen, seen[1:]):
        pa, pb = body_pts[a], body_pts[b]
        both = np.isfinite(pa[:, 0]) & np.isfinite(pb[:, 0])
        if both.sum() >= 2 and pose_t[b] > pose_t[a]:
            speeds.append(float(np.mean(np.linalg.norm(pb[both] - pa[both], axis=1)) / (pose_t[b] - pose_t[a])))
    if speeds:
        out["body_motion"] = float(np.median(speeds))
    parts = [min(1.0, out[k] / s) for k, s in MOTION_SCALES.items() if k in out]
    out["motion_intensity"] = float(np.mean(parts)) if parts else 0.0
    return out


class FaceAnalysisOperator(Operator):
    name = STAGE
    reads = ("clips",)
    writes = ("clips",)
    resources = Resources(num_cpus=1.0, memory_mb=2048)
    scope = "shot"

    def setup(self) -> None:
        from models.landmarks import FaceLandmarker
        from models.pose import BlazePose
        from models.registry import MissingModelError

        self.missing = ""
        try:
            self.landmarker = FaceLandmarker.from_settings(self.settings, num_faces=2)
            self.pose, self.pose_digest = BlazePose.from_settings(self.settings)
        except MissingModelError as exc:
            self.missing = str(exc)

    def _body(self, rgb: np.ndarray):
        """(body yaw or NaN, body seen, upper-body points normalised by shoulder width or None)."""
        from models.pose import LEFT_SHOULDER, RIGHT_SHOULDER, UPPER_BODY, body_yaw_deg

        res = self.pose(rgb)
        if res is None or res.score < 0.5:
            return float("nan"), False, None
        shoulders_seen = res.visible(LEFT_SHOULDER) and res.visible(RIGHT_SHOULDER)
        if not shoulders_seen:
            return float("nan"), False, None
        yaw = body_yaw_deg(res)
        sw = float(np.linalg.norm(res.landmarks[LEFT_SHOULDER, :2] - res.landmarks[RIGHT_SHOULDER, :2]))
        pts = np.full((len(UPPER_BODY), 2), np.nan, np.float32)
        if sw > 4:
            for j, idx in enumerate(UPPER_BODY):
                if res.visible(idx):
                    pts[j] = res.landmarks[idx, :2] / sw
        return (float("nan") if yaw is None else float(yaw)), True, pts

    def process(self, task: VideoTask, deadline: Deadline) -> VideoTask:
        from models.landmarks import head_pose_angles, mouth_openness_frame

        cfg = self.settings.references
        if not any(has_media(c) for c in task.clips):
            return task  # whole-frame clips without media (no people stage): nothing to analyse
        if self.missing:
            return task.reject(STAGE, "model_missing", self.missing)
        timeout = deadline.timeout_for(self.settings.run.subprocess_timeout_s)
        scratch = task.scratch.setdefault("faces", {})
        fps_a = cfg.face_sample_fps
        pose_every = max(1, int(round(fps_a / cfg.pose_sample_fps)))
        for clip in list(task.clips):
            deadline.check("faces")
            if not has_media(clip):
                continue
            try:
                frames = read_clip_frames(clip, fps=fps_a, timeout_s=timeout)
            except MediaError as exc:
                task.drop_clip(clip, STAGE, exc.reason, str(exc))
                continue
            n = len(frames)
            if n == 0:
                task.drop_clip(clip, STAGE, "video_decode_error", "clip media decoded to no frames")
                continue
            t = np.arange(n, dtype=np.float64) / fps_a
            cfps = float(clip.get("clip_fps") or 25.0)
            boxes = clip.get("frame_boxes") or []
            box_idx = [min(len(boxes) - 1, int(round(ti * cfps))) for ti in t] if boxes else []
            targets = [to_clip_box(boxes[k], clip) for k in box_idx] if boxes else None
            track = self.landmarker.track(frames, fps=fps_a, target_boxes=targets)
            found = np.array([f is not None for f in track], bool)
            bs = np.zeros((n, 52), np.float32)
            hp = np.full((n, 3), np.nan, np.float32)
            mouth = np.full(n, np.nan, np.float32)
            sharp = np.zeros(n, np.float32)
            for i, f in enumerate(track):
                if f is None:
                    continue
                bs[i] = np.nan_to_num(f.blendshapes[:52])
                hp[i] = head_pose_angles(f.matrix)
                mouth[i] = mouth_openness_frame(f)
                sharp[i] = face_sharpness(frames[i], f.box)
            pose_idx = list(range(0, n, pose_every))
            body_yaw, body_seen, body_pts = [], [], []
            for i in pose_idx:
                deadline.check("body pose")
                y, seen, pts = self._body(frames[i])
                body_yaw.append(y)
                body_seen.append(seen)
                body_pts.append(pts)
            pose_t = t[pose_idx]
            es = expression_stats(bs, t, found)
            mo = mouth[np.isfinite(mouth)]
            if len(mo):
                es.update(mouth_open_mean=float(mo.mean()), mouth_open_std=float(mo.std()), mouth_open_max=float(mo.max()),
                          mouth_open_p90=float(np.percentile(mo, 90)))
            head_boxes = [boxes[k] for k in box_idx] if boxes else [f.box.tolist() for f in track if f is not None]
            box_t = t if boxes else t[found]
            ms = motion_stats(t, hp.astype(np.float64), head_boxes, box_t, pose_t, body_pts)
            clip["face_times_s"] = t.astype(np.float32).tolist()
            clip["head_pose"] = [[float(v) for v in row] for row in hp]
            clip["blendshapes_mean"] = bs[found].mean(axis=0).tolist() if found.any() else None
            clip["expression_stats"] = es
            clip["motion_stats"] = ms
            if not clip.get("mouth_open") and found.any():
                n_clip = len(boxes) if boxes else int(round(float(clip.get("duration_s") or n / fps_a) * cfps))
                tc = np.arange(n_clip) / cfps
                ok = np.isfinite(mouth)
                clip["mouth_open"] = np.interp(tc, t[ok], mouth[ok]).astype(np.float32).tolist() if ok.any() else None
            scratch[clip["clip_id"]] = {
                "t": t.astype(np.float32), "found": found, "bs": bs.astype(np.float16), "hp": hp, "sharp": sharp,
                "pose_t": pose_t.astype(np.float32), "body_yaw": np.asarray(body_yaw, np.float32),
                "body_seen": np.asarray(body_seen, bool),
            }
        task.record_provenance("faces", STAGE, "mediapipe-face-landmarker", self.landmarker.digest,
                               {"face_sample_fps": fps_a})
        task.record_provenance("body_pose", STAGE, "blazepose-lite", self.pose_digest,
                               {"pose_sample_fps": cfg.pose_sample_fps})
        return task
