"""Benchmark: shot detection + quality scoring vs one plain ffmpeg decode of the same files.

    python -m bench.shots_quality [FILES...] [--repeat N]
    python -m bench.shots_quality --pip          # picture-in-picture scores: constructed insets vs clean videos

Default files: the sample videos of ../shared/media (video/*.mp4 and shots/*.mp4). Prints, per file and in
total, wall and CPU seconds of the shots stage (probe excluded, models loaded once beforehand, audio
decode + VAD included) and of `ffmpeg -i FILE -f null -` (video and audio decoded), and their ratios.
Each measurement is the best of --repeat runs (the machine may be shared).

--pip builds picture-in-picture composites with ffmpeg from ../shared/media (the 13 fixed PIP_CASES:
another clip scaled to 15-35% of the width, overlaid near each of the four corners, with and without a thin
border, on static-camera and moving backgrounds; and 16 random_cases: 12-40%, corners or anywhere, 0-8 px
borders in random colours; 4 s each (10 s on hosts with cuts), in a temporary folder) and prints the
pip_score of every shot of every composite and of every clean sample video, with the margin to
quality.max_pip_score. None of them is used to train the inset model or to choose the threshold.
"""
from __future__ import annotations

import argparse
import glob
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _cpu() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def ffmpeg_decode(path: str) -> tuple[float, float]:
    import subprocess

    c0, t0 = _cpu(), time.monotonic()
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-i", path, "-f", "null", "-"],
                   check=True, timeout=600)
    return time.monotonic() - t0, _cpu() - c0


def shots_stage(op, probe, path: str):
    from operators.base import VideoTask, run_operator

    task = run_operator(probe, VideoTask(uri=path), 600)
    c0, t0 = _cpu(), time.monotonic()
    task = run_operator(op, task, 3600)
    return time.monotonic() - t0, _cpu() - c0, task


# (host, inset source, inset width / host width, corner, border px, margin / host width)
PIP_CASES = [
    ("video/talking_hdtf_aoc.mp4", "video/talking_face_3.mp4", 0.35, "tr", 0, 0.04),
    ("video/talking_hdtf_aoc.mp4", "video/talking_face_1.mp4", 0.20, "bl", 0, 0.04),
    ("video/talking_hdtf_aoc.mp4", "video/stage_performer_audience_music.mp4", 0.30, "br", 3, 0.04),
    ("video/interview_two_people.mp4", "video/talking_face_5.mp4", 0.15, "tl", 0, 0.04),
    ("video/interview_two_people.mp4", "video/talking_hdtf_hill.mp4", 0.25, "br", 4, 0.04),
    ("video/crowd_no_speech_1080p.mp4", "video/talking_face_2.mp4", 0.20, "tr", 0, 0.04),
    ("video/crowd_no_speech_1080p.mp4", "video/talking_face_4.mp4", 0.30, "bl", 6, 0.04),
    ("shots/goldeneye-vfr-drop3.mp4", "video/talking_face_1.mp4", 0.22, "tl", 0, 0.04),
    ("video/stage_performer_audience_music.mp4", "video/talking_hdtf_aoc.mp4", 0.25, "tr", 0, 0.04),
    ("video/stage_performer_audience_music.mp4", "video/interview_two_people.mp4", 0.33, "bl", 2, 0.04),
    ("video/talking_face_4.mp4", "video/silent_film_music.mp4", 0.30, "br", 0, 0.04),
    ("video/talking_face_2.mp4", "video/talking_face_5.mp4", 0.18, "tl", 2, 0.04),
    ("video/talking_face_1.mp4", "video/talking_hdtf_hill.mp4", 0.25, "tr", 0, 0.0),
]


def random_cases(seed: int = 2027, n: int = 16) -> list[tuple]:
    """Random insets for the held-out report (never used to train or tune): host and inset source among the
    sample videos, 12-40% of the width, a corner (margin 0-6%) or anywhere (a position given as fractions),
    border 0-8 px in a random colour."""
    import random

    vids = ["video/talking_hdtf_aoc.mp4", "video/talking_hdtf_hill.mp4", "video/interview_two_people.mp4",
            "video/crowd_no_speech_1080p.mp4", "video/stage_performer_audience_music.mp4", "video/silent_film_music.mp4",
            "video/failing_audio_stream.mp4", "shots/testvideo.mp4", "shots/issue-195-aspect-ratio.mp4",
            "shots/goldeneye-vfr-drop3.mp4"] + [f"video/talking_face_{i}.mp4" for i in range(1, 6)]
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        host, inset = rng.sample(vids, 2)
        pos = rng.choice(["tl", "tr", "bl", "br"]) if rng.random() < 0.7 else (round(rng.uniform(0.1, 0.9), 2), round(rng.uniform(0.1, 0.9), 2))
        border = 0 if rng.random() < 0.5 else rng.randint(1, 8)
        colour = "0x%06x" % rng.randrange(1 << 24)
        out.append((host, inset, round(rng.uniform(0.12, 0.40), 2), pos, border, round(rng.uniform(0.0, 0.06), 3), colour))
    return out


def make_pip(media: Path, host: str, inset: str, frac: float, corner, border: int, margin: float,
             out: Path, seconds: float = 4.0, colour: str = "white") -> None:
    """Overlay `inset` (scaled to frac of the host width, optional border) near a corner of `host` ("tl", ...)
    or, with corner = (fx, fy), with its centre at that fraction of the host's width and height."""
    import subprocess

    import av

    def size(p):
        with av.open(str(p)) as c:
            s = c.streams.video[0]
            return s.codec_context.width, s.codec_context.height

    W, H = size(media / host)
    w0, h0 = size(media / inset)
    iw = int(round(W * frac / 2)) * 2
    ih = int(round(iw * h0 / w0 / 2)) * 2
    m = int(round(margin * W))
    tw, th = iw + 2 * border, ih + 2 * border
    if isinstance(corner, str):
        x = m if corner[1] == "l" else W - tw - m
        y = m if corner[0] == "t" else H - th - m
    else:
        x = min(max(0, int(corner[0] * W - tw / 2)), W - tw)
        y = min(max(0, int(corner[1] * H - th / 2)), H - th)
    chain = f"[1:v]scale={iw}:{ih},setsar=1" + (f",pad={tw}:{th}:{border}:{border}:color={colour}" if border else "")
    fc = f"{chain}[i];[0:v][i]overlay=x={x}:y={y}:shortest=1,format=yuv420p[v]"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(media / host), "-stream_loop", "-1",
                    "-i", str(media / inset), "-filter_complex", fc, "-map", "[v]", "-map", "0:a?", "-t", str(seconds),
                    "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-c:a", "aac", str(out)],
                   check=True, timeout=300)


def pip_report(shared: Path, clean: list[str]) -> int:
    import tempfile

    from operators.base import VideoTask, run_operator
    from operators.probe import ProbeOperator
    from operators.shots import ShotOperator
    from schemas.settings import Settings

    s = Settings()
    s.probe.require_audio = False
    limit = s.quality.max_pip_score
    op, probe = ShotOperator(s), ProbeOperator(s)
    op.ensure_setup()
    if op.models.pip is None:
        print(f"inset model missing: {op.models.notes.get('pip-inset')}")

    def scores(path: str) -> list[float]:
        task = run_operator(op, run_operator(probe, VideoTask(uri=path), 600), 600)
        return [sh["quality"].get("pip_score", float("nan")) for sh in task.shots
                if sh["quality"].get("duration_s", 0) >= s.shots.min_clip_s - 1e-6]

    print(f"quality.max_pip_score = {limit}  (inset margin = score - threshold, must be > 0; clean margin = "
          f"threshold - score, must be > 0)")
    print("None of these composites was used to train the inset model or to choose the threshold (the model "
          "trains on synthetic\ninsets composited in numpy: python -m train.pip_inset; its card has the "
          "host-held-out folds).")
    groups = {"fixed": [(*c, "white") for c in PIP_CASES], "random": random_cases()}
    found: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for group, cases in groups.items():
            print(f"-- {group} insets ({'PIP_CASES' if group == 'fixed' else 'random_cases(seed 2027)'})")
            for i, (host, inset, frac, corner, border, margin, colour) in enumerate(cases):
                out = Path(tmp) / f"pip_{group}{i:02d}.mp4"
                # the stage video has cuts: take all of it so that it has shots of at least min_clip_s
                make_pip(shared / "media", host, inset, frac, corner, border, margin, out,
                         seconds=10.0 if "stage" in host or "testvideo" in host or "issue-195" in host else 4.0,
                         colour=colour)
                sc = scores(str(out))
                where = corner if isinstance(corner, str) else f"@{corner[0]:.2f},{corner[1]:.2f}"
                name = f"{Path(host).stem} + {Path(inset).stem} {int(round(frac * 100))}% {where} b{border}"
                lo = min(sc) if sc else float("nan")  # the inset is in every shot: each shot counts
                found.setdefault(group, []).extend(sc)
                print(f"inset  {name:<72} pip {' '.join(f'{v:.2f}' for v in sc):<22} margin {lo - limit:+.2f}")
    print("-- clean sample videos (also the negatives the shipped model was fitted on)")
    cl, cl_shots = [], []
    for f in clean:
        sc = scores(f)
        hi = max(sc) if sc else float("nan")
        cl.append(hi)
        cl_shots.extend(sc)
        print(f"clean  {Path(f).name:<72} pip {' '.join(f'{v:.2f}' for v in sc):<22} margin {limit - hi:+.2f}")
    for group, vals in found.items():
        ok = [v for v in vals if v > limit]
        print(f"{group} inset shots over the threshold: {len(ok)}/{len(vals)} (scores {min(vals):.2f}-{max(vals):.2f})")
    fl = [v for v in cl if v > limit]
    fin = [v for v in cl if v == v]
    print(f"clean videos over it: {len(fl)}/{len(cl)}, clean shots {sum(v > limit for v in cl_shots)}/{len(cl_shots)} "
          f"(highest shot: {max(fin):.2f})")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--pip", action="store_true", help="picture-in-picture scores of constructed insets and clean videos")
    args = ap.parse_args(argv)
    shared = Path(os.environ.get("LPM_SHARED_DIR", REPO.parent / "shared"))
    files = args.files or sorted(glob.glob(str(shared / "media" / "video" / "*.mp4")) + glob.glob(str(shared / "media" / "shots" / "*.mp4")))
    os.environ.setdefault("LPM_MODEL_DIR", str(shared / "models"))
    if args.pip:
        return pip_report(shared, files)

    from operators.probe import ProbeOperator
    from operators.shots import ShotOperator
    from schemas.settings import Settings

    s = Settings()
    s.probe.require_audio = False
    op = ShotOperator(s)
    op.ensure_setup()
    probe = ProbeOperator(s)
    rows = []
    print(f"{'file':<40}{'frames':>7}{'shots':>6}  {'ffmpeg wall':>11}{'cpu':>7}  {'stage wall':>10}{'cpu':>7}  {'ratio wall':>10}{'cpu':>6}")
    for f in files:
        fw = fc = sw = sc = float("inf")
        task = None
        for _ in range(max(1, args.repeat)):
            w, c = ffmpeg_decode(f)
            fw, fc = min(fw, w), min(fc, c)
            w, c, task = shots_stage(op, probe, f)
            sw, sc = min(sw, w), min(sc, c)
        n = len(task.scratch.get("frame_times", []))
        rows.append((fw, fc, sw, sc))
        print(f"{Path(f).name[:39]:<40}{n:>7}{len(task.shots):>6}  {fw:>11.2f}{fc:>7.2f}  {sw:>10.2f}{sc:>7.2f}  {sw / fw:>10.2f}{sc / fc:>6.2f}"
              + ("" if task.ok else f"  REJECTED {task.video.get('reason')}"))
    FW, FC, SW, SC = (sum(r[i] for r in rows) for i in range(4))
    print(f"{'TOTAL':<40}{'':>7}{'':>6}  {FW:>11.2f}{FC:>7.2f}  {SW:>10.2f}{SC:>7.2f}  {SW / FW:>10.2f}{SC / FC:>6.2f}")
    print(f"shots+quality / plain ffmpeg decode: wall {SW / FW:.2f}x, CPU {SC / FC:.2f}x (aim <= 1.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
