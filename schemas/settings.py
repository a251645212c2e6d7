"""One typed configuration for the whole pipeline.

A run is configured by a single YAML file validated into :class:`Settings`. Unknown keys are an error,
values carry their unit in their name (``min_clip_s``, ``face_min_px``), and defaults follow the LPM 1.0
paper where it gives a number (see docs/CONFIG.md for the sources of each default).

Every stage owns one section. Operators receive the whole ``Settings`` object and read their section.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

REPO_ROOT = Path(__file__).resolve().parent.parent


class Section(BaseModel):
    """Base of every config section: unknown keys are rejected, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class RunSettings(Section):
    """How the job is executed."""

    item_timeout_s: float = Field(900.0, gt=0, description="Budget of one stage on one work unit (a video for probe and shots, else one shot; the per-video tail stages get it per video); past it the unit is rejected with reason 'timeout' (a shot: that shot only).")
    subprocess_timeout_s: float = Field(300.0, gt=0, description="Hard limit of any single ffmpeg/ffprobe call.")
    max_video_s: float = Field(4 * 3600.0, gt=0, description="Longer inputs are rejected as 'too_long' (bounds model time per item).")
    num_cpus: float | None = Field(None, gt=0, description="CPUs for an embedded local Ray (None: all). Ignored with --address.")
    stage_cpus: float | None = Field(None, gt=0, description="Logical CPUs per stage actor; None: the operator's default, scaled so all stages fit the cluster.")
    stage_concurrency: int = Field(1, ge=1, description="Actors per pool of the per-video stages (probe and shots; identities, references, captions, embeddings).")
    shot_workers: int | None = Field(None, ge=1, description="Actors per pool of the per-shot stages (people, separation, conversation, audio, faces), which hold most of the work; None: one per CPU of the cluster.")
    max_retries: int = Field(2, ge=0, description="Times a unit is retried when its worker process dies (killed, out of memory); after that its video is rejected as 'worker_lost'.")
    fuse_stages: bool | None = Field(None, description="Run all stages in one actor (True) or one actor pool per stage (False); None: fuse when the cluster has fewer than 2 CPUs per stage.")
    resume: bool = Field(True, description="Skip videos already finished in the output folder with the same config hash.")
    work_dir: str | None = Field(None, description="Local folder for per-video working files (a copy with regenerated timestamps); None: <output>/_work for a local output folder, else a folder under the system temp dir. Each video's files are removed once its rows are written.")
    verbose: bool = False


class InputSettings(Section):
    extensions: list[str] = Field(
        default_factory=lambda: [".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv"],
        description="File extensions picked up when an input is a folder.",
    )
    content_hash_bytes: int = Field(
        0, ge=0, description="0: video_id hashes the whole file; N>0: only the first and last N bytes plus the size (faster on huge remote files).",
    )


class ProbeSettings(Section):
    require_audio: bool = Field(True, description="Reject inputs without a decodable audio stream (speak/listen audio is required for training).")
    check_audio_decode: bool = Field(True, description="Decode the whole audio stream once at probe time to catch broken audio.")
    min_width_px: int = Field(64, ge=1)
    min_height_px: int = Field(64, ge=1)
    min_duration_s: float = Field(3.0, ge=0, description="Inputs shorter than this cannot yield a clip (paper: clips < 3 s dropped).")


class ShotSettings(Section):
    """Shot detection on the shared low-resolution decode; see docs/SHOTS.md."""

    detectors: list[Literal["content", "adaptive", "fade", "dissolve", "hash", "histogram"]] = Field(
        default_factory=lambda: ["content", "fade", "dissolve"],  # type: ignore[arg-type]
        description="Cut detectors whose cuts are merged: PySceneDetect content/adaptive/hash/histogram, 'fade' (ThresholdDetector: fades to black), 'dissolve' (cross-dissolves and fades by linearity).",
    )
    decode_width_px: int = Field(256, ge=32, description="Width of the shared low-resolution decode used by shots and quality.")
    fast_decode: bool = Field(True, description="Skip the H.264/HEVC loop filter in the analysis decode (faster; invisible at the reduced size).")
    dissolve_half_window_s: float = Field(0.3, gt=0, description="Dissolve detector: compares each frame with the frames this far before and after.")
    dissolve_min_change: float = Field(14.0, gt=0, description="Dissolve detector: minimum mean gray change (0-255) between those two frames.")
    dissolve_max_ratio: float = Field(0.22, gt=0, le=0.5, description="Dissolve detector: maximum deviation of the middle frame from their mean, relative to the change (0: perfect blend; hard cuts give 0.5).")
    content_threshold: float = Field(27.0, gt=0, description="ContentDetector threshold (PySceneDetect default).")
    adaptive_threshold: float = Field(3.0, gt=0, description="AdaptiveDetector threshold (PySceneDetect default).")
    fade_threshold: float = Field(12.0, ge=0, description="Mean-brightness level under which a frame counts as faded (ThresholdDetector).")
    min_scene_len_frames: int = Field(15, ge=1, description="Minimum frames between two cuts (PySceneDetect default).")
    trim_frames: int = Field(2, ge=0, description="Frames dropped at each side of a cut (transition residue).")
    min_clip_s: float = Field(3.0, ge=0, description="Shots shorter than this are dropped (paper: 3 s).")
    max_clip_s: float = Field(8.0, gt=0, description="Longer shots are split into windows of at most this length (paper: training clips 3-8 s).")
    window_overlap_s: float = Field(0.0, ge=0, description="Overlap between consecutive windows of a long shot.")


class QualitySettings(Section):
    """Thresholds of the decision step; scores are always stored, so `lpm-curate refilter` can re-decide."""

    enabled: bool = True
    sample_fps: float = Field(2.0, gt=0, description="Frames per second scored for the per-frame image metrics (sharpness, exposure, colour, motion, borders, insets, text).")
    brisque_fps: float = Field(0.5, gt=0, description="Frames per second scored with BRISQUE (about 3-5 ms each; the median over a shot is stable at one frame every 2 s).")
    min_sharpness: float = Field(40.0, ge=0, description="Variance of the Laplacian on the decode frames; below is 'blurry'.")
    min_brightness: float = Field(30.0, ge=0, le=255)
    max_brightness: float = Field(230.0, ge=0, le=255)
    max_colour_cast: float = Field(25.0, ge=0, description="Distance of the mean chroma from neutral (Lab a*,b*).")
    max_flicker: float = Field(6.0, ge=0, description="Std of frame-to-frame mean-brightness change, with the trend removed.")
    max_static_share: float = Field(0.9, ge=0, le=1, description="Share of near-identical consecutive frames above which a shot is 'frozen'.")
    max_frozen_s: float = Field(1.0, gt=0, description="Longest run of identical consecutive frames above which a shot is 'frozen'.")
    max_motion: float | None = Field(None, gt=0, description="Median optical-flow motion (frame widths per second) above which a shot is 'too_much_motion'; None: no check.")
    max_brisque: float = Field(60.0, ge=0, description="BRISQUE score (lower is better); NaN when the model is missing.")
    max_pip_score: float = Field(0.6, ge=0, le=1, description="pip_score (mean over the shot's 2 s windows of the inset model's probability for one rectangle) above which a shot is 'picture_in_picture'; 0.6 from the host-held-out folds of python -m train.pip_inset.")
    max_text_score: float = Field(0.5, ge=0, le=1, description="Share of sampled frames with text-like overlay lines above which a shot is 'text_overlay'.")
    min_resolution_px: int = Field(240, ge=1, description="Shorter side of the active picture (the frame minus letterbox/pillarbox bars, which are cropped away, never a reason to drop a shot); below is 'resolution_too_low'.")
    min_loudness_dbfs: float = Field(-50.0, description="Mean RMS level; quieter shots are 'silent'.")
    max_clipping_share: float = Field(0.01, ge=0, le=1)
    min_speech_share: float = Field(0.0, ge=0, le=1, description="Silero VAD share of speech; 0 keeps non-speech shots (idle clips).")
    min_people: int = Field(1, ge=0, description="Human presence: fewer people is 'no_person' (paper).")
    max_people: int = Field(4, ge=1, description="Human presence: more people is 'too_crowded' (paper).")


class PeopleSettings(Section):
    """Detection, tracking, cropping and identities (people stage); see docs/PEOPLE.md."""

    face_detector: Literal["scrfd", "yunet", "yunet-dynamic"] = Field("scrfd", description="'scrfd': SCRFD-500M via insightface (falls back to YuNet when its file is missing); 'yunet': YuNet 320 in cv2.FaceDetectorYN; 'yunet-dynamic': dynamic YuNet in onnxruntime.")
    person_detector: Literal["yolox", "ultralytics"] = Field("yolox", description="'yolox': YOLOX-Nano ONNX; 'ultralytics': a local ultralytics checkpoint (ultralytics_weights).")
    ultralytics_weights: str | None = Field(None, description="Path of a local ultralytics .pt checkpoint (person_detector: ultralytics).")
    arcface_weights: str | None = Field(None, description="Path of a local insightface ArcFace recogniser .onnx (identity_model: arcface).")
    detect_max_side_px: int = Field(640, ge=64, description="Frames are decoded for detection with their longer side scaled to this (never upscaled).")
    detect_every_frames: int = Field(5, ge=1, description="Detect every k-th frame of the clip_fps grid; boxes in between are interpolated.")
    face_score_min: float = Field(0.5, ge=0, le=1)
    person_score_min: float = Field(0.4, ge=0, le=1)
    face_min_px: int = Field(32, ge=1, description="Tracks whose median face box height (source pixels) is below this get no clip ('face_too_small').")
    person_min_height_frac: float = Field(0.15, ge=0, le=1, description="Body boxes shorter than this share of the frame height are ignored (distant background people).")
    iou_match_min: float = Field(0.3, ge=0, le=1, description="IoU (faces when both have one, else bodies) for associating detections to tracks.")
    max_missed_detections: int = Field(3, ge=0, description="A track ends after this many detection frames without a match.")
    count_min_s: float = Field(1.0, ge=0, description="A track counts towards n_people when present this long (or for the whole shot when it is shorter).")
    min_track_s: float = Field(3.0, ge=0, description="Shorter person tracks get a track-level reject 'track_too_short'.")
    min_face_share: float = Field(0.5, ge=0, le=1, description="A track needs a detected face in at least this share of its detection frames to be cropped ('no_face').")
    smooth_window_s: float = Field(0.6, ge=0, description="Centred moving-average window of box smoothing.")
    crowd_policy: Literal["reject", "keep_large"] = Field("reject", description="Shots with more than quality.max_people people: 'reject' drops them ('too_crowded'); 'keep_large' keeps only tracks with large, stable faces (crowd_face_min_px, min_track_s) if at most max_people remain.")
    crowd_face_min_px: int = Field(96, ge=1, description="Median face height (source pixels) a track needs under crowd_policy 'keep_large'.")
    crop_margin: float = Field(0.6, ge=0, description="Margin around the head motion range, in face heights, above and at the sides of the crop.")
    crop_body_faces: float = Field(1.0, ge=0, description="Extra face heights below the head (upper body) in the crop.")
    crop_aspect: float = Field(1.0, gt=0, description="Width/height of single-person crops.")
    clip_size_px: int = Field(512, ge=64, description="Height of encoded single-person clips (width = height * crop_aspect, even).")
    clip_fps: float = Field(25.0, gt=0, description="The output frame rate: clip media and every per-frame label (frame_states, speak_scores, mouth_open, boxes) are on this grid, whatever the input's rate (23.976-60 fps, variable) is. 25 as the LPM data uses; the conversation stage requires 25 (LR-ASD's input rate).")
    identity_model: Literal["mobilefacenet", "arcface"] = "mobilefacenet"
    identity_threshold: float = Field(0.40, ge=-1, le=1, description="Cosine similarity for 'same person' (measured for MobileFaceNet).")
    identity_faces_per_track: int = Field(8, ge=1, description="Best faces (score x size) averaged into a track's embedding.")
    embed_every_detections: int = Field(3, ge=1, description="Faces are embedded on every n-th detection frame (identity needs a few faces per track, not all).")


# Per sync signal defaults of the decision parameters (conversation.sync_signal; a config value overrides).
SYNC_DEFAULTS: dict[str, dict[str, float]] = {
    "head": {"sync_min": -4.0, "cross_margin": 1.0, "offset_bias_frames": 0.0, "offset_min_gain": 1.0, "sync_smooth_frames": 5},
    "av_minus_visual": {"sync_min": -0.25, "cross_margin": 0.1, "offset_bias_frames": -1.0, "offset_min_gain": 0.5,
                        "sync_smooth_frames": 25},
}


class ConversationSettings(Section):
    """Conversation states (conversation stage): LR-ASD, mouth motion, VAD, sync; see docs/CONVERSATION.md."""

    asd_checkpoint: Literal["pretrain_AVA", "finetuning_TalkSet"] = "pretrain_AVA"
    windows_s: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6], description="LR-ASD window lengths (s) whose per-frame logits are averaged (reference demo: 1..6).")
    visual_context: Literal["clip", "window", "tiling", "clip_sync"] = Field("clip_sync", description="LR-ASD visual embeddings: 'clip_sync' (default) embeds each face track once and slices the decision windows from that pass, and embeds the sync head's windows (sync_windows_s[0]) on their own as it was trained; 'window' embeds each window of each length on its own, as the reference demo; 'clip' slices every length from the one pass (the sync-head offset scan is then wrong on globally delayed audio, tests/test_sync_composites.py); 'tiling' embeds the sync windows on their own and slices the other lengths from them. On bench/conversation_cost.py (9 clips, 1 thread, onnxruntime): window 56, clip_sync 30 (with landmark_every 2), tiling 33 CPU-s per minute per person; clip_sync keeps every clip's class and offset of 'window' and passes the conversation tests ('tiling' loses idle share on turn-taking).")
    visual_engine: Literal["onnxruntime", "torch"] = Field("onnxruntime", description="Runtime of the LR-ASD visual encoder: 'onnxruntime' (an in-memory export of the loaded checkpoint, equal to the PyTorch pass to ~1e-6, about 1.6x faster on CPU) or 'torch'.")
    crop_scale: float = Field(0.60, ge=0, le=2, description="Face crop scale around the face box (reference demo 0.40; 0.60 measured better for the sync evidence, docs/CONVERSATION.md).")
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads of one conversation worker.")
    landmark_every: int = Field(2, ge=1, description="Run the face landmarker on every n-th frame (mouth opening interpolated between): 2 halves its cost (about 15 -> 7 CPU-s per minute per person) with the conversation tests unchanged or better; 1 for every frame.")
    speak_threshold: float = Field(0.0, description="Raw LR-ASD logit above which a frame counts as speaking (reference demo).")
    speak_hysteresis: float = Field(0.5, ge=0, description="A speaking run ends only when the smoothed logit falls below speak_threshold minus this.")
    vad_threshold: float = Field(0.5, ge=0, le=1)
    vad_hysteresis: float = Field(0.15, ge=0, le=1, description="Speech ends only when the smoothed VAD probability falls below vad_threshold minus this.")
    min_speech_gap_s: float = Field(0.3, ge=0, description="Pauses in speech up to this long are bridged.")
    motion_threshold: float = Field(0.02, ge=0, description="Mouth motion (rolling std of the mouth opening / eye distance) above which the mouth is 'moving'.")
    mouth_window_s: float = Field(0.4, gt=0, description="Window of the mouth-motion rolling std.")
    min_segment_s: float = Field(0.4, ge=0, description="Shorter state runs are merged into their neighbours.")
    smooth_frames: int = Field(5, ge=1, description="Moving-average window (frames) on LR-ASD logits, VAD and mouth motion.")
    sync: bool = Field(True, description="Use the audio-visual sync evidence in the decision (issue 9); False: LR-ASD score and cross-person comparison only.")
    sync_signal: Literal["head", "av_minus_visual"] = Field("av_minus_visual", description="Sync evidence: 'av_minus_visual' (default) = the published checkpoint's audio-visual minus visual-only logit, taken relative to each person's median; 'head' = our LR-ASD sync head fine-tuned on negatives by construction (models/lr_asd_sync.py, registry lr-asd-sync; log-odds): better on the held-out sync composites, not yet the default (docs/CONVERSATION.md, 'Sync'). The decision parameters default per signal (SYNC_DEFAULTS).")
    sync_min: float | None = Field(None, description="Smoothed sync evidence a speaker needs at least; null: the signal's default (SYNC_DEFAULTS: head calibrated leave-one-person-out on the training people, av_minus_visual -0.25).")
    sync_smooth_frames: int | None = Field(None, ge=1, description="Moving-average window (frames) on the sync evidence; null: the signal's default (head 5: it already integrates 2 s windows; av_minus_visual 25).")
    min_sync_frames: int = Field(25, ge=1, description="Speech frames with a moving mouth a person needs before the sync evidence is taken relative to the person's median.")
    cross_margin: float | None = Field(None, ge=0, description="A second person may speak at the same time only within this of the best sync evidence; null: the signal's default.")
    sync_windows_s: list[int] = Field(default_factory=lambda: [2], description="Window lengths (s) the sync head scores in, for the sync evidence and the offset scan: the head was trained on 2 s windows (train/sync_head.py).")
    sync_phases: int = Field(1, ge=1, le=10, description="Sync head: besides the windows starting at frame 0, score tilings started 1/n, 2/n, ... of a window later and average them (visual embeddings reused; audio encoder and head run n times), so that frames near a window edge, e.g. at a change of voice, also get a window with context on both sides.")
    offset_windows_s: list[int] = Field(default_factory=lambda: [2, 4], description="LR-ASD window lengths of the shifted-audio passes of the offset scan.")
    offset_scan_s: float = Field(0.8, ge=0, description="Audio lags scanned (+-) for the audio-visual offset estimate.")
    offset_step_frames: int = Field(2, ge=1, description="Step of the offset scan in frames.")
    offset_signal: Literal["head", "sync_signal"] = Field("head", description="Signal of the offset scan (av_offset rejects): 'head' = the sync head whatever sync_signal is (sharp lag curve; reject threshold calibrated on the training people, docs/CONVERSATION.md); 'sync_signal' = the same signal as the decision.")
    offset_bias_frames: float | None = Field(None, description="Lag (frames) at which the signal peaks on in-sync footage, subtracted from the estimate; null: the signal's default (head 0; av_minus_visual -1, measured for pretrain_AVA at crop 0.6 on the tuning faces).")
    offset_min_gain: float | None = Field(None, ge=0, description="A shot is rejected for offset only when its peak beats the zero lag by this much (signal units); null: the signal's default.")
    max_offset_frames: int = Field(6, ge=0, description="Offset rule (issue 21, LatentSync's rule): a shot whose confident audio offset (gain >= offset_min_gain) is at most this many frames (25 fps) has its audio shifted to offset 0 (labels recomputed on the shifted audio, speak/listen audio and words re-timed, av_shift_s); a larger confident offset rejects the shot's speaking clips (av_offset). Listening and idle clips are never rejected for offset.")
    offset_min_speak_share: float = Field(0.1, ge=0, le=1, description="A clip counts as speaking for the offset rule when speak frames make at least this share of it, on the audio as heard or shifted by the shot's offset.")
    offset_correct_min_gain: float | None = Field(1.5, ge=0, description="A small confident offset is corrected only when its gain also reaches this (a shift must be surer than a reject); below it the offset is recorded and the audio left as it is. 1.5: the in-sync turns composite (face_3|face_4) measures -0.08 s at gain 1.19, a 0.16 s delay on held-out face_4 gain 1.73; null: offset_min_gain.")
    max_av_offset_s: float | None = Field(None, ge=0, description="Deprecated (before issue 21 the reject limit): when set, replaces max_offset_frames / 25 as the limit (s) between correcting and rejecting a speaking clip's offset.")

    def max_offset_s(self) -> float:
        """Largest offset (s) of a speaking clip that is corrected rather than rejected."""
        return float(self.max_av_offset_s) if self.max_av_offset_s is not None else self.max_offset_frames / 25.0

    def offset_signal_name(self) -> str:
        return "head" if self.offset_signal == "head" else self.sync_signal

    def offset_param(self, name: str) -> float:
        """Effective offset-scan parameter (offset_bias_frames, offset_min_gain, and sync_min for the
        frames the scan uses): the config value when the scan uses the decision signal or the parameter
        is an offset one, else the offset signal's default."""
        sig = self.offset_signal_name()
        v = getattr(self, name)
        if v is not None and (sig == self.sync_signal or name.startswith("offset_")):
            return float(v)
        return float(SYNC_DEFAULTS[sig][name])

    def sync_param(self, name: str) -> float:
        """Effective sync decision parameter: the config value, else the default of the chosen signal."""
        v = getattr(self, name)
        return float(SYNC_DEFAULTS[self.sync_signal][name] if v is None else v)



class AudioSettings(Section):
    """Vocal separation (separation stage), per-person speak/listen audio and transcripts (audio stage); see docs/AUDIO.md."""

    separation: Literal["dtln", "gtcrn", "demucs", "none"] = Field("dtln", description="Voice isolator for speak/listen audio: 'dtln' (default: best measured here, see docs/AUDIO.md) or 'gtcrn' (registry ONNX models in models.dir), 'demucs' (demucs_model_dir), 'none' (the mixture). Left at the default with demucs_model_dir set, demucs is used. A missing model records 'separation: none' and uses the mixture.")
    isolator_threads: int = Field(1, ge=1, description="onnxruntime intra-op threads of the dtln/gtcrn isolator.")
    demucs_model_dir: str | None = Field(None, description="Local demucs repo dir (checkpoints saved with demucs' save format, plus <name>.yaml for bags); relative paths are also looked up under models.dir. None: no separation.")
    demucs_model_name: str = Field("htdemucs", description="Model (signature or bag name) in demucs_model_dir, as for demucs.pretrained.get_model(name, repo=dir).")
    separation_chunk_s: float = Field(30.0, gt=1, description="Separation runs on chunks of at most this many seconds (bounded memory), crossfaded over separation_overlap_s.")
    separation_overlap_s: float = Field(1.0, ge=0, description="Overlap (linear crossfade) between consecutive separation chunks.")
    separation_context_s: float = Field(0.5, ge=0, description="Audio decoded beyond each shot edge for the separator (then trimmed).")
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads of the separator (None: torch's default).")
    crossfade_ms: float = Field(30.0, ge=0, description="Fade length at every on/off switch of speak/listen audio; the fade lies inside the kept span, so nothing outside it leaks in.")
    idle_policy: Literal["both", "none"] = Field("both", description="Idle frames (nobody speaks): 'both' keeps the vocals in speak and listen audio (paper: idle keeps both); 'none' silences them.")
    asr: Literal["faster-whisper", "none"] = Field("faster-whisper", description="'faster-whisper' uses whisper_model_dir when present, else transcripts stay null (recorded).")
    asr_input: Literal["mixture", "isolated"] = Field("mixture", description="What Whisper transcribes: 'mixture' (the original shot audio; measured better over music: WER 0.18 vs 0.45-0.68 on the isolated voice) or 'isolated' (the separation stage's output; better over stationary noise with gtcrn).")
    whisper_model_dir: str | None = Field("whisper-tiny.en-ct2", description="A registered Whisper model name (default 'whisper-tiny.en-ct2': resolved in models.dir, sha256 verified) or a local CTranslate2 Whisper directory (with tokenizer.json; relative paths also looked up under models.dir), e.g. a multilingual one; None: no transcripts (recorded).")
    language: str | None = Field(None, description="Language code for Whisper; None: detected per shot (multilingual models); English-only models (.en) always get 'en', recorded as 'en (assumed)'.")
    asr_english_only: bool | None = Field(None, description="True: the Whisper model is English-only (language 'en', recorded 'en (assumed)'); None: from the model (not multilingual, or its name has '.en').")
    asr_compute_type: str = Field("int8", description="CTranslate2 compute type on CPU (int8, float32, ...).")
    asr_threads: int = Field(1, ge=1, description="CTranslate2 CPU threads per worker.")
    asr_beam_size: int = Field(5, ge=1)
    asr_vad_filter: bool = Field(True, description="faster-whisper's Silero VAD skips non-speech before decoding.")
    asr_temperature_fallback: bool = Field(False, description="True: Whisper's fallback re-decodes failed windows by sampling at rising temperatures (better on hard audio, but not reproducible run to run); False: beam search only, deterministic.")
    ctc_model_dir: str | None = Field(None, description="Local transformers CTC model directory (wav2vec2-style, character vocabulary): word times are refined by torchaudio forced alignment. None: Whisper's own word times.")
    max_sentence_pause_s: float = Field(1.0, gt=0, description="A pause between words longer than this ends a sentence segment.")
    max_sentence_s: float = Field(15.0, gt=0, description="Sentence segments are cut at this length.")


class ReferenceSettings(Section):
    """Face analysis (faces stage) and identity references (references stage); see docs/REFERENCES.md."""

    face_sample_fps: float = Field(12.5, gt=0, description="Clip frames per second analysed by the MediaPipe face landmarker (head_pose has one entry per analysed frame).")
    pose_sample_fps: float = Field(2.0, gt=0, description="Clip frames per second analysed by BlazePose (body motion, body orientation).")
    max_body_views: int = Field(4, ge=0, le=4)
    max_expressions: int = Field(8, ge=0, le=8)
    min_expressions: int = Field(2, ge=0, description="Paper: a clip needs at least 2 distinct expressions.")
    global_refs: int = Field(2, ge=0, description="Global appearance references per clip (paper: 1+).")
    frontal_min_deg: float = Field(155.0, description="Angle camera/body facing at or above which a view is frontal (paper).")
    rear_max_deg: float = Field(45.0, description="At or below: rear view (paper).")
    exclusion_margin_s: float = Field(1.0, ge=0, description="Reference frames must lie at least this far outside the target clip's time range.")
    candidate_fps: float = Field(2.0, gt=0, description="Candidate reference frames per second of footage of the same identity.")
    max_candidates_per_identity: int = Field(96, ge=1, description="Cap on candidate frames per identity (spread evenly over its clips).")
    expression_min_distance: float = Field(0.35, ge=0, description="Minimum L2 distance between the 52-d blendshape vectors of two expression references.")
    expression_max_yaw_deg: float = Field(30.0, ge=0, description="Expression references must be this close to frontal (|yaw| and |pitch|).")
    expression_min_source_px: int = Field(480, ge=1, description="Shorter side of the source video below which no expression references are taken (paper: 1080; lower here because the test media is < 1080p).")
    expression_crop_margin: float = Field(0.35, ge=0, description="Margin around the head box, in head sizes, of expression reference crops.")
    body_crop_margin: float = Field(1.2, ge=0, description="Margin around the head box, in head heights, of global/body reference crops (extends mostly downward).")
    require_references: bool = Field(False, description="Drop clips that end with no global reference or fewer than min_expressions expression references (reason 'no_references'); False keeps them and says so in tags.")
    jpeg_quality: int = Field(90, ge=10, le=100)


class CaptionSettings(Section):
    """Captions (captions stage), embeddings and near-duplicates (embeddings stage, dedupe pass); see docs/CAPTIONS.md."""

    captioner: Literal["tags", "vlm"] = Field("tags", description="'tags': caption composed from the structured tags; 'vlm': a transformers vision-language model from vlm_model_dir.")
    vlm_model_dir: str | None = Field(None, description="Local transformers model directory (AutoModelForImageTextToText + AutoProcessor).")
    vlm_prompt: str = Field("Describe the person in one sentence: appearance, expression, head and body motion.", description="Prompt of chat VLMs (tags are appended as context).")
    vlm_max_new_tokens: int = Field(48, ge=1)
    segment_captions: bool = Field(True, description="Also caption each sentence-bounded segment (sentences from the audio stage).")
    motion_low_max: float = Field(0.25, ge=0, description="motion_intensity at or below: 'low' motion.")
    motion_high_min: float = Field(0.6, ge=0, description="motion_intensity at or above: 'high' motion.")
    clip_model: str = Field("ViT-B-32", description="open_clip architecture for image/text embeddings, or the path of a model-config JSON.")
    clip_weights: str | None = Field(None, description="Local open_clip checkpoint file or open_clip hub-layout directory; None: embeddings are skipped and recorded as such.")
    phash_fps: float = Field(4.0, gt=0, description="Keyframes per second of clip hashed with pHash (always computed).")
    dedupe: bool = Field(True, description="Post-run pass rejecting near-duplicate clips across the run (reason 'duplicate').")
    dedupe_max_hamming: float = Field(6.0, ge=0, le=64, description="Median pHash Hamming distance (of 64 bits) of aligned keyframes at or below which two clips are duplicate candidates.")
    dedupe_max_mad: float = Field(3.0, ge=0, description="Median mean-absolute difference (gray levels) of aligned 16x16 keyframe thumbnails at or below which candidates are duplicates.")
    dedupe_min_motion_corr: float = Field(0.7, ge=-1, le=1, description="Correlation of the keyframe-to-keyframe changes required when the clips move (tells two copies of one moment from two moments of one static scene).")
    dedupe_static_max_mad: float = Field(1.0, ge=0, description="For clips with almost no motion the thumbnails must agree to this median MAD instead.")
    dedupe_min_overlap: float = Field(0.8, gt=0, le=1, description="Share of the shorter clip's keyframes that must align for a duplicate.")


class ModelSettings(Section):
    dir: str | None = Field(
        None, description="Model directory. None: $LPM_MODEL_DIR, else ../shared/models beside the repository."
    )
    verify_checksums: bool = Field(True, description="Check sha256 of each weight file once per process before loading.")

    def resolved_dir(self) -> Path:
        if self.dir:
            return Path(self.dir).expanduser().resolve()
        env = os.environ.get("LPM_MODEL_DIR")
        if env:
            return Path(env).expanduser().resolve()
        return (REPO_ROOT.parent / "shared" / "models").resolve()


class OutputSettings(Section):
    clip_media: Literal["bytes", "uri"] = Field("bytes", description="Store encoded clip media in the row, or as files referenced by URI.")
    row_group_rows: int = Field(64, ge=1, description="Rows per Parquet row group (clips carry media: keep groups streamable).")
    compression: Literal["zstd", "snappy", "none"] = "zstd"


class ReportSettings(Section):
    """`lpm-curate report`: sampling of galleries and limits (never changes results; not in config_hash)."""

    gallery_items_per_group: int = Field(8, ge=1, description="Sampled items per gallery group (clip state, reject reason, identity).")
    gallery_frames: int = Field(4, ge=1, le=12, description="Frames per contact-sheet row, spread over the item's time span.")
    thumb_height_px: int = Field(96, ge=16, le=512, description="Height of each gallery frame.")
    max_identities: int = Field(12, ge=0, description="Identities shown in the reference-bank gallery (those with most clips).")
    refs_per_identity: int = Field(8, ge=1, description="Reference images shown per identity.")
    max_map_keys: int = Field(16, ge=1, description="Keys of a map column (quality, expression_stats, ...) plotted at most.")
    thumb_timeout_s: float = Field(60.0, gt=0, description="Hard limit of one ffmpeg thumbnail decode (also capped by run.subprocess_timeout_s).")
    workers: int = Field(2, ge=1, description="Parallel thumbnail decodes.")
    max_marker_reads: int = Field(5000, ge=0, description="Per-video state markers read for per-stage timings (a sample beyond this).")
    seed: int = Field(0, description="Seed of the gallery sampling (same run, same seed: same report).")


class Settings(Section):
    run: RunSettings = Field(default_factory=RunSettings)
    input: InputSettings = Field(default_factory=InputSettings)
    probe: ProbeSettings = Field(default_factory=ProbeSettings)
    shots: ShotSettings = Field(default_factory=ShotSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    people: PeopleSettings = Field(default_factory=PeopleSettings)
    conversation: ConversationSettings = Field(default_factory=ConversationSettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    references: ReferenceSettings = Field(default_factory=ReferenceSettings)
    captions: CaptionSettings = Field(default_factory=CaptionSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    report: ReportSettings = Field(default_factory=ReportSettings)
    stages: list[str] | None = Field(None, description="Stage names to run, in pipeline order (None: all registered stages).")

    @model_validator(mode="after")
    def _check(self) -> "Settings":
        if self.shots.max_clip_s < self.shots.min_clip_s:
            raise ValueError("shots.max_clip_s must be >= shots.min_clip_s")
        if self.quality.max_people < self.quality.min_people:
            raise ValueError("quality.max_people must be >= quality.min_people")
        if self.people.clip_fps != 25.0 and (self.stages is None or "conversation" in self.stages):
            # the conversation stage labels on LR-ASD's 25 fps input grid (operators.asd.ASD_FPS)
            raise ValueError(f"people.clip_fps={self.people.clip_fps}: the conversation stage labels frames on LR-ASD's "
                             "25 fps grid, so clips must be encoded at 25 fps while it runs")
        c = self.conversation
        if c.visual_context in ("tiling", "clip_sync") and c.sync_windows_s[0] not in c.windows_s:
            # models.lr_asd.ASDScorer embeds the sync head's windows on their own as one of the window lengths
            raise ValueError(f"conversation.visual_context={c.visual_context!r}: sync_windows_s[0]={c.sync_windows_s[0]} "
                             f"must be one of conversation.windows_s {c.windows_s}")
        return self

    # ------------------------------------------------------------------ helpers
    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def config_hash(self, exclude: tuple[str, ...] = ("run",)) -> str:
        """Hash of everything that changes results (the `run` section only changes how they are computed)."""
        data = self.model_dump(mode="json", exclude=set(exclude))
        data.pop("models", None)  # where weights live does not change results; their sha256 does (provenance)
        data.pop("report", None)  # report sampling only changes what a report shows
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class ConfigError(ValueError):
    """A configuration file that does not validate; the message names every bad key."""


def load_settings(path: str | os.PathLike[str] | None = None, overrides: dict[str, Any] | None = None) -> Settings:
    data: dict[str, Any] = {}
    if path:
        with open(path, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        data = loaded
    if overrides:
        data = _deep_merge(data, overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        lines = [f"{path or '<defaults>'}: invalid configuration"]
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {loc}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from None


def settings_from_json(text: str) -> Settings:
    return Settings.model_validate_json(text)


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out
