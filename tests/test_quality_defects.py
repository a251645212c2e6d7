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
    from schemas.settings import Settings

    s = Settings()
    s.models.dir = str(model_dir)
    return {name: score(p, s) for name, p in clips.items()}


def test_clean_clip_is_kept(scored):
    shot = scored["clean"]
    assert shot["kept"], (shot["reason"], shot["quality"])


@pytest.mark.parametrize("name", list(DEFECTS))
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


@pytest.mark.parametrize("vf,kind,box", [
    ("scale=512:288,setsar=1,pad=512:512:0:112:black", "letterbox", (0, 112, 512, 400)),
    ("crop=288:512:112:0,pad=512:512:112:0:black", "pillarbox", (112, 0, 400, 512)),
])
def test_bars_are_cropped_not_fatal(media_dir, tmp_path, settings, vf, kind, box):
    """Letterbox/pillarbox bars are cropped away: the shot is kept, its active picture is the padded
    content (within 2 decode pixels = 4 source px), and the image scores are those of the content."""
    clip = make_clip(media_dir, tmp_path / f"{kind}.mp4", vf, tmp_path)
    from schemas.settings import Settings

    s = Settings()
    s.models.dir = settings.models.dir
    shot = score(clip, s)
    assert shot["kept"], (shot["reason"], shot["quality"])
    assert shot["border_crop"] == kind
    got = shot["active_box"]
    assert all(abs(g - b) <= 6 for g, b in zip(got, box)), got
    assert all(got[i] >= box[i] - 0.5 for i in (0, 1)) and all(got[i] <= box[i] + 0.5 for i in (2, 3)), f"bars inside {got}"
    assert shot["quality"]["resolution_px"] == pytest.approx(288, abs=8)
    assert shot["quality"]["border_share"] == pytest.approx(1 - 288 / 512, abs=0.03)


def test_inset_score_rises_with_an_inset(scored, settings):
    """The inset scores well above the threshold, the clean original well below it."""
    limit = settings.quality.max_pip_score
    assert scored["picture_in_picture"]["quality"]["pip_score"] > limit + 0.1
    assert scored["clean"]["quality"]["pip_score"] < limit - 0.3


def _frames(path: Path, n: int, every: int = 6) -> list:
    """n gray 256-px frames of a video, each with the frame decoded before it (as the stage feeds them)."""
    import cv2

    from operators.decode import open_video

    out, prev = [], None
    with open_video(str(path), 256, True) as v:
        for f in v.frames(None):
            g = cv2.cvtColor(f.image, cv2.COLOR_BGR2GRAY)
            if prev is not None and f.index % every == 0:
                out.append((g, prev))
            prev = g
            if len(out) >= n:
                break
    return out


def _paste(host, inset, x: int, y: int, border: int = 0, level: int = 255):
    import cv2

    out = host.copy()
    ih, iw = inset.shape
    if border:
        out[y - border:y + ih + border, x - border:x + iw + border] = level
    out[y:y + ih, x:x + iw] = inset
    return cv2.GaussianBlur(out, (3, 3), 0.6)


@pytest.mark.parametrize("where,border", [((170, 14), 0), ((12, 150), 3), ((96, 100), 0)])
def test_inset_window_finds_a_pasted_inset(media_dir, settings, where, border):
    """A window of 8 frames of one talking clip with another clip pasted in (corner, bordered, off-corner):
    the best rectangle is the inset and its probability is over the threshold; the same window without the
    inset has no rectangle over it."""
    import cv2

    from operators.quality import InsetModel, _iou, pip_window

    model = InsetModel.load(settings)
    host = _frames(media_dir / SRC, 8)
    src = _frames(media_dir / "video/talking_face_1.mp4", 8)
    iw = ih = 72
    x, y = where
    small = [(cv2.resize(f, (iw, ih), interpolation=cv2.INTER_AREA), cv2.resize(p, (iw, ih), interpolation=cv2.INTER_AREA))
             for f, p in src]
    frames = [_paste(h, s, x, y, border) for (h, _), (s, _) in zip(host, small)]
    prevs = [_paste(hp, sp, x, y, border) for (_, hp), (_, sp) in zip(host, small)]
    found = pip_window(frames, prevs, model)
    assert found, "no candidate rectangle"
    rect, p = found[0]
    truth = (x - border, y - border, x + iw + border, y + ih + border)
    assert _iou(rect, truth) > 0.6, (rect, truth)
    assert p > settings.quality.max_pip_score, found
    clean = pip_window([h for h, _ in host], [hp for _, hp in host], model)
    assert all(q < settings.quality.max_pip_score - 0.2 for _, q in clean), clean


def test_inset_candidates_geometry():
    """Persistent edges outlining a rectangle give it as a candidate; a panel spanning the full height (split
    screen) or a box wider than half the picture is not an inset candidate."""
    import numpy as np

    from operators.quality import inset_candidates

    h, w = 144, 256

    def outline(x0, y0, x1, y1):
        ph, pv = np.zeros((h, w)), np.zeros((h, w))
        ph[y0, x0:x1 + 1] = ph[y1, x0:x1 + 1] = 1.0
        pv[y0:y1 + 1, x0] = pv[y0:y1 + 1, x1] = 1.0
        return ph, pv

    assert (170, 10, 240, 60) in inset_candidates(*outline(170, 10, 240, 60))
    ph, pv = outline(150, 0, 230, h - 1)          # full-height panel: only its two vertical sides are inside
    assert not any(r[0] == 150 and r[2] == 230 and r[1] <= 1 and r[3] >= h - 2 for r in inset_candidates(ph, pv))
    assert (20, 20, 200, 110) not in inset_candidates(*outline(20, 20, 200, 110))  # 70% of the width


def test_pip_score_needs_one_rectangle_throughout():
    from operators.quality import _pip_score

    r, o = (10, 10, 60, 40), (100, 60, 150, 100)
    assert _pip_score([[(r, 0.9)], [(r, 0.8)], [(r, 0.7)]]) == pytest.approx(0.8)
    assert _pip_score([[(r, 0.9)], [(o, 0.9)], []]) == pytest.approx(0.3)
    assert _pip_score([[(r, 0.9), (o, 0.5)], [(o, 0.6)]]) == pytest.approx(0.55)
    assert _pip_score([]) != _pip_score([])  # NaN without a window


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
