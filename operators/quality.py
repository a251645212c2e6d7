"""Quality scores of shots (computed from the shared low-resolution decode) and the decision step.

Scoring and deciding are separate:

* :class:`FrameStats` is fed every decoded frame once (operators/shots.py) and keeps only small
  per-frame numbers: mean luma and the difference to the previous frame for every frame; sharpness,
  exposure, colour cast, optical-flow motion, BRISQUE, borders, picture-in-picture rectangles and a
  text-overlay score for frames sampled at ``quality.sample_fps``.
* :meth:`FrameStats.shot_scores` aggregates them over a shot's frame range; :func:`audio_scores` adds
  loudness, clipping, speech share (Silero VAD) and silence from the 16 kHz mono track. All scores go to
  the shot's ``quality`` map (names in :data:`SCORE_DOCS`).
* :func:`decide_shot` turns a quality map (+ the people count, when the people stage has run) into ""
  (kept) or the reason code of the first failed check, with thresholds from config only. It never
  decodes or runs a model, so ``lpm-curate refilter`` re-decides stored scores with a new config.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

NAN = float("nan")

SCORE_DOCS: dict[str, str] = {
    "duration_s": "Shot length after trimming (s).",
    "width_px": "Upright display width of the source (px).",
    "height_px": "Upright display height of the source (px).",
    "resolution_px": "Shorter side of the source frame (px).",
    "aspect": "Display aspect ratio width/height of the source.",
    "sharpness": "Median variance of the Laplacian of the decoded frames (higher is sharper).",
    "brightness": "Median mean luma (0-255).",
    "dark_share": "Median share of pixels with luma <= 16.",
    "bright_share": "Median share of pixels with luma >= 245.",
    "colour_cast": "Median distance of the mean chroma from neutral in CIE Lab (a*, b*), after grey-world weighting.",
    "flicker": "Std of the mean luma after removing its 0.5 s moving average (luma levels).",
    "static_share": "Share of consecutive frame pairs that are (nearly) identical.",
    "frozen_s": "Longest run of identical consecutive frames (s).",
    "motion": "Median optical-flow magnitude on 128-px frames, in frame widths per second.",
    "brisque": "Median BRISQUE score (lower is better; NaN when the model is missing).",
    "border_share": "Median share of the frame area in letterbox/pillarbox bars.",
    "pip_score": "Share of sampled frames showing the same inset rectangle (picture-in-picture).",
    "text_score": "Share of sampled frames with text-like overlay lines (subtitles, captions, tickers).",
    "loudness_dbfs": "RMS level of the shot's audio (dBFS; -120 when silent or no audio).",
    "clipping_share": "Share of audio samples at full scale.",
    "speech_share": "Share of 32 ms windows with Silero VAD speech probability >= 0.5 (NaN without the model).",
    "silence_share": "Share of 100 ms windows quieter than -50 dBFS.",
}

# Reason codes in the order checks run (first failed check wins).
CHECKS: list[tuple[str, str]] = [
    ("shot_too_short", "duration_s < shots.min_clip_s"),
    ("resolution_too_low", "resolution_px < quality.min_resolution_px"),
    ("letterbox", "border_share > quality.max_border_share"),
    ("picture_in_picture", "pip_score > quality.max_pip_score"),
    ("text_overlay", "text_score > quality.max_text_score"),
    ("frozen", "static_share > quality.max_static_share or frozen_s > quality.max_frozen_s"),
    ("blurry", "sharpness < quality.min_sharpness"),
    ("too_dark", "brightness < quality.min_brightness"),
    ("too_bright", "brightness > quality.max_brightness"),
    ("colour_cast", "colour_cast > quality.max_colour_cast"),
    ("flicker", "flicker > quality.max_flicker"),
    ("low_quality", "brisque > quality.max_brisque"),
    ("too_much_motion", "motion > quality.max_motion"),
    ("silent", "loudness_dbfs < quality.min_loudness_dbfs"),
    ("audio_clipping", "clipping_share > quality.max_clipping_share"),
    ("no_speech", "speech_share < quality.min_speech_share"),
    ("no_person", "n_people < quality.min_people (people stage)"),
    ("too_crowded", "n_people > quality.max_people (people stage)"),
]
PEOPLE_REASONS = ("no_person", "too_crowded")


def reason_stage(reason: str) -> str:
    """Stage that owns a shot-level reason (people-count reasons belong to the people stage)."""
    return "people" if reason in PEOPLE_REASONS else "shots"


# ------------------------------------------------------------------------------------------ models
@dataclass
class QualityModels:
    brisque: Any = None
    vad: Any = None
    notes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, settings) -> "QualityModels":
        """BRISQUE and Silero VAD; a missing model is recorded and its scores become NaN."""
        out = cls()
        if not settings.quality.enabled:
            return out
        try:
            from models.quality import Brisque

            out.brisque = Brisque.load(settings)
        except Exception as exc:
            out.notes["brisque"] = f"{type(exc).__name__}: {exc}"
        try:
            from models.vad import get_vad

            out.vad = get_vad(settings)
        except Exception as exc:
            out.notes["silero-vad"] = f"{type(exc).__name__}: {exc}"
        return out


# ------------------------------------------------------------------------------- per-frame analysis
def sharpness(gray: np.ndarray) -> float:
    import cv2

    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


def colour_cast(bgr: np.ndarray) -> float:
    """Distance of the mean (a*, b*) from neutral; saturated pixels weigh less (grey-world style)."""
    import cv2

    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab).reshape(-1, 3).astype(np.float32)
    a = lab[:, 1] - 128.0
    b = lab[:, 2] - 128.0
    lum = lab[:, 0]
    w = ((lum > 20) & (lum < 240)).astype(np.float32)
    if w.sum() < 16:
        return 0.0
    am = float((a * w).sum() / w.sum())
    bm = float((b * w).sum() / w.sum())
    return float(math.hypot(am, bm))


def border_sizes(gray: np.ndarray, level: float = 24.0, max_std: float = 6.0) -> tuple[int, int, int, int]:
    """Rows/columns of uniform dark bars at (top, bottom, left, right)."""
    h, w = gray.shape
    g = gray.astype(np.float32)
    row_mean, row_std = g.mean(axis=1), g.std(axis=1)
    col_mean, col_std = g.mean(axis=0), g.std(axis=0)
    dark_r = (row_mean <= level) & (row_std <= max_std)
    dark_c = (col_mean <= level) & (col_std <= max_std)

    def run(mask: np.ndarray) -> int:
        n = 0
        for v in mask:
            if not v:
                break
            n += 1
        return n

    top, bottom = run(dark_r), run(dark_r[::-1])
    left, right = run(dark_c), run(dark_c[::-1])
    if top + bottom >= h or left + right >= w:  # an all-dark frame is not a letterbox
        return 0, 0, 0, 0
    return top, bottom, left, right


def border_share(sizes: tuple[int, int, int, int], h: int, w: int) -> float:
    top, bottom, left, right = sizes
    inner = max(0, h - top - bottom) * max(0, w - left - right)
    return 1.0 - inner / float(h * w)


def _segments(mask: np.ndarray, horizontal: bool, min_len: int) -> list[tuple[int, int, int]]:
    """Long straight edge segments: (position, start, end) rows (horizontal) or columns (vertical)."""
    import cv2

    m = mask.astype(np.uint8)
    k = (min_len, 1) if horizontal else (1, min_len)
    closed = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((1, 5) if horizontal else (5, 1), np.uint8))
    opened = cv2.morphologyEx(closed, cv2.MORPH_OPEN, np.ones(k[::-1], np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h, _ = stats[i]
        if horizontal and h <= 3:
            out.append((int(y + h // 2), int(x), int(x + w)))
        elif not horizontal and w <= 3:
            out.append((int(x + w // 2), int(y), int(y + h)))
    return out


def edge_masks(gray: np.ndarray, edge: float = 14.0) -> tuple[np.ndarray, np.ndarray]:
    """Boolean maps of horizontal and vertical step edges (|difference| of the pixels 1 px either side)."""
    import cv2

    g = cv2.GaussianBlur(gray, (3, 3), 0).astype(np.int16)
    eh = np.zeros(g.shape, bool)
    ev = np.zeros(g.shape, bool)
    eh[1:-1] = np.abs(g[2:] - g[:-2]) > edge
    ev[:, 1:-1] = np.abs(g[:, 2:] - g[:, :-2]) > edge
    return eh, ev


def find_inset(eh: np.ndarray, ev: np.ndarray, bars: tuple[int, int, int, int] = (0, 0, 0, 0),
               min_support: float = 0.6) -> tuple[tuple[int, int, int, int] | None, float]:
    """The largest rectangle (x0, y0, x1, y1) outlined by straight edges inside the picture (an inset /
    picture-in-picture window) and its weakest side's edge support, or (None, 0).

    eh/ev: horizontal/vertical edge maps, usually the share of a shot's sampled frames with an edge at
    each pixel thresholded at one half (edges that persist through the shot). Candidate sides are the
    rows/columns holding the longest straight segments (>= 12% of the picture); a rectangle counts when
    each side not on the picture border has an edge under at least min_support of its length, at most two
    sides lie on the border, and it covers 3-60% of the picture."""
    import cv2

    h, w = eh.shape
    top, bottom, left, right = bars
    y_lo, y_hi, x_lo, x_hi = top, h - bottom, left, w - right
    if y_hi - y_lo < 16 or x_hi - x_lo < 16:
        return None, 0.0
    eh = eh.astype(np.uint8)
    ev = ev.astype(np.uint8)
    eh_d = cv2.dilate(eh, np.ones((3, 1), np.uint8))  # a side may wander by a pixel
    ev_d = cv2.dilate(ev, np.ones((1, 3), np.uint8))
    ch = np.concatenate([np.zeros((h, 1), np.int32), np.cumsum(eh_d, axis=1, dtype=np.int32)], axis=1)
    cv = np.concatenate([np.zeros((1, w), np.int32), np.cumsum(ev_d, axis=0, dtype=np.int32)], axis=0)
    rows = _top_positions(_segments(eh, True, max(6, int(0.12 * w))), y_lo + 2, y_hi - 3) + [y_lo, y_hi - 1]
    cols = _top_positions(_segments(ev, False, max(6, int(0.12 * h))), x_lo + 2, x_hi - 3) + [x_lo, x_hi - 1]
    full = float((y_hi - y_lo) * (x_hi - x_lo))
    # every (row pair, column pair) at once, in the order a nested loop over rows then columns visits them
    ri, rj = np.triu_indices(len(rows), 1)
    ci, cj = np.triu_indices(len(cols), 1)
    r, c = np.asarray(rows), np.asarray(cols)
    y0, y1 = np.minimum(r[ri], r[rj]), np.maximum(r[ri], r[rj])
    x0, x1 = np.minimum(c[ci], c[cj]), np.maximum(c[ci], c[cj])
    ok_y, ok_x = (y1 - y0) >= 0.12 * h, (x1 - x0) >= 0.12 * w
    y0, y1, x0, x1 = y0[ok_y, None], y1[ok_y, None], x0[None, ok_x], x1[None, ok_x]
    if y0.size == 0 or x0.size == 0:
        return None, 0.0
    area = ((x1 - x0) * (y1 - y0)).astype(np.float64)
    bt, bb, bl, br = y0 == y_lo, y1 == y_hi - 1, x0 == x_lo, x1 == x_hi - 1
    n_border = bt.astype(int) + bb + bl + br
    valid = (area / full >= 0.03) & (area / full <= 0.6) & (n_border <= 2)
    dx, dy = (x1 - x0).astype(np.float64), (y1 - y0).astype(np.float64)
    sup = np.ones(area.shape)
    for border, v in ((bt, (ch[y0, x1] - ch[y0, x0]) / dx), (bb, (ch[y1, x1] - ch[y1, x0]) / dx),
                      (bl, (cv[y1, x0] - cv[y0, x0]) / dy), (br, (cv[y1, x1] - cv[y0, x1]) / dy)):
        sup = np.where(border, sup, np.minimum(sup, v))
    valid &= sup >= min_support
    if not valid.any():
        return None, 0.0
    # the same choice as a scan in loop order: a candidate replaces the best when (support, area) beats
    # (best support rounded to 0.1, best area)
    best, best_key, best_sup = None, (0.0, 0.0), 0.0
    for iy, ix in zip(*np.nonzero(valid)):
        v, a = float(sup[iy, ix]), float(area[iy, ix])
        if (v, a) > best_key:
            best = (int(x0[0, ix]), int(y0[iy, 0]), int(x1[0, ix]), int(y1[iy, 0]))
            best_key, best_sup = (float(np.round(v, 1)), a), v  # numpy rounding, as on the np.float64 before
    return best, float(best_sup)


def _top_positions(segs: list[tuple[int, int, int]], lo: int, hi: int, k: int = 10) -> list[int]:
    """Positions of the k longest segments inside (lo, hi), one per 3-px neighbourhood."""
    out: list[int] = []
    for p, a, b in sorted(segs, key=lambda s: s[1] - s[2]):
        if lo < p < hi and all(abs(p - q) > 2 for q in out):
            out.append(p)
        if len(out) >= k:
            break
    return out


def text_lines(gray: np.ndarray) -> int:
    """Number of text-like lines: rows of high-contrast strokes (morphological gradient), joined
    horizontally, with the size, elongation and stroke density of subtitle/caption lines."""
    import cv2

    h, w = gray.shape
    grad = cv2.morphologyEx(gray, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
    strong = (grad >= 90).astype(np.uint8)
    joined = cv2.morphologyEx(strong, cv2.MORPH_CLOSE, np.ones((3, max(5, w // 40)), np.uint8))
    n, _, stats, _ = cv2.connectedComponentsWithStats(joined, connectivity=8)
    lines = 0
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if not (0.025 * h <= bh <= 0.14 * h and bw >= 0.12 * w and bw >= 3.0 * bh):
            continue
        box = strong[y:y + bh, x:x + bw]
        density = float(box.mean())
        if not 0.12 <= density <= 0.6:
            continue
        # strokes: many dark/bright alternations along the line's middle rows
        mid = gray[y + bh // 4: y + bh - bh // 4 + 1, x:x + bw].astype(np.int16)
        if mid.size == 0:
            continue
        d = np.abs(np.diff(mid, axis=1)) >= 40
        transitions = float(d.sum(axis=1).mean()) / max(1.0, bw / float(bh))
        if transitions >= 1.5:
            lines += 1
    return lines


def flicker(luma: np.ndarray, fps: float) -> float:
    """Std of the mean-luma series after removing its moving average over ~0.5 s."""
    n = len(luma)
    if n < 5:
        return 0.0
    win = max(3, int(round(0.5 * fps)) | 1)
    if win >= n:
        win = max(3, (n // 2) | 1)
    pad = win // 2
    x = np.pad(luma.astype(np.float64), pad, mode="edge")
    kernel = np.ones(win) / win
    trend = np.convolve(x, kernel, mode="valid")[:n]
    return float(np.std(luma - trend))


# -------------------------------------------------------------------------------- streaming stats
class FrameStats:
    """Per-frame statistics of one video, fed once per decoded frame (never keeps frames)."""

    FREEZE_EPS = 0.35  # mean |difference| of consecutive frames (gray levels) below which they are identical

    def __init__(self, settings, fps: float, models: QualityModels | None = None):
        self.qs = settings.quality
        self.fps = fps if fps and fps > 0 else 25.0
        self.models = models or QualityModels()
        self.enabled = self.qs.enabled
        self.luma: list[float] = []
        self.diff: list[float] = []
        self.sample_index: list[int] = []
        self.samples: dict[str, list[float]] = {k: [] for k in ("sharpness", "brightness", "dark_share", "bright_share",
                                                                "colour_cast", "motion", "border_share", "text")}
        self.brisque: list[tuple[int, float]] = []
        self.insets: list[tuple[int, int, int, int] | None] = []
        self._prev_gray: np.ndarray | None = None
        self._prev_small: np.ndarray | None = None
        self._next_sample_t = 0.0
        self._next_brisque_t = 0.0
        self.frame_shape: tuple[int, int] | None = None

    def process(self, index: int, time_s: float, image: np.ndarray, gray: np.ndarray | None = None) -> None:
        import cv2

        if gray is None:
            gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        self.frame_shape = gray.shape
        self.luma.append(cv2.mean(gray)[0])  # = gray.mean(), 15x cheaper per frame
        if self._prev_gray is not None and self._prev_gray.shape == gray.shape:
            self.diff.append(cv2.norm(gray, self._prev_gray, cv2.NORM_L1) / gray.size)  # mean |difference|
        else:
            self.diff.append(NAN)
        sampled = self.enabled and time_s + 1e-6 >= self._next_sample_t
        small = None
        if sampled:
            self._next_sample_t = time_s + 1.0 / self.qs.sample_fps
            self.sample_index.append(index)
            s = self.samples
            s["sharpness"].append(sharpness(gray))
            s["brightness"].append(self.luma[-1])
            s["dark_share"].append(float((gray <= 16).mean()))
            s["bright_share"].append(float((gray >= 245).mean()))
            s["colour_cast"].append(colour_cast(image))
            bars = border_sizes(gray)
            s["border_share"].append(border_share(bars, *gray.shape))
            s["text"].append(float(text_lines(gray) > 0))
            eh, ev = edge_masks(gray)
            self.insets.append(find_inset(eh, ev, bars, min_support=0.75)[0])
            small = self._small(gray)
            if self._prev_small is not None and self._prev_small.shape == small.shape:
                flow = cv2.calcOpticalFlowFarneback(self._prev_small, small, None, 0.5, 2, 9, 2, 5, 1.1, 0)
                mag = float(np.median(np.linalg.norm(flow, axis=2)))
                s["motion"].append(mag * self.fps / small.shape[1])
            else:
                s["motion"].append(NAN)
            if self.models.brisque is not None and time_s + 1e-6 >= self._next_brisque_t:
                self._next_brisque_t = time_s + 1.0 / self.qs.brisque_fps
                self.brisque.append((index, self.models.brisque.score(image)))
        self._prev_gray = gray
        if self.enabled:
            # the frame before the next sample is needed for its optical flow
            self._prev_small = small if small is not None else None
            if small is None and time_s + 1.0 / self.fps * 1.5 >= self._next_sample_t:
                self._prev_small = self._small(gray)

    @staticmethod
    def _small(gray: np.ndarray) -> np.ndarray:
        import cv2

        h, w = gray.shape
        tw = min(128, w)
        return cv2.resize(gray, (tw, max(8, int(round(tw * h / w)))), interpolation=cv2.INTER_AREA)

    # ------------------------------------------------------------------ aggregation
    def shot_scores(self, a: int, b: int, times: list[float], end_s: float, info) -> dict[str, float]:
        """Scores of source frames [a, b)."""
        from operators.shots import time_of

        q: dict[str, float] = {}
        q["duration_s"] = time_of(b, times, end_s) - time_of(a, times, end_s)
        if info is not None:
            q["width_px"] = float(info.width)
            q["height_px"] = float(info.height)
            q["resolution_px"] = float(min(info.width, info.height))
            q["aspect"] = float(info.width) / max(1.0, float(info.height))
        if not self.enabled or b <= a:
            return q
        idx = np.asarray(self.sample_index)
        sel = np.nonzero((idx >= a) & (idx < b))[0]

        def med(name: str) -> float:
            vals = np.asarray([self.samples[name][i] for i in sel], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            return float(np.median(vals)) if len(vals) else NAN

        for name in ("sharpness", "brightness", "dark_share", "bright_share", "colour_cast", "motion", "border_share"):
            q[name] = med(name)
        q["text_score"] = float(np.mean([self.samples["text"][i] for i in sel])) if len(sel) else NAN
        q["pip_score"] = _pip_score([self.insets[i] for i in sel])
        br = [v for i, v in self.brisque if a <= i < b and np.isfinite(v)]
        q["brisque"] = float(np.median(br)) if br else NAN
        luma = np.asarray(self.luma[a:b])
        q["flicker"] = flicker(luma, self.fps)
        d = np.asarray(self.diff[a + 1:b], dtype=np.float64)
        d = d[np.isfinite(d)]
        if len(d):
            still = d < self.FREEZE_EPS
            q["static_share"] = float(still.mean())
            longest = cur = 0
            for v in still:
                cur = cur + 1 if v else 0
                longest = max(longest, cur)
            q["frozen_s"] = longest / self.fps
        else:
            q["static_share"] = NAN
            q["frozen_s"] = NAN
        return q


def _pip_score(rects: list) -> float:
    if not rects:
        return NAN
    found = [r for r in rects if r is not None]
    if not found:
        return 0.0
    best = 0
    for r in found:
        n = sum(1 for o in found if _iou(r, o) >= 0.7)
        best = max(best, n)
    return best / float(len(rects))


def _iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    ua = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / ua if ua > 0 else 0.0


# ------------------------------------------------------------------------------------------- audio
def audio_scores(samples: np.ndarray | None, vad_probs: np.ndarray | None, start_s: float, end_s: float,
                 sample_rate: int = 16000) -> dict[str, float]:
    """Loudness, clipping, speech share and silence of [start_s, end_s) of a 16 kHz mono track whose
    sample 0 is at video time 0 (shift the track first when the audio stream starts elsewhere)."""
    if samples is None or len(samples) == 0:
        return {"loudness_dbfs": -120.0, "clipping_share": 0.0, "speech_share": 0.0 if vad_probs is not None else NAN,
                "silence_share": 1.0}
    a = max(0, int(round(start_s * sample_rate)))
    b = max(a, min(len(samples), int(round(end_s * sample_rate))))
    x = samples[a:b].astype(np.float64)
    if len(x) == 0:
        return {"loudness_dbfs": -120.0, "clipping_share": 0.0, "speech_share": 0.0 if vad_probs is not None else NAN,
                "silence_share": 1.0}
    rms = math.sqrt(float(np.mean(x * x)))
    q = {"loudness_dbfs": max(-120.0, 20.0 * math.log10(rms + 1e-12)),
         "clipping_share": float(np.mean(np.abs(x) >= 0.999))}
    win = sample_rate // 10
    nw = len(x) // win
    if nw:
        w = x[: nw * win].reshape(nw, win)
        lev = 10.0 * np.log10(np.mean(w * w, axis=1) + 1e-12)
        q["silence_share"] = float(np.mean(lev < -50.0))
    else:
        q["silence_share"] = float(q["loudness_dbfs"] < -50.0)
    if vad_probs is None:
        q["speech_share"] = NAN
    else:
        from models.vad import WINDOW_S

        i0 = int(math.floor(start_s / WINDOW_S))
        i1 = int(math.ceil(end_s / WINDOW_S))
        p = vad_probs[max(0, i0):max(0, i1)]
        q["speech_share"] = float(np.mean(p >= 0.5)) if len(p) else 0.0
    return q


# ------------------------------------------------------------------------------------------ decide
def _sections(settings):
    """(ShotSettings-like, QualitySettings) from a Settings object or a QualitySettings section."""
    if hasattr(settings, "quality"):
        return settings.shots, settings.quality
    return None, settings


def _bad(value, limit, above: bool) -> bool:
    if value is None or limit is None:
        return False
    try:
        v = float(value)
    except (TypeError, ValueError):
        return False
    if not math.isfinite(v):
        return False  # a score that could not be computed never fails its check
    return v > limit if above else v < limit


def decide_shot(quality: dict[str, float] | None, n_people: int | None, settings) -> str:
    """"" when the shot passes every check, else the reason code of the first failed check (order:
    :data:`CHECKS`). ``n_people`` None means the people stage has not run yet (its checks are skipped).
    ``settings`` is the whole Settings (uses shots.min_clip_s and quality.*) or a QualitySettings."""
    q = dict(quality or {})
    shots_cfg, qs = _sections(settings)
    if shots_cfg is not None and _bad(q.get("duration_s"), shots_cfg.min_clip_s - 1e-6, above=False):
        return "shot_too_short"
    if qs.enabled:
        checks = [
            ("resolution_too_low", "resolution_px", qs.min_resolution_px, False),
            ("letterbox", "border_share", qs.max_border_share, True),
            ("picture_in_picture", "pip_score", qs.max_pip_score, True),
            ("text_overlay", "text_score", qs.max_text_score, True),
            ("frozen", "static_share", qs.max_static_share, True),
            ("frozen", "frozen_s", qs.max_frozen_s, True),
            ("blurry", "sharpness", qs.min_sharpness, False),
            ("too_dark", "brightness", qs.min_brightness, False),
            ("too_bright", "brightness", qs.max_brightness, True),
            ("colour_cast", "colour_cast", qs.max_colour_cast, True),
            ("flicker", "flicker", qs.max_flicker, True),
            ("low_quality", "brisque", qs.max_brisque, True),
            ("too_much_motion", "motion", qs.max_motion, True),
            ("silent", "loudness_dbfs", qs.min_loudness_dbfs, False),
            ("audio_clipping", "clipping_share", qs.max_clipping_share, True),
            ("no_speech", "speech_share", qs.min_speech_share if qs.min_speech_share > 0 else None, False),
        ]
        for reason, key, limit, above in checks:
            if _bad(q.get(key), limit, above):
                return reason
    if n_people is not None:
        if n_people < qs.min_people:
            return "no_person"
        if n_people > qs.max_people:
            return "too_crowded"
    return ""


def explain(reason: str, quality: dict[str, float] | None, n_people: int | None, settings) -> str:
    """Human-readable detail of a failed check for the rejects row."""
    shots_cfg, qs = _sections(settings)
    q = quality or {}
    keys = {"shot_too_short": ("duration_s", "shots.min_clip_s", getattr(shots_cfg, "min_clip_s", None)),
            "resolution_too_low": ("resolution_px", "quality.min_resolution_px", qs.min_resolution_px),
            "letterbox": ("border_share", "quality.max_border_share", qs.max_border_share),
            "picture_in_picture": ("pip_score", "quality.max_pip_score", qs.max_pip_score),
            "text_overlay": ("text_score", "quality.max_text_score", qs.max_text_score),
            "blurry": ("sharpness", "quality.min_sharpness", qs.min_sharpness),
            "too_dark": ("brightness", "quality.min_brightness", qs.min_brightness),
            "too_bright": ("brightness", "quality.max_brightness", qs.max_brightness),
            "colour_cast": ("colour_cast", "quality.max_colour_cast", qs.max_colour_cast),
            "flicker": ("flicker", "quality.max_flicker", qs.max_flicker),
            "low_quality": ("brisque", "quality.max_brisque", qs.max_brisque),
            "too_much_motion": ("motion", "quality.max_motion", qs.max_motion),
            "silent": ("loudness_dbfs", "quality.min_loudness_dbfs", qs.min_loudness_dbfs),
            "audio_clipping": ("clipping_share", "quality.max_clipping_share", qs.max_clipping_share),
            "no_speech": ("speech_share", "quality.min_speech_share", qs.min_speech_share)}
    if reason == "frozen":
        return (f"static_share={q.get('static_share', NAN):.3g} (max {qs.max_static_share}), "
                f"frozen_s={q.get('frozen_s', NAN):.3g} (max {qs.max_frozen_s})")
    if reason in PEOPLE_REASONS:
        return f"n_people={n_people} outside [{qs.min_people}, {qs.max_people}]"
    if reason in keys:
        k, name, lim = keys[reason]
        v = q.get(k)
        return f"{k}={v:.4g} vs {name}={lim}" if isinstance(v, (int, float)) else f"{k} vs {name}={lim}"
    return reason
