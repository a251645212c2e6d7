"""Benchmark of the demo run against the floor of a plain ffmpeg decode of the same files.

    .venv/bin/python bench/pipeline_demo.py [--media DIR] [--no-ray] [--config FILE]

Prints wall time, CPU time (all processes, Ray workers included) and peak memory of
`lpm-curate run` on the sample videos, the same for `ffmpeg -i F -f null -` over the same files, and
their ratios.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import default_media_dir, ffmpeg_decode_floor, measure, media_seconds  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--media", default=default_media_dir())
    ap.add_argument("--config", default=None)
    ap.add_argument("--no-ray", action="store_true")
    args = ap.parse_args()
    files = sorted(f for f in glob.glob(os.path.join(args.media, "*")) if f.lower().endswith((".mp4", ".mov", ".mkv")))
    secs = media_seconds(files)
    out = tempfile.mkdtemp(prefix="lpm-bench-")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--input", *files, "--output", out]
    if args.config:
        cmd += ["--config", args.config]
    if args.no_ray:
        cmd.append("--no-ray")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=repo)
    try:
        run = measure(cmd, env=env, cwd=repo)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    floor = ffmpeg_decode_floor(files)
    print(f"inputs: {len(files)} files, {secs:.1f} s of video ({args.media})")
    print(f"{'':<28}{'wall s':>10}{'cpu s':>10}{'peak MB':>10}{'x realtime':>12}")
    for name, r in (("lpm-curate run" + (" --no-ray" if args.no_ray else " (ray)"), run), ("ffmpeg -f null decode", floor)):
        print(f"{name:<28}{r['wall_s']:>10.2f}{r['cpu_s']:>10.2f}{r['peak_rss_mb']:>10.0f}{secs / r['wall_s']:>12.2f}")
    print(f"ratio pipeline/ffmpeg: wall {run['wall_s'] / floor['wall_s']:.2f}x, cpu {run['cpu_s'] / floor['cpu_s']:.2f}x")


if __name__ == "__main__":
    main()
