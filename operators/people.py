"""People stage: detect, track and crop every person of each kept shot into single-person clips, and give
each track an identity.

Per kept shot:

1. Decode the shot at the detection rate (every ``detect_every_frames``-th frame of the ``clip_fps`` grid,
   longer side scaled to ``detect_max_side_px``) with ffmpeg, seeking like the clip encoder does, so
   detection frame j lies exactly on clip-media frame j*k. Frames are streamed and never kept.
2. Detect faces (SCRFD, or YuNet) and bodies (YOLOX-Nano, or an ultralytics checkpoint), link faces to
   bodies (:func:`operators.tracking.link_faces_bodies`), embed each usable face (MobileFaceNet or
   ArcFace on norm_crop-aligned 112x112 faces), and associate into tracks (:class:`operators.tracking.Tracker`).
3. ``shot["n_people"]`` = tracks present at least ``count_min_s`` (or half the shot when it is shorter).
   Fewer than ``quality.min_people``: the shot is dropped 'no_person'; more than ``quality.max_people``:
   'too_crowded' (or, with ``crowd_policy: keep_large``, only tracks with large, stable faces are kept
   when at most max_people of them remain).
4. Tracks become clips: too short ('track_too_short'), without a face ('no_face') or with small faces
   ('face_too_small') get track-level rejects; the rest are cut into windows of at most
   ``shots.max_clip_s`` (operators.clips.plan_windows), each with a stable crop (head motion range plus
   margins, fixed aspect, kept clear of other people's heads) encoded with clipmedia.encode_crop.

Identities: track embeddings (mean of the best faces) are clustered per video by average-linkage at
``identity_threshold`` with tracks seen at the same time kept apart; the global index across videos is the
post-run pass in pipeline/identity_index.py.

Shot-level reasons: no_person, too_crowded, video_decode_error. Track-level: track_too_short, no_face,
face_too_small. Clip-level: encode_failed. Video-level: model_missing.
"""
from __future__ import annotations

import logging
import math
import subprocess
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.registry import MissingModelError
from operators.base import Deadline, Operator, Resources, VideoTask
from operators.clipmedia import encode_crop
from operators.clips import clip_id, frame_time, plan_windows
from operators.media import MediaError, ffmpeg_bin
from operators.tracking import Track, Tracker, link_faces_bodies

STAGE = "people"
log = logging.getLogger("lpm.people")


# ----------------------------------------------------------------------------- decoding
def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def detection_size(w: int, h: int, max_side: int) -> tuple[int, int, float]:
    s = min(1.0, max_side / max(w, h))
    dw, dh = _even(w * s), _even(h * s)
    return dw, dh, dw / w


def active_region(shot: dict, src_w: int, src_h: int) -> tuple[int, int, int, int]:
    """(x0, y0, w, h) of the shot's active picture (shots.active_box) on even pixels, inside the frame."""
    box = shot.get("active_box")
    if not box:
        return 0, 0, src_w, src_h
    x0 = max(0, int(math.ceil(float(box[0]) / 2)) * 2)
    y0 = max(0, int(math.ceil(float(box[1]) / 2)) * 2)
    x1 = min(src_w, int(math.floor(float(box[2]))))
    y1 = min(src_h, int(math.floor(float(box[3]))))
    w, h = max(2, (x1 - x0) // 2 * 2), max(2, (y1 - y0) // 2 * 2)
    return x0, y0, w, h


def iter_frames(path: str, start_s: float, duration_s: float, fps: float, out_w: int, out_h: int,
                deadline: Deadline, timeout_s: float, region: tuple[int, int, int, int] | None = None):
    """Yield BGR uint8 frames of [start_s, start_s + duration_s) resampled to fps, cropped to region
    (x0, y0, w, h of the upright frame; None: whole frame) and scaled to out_w x out_h, streamed from
    ffmpeg (seek semantics identical to clipmedia.encode_crop; ffmpeg applies the display rotation)."""
    crop = f"crop={region[2]}:{region[3]}:{region[0]}:{region[1]}," if region else ""
    args = [ffmpeg_bin(), "-nostdin", "-hide_banner", "-v", "error", "-ss", f"{start_s:.6f}", "-i", path,
            "-t", f"{duration_s:.6f}", "-map", "0:v:0", "-an", "-vf",
            f"{crop}fps={fps:.6f},scale={out_w}:{out_h}:flags=area", "-f", "rawvideo", "-pix_fmt", "bgr24", "pipe:1"]
    n = out_w * out_h * 3
    import tempfile
    import time

    t_end = time.monotonic() + timeout_s
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise MediaError("video_decode_error", f"{args[0]} not found") from exc
        try:
            while True:
                deadline.check("people decode")
                if time.monotonic() > t_end:
                    raise MediaError("timeout", f"ffmpeg decode ran over {timeout_s:.0f} s")
                buf = proc.stdout.read(n)
                if not buf or len(buf) < n:
                    break
                yield np.frombuffer(buf, np.uint8).reshape(out_h, out_w, 3)
            rc = proc.wait(timeout=max(1.0, t_end - time.monotonic()))
            if rc != 0:
                err.seek(0)
                raise MediaError("video_decode_error", err.read().decode("utf-8", "replace")[-300:])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()


def seek_offset_s(path: str, video_start_s: float = 0.0) -> float:
    """What to add to a time on the video-stream timeline (0 = first video frame, as shots/clips rows
    use) to get ffmpeg's input ``-ss`` position, which counts from the container's start time: the
    video stream's start minus the container's (0.84 s on stage_performer_audience_music.mp4). Read from
    the file itself (a normalised copy starts at 0); ``video_start_s`` is used when the file has none."""
    import av

    try:
        with av.open(path) as c:
            fmt_start = (c.start_time or 0) / 1e6
            st = c.streams.video[0] if c.streams.video else None
            if st is not None and st.start_time is not None and st.time_base:
                video_start_s = float(st.start_time * st.time_base)
    except Exception:  # unreadable here means ffmpeg will say so with a reason when decoding
        fmt_start = 0.0
    return max(0.0, float(video_start_s or 0.0) - fmt_start)


def count_video_frames(data: bytes) -> int:
    import io

    import av

    with av.open(io.BytesIO(data)) as c:
        return sum(1 for p in c.demux(c.streams.video[0]) if p.size)


# ----------------------------------------------------------------------------- crop geometry
def head_range(boxes: np.ndarray) -> np.ndarray:
    """Robust extent [x0, y0, x1, y1] of a series of head boxes (5th/95th percentiles)."""
    return np.array([np.percentile(boxes[:, 0], 5), np.percentile(boxes[:, 1], 5),
                     np.percentile(boxes[:, 2], 95), np.percentile(boxes[:, 3], 95)])


def stable_crop(boxes: np.ndarray, frame_w: int, frame_h: int, margin: float, body: float, aspect: float,
                others: list[np.ndarray] | None = None, body_bottom: float | None = None) -> list[float]:
    """One crop [x0, y0, x1, y1] for a window: the head's motion range, ``margin`` face heights above and
    at the sides, ``margin + body`` below (but not below the bottom of the person's linked body box,
    ``body_bottom``, when the body visibly ends sooner: a close-up gets no empty space under the
    shoulders), widened or lengthened to ``aspect``, shrunk to fit the frame and to stay clear of other
    people's head ranges (``others``), shifted inside the frame."""
    rng = head_range(boxes)
    fh = float(np.median(boxes[:, 3] - boxes[:, 1]))
    cx = (rng[0] + rng[2]) / 2
    left, right = rng[0] - margin * fh, rng[2] + margin * fh
    top, bottom = rng[1] - margin * fh, rng[3] + (margin + body) * fh
    if body_bottom is not None and np.isfinite(body_bottom):
        bottom = min(bottom, max(rng[3] + margin * fh, float(body_bottom)))
    # neighbours: the crop may not reach into another person's head range
    lo_x, hi_x = 0.0, float(frame_w)
    for o in others or []:
        ocx = (o[0] + o[2]) / 2
        if o[3] < top or o[1] > bottom:
            continue
        if ocx > cx:
            hi_x = min(hi_x, max(o[0] - 0.05 * fh, rng[2]))
        else:
            lo_x = max(lo_x, min(o[2] + 0.05 * fh, rng[0]))
    w, h = right - left, bottom - top
    if w / h < aspect:
        w = h * aspect
    else:
        bottom = top + w / aspect
        h = w / aspect
    s = min(1.0, (hi_x - lo_x) / w, frame_h / h)
    w, h = w * s, h * s
    x0 = min(max(cx - w / 2, lo_x), hi_x - w)
    # keep the head top margin when shrinking: anchor near the head's top
    y0 = rng[1] - min(margin * fh, max(0.0, (h - (rng[3] - rng[1])) / 2)) if s < 1 else top
    y0 = min(max(y0, 0.0), frame_h - h)
    x0 = min(max(x0, 0.0), frame_w - w)
    return [float(x0), float(y0), float(x0 + w), float(y0 + h)]


# ----------------------------------------------------------------------------- per-shot result
@dataclass
class ShotTracks:
    tracks: list[Track]
    times: np.ndarray              # time of each detection frame (seconds, source timeline)
    counted: list[int] = field(default_factory=list)  # track ids counted as people
    n_det_frames: int = 0


class PeopleOperator(Operator):
    name = STAGE
    reads = ("video", "shots", "clips")
    writes = ("shots", "clips", "identities")
    resources = Resources(num_cpus=1.0, memory_mb=2048)
    scope = "shot"

    def setup(self) -> None:
        from models.faces import load_face_detector
        from models.identity import load_identity_model
        from models.persons import load_person_detector

        cfg = self.settings.people
        self.model_error: str | None = None
        self.fallbacks: list[str] = []
        self.low_face = max(0.05, cfg.face_score_min - 0.2)
        self.low_person = max(0.05, cfg.person_score_min - 0.15)
        try:
            try:
                self.face_det = load_face_detector(self.settings, score_min=self.low_face)
            except MissingModelError as exc:
                if cfg.face_detector != "scrfd":
                    raise
                log.warning("%s; using the fallback face detector yunet-320", exc)
                self.fallbacks.append(f"face detector scrfd-500m missing: yunet-320 used ({exc})")
                self.face_det = load_face_detector(self.settings, backend="yunet", score_min=self.low_face)
            self.person_det = load_person_detector(self.settings, score_min=self.low_person)
            self.embedder = load_identity_model(self.settings)
        except MissingModelError as exc:
            self.model_error = str(exc)

    # ------------------------------------------------------------------ detection + tracking of one shot
    def track_shot(self, path: str, start_s: float, end_s: float, src_w: int, src_h: int, deadline: Deadline,
                   seek_offset: float = 0.0, region: tuple[int, int, int, int] | None = None) -> ShotTracks:
        """Tracks of one shot. With ``region`` (x0, y0, w, h: the active picture) detection runs inside it
        and every box is in region coordinates (src_w, src_h are then the region's size)."""
        from models.identity import align_face

        cfg = self.settings.people
        k = cfg.detect_every_frames
        det_fps = cfg.clip_fps / k
        dw, dh, scale = detection_size(src_w, src_h, cfg.detect_max_side_px)
        # scores are rescaled so that 0.5 means "at the configured threshold" for faces and bodies alike
        tracker = Tracker(src_w, src_h, cfg.iou_match_min, high=0.5, max_missed=cfg.max_missed_detections)
        timeout = deadline.timeout_for(self.settings.run.subprocess_timeout_s)
        j = -1
        for j, frame in enumerate(iter_frames(path, start_s + seek_offset, end_s - start_s, det_fps, dw, dh, deadline, timeout,
                                              region)):
            faces = self.face_det.detect(frame)
            bodies = self.person_det.detect(frame)
            face_items = []
            for b, s_, kp in zip(faces.boxes, faces.scores, faces.kps):
                face_items.append((b / scale, float(s_), kp / scale))
            body_items = [(b / scale, float(s_)) for b, s_ in zip(bodies.boxes, bodies.scores)
                          if (b[3] - b[1]) / scale >= cfg.person_min_height_frac * src_h]
            persons = link_faces_bodies(face_items, body_items)
            # normalise scores so one threshold splits high/low for faces and bodies alike
            for p in persons:
                p.face_score = p.face_score * (0.5 / cfg.face_score_min) if cfg.face_score_min > 0 else p.face_score
                p.body_score = p.body_score * (0.5 / cfg.person_score_min) if cfg.person_score_min > 0 else p.body_score
            usable = [p for p in persons if p.face is not None and p.kps is not None
                      and (p.face[3] - p.face[1]) * scale >= 16 and p.face_score >= 0.5] if j % cfg.embed_every_detections == 0 else []
            if usable:
                aligned = [align_face(frame, p.kps * scale) for p in usable]
                emb = self.embedder.embed(aligned)
                for p, e in zip(usable, emb):
                    p.embedding = e
            tracker.update(j, persons)
        smooth = max(1, int(round(cfg.smooth_window_s * det_fps)) | 1)
        tracks = [t for t in tracker.finish(smooth) if len(t.obs) >= 2]
        n = j + 1
        times = start_s + np.arange(max(n, 1)) / det_fps
        return ShotTracks(tracks=tracks, times=times, n_det_frames=n)

    # ------------------------------------------------------------------ the stage
    def process(self, task: VideoTask, deadline: Deadline) -> VideoTask:
        cfg = self.settings.people
        q = self.settings.quality
        if self.model_error:
            task.reject(STAGE, "model_missing", self.model_error)
            return task
        v = task.video
        fps = float(v["fps"])
        rot = int(v.get("rotation_deg") or 0)
        src_w, src_h = int(v.get("display_width") or v["width"]), int(v.get("display_height") or v["height"])
        if not v.get("display_width") and rot in (90, 270):
            src_w, src_h = src_h, src_w
        times_all = task.scratch.get("frame_times")
        out_h = _even(cfg.clip_size_px)
        out_w = _even(cfg.clip_size_px * cfg.crop_aspect)
        kept_tracks: list[tuple[dict, Track, ShotTracks, tuple[int, int], tuple[int, int, int, int]]] = []
        with task.source() as path:
            self._seek_offset = seek_offset_s(path, v.get("video_start_s") or 0.0)
            for shot in task.kept_shots():
                deadline.check("people")
                region = active_region(shot, src_w, src_h)
                try:
                    st = self.track_shot(path, float(shot["start_s"]), float(shot["end_s"]), region[2], region[3], deadline,
                                         self._seek_offset, region)
                except MediaError as exc:
                    task.drop_shot(shot, STAGE, exc.reason, str(exc))
                    continue
                shot_len = float(shot["end_s"]) - float(shot["start_s"])
                det_dt = st.times[1] - st.times[0] if len(st.times) > 1 else 1.0 / cfg.clip_fps
                spans = {t.track_id: self._span(t, st, shot, fps) for t in st.tracks}
                need = min(cfg.count_min_s, 0.5 * shot_len)
                counted = [t for t in st.tracks if (t.last - t.first + 1) * det_dt >= need]
                n_people = len(counted)
                shot["n_people"] = n_people
                candidates = counted
                reason = self._decide(shot, n_people)
                if reason == "too_crowded" and cfg.crowd_policy == "keep_large":
                    large = [t for t in counted if t.face_frames() and np.median(t.face_heights()) >= cfg.crowd_face_min_px
                             and (spans[t.track_id][1] - spans[t.track_id][0]) / fps >= cfg.min_track_s]
                    if 1 <= len(large) <= q.max_people:
                        reason, candidates = None, large
                if reason:
                    msg = (f"{n_people} people tracked; quality.min_people={q.min_people}, max_people={q.max_people}"
                           + (f", crowd_policy={cfg.crowd_policy}" if reason == "too_crowded" else ""))
                    task.drop_shot(shot, STAGE, reason, msg)
                    continue
                for t in candidates:
                    a, b = spans[t.track_id]
                    why = self._track_reject(t, (b - a) / fps)
                    if why:
                        ts = frame_time(v, a, times_all)
                        te = frame_time(v, b, times_all) if b < int(shot["end_frame"]) else float(shot["end_s"])
                        task.add_reject(STAGE, "track", why[0], why[1], shot_index=shot["shot_index"], track_id=t.track_id,
                                        start_s=ts, end_s=te, duration_s=te - ts)
                        continue
                    kept_tracks.append((shot, t, st, (a, b), region))
            identities = self._identities(task, kept_tracks)
            new_clips = []
            for (shot, t, st, (a, b), region), ident in zip(kept_tracks, identities["per_track"]):
                others = [o for o in st.tracks if o.track_id != t.track_id and o.face_frames()]
                for wa, wb in plan_windows(a, b, fps, self.settings.shots.max_clip_s, self.settings.shots.window_overlap_s):
                    deadline.check("people clips")
                    clip = self._make_clip(task, path, shot, t, st, others, wa, wb, fps, times_all, region,
                                           out_w, out_h, rot, deadline, ident)
                    if clip is not None:
                        new_clips.append(clip)
        task.clips = new_clips
        task.identities = identities["identities"]
        models = [self.face_det, self.person_det, self.embedder]
        task.record_provenance(
            "people", STAGE, model=",".join(m.model.name for m in models),
            weights_sha256=",".join(m.model.digest for m in models),
            params={**cfg.model_dump(mode="json"), "min_people": q.min_people, "max_people": q.max_people,
                    "max_clip_s": self.settings.shots.max_clip_s, "fallbacks": self.fallbacks},
        )
        return task

    # ------------------------------------------------------------------ helpers
    def _decide(self, shot: dict, n_people: int) -> str | None:
        q = self.settings.quality
        try:
            from operators.quality import decide_shot  # the quality stage's single decision rule, when present
        except ImportError:
            decide_shot = None
        if decide_shot is not None:
            r = decide_shot(shot.get("quality") or {}, n_people, self.settings)
            if isinstance(r, tuple):
                r = r[0]
            return r or None
        if n_people < q.min_people:
            return "no_person"
        if n_people > q.max_people:
            return "too_crowded"
        return None

    def _span(self, t: Track, st: ShotTracks, shot: dict, fps: float) -> tuple[int, int]:
        """Source frames [a, b) covered by a track: first to last matched detection, stretched to the
        shot's ends when the track was there at the first/last detection frame."""
        det_dt = (st.times[1] - st.times[0]) if len(st.times) > 1 else 0.0
        t0 = float(shot["start_s"]) if t.first == 0 else float(st.times[t.first])
        t1 = float(shot["end_s"]) if t.last >= st.n_det_frames - 1 else float(st.times[t.last]) + det_dt / 2
        sf, ef = int(shot["start_frame"]), int(shot["end_frame"])
        a = sf + int(round((t0 - float(shot["start_s"])) * fps))
        b = sf + int(round((t1 - float(shot["start_s"])) * fps))
        return max(sf, min(a, ef)), max(sf, min(b, ef))

    def _track_reject(self, t: Track, dur_s: float) -> tuple[str, str] | None:
        cfg = self.settings.people
        if dur_s < cfg.min_track_s:
            return "track_too_short", f"track lasts {dur_s:.2f} s < people.min_track_s={cfg.min_track_s}"
        share = len(t.face_frames()) / max(1, len(t.obs))
        if share < cfg.min_face_share:
            return "no_face", f"a face was detected in {share:.0%} of the track's detections < people.min_face_share={cfg.min_face_share}"
        fh = float(np.median(t.face_heights()))
        if fh < cfg.face_min_px:
            return "face_too_small", f"median face height {fh:.0f} px < people.face_min_px={cfg.face_min_px}"
        return None

    def _identities(self, task: VideoTask, kept: list[tuple[dict, Track, ShotTracks, tuple[int, int], tuple[int, int, int, int]]]) -> dict[str, Any]:
        from models.identity import l2n

        cfg = self.settings.people
        refs = []
        for shot, t, _, (a, b), _ in kept:
            faces = [p for p in t.obs.values() if p.embedding is not None]
            faces.sort(key=lambda p: -(p.face_score * (p.face[3] - p.face[1])))
            faces = faces[: cfg.identity_faces_per_track]
            emb = l2n(np.mean([p.embedding for p in faces], axis=0)) if faces else None
            refs.append(TrackRef(int(shot["shot_index"]), int(t.track_id), a, b, emb))
        return cluster_identities(task.video_id, refs, cfg.identity_threshold)

    def _make_clip(self, task, path, shot, t: Track, st: ShotTracks, others: list[Track], a: int, b: int, fps: float,
                   times_all, region: tuple[int, int, int, int], out_w: int, out_h: int, rot: int, deadline: Deadline,
                   ident: tuple[str, np.ndarray | None]) -> dict | None:
        """One clip of a track; track boxes are in region coordinates, the row's boxes in source pixels."""
        ox, oy, src_w, src_h = region
        cfg = self.settings.people
        v = task.video
        s = frame_time(v, a, times_all)
        e = frame_time(v, b, times_all) if b < int(shot["end_frame"]) else float(shot["end_s"])
        dur = e - s
        cid = clip_id(task.video_id, shot["shot_index"], t.track_id, a, b)
        row = {"clip_id": cid, "video_id": task.video_id, "shot_index": shot["shot_index"], "track_id": t.track_id,
               "start_frame": a, "end_frame": b, "start_s": s, "end_s": e, "duration_s": dur, "fps": fps,
               "quality": shot.get("quality")}
        det_t = st.times[t.frames]
        n_est = max(1, int(round(dur * cfg.clip_fps)))
        boxes_est = self._boxes_at(t, det_t, s + np.arange(n_est) / cfg.clip_fps)
        other_ranges = []
        for o in others:
            if o.frames is None or np.isnan(o.face_boxes).all():
                continue
            ot = st.times[o.frames]
            inside = (ot >= s - 1e-6) & (ot <= e + 1e-6)
            if inside.any():
                other_ranges.append(head_range(o.face_boxes[inside]))
        inside = (det_t >= s - 1e-6) & (det_t <= e + 1e-6)
        bb = t.body_boxes[inside] if inside.any() else t.body_boxes
        body_bottom = float(np.nanmedian(bb[:, 3])) if np.isfinite(bb[:, 3]).any() else None
        crop = stable_crop(boxes_est, src_w, src_h, cfg.crop_margin, cfg.crop_body_faces, cfg.crop_aspect, other_ranges,
                           body_bottom)
        crop = [crop[0] + ox, crop[1] + oy, crop[2] + ox, crop[3] + oy]
        try:
            data = encode_crop(path, s + self._seek_offset, dur, crop, out_w, out_h, cfg.clip_fps,
                               deadline.timeout_for(self.settings.run.subprocess_timeout_s), with_audio=True, rotation_deg=rot)
            n = count_video_frames(data)
        except MediaError as exc:
            task.add_reject(STAGE, "clip", "encode_failed", str(exc), shot_index=shot["shot_index"], track_id=t.track_id,
                            clip_id=cid, start_s=s, end_s=e, duration_s=dur)
            return None
        boxes = self._boxes_at(t, det_t, s + np.arange(max(n, 1)) / cfg.clip_fps)[:n] + np.array([ox, oy, ox, oy])
        fh_obs = [p.face[3] - p.face[1] for j, p in t.obs.items() if p.face is not None and s - 1e-6 <= st.times[j] <= e + 1e-6]
        ident_id, emb = ident
        row.update({
            "identity_id": ident_id, "crop_box": crop,
            "frame_boxes": [[float(x) for x in bx] for bx in boxes],
            "face_size_px": float(np.median(fh_obs)) if fh_obs else float(np.median(t.face_heights())),
            "n_faces_in_shot": int(shot.get("n_people") or 0),
            "identity_embedding": emb.astype(np.float32).tolist() if emb is not None else None,
            "video_codec": "h264", "video_bytes": data, "clip_width": out_w, "clip_height": out_h, "clip_fps": cfg.clip_fps,
        })
        return row

    @staticmethod
    def _boxes_at(t: Track, det_t: np.ndarray, when: np.ndarray) -> np.ndarray:
        fb = t.face_boxes
        return np.column_stack([np.interp(when, det_t, fb[:, c]) for c in range(4)])


@dataclass
class TrackRef:
    """What identity clustering needs of one kept track: where it is and its mean face embedding."""

    shot_index: int
    track_id: int
    start_frame: int
    end_frame: int
    embedding: np.ndarray | None


def cluster_identities(video_id: str, tracks: list[TrackRef], threshold: float) -> dict[str, Any]:
    """People of one video: tracks clustered by face embedding (two tracks seen at the same time in one
    shot are never the same person). Returns ``identities`` (one dict per person) and ``per_track``
    ((identity_id, embedding) per track, in the order given)."""
    from models.identity import cluster_embeddings, l2n

    embs = [t.embedding for t in tracks]
    dim = next((len(e) for e in embs if e is not None), 1)
    mat = np.stack([e if e is not None else np.zeros(dim, np.float32) for e in embs]) if embs else np.zeros((0, dim))
    cannot = set()
    for i in range(len(tracks)):
        for j in range(i + 1, len(tracks)):
            ti, tj = tracks[i], tracks[j]
            if ti.shot_index == tj.shot_index and ti.start_frame < tj.end_frame and tj.start_frame < ti.end_frame:
                cannot.add((i, j))
    labels = cluster_embeddings(mat, threshold, cannot) if len(mat) else []
    ids = [f"{video_id}-p{lab:02d}" for lab in labels]
    identities = []
    for lab in sorted(set(labels)):
        members = [i for i, x in enumerate(labels) if x == lab]
        emb = l2n(np.mean([mat[i] for i in members], axis=0))
        identities.append({
            "identity_id": f"{video_id}-p{lab:02d}", "video_id": video_id,
            "embedding": emb.astype(np.float32).tolist(),
            "tracks": [{"shot_index": tracks[i].shot_index, "track_id": tracks[i].track_id} for i in members],
        })
    return {"identities": identities, "per_track": [(ids[i], embs[i]) for i in range(len(tracks))]}


class IdentityOperator(Operator):
    """Identities of a whole video (STAGE "identities"), once its shots were processed one by one: the
    people stage clusters the tracks of the shots it saw; this stage clusters every track of the video
    from its clips' ``identity_embedding`` and renumbers ``clips.identity_id`` (same rule, same result as
    the people stage run on the whole video)."""

    name = "identities"
    reads = ("video", "clips")
    writes = ("clips", "identities")
    resources = Resources(num_cpus=0.1, memory_mb=256)

    def process(self, task: VideoTask, deadline: Deadline) -> VideoTask:
        groups: dict[tuple[int, int], list[dict]] = {}
        for c in task.clips:
            if c.get("track_id") is None or int(c.get("track_id", -1)) < 0 or "identity_id" not in c:
                continue
            groups.setdefault((int(c.get("shot_index", -1)), int(c["track_id"])), []).append(c)
        if not groups:
            return task
        refs = []
        for (shot_index, track_id), clips in sorted(groups.items()):
            emb = next((c["identity_embedding"] for c in clips if c.get("identity_embedding") is not None), None)
            refs.append(TrackRef(shot_index, track_id, min(int(c["start_frame"]) for c in clips),
                                 max(int(c["end_frame"]) for c in clips),
                                 None if emb is None else np.asarray(emb, np.float32)))
        result = cluster_identities(task.video_id, refs, self.settings.people.identity_threshold)
        for (key, clips), (ident, _) in zip(sorted(groups.items()), result["per_track"]):
            for c in clips:
                c["identity_id"] = ident
        task.identities = result["identities"]
        return task
