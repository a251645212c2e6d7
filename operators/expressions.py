"""Expression labels and statistics from MediaPipe's 52 blendshapes (pure functions, no models).

Eight preset expression classes (the paper uses 8 without naming them; these are ours):
neutral, smile, laugh, surprise, sad, angry, disgust, mouth_open (speaking / open jaw). Each frame gets
the class with the highest rule score, or neutral when no score reaches LABEL_MIN. Blinks (both eyes
closed) are flagged separately: a blink is not an expression and such frames never become references.
"""
from __future__ import annotations

import math

import numpy as np

BLENDSHAPES = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft", "mouthSmileRight",
    "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)
IDX = {n: i for i, n in enumerate(BLENDSHAPES)}
LABELS = ("neutral", "smile", "laugh", "surprise", "sad", "angry", "disgust", "mouth_open")
LABEL_MIN = 0.3
BLINK_MIN = 0.5


def _m(bs: np.ndarray, *names: str) -> np.ndarray:
    return bs[..., [IDX[n] for n in names]].mean(axis=-1)


def label_scores(bs: np.ndarray) -> np.ndarray:
    """[N, 52] blendshapes -> [N, 8] scores in [0, 1] for LABELS (neutral = 1 - max of the others)."""
    bs = np.atleast_2d(np.asarray(bs, dtype=np.float32))
    smile = _m(bs, "mouthSmileLeft", "mouthSmileRight")
    jaw = bs[:, IDX["jawOpen"]]
    brow_up = _m(bs, "browInnerUp", "browOuterUpLeft", "browOuterUpRight")
    eye_wide = _m(bs, "eyeWideLeft", "eyeWideRight")
    frown = _m(bs, "mouthFrownLeft", "mouthFrownRight")
    brow_down = _m(bs, "browDownLeft", "browDownRight")
    sneer = _m(bs, "noseSneerLeft", "noseSneerRight")
    upper_up = _m(bs, "mouthUpperUpLeft", "mouthUpperUpRight")
    press = _m(bs, "mouthPressLeft", "mouthPressRight")
    s = np.zeros((len(bs), len(LABELS)), dtype=np.float32)
    s[:, 1] = smile * (1.0 - np.clip(jaw * 1.5, 0, 1) * 0.5)
    s[:, 2] = np.sqrt(np.clip(smile, 0, 1) * np.clip(jaw * 1.5, 0, 1))
    s[:, 3] = (brow_up + eye_wide + np.clip(jaw, 0, 1)) / 3.0 * 1.5
    no_smile = 1.0 - np.clip(smile * 2, 0, 1)  # negative expressions are not read into a smiling face
    s[:, 4] = (frown * 0.7 + bs[:, IDX["browInnerUp"]] * 0.3 * (frown > 0.1)) * no_smile
    s[:, 5] = (np.clip((brow_down - 0.25) * 1.6, 0, 1) * 0.8 + press * 0.2) * no_smile  # brows lowered while talking is common
    s[:, 6] = (sneer * 0.6 + upper_up * 0.4) * no_smile
    s[:, 7] = np.clip(jaw * 1.2, 0, 1) * (1.0 - np.clip(smile * 2, 0, 1))
    s = np.clip(s, 0.0, 1.0)
    s[:, 0] = 1.0 - s[:, 1:].max(axis=1)
    return s


def frame_labels(bs: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Label per frame and the winning score."""
    s = label_scores(bs)
    other = s[:, 1:]
    best = other.argmax(axis=1) + 1
    conf = other.max(axis=1)
    idx = np.where(conf >= LABEL_MIN, best, 0)
    return [LABELS[i] for i in idx], np.where(idx == 0, s[:, 0], conf)


def blinking(bs: np.ndarray) -> np.ndarray:
    bs = np.atleast_2d(bs)
    return _m(bs, "eyeBlinkLeft", "eyeBlinkRight") >= BLINK_MIN


def expression_stats(bs: np.ndarray, times_s: np.ndarray, found: np.ndarray) -> dict[str, float]:
    """Clip-level expression statistics (what analysts re-balance on)."""
    out: dict[str, float] = {"face_detected_share": float(np.mean(found)) if len(found) else 0.0}
    bs = np.asarray(bs, dtype=np.float32)[found]
    t = np.asarray(times_s, dtype=np.float64)[found]
    if len(bs) == 0:
        return out
    labels, _ = frame_labels(bs)
    counts = {lab: labels.count(lab) for lab in LABELS}
    n = len(labels)
    for lab in LABELS:
        out[f"share_{lab}"] = counts[lab] / n
    shares = np.array([counts[lab] / n for lab in LABELS])
    out["dominant_share"] = float(shares.max())
    out["neutral_share"] = float(shares[0])
    out["n_expressions"] = float(np.sum(shares >= 0.05))
    nz = shares[shares > 0]
    out["expression_entropy"] = float(-(nz * np.log(nz)).sum() / math.log(len(LABELS)))
    dur = float(t[-1] - t[0]) if len(t) > 1 else 0.0
    changes = sum(1 for a, b in zip(labels, labels[1:]) if a != b)
    out["expression_change_rate_hz"] = changes / dur if dur > 0 else 0.0
    if len(bs) > 1 and dur > 0:
        step = np.linalg.norm(np.diff(bs, axis=0), axis=1) / np.maximum(np.diff(t), 1e-3)
        out["blendshape_oscillation"] = float(np.median(step))  # L2 change of the 52-d vector per second
    else:
        out["blendshape_oscillation"] = 0.0
    out["expressiveness"] = float(np.mean(label_scores(bs)[:, 1:].max(axis=1)))
    out["smile_mean"] = float(_m(bs, "mouthSmileLeft", "mouthSmileRight").mean())
    out["jaw_open_mean"] = float(bs[:, IDX["jawOpen"]].mean())
    out["brow_activity"] = float(np.std(_m(bs, "browInnerUp", "browDownLeft", "browDownRight")))
    blinks = blinking(bs).astype(int)
    onsets = int(np.sum(np.diff(blinks) == 1)) + int(blinks[0])
    out["blink_rate_hz"] = onsets / dur if dur > 0 else 0.0
    return out
