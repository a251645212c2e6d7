"""Shot detection on composites built at test time from ../shared/media with known cut frames.

Eight clips of different sizes, frame rates and codecs are normalised to one stream (640x360, 25 fps),
concatenated with hard cuts, one ffmpeg xfade cross-dissolve and one fade through black. The true cut
of a gradual transition is its middle frame. Metric: cut F1 with a tolerance of +-2 frames.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from conftest import ffmpeg

FPS = 25
# (file, start second, seconds) - windows without cuts of their own
SEGMENTS = [
    ("video/talking_face_1.mp4", 0.5, 3.2),       # 700x700 h264, 22 fps avg (VFR)
    ("video/interview_two_people.mp4", 2.0, 3.6),  # 1280x720 h264 25 fps
    ("video/talking_hdtf_aoc.mp4", 1.0, 3.4),      # 512x512 mpeg4
    ("video/silent_film_music.mp4", 1.0, 3.0),     # 640x360 b/w
    ("video/talking_face_4.mp4", 0.5, 3.3),        # 700x700 30 fps
    ("video/crowd_no_speech_1080p.mp4", 0.2, 3.4), # 1920x1080
    ("shots/issue-195-aspect-ratio.mp4", 3.2, 3.0),  # 704x576 non-square pixels (own cuts at 2.8 s, 6.8 s)
    ("video/talking_face_2.mp4", 0.5, 3.5),        # 844x844
]
XFADE_AFTER = 2  # cross-dissolve between segment 2 and 3 (0-based)
XFADE_S = 1.0
FADE_AFTER = 5   # fade out/in through black between segment 5 and 6
FADE_S = 0.6     # each of fade out and fade in


def build_composite(media_dir: Path, out: Path) -> list[int]:
    """Write the composite; return the true cut frames (first frame of each new shot / transition middle)."""
    args: list[str] = []
    filters = []
    for i, (name, ss, dur) in enumerate(SEGMENTS):
        args += ["-ss", f"{ss}", "-t", f"{dur + 0.5}", "-i", str(media_dir / name)]
        n = int(round(dur * FPS))
        chain = (f"[{i}:v]fps={FPS},scale=640:360:force_original_aspect_ratio=decrease,pad=640:360:(ow-iw)/2:(oh-ih)/2,"
                 f"setsar=1,format=yuv420p,trim=start_frame=0:end_frame={n},setpts=PTS-STARTPTS")
        if i == FADE_AFTER:
            chain += f",fade=t=out:start_frame={n - int(FADE_S * FPS)}:nb_frames={int(FADE_S * FPS)}"
        if i == FADE_AFTER + 1:
            chain += f",fade=t=in:start_frame=0:nb_frames={int(FADE_S * FPS)}"
        filters.append(chain + f"[v{i}]")
    lengths = [int(round(d * FPS)) for _, _, d in SEGMENTS]
    # cross-dissolve of segments XFADE_AFTER and XFADE_AFTER+1 into one stream
    a, b = XFADE_AFTER, XFADE_AFTER + 1
    off = lengths[a] / FPS - XFADE_S
    filters.append(f"[v{a}][v{b}]xfade=transition=fade:duration={XFADE_S}:offset={off}[x]")
    labels = []
    for i in range(len(SEGMENTS)):
        if i == a:
            labels.append("[x]")
        elif i == b:
            continue
        else:
            labels.append(f"[v{i}]")
    filters.append("".join(labels) + f"concat=n={len(labels)}:v=1:a=0[out]")
    ffmpeg(*args, "-filter_complex", ";".join(filters), "-map", "[out]", "-c:v", "libx264", "-preset", "veryfast",
           "-crf", "20", "-r", str(FPS), str(out), timeout=300)
    cuts = []
    pos = 0
    xf = int(round(XFADE_S * FPS))
    for i, n in enumerate(lengths[:-1]):
        pos += n
        if i == a:
            cuts.append(pos - xf + xf // 2)  # middle of the cross-dissolve
            pos -= xf
        else:
            cuts.append(pos)  # hard cut, or the first frame after a fade out (the middle of the black dip)
    return cuts


def f1_at(pred: list[int], truth: list[int], tol: int) -> tuple[float, list[int], list[int]]:
    """F1 of predicted vs true cuts (one-to-one greedy matching within tol frames); misses, extras."""
    used = set()
    tp = 0
    for t in truth:
        best = None
        for j, p in enumerate(pred):
            if j in used or abs(p - t) > tol:
                continue
            if best is None or abs(p - t) < abs(pred[best] - t):
                best = j
        if best is not None:
            used.add(best)
            tp += 1
    misses = [t for t in truth if not any(abs(p - t) <= tol for p in pred)]
    extras = [p for j, p in enumerate(pred) if j not in used]
    prec = tp / len(pred) if pred else 1.0
    rec = tp / len(truth) if truth else 1.0
    f1 = 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)
    return f1, misses, extras


@pytest.fixture(scope="module")
def composite(media_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("composite") / "composite.mp4"
    truth = build_composite(media_dir, out)
    return out, truth


def detect_cuts(path: Path, settings) -> list[int]:
    from operators.shots import merge_cuts
    from test_shots import decode_and_detect

    cuts, _ = decode_and_detect(path, settings)
    return [c.frame for c in merge_cuts(cuts, settings.shots.min_scene_len_frames)]


def test_composite_cut_f1(composite, settings):
    path, truth = composite
    assert len(truth) == len(SEGMENTS) - 1
    pred = detect_cuts(path, settings)
    f1, misses, extras = f1_at(pred, truth, tol=2)
    assert f1 >= 0.95, f"F1 {f1:.3f}: truth {truth}, detected {pred}, missed {misses}, extra {extras}"


def test_content_detector_alone_misses_the_dissolve(composite, settings):
    """Why a gradual-transition detector is needed: content alone does not find the cross-dissolve."""
    path, truth = composite
    settings.shots.detectors = ["content"]
    pred = detect_cuts(path, settings)
    xf_cut = truth[XFADE_AFTER]
    assert not any(abs(p - xf_cut) <= 2 for p in pred), pred


def test_f1_metric():
    assert f1_at([10, 50], [10, 50], 2)[0] == 1.0
    assert f1_at([12, 50, 80], [10, 50], 2)[0] == pytest.approx(0.8)
    assert f1_at([13], [10], 2)[0] == 0.0
