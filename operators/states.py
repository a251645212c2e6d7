"""Per-frame conversation states (speak / listen / idle / discard) from per-person signals: the pure core
of the conversation stage (no models, no media; arrays in, arrays out).

Inputs per person track, on one frame grid shared by the people of a shot (clip frames, 25 fps):

* ``speak``: LR-ASD logit (multi-window average), NaN where there is no face.
* ``sync``: audio-visual sync evidence: the LR-ASD audio-visual logit minus its visual-only logit
  (``lossV`` head), i.e. how much the heard audio adds to what the lips alone suggest. It is compared
  within a person over time (minus the person's median over the speech frames where the mouth moves) and
  then across people: the mouth that follows the audio stands out against its own out-of-sync moments.
* ``motion``: mouth motion (rolling standard deviation of the landmark mouth opening), NaN unknown.
* ``speech``: speech presence probability (Silero VAD on the separated vocals), same for everyone.

The state table (../shared/docs/LPM-DATA.md):

=================  =====================================  ========
speech present     mouth of this person                   label
=================  =====================================  ========
yes                in sync with the speech                speak
yes                still                                  listen
no                 still                                  idle
yes                moving, not in sync                    discard
no                 unexplained motion                     discard
=================  =====================================  ========

Refinement (the paper's rule-based pass): scores are smoothed over time; speech presence and the
speaking decision use hysteresis (enter above the threshold, leave below threshold - margin); across the
people of a shot only the people whose mouths follow the audio may speak (absolute sync evidence above
``sync_min``), and of those only the ones whose person-relative sync evidence is within ``cross_margin``
of the best at that moment (one voice at a time unless two are both clearly in sync); runs shorter than
``min_segment_s`` are merged into their neighbours.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPEAK, LISTEN, IDLE, DISCARD = "speak", "listen", "idle", "discard"
STATES = (IDLE, LISTEN, SPEAK, DISCARD)
CODE = {s: i for i, s in enumerate(STATES)}
I_IDLE, I_LISTEN, I_SPEAK, I_DISCARD = 0, 1, 2, 3


@dataclass
class StateParams:
    """Decision parameters (ConversationSettings carries them; see docs/CONVERSATION.md)."""

    fps: float = 25.0
    speak_threshold: float = 0.0      # LR-ASD logit to enter "active"
    speak_hysteresis: float = 0.5     # leave "active" below speak_threshold - this
    vad_threshold: float = 0.5
    vad_hysteresis: float = 0.15
    min_speech_gap_s: float = 0.3     # shorter pauses inside speech are bridged
    sync_min: float = -0.25           # smoothed absolute sync evidence a speaker needs
    cross_margin: float = 0.1         # a second person speaks only within this of the best relative sync evidence
    min_sync_frames: int = 25         # frames (speech + moving mouth) needed for the person's median
    motion_threshold: float = 0.02    # mouth motion above this is "moving"
    smooth_frames: int = 5            # moving-average window on scores
    sync_smooth_frames: int = 25      # window on the sync evidence (it is noisy frame by frame)
    min_segment_s: float = 0.4
    use_sync: bool = True
    sync_relative: bool = False       # compare sync evidence relative to each person's median (av_minus_visual signal)


# ------------------------------------------------------------------------------------------- helpers
def moving_average(x: np.ndarray, k: int) -> np.ndarray:
    """NaN-aware centred moving average (NaN only where the whole window is NaN)."""
    x = np.asarray(x, np.float64)
    if k <= 1 or x.size == 0:
        return x.copy()
    valid = np.isfinite(x)
    v = np.where(valid, x, 0.0)
    ker = np.ones(int(k))
    # 'full' then the centred slice: mode='same' returns len(ker) values when the kernel is the longer one
    a = (int(k) - 1) // 2
    num = np.convolve(v, ker, mode="full")[a:a + x.size]
    den = np.convolve(valid.astype(np.float64), ker, mode="full")[a:a + x.size]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    out[den == 0] = np.nan
    return out


def rolling_std(x: np.ndarray, k: int) -> np.ndarray:
    """NaN-aware centred rolling standard deviation."""
    m = moving_average(x, k)
    m2 = moving_average(np.asarray(x, np.float64) ** 2, k)
    return np.sqrt(np.clip(m2 - m * m, 0.0, None))


def mouth_motion(mouth_open: np.ndarray, fps: float = 25.0, window_s: float = 0.4) -> np.ndarray:
    """Mouth motion per frame: rolling std of the mouth opening over window_s (NaN where no face)."""
    mo = np.asarray(mouth_open, np.float64)
    out = rolling_std(mo, max(2, int(round(window_s * fps))))
    out[~np.isfinite(mo)] = np.nan
    return out


def hysteresis(x: np.ndarray, high: float, low: float) -> np.ndarray:
    """True from where x rises above high until it falls below low (NaN counts as below)."""
    x = np.nan_to_num(np.asarray(x, np.float64), nan=-np.inf)
    out = np.zeros(x.shape, bool)
    on = False
    for i, v in enumerate(x):
        on = v >= low if on else v > high
        out[i] = on
    return out


def runs(labels: np.ndarray) -> list[tuple[int, int, int]]:
    """(value, start, end) of each run of equal values (end exclusive)."""
    labels = np.asarray(labels)
    if labels.size == 0:
        return []
    cut = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    starts = np.concatenate([[0], cut])
    ends = np.concatenate([cut, [labels.size]])
    return [(int(labels[s]), int(s), int(e)) for s, e in zip(starts, ends)]


def fill_short_gaps(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """Close False gaps of at most max_gap frames that lie between True runs."""
    m = np.asarray(mask, bool).copy()
    for v, s, e in runs(m.astype(np.int8)):
        if v == 0 and 0 < s and e < m.size and e - s <= max_gap:
            m[s:e] = True
    return m


def suppress_short_runs(labels: np.ndarray, min_len: int) -> np.ndarray:
    """Merge runs shorter than min_len into a neighbour (the longer one; ties go to the earlier run),
    repeatedly from the shortest run up, so spikes vanish and long states keep their edges."""
    lab = np.asarray(labels).copy()
    if min_len <= 1 or lab.size == 0:
        return lab
    while True:
        rs = runs(lab)
        if len(rs) <= 1:
            return lab
        short = [(e - s, i) for i, (v, s, e) in enumerate(rs) if e - s < min_len]
        if not short:
            return lab
        _, i = min(short)
        v, s, e = rs[i]
        left = rs[i - 1] if i > 0 else None
        right = rs[i + 1] if i + 1 < len(rs) else None
        if left and right:
            pick = left if (left[2] - left[1]) >= (right[2] - right[1]) else right
        else:
            pick = left or right
        lab[s:e] = pick[0]


# ------------------------------------------------------------------------------------------ decision
@dataclass
class PersonSignals:
    speak: np.ndarray
    motion: np.ndarray
    sync: np.ndarray | None = None

    def __post_init__(self):
        self.speak = np.asarray(self.speak, np.float64)
        self.motion = np.asarray(self.motion, np.float64)
        self.sync = None if self.sync is None else np.asarray(self.sync, np.float64)


def speech_presence(speech_prob: np.ndarray, p: StateParams) -> np.ndarray:
    """Boolean speech presence per frame: smoothed VAD with hysteresis, short pauses bridged."""
    sp = moving_average(np.nan_to_num(np.asarray(speech_prob, np.float64)), max(1, p.smooth_frames))
    m = hysteresis(sp, p.vad_threshold, p.vad_threshold - p.vad_hysteresis)
    return fill_short_gaps(m, int(round(p.min_speech_gap_s * p.fps)))


def decide_states(people: list[PersonSignals], speech_prob: np.ndarray, p: StateParams) -> list[np.ndarray]:
    """Per-frame state codes (I_IDLE, I_LISTEN, I_SPEAK, I_DISCARD) for each person of one shot.

    All arrays share one frame grid of length T. Frames where a person has no face (speak is NaN) are
    discard for that person."""
    t = len(speech_prob)
    speech = speech_presence(speech_prob, p)
    n = len(people)
    k = max(1, p.smooth_frames)
    score = np.stack([moving_average(q.speak, k) for q in people]) if n else np.zeros((0, t))
    active = np.stack([hysteresis(s, p.speak_threshold, p.speak_threshold - p.speak_hysteresis) for s in score]) if n else np.zeros((0, t), bool)
    moving = np.stack([np.nan_to_num(moving_average(q.motion, k), nan=0.0) > p.motion_threshold for q in people]) if n else np.zeros((0, t), bool)
    face = np.stack([np.isfinite(q.speak) for q in people]) if n else np.zeros((0, t), bool)
    if p.use_sync and n and all(q.sync is not None for q in people):
        ks = max(1, p.sync_smooth_frames)
        raw = np.stack([moving_average(q.sync, ks) for q in people])
        rel = raw
        if p.sync_relative:
            rel = np.empty_like(raw)
            for i, q in enumerate(people):
                sel = speech & face[i] & (moving[i] | active[i]) & np.isfinite(q.sync)
                med = float(np.median(q.sync[sel])) if sel.sum() >= p.min_sync_frames else 0.0
                rel[i] = moving_average(q.sync - med, ks)
        in_sync = np.nan_to_num(raw, nan=-np.inf) > p.sync_min
        evidence = np.nan_to_num(rel, nan=-np.inf)
    else:
        in_sync = np.ones((n, t), bool)
        evidence = np.nan_to_num(score, nan=-np.inf)
    cand = active & in_sync & face & speech[None, :]
    best = np.where(cand, evidence, -np.inf).max(axis=0) if n else np.full(t, -np.inf)
    speaking = cand & (evidence >= best[None, :] - p.cross_margin)

    out = []
    for i in range(n):
        lab = np.full(t, I_IDLE, np.int8)
        lab[speech] = I_LISTEN
        lab[moving[i]] = I_DISCARD  # moving without being a speaker: unexplained or out of sync
        lab[speaking[i]] = I_SPEAK
        lab[~face[i]] = I_DISCARD
        out.append(suppress_short_runs(lab, max(1, int(round(p.min_segment_s * p.fps)))))
    return out


# -------------------------------------------------------------------------------------------- outputs
def to_labels(codes: np.ndarray) -> list[str]:
    return [STATES[int(c)] for c in codes]


def segments(codes: np.ndarray, fps: float, t0: float = 0.0) -> list[dict]:
    """State timeline: [{state, start_s, end_s}] (times relative to t0, e.g. the clip start in the source)."""
    return [{"state": STATES[v], "start_s": t0 + s / fps, "end_s": t0 + e / fps} for v, s, e in runs(codes)]


def state_shares(codes: np.ndarray) -> dict[str, float]:
    n = max(1, len(codes))
    return {s: float(np.sum(np.asarray(codes) == CODE[s]) / n) for s in STATES}


def clip_class(codes: np.ndarray, dominant_share: float = 0.8) -> str:
    """speak / listen / idle when that state covers at least dominant_share of the usable (non-discard)
    frames and at least half of all frames; otherwise mixed."""
    sh = state_shares(codes)
    usable = 1.0 - sh[DISCARD]
    if usable <= 0:
        return "mixed"
    for s in (SPEAK, LISTEN, IDLE):
        if sh[s] / usable >= dominant_share and sh[s] >= 0.5:
            return s
    return "mixed"


# --------------------------------------------------------------------------------------------- offsets
OFFSET_UNKNOWN, OFFSET_RECORDED, OFFSET_CORRECT, OFFSET_REJECT = "unknown", "recorded", "correct", "reject"


def offset_rule(offset_s: float, gain: float, speaks: bool, min_gain: float, max_offset_frames: float,
                fps: float = 25.0, correct_min_gain: float | None = None) -> tuple[str, float]:
    """What to do with a measured audio-visual offset (issue 21; LatentSync's rule: keep |offset| <= 6
    frames with confidence, shift the audio to offset 0). Returns (action, shift_s):

    * ``unknown``: no offset estimate, or its gain (peak over lag zero) is below ``min_gain``: the offset
      is not established; nothing is shifted, nothing rejected;
    * ``recorded``: a confident offset, but the person does not speak: a listener's lips are not expected
      to follow the voice, so it is only recorded (never a reject);
    * ``correct``: the person speaks and the confident offset is at most ``max_offset_frames``: the audio
      is to be shifted by ``shift_s`` (the offset rounded to whole frames; positive: audio late), when
      its gain also reaches ``correct_min_gain`` (a shift must be surer than a reject's "not in sync at 0";
      below it the small offset is recorded and left alone);
    * ``reject``: the person speaks and the confident offset is larger (reject reason ``av_offset``).
    """
    if offset_s is None or not np.isfinite(offset_s) or gain is None or not np.isfinite(gain) or gain < min_gain:
        return OFFSET_UNKNOWN, 0.0
    if not speaks:
        return OFFSET_RECORDED, 0.0
    frames = float(offset_s) * fps
    if abs(frames) <= max_offset_frames + 1e-6:
        if correct_min_gain is not None and gain < correct_min_gain:
            return OFFSET_RECORDED, 0.0
        return OFFSET_CORRECT, round(frames) / fps
    return OFFSET_REJECT, 0.0


def speaks(codes: np.ndarray, min_share: float) -> bool:
    """Whether a clip's person speaks for the offset rule: speak frames make at least min_share of the
    clip (and at least one frame)."""
    c = np.asarray(codes)
    return bool(c.size and (c == I_SPEAK).any() and float(np.mean(c == I_SPEAK)) >= min_share)
