"""Test-time composites for the conversation stage, built from ../shared/media (never committed), plus a
check of the builders themselves.

Ground truth by construction: who is visible where, whose voice is heard when. Speech presence of each
voice comes from Silero VAD on that person's own (unmixed) source track, bridged like the stage does.

People used for TUNING the conversation thresholds: talking_face_1, talking_face_2, talking_hdtf_aoc.
Held out (only used to measure): talking_face_3, talking_face_4, talking_face_5, talking_hdtf_hill.
"""
from __future__ import annotations

import os
import subprocess
import wave
from dataclasses import dataclass, field

import numpy as np
import pytest

FPS = 25
SR = 16000
SPF = SR // FPS  # audio samples per video frame
SIDE = 256
TUNING = ("talking_face_1", "talking_face_2", "talking_hdtf_aoc")
HELD_OUT = ("talking_face_3", "talking_face_4", "talking_face_5", "talking_hdtf_hill")


@dataclass
class Face:
    name: str
    frames: np.ndarray  # [T, SIDE, SIDE, 3] RGB at 25 fps
    audio: np.ndarray   # [T * SPF] float32, aligned to frame 0
    speech: np.ndarray  # [T] bool: this person's own voice is audible (VAD on the source track)
    quiet: int          # index of a frame with the mouth closed (for a still listener)


_FACES: dict[str, Face] = {}
_LM = {}


def landmarker(model_dir):
    from models.landmarks import FaceLandmarker

    if "lm" not in _LM:
        _LM["lm"] = FaceLandmarker.from_dir(model_dir, num_faces=2)
    return _LM["lm"]


def load_face(media_dir, model_dir, name: str) -> Face:
    """A shared talking-face clip at 25 fps, SIDE x SIDE, with its audio and speech mask (cached)."""
    if name in _FACES:
        return _FACES[name]
    from models.landmarks import mouth_openness
    from models.vad import SileroVAD
    from operators import states as st
    from operators.asd import vad_to_frames
    from operators.clipmedia import read_clip_audio, read_clip_frames

    src = {"video_uri": str(media_dir / "video" / f"{name}.mp4")}
    frames = read_clip_frames(src, size=(SIDE, SIDE), fps=FPS)
    audio = read_clip_audio(src, SR)
    t = min(len(frames), len(audio) // SPF)
    frames, audio = frames[:t], audio[: t * SPF]
    probs = SileroVAD.load(model_dir=model_dir).speech_probabilities(audio)
    speech = st.speech_presence(vad_to_frames(probs, t, FPS), st.StateParams())
    sample = list(range(0, t, 5))
    mo = mouth_openness([(landmarker(model_dir).detect(frames[i]) or [None])[0] for i in sample])
    quiet = sample[int(np.nanargmin(mo))]
    _FACES[name] = Face(name, frames, audio, speech, quiet)
    return _FACES[name]


def write_mp4(path: str, frames: np.ndarray, audio: np.ndarray) -> str:
    """Encode RGB frames at 25 fps and 16 kHz mono audio as an MP4 source video."""
    from operators.media import ffmpeg_bin

    wav = path + ".wav"
    with wave.open(wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    h, w_ = frames.shape[1:3]
    args = [ffmpeg_bin(), "-nostdin", "-hide_banner", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-s", f"{w_}x{h}", "-r", str(FPS), "-i", "pipe:0", "-i", wav, "-map", "0:v", "-map", "1:a",
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k",
            "-shortest", path]
    subprocess.run(args, input=np.ascontiguousarray(frames).tobytes(), check=True, timeout=300, capture_output=True)
    os.unlink(wav)
    return path


def face_boxes(frames: np.ndarray, model_dir, every: int = 5) -> np.ndarray:
    """Detector-like face boxes (landmark box with the forehead added) every `every` frames, interpolated,
    as the people stage delivers them."""
    lm = landmarker(model_dir)
    idx, got = [], []
    for i in range(0, len(frames), every):
        f = lm.detect(frames[i])
        if f:
            b = f[0].box.astype(np.float64)
            b[1] -= 0.12 * (b[3] - b[1])
            idx.append(i)
            got.append(b)
    got = np.array(got)
    t = np.arange(len(frames))
    return np.column_stack([np.interp(t, idx, got[:, c]) for c in range(4)])


@dataclass
class Composite:
    path: str
    duration_s: float
    clips: list[dict] = field(default_factory=list)
    truth: dict[int, list[str]] = field(default_factory=dict)  # track_id -> per clip frame state
    shots: list[dict] = field(default_factory=list)


def clip_row(src: str, video_id: str, shot_index: int, track_id: int, t0: float, n: int, crop_box, boxes_src: np.ndarray) -> dict:
    from operators.clipmedia import encode_crop

    dur = n / FPS
    data = encode_crop(src, t0, dur, crop_box, SIDE, SIDE, FPS, 120.0)
    return {"clip_id": f"{video_id}-{shot_index}-{track_id}", "video_id": video_id, "shot_index": shot_index,
            "track_id": track_id, "start_frame": int(round(t0 * FPS)), "end_frame": int(round(t0 * FPS)) + n,
            "start_s": t0, "end_s": t0 + dur, "duration_s": dur, "fps": float(FPS), "crop_box": list(map(float, crop_box)),
            "frame_boxes": [list(map(float, b)) for b in boxes_src], "video_bytes": data, "clip_width": SIDE,
            "clip_height": SIDE, "clip_fps": float(FPS)}


def side_by_side(tmp, model_dir, name: str, left: np.ndarray, right: np.ndarray, audio: np.ndarray,
                 truth_left: list[str], truth_right: list[str]) -> Composite:
    frames = np.concatenate([left, right], axis=2)
    path = write_mp4(str(tmp / f"{name}.mp4"), frames, audio)
    n = len(frames)
    comp = Composite(path, n / FPS, shots=[{"shot_index": 0, "start_s": 0.0, "end_s": n / FPS, "kept": True}])
    for track, (x0, part, truth) in enumerate(((0, left, truth_left), (SIDE, right, truth_right))):
        boxes = face_boxes(part, model_dir) + np.array([x0, 0, x0, 0])
        comp.clips.append(clip_row(path, name, 0, track, 0.0, n, [x0, 0, x0 + SIDE, SIDE], boxes))
        comp.truth[track] = truth
    return comp


def still(face: Face, n: int) -> np.ndarray:
    return np.repeat(face.frames[face.quiet][None], n, axis=0)


def turns(tmp, model_dir, a: Face, b: Face, turn_s: float = 4.0, silence_s: float = 2.0) -> Composite:
    """Issue 5: A talks (own voice) while B listens still, then B talks while A listens, then silence with
    both still."""
    k, q = int(turn_s * FPS), int(silence_s * FPS)
    left = np.concatenate([a.frames[:k], still(a, k), still(a, q)])
    right = np.concatenate([still(b, k), b.frames[:k], still(b, q)])
    audio = np.concatenate([a.audio[:k * SPF], b.audio[:k * SPF], np.zeros(q * SPF, np.float32)])
    sa, sb = a.speech[:k], b.speech[:k]
    ta = [("speak" if s else "idle") for s in sa] + [("listen" if s else "idle") for s in sb] + ["idle"] * q
    tb = [("listen" if s else "idle") for s in sa] + [("speak" if s else "idle") for s in sb] + ["idle"] * q
    return side_by_side(tmp, model_dir, f"turns_{a.name}_{b.name}", left, right, audio, ta, tb)


def both_talk(tmp, model_dir, a: Face, b: Face, shift_s: float = 0.0) -> Composite:
    """Issue 9: both people talk on screen the whole time; the audio is A's own voice for the first half
    and B's own voice for the second half (each in sync with its face). shift_s delays the audio (a
    globally offset file): then nobody is in sync."""
    n = min(len(a.frames), len(b.frames))
    h = n // 2
    audio = np.concatenate([a.audio[:h * SPF], b.audio[h * SPF:n * SPF]])
    sp = np.concatenate([a.speech[:h], b.speech[h:n]])
    s = int(round(shift_s * SR))
    if s:
        audio = np.concatenate([np.zeros(s, np.float32), audio])[: n * SPF]
        ta = tb = ["discard" if x else "idle" for x in np.r_[np.zeros(int(round(shift_s * FPS)), bool), sp][:n]]
    else:
        ta = [("speak" if x else "idle") if i < h else ("discard" if x else "idle") for i, x in enumerate(sp)]
        tb = [("discard" if x else "idle") if i < h else ("speak" if x else "idle") for i, x in enumerate(sp)]
    tag = f"_shift{shift_s:.1f}" if s else ""
    return side_by_side(tmp, model_dir, f"both_{a.name}_{b.name}{tag}", a.frames[:n], b.frames[:n], audio, ta, tb)


def intercut(tmp, model_dir, a: Face, c: Face, first_s: float = 3.0) -> Composite:
    """Issue 5: shot 0 shows A talking (own voice); shot 1 cuts to C with a still mouth while A's voice
    continues off screen (C listens)."""
    n = len(a.frames)
    k = int(first_s * FPS)
    frames = np.concatenate([a.frames[:k], still(c, n - k)])
    path = write_mp4(str(tmp / f"intercut_{a.name}_{c.name}.mp4"), frames, a.audio[: n * SPF])
    comp = Composite(path, n / FPS, shots=[{"shot_index": 0, "start_s": 0.0, "end_s": k / FPS, "kept": True},
                                           {"shot_index": 1, "start_s": k / FPS, "end_s": n / FPS, "kept": True}])
    boxes_a = face_boxes(a.frames[:k], model_dir)
    boxes_c = face_boxes(frames[k:], model_dir)
    comp.clips.append(clip_row(path, "intercut", 0, 0, 0.0, k, [0, 0, SIDE, SIDE], boxes_a))
    comp.clips.append(clip_row(path, "intercut", 1, 0, k / FPS, n - k, [0, 0, SIDE, SIDE], boxes_c))
    comp.truth[0] = ["speak" if s else "idle" for s in a.speech[:k]]
    comp.truth[1] = ["listen" if s else "idle" for s in a.speech[k:n]]
    return comp


def make_task(comp: Composite):
    from operators.base import VideoTask

    task = VideoTask(uri=comp.path, video_id=comp.clips[0]["video_id"])
    task.video = {"video_id": task.video_id, "duration_s": comp.duration_s, "has_audio": True, "fps": float(FPS)}
    task.shots = [dict(s, duration_s=s["end_s"] - s["start_s"]) for s in comp.shots]
    task.clips = [dict(c) for c in comp.clips]
    return task


def scores(comp: Composite, task) -> dict:
    """Frame accuracy speak-vs-not, listen recall, idle-in-silence share, out-of-sync talker kept off speak."""
    right = total = 0
    listen_hit = listen_n = idle_hit = idle_n = off_hit = off_n = 0
    for c in task.clips:
        multi_shot = len({x["shot_index"] for x in comp.clips}) > 1
        key = c["shot_index"] if multi_shot else c["track_id"]
        truth = comp.truth[key]
        pred = c["frame_states"]
        m = min(len(truth), len(pred))
        for t, p in zip(truth[:m], pred[:m]):
            right += (t == "speak") == (p == "speak")
            total += 1
            if t == "listen":
                listen_n += 1
                listen_hit += p == "listen"
            if t == "idle":
                idle_n += 1
                idle_hit += p == "idle"
            if t == "discard":
                off_n += 1
                off_hit += p != "speak"
    return {"speak_acc": right / max(1, total), "listen_recall": listen_hit / listen_n if listen_n else None,
            "idle_share": idle_hit / idle_n if idle_n else None, "off_sync_kept_off": off_hit / off_n if off_n else None,
            "frames": total}


def test_builders_make_consistent_composites(tmp_path, media_dir, model_dir):
    a = load_face(media_dir, model_dir, "talking_face_3")
    b = load_face(media_dir, model_dir, "talking_face_5")
    comp = turns(tmp_path, model_dir, a, b, turn_s=1.0, silence_s=0.4)
    assert len(comp.clips) == 2 and os.path.getsize(comp.path) > 1000
    assert len(comp.truth[0]) == len(comp.truth[1]) == 60
    assert comp.truth[0][-1] == "idle" and "speak" in comp.truth[0][:25] and "listen" in comp.truth[1][:25]
    from operators.clipmedia import read_clip_frames

    fr = read_clip_frames(comp.clips[1])
    assert abs(len(fr) - 60) <= 1
    # the right clip shows B: its first frames equal B's quiet frame (still listener)
    assert np.abs(fr[3].astype(int) - b.frames[b.quiet].astype(int)).mean() < 12
    bx = np.asarray(comp.clips[1]["frame_boxes"])
    assert bx[:, 0].min() >= SIDE - 5  # boxes in source pixels of the right half


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q"])
