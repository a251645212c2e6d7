"""Benchmark + report of the faces / references / captions / embeddings stages on real media.

Runs the whole registered pipeline in-process (no Ray) on the given videos (default: every video in
../shared/media/video) and prints, per video, the time of each issue-6 stage and, per clip, what it got:
references by kind, views, expression labels, caption, and whether any reference lies inside its clip.

    .venv/bin/python -m bench.references [VIDEO ...] [--out DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

STAGES = ("faces", "references", "captions", "embeddings")


def main(argv=None) -> int:
    from schemas.settings import Settings
    from pipeline.runner import run
    from pipeline.store import OutputStore

    ap = argparse.ArgumentParser()
    ap.add_argument("videos", nargs="*")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    videos = args.videos or sorted(str(p) for p in (REPO.parent / "shared" / "media" / "video").glob("*.mp4"))
    out = args.out or tempfile.mkdtemp(prefix="lpm-bench-refs-")
    settings = Settings()
    settings.run.resume = False
    t0 = time.time()
    summary = run(videos, out, settings, use_ray=False)
    wall = time.time() - t0
    store = OutputStore(out)
    clips = store.read_table("clips").to_pylist()
    videos_t = {v["video_id"]: v for v in store.read_table("videos").to_pylist()}
    print(f"{len(videos)} videos, {len(clips)} clips, wall {wall:.1f} s; stage seconds (sum over videos):")
    for k in STAGES:
        print(f"  {k:11s} {summary['timings_s']['stages_sum'].get(k, 0.0):7.2f}")
    print(f"  post passes {summary['post_passes']}")
    inside = 0
    for c in sorted(clips, key=lambda c: (videos_t[c["video_id"]]["uri"], c["start_s"])):
        refs = c["references"] or []
        kinds = {k: sum(1 for r in refs if r["kind"] == k) for k in ("global", "body", "expression")}
        views = [r["label"] for r in refs if r["kind"] == "body"]
        exprs = [r["label"] for r in refs if r["kind"] == "expression"]
        bad = [r for r in refs if c["start_s"] <= r["source_time_s"] < c["end_s"]]
        inside += len(bad)
        ms = dict(c["motion_stats"] or [])
        print(f"{Path(videos_t[c['video_id']]['uri']).name:36s} shot {c['shot_index']} track {c['track_id']} "
              f"{c['start_s']:5.2f}-{c['end_s']:5.2f}s id {str(c['identity_id'])[-6:]} refs {kinds} views {views} "
              f"expr {exprs} motion {ms.get('motion_intensity', float('nan')):.2f}")
        print(f"    caption: {c['caption']}")
    rejects = store.read_table("rejects").to_pylist()
    mine = [r for r in rejects if r["stage"] in (*STAGES, "dedupe")]
    print(f"references inside their own clip: {inside}; rejects by issue-6 stages: "
          f"{[(r['stage'], r['reason']) for r in mine]}")
    print(f"output: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
