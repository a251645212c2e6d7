"""Measure wall time, CPU time and peak memory of a command and all its descendants (Ray workers included)."""
from __future__ import annotations

import os
import resource
import subprocess
import time

import psutil


def measure(cmd: list[str], env: dict | None = None, poll_s: float = 0.1, cwd: str | None = None) -> dict:
    """Run cmd; sample its process tree: CPU = sum of user+system of every process seen (last sample),
    peak memory = max over samples of the summed RSS of the tree."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    root = psutil.Process(proc.pid)
    cpu: dict[int, float] = {}
    peak = 0
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            procs = []
        rss = 0
        for p in procs:
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    cpu[p.pid] = t.user + t.system + t.children_user + t.children_system
                    rss += p.memory_info().rss
            except psutil.Error:
                continue
        peak = max(peak, rss)
        time.sleep(poll_s)
    wall = time.monotonic() - t0
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed ({proc.returncode}): {err[-2000:]}")
    return {"wall_s": wall, "cpu_s": sum(cpu.values()), "peak_rss_mb": peak / 2**20}


def ffmpeg_decode_floor(files: list[str], threads: int | None = None) -> dict:
    """One plain full decode of every file (video and audio) to the null muxer: the floor of any stage."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    peak = 0
    for f in files:
        args = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error"]
        if threads:
            args += ["-threads", str(threads)]
        args += ["-i", f, "-f", "null", "-"]
        r = measure(args)
        peak = max(peak, r["peak_rss_mb"])
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": peak}


def media_seconds(files: list[str]) -> float:
    total = 0.0
    for f in files:
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", f],
                             capture_output=True, text=True, timeout=60).stdout.strip()
        try:
            total += float(out)
        except ValueError:
            pass
    return total


def default_media_dir() -> str:
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("LPM_MEDIA_DIR", os.path.join(here, "..", "..", "shared", "media", "video"))
