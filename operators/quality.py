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
    "width_px": "Width of the active picture: the upright source frame minus letterbox/pillarbox bars (px).",
    "height_px": "Height of the active picture (px).",
    "resolution_px": "Shorter side of the active picture (px, bars excluded).",
    "aspect": "Aspect ratio width/height of the active picture.",
    "sharpness": "Median variance of the Laplacian of the decoded frames inside the bars (higher is sharper).",
    "brightness": "Median mean luma inside the bars (0-255).",
    "dark_share": "Median share of pixels with luma <= 16.",
    "bright_share": "Median share of pixels with luma >= 245.",
    "colour_cast": "Median distance of the mean chroma from neutral in CIE Lab (a*, b*), after grey-world weighting.",
    "flicker": "Std of the mean luma after removing its 0.5 s moving average (luma levels).",
    "static_share": "Share of consecutive frame pairs that are (nearly) identical.",
    "frozen_s": "Longest run of identical consecutive frames (s).",
    "motion": "Median optical-flow magnitude on 128-px frames, in frame widths per second.",
    "brisque": "Median BRISQUE score (lower is better; NaN when the model is missing).",
    "border_share": "Share of the frame area outside the active picture (letterbox/pillarbox bars, cropped away).",
    "pip_score": "Picture-in-picture: share of the shot's 2 s windows showing the same inset rectangle, weighted by the inset model's probability (0-1).",
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
    pip: Any = None
    notes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, settings) -> "QualityModels":
        """BRISQUE, Silero VAD and the inset model; a missing model is recorded and its scores become NaN."""
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
        try:
            out.pip = InsetModel.load(settings)
        except Exception as exc:
            out.notes["pip-inset"] = f"{type(exc).__name__}: {exc}"
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
    """Rows/columns of uniform dark bars at (top, bottom, left, right); all zero for an all-dark frame."""
    return frame_bars(gray, level, max_std) or (0, 0, 0, 0)


def frame_bars(gray: np.ndarray, level: float = 24.0, max_std: float = 6.0) -> tuple[int, int, int, int] | None:
    """Rows/columns of uniform dark bars at (top, bottom, left, right); None when the whole frame is dark
    (a fade or a black frame says nothing about the bars)."""
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
        return None
    return top, bottom, left, right


BAR_PERCENTILE = 10.0   # per side, the bar that stays through the shot: a low percentile over sampled frames


def active_bars(per_frame: list[tuple[int, int, int, int] | None]) -> tuple[int, int, int, int]:
    """Bars (top, bottom, left, right) that stay constant through a shot: per side a low percentile over
    the sampled frames that are not all dark, so dark scene content next to a bar in some frames does not
    widen it, and fades to black do not count."""
    good = np.asarray([b for b in per_frame if b is not None], dtype=np.float64)
    if not len(good):
        return 0, 0, 0, 0
    return tuple(int(np.floor(np.percentile(good[:, k], BAR_PERCENTILE))) for k in range(4))  # type: ignore[return-value]


def border_kind(bars: tuple[int, int, int, int], h: int, w: int, min_share: float = 0.02) -> str:
    """'none', 'letterbox' (top/bottom bars), 'pillarbox' (left/right) or 'windowbox' (both)."""
    top, bottom, left, right = bars
    tb = (top + bottom) / float(h) >= min_share
    lr = (left + right) / float(w) >= min_share
    return "windowbox" if tb and lr else "letterbox" if tb else "pillarbox" if lr else "none"


def border_share(sizes: tuple[int, int, int, int], h: int, w: int) -> float:
    top, bottom, left, right = sizes
    inner = max(0, h - top - bottom) * max(0, w - left - right)
    return 1.0 - inner / float(h * w)


# ------------------------------------------------------------------------ picture-in-picture (insets)
# Shot-level evidence, gathered in windows of PIP_WINDOW frames taken PIP_FPS times a second (each with the
# frame decoded just before it, for the temporal activity): persistent straight step edges form candidate
# rectangles; a small logistic model (models/weights/pip_inset.json, trained on synthetic insets by
# ``python -m train.pip_inset``) scores each from cues that separate a composited inset from scene structure.
PIP_FPS = 4.0
PIP_WINDOW = 8              # frames per window (2 s at PIP_FPS)
PIP_EDGE = 6.0              # |step| over 2 px (gray levels, 3x3 Gaussian first) that counts as an edge
PIP_PERSIST = 0.5           # share of a window's frames with an edge at a pixel for it to be persistent
PIP_MAX_CANDIDATES = 12
PIP_FEATURES = ["sup_min", "sup_mean", "pers", "ext_max", "ext_mean", "act_in", "act_out", "act_line", "dyn", "pol",
                "tex", "area", "n_border", "conc", "ext_raw"]


def pip_window_maps(frames: list[np.ndarray], prevs: list[np.ndarray]) -> dict[str, Any]:
    """Per-window maps from gray frames and the frames decoded just before each: thin (non-maximum
    suppressed) horizontal/vertical step-edge persistence PH/PV, signed steps DY/DX per frame, mean
    consecutive-frame activity A, mean gradient T, and the letterbox/pillarbox bars of the mean frame."""
    import cv2

    G = np.stack([cv2.GaussianBlur(f, (3, 3), 0) for f in frames]).astype(np.int16)
    A = sum(cv2.absdiff(f, p).astype(np.float32) for f, p in zip(frames, prevs)) / float(len(frames))
    _, h, w = G.shape
    DY = np.zeros_like(G)
    DX = np.zeros_like(G)
    DY[:, 1:-1] = G[:, 2:] - G[:, :-2]
    DX[:, :, 1:-1] = G[:, :, 2:] - G[:, :, :-2]
    ay, ax = np.abs(DY), np.abs(DX)
    th = ay > PIP_EDGE
    th[:, 1:-1] &= (ay[:, 1:-1] >= ay[:, :-2]) & (ay[:, 1:-1] >= ay[:, 2:])
    tv = ax > PIP_EDGE
    tv[:, :, 1:-1] &= (ax[:, :, 1:-1] >= ax[:, :, :-2]) & (ax[:, :, 1:-1] >= ax[:, :, 2:])
    return {"bars": border_sizes(G.mean(0)), "DY": DY, "DX": DX, "PH": th.mean(0), "PV": tv.mean(0), "A": A,
            "T": (ay.mean(0) + ax.mean(0)).astype(np.float32), "h": h, "w": w}


def _pip_lines(mask: np.ndarray, horizontal: bool, min_len: int, k: int) -> list[int]:
    """Rows (horizontal) or columns holding the k longest straight runs of persistent edge (>= min_len)."""
    import cv2

    m = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((1, 3) if horizontal else (3, 1), np.uint8))
    op = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((1, min_len) if horizontal else (min_len, 1), np.uint8))
    a = op if horizontal else op.T
    run = np.zeros(a.shape, np.int32)
    run[:, 0] = a[:, 0]
    for j in range(1, a.shape[1]):
        run[:, j] = (run[:, j - 1] + 1) * a[:, j]
    cnt = run.max(1)
    n = len(cnt)
    out: list[int] = []
    for p in np.argsort(-cnt, kind="stable"):
        if cnt[p] <= 0 or len(out) >= k:
            break
        if 2 <= p <= n - 3 and all(abs(p - q) > 2 for q in out):
            out.append(int(p))
    return out


def inset_candidates(ph: np.ndarray, pv: np.ndarray, bars: tuple[int, int, int, int] = (0, 0, 0, 0),
                     min_support: float = PIP_PERSIST, max_n: int = PIP_MAX_CANDIDATES) -> list[tuple[int, int, int, int]]:
    """Rectangles (x0, y0, x1, y1) inside the picture (within the bars) whose sides not on the picture border
    are persistent edges under at least min_support of their length: 1-40% of the picture, at most 50% of
    its width and 75% of its height, aspect 0.5-2.6 (9:16 to 2.39:1 video), never touching two opposite
    borders (split screens, columns); best supported first."""
    import cv2

    top, bottom, left, right = bars
    H0, W0 = ph.shape
    if H0 - top - bottom < 24 or W0 - left - right < 24:
        return []
    ph, pv = ph[top:H0 - bottom, left:W0 - right], pv[top:H0 - bottom, left:W0 - right]
    h, w = ph.shape
    eh, ev = ph >= PIP_PERSIST, pv >= PIP_PERSIST
    ehd = cv2.dilate(eh.astype(np.uint8), np.ones((3, 1), np.uint8))  # a side may wander by a pixel
    evd = cv2.dilate(ev.astype(np.uint8), np.ones((1, 3), np.uint8))
    ch = np.concatenate([np.zeros((h, 1), np.int32), np.cumsum(ehd, axis=1, dtype=np.int32)], axis=1)
    cv = np.concatenate([np.zeros((1, w), np.int32), np.cumsum(evd, axis=0, dtype=np.int32)], axis=0)
    r = np.asarray(_pip_lines(eh, True, max(6, int(0.08 * w)), 24) + [0, h - 1])
    c = np.asarray(_pip_lines(ev, False, max(6, int(0.08 * h)), 24) + [0, w - 1])
    ri, rj = np.triu_indices(len(r), 1)
    ci, cj = np.triu_indices(len(c), 1)
    y0, y1 = np.minimum(r[ri], r[rj]), np.maximum(r[ri], r[rj])
    x0, x1 = np.minimum(c[ci], c[cj]), np.maximum(c[ci], c[cj])
    ok_y, ok_x = (y1 - y0) >= 0.08 * h, (x1 - x0) >= 0.08 * w
    y0, y1, x0, x1 = y0[ok_y, None], y1[ok_y, None], x0[None, ok_x], x1[None, ok_x]
    if y0.size == 0 or x0.size == 0:
        return []
    area = ((x1 - x0) * (y1 - y0)).astype(np.float64) / (h * w)
    bt, bb, bl, br = y0 == 0, y1 == h - 1, x0 == 0, x1 == w - 1
    nb = bt.astype(int) + bb + bl + br
    dx, dy = (x1 - x0).astype(np.float64), (y1 - y0).astype(np.float64)
    valid = ((area >= 0.01) & (area <= 0.4) & (nb <= 2) & ~(bt & bb) & ~(bl & br) & (dx <= 0.5 * w)
             & (dy <= 0.75 * h) & (dx >= 0.5 * dy) & (dx <= 2.6 * dy))
    sup = np.ones(area.shape)
    for border, v in ((bt, (ch[y0, x1] - ch[y0, x0]) / dx), (bb, (ch[y1, x1] - ch[y1, x0]) / dx),
                      (bl, (cv[y1, x0] - cv[y0, x0]) / dy), (br, (cv[y1, x1] - cv[y0, x1]) / dy)):
        sup = np.where(border, sup, np.minimum(sup, v))
    valid &= sup >= min_support
    iy, ix = np.nonzero(valid)
    order = np.argsort(-(sup[iy, ix] + 0.01 * area[iy, ix]), kind="stable")[:max_n]
    return [(int(x0[0, ix[o]]) + left, int(y0[iy[o], 0]) + top, int(x1[0, ix[o]]) + left, int(y1[iy[o], 0]) + top)
            for o in order]


def _band(M: np.ndarray, p: int, a: int, b: int, horizontal: bool) -> np.ndarray:
    """Max of a 2-D map over +-1 px across a line at p, from a to b along it."""
    lo = max(0, p - 1)
    return M[lo:p + 2, a:b].max(0) if horizontal else M[a:b, lo:p + 2].max(1)


def inset_features(m: dict[str, Any], rect: tuple[int, int, int, int]) -> np.ndarray:
    """Cues of one candidate rectangle (order: PIP_FEATURES), over its sides not on the picture border:
    edge support (sup_min/sup_mean: thresholded, pers: mean persistence, conc: persistence on the line minus
    3 px beside it), whether the sides' lines go on past the corners (ext_raw: the largest share of a
    side's continuation with edge; ext_max/ext_mean: minus the clutter 5 px beside; an inset's sides end at
    its corners), temporal activity inside / in a 6-px ring outside /
    on the sides relative to both (log1p of mean |consecutive frame difference|), how the signed step along
    the sides changes over the window (dyn) and keeps its polarity (pol), the texture contrast across the
    rectangle (tex), its area share and the number of sides on the border."""
    PH, PV, A, DY, DX, T = m["PH"], m["PV"], m["A"], m["DY"], m["DX"], m["T"]
    h, w = m["h"], m["w"]
    top, bottom, left, right = m["bars"]
    x0, y0, x1, y1 = rect
    sides = []
    if y0 > top:
        sides.append((True, y0, x0, x1))
    if y1 < h - 1 - bottom:
        sides.append((True, y1, x0, x1))
    if x0 > left:
        sides.append((False, x0, y0, y1))
    if x1 < w - 1 - right:
        sides.append((False, x1, y0, y1))
    L = max(4, int(0.08 * w))
    sup, pers, ext, ext_raw, dyn, pol, conc, line = [], [], [], [], [], [], [], []
    for horiz, p, a, b in sides:
        PM = PH if horiz else PV
        across = PM.shape[0] if horiz else PM.shape[1]
        n = PM.shape[1] if horiz else PM.shape[0]
        prof = _band(PM, p, a, b, horiz)
        sup.append(float((prof >= PIP_PERSIST).mean()))
        pers.append(float(prof.mean()))
        for ea, eb in ((a - L - 2, a - 2), (b + 2, b + L + 2)):
            ea, eb = max(0, ea), min(n, eb)
            if eb - ea >= 3:
                on = float((_band(PM, p, ea, eb, horiz) >= PIP_PERSIST).mean())
                off = [float((_band(PM, p + o, ea, eb, horiz) >= PIP_PERSIST).mean()) for o in (-5, 5)
                       if 1 <= p + o < across - 1]
                ext.append(on - (max(off) if off else 0.0))
                ext_raw.append(on)
        offs = [float((PM[p + o, a:b] if horiz else PM[a:b, p + o]).mean()) for o in (-3, 3) if 0 <= p + o < across]
        conc.append(pers[-1] - (max(offs) if offs else 0.0))
        lo, hi = max(0, p - 1), min(across, p + 2)
        if horiz:
            rr = lo + int(np.argmax(PM[lo:hi, a:b].mean(1)))
            S = DY[:, rr, a:b].astype(np.float32)
            line.append(float(A[p, a:b].mean()))
        else:
            rr = lo + int(np.argmax(PM[a:b, lo:hi].mean(0)))
            S = DX[:, a:b, rr].astype(np.float32)
            line.append(float(A[a:b, p].mean()))
        dyn.append(float(S.std(0).mean() / (np.abs(S).mean() + 1.0)))
        ms = S.mean(0)
        pol.append(float(abs(ms.sum()) / (np.abs(ms).sum() + 1e-6)))
    if not sides:
        return np.zeros(len(PIP_FEATURES))
    yi0, yi1, xi0, xi1 = y0 + 2, y1 - 1, x0 + 2, x1 - 1
    inner = yi1 > yi0 and xi1 > xi0
    act_in = float(A[yi0:yi1, xi0:xi1].mean()) if inner else 0.0
    tin = float(T[yi0:yi1, xi0:xi1].mean()) if inner else 0.0
    oy0, oy1, ox0, ox1 = max(0, y0 - 6), min(h, y1 + 7), max(0, x0 - 6), min(w, x1 + 7)
    iy0, iy1, ix0, ix1 = max(0, y0 - 1), min(h, y1 + 2), max(0, x0 - 1), min(w, x1 + 2)
    ring_n = max(1, (oy1 - oy0) * (ox1 - ox0) - (iy1 - iy0) * (ix1 - ix0))
    act_out = float(A[oy0:oy1, ox0:ox1].sum() - A[iy0:iy1, ix0:ix1].sum()) / ring_n
    tout = float(T[oy0:oy1, ox0:ox1].sum() - T[iy0:iy1, ix0:ix1].sum()) / ring_n
    return np.array([min(sup), np.mean(sup), np.mean(pers), max(ext) if ext else 0.0, np.mean(ext) if ext else 0.0,
                     math.log1p(act_in), math.log1p(act_out),
                     math.log1p(float(np.mean(line))) - math.log1p(max(act_in, act_out)),
                     np.mean(dyn), np.mean(pol), abs(math.log((tin + 1.0) / (tout + 1.0))),
                     (x1 - x0) * (y1 - y0) / float(h * w), 4 - len(sides), np.mean(conc),
                     max(ext_raw) if ext_raw else 0.0], dtype=np.float64)


@dataclass
class InsetModel:
    """Logistic output over :data:`PIP_FEATURES` (standardised), optionally after one tanh hidden layer;
    from models/weights/pip_inset.json."""

    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    bias: float
    sha256: str = ""
    w1: np.ndarray | None = None  # optional tanh hidden layer (features x hidden)
    b1: np.ndarray | None = None

    @classmethod
    def from_dict(cls, d: dict, sha256: str = "") -> "InsetModel":
        if list(d["features"]) != PIP_FEATURES:
            raise ValueError(f"pip_inset features {d['features']} != {PIP_FEATURES}")
        hidden = ("w1" in d) and (np.asarray(d["w1"], float), np.asarray(d["b1"], float))
        return cls(np.asarray(d["mean"], float), np.asarray(d["std"], float), np.asarray(d["coef"], float),
                   float(d["bias"]), sha256, *(hidden or (None, None)))

    @classmethod
    def load(cls, settings) -> "InsetModel":
        import json

        from models.registry import resolve_for

        r = resolve_for(settings, "pip-inset")
        return cls.from_dict(json.loads(r.path.read_text()), r.digest)

    def prob(self, X: np.ndarray) -> np.ndarray:
        z = (np.atleast_2d(X) - self.mean) / self.std
        if self.w1 is not None:
            z = np.tanh(z @ self.w1 + self.b1)
        z = z @ self.coef + self.bias
        return 1.0 / (1.0 + np.exp(-z))


def pip_window(frames: list[np.ndarray], prevs: list[np.ndarray], model: InsetModel,
               top: int = 3) -> list[tuple[tuple[int, int, int, int], float]]:
    """The `top` most inset-like rectangles of a window with their probabilities, best first."""
    m = pip_window_maps(frames, prevs)
    cands = inset_candidates(m["PH"], m["PV"], m["bars"])
    if not cands:
        return []
    p = model.prob(np.stack([inset_features(m, c) for c in cands]))
    order = np.argsort(-p, kind="stable")[:top]
    return [(cands[i], round(float(p[i]), 4)) for i in order]


def _pip_score(windows: list[list[tuple[tuple, float]]]) -> float:
    """For the best rectangle: the mean over a shot's windows of the probability of that rectangle (a
    window's candidate with IoU >= 0.5, else 0): one inset seen throughout scores its probability."""
    if not windows:
        return NAN
    best = 0.0
    for win in windows:
        for r, _ in win:
            total = sum(max([p for o, p in w if _iou(r, o) >= 0.5], default=0.0) for w in windows)
            best = max(best, total)
    return best / float(len(windows))


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

    # mean abs difference of consecutive frames (gray levels, over the active picture) below which they are
    # identical: a held frame re-encoded stays under 0.05; a talking head re-encoded at 480p CRF 23 has runs
    # of 1 s under 0.35 (the old value, which dropped such shots as 'frozen') but only 0.3 s under 0.1.
    FREEZE_EPS = 0.1

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
        self.bars: list[tuple[int, int, int, int] | None] = []  # per sampled frame (None: all dark)
        self._active_frac = 1.0
        self.pip_windows: list[tuple[int, int, list]] = []  # (first, last frame, [(rect, prob), ...])
        self._pip_frames: list[tuple[int, np.ndarray, np.ndarray]] = []
        self._next_pip_t = 0.0
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
            # mean |difference| over the active picture (bars of the last sampled frame never change)
            self.diff.append(cv2.norm(gray, self._prev_gray, cv2.NORM_L1) / (gray.size * self._active_frac))
        else:
            self.diff.append(NAN)
        sampled = self.enabled and time_s + 1e-6 >= self._next_sample_t
        small = None
        if sampled:
            self._next_sample_t = time_s + 1.0 / self.qs.sample_fps
            self.sample_index.append(index)
            s = self.samples
            bars = frame_bars(gray)
            self.bars.append(bars)
            if bars is not None:
                self._active_frac = max(0.05, 1.0 - border_share(bars, *gray.shape))
            # image scores inside this frame's bars: bars are cropped away downstream, so they must not
            # make a shot look dark, soft or low quality
            top, bottom, left, right = (v + 2 if v else 0 for v in bars) if bars else (0, 0, 0, 0)  # past the bar edge
            hh, ww = gray.shape
            g_in = gray[top:hh - bottom, left:ww - right]
            img_in = image[top:hh - bottom, left:ww - right]
            s["sharpness"].append(sharpness(g_in))
            s["brightness"].append(float(cv2.mean(g_in)[0]))
            s["dark_share"].append(float((g_in <= 16).mean()))
            s["bright_share"].append(float((g_in >= 245).mean()))
            s["colour_cast"].append(colour_cast(img_in))
            s["border_share"].append(border_share(bars or (0, 0, 0, 0), *gray.shape))
            s["text"].append(float(text_lines(g_in) > 0))
            small = self._small(gray)
            if self._prev_small is not None and self._prev_small.shape == small.shape:
                flow = cv2.calcOpticalFlowFarneback(self._prev_small, small, None, 0.5, 2, 9, 2, 5, 1.1, 0)
                mag = float(np.median(np.linalg.norm(flow, axis=2)))
                s["motion"].append(mag * self.fps / small.shape[1])
            else:
                s["motion"].append(NAN)
            if self.models.brisque is not None and time_s + 1e-6 >= self._next_brisque_t:
                self._next_brisque_t = time_s + 1.0 / self.qs.brisque_fps
                self.brisque.append((index, self.models.brisque.score(img_in)))
        if self.enabled and self.models.pip is not None and time_s + 1e-6 >= self._next_pip_t:
            self._next_pip_t = time_s + 1.0 / PIP_FPS
            prev = self._prev_gray if self._prev_gray is not None and self._prev_gray.shape == gray.shape else gray
            if self._pip_frames and self._pip_frames[-1][1].shape != gray.shape:
                self._pip_frames = []
            self._pip_frames.append((index, gray, prev))
            if len(self._pip_frames) >= PIP_WINDOW:
                found = pip_window([f for _, f, _ in self._pip_frames], [q for _, _, q in self._pip_frames],
                                   self.models.pip)
                self.pip_windows.append((self._pip_frames[0][0], index, found))
                self._pip_frames = []
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
        from operators.decode import time_of

        q: dict[str, float] = {}
        q["duration_s"] = time_of(b, times, end_s) - time_of(a, times, end_s)
        idx = np.asarray(self.sample_index)
        sel = np.nonzero((idx >= a) & (idx < b))[0]
        if info is not None:
            box, _ = self.active_box(a, b, info)
            w, h = box[2] - box[0], box[3] - box[1]
            q["width_px"] = float(w)
            q["height_px"] = float(h)
            q["resolution_px"] = float(min(w, h))
            q["aspect"] = float(w) / max(1.0, float(h))
        if not self.enabled or b <= a:
            return q

        def med(name: str) -> float:
            vals = np.asarray([self.samples[name][i] for i in sel], dtype=np.float64)
            vals = vals[np.isfinite(vals)]
            return float(np.median(vals)) if len(vals) else NAN

        for name in ("sharpness", "brightness", "dark_share", "bright_share", "colour_cast", "motion"):
            q[name] = med(name)
        if info is not None:
            q["border_share"] = 1.0 - q["width_px"] * q["height_px"] / max(1.0, float(info.width) * float(info.height))
        q["text_score"] = float(np.mean([self.samples["text"][i] for i in sel])) if len(sel) else NAN
        q["pip_score"] = self._shot_pip(a, b)
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

    def active_box(self, a: int, b: int, info) -> tuple[list[float], str]:
        """The active picture of source frames [a, b) as [x0, y0, x1, y1] in upright source pixels (the
        frame minus the bars that stay through the shot), and its kind (:func:`border_kind`)."""
        W, H = float(info.width), float(info.height)
        if not self.frame_shape:
            return [0.0, 0.0, W, H], "none"
        idx = np.asarray(self.sample_index)
        sel = np.nonzero((idx >= a) & (idx < b))[0]
        bars = active_bars([self.bars[i] for i in sel]) if len(sel) else (0, 0, 0, 0)
        h, w = self.frame_shape
        kind = border_kind(bars, h, w)
        if kind == "none":
            return [0.0, 0.0, W, H], kind
        top, bottom, left, right = bars
        sx, sy = W / w, H / h
        # one decode pixel of safety on each barred side (scaling blurs the edge of the bar)
        x0 = (left + (1 if left else 0)) * sx
        x1 = W - (right + (1 if right else 0)) * sx
        y0 = (top + (1 if top else 0)) * sy
        y1 = H - (bottom + (1 if bottom else 0)) * sy
        return [float(np.floor(x0)), float(np.floor(y0)), float(np.ceil(x1)), float(np.ceil(y1))], kind

    def _shot_pip(self, a: int, b: int) -> float:
        """pip_score of frames [a, b): windows whose middle frame lies in the shot (else any overlapping);
        NaN without the inset model or without a window."""
        if self.models.pip is None:
            return NAN
        wins = [found for f0, f1, found in self.pip_windows if a <= (f0 + f1) // 2 < b]
        if not wins:
            wins = [found for f0, f1, found in self.pip_windows if f0 < b and f1 >= a]
        return _pip_score(wins)


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
