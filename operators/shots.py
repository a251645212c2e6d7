"""Shot splitting and quality scoring from ONE low-resolution decode per video.

The :class:`ShotOperator` decodes the video once (operators/decode.py: PyAV, upright frames at
``shots.decode_width_px``, per-frame PTS) and feeds every frame to

* the cut detectors configured in ``shots.detectors`` (PySceneDetect's ContentDetector,
  AdaptiveDetector, HashDetector, HistogramDetector and ThresholdDetector ("fade": fades to black), plus
  "dissolve", the detector here that finds cross-dissolves and fades by their linearity), and
* the streaming quality scorer (operators/quality.py), which keeps small per-frame statistics only.

Cuts of all detectors are merged (:func:`merge_cuts`), shots are planned between them in source frame
numbers (:func:`plan_shots`: gradual transitions are removed, ``shots.trim_frames`` trimmed at each cut),
times come from the frames' PTS (variable frame rate files come out right), and
``task.scratch["frame_times"]`` gets the PTS of every source frame. Audio is decoded once, in-process
(operators.decode.decode_audio_track, 16 kHz mono, in a thread beside the video decode) for the audio
statistics. Every shot gets its quality map,
then :func:`operators.quality.decide_shot` turns scores into kept/reason.

Reject reasons (level shot): shot_too_short and the quality reasons of docs/QUALITY.md.
Reject reasons (level video): decode_failed, no_video_stream, timeout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from operators.base import Deadline, Operator, Resources, VideoTask
from operators.decode import time_of
from operators.media import MediaError

STAGE = "shots"

HARD_DETECTORS = ("content", "adaptive", "hash", "histogram")


@dataclass
class Cut:
    """A shot boundary: ``frame`` is the first frame of the new shot; frames in [span_start, span_end)
    belong to the transition (neither shot). A hard cut has span_start == span_end == frame."""

    frame: int
    detector: str
    span_start: int
    span_end: int


# --------------------------------------------------------------------------------------------- dissolve
class DissolveDetector:
    """Finds gradual transitions (cross-dissolves, fades to/from black or white) in a frame stream.

    For each frame t with neighbours k frames away, on 64-px-wide gray thumbnails:
    ``change = mean|f(t+k) - f(t-k)|`` and ``nonlinearity = mean|f(t) - (f(t-k) + f(t+k)) / 2|``. Inside a
    dissolve, frames are a linear blend of the two shots, so the middle frame equals the mean of its
    neighbours (low ratio nonlinearity/change) while the picture changes a lot and its structure is not
    kept (no gain/offset of one of f(t-k), f(t+k) explains the other). Motion gives a high ratio (the
    mean of two shifted frames is a double image), hard cuts give 0.5, brightness ramps of one picture
    are explained by a gain. A run of such
    frames is one transition: its cut is the run's middle, its span the run widened by k.
    """

    def __init__(self, fps: float, half_window_s: float = 0.3, min_change: float = 14.0, max_ratio: float = 0.22,
                 min_run_frames: int = 3):
        self.k = max(2, int(round(half_window_s * fps)))
        self.min_change = min_change
        self.max_ratio = max_ratio
        self.min_run = min_run_frames
        self.buf: list[np.ndarray] = []
        self.first_index = 0
        self.run: list[int] = []
        self.cuts: list[Cut] = []
        self.scores: list[tuple[int, float, float, float]] = []

    @staticmethod
    def thumb(image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        tw = 64
        th = max(8, int(round(tw * h / w)))
        g = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
        return cv2.resize(g, (tw, th), interpolation=cv2.INTER_AREA).astype(np.float32)

    def process(self, index: int, image: np.ndarray) -> None:
        self.process_thumb(index, self.thumb(image))

    def process_thumb(self, index: int, th: np.ndarray) -> None:
        k = self.k
        self.buf.append(th)
        if len(self.buf) > 2 * k + 1:
            self.buf.pop(0)
        if len(self.buf) < 2 * k + 1:
            return
        t = index - k
        a, m, b = self.buf[0], self.buf[k], self.buf[-1]
        change = float(np.mean(np.abs(b - a)))
        hit = False
        if change >= self.min_change:
            ratio = float(np.mean(np.abs(m - 0.5 * (a + b)))) / change
            if ratio <= self.max_ratio:
                # a new picture, not the same one brighter/darker: what an affine gain/offset of one
                # frame cannot explain of the other (both ways; a flat black frame explains nothing)
                hit = max(_affine_residual(a, b), _affine_residual(b, a)) >= self.min_change
        if hit:
            self.run.append(t)
        else:
            self._close_run()

    def _close_run(self) -> None:
        run = self.run
        self.run = []
        if len(run) < self.min_run:
            return
        mid = run[len(run) // 2]
        self.cuts.append(Cut(mid, "dissolve", max(0, run[0] - self.k + 1), run[-1] + self.k))

    def finish(self) -> list[Cut]:
        self._close_run()
        return self.cuts


def _affine_residual(x: np.ndarray, y: np.ndarray) -> float:
    """Mean |y - (g x + o)| for the least-squares gain g and offset o."""
    xm, ym = float(x.mean()), float(y.mean())
    xc = x - xm
    var = float(np.mean(xc * xc))
    g = float(np.mean(xc * (y - ym))) / var if var > 1e-6 else 0.0
    return float(np.mean(np.abs(y - ym - g * xc)))


# ------------------------------------------------------------------------------------- PySceneDetect
class CutDetectors:
    """The configured detectors, fed frame by frame from the shared decode."""

    def __init__(self, cfg, fps: float):
        from scenedetect.detectors import (AdaptiveDetector, ContentDetector, HashDetector, HistogramDetector,
                                           ThresholdDetector)

        self.fps = fps if fps and fps > 0 else 25.0
        self.cfg = cfg
        msl = cfg.min_scene_len_frames
        self.detectors: dict[str, Any] = {}
        for name in cfg.detectors:
            if name == "content":
                self.detectors[name] = ContentDetector(threshold=cfg.content_threshold, min_scene_len=msl)
            elif name == "adaptive":
                self.detectors[name] = AdaptiveDetector(adaptive_threshold=cfg.adaptive_threshold, min_scene_len=msl)
            elif name == "hash":
                self.detectors[name] = HashDetector(min_scene_len=msl)
            elif name == "histogram":
                self.detectors[name] = HistogramDetector(min_scene_len=msl)
            elif name == "fade":
                self.detectors[name] = ThresholdDetector(threshold=cfg.fade_threshold, min_scene_len=msl)
        self.dissolve = DissolveDetector(self.fps, cfg.dissolve_half_window_s, cfg.dissolve_min_change,
                                         cfg.dissolve_max_ratio) if "dissolve" in cfg.detectors else None
        self.raw: list[tuple[int, str]] = []
        self.luma: list[float] = []
        self._last_tc = None

    def process(self, index: int, image: np.ndarray, thumb: np.ndarray | None = None) -> None:
        from scenedetect import FrameTimecode

        tc = FrameTimecode(index, fps=self.fps)
        self._last_tc = tc
        for name, det in self.detectors.items():
            for c in det.process_frame(tc, image):
                self.raw.append((int(c.frame_num), name))
        if self.dissolve is not None:
            if thumb is None:
                self.dissolve.process(index, image)
            else:
                self.dissolve.process_thumb(index, thumb)

    def finish(self, frame_luma: np.ndarray | None = None) -> list[Cut]:
        """All cuts of all detectors (unmerged). frame_luma (mean gray per frame) widens fade spans."""
        out: list[Cut] = []
        for name, det in self.detectors.items():
            post = getattr(det, "post_process", None)
            if post is not None and self._last_tc is not None:
                try:
                    for c in post(self._last_tc) or []:
                        self.raw.append((int(c.frame_num), name))
                except TypeError:
                    pass
        for f, name in self.raw:
            if name == "fade" and frame_luma is not None:
                out.append(_fade_span(f, frame_luma, self.cfg.fade_threshold))
            else:
                out.append(Cut(f, name, f, f))
        if self.dissolve is not None:
            out.extend(self.dissolve.finish())
        return sorted(out, key=lambda c: (c.frame, c.detector))


def _fade_span(cut: int, luma: np.ndarray, threshold: float) -> Cut:
    """A fade cut's transition span: the dark frames around it and the ramps into/out of them."""
    n = len(luma)
    lo = hi = min(max(cut, 0), n - 1)
    while lo > 0 and luma[lo - 1] < threshold:
        lo -= 1
    while hi < n - 1 and luma[hi] < threshold:
        hi += 1
    # follow the monotone ramps (fade out before, fade in after), at most 2 s worth of frames each
    limit = 60
    i = lo
    while i > 0 and lo - i < limit and luma[i - 1] > luma[i] + 0.5:
        i -= 1
    j = hi
    while j < n - 1 and j - hi < limit and luma[j + 1] > luma[j] + 0.5:
        j += 1
    return Cut(cut, "fade", i, j)


def merge_cuts(cuts: list[Cut], min_gap_frames: int) -> list[Cut]:
    """Merge cuts of several detectors that describe one transition.

    Cuts whose spans (widened by min_gap_frames) overlap are one transition. Its cut frame is the
    gradual detector's (dissolve/fade: the middle of the transition) when one saw it, else the
    earliest hard cut; its span is the union of the spans.
    """
    groups: list[list[Cut]] = []
    for c in sorted(cuts, key=lambda c: (c.span_start, c.frame)):
        if groups:
            g = groups[-1]
            g_end = max(x.span_end for x in g)
            g_last = max(x.frame for x in g)
            if c.span_start <= g_end + min_gap_frames or c.frame - g_last < min_gap_frames:
                g.append(c)
                continue
        groups.append([c])
    out = []
    for g in groups:
        gradual = [c for c in g if c.detector in ("dissolve", "fade")]
        if gradual:
            best = max(gradual, key=lambda c: c.span_end - c.span_start)
        else:
            best = min(g, key=lambda c: c.frame)
        names = sorted({c.detector for c in g})
        det = best.detector if len(names) == 1 else best.detector + "+" + "+".join(n for n in names if n != best.detector)
        out.append(Cut(best.frame, det, min(c.span_start for c in g), max(c.span_end for c in g)))
    return out


def plan_shots(cuts: list[Cut], n_frames: int, trim_frames: int) -> list[dict[str, Any]]:
    """Shots between merged cuts: [start_frame, end_frame) in source frames, transition spans removed and
    trim_frames dropped next to each cut (not at the video's own start and end). A video with no cut is
    one shot spanning it."""
    cuts = [c for c in cuts if 0 < c.frame < n_frames]
    shots = []
    prev_end = 0
    prev_name = "start"
    for i in range(len(cuts) + 1):
        if i < len(cuts):
            c = cuts[i]
            stop = min(c.frame, c.span_start) if c.span_start < c.frame else c.frame
            a = prev_end + (trim_frames if prev_name != "start" else 0)
            b = stop - trim_frames
        else:
            a = prev_end + (trim_frames if prev_name != "start" else 0)
            b = n_frames
        shots.append({"start_frame": int(min(a, n_frames)), "end_frame": int(max(min(b, n_frames), min(a, n_frames))),
                      "cut_in": prev_name})
        if i < len(cuts):
            prev_end = max(c.frame, c.span_end)
            prev_name = c.detector
    return shots


# --------------------------------------------------------------------------------------------- operator
class ShotOperator(Operator):
    name = STAGE
    reads = ("video",)
    writes = ("shots",)
    resources = Resources(num_cpus=1.0, memory_mb=1024)

    def setup(self) -> None:
        from operators.quality import QualityModels

        self.models = QualityModels.load(self.settings)

    def process(self, task: VideoTask, deadline: Deadline) -> VideoTask:
        try:
            with task.source() as path:
                return self._process(task, path, deadline)
        except MediaError as exc:
            return task.reject(STAGE, exc.reason, str(exc))

    def _process(self, task: VideoTask, path: str, deadline: Deadline) -> VideoTask:
        from concurrent.futures import ThreadPoolExecutor

        import cv2

        from operators.decode import decode_audio_track, open_video
        from operators.quality import FrameStats, audio_scores, decide_shot, explain, reason_stage

        cfg = self.settings.shots
        models = self.models
        want_audio = self.settings.quality.enabled and task.video.get("has_audio", True)
        pool = ThreadPoolExecutor(max_workers=1) if want_audio else None
        audio_future = None
        if pool is not None:  # the audio decode runs beside the video decode
            audio_future = pool.submit(decode_audio_track, path, 16000, deadline)
        try:
            width = analysis_width(path, cfg.decode_width_px, deadline)
            vid = open_video(path, width, cfg.fast_decode)
            detectors = stats = None
            with vid:
                for f in vid.frames(deadline):
                    if detectors is None:
                        fps = task.video.get("fps") or vid.info.fps
                        detectors = CutDetectors(cfg, fps)
                        stats = FrameStats(self.settings, fps, models)
                    gray = cv2.cvtColor(f.image, cv2.COLOR_BGR2GRAY)
                    thumb = DissolveDetector.thumb(gray) if detectors.dissolve is not None else None
                    detectors.process(f.index, f.image, thumb)
                    stats.process(f.index, f.time_s, f.image, gray)
                audio_offset = vid.audio_offset_s()
            audio = None
            if audio_future is not None:
                try:
                    audio = audio_future.result()
                except MediaError:
                    audio = None
        finally:
            if pool is not None:
                pool.shutdown(wait=True)
        deadline.check("shot detection")
        times, end_s, info = vid.times, vid.end_s, vid.info
        if vid.decode_errors:
            task.warn("video_decode", f"{vid.decode_errors} corrupt video packets skipped ({len(times)} frames decoded)")
        expected = task.video.get("frame_count") or 0
        if expected and len(times) < 0.9 * expected:
            task.warn("video_decode", f"{len(times)} of {expected} frames decoded")
        n = len(times)
        task.scratch["frame_times"] = [round(t, 6) for t in times]
        task.scratch["video_end_s"] = end_s
        luma = np.asarray(stats.luma, dtype=np.float32)
        cuts = merge_cuts(detectors.finish(luma), cfg.min_scene_len_frames)
        planned = plan_shots(cuts, n, cfg.trim_frames)

        vad_probs = None
        if audio is not None:
            audio = align_audio(audio, audio_offset)
            if models.vad is not None and len(audio):
                vad_probs = models.vad.speech_probabilities(audio)
        for i, p in enumerate(planned):
            a, b = p["start_frame"], p["end_frame"]
            start_s, end_s_shot = time_of(a, times, end_s), time_of(b, times, end_s)
            q = stats.shot_scores(a, b, times, end_s, info)
            if self.settings.quality.enabled:
                q.update(audio_scores(audio, vad_probs, start_s, end_s_shot) if audio is not None else
                         {"loudness_dbfs": -120.0, "clipping_share": 0.0, "silence_share": 1.0,
                          "speech_share": 0.0 if models.vad is not None else float("nan")})
            box, kind = stats.active_box(a, b, info)
            shot = {"video_id": task.video_id, "shot_index": i, "start_frame": a, "end_frame": b,
                    "start_s": start_s, "end_s": end_s_shot, "duration_s": end_s_shot - start_s,
                    "cut_in": p["cut_in"], "kept": True, "reason": "",
                    "active_box": box, "border_crop": kind,
                    "quality": {k: float(v) for k, v in q.items()}}
            task.shots.append(shot)
            reason = decide_shot(q, None, self.settings)
            if reason:
                task.drop_shot(shot, reason_stage(reason), reason, explain(reason, q, None, self.settings))
        task.record_provenance("shots", STAGE, "pyscenedetect " + _scenedetect_version(), "",
                               cfg.model_dump(mode="json"))
        qparams = self.settings.quality.model_dump(mode="json")
        qparams["models_missing"] = models.notes
        task.record_provenance("quality", STAGE, "brisque+silero-vad",
                               ",".join(x for x in (getattr(models.brisque, "sha256", ""), getattr(models.vad, "sha256", "")) if x),
                               qparams)
        return task


def analysis_width(path: str, width: int, deadline=None, samples: int = 5) -> int:
    """Decode width that gives the active picture (the frame minus pillarbox bars) about ``width`` px,
    so that a pillarboxed upload is scored at the same effective resolution as the picture alone
    (sharpness, motion and freeze scores depend on it). Bars are sniffed on a few frames spread over
    the video; at most 3x ``width``."""
    import av

    from operators.decode import display_rotation, upright
    from operators.quality import frame_bars

    fracs = []
    try:
        with av.open(path, metadata_errors="ignore") as c:
            st = c.streams.video[0]
            dur = float(c.duration / 1e6) if c.duration else 0.0
            for k in range(samples):
                if deadline is not None:
                    deadline.check("bar sniffing")
                t = dur * (k + 0.5) / samples
                try:
                    c.seek(int(t * 1e6), any_frame=False, backward=True)
                    frame = next(c.decode(st))
                except (av.error.FFmpegError, StopIteration):
                    continue
                h = max(2, int(round(frame.height * 256 / max(1, frame.width))))
                gray = upright(frame.to_ndarray(width=256, height=h, format="gray"), display_rotation(st, frame))
                bars = frame_bars(gray)
                if bars is not None:
                    fracs.append(1.0 - (bars[2] + bars[3]) / float(gray.shape[1]))
    except (av.error.FFmpegError, IndexError, OSError):
        return width
    if not fracs:
        return width
    frac = float(np.median(fracs))
    if frac >= 0.9:
        return width
    return int(min(3 * width, round(width / max(frac, 1e-3) / 2) * 2))


def align_audio(samples: np.ndarray, offset_s: float | None, sample_rate: int = 16000) -> np.ndarray:
    """Shift a decoded audio track so that sample 0 is at video time 0 (offset_s = audio start - video start)."""
    if not offset_s:
        return samples
    k = int(round(abs(offset_s) * sample_rate))
    if offset_s > 0:
        return np.concatenate([np.zeros(k, dtype=samples.dtype), samples])
    return samples[k:]


def _scenedetect_version() -> str:
    try:
        import scenedetect

        return scenedetect.__version__
    except Exception:
        return "?"
