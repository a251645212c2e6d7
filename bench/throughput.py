"""Throughput of the whole pipeline (issue 19, item 6): realtime factor, CPU utilisation, CPU-seconds per
minute of video per stage, peak memory; scaling from 1 to 2 Ray workers on a real local cluster; and
memory on long inputs.

    python -m bench.throughput [--media DIR | --input F ...] [--config FILE] [--runs default,workers] \
        [--workers 1 2] [--long 5 20 60] [--json OUT.json]

Each run is ``lpm-curate run`` in a child process on a fresh output folder, measured from outside
(bench/common.measure: wall, CPU of the whole process tree, peak summed RSS of the tree) and by the
machine's own counters (psutil.cpu_times over the run: counts Ray processes started outside the tree,
e.g. the ``ray start`` cluster of the scaling runs). From the run's summary.json: seconds of video,
per-stage CPU-seconds (timings_s.stages_cpu) turned into CPU-s per minute of video.

* default: the sample videos (``--media``, default ../shared/media/video) with the given config
  (default jobs/configs/laptop.yaml) on an embedded local Ray.
* workers: the same inputs on ``ray start --head --num-cpus N`` for each N of --workers, run with
  ``--address``; prints each wall time and the speed-up of the largest N over the smallest.
* long: for each M of --long, one input of M minutes made by concatenating the sample conversation
  videos (re-encoded once to 640x360, 25 fps, into a base of about a minute, then repeated with stream
  copy), run as ``default``; prints peak RSS per length (flat in length is the goal).

Prints one JSON object (and writes it to --json). Timings on a 2-core machine depend on what else runs:
run it alone.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from common import default_media_dir, measure, media_seconds  # noqa: E402

VIDEO_EXT = (".mp4", ".mov", ".mkv", ".webm", ".avi")
# real conversation material the long input is made of (../shared/media/SOURCES.md)
LONG_SOURCES = ("interview_two_people.mp4", "talking_face_1.mp4", "talking_face_3.mp4", "talking_hdtf_aoc.mp4",
                "talking_face_5.mp4", "talking_hdtf_hill.mp4")


def _env() -> dict:
    return dict(os.environ, RAY_USAGE_STATS_ENABLED="0", PYTHONPATH=str(REPO), YOLO_OFFLINE="1", HF_HUB_OFFLINE="1")


def _machine_cpu() -> float:
    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0.0)


def run_pipeline(inputs: list[str], config: str | None, address: str | None = None, num_cpus: float | None = None) -> dict:
    """One measured ``lpm-curate run`` on a fresh folder: wall, CPU, peak RSS, realtime factor, per-stage CPU."""
    out = tempfile.mkdtemp(prefix="lpm-throughput-")
    cmd = [sys.executable, "-m", "pipeline.cli", "run", "--input", *inputs, "--output", out, "-q"]
    if config:
        cmd += ["--config", config]
    if address:
        cmd += ["--address", address]
    if num_cpus:
        cmd += ["--num-cpus", str(num_cpus)]
    cores = psutil.cpu_count() or 1
    c0 = _machine_cpu()
    try:
        m = measure(cmd, env=_env(), cwd=str(REPO))
        machine_cpu = _machine_cpu() - c0
        summary = json.loads((Path(out) / "summary.json").read_text())
    finally:
        shutil.rmtree(out, ignore_errors=True)
    video_s = float(summary.get("video_s") or 0.0)
    minutes = max(1e-9, video_s / 60.0)
    stages_cpu = (summary.get("timings_s") or {}).get("stages_cpu") or {}
    return {
        "inputs": len(inputs), "video_s": round(video_s, 1), "wall_s": round(m["wall_s"], 1),
        "realtime_factor": round(video_s / max(1e-9, m["wall_s"]), 3),
        "realtime_factor_in_run": summary.get("realtime_factor"),  # the run's own (from its start, no interpreter start-up)
        "tree_cpu_s": round(m["cpu_s"], 1), "machine_cpu_s": round(machine_cpu, 1), "cores": cores,
        "cpu_utilisation_tree": round(m["cpu_s"] / max(1e-9, m["wall_s"] * cores), 3),
        "cpu_utilisation_machine": round(machine_cpu / max(1e-9, m["wall_s"] * cores), 3),
        "peak_rss_mb_tree": round(m["peak_rss_mb"], 0),
        "stage_cpu_s_per_video_min": {k: round(float(v) / minutes, 2) for k, v in sorted(stages_cpu.items(), key=lambda kv: -kv[1])},
        "stage_cpu_s_total_per_video_min": round(sum(float(v) for v in stages_cpu.values()) / minutes, 2),
        "funnel": summary.get("funnel"), "rejected_videos": summary.get("rejected_videos"),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_on_cluster(inputs: list[str], config: str | None, num_cpus: int) -> dict:
    """``ray start --head --num-cpus N`` (its own temp dir and port), one measured run with --address, ray stop."""
    ray_bin = str(Path(sys.executable).with_name("ray"))
    port = _free_port()
    tmp = tempfile.mkdtemp(prefix="lpm-ray-", dir="/tmp")
    env = _env()
    subprocess.run([ray_bin, "start", "--head", f"--num-cpus={num_cpus}", f"--port={port}", "--include-dashboard=false",
                    f"--temp-dir={tmp}", "--disable-usage-stats"], env=env, check=True, capture_output=True, timeout=180)
    try:
        time.sleep(2)
        r = run_pipeline(inputs, config, address=f"127.0.0.1:{port}")
    finally:
        subprocess.run([ray_bin, "stop", "--force"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)
    r["ray_workers"] = num_cpus
    return r


def long_input(minutes: float, media: str, work: Path) -> str:
    """An input of `minutes` minutes of real conversation footage (see the module docstring)."""
    base = work / "long_base.mp4"
    if not base.exists():
        srcs = [os.path.join(media, n) for n in LONG_SOURCES if os.path.exists(os.path.join(media, n))]
        if not srcs:
            raise SystemExit(f"no conversation sources in {media}")
        args = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
        for s in srcs:
            args += ["-i", s]
        chains = "".join(f"[{i}:v]scale=640:360:force_original_aspect_ratio=decrease,pad=640:360:(ow-iw)/2:(oh-ih)/2,"
                         f"setsar=1,fps=25,format=yuv420p[v{i}];[{i}:a]aresample=16000,aformat=channel_layouts=mono[a{i}];"
                         for i in range(len(srcs)))
        cat = "".join(f"[v{i}][a{i}]" for i in range(len(srcs))) + f"concat=n={len(srcs)}:v=1:a=1[v][a]"
        subprocess.run(args + ["-filter_complex", chains + cat, "-map", "[v]", "-map", "[a]", "-c:v", "libx264",
                               "-preset", "veryfast", "-crf", "23", "-g", "50", "-c:a", "aac", "-b:a", "64k", str(base)],
                       check=True, timeout=900)
    out = work / f"long_{minutes:g}min.mp4"
    if not out.exists():
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-stream_loop", "-1", "-i", str(base), "-t",
                        str(minutes * 60), "-c", "copy", str(out)], check=True, timeout=900)
    return str(out)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--media", default=default_media_dir())
    ap.add_argument("--input", nargs="+", help="input files (default: every video under --media)")
    ap.add_argument("--config", default=str(REPO / "jobs" / "configs" / "laptop.yaml"))
    ap.add_argument("--runs", default="default,workers", help="comma list of default, workers, long")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--long", type=float, nargs="+", default=[5.0], help="minutes of each long input")
    ap.add_argument("--work", default="/tmp/lpm-throughput-media", help="where long inputs are made (kept)")
    ap.add_argument("--json", help="also write the result here")
    args = ap.parse_args(argv)
    inputs = args.input or sorted(f for f in glob.glob(os.path.join(args.media, "*")) if f.lower().endswith(VIDEO_EXT))
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    res: dict = {"machine": {"cores": psutil.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1)},
                 "config": args.config, "media_s": round(media_seconds(inputs), 1)}
    if "default" in runs:
        res["default"] = run_pipeline(inputs, args.config)
        print(json.dumps({"default": res["default"]}), flush=True)
    if "workers" in runs:
        res["workers"] = [run_on_cluster(inputs, args.config, n) for n in sorted(set(args.workers))]
        for r in res["workers"]:
            print(json.dumps({"workers": r["ray_workers"], "wall_s": r["wall_s"], "realtime_factor": r["realtime_factor"],
                              "cpu_utilisation_machine": r["cpu_utilisation_machine"]}), flush=True)
        if len(res["workers"]) >= 2:
            lo, hi = res["workers"][0], res["workers"][-1]
            res["scaling"] = {"workers": [lo["ray_workers"], hi["ray_workers"]],
                              "speedup": round(lo["wall_s"] / max(1e-9, hi["wall_s"]), 3),
                              "efficiency": round(lo["wall_s"] / max(1e-9, hi["wall_s"]) / (hi["ray_workers"] / lo["ray_workers"]), 3)}
    if "long" in runs:
        work = Path(args.work)
        work.mkdir(parents=True, exist_ok=True)
        res["long"] = []
        for m in args.long:
            r = run_pipeline([long_input(m, args.media, work)], args.config)
            r["minutes"] = m
            res["long"].append(r)
            print(json.dumps({"long_minutes": m, "wall_s": r["wall_s"], "realtime_factor": r["realtime_factor"],
                              "peak_rss_mb_tree": r["peak_rss_mb_tree"]}), flush=True)
    print(json.dumps(res, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
