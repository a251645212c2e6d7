"""Audio per person: vocal separation (separation stage) and speak/listen audio plus transcripts (audio
stage). See docs/AUDIO.md.

Separation (STAGE "separation", after the people stage, before the conversation stage): for every kept
shot that has clips, the shot's audio (plus ``separation_context_s`` on each side) is decoded at the
separator's rate and channel count, the demucs vocals stem is taken, downmixed to mono, resampled to
16 kHz, trimmed to exactly [shot start_s, end_s) and stored as FLAC bytes in
``task.scratch["vocals"][shot_index]``. Without a model the 16 kHz mono mixture is stored instead and
provenance says ``separation: none``. Background music is thereby removed before labelling (the
conversation stage may read the same vocals) and before speak/listen audio is cut.

Audio tracks (STAGE "audio", after the conversation stage): per shot, the vocals are transcribed once
(faster-whisper with word timestamps, optionally refined by CTC forced alignment), then every clip row
(one person) gets

* ``speak_audio``: the vocals where THIS person speaks (``frame_states`` == speak), silence elsewhere;
* ``listen_audio``: the vocals where this person does not speak and listens (``listen``) or another
  person of the same shot (another clip with the same shot_index overlapping in time) speaks;
* idle frames (nobody speaks) keep the vocals in both with ``idle_policy: both`` (the paper), and
  ``discard`` frames are silent in both;
* every switch is a linear fade of ``crossfade_ms`` placed inside the kept span, so no sample outside it
  leaks in;
* ``words``/``transcript``: the words this person speaks, times in seconds from the clip start;
  ``heard_words``: the other words within the clip (what this person hears), each with ``speaker``: the
  clip_id of the person who said it, ``off_screen`` (no clip of the shot speaks at the word's midpoint) or
  ``overlap`` (two or more speak). Attribution (:func:`attribute_words`) is per shot: a word belongs to the
  one clip whose ``frame_states`` is ``speak`` at the word's midpoint, so no word is lost or duplicated
  across a shot's clips. ``sentences``: sentence-bounded segments of all speech in the clip (any
  speaker; captions are filled later), clip-relative times; ``language`` ('en (assumed)' with an
  English-only Whisper) and ``asr_model`` (name and sha256);
* ``audio_status``: ok | no_frame_states (conversation stage not run: no audio filled) | no_audio.

Offsets (issue 21): a clip whose audio the conversation stage found ``av_shift_s`` late (positive) or early
(negative) and corrected has its source window shifted by that much: speak/listen audio are cut from the
vocals at [start_s + av_shift_s, end_s + av_shift_s) (zeros beyond the shot's audio) and word times are
taken on that timeline, so sample 0 and time 0 are the clip's first video frame; the frame_states were
decided on the same shifted audio.

Reject reasons: shot audio that cannot be decoded drops the shot's clips with the decoder's reason
(``audio_decode_error``, ``timeout``); a clip whose audio cannot be encoded is dropped ('encode_failed').
"""
from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import numpy as np

from models.registry import MissingModelError
from operators.base import Deadline, Operator, Resources, VideoTask
from operators.media import MediaError, decode_audio, decode_flac, encode_flac, ffmpeg_bin, run_tool
from operators.segments import join_words, split_sentences

log = logging.getLogger("lpm.audio")

STAGE_SEPARATION = "separation"
STAGE_AUDIO = "audio"
SR = 16000


# ----------------------------------------------------------------------------- decoding helpers
def seek_offset(path: str, video: dict) -> float:
    """Offset between the video-stream timeline (shots/clips rows) and ffmpeg's -ss position, the same
    one the people stage used to cut clip media."""
    try:
        from operators.people import seek_offset_s
    except ImportError:  # pragma: no cover - people stage absent
        return 0.0
    return seek_offset_s(path, video.get("video_start_s") or 0.0)


def decode_multichannel(path: str, start_s: float, duration_s: float, sample_rate: int, channels: int,
                        timeout_s: float) -> np.ndarray:
    """[channels, n] float32 of the first audio stream from start_s (ffmpeg input seek), any layout
    up/down-mixed by ffmpeg to ``channels``."""
    args = [ffmpeg_bin(), "-nostdin", "-hide_banner", "-v", "error", "-ss", f"{max(0.0, start_s):.6f}", "-i", path,
            "-t", f"{max(0.0, duration_s):.6f}", "-map", "0:a:0", "-vn", "-ac", str(channels), "-ar", str(sample_rate),
            "-f", "f32le", "-acodec", "pcm_f32le", "pipe:1"]
    proc = run_tool(args, timeout_s, reason="audio_decode_error")
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise MediaError("audio_decode_error", (err.splitlines()[-1] if err else f"ffmpeg exit {proc.returncode}")[:500])
    x = np.frombuffer(proc.stdout, dtype=np.float32)
    n = len(x) // channels
    return x[: n * channels].reshape(n, channels).T.copy()


def fit_length(x: np.ndarray, n: int) -> np.ndarray:
    """Trim or zero-pad the last axis to n samples."""
    if x.shape[-1] >= n:
        return x[..., :n]
    pad = [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])]
    return np.pad(x, pad)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Polyphase resampling along the last axis (scipy.signal.resample_poly)."""
    if sr_in == sr_out:
        return x.astype(np.float32, copy=False)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(int(sr_in), int(sr_out))
    return resample_poly(x, sr_out // g, sr_in // g, axis=-1).astype(np.float32)


def shot_span(shot: dict) -> tuple[float, float, int]:
    s, e = float(shot["start_s"]), float(shot["end_s"])
    return s, e, max(0, int(round((e - s) * SR)))


# ----------------------------------------------------------------------------- speak / listen masks
def frame_index(times_s: np.ndarray, start_s: float, fps: float) -> np.ndarray:
    return np.floor((times_s - start_s) * fps + 1e-9).astype(np.int64)


def states_at(states: list[str], times_s: np.ndarray, start_s: float, fps: float) -> np.ndarray:
    """State (string array) of a clip at source times; outside the clip's frames: ''."""
    arr = np.asarray(list(states) + [""], dtype=object)
    k = frame_index(times_s, start_s, fps)
    k = np.where((k >= 0) & (k < len(states)), k, len(states))
    return arr[k]


def fade_gain(mask: np.ndarray, fade_samples: int) -> np.ndarray:
    """Gain 0..1 from a boolean mask: 1 inside runs, 0 outside, with linear ramps of fade_samples placed
    INSIDE each run at every switch (the clip's own edges are not switches)."""
    m = np.asarray(mask, bool)
    if fade_samples <= 1 or m.all() or not m.any():
        return m.astype(np.float32)
    from scipy.ndimage import distance_transform_edt

    d = distance_transform_edt(m)  # distance (samples) to the nearest False sample inside the array
    return np.clip(d / float(fade_samples), 0.0, 1.0).astype(np.float32)


def speak_listen_masks(clip: dict, others: list[dict], n: int, idle_policy: str = "both") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample masks (16 kHz, clip-relative) of (speak, listen, self_speak) for one clip.

    speak  = self speaks, or (idle_policy 'both') self idle while no other person speaks;
    listen = self does not speak and does not discard, and (self listens or another person speaks or,
             with 'both', self is idle)."""
    fps = float(clip.get("clip_fps") or clip.get("fps") or 25.0)
    t_rel = np.arange(n, dtype=np.float64) / SR
    own = states_at(clip["frame_states"], t_rel, 0.0, fps)
    self_speak = own == "speak"
    t_src = float(clip["start_s"]) + t_rel
    other_speak = np.zeros(n, bool)
    for o in others:
        ofs = o.get("frame_states")
        if not ofs:
            continue
        o_fps = float(o.get("clip_fps") or o.get("fps") or 25.0)
        other_speak |= states_at(ofs, t_src, float(o["start_s"]), o_fps) == "speak"
    idle = own == "idle"
    keep_idle = idle & ~other_speak if idle_policy == "both" else np.zeros(n, bool)
    speak = self_speak | keep_idle
    listen = ~self_speak & (own != "discard") & (own != "") & ((own == "listen") | other_speak | keep_idle)
    return speak, listen, self_speak


OFF_SCREEN, OVERLAP = "off_screen", "overlap"


def speaks_at(clip: dict, t_src: float) -> bool:
    """True when the clip's frame_states is 'speak' at source-audio time t_src (its av shift applied)."""
    st = clip.get("frame_states")
    if not st:
        return False
    fps = float(clip.get("clip_fps") or clip.get("fps") or 25.0)
    cs = float(clip["start_s"]) + clip_shift(clip)
    return bool(states_at(st, np.asarray([t_src]), cs, fps)[0] == "speak")


def attribute_words(words: list[dict], clips: list[dict]) -> tuple[dict[str, tuple[list[dict], list[dict]]], list[dict]]:
    """Per clip_id (clips with frame_states only) its own words and the words it hears, plus the shot's
    words no such clip covers. ``words`` have source-audio times (start_s/end_s); the clip's av shift is
    applied; returned times are clip-relative (seconds from the clip's first frame), clipped to the clip.

    At a word's midpoint: exactly one clip in 'speak' -> that clip's own word (heard by every other
    clip covering the midpoint, speaker = its clip_id); none -> 'off_screen'; two or more -> 'overlap'
    (both heard by every covering clip, the speakers included). Every word is thereby either in one
    clip's own list, or marked off_screen/overlap, or returned as uncovered: never lost or duplicated."""
    people = [c for c in clips if c.get("frame_states")]
    out: dict[str, tuple[list[dict], list[dict]]] = {c["clip_id"]: ([], []) for c in people}
    uncovered: list[dict] = []
    spans = {c["clip_id"]: (float(c["start_s"]) + clip_shift(c), float(c["end_s"]) + clip_shift(c)) for c in people}
    for w in words:
        mid = 0.5 * (float(w["start_s"]) + float(w["end_s"]))
        covering = [c for c in people if spans[c["clip_id"]][0] <= mid < spans[c["clip_id"]][1]]
        speakers = [c for c in covering if speaks_at(c, mid)]
        who = speakers[0]["clip_id"] if len(speakers) == 1 else (OFF_SCREEN if not speakers else OVERLAP)
        if not covering:
            uncovered.append({**w, "speaker": who})
            continue
        for c in covering:
            cs, ce = spans[c["clip_id"]]
            rel = {"word": str(w["word"]), "start_s": max(0.0, float(w["start_s"]) - cs),
                   "end_s": min(ce - cs, float(w["end_s"]) - cs), "prob": float(w.get("prob", 1.0))}
            if who == c["clip_id"]:
                out[c["clip_id"]][0].append(rel)
            else:
                out[c["clip_id"]][1].append({**rel, "speaker": who})
    return out, uncovered


def overlapping_others(clip: dict, clips: list[dict]) -> list[dict]:
    """Other people's clips of the same shot that overlap this clip in time."""
    s, e = float(clip["start_s"]), float(clip["end_s"])
    return [o for o in clips if o is not clip and o.get("shot_index") == clip.get("shot_index")
            and o.get("track_id") != clip.get("track_id") and float(o["start_s"]) < e and float(o["end_s"]) > s]


def clip_shift(clip: dict) -> float:
    """Audio shift (s) the conversation stage applied to this clip (av_shift_s; positive: audio late)."""
    v = clip.get("av_shift_s")
    return float(v) if v is not None and np.isfinite(v) else 0.0


# ----------------------------------------------------------------------------- separation stage
def separate_span(path: str, start_s: float, n: int, sep, context_s: float, timeout_s: float,
                  check=None) -> np.ndarray:
    """16 kHz mono vocals of ``n`` samples from ``start_s`` (ffmpeg -ss position): chunks of
    ``sep.chunk_s`` are decoded at the separator's rate/channels with ``context_s`` on both sides,
    separated, trimmed, downmixed, resampled and overlap-added (bounded memory for any shot length)."""
    from models.separation import overlap_add

    def produce(i0: int, i1: int) -> np.ndarray:
        cs = start_s + i0 / SR
        a = max(0.0, cs - context_s)
        lead = cs - a
        dur = (i1 - i0) / SR
        mix = decode_multichannel(path, a, dur + lead + context_s, sep.samplerate, sep.audio_channels, timeout_s)
        if mix.shape[1] == 0:
            if i0 == 0:
                raise MediaError("audio_decode_error", f"no audio samples decoded at {start_s:.2f} s")
            return np.zeros(i1 - i0, np.float32)  # audio stream ends before the shot does
        v = sep.vocals(mix)
        v = v.sum(axis=0) / np.sqrt(v.shape[0])  # ffmpeg's downmix convention ((L+R)/sqrt 2), as in clip media
        j0 = int(round(lead * sep.samplerate))
        v = v[j0: j0 + int(np.ceil(dur * sep.samplerate)) + 1]
        return fit_length(resample(v, sep.samplerate, SR), i1 - i0)

    return overlap_add(n, int(round(sep.chunk_s * SR)), int(round(sep.overlap_s * SR)), produce, check)


class SeparationOperator(Operator):
    """Per kept shot with clips: 16 kHz mono isolated voice (dtln / gtcrn ONNX isolators, or the demucs
    vocals stem) or the mixture, as FLAC in task.scratch."""

    name = STAGE_SEPARATION
    reads = ("video", "shots", "clips")
    writes = ()
    resources = Resources(num_cpus=1.0, memory_mb=3072)
    scope = "shot"

    def setup(self) -> None:
        from models.separation import ISOLATORS, load_isolator, load_separator, separation_choice

        self.separator = None
        self.why_none = ""
        cfg = self.settings.audio
        self.kind = choice = separation_choice(cfg)
        if choice == "none":
            self.why_none = "audio.separation is 'none'"
            return
        if choice in ISOLATORS:
            try:
                self.separator = load_isolator(self.settings, choice)
            except MissingModelError as exc:
                self.why_none = str(exc)
                log.warning("separation: none (%s)", exc)
            return
        if not cfg.demucs_model_dir:
            self.why_none = "audio.demucs_model_dir is not set"
            log.info("separation: none (%s)", self.why_none)
            return
        try:
            self.separator = load_separator(self.settings)
        except MissingModelError as exc:
            self.why_none = str(exc)
            log.warning("separation: none (%s)", exc)

    def process(self, task: VideoTask, deadline: Deadline) -> VideoTask:
        cfg = self.settings.audio
        sep = self.separator
        task.scratch["vocals"] = vocals = {}
        wanted = sorted({c.get("shot_index") for c in task.clips})
        shots = [s for s in task.kept_shots() if s["shot_index"] in wanted]
        failed: dict[int, str] = {}
        if task.video.get("has_audio") is False:
            self._record(task, sep, "the video has no audio stream", failed)
            return task
        timeout = deadline.timeout_for(self.settings.run.subprocess_timeout_s)
        with task.source() as path:
            off = seek_offset(path, task.video)
            for shot in shots:
                deadline.check("separation")
                s, e, n = shot_span(shot)
                try:
                    if sep is None:
                        mono = decode_audio(path, timeout, sample_rate=SR, start_s=s + off, duration_s=e - s)
                        voc = fit_length(mono, n)
                    else:
                        voc = separate_span(path, s + off, n, sep, cfg.separation_context_s, timeout,
                                            check=lambda: deadline.check("separation"))
                    vocals[shot["shot_index"]] = encode_flac(voc, SR, timeout)
                except MediaError as exc:
                    failed[shot["shot_index"]] = f"{exc.reason}: {exc}"
                    log.warning("separation of shot %s failed: %s", shot["shot_index"], exc)
        self._record(task, sep, self.why_none, failed)
        return task

    def _record(self, task: VideoTask, sep, why_none: str, failed: dict[int, str]) -> None:
        if failed:
            task.scratch["vocals_failed"] = failed
        if sep is None:
            task.record_provenance("separation", STAGE_SEPARATION, model="none",
                                   params={"separation": "none", "reason": why_none})
        else:
            task.record_provenance("separation", STAGE_SEPARATION, model=sep.name, weights_sha256=sep.resolved.digest,
                                   params={**sep.params, "separation": self.kind,
                                           "context_s": self.settings.audio.separation_context_s})


# ----------------------------------------------------------------------------- audio tracks stage
class AudioTracksOperator(Operator):
    """Per clip: speak_audio / listen_audio (FLAC, 16 kHz mono), words, transcript, sentences."""

    name = STAGE_AUDIO
    reads = ("video", "shots", "clips")
    writes = ("clips",)
    resources = Resources(num_cpus=1.0, memory_mb=2048)
    scope = "shot"

    def setup(self) -> None:
        from models.asr import load_aligner, load_asr

        self.asr = None
        self.aligner = None
        self.asr_why_none = ""
        self.aligner_error = ""
        cfg = self.settings.audio
        if cfg.asr == "none":
            self.asr_why_none = "audio.asr is 'none'"
        elif not cfg.whisper_model_dir:
            self.asr_why_none = "audio.whisper_model_dir is not set"
            log.info("asr: none (%s)", self.asr_why_none)
        else:
            try:
                self.asr = load_asr(self.settings)
            except MissingModelError as exc:
                self.asr_why_none = str(exc)
                log.warning("asr: none (%s)", exc)
        if self.asr is not None and cfg.ctc_model_dir:
            try:
                self.aligner = load_aligner(self.settings)
            except MissingModelError as exc:
                log.warning("forced alignment off (%s)", exc)
                self.aligner_error = str(exc)
        self.asr_model = None  # per clip: "<model> sha256:<digest>" of the Whisper model (and aligner)
        if self.asr is not None:
            from models.asr import describe

            parts = [describe(m) for m in (self.asr, self.aligner) if m is not None]
            self.asr_model = ",".join(f"{d['model']} sha256:{d['weights_sha256']}" for d in parts)

    # ------------------------------------------------------------------ per task
    def process(self, task: VideoTask, deadline: Deadline) -> VideoTask:
        cfg = self.settings.audio
        timeout = deadline.timeout_for(self.settings.run.subprocess_timeout_s)
        vocals = task.scratch.get("vocals")
        if vocals is None and "separation" not in task.provenance:
            task.record_provenance("separation", STAGE_SEPARATION, model="none",
                                   params={"separation": "none", "reason": "separation stage not run"})
        by_shot: dict[Any, list[dict]] = defaultdict(list)
        for c in task.clips:
            by_shot[c.get("shot_index")].append(c)
        shots = {s["shot_index"]: s for s in task.shots}
        counts: dict[str, int] = defaultdict(int)
        has_audio = task.video.get("has_audio") is not False
        isolated = vocals is not None and (task.provenance.get("separation") or {}).get("model") not in (None, "none")
        with task.source() as path:
            off = None
            for shot_index, clips in sorted(by_shot.items(), key=lambda kv: (kv[0] is None, kv[0])):
                deadline.check("audio")
                if not has_audio:
                    for c in clips:
                        c["audio_status"] = "no_audio"
                        counts["no_audio"] += 1
                    continue
                shot = shots.get(shot_index) or {"shot_index": shot_index, "start_s": min(float(c["start_s"]) for c in clips),
                                                 "end_s": max(float(c["end_s"]) for c in clips)}
                s0, s1, n = shot_span(shot)
                try:
                    if vocals is not None and shot_index in vocals:
                        voc = fit_length(decode_flac(vocals[shot_index], SR, timeout), n)
                    else:
                        if off is None:
                            off = seek_offset(path, task.video)
                        voc = fit_length(decode_audio(path, timeout, sample_rate=SR, start_s=s0 + off, duration_s=s1 - s0), n)
                        if vocals is not None:
                            counts["mixture_fallback"] += len(clips)
                except MediaError as exc:
                    for c in list(clips):
                        task.drop_clip(c, STAGE_AUDIO, exc.reason, f"shot audio: {exc}")
                    continue
                asr_in = voc
                if self.asr is not None and isolated and cfg.asr_input == "mixture":
                    # Whisper reads the original mixture: on speech over music the isolated voice
                    # transcribes worse (WER 0.18 -> 0.45-0.68 measured, ../shared/models/SOURCES.md)
                    if off is None:
                        off = seek_offset(path, task.video)
                    try:
                        asr_in = fit_length(decode_audio(path, timeout, sample_rate=SR, start_s=s0 + off, duration_s=s1 - s0), n)
                    except MediaError:
                        asr_in = voc
                        counts["asr_on_isolated_fallback"] += 1
                words, language = self._transcribe(asr_in, s0, clips, deadline, counts)
                owned = None
                if words is not None:
                    owned, uncovered = attribute_words(words, clips)
                    counts["words_uncovered"] += len(uncovered)
                for c in clips:
                    deadline.check("audio clips")
                    if words is not None:
                        c["language"] = language
                        c["asr_model"] = self.asr_model
                    try:
                        status = self._fill_clip(c, clips, voc, s0, words, cfg, timeout, owned)
                    except MediaError as exc:
                        task.drop_clip(c, STAGE_AUDIO, "encode_failed", str(exc))
                        continue
                    counts[status] += 1
        if counts.get("no_frame_states"):
            log.warning("%s: %d clips without frame_states (conversation stage not run): no speak/listen audio",
                        task.video_id, counts["no_frame_states"])
        self._record(task, dict(counts))
        task.scratch.pop("vocals", None)  # consumed: later stages need not carry the shot audio along
        return task

    def _transcribe(self, voc: np.ndarray, s0: float, clips: list[dict], deadline: Deadline,
                    counts: dict[str, int]) -> tuple[list[dict] | None, str | None]:
        """Words of the shot's clip span on the source timeline and the language label (None: no ASR)."""
        if self.asr is None:
            return None, None
        a = max(0.0, min(float(c["start_s"]) + clip_shift(c) for c in clips) - s0)
        b = max(float(c["end_s"]) + clip_shift(c) for c in clips) - s0
        i0, i1 = int(round(a * SR)), min(len(voc), int(round(b * SR)))
        seg = voc[i0:i1]
        tr = self.asr.transcribe(seg, check=lambda: deadline.check("asr"))
        ws = tr.words
        if self.aligner is not None and ws:
            ws = self.aligner.align(seg, ws, tr.segments, check=lambda: deadline.check("alignment"))
            counts["words_aligned"] += sum(1 for w in ws if w.aligned)
        counts["words"] += len(ws)
        t0 = s0 + a
        return [{"word": w.word, "start_s": t0 + w.start_s, "end_s": t0 + w.end_s, "prob": w.prob} for w in ws], tr.language_label

    def _fill_clip(self, c: dict, clips: list[dict], voc: np.ndarray, s0: float, words: list[dict] | None, cfg,
                   timeout: float, owned: dict[str, tuple[list[dict], list[dict]]] | None = None) -> str:
        cs, ce = float(c["start_s"]), float(c["end_s"])
        n = max(0, int(round((ce - cs) * SR)))
        shift = clip_shift(c)  # the audio of this clip's video frames lies this much later in the source
        cs, ce = cs + shift, ce + shift
        i0 = int(round((cs - s0) * SR))
        x = fit_length(voc[max(0, i0):], n) if i0 >= 0 else fit_length(np.concatenate([np.zeros(-i0, np.float32), voc]), n)
        c["audio_sample_rate"] = SR
        clip_words = None
        if words is not None:
            clip_words = [{**w, "start_s": max(0.0, w["start_s"] - cs), "end_s": min(ce - cs, w["end_s"] - cs)}
                          for w in words if cs <= 0.5 * (w["start_s"] + w["end_s"]) < ce]
            c["sentences"] = [{"text": s["text"], "start_s": s["start_s"], "end_s": s["end_s"], "caption": None}
                              for s in split_sentences(clip_words, cfg.max_sentence_pause_s, cfg.max_sentence_s)]
        if not c.get("frame_states"):
            c["audio_status"] = "no_frame_states"
            return "no_frame_states"
        speak, listen, self_speak = speak_listen_masks(c, overlapping_others(c, clips), n, cfg.idle_policy)
        fade = int(round(cfg.crossfade_ms * SR / 1000.0))
        c["speak_audio"] = encode_flac(x * fade_gain(speak, fade), SR, timeout)
        c["listen_audio"] = encode_flac(x * fade_gain(listen, fade), SR, timeout)
        if clip_words is not None:
            own, heard = (owned or {}).get(c["clip_id"], ([], []))
            c["words"] = [{**w, "word": w["word"].strip()} for w in own]
            c["heard_words"] = [{**w, "word": w["word"].strip()} for w in heard]
            c["transcript"] = join_words([w["word"] for w in own])
        c["audio_status"] = "ok"
        return "ok"

    def _record(self, task: VideoTask, counts: dict[str, int]) -> None:
        cfg = self.settings.audio
        if self.asr is None:
            task.record_provenance("asr", STAGE_AUDIO, model="none", params={"asr": "none", "reason": self.asr_why_none})
        else:
            from models.asr import describe

            d = describe(self.asr)
            model, sha = d["model"], d["weights_sha256"]
            if self.aligner is not None:
                a = describe(self.aligner)
                model, sha = f"{model},{a['model']}", f"{sha},{a['weights_sha256']}"
            task.record_provenance("asr", STAGE_AUDIO, model=model, weights_sha256=sha,
                                   params={**self.asr.params, "forced_alignment": self.aligner is not None,
                                           "aligner_error": self.aligner_error,
                                           "max_sentence_pause_s": cfg.max_sentence_pause_s,
                                           "max_sentence_s": cfg.max_sentence_s})
        task.record_provenance("speak_listen", STAGE_AUDIO, model="frame_states",
                               params={"crossfade_ms": cfg.crossfade_ms, "idle_policy": cfg.idle_policy,
                                       "sample_rate": SR})
        task.scratch["audio_counts"] = counts
