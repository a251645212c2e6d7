"""Captions stage: structured tags and a caption per clip and per sentence-bounded segment.

Tags (column ``tags``, all strings) are computed from what earlier stages wrote; an input that is
absent (no conversation or audio stage ran) degrades to ``unknown`` and is listed in ``tags["missing"]``:

  state, state_shares          clip_class / frame_states (conversation stage)
  expression, expression_level dominant expressions and oscillation (faces stage expression_stats)
  motion_intensity, head_motion, body_motion   faces stage motion_stats
  shot_type                    face height / source frame height (close-up, medium close-up, medium, wide)
  speaking_rate                words per second of speaking time (audio stage words/transcript)
  transcript                   audio stage transcript
  references                   what the references stage found
  captioner                    tags | vlm:<model>

The caption text comes from the captioner backend: ``tags`` (default) composes it from the tags;
``vlm`` runs a transformers vision-language model from ``captions.vlm_model_dir`` on the clip's middle
frame (models/captioner.py). The tags caption quotes what the person says (their own ``transcript``,
cut at CAPTION_MAX_WORDS words with '...'). Listener clips keep only time-invariant content (no
transcript), as in the paper. With ``captions.segment_captions`` every sentence of ``sentences`` gets its own caption,
from the tags restricted to the sentence's time range.
"""
from __future__ import annotations

import json
import logging
import math

import numpy as np

from operators.base import Deadline, Operator, Resources, VideoTask
from operators.expressions import frame_labels

STAGE = "captions"
log = logging.getLogger("lpm.captions")

CAPTION_MAX_WORDS = 30  # the quoted transcript in a caption is cut here, with '...'
STATE_WORDS = {"speak": "speaking", "listen": "listening", "idle": "idle", "mixed": "talking and listening in turns"}


# ------------------------------------------------------------------------------------------- tags
def level(x: float, low: float, high: float) -> str:
    return "low" if x <= low else ("high" if x >= high else "medium")


def shot_type(clip: dict, video: dict) -> str:
    face = clip.get("face_size_px")
    if not face and clip.get("frame_boxes"):
        face = float(np.median([b[3] - b[1] for b in clip["frame_boxes"]]))
    h = min(float(video.get("height") or 0), float(video.get("width") or 0)) or float(video.get("height") or 0)
    if not face or not h:
        return "unknown"
    r = float(face) / h
    if r >= 0.35:
        return "close-up"
    if r >= 0.2:
        return "medium close-up"
    if r >= 0.1:
        return "medium shot"
    return "wide shot"


def state_of(clip: dict, a: float | None = None, b: float | None = None) -> tuple[str, dict[str, float]]:
    """Majority state in [a, b) (clip-relative seconds; whole clip when None)."""
    states = clip.get("frame_states")
    if not states:
        cls = clip.get("clip_class")
        return (cls or "unknown"), dict(clip.get("state_shares") or {})
    fps = float(clip.get("clip_fps") or 25.0)
    lo = 0 if a is None else max(0, int(a * fps))
    hi = len(states) if b is None else min(len(states), max(lo + 1, int(math.ceil(b * fps))))
    sel = [s for s in states[lo:hi] if s != "discard"] or list(states[lo:hi])
    if not sel:
        return "unknown", {}
    shares = {s: sel.count(s) / len(sel) for s in sorted(set(sel))}
    if a is None and clip.get("clip_class"):
        return clip["clip_class"], shares
    top = max(shares, key=shares.get)
    if top in ("speak", "listen") and 0.25 <= min(shares.get("speak", 0), shares.get("listen", 0)):
        return "mixed", shares
    return top, shares


def expression_summary(stats: dict[str, float]) -> str:
    shares = {k[len("share_"):]: v for k, v in (stats or {}).items() if k.startswith("share_")}
    if not shares:
        return "unknown"
    ranked = sorted(((v, k) for k, v in shares.items() if v >= 0.1), reverse=True)
    if not ranked:
        return "unknown"
    words = [f"{k.replace('_', ' ')} {v:.0%}" for v, k in ranked[:3]]
    return ", ".join(words)


def head_motion(ms: dict[str, float]) -> str:
    if not ms or "head_yaw_std" not in ms:
        return "unknown"
    y, p, r = ms.get("head_yaw_std", 0), ms.get("head_pitch_std", 0), ms.get("head_roll_std", 0)
    if max(y, p, r) < 2.0 and ms.get("head_translation_speed", 0) < 0.15:
        return "still"
    top = max((y, "shaking/turning"), (p, "nodding"), (r, "tilting"))
    return top[1] if top[0] >= 2.0 else "moving slightly"


def speaking_rate(clip: dict) -> str:
    words = clip.get("words") or []
    text = clip.get("transcript")
    if not words and not text:
        return "unknown"
    n = len(words) if words else len(str(text).split())
    states = clip.get("frame_states") or []
    fps = float(clip.get("clip_fps") or 25.0)
    speak_s = states.count("speak") / fps if states else 0.0
    if speak_s <= 0.5 and words:
        speak_s = max(0.0, float(words[-1]["end_s"]) - float(words[0]["start_s"]))
    if speak_s <= 0.5:
        speak_s = float(clip.get("duration_s") or 0.0)
    if speak_s <= 0:
        return "unknown"
    wps = n / speak_s
    return f"{'slow' if wps < 2.0 else 'fast' if wps > 3.5 else 'normal'} ({wps:.1f} words/s)"


def build_tags(clip: dict, video: dict, ref_summary: dict | None, cfg) -> dict[str, str]:
    missing = []
    state, shares = state_of(clip)
    if state == "unknown":
        missing.append("frame_states")
    es, ms = clip.get("expression_stats") or {}, clip.get("motion_stats") or {}
    if not es:
        missing.append("expression_stats")
    if not ms:
        missing.append("motion_stats")
    if clip.get("transcript") is None:
        missing.append("transcript")
    mi = ms.get("motion_intensity")
    tags = {
        "state": state,
        "state_shares": ", ".join(f"{k} {v:.2f}" for k, v in shares.items()) or "unknown",
        "expression": expression_summary(es),
        "expression_level": level(es.get("expression_change_rate_hz", 0.0), 0.5, 2.0) if es else "unknown",
        "motion_intensity": f"{level(mi, cfg.motion_low_max, cfg.motion_high_min)} ({mi:.2f})" if mi is not None else "unknown",
        "head_motion": head_motion(ms),
        "body_motion": level(ms["body_motion"], 0.05, 0.2) if "body_motion" in ms else "unknown",
        "shot_type": shot_type(clip, video),
        "speaking_rate": speaking_rate(clip),
        "transcript": str(clip.get("transcript") or ""),
    }
    if ref_summary is not None:
        parts = [f"global {ref_summary.get('global', 0)}",
                 f"views {','.join(ref_summary.get('views') or []) or 'none'}",
                 f"expressions {','.join(ref_summary.get('expressions') or []) or 'none'}"]
        tags["references"] = "; ".join(parts + list(ref_summary.get("notes") or []))
    else:
        missing.append("references")
    tags["missing"] = ",".join(missing)
    return tags


def quote_words(text: str, max_words: int = CAPTION_MAX_WORDS) -> str:
    """The transcript as quoted in a caption: at most max_words words, '...' when cut."""
    words = str(text).split()
    if len(words) <= max_words:
        return " ".join(words)
    return " ".join(words[:max_words]).rstrip(",;:.") + "..."


def compose_caption(tags: dict[str, str], listener_only: bool = False) -> str:
    """Caption text from tags (the default captioner)."""
    state = tags.get("state", "unknown")
    shot = tags.get("shot_type", "unknown")
    subject = "A person" + (f" {STATE_WORDS[state]}" if state in STATE_WORDS else "")
    parts = [subject + (f", seen in a {shot}" if shot != "unknown" else "")]
    expr = tags.get("expression", "unknown")
    if expr != "unknown":
        parts.append(f"expression: {expr}")
    hm = tags.get("head_motion", "unknown")
    if hm != "unknown":
        parts.append(f"head {hm}")
    mi = tags.get("motion_intensity", "unknown")
    if mi != "unknown":
        parts.append(f"{mi.split(' ')[0]} overall motion")
    text = "; ".join(parts) + "."
    transcript = quote_words(tags.get("transcript", ""))  # the clip's own words only (audio stage attribution)
    if transcript and not listener_only:
        rate = tags.get("speaking_rate", "unknown")
        text += f' They say: "{transcript}"' + (f" ({rate.split(' ')[0]} pace)." if rate != "unknown" else ".")
    return text


def segment_tags(clip: dict, base: dict[str, str], face: dict | None, text: str, a: float, b: float) -> dict[str, str]:
    tags = dict(base)
    tags["transcript"] = text
    st, shares = state_of(clip, a, b)
    tags["state"] = st
    tags["state_shares"] = ", ".join(f"{k} {v:.2f}" for k, v in shares.items()) or tags.get("state_shares", "unknown")
    if face is not None and len(face["t"]):
        t = np.asarray(face["t"])
        sel = (t >= a) & (t < b) & np.asarray(face["found"], bool)
        if sel.any():
            labels, _ = frame_labels(np.asarray(face["bs"], np.float32)[sel])
            counts = {lab: labels.count(lab) / len(labels) for lab in set(labels)}
            ranked = sorted(((v, k) for k, v in counts.items() if v >= 0.1), reverse=True)
            tags["expression"] = ", ".join(f"{k.replace('_', ' ')} {v:.0%}" for v, k in ranked[:3]) or tags["expression"]
    return tags


def own_text(clip: dict, sentence: dict, a: float, b: float) -> str:
    """What this person says within a sentence [a, b) (clip-relative): their own ``words`` there when the
    audio stage attributed words (sentences hold everyone's speech), else the sentence text."""
    words = clip.get("words")
    if words is None:
        return str(sentence.get("text") or "")
    from operators.segments import join_words

    return join_words([str(w["word"]) for w in words if a <= 0.5 * (float(w["start_s"]) + float(w["end_s"])) < b + 1e-6])


def sentences_relative(clip: dict) -> list[tuple[dict, float, float]]:
    """Sentences with clip-relative times. The audio stage may give clip-relative or source times:
    times beyond the clip's duration are taken as source times."""
    sents = clip.get("sentences") or []
    dur = float(clip.get("duration_s") or 0.0)
    start = float(clip.get("start_s") or 0.0)
    source_based = any(float(s.get("end_s") or 0) > dur + 0.5 for s in sents) and start > 0
    out = []
    for s in sents:
        a, b = float(s.get("start_s") or 0.0), float(s.get("end_s") or 0.0)
        if source_based:
            a, b = a - start, b - start
        out.append((s, max(0.0, a), max(a, b)))
    return out


# --------------------------------------------------------------------------------------- operator
class CaptionOperator(Operator):
    name = STAGE
    reads = ("video", "clips")
    writes = ("clips",)
    resources = Resources(num_cpus=0.5, memory_mb=1024)

    def setup(self) -> None:
        cfg = self.settings.captions
        self.vlm = None
        self.vlm_digest = ""
        self.missing = ""
        if cfg.captioner == "vlm":
            from models.captioner import VlmCaptioner
            from models.registry import MissingModelError, user_model

            if not cfg.vlm_model_dir:
                self.missing = "captions.captioner is 'vlm' but captions.vlm_model_dir is not set"
                return
            try:
                rm = user_model(cfg.vlm_model_dir, "vlm-captioner")
            except MissingModelError as exc:
                self.missing = str(exc)
                return
            self.vlm = VlmCaptioner(str(rm.path), max_new_tokens=cfg.vlm_max_new_tokens, num_threads=1)
            self.vlm_digest = rm.digest

    def _vlm_caption(self, frames: np.ndarray, tags: dict[str, str], at_s: float | None) -> str:
        """VLM caption of the frame at at_s (clip-relative; the middle frame when None). frames at 2 fps."""
        if len(frames) == 0:
            return ""
        i = len(frames) // 2 if at_s is None else min(len(frames) - 1, max(0, int(at_s * 2.0)))
        context = {k: v for k, v in tags.items() if k in ("state", "expression", "head_motion", "motion_intensity", "shot_type")}
        prompt = f"{self.settings.captions.vlm_prompt} Known: {json.dumps(context)}"
        return self.vlm.caption(frames[i], prompt)

    def process(self, task: VideoTask, deadline: Deadline) -> VideoTask:
        cfg = self.settings.captions
        if self.missing:
            return task.reject(STAGE, "model_missing", self.missing)
        refs = task.scratch.get("references") or {}
        faces = task.scratch.get("faces") or {}
        timeout = deadline.timeout_for(self.settings.run.subprocess_timeout_s)
        for clip in task.clips:
            deadline.check("captions")
            tags = build_tags(clip, task.video, refs.get(clip["clip_id"]), cfg)
            listener = tags["state"] in ("listen", "idle")
            caption = compose_caption(tags, listener_only=listener)
            frames = np.zeros((0,), np.uint8)
            if self.vlm is not None:
                from operators.clipmedia import read_clip_frames
                from operators.media import MediaError

                try:
                    frames = read_clip_frames(clip, fps=2.0, timeout_s=timeout) if (clip.get("video_bytes") or clip.get("video_uri")) else frames
                except MediaError:
                    pass
                vtext = self._vlm_caption(frames, tags, None)
                caption = vtext or caption
                tags["captioner"] = f"vlm:{self.vlm.model_type}" + ("" if vtext else " (empty output: tags caption used)")
            else:
                tags["captioner"] = "tags"
            clip["tags"] = tags
            clip["caption"] = caption
            if cfg.segment_captions and clip.get("sentences"):
                out = []
                for s, a, b in sentences_relative(clip):
                    st = segment_tags(clip, tags, faces.get(clip["clip_id"]), own_text(clip, s, a, b), a, b)
                    seg_caption = compose_caption(st, listener_only=st["state"] in ("listen", "idle"))
                    if self.vlm is not None:
                        seg_caption = self._vlm_caption(frames, st, (a + b) / 2) or seg_caption
                    s = dict(s)
                    s["caption"] = seg_caption
                    out.append(s)
                clip["sentences"] = out
        if self.vlm is not None:
            task.record_provenance("captions", STAGE, f"vlm:{self.vlm.model_type}", self.vlm_digest,
                                   {"prompt": cfg.vlm_prompt, "max_new_tokens": cfg.vlm_max_new_tokens})
        else:
            task.record_provenance("captions", STAGE, "tags", "", {"motion_low_max": cfg.motion_low_max,
                                                                    "motion_high_min": cfg.motion_high_min})
        return task
