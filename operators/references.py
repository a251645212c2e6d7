"""References stage: identity-aware reference frames for every single-person clip.

Per clip, all of the clip's identity and never from the clip itself (every reference's source time lies
at least ``references.exclusion_margin_s`` outside the clip's [start_s, end_s)):

* ``global``: appearance frames from the same source video; other shots of the same person are
  preferred, then sharp, near-frontal frames spread over different clips.
* ``body``: up to 4 views labelled frontal | left | right | rear by the paper's angle between camera
  and body facing direction (frontal >= frontal_min_deg, rear <= rear_max_deg, profiles between, left/right
  by sign). The angle comes from BlazePose world landmarks (shoulders, hips when seen), else from the
  MediaPipe head yaw; a frame where the body is seen but no face is found is a rear candidate.
* ``expression``: up to 8 sharp, near-frontal frames whose 52-d blendshape vectors are pairwise at least
  ``expression_min_distance`` apart (one per expression class first, then farthest-point fill), each
  labelled with its expression class; only from sources whose shorter side >= expression_min_source_px.

Candidates are the frames the faces stage analysed (task.scratch["faces"]); the chosen ones are decoded
once each from the SOURCE video (ffmpeg -ss, full resolution) and cropped around the person's head box.
See docs/REFERENCES.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from operators.base import Deadline, Operator, Resources, VideoTask
from operators.embeddings import encode_jpeg
from operators.expressions import blinking, frame_labels
from operators.media import MediaError, ffmpeg_bin, run_tool

STAGE = "references"
VIEW_ORDER = ("frontal", "left", "right", "rear")


@dataclass
class Candidate:
    clip_id: str
    shot_index: int
    src_t: float
    rel_t: float
    frame_index: int
    found: bool
    bs: np.ndarray | None
    yaw: float
    pitch: float
    sharp: float
    body_yaw: float = float("nan")
    body_seen: bool = False
    head_box: list[float] | None = None
    crop_box: list[float] | None = None
    view: str = ""
    angle: float = float("nan")
    orientation_source: str = ""
    label: str = ""
    meta: dict = field(default_factory=dict)

    @property
    def sharp_q(self) -> float:
        return 1.0 - math.exp(-max(self.sharp, 0.0) / 150.0)


def view_of(c: Candidate, frontal_min: float, rear_max: float) -> tuple[str, float, str]:
    """(view label, camera/body angle in degrees, what decided it) or ('', nan, '')."""
    from models.pose import camera_body_angle_deg, view_label

    if c.body_seen and not c.found:
        return "rear", 0.0, "body seen, no face"
    if not math.isnan(c.body_yaw):
        yaw, src = c.body_yaw, "body"
    elif c.found and not math.isnan(c.yaw):
        yaw, src = c.yaw, "head"
    else:
        return "", float("nan"), ""
    angle = camera_body_angle_deg(yaw)
    return view_label(angle, yaw, frontal_min, rear_max), angle, src


def gather_candidates(task: VideoTask, cfg) -> dict[str, list[Candidate]]:
    """Candidates per identity from the faces stage's per-frame analysis."""
    faces = task.scratch.get("faces") or {}
    out: dict[str, list[Candidate]] = {}
    for clip in task.clips:
        ident = clip.get("identity_id")
        fa = faces.get(clip.get("clip_id"))
        if not ident or not fa or not len(fa["t"]):
            continue
        t = np.asarray(fa["t"], dtype=np.float64)
        step = max(1, int(round(cfg.face_sample_fps / cfg.candidate_fps)))
        pose_t = np.asarray(fa.get("pose_t", []), dtype=np.float64)
        fps = float(clip.get("clip_fps") or 25.0)
        boxes = clip.get("frame_boxes") or []
        for i in range(0, len(t), step):
            k = int(round(t[i] * fps))
            head = list(boxes[min(k, len(boxes) - 1)]) if boxes else None
            c = Candidate(clip["clip_id"], int(clip.get("shot_index", -1)), float(clip["start_s"]) + float(t[i]), float(t[i]), k,
                          bool(fa["found"][i]), np.asarray(fa["bs"][i], dtype=np.float32) if fa["found"][i] else None,
                          float(fa["hp"][i][0]), float(fa["hp"][i][1]), float(fa["sharp"][i]), head_box=head,
                          crop_box=list(clip["crop_box"]) if clip.get("crop_box") is not None else None)
            if len(pose_t):
                j = int(np.argmin(np.abs(pose_t - t[i])))
                if abs(pose_t[j] - t[i]) <= 0.5 / cfg.pose_sample_fps + 1e-6:
                    c.body_yaw = float(fa["body_yaw"][j])
                    c.body_seen = bool(fa["body_seen"][j])
            c.view, c.angle, c.orientation_source = view_of(c, cfg.frontal_min_deg, cfg.rear_max_deg)
            out.setdefault(ident, []).append(c)
    for ident, cands in out.items():
        if len(cands) > cfg.max_candidates_per_identity:
            keep = np.linspace(0, len(cands) - 1, cfg.max_candidates_per_identity).round().astype(int)
            out[ident] = [cands[i] for i in sorted(set(keep.tolist()))]
    return out


def outside(c: Candidate, clip: dict, margin_s: float) -> bool:
    return c.src_t < float(clip["start_s"]) - margin_s or c.src_t >= float(clip["end_s"]) + margin_s


def _pref(c: Candidate, clip: dict) -> float:
    """Preference: other shots first, then sharpness and frontality."""
    other = 1.0 if c.shot_index != clip.get("shot_index") else 0.0
    frontal = math.cos(math.radians(min(abs(c.yaw), 89.0))) if c.found and not math.isnan(c.yaw) else 0.3
    return other * 10.0 + c.sharp_q * frontal + (0.2 if c.found else 0.0)


def pick_global(cands: list[Candidate], clip: dict, n: int) -> list[Candidate]:
    ranked = sorted(cands, key=lambda c: -_pref(c, clip))
    chosen: list[Candidate] = []
    for c in ranked:  # spread: a different clip, or >= 2 s from the ones already chosen
        if len(chosen) >= n:
            break
        if all(c.clip_id != o.clip_id or abs(c.src_t - o.src_t) >= 2.0 for o in chosen):
            chosen.append(c)
    return chosen


def pick_views(cands: list[Candidate], clip: dict, n: int) -> list[Candidate]:
    chosen = []
    for view in VIEW_ORDER:
        if len(chosen) >= n:
            break
        vs = [c for c in cands if c.view == view]
        if vs:
            chosen.append(max(vs, key=lambda c: _pref(c, clip)))
    return chosen


def pick_expressions(cands: list[Candidate], clip: dict, cfg) -> list[Candidate]:
    """Pairwise-distinct (blendshape L2 >= expression_min_distance), sharp, near-frontal exemplars."""
    pool = [c for c in cands if c.found and c.bs is not None and abs(c.yaw) <= cfg.expression_max_yaw_deg
            and abs(c.pitch) <= cfg.expression_max_yaw_deg and not bool(blinking(c.bs)[0])]
    if not pool or cfg.max_expressions == 0:
        return []
    labels, conf = frame_labels(np.stack([c.bs for c in pool]))
    for c, lab, q in zip(pool, labels, conf):
        c.label = lab
        c.meta["label_score"] = float(q)
    score = {id(c): c.sharp_q * math.cos(math.radians(min(abs(c.yaw), 89.0))) * (0.5 + 0.5 * c.meta["label_score"])
             + (0.5 if c.shot_index != clip.get("shot_index") else 0.0) for c in pool}
    chosen: list[Candidate] = []

    def far_enough(c):
        return all(float(np.linalg.norm(c.bs - o.bs)) >= cfg.expression_min_distance for o in chosen)

    # one exemplar per expression class (best score), most confident classes first
    by_label: dict[str, list[Candidate]] = {}
    for c in pool:
        by_label.setdefault(c.label, []).append(c)
    firsts = sorted((max(v, key=lambda c: score[id(c)]) for v in by_label.values()), key=lambda c: -c.meta["label_score"])
    for c in firsts:
        if len(chosen) < cfg.max_expressions and far_enough(c):
            chosen.append(c)
    # farthest-point fill among the rest
    rest = [c for c in pool if c not in chosen]
    while len(chosen) < cfg.max_expressions and rest:
        if chosen:
            d = [min(float(np.linalg.norm(c.bs - o.bs)) for o in chosen) for c in rest]
            i = int(np.argmax([di + 0.01 * score[id(c)] for di, c in zip(d, rest)]))
            if d[i] < cfg.expression_min_distance:
                break
        else:
            i = int(np.argmax([score[id(c)] for c in rest]))
        chosen.append(rest.pop(i))
    for c in chosen:
        others = [float(np.linalg.norm(c.bs - o.bs)) for o in chosen if o is not c]
        c.meta["min_blendshape_distance"] = min(others) if others else float("nan")
    return chosen


# ------------------------------------------------------------------------------------------- crops
def head_box_of(c: Candidate) -> list[float] | None:
    if c.head_box is not None:
        return c.head_box
    if c.crop_box is not None:  # no per-frame box: the upper middle of the clip crop
        x0, y0, x1, y1 = c.crop_box
        w = x1 - x0
        return [x0 + 0.3 * w, y0 + 0.1 * (y1 - y0), x1 - 0.3 * w, y0 + 0.1 * (y1 - y0) + 0.4 * w]
    return None


def crop_for(kind: str, box: list[float], shape: tuple[int, int], cfg,
             bounds: list[float] | None = None) -> tuple[int, int, int, int]:
    """Reference crop (x0, y0, x1, y1) around a head box, inside the frame and inside ``bounds`` (the
    shot's active picture, so a reference never shows letterbox/pillarbox bars)."""
    x0, y0, x1, y1 = box
    hh = max(2.0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    if kind == "expression":
        side = hh * (1.0 + 2 * cfg.expression_crop_margin)
        bx = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
    else:
        m = cfg.body_crop_margin
        bx = (cx - (0.5 + m) * hh, y0 - 0.5 * m * hh, cx + (0.5 + m) * hh, y1 + 2.0 * m * hh)
    h, w = shape
    lx, ly, hx, hy = (0.0, 0.0, float(w), float(h)) if bounds is None else (
        max(0.0, float(bounds[0])), max(0.0, float(bounds[1])), min(float(w), float(bounds[2])), min(float(h), float(bounds[3])))
    a, b = int(max(math.ceil(lx), math.floor(bx[0]))), int(max(math.ceil(ly), math.floor(bx[1])))
    c, d = int(min(math.floor(hx), math.ceil(bx[2]))), int(min(math.floor(hy), math.ceil(bx[3])))
    return a, b, c, d


def sharpness(rgb: np.ndarray) -> float:
    import cv2

    g = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    s = 256.0 / max(g.shape)
    if s < 1:
        g = cv2.resize(g, (max(1, int(g.shape[1] * s)), max(1, int(g.shape[0] * s))), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(g, cv2.CV_64F).var())


def decode_frame(path: str, t: float, timeout_s: float) -> np.ndarray:
    """One upright RGB frame of the source at time t (accurate seek)."""
    import cv2

    args = [ffmpeg_bin(), "-nostdin", "-hide_banner", "-v", "error", "-ss", f"{max(0.0, t):.6f}", "-i", path,
            "-map", "0:v:0", "-frames:v", "1", "-c:v", "bmp", "-f", "image2pipe", "pipe:1"]
    proc = run_tool(args, timeout_s, reason="video_decode_error")
    if proc.returncode != 0 or not proc.stdout:
        raise MediaError("video_decode_error", proc.stderr.decode("utf-8", "replace")[-300:] or f"no frame at {t:.3f} s")
    img = cv2.imdecode(np.frombuffer(proc.stdout, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError("video_decode_error", f"undecodable frame at {t:.3f} s")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


# ------------------------------------------------------------------------------------------ operator
class ReferenceOperator(Operator):
    name = STAGE
    reads = ("video", "clips")
    writes = ("clips",)
    resources = Resources(num_cpus=0.5, memory_mb=1024)

    def process(self, task: VideoTask, deadline: Deadline) -> VideoTask:
        cfg = self.settings.references
        cands = gather_candidates(task, cfg)
        src_short = min(int(task.video.get("width") or 0), int(task.video.get("height") or 0))
        expr_ok = src_short >= cfg.expression_min_source_px
        timeout = deadline.timeout_for(self.settings.run.subprocess_timeout_s)
        summaries = task.scratch.setdefault("references", {})
        meta_col: dict[str, list[dict]] = {}
        cache: dict[float, np.ndarray] = {}
        active = {int(sh["shot_index"]): sh.get("active_box") for sh in task.shots}
        with task.source() as path:
            for clip in list(task.clips):
                deadline.check("references")
                ident = clip.get("identity_id")
                pool = [c for c in cands.get(ident, []) if outside(c, clip, cfg.exclusion_margin_s)] if ident else []
                picks: list[tuple[str, Candidate, str]] = []
                for c in pick_global(pool, clip, cfg.global_refs):
                    picks.append(("global", c, "appearance"))
                for c in pick_views(pool, clip, cfg.max_body_views):
                    picks.append(("body", c, c.view))
                exprs = pick_expressions(pool, clip, cfg) if expr_ok else []
                for c in exprs:
                    picks.append(("expression", c, c.label))
                refs, metas = [], []
                for kind, c, label in picks:
                    deadline.check("reference decode")
                    key = round(c.src_t, 4)
                    if key not in cache:
                        try:
                            cache[key] = decode_frame(path, c.src_t, timeout)
                        except MediaError:
                            continue
                        if len(cache) > 48:
                            cache.pop(next(iter(cache)))
                    frame = cache[key]
                    box = head_box_of(c)
                    if box is None:
                        continue
                    a, b, cc, d = crop_for(kind, box, frame.shape[:2], cfg, active.get(c.shot_index))
                    if cc - a < 8 or d - b < 8:
                        continue
                    crop = np.ascontiguousarray(frame[b:d, a:cc])
                    q = 1.0 - math.exp(-sharpness(crop) / 150.0)
                    if kind == "expression":
                        q *= math.cos(math.radians(min(abs(c.yaw), 89.0)))
                    refs.append({"kind": kind, "label": label, "jpeg": encode_jpeg(crop, cfg.jpeg_quality),
                                 "source_video_id": task.video_id, "source_time_s": float(c.src_t), "identity_id": ident,
                                 "quality": float(q)})
                    m = {"source_clip_id": c.clip_id, "source_shot_index": str(c.shot_index)}
                    if kind == "body":
                        m.update(angle_deg=f"{c.angle:.1f}", yaw_deg=f"{c.body_yaw if c.orientation_source == 'body' else c.yaw:.1f}",
                                 orientation_source=c.orientation_source)
                    if kind == "expression":
                        m.update(label_score=f"{c.meta.get('label_score', 0):.3f}",
                                 min_blendshape_distance=f"{c.meta.get('min_blendshape_distance', float('nan')):.3f}",
                                 yaw_deg=f"{c.yaw:.1f}", pitch_deg=f"{c.pitch:.1f}")
                    metas.append(m)
                clip["references"] = refs
                meta_col[clip["clip_id"]] = metas
                n_expr = sum(1 for r in refs if r["kind"] == "expression")
                n_glob = sum(1 for r in refs if r["kind"] == "global")
                notes = []
                if not ident:
                    notes.append("no identity")
                elif not pool:
                    notes.append("no footage of this identity outside the clip")
                if not expr_ok:
                    notes.append(f"source {src_short}px < expression_min_source_px {cfg.expression_min_source_px}")
                elif n_expr < cfg.min_expressions:
                    notes.append(f"{n_expr} distinct expressions < min_expressions {cfg.min_expressions}")
                summaries[clip["clip_id"]] = {
                    "global": n_glob, "views": [r["label"] for r in refs if r["kind"] == "body"],
                    "expressions": [r["label"] for r in refs if r["kind"] == "expression"], "notes": notes,
                }
                if cfg.require_references and (n_glob == 0 or n_expr < cfg.min_expressions):
                    task.drop_clip(clip, STAGE, "no_references", "; ".join(notes) or "too few references")
        task.scratch["reference_meta"] = meta_col
        for clip in task.clips:
            clip["reference_meta"] = meta_col.get(clip["clip_id"], [])
        fp = task.provenance.get("faces", {})
        bp = task.provenance.get("body_pose", {})
        task.record_provenance("references", STAGE, ",".join(x for x in (fp.get("model"), bp.get("model")) if x),
                               ",".join(x for x in (fp.get("weights_sha256"), bp.get("weights_sha256")) if x),
                               cfg.model_dump(mode="json"))
        return task
