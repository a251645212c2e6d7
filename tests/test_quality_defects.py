"""Each quality check reacts to a controlled defect added with ffmpeg to a real clip, and not to the clean
original. The clip: 4 s of talking_hdtf_aoc.mp4 (a woman talking to camera, 512x512, speech)."""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ffmpeg

SRC = "video/talking_hdtf_aoc.mp4"
SECONDS = 4.0

SRT = """1
00:00:00,000 --> 00:00:01,900
So this is what we were talking about

2
00:00:02,000 --> 00:00:04,000
and nobody believed it at the time
"""

# name -> (ffmpeg video filter or a builder key, check that must fail, score key)
DEFECTS = {
    "blurred": ("gblur=sigma=5", "blurry", "sharpness"),
    "darkened": ("eq=brightness=-0.32:contrast=0.6", "too_dark", "brightness"),
    "colour_shifted": ("colorchannelmixer=rr=1.0:gg=0.8:bb=0.45", "colour_cast", "colour_cast"),
    "flickering": ("eq=brightness='0.10*(2*mod(n\\,2)-1)':eval=frame", "flicker", "flicker"),
    "frozen": ("tpad=stop_mode=clone:stop_duration=2.5,trim=duration=4", "frozen", "frozen_s"),
    "letterboxed": ("scale=512:288,pad=512:512:0:112:black", "letterbox", "border_share"),
    "picture_in_picture": ("pip", "picture_in_picture", "pip_score"),
    "subtitles": ("subs", "text_overlay", "text_score"),
}


def make_clip(media_dir: Path, out: Path, vf: str | None, tmp: Path) -> Path:
    src = str(media_dir / SRC)
    enc = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "aac", "-t", f"{SECONDS}"]
    if vf == "pip":
        inset = str(media_dir / "video/talking_face_3.mp4")
        ffmpeg("-i", src, "-i", inset, "-filter_complex",
               "[1:v]scale=180:180,setsar=1[i];[0:v][i]overlay=x=W-w-24:y=24:shortest=1[v]",
               "-map", "[v]", "-map", "0:a", *enc, str(out))
    elif vf == "subs":
        srt = tmp / "subs.srt"
        srt.write_text(SRT)
        ffmpeg("-i", src, "-vf", f"subtitles={srt}:force_style='FontSize=22'", *enc, str(out))
    elif vf and vf.startswith("tpad"):
        # 1.5 s of motion, then the last frame held for 2.5 s (a stalled stream)
        ffmpeg("-t", "1.5", "-i", src, "-i", src, "-filter_complex", f"[0:v]{vf}[v]", "-map", "[v]", "-map", "1:a",
               *enc, str(out))
    elif vf:
        ffmpeg("-i", src, "-vf", vf, *enc, str(out))
    else:
        ffmpeg("-i", src, *enc, str(out))
    return out


def score(path: Path, settings) -> dict:
    from operators.base import VideoTask, run_operator
    from operators.probe import ProbeOperator
    from operators.shots import ShotOperator

    task = run_operator(ProbeOperator(settings), VideoTask(uri=str(path)), 300)
    task = run_operator(ShotOperator(settings), task, 300)
    assert task.ok, task.rejects
    assert len(task.shots) == 1, [(s["start_frame"], s["cut_in"]) for s in task.shots]
    return task.shots[0]


@pytest.fixture(scope="module")
def clips(media_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("defects")
    out = {"clean": make_clip(media_dir, d / "clean.mp4", None, d)}
    for name, (vf, _, _) in DEFECTS.items():
        out[name] = make_clip(media_dir, d / f"{name}.mp4", vf, d)
    return out


@pytest.fixture(scope="module")
def scored(clips, model_dir):
    from pipeline.config import Settings

    s = Settings()
    s.models.dir = str(model_dir)
    return {name: score(p, s) for name, p in clips.items()}


def test_clean_clip_is_kept(scored):
    shot = scored["clean"]
    assert shot["kept"], (shot["reason"], shot["quality"])


PIP_XFAIL = pytest.mark.xfail(reason="inset detection is a weak edge heuristic: a borderless inset on a similar "
                               "background scores 0.375 (< max_pip_score 0.45) while busy clean scenes reach 0.33; "
                               "4 of 13 constructed insets pass (python -m bench.shots_quality --pip); "
                               "see docs/QUALITY.md", strict=False)


@pytest.mark.parametrize("name", [pytest.param(n, marks=PIP_XFAIL) if n == "picture_in_picture" else n for n in DEFECTS])
def test_defect_fails_its_check(scored, settings, name):
    from operators.quality import decide_shot

    _, reason, key = DEFECTS[name]
    shot = scored[name]
    clean = scored["clean"]["quality"]
    q = shot["quality"]
    assert shot["reason"] == reason, f"{name}: reason {shot['reason']!r}, {key}={q.get(key)} (clean {clean.get(key)})"
    # the score moved in the failing direction relative to the clean original
    assert decide_shot(clean, None, settings) == ""
    assert q[key] != pytest.approx(clean[key], rel=0.05)


def test_inset_score_rises_with_an_inset(scored):
    """The picture-in-picture score reacts to the inset even where it stays under the threshold."""
    assert scored["picture_in_picture"]["quality"]["pip_score"] > scored["clean"]["quality"]["pip_score"] + 0.2


def test_audio_scores_of_clean_clip(scored):
    q = scored["clean"]["quality"]
    assert q["speech_share"] > 0.5          # she talks throughout (Silero VAD)
    assert q["loudness_dbfs"] > -40
    assert q["clipping_share"] < 0.001
    assert q["silence_share"] < 0.5


def test_silent_and_clipped_audio(media_dir, tmp_path, settings):
    """Audio checks: a muted track is 'silent'; a track amplified into clipping is 'audio_clipping'."""
    src = str(media_dir / SRC)
    muted = tmp_path / "muted.mp4"
    ffmpeg("-i", src, "-t", "4", "-af", "volume=0", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(muted))
    loud = tmp_path / "loud.mp4"
    ffmpeg("-i", src, "-t", "4", "-af", "volume=30dB,alimiter=limit=1:level=false,volume=3", "-c:v", "libx264",
           "-preset", "veryfast", "-c:a", "pcm_s16le", str(loud.with_suffix(".mov")))
    s_muted = score(muted, settings)
    s_loud = score(loud.with_suffix(".mov"), settings)
    assert s_muted["reason"] == "silent", s_muted["quality"]
    assert s_muted["quality"]["speech_share"] < 0.05
    assert s_loud["reason"] == "audio_clipping", s_loud["quality"]
