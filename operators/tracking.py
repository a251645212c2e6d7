"""Person tracking within one shot (pure: numpy + scipy, no I/O, no models).

Input: for each detection frame j (every k-th frame of the clip_fps grid) a list of :class:`Person`
observations, each a face (box, score, 5 landmarks, optional embedding) and/or a body box linked to it
(:func:`link_faces_bodies`). Output: :class:`Track` objects with one face box per detection frame of
their span.

Association (ByteTrack-style, two passes): detections at or above ``high`` score are matched to live
tracks first with the Hungarian method on IoU (face IoU when both sides have a face, else body IoU),
IoU >= ``iou_min``; left-over low-score detections (>= the detector's lower threshold) are then matched
to the still unmatched tracks, which keeps a track through a frame where its face scored low, but they
never start a track. Unmatched high-score detections start tracks.

Ending: a track ends after ``max_missed`` detection frames without a match, or at once when it is missed
while its last box touches the frame border (it left the frame). A track's span is first to last
matched detection: nothing is extrapolated past the last time it was seen.

Finishing (:meth:`Track.finish`): face boxes of missed frames inside the span are filled by linear
interpolation between matched faces (from the linked body box when only the body was seen), then
smoothed with a centred moving average of ``smooth_frames`` detection frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Person:
    """One person seen in one detection frame (face and/or body), in source pixels."""

    face: np.ndarray | None = None       # [4]
    face_score: float = 0.0
    kps: np.ndarray | None = None        # [5, 2]
    body: np.ndarray | None = None       # [4]
    body_score: float = 0.0
    embedding: np.ndarray | None = None  # identity embedding of the face, when computed

    @property
    def score(self) -> float:
        return max(self.face_score, self.body_score)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / ua) if ua > 0 else 0.0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def link_faces_bodies(faces: list[tuple[np.ndarray, float, np.ndarray | None]],
                      bodies: list[tuple[np.ndarray, float]]) -> list[Person]:
    """Link each face to at most one body box: the face centre must lie inside the body box, in its upper
    half, and the face must be narrower than the body. Best links first (Hungarian on a score that
    prefers a face near the top centre of a body of plausible size). Unlinked faces and bodies become
    persons of their own."""
    from scipy.optimize import linear_sum_assignment

    nf, nb = len(faces), len(bodies)
    score = np.full((nf, nb), -1e6)
    for i, (fb, _, _) in enumerate(faces):
        cx, cy = (fb[0] + fb[2]) / 2, (fb[1] + fb[3]) / 2
        fw, fh = fb[2] - fb[0], fb[3] - fb[1]
        for j, (bb, _) in enumerate(bodies):
            bw, bh = bb[2] - bb[0], bb[3] - bb[1]
            if not (bb[0] <= cx <= bb[2] and bb[1] - 0.5 * fh <= cy <= bb[1] + 0.6 * bh) or fw > 1.2 * bw or bw <= 0:
                continue
            dx = abs(cx - (bb[0] + bb[2]) / 2) / bw          # 0 at the body's centre line
            dy = max(0.0, (cy - bb[1]) / max(bh, 1e-6))       # 0 at the top of the body
            ratio = fw / bw                                   # heads are ~0.2-0.6 of body width
            score[i, j] = 1.0 - dx - 0.5 * dy - 0.5 * abs(np.log(max(ratio, 1e-3) / 0.35))
    persons: list[Person] = []
    used_f, used_b = set(), set()
    if nf and nb:
        rows, cols = linear_sum_assignment(-score)
        for i, j in zip(rows, cols):
            if score[i, j] > -1e5:
                fb, fs, kp = faces[i]
                persons.append(Person(face=fb, face_score=fs, kps=kp, body=bodies[j][0], body_score=bodies[j][1]))
                used_f.add(i)
                used_b.add(j)
    for i, (fb, fs, kp) in enumerate(faces):
        if i not in used_f:
            persons.append(Person(face=fb, face_score=fs, kps=kp))
    for j, (bb, bs) in enumerate(bodies):
        if j not in used_b:
            persons.append(Person(body=bb, body_score=bs))
    return persons


@dataclass
class Track:
    track_id: int
    obs: dict[int, Person] = field(default_factory=dict)  # detection frame index -> matched observation
    missed: int = 0
    alive: bool = True
    # filled by finish()
    frames: np.ndarray | None = None      # detection frame indices of the span
    face_boxes: np.ndarray | None = None  # [len(frames), 4] smoothed, gap-filled
    body_boxes: np.ndarray | None = None  # [len(frames), 4] gap-filled (NaN where never seen)

    @property
    def first(self) -> int:
        return min(self.obs)

    @property
    def last(self) -> int:
        return max(self.obs)

    def last_obs(self) -> Person:
        return self.obs[self.last]

    def last_face(self) -> np.ndarray | None:
        for j in sorted(self.obs, reverse=True)[:3]:
            if self.obs[j].face is not None:
                return self.obs[j].face
        return None

    def last_body(self) -> np.ndarray | None:
        for j in sorted(self.obs, reverse=True)[:3]:
            if self.obs[j].body is not None:
                return self.obs[j].body
        return None

    def face_frames(self) -> list[int]:
        return sorted(j for j, p in self.obs.items() if p.face is not None)

    def face_heights(self) -> np.ndarray:
        return np.array([p.face[3] - p.face[1] for p in self.obs.values() if p.face is not None], np.float64)

    def finish(self, smooth_frames: int = 1) -> "Track":
        frames = np.arange(self.first, self.last + 1)
        self.frames = frames
        self.body_boxes = _interp_boxes(frames, {j: p.body for j, p in self.obs.items() if p.body is not None})
        faces = {j: p.face for j, p in self.obs.items() if p.face is not None}
        if not faces:
            self.face_boxes = np.full((len(frames), 4), np.nan)
            return self
        # face seen only with its body at some frames: carry the face's offset/size relative to the body
        ratios = [(p.face - np.r_[p.body[:2], p.body[:2]]) / max(p.body[2] - p.body[0], 1e-6)
                  for p in self.obs.values() if p.face is not None and p.body is not None]
        if ratios:
            rel = np.median(np.stack(ratios), axis=0)
            for j, p in self.obs.items():
                if p.face is None and p.body is not None:
                    faces[j] = np.r_[p.body[:2], p.body[:2]] + rel * (p.body[2] - p.body[0])
        boxes = _interp_boxes(frames, faces)
        self.face_boxes = smooth_boxes(boxes, smooth_frames)
        return self


def _interp_boxes(frames: np.ndarray, known: dict[int, np.ndarray]) -> np.ndarray:
    out = np.full((len(frames), 4), np.nan)
    if not known:
        return out
    ks = np.array(sorted(known))
    vals = np.stack([np.asarray(known[k], np.float64) for k in ks])
    for c in range(4):
        out[:, c] = np.interp(frames, ks, vals[:, c])
    return out


def smooth_boxes(boxes: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of box centre and size (window in samples, shrunk at the ends)."""
    if window <= 1 or len(boxes) < 3:
        return boxes.copy()
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    half = window // 2
    out = []
    for v in (cx, cy, w, h):
        s = np.empty_like(v)
        for i in range(len(v)):
            r = min(half, i, len(v) - 1 - i)
            s[i] = v[i - r:i + r + 1].mean()
        out.append(s)
    cx, cy, w, h = out
    return np.column_stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


class Tracker:
    """Online association of per-frame Person observations into tracks (see module docstring)."""

    def __init__(self, frame_w: float, frame_h: float, iou_min: float = 0.3, high: float = 0.5,
                 max_missed: int = 3, border_frac: float = 0.01):
        self.w, self.h = frame_w, frame_h
        self.iou_min, self.high, self.max_missed = iou_min, high, max_missed
        self.border = border_frac * max(frame_w, frame_h)
        self.tracks: list[Track] = []
        self._next = 0

    def _sim(self, tracks: list[Track], dets: list[Person]) -> np.ndarray:
        s = np.zeros((len(tracks), len(dets)))
        for i, t in enumerate(tracks):
            tf, tb = t.last_face(), t.last_body()
            for j, d in enumerate(dets):
                if tf is not None and d.face is not None:
                    s[i, j] = iou(tf, d.face)
                elif tb is not None and d.body is not None:
                    s[i, j] = iou(tb, d.body)
                elif tb is not None and d.face is not None:
                    # face-only now, body-only before: the face must sit in the body's upper part
                    cx, cy = (d.face[0] + d.face[2]) / 2, (d.face[1] + d.face[3]) / 2
                    inside = tb[0] <= cx <= tb[2] and tb[1] <= cy <= tb[1] + 0.5 * (tb[3] - tb[1])
                    s[i, j] = self.iou_min if inside else 0.0
        return s

    def _touches_border(self, t: Track) -> bool:
        b = t.last_face() if t.last_face() is not None else t.last_body()
        if b is None:
            return False
        return b[0] <= self.border or b[1] <= self.border or b[2] >= self.w - self.border or b[3] >= self.h - self.border

    def update(self, j: int, dets: list[Person]) -> None:
        from scipy.optimize import linear_sum_assignment

        live = [t for t in self.tracks if t.alive]
        hi = [d for d in dets if d.score >= self.high]
        lo = [d for d in dets if d.score < self.high]
        matched: set[int] = set()
        for pool, may_start in ((hi, True), (lo, False)):
            cand = [t for t in live if t.track_id not in matched]
            if cand and pool:
                sim = self._sim(cand, pool)
                rows, cols = linear_sum_assignment(-sim)
                used = set()
                for r, c in zip(rows, cols):
                    if sim[r, c] >= self.iou_min:
                        cand[r].obs[j] = pool[c]
                        cand[r].missed = 0
                        matched.add(cand[r].track_id)
                        used.add(c)
                rest = [d for k, d in enumerate(pool) if k not in used]
            else:
                rest = list(pool)
            if may_start:
                for d in rest:
                    t = Track(self._next, {j: d})
                    self._next += 1
                    self.tracks.append(t)
                    matched.add(t.track_id)
        for t in live:
            if t.track_id in matched:
                continue
            t.missed += 1
            if t.missed > self.max_missed or self._touches_border(t):
                t.alive = False

    def finish(self, smooth_frames: int = 1) -> list[Track]:
        for t in self.tracks:
            t.alive = False
            t.finish(smooth_frames)
        return self.tracks
