"""Conversation stage (STAGE "conversation"): per person clip, per frame speak / listen / idle / discard.

Runs after the people stage (one clip per person track and window, with ``frame_boxes``) and the
separation stage (``task.scratch["vocals"][shot_index]``: 16 kHz mono vocals of the kept shot as FLAC,
starting at the shot's ``start_s``). For each clip:

1. frames at the clip's rate (25 fps) and the face boxes mapped from source to clip pixels;
2. MediaPipe landmarks (models/landmarks.py) per frame -> ``mouth_open`` and mouth motion;
3. LR-ASD (models/lr_asd.py) on the demo's face crops and the 13-MFCC audio front end, six window
   lengths averaged -> ``speak_scores``; the audio-visual logit minus the visual-only logit is the
   per-frame sync evidence (clip mean over speech with a moving mouth -> ``sync_score``); the same visual
   embeddings are re-scored with the audio shifted over a range of lags -> ``av_offset_s``;
4. Silero VAD on the vocals -> ``speech_prob``.

Then all clips of a shot are put on one time grid and decided together (operators/states.py): at each
moment only people whose mouths follow the audio may speak. Offsets (issue 21, ``offset_rule`` in
operators/states.py): a shot's pooled offset scan with a confident peak (``offset_min_gain``) of at most
``conversation.max_offset_frames`` is corrected when one of its people speaks: the decision is made again
on the audio shifted by the offset (visual embeddings reused) and ``av_shift_s`` tells the audio stage to
shift speak/listen audio and words; a larger confident offset rejects the speaking clips (``av_offset``);
listening and idle clips are never rejected for offset. Clips whose media
cannot be read are dropped with the media error's reason; clips without media (no people stage) are
left as they are; missing weights reject the video with ``model_missing``. See docs/CONVERSATION.md.
"""
from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from operators.base import Deadline, Operator, Resources, VideoTask, cpu_seconds
from operators.clipmedia import read_clip_audio, read_clip_frames
from operators.media import MediaError, decode_flac
from operators import states as st

log = logging.getLogger(__name__)
STAGE = "conversation"
SR = 16000
ASD_FPS = 25.0  # LR-ASD's input frame rate (models.lr_asd.VIDEO_FPS): the grid every per-frame label is on


def clip_face_boxes(clip: dict, n: int) -> np.ndarray:
    """[n, 4] face boxes in clip pixels from frame_boxes (source pixels) and crop_box; NaN where unknown."""
    out = np.full((n, 4), np.nan, np.float32)
    fb = clip.get("frame_boxes")
    if not fb:
        return out
    b = np.asarray([x if x is not None else [np.nan] * 4 for x in fb], np.float64).reshape(-1, 4)
    crop = clip.get("crop_box")
    w = clip.get("clip_width")
    if crop is not None and w:
        x0, y0, x1, _ = (float(v) for v in crop)
        s = float(w) / max(1e-6, x1 - x0)
        b = (b - np.array([x0, y0, x0, y0])) * s
    m = min(n, len(b))
    out[:m] = b[:m]
    if m and m < n:  # the media has a frame more than the boxes: hold the last box
        out[m:] = out[m - 1]
    return out


def median_boxes(boxes: np.ndarray, k: int = 13) -> np.ndarray:
    """Centre and size median-filtered over k frames (the demo smooths its tracks the same way)."""
    from scipy.signal import medfilt

    b = boxes.astype(np.float64).copy()
    ok = np.all(np.isfinite(b), axis=1)
    if ok.sum() < 3:
        return boxes
    idx = np.arange(len(b))
    for c in range(4):
        b[:, c] = np.interp(idx, idx[ok], b[ok, c])
    k = min(k, (len(b) // 2) * 2 - 1) if len(b) > 2 else 1
    if k >= 3:
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        s = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 2
        cx, cy, s = medfilt(cx, k), medfilt(cy, k), medfilt(s, k)
        b = np.column_stack([cx - s, cy - s, cx + s, cy + s])
    b[~ok] = np.nan if ok.sum() == 0 else b[~ok]
    return b.astype(np.float32)


def vad_to_frames(probs: np.ndarray, n: int, fps: float, offset_s: float = 0.0, window_s: float = 512 / SR) -> np.ndarray:
    """Silero window probabilities (window i covers [i, i+1) * window_s) sampled at frame centres."""
    t = offset_s + (np.arange(n) + 0.5) / fps
    i = np.clip((t / window_s).astype(np.int64), 0, max(0, len(probs) - 1))
    return probs[i].astype(np.float32) if len(probs) else np.zeros(n, np.float32)


def fit(x: np.ndarray, n: int) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x[:n] if len(x) >= n else np.concatenate([x, np.zeros(n - len(x), np.float32)])


@dataclass
class ClipAnalysis:
    n: int
    speak: np.ndarray      # [n] LR-ASD logits
    visual: np.ndarray     # [n] visual-only logits
    sync: np.ndarray       # [n] sync evidence (audio-visual minus visual-only logit)
    mouth_open: np.ndarray  # [n]
    motion: np.ndarray     # [n]
    lag_curve: np.ndarray  # [L] mean score per lag over the frames where the mouth moves during speech
    lag_weight: float      # number of frames that went into lag_curve
    lag_scores: np.ndarray | None = None  # [L, n] per-lag logits (offset windows)
    # shift k (frames, positive: audio taken k frames later) -> (speak, sync) re-scored on the cached visual
    # embeddings; holds the clip's face crops and embeddings, so it is released after the shot's decision
    rescore: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None
    speech_at: Callable[[int], np.ndarray] | None = None  # shift k -> [n] VAD probabilities read k frames later
    shifted: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)  # memo of at_shift

    def at_shift(self, k: int, speech: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(speak, sync, speech) with the audio shifted by k frames (k = 0: as analysed)."""
        k = int(k)
        if k == 0:
            return self.speak, self.sync, np.asarray(speech, np.float32)
        if k not in self.shifted:
            sp = self.speech_at(k) if self.speech_at is not None else np.asarray(speech, np.float32)
            if self.rescore is None:  # only after release (a re-decision with other offset settings)
                log.warning("clip analysis released: shift %+d frames decided on the unshifted ASD scores", k)
                self.shifted[k] = (self.speak, self.sync, sp)
            else:
                self.shifted[k] = (*self.rescore(k), sp)
        return self.shifted[k]

    def release(self) -> None:
        """Drop the face crops and embeddings (memoised shifts stay)."""
        self.rescore = None


class ConversationOperator(Operator):
    name = STAGE
    reads = ("video", "shots", "clips")
    writes = ("clips", "rejects")
    resources = Resources(num_cpus=1.0, memory_mb=2048)
    scope = "shot"
    # part name -> [CPU s, wall s] accumulated over process(); None (default) measures nothing
    # (bench/conversation_cost.py sets a dict)
    part_times: dict[str, list[float]] | None = None

    @contextlib.contextmanager
    def _part(self, name: str) -> Iterator[None]:
        if self.part_times is None:
            yield
            return
        c0, w0 = cpu_seconds(), time.perf_counter()
        try:
            yield
        finally:
            acc = self.part_times.setdefault(name, [0.0, 0.0])
            acc[0] += cpu_seconds() - c0
            acc[1] += time.perf_counter() - w0

    def setup(self) -> None:
        import torch

        from models.landmarks import FaceLandmarker
        from models.lr_asd import ASDScorer, resolve_checkpoint, load_lr_asd
        from models.vad import SileroVAD

        from models.registry import MissingModelError

        cfg = self.settings.conversation
        torch.set_num_threads(max(1, int(cfg.torch_threads)))
        self.model_error = ""
        try:
            self.asd_model = resolve_checkpoint(self.settings, cfg.asd_checkpoint)
            self.scorer = ASDScorer(load_lr_asd(self.asd_model.path), windows_s=cfg.windows_s,
                                    visual_context=cfg.visual_context, tile_s=cfg.sync_windows_s[0],
                                    engine=cfg.visual_engine)
            self.landmarker = FaceLandmarker.from_settings(self.settings, num_faces=2)
            self.vad = SileroVAD.load(self.settings)
            self.sync_model = None
            self.sync_head = None  # decision signal (sync_signal: head)
            self.offset_head = None  # offset scan (offset_signal: head, or the decision head)
            if cfg.sync_signal == "head" or cfg.offset_signal_name() == "head":
                from models.lr_asd_sync import load_head
                from models.registry import resolve_for

                self.sync_model = resolve_for(self.settings, "lr-asd-sync")
                head = load_head(self.scorer.net, self.sync_model.path)
                self.sync_head = head if cfg.sync_signal == "head" else None
                self.offset_head = head if cfg.offset_signal_name() == "head" else None
        except MissingModelError as exc:
            self.model_error = str(exc)

    # ------------------------------------------------------------------------------------------ params
    def params(self) -> st.StateParams:
        c = self.settings.conversation
        return st.StateParams(
            fps=ASD_FPS, speak_threshold=c.speak_threshold, speak_hysteresis=c.speak_hysteresis,
            vad_threshold=c.vad_threshold, vad_hysteresis=c.vad_hysteresis, min_speech_gap_s=c.min_speech_gap_s,
            sync_min=c.sync_param("sync_min"), cross_margin=c.sync_param("cross_margin"), min_sync_frames=c.min_sync_frames,
            motion_threshold=c.motion_threshold, smooth_frames=c.smooth_frames, sync_smooth_frames=int(c.sync_param("sync_smooth_frames")),
            min_segment_s=c.min_segment_s, use_sync=c.sync, sync_relative=c.sync_signal == "av_minus_visual")

    def lags(self) -> np.ndarray:
        c = self.settings.conversation
        k = int(round(c.offset_scan_s * ASD_FPS))
        step = max(1, int(c.offset_step_frames))
        return np.arange(-(k // step) * step, k + 1, step)

    # ---------------------------------------------------------------------------------------- analysis
    def analyse(self, frames: np.ndarray, audio: np.ndarray, boxes: np.ndarray, speech: np.ndarray) -> ClipAnalysis:
        """Signals of one clip. frames [T, H, W, 3] RGB at 25 fps, audio 16 kHz mono from frame 0, boxes [T, 4]
        clip pixels (NaN rows unknown), speech [T] VAD probabilities."""
        from models.landmarks import mouth_openness
        from models.lr_asd import crop_faces, mfcc

        cfg = self.settings.conversation
        n = len(frames)
        with self._part("landmarks"):
            track = self.landmarker.track(frames, ASD_FPS, target_boxes=[None if not np.all(np.isfinite(b)) else b for b in boxes],
                                          every=cfg.landmark_every)
            mo = mouth_openness(track)
        if cfg.landmark_every > 1:
            ok = np.isfinite(mo)
            if ok.sum() >= 2:
                idx = np.arange(n)
                mo = np.interp(idx, idx[ok], mo[ok]).astype(np.float32)
        # boxes: from the people stage; where it has none, from the landmarks (detector-like: forehead added)
        lm_boxes = np.array([f.box if f is not None else [np.nan] * 4 for f in track], np.float32)
        if len(lm_boxes):
            lm_boxes[:, 1] -= 0.12 * (lm_boxes[:, 3] - lm_boxes[:, 1])
        missing = ~np.all(np.isfinite(boxes), axis=1)
        boxes = boxes.copy()
        boxes[missing] = lm_boxes[missing]
        have_face = np.all(np.isfinite(boxes), axis=1)
        with self._part("crops"):
            faces = crop_faces(frames, median_boxes(boxes), cfg.crop_scale)
        with self._part("mfcc"):
            feats = mfcc(audio)
        # as the demo: video and audio cut to their common length (no window is then cut short by the audio)
        m = max(1, min(n, self.scorer.aligned_length(n, len(feats))))
        with self._part("embed"):
            cache = self.scorer.embed(faces[:m])
        with self._part("scores"):
            s0 = _extend(self.scorer.score_cached(cache, feats), n)
            s0[~have_face] = np.nan
            visual = _extend(self.scorer.visual_scores(cache), n)
            visual[~have_face] = np.nan
        motion = st.mouth_motion(mo, ASD_FPS, cfg.mouth_window_s)
        lags = self.lags()
        from models.lr_asd_sync import sync_scores

        if self.sync_head is not None:
            # the fine-tuned sync head: log-odds that this mouth speaks the heard audio (models/lr_asd_sync.py)
            with self._part("sync"):
                sync = _extend(sync_scores(self.sync_head, self.scorer.net, cache, feats, windows=cfg.sync_windows_s,
                                           phases=cfg.sync_phases), n)
        else:
            sync = s0 - visual  # what the heard audio adds beyond the lips alone (see operators/states.py)
        if self.offset_head is not None:
            shifted = lambda k: sync_scores(self.offset_head, self.scorer.net, cache, feats, int(k), windows=cfg.sync_windows_s)  # noqa: E731
        else:
            shifted = lambda k: self.scorer.score_cached(cache, feats, int(k), windows=cfg.offset_windows_s)  # noqa: E731
        sync[~have_face] = np.nan
        with self._part("offset_scan"):
            lag_scores = np.stack([_extend(shifted(k), n) for k in lags]) if len(lags) else np.zeros((0, n))
        # frames chosen without looking at the audio (a speech mask would favour lag 0): a moving mouth
        sel = (np.nan_to_num(motion) > cfg.motion_threshold) & have_face & np.all(np.isfinite(lag_scores), axis=0)
        if self.offset_head is not None and len(lags):
            # only frames whose mouth follows the audio at SOME lag: where another voice is heard (no lag
            # fits) the curve is flat and would only dilute the peak
            sel &= np.nanmax(np.where(np.isfinite(lag_scores), lag_scores, -np.inf), axis=0) > cfg.offset_param("sync_min")
        if len(lags) and sel.sum() >= 5:
            curve = lag_scores[:, sel].mean(axis=1)
        else:
            curve = np.full(len(lags), np.nan)

        def rescore(k: int) -> tuple[np.ndarray, np.ndarray]:
            """speak and sync evidence with the audio shifted by k frames (the offset correction)."""
            sp = _extend(self.scorer.score_cached(cache, feats, int(k)), n)
            sp[~have_face] = np.nan
            if self.sync_head is not None:
                sy = _extend(sync_scores(self.sync_head, self.scorer.net, cache, feats, int(k), windows=cfg.sync_windows_s,
                                         phases=cfg.sync_phases), n)
            else:
                sy = sp - visual
            sy[~have_face] = np.nan
            return sp, sy

        return ClipAnalysis(n, s0, visual, sync, mo, motion, curve, float(sel.sum()), lag_scores, rescore=rescore)

    def offset_of(self, curve: np.ndarray) -> tuple[float, float]:
        """(offset_s, gain): the lag where the curve peaks, corrected by the checkpoint's bias, and how much
        higher the peak is than the score at the model's own zero."""
        cfg = self.settings.conversation
        lags = self.lags()
        if not len(curve) or not np.isfinite(curve).any():
            return float("nan"), 0.0
        i = int(np.nanargmax(curve))
        bias = cfg.offset_param("offset_bias_frames")
        zero = int(np.argmin(np.abs(lags - bias)))
        off = (float(lags[i]) - bias) / ASD_FPS
        return off, float(curve[i] - curve[zero])

    def shot_offset(self, results: list[tuple[dict, ClipAnalysis, np.ndarray]]) -> tuple[float, float]:
        """(offset_s, gain) of a shot: the lag curves of its clips pooled (weighted by their frames) over the
        people whose mouths move with speech; (NaN, 0) when none has a curve."""
        curves = [(r.lag_curve, r.lag_weight) for _, r, _ in results if r.lag_weight > 0 and np.isfinite(r.lag_curve).any()]
        if not curves:
            return float("nan"), 0.0
        w = np.array([wt for _, wt in curves])
        return self.offset_of(np.nansum(np.stack([cv * wt for cv, wt in curves]), axis=0) / w.sum())

    # ----------------------------------------------------------------------------------------- process
    def process(self, task: VideoTask, deadline: Deadline) -> VideoTask:
        cfg = self.settings.conversation
        with_media = [c for c in task.clips if c.get("video_bytes") or c.get("video_uri")]
        if not with_media:  # nothing to label (no people stage ran, or no clips): leave the task as is
            return task
        if self.model_error:
            task.reject(STAGE, "model_missing", self.model_error)
            return task
        timeout = deadline.timeout_for(self.settings.run.subprocess_timeout_s)
        vocals = task.scratch.get("vocals") or {}
        shots = {s["shot_index"]: s for s in task.shots}
        by_shot: dict[int, list[dict]] = {}
        for c in with_media:
            by_shot.setdefault(int(c.get("shot_index", -1)), []).append(c)
        counts = {"clips": 0, "dropped": 0, "offset_rejected": 0, "offset_corrected": 0}
        # per shot (clip, analysis, speech) of the last task: lets tests and benchmarks re-decide without models
        self.last_analyses: dict[int, list[tuple[dict, ClipAnalysis, np.ndarray]]] = {}
        for shot_index, clips in sorted(by_shot.items()):
            deadline.check("conversation")
            shot = shots.get(shot_index, {})
            shot_audio = None
            if shot_index in vocals:
                try:
                    with self._part("decode"):
                        shot_audio = decode_flac(vocals[shot_index], SR, timeout)
                except MediaError as exc:
                    log.warning("vocals of shot %s unreadable (%s); using clip audio", shot_index, exc)
            shot_t0 = float(shot.get("start_s", min(float(c["start_s"]) for c in clips)))
            with self._part("vad"):
                shot_probs = self.vad.speech_probabilities(shot_audio) if shot_audio is not None else None
            results: list[tuple[dict, ClipAnalysis, np.ndarray]] = []
            for c in clips:
                deadline.check("conversation")
                try:
                    with self._part("decode"):
                        frames = read_clip_frames(c, timeout_s=timeout)
                    if len(frames) == 0:
                        raise MediaError("video_decode_error", "clip has no frames")
                    n = len(frames)
                    off = float(c["start_s"]) - shot_t0
                    if shot_audio is not None:
                        a0 = max(0, int(round(off * SR)))
                        audio = fit(shot_audio[a0:], int(round(n / ASD_FPS * SR)))
                        probs, p0 = shot_probs, off
                    else:
                        with self._part("decode"):
                            audio = fit(read_clip_audio(c, SR, timeout_s=timeout), int(round(n / ASD_FPS * SR)))
                        with self._part("vad"):
                            probs, p0 = self.vad.speech_probabilities(audio), 0.0
                    speech = vad_to_frames(probs, n, ASD_FPS, p0)
                    boxes = clip_face_boxes(c, n)
                    res = self.analyse(frames, audio, boxes, speech)
                    res.speech_at = lambda k, probs=probs, n=n, p0=p0: vad_to_frames(probs, n, ASD_FPS, p0 + k / ASD_FPS)
                except MediaError as exc:
                    task.drop_clip(c, STAGE, exc.reason, str(exc))
                    counts["dropped"] += 1
                    continue
                results.append((c, res, speech))
            if results:
                self.last_analyses[shot_index] = results
                with self._part("decision"):
                    self._decide_shot(task, results, counts)
                for _, r, _ in results:
                    r.release()
        extra = {"sync_head_sha256": self.sync_model.digest} if self.sync_model is not None else {}
        names = f"{self.asd_model.name}{'+lr-asd-sync' if self.sync_model is not None else ''}+mediapipe-face-landmarker+silero-vad"
        task.record_provenance("conversation", STAGE, names, self.asd_model.digest,
                               {**cfg.model_dump(mode="json"), "vad_sha256": self.vad.sha256,
                                "landmarker_sha256": self.landmarker.digest, **extra})
        task.scratch["conversation_counts"] = counts
        return task

    def _states(self, results: list[tuple[dict, ClipAnalysis, np.ndarray]], k: int
                ) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray, np.ndarray]]]:
        """Per clip state codes of one shot decided with its audio shifted by k frames, and the (speak,
        sync, speech) signals they were decided on."""
        fps = ASD_FPS
        t0 = min(float(c["start_s"]) for c, _, _ in results)
        starts = [int(round((float(c["start_s"]) - t0) * fps)) for c, _, _ in results]
        T = max(s + r.n for s, (_, r, _) in zip(starts, results))
        sigs = [r.at_shift(k, sp) for _, r, sp in results]
        speech_grid = np.full((len(results), T), np.nan)
        people = []
        for i, (s, (_, r, _), (speak, sync, sp)) in enumerate(zip(starts, results, sigs)):
            speech_grid[i, s:s + r.n] = _fit(sp, r.n)
            g = lambda x, n=r.n, s=s: None if x is None else _place(_fit(x, n), s, T)  # noqa: E731
            people.append(st.PersonSignals(g(speak), g(r.motion), g(sync)))
        speech = np.nan_to_num(np.nanmax(np.where(np.isfinite(speech_grid), speech_grid, -1.0), axis=0), nan=0.0).clip(0, 1)
        # clips of different tracks that do not overlap in time still share the grid; a person absent at a
        # time has NaN speak there and is simply not a candidate
        codes = st.decide_states(people, speech, self.params())
        return [code[s:s + r.n] for s, (_, r, _), code in zip(starts, results, codes)], sigs

    def _decide_shot(self, task: VideoTask, results: list[tuple[dict, ClipAnalysis, np.ndarray]], counts: dict) -> None:
        cfg = self.settings.conversation
        fps = ASD_FPS
        min_gain = cfg.offset_param("offset_min_gain")
        shot_off, shot_gain = self.shot_offset(results)
        codes0, sigs0 = self._states(results, 0)
        # the offset rule (states.offset_rule): who speaks is asked of the audio as heard and of the audio
        # shifted by the shot's confident offset (a talker whose audio is late may be out of sync as heard)
        k = int(round(shot_off * fps)) if np.isfinite(shot_off) and shot_gain >= min_gain else 0
        codes_k, sigs_k = self._states(results, k) if k else (codes0, sigs0)
        share = cfg.offset_min_speak_share
        actions = [st.offset_rule(shot_off, shot_gain, st.speaks(a, share) or st.speaks(b, share), min_gain,
                                  cfg.max_offset_s() * fps, fps, cfg.offset_correct_min_gain)
                   for a, b in zip(codes0, codes_k)]
        corrected = any(a == st.OFFSET_CORRECT for a, _ in actions)
        # one audio track per shot: when a speaker's offset is corrected, the whole shot's audio is shifted
        # (listeners included, so that their listen audio lines up with the speaker's speak frames)
        codes, sigs, shift = (codes_k, sigs_k, k / fps) if corrected else (codes0, sigs0, 0.0)
        if corrected:
            log.info("%s shot %s: audio offset %+.2f s (gain %.2f) corrected", task.video_id,
                     results[0][0].get("shot_index"), shot_off, shot_gain)
        for (c, r, _), cc, (speak, sync, sp), (action, _) in zip(results, codes, sigs, actions):
            off, gain = self.offset_of(r.lag_curve)
            moving_speech = (np.asarray(sp) > cfg.vad_threshold) & (np.nan_to_num(r.motion) > cfg.motion_threshold)
            sync_vals = sync[moving_speech & np.isfinite(sync)]
            c.update({
                "frame_states": st.to_labels(cc),
                "speak_scores": _list(speak),
                "speech_prob": _list(sp),
                "mouth_open": _list(r.mouth_open),
                "segments": st.segments(cc, fps, float(c["start_s"])),
                "clip_class": st.clip_class(cc),
                "state_shares": st.state_shares(cc),
                "sync_score": float(np.mean(sync_vals)) if len(sync_vals) else None,
                "av_offset_s": off if np.isfinite(off) else None,
                "av_offset_gain": gain if np.isfinite(off) else None,
                "av_offset_confident": bool(np.isfinite(off) and gain >= min_gain),
                "av_shift_s": float(shift),
            })
            counts["clips"] += 1
            if corrected:
                counts["offset_corrected"] += 1
            if action == st.OFFSET_REJECT:
                task.drop_clip(c, STAGE, "av_offset", f"audio offset {shot_off:+.2f} s in this shot ({shot_off * fps:+.0f} frames, "
                               f"gain {shot_gain:.2f}; a speaking clip; offsets up to {cfg.max_offset_s():.2f} s are corrected)")
                counts["offset_rejected"] += 1


def _extend(x: np.ndarray, n: int) -> np.ndarray:
    """x to length n, holding the last finite value (the demo drops the last frames without audio)."""
    x = np.asarray(x, np.float64)[:n]
    if len(x) == n:
        return x.copy()
    fin = x[np.isfinite(x)]
    return np.concatenate([x, np.full(n - len(x), fin[-1] if len(fin) else np.nan)])


def _fit(x: np.ndarray | None, n: int) -> np.ndarray | None:
    """x trimmed or NaN-padded to n frames (per-frame signals of one clip can differ by a frame at the
    end, e.g. the last ASD window of a clip whose media has one frame more than its planned length)."""
    if x is None:
        return None
    x = np.asarray(x, np.float64)
    if len(x) >= n:
        return x[:n]
    return np.concatenate([x, np.full(n - len(x), np.nan)])


def _place(x: np.ndarray, s: int, T: int) -> np.ndarray:
    out = np.full(T, np.nan)
    out[s:s + len(x)] = x
    return out


def _list(x: np.ndarray) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(x, np.float64)]
