"""Speak/listen audio on a side-by-side composite with ground truth by construction.

Two real talking-face videos are put side by side (ffmpeg hstack after scaling to the same height). The
audio is person A's own voice, then person B's own voice (concatenated), while the other one's picture
holds still. Clip rows are built with known frame_states (A speaks then listens, B listens then speaks),
split into windows that do NOT line up with the turn change, so cross-clip overlap logic is exercised.
Requirement: each person's speak_audio carries the other voice at <= -20 dB (relative to that voice in
the mixture), while keeping its own voice; listen_audio is the mirror image.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ffmpeg

FPS = 25.0
H = 256
A_VIDEO, B_VIDEO = "talking_face_2.mp4", "talking_face_3.mp4"  # 5.0 s each at 25 fps


def _duration(path) -> float:
    from operators.media import ffprobe

    return float(ffprobe(str(path), 60, count_frames=False).duration_s)


@pytest.fixture(scope="module")
def composite(tmp_path_factory, media_dir):
    out = tmp_path_factory.mktemp("composite") / "side_by_side.mp4"
    a, b = media_dir / "video" / A_VIDEO, media_dir / "video" / B_VIDEO
    da = round(_duration(a) * FPS) / FPS  # turn change on a frame boundary of the composite
    db = round(_duration(b) * FPS) / FPS
    graph = (f"[0:v]fps={FPS},scale=-2:{H},trim=duration={da},setpts=PTS-STARTPTS,tpad=stop_mode=clone:stop_duration={db}[va];"
             f"[1:v]fps={FPS},scale=-2:{H},trim=duration={db},setpts=PTS-STARTPTS,tpad=start_mode=clone:start_duration={da}[vb];"
             f"[va][vb]hstack=inputs=2[v];"
             f"[0:a]atrim=duration={da},asetpts=PTS-STARTPTS,aresample=48000,apad=whole_dur={da}[aa];"
             f"[1:a]atrim=duration={db},asetpts=PTS-STARTPTS,aresample=48000,apad=whole_dur={db}[ab];"
             f"[aa][ab]concat=n=2:v=0:a=1[a]")
    ffmpeg("-i", str(a), "-i", str(b), "-filter_complex", graph, "-map", "[v]", "-map", "[a]", "-c:v", "libx264",
           "-preset", "ultrafast", "-crf", "28", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "192k", "-ac", "1",
           "-t", f"{da + db:.3f}", str(out))
    return out, da, db


def _windows(total: float, cut: float) -> list[tuple[float, float]]:
    return [(0.0, cut), (cut, total)]


def _clip_rows(video_id: str, track: int, windows, states_of):
    rows = []
    for k, (s, e) in enumerate(windows):
        n = int(round((e - s) * FPS))
        times = s + (np.arange(n) + 0.5) / FPS  # frame midpoints on the source timeline
        rows.append({"clip_id": f"{video_id}-{track}-{k}", "video_id": video_id, "shot_index": 0, "track_id": track,
                     "start_frame": int(round(s * FPS)), "end_frame": int(round(e * FPS)), "start_s": s, "end_s": e,
                     "duration_s": e - s, "fps": FPS, "clip_fps": FPS, "frame_states": [states_of(t) for t in times]})
    return rows


def _db(num: float, den: float) -> float:
    """Energy ratio in dB, floored at -120 dB (exact silence)."""
    return round(max(-120.0, 10 * np.log10(max(num, 1e-30) / max(den, 1e-30))), 2)


def test_speak_audio_suppresses_the_other_voice(composite, settings, artifacts_dir):
    from operators.audio import AudioTracksOperator, SeparationOperator
    from operators.base import VideoTask, run_operator
    from operators.media import decode_audio, decode_flac
    from operators.probe import ProbeOperator
    from schemas.tables import to_table

    path, da, db = composite
    total = da + db
    task = run_operator(ProbeOperator(settings), VideoTask(uri=str(path)), 120)
    assert task.ok and task.video["has_audio"], task.rejects
    vid = task.video_id
    task.shots = [{"shot_index": 0, "start_frame": 0, "end_frame": int(round(total * FPS)), "start_s": 0.0, "end_s": total,
                   "duration_s": total, "kept": True, "reason": ""}]
    a_rows = _clip_rows(vid, 0, _windows(total, 6.0), lambda t: "speak" if t < da else "listen")
    b_rows = _clip_rows(vid, 1, _windows(total, 3.0), lambda t: "listen" if t < da else "speak")
    task.clips = a_rows + b_rows

    settings.audio.demucs_model_dir = None
    settings.audio.separation = "none"  # this test measures the gating on the mixture itself
    settings.audio.whisper_model_dir = None
    task = run_operator(SeparationOperator(settings), task, 300)
    task = run_operator(AudioTracksOperator(settings), task, 300)
    assert task.ok, task.rejects
    assert task.provenance["separation"]["model"] == "none"
    to_table("clips", task.clips)

    mix = decode_audio(str(path), 60)
    n = int(round(total * 16000))
    mix = np.pad(mix, (0, max(0, n - len(mix))))[:n]
    ia = int(round(da * 16000))

    def track(rows, col):
        parts = [decode_flac(r[col]) for r in sorted(rows, key=lambda r: r["start_s"])]
        assert all(len(p) == int(round(r["duration_s"] * 16000)) for p, r in zip(parts, rows))
        x = np.concatenate(parts)
        return np.pad(x, (0, max(0, n - len(x))))[:n]

    e = lambda x: float(np.sum(x.astype(np.float64) ** 2))  # noqa: E731
    res = {}
    for who, rows, own, other in (("A", a_rows, slice(0, ia), slice(ia, n)), ("B", b_rows, slice(ia, n), slice(0, ia))):
        speak, listen = track(rows, "speak_audio"), track(rows, "listen_audio")
        res[who] = {
            "speak_other_voice_db": _db(e(speak[other]), e(mix[other])),
            "speak_own_voice_db": _db(e(speak[own]), e(mix[own])),
            "listen_own_voice_db": _db(e(listen[own]), e(mix[own])),
            "listen_other_voice_db": _db(e(listen[other]), e(mix[other])),
        }
    print(json.dumps(res, indent=1))
    (artifacts_dir / "audio_speak_listen_composite.json").write_text(json.dumps(
        {"composite": f"{A_VIDEO} | {B_VIDEO} side by side, A's voice then B's voice, turn at {da:.2f} s",
         "separation": "none (mixture)", "crossfade_ms": settings.audio.crossfade_ms, "energies_db": res}, indent=2))
    for who in ("A", "B"):
        r = res[who]
        assert r["speak_other_voice_db"] <= -20.0, f"{who}'s speak_audio carries the other voice at {r['speak_other_voice_db']:.1f} dB"
        assert r["listen_own_voice_db"] <= -20.0
        assert r["speak_own_voice_db"] > -1.0 and r["listen_other_voice_db"] > -1.0, "the wanted voice must be kept"
