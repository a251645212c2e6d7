"""Benchmark: shot detection + quality scoring vs one plain ffmpeg decode of the same files.

    python -m bench.shots_quality [FILES...] [--repeat N]

Default files: the sample videos of ../shared/media (video/*.mp4 and shots/*.mp4). Prints, per file and in
total, wall and CPU seconds of the shots stage (probe excluded, models loaded once beforehand, audio
decode + VAD included) and of `ffmpeg -i FILE -f null -` (video and audio decoded), and their ratios.
Each measurement is the best of --repeat runs (the machine may be shared).
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args(argv)
    shared = Path(os.environ.get("LPM_SHARED_DIR", REPO.parent / "shared"))
    files = args.files or sorted(glob.glob(str(shared / "media" / "video" / "*.mp4")) + glob.glob(str(shared / "media" / "shots" / "*.mp4")))
    os.environ.setdefault("LPM_MODEL_DIR", str(shared / "models"))

    from operators.probe import ProbeOperator
    from operators.shots import ShotOperator
    from pipeline.config import Settings

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
