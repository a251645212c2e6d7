"""How `lpm-curate report` and `lpm-curate query` scale: writes a synthetic output folder of N videos
(numeric/label columns filled, no clip media: galleries decode from one real source video), then
measures the report (wall, CPU, peak memory of the process tree) and a few example queries.

    python bench/report_scale.py --videos 500 --clips-per-video 10 --source ../shared/media/video/talking_face_1.mp4
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import measure  # noqa: E402


def write_output(out: str, n_videos: int, clips_per_video: int, source: str) -> None:
    from schemas.settings import Settings
    from pipeline.store import OutputStore

    rng = random.Random(0)
    store = OutputStore(out)
    store.ensure_layout()
    ch = Settings().config_hash()
    classes = ["speak", "listen", "idle", "mixed", None]
    for v in range(n_videos):
        vid = f"bench{v:011d}"
        clips, shots, rejects = [], [], []
        for s in range(clips_per_video + 2):
            kept = s < clips_per_video
            shots.append({"video_id": vid, "shot_index": s, "start_frame": 100 * s, "end_frame": 100 * s + 100,
                          "start_s": 4.0 * s, "end_s": 4.0 * s + 4, "duration_s": 4.0, "kept": kept,
                          "reason": "" if kept else "blurry",
                          "quality": {k: rng.random() * 100 for k in ("sharpness", "brightness", "flicker", "colour_cast")}})
            if not kept:
                rejects.append({"uri": source, "video_id": vid, "stage": "quality", "level": "shot", "reason": "blurry",
                                "message": "synthetic", "shot_index": s, "start_s": 0.5, "end_s": 2.5, "duration_s": 2.0})
                continue
            sh = [rng.random() for _ in range(3)]
            clips.append({"clip_id": f"{vid}-{s}", "video_id": vid, "shot_index": s, "track_id": 0, "start_frame": 0,
                          "end_frame": 75, "start_s": 0.0, "end_s": 3.0, "duration_s": 3.0 + rng.random() * 5, "fps": 25.0,
                          "clip_class": rng.choice(classes), "identity_id": f"{vid}:0", "global_identity_id": f"G{v % 97}",
                          "state_shares": {k: x / sum(sh) for k, x in zip(("speak", "listen", "idle"), sh)},
                          "expression_stats": {"dominant_share": rng.random(), "oscillation": rng.random()},
                          "motion_stats": {"motion_intensity": rng.random()}, "transcript": "a few words " * rng.randint(0, 5)})
        store.write_video(vid, ch, {"videos": [{"video_id": vid, "uri": source, "status": "ok", "duration_s": 60.0,
                                                "width": 524, "height": 524}],
                                    "shots": shots, "clips": clips, "rejects": rejects}, "ok", "", {"probe": 0.1})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=300)
    ap.add_argument("--clips-per-video", type=int, default=10)
    ap.add_argument("--source", required=True, help="a real video the galleries decode from")
    args = ap.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="lpm-bench-report-") as tmp:
        out = os.path.join(tmp, "out")
        t0 = time.monotonic()
        write_output(out, args.videos, args.clips_per_video, os.path.abspath(args.source))
        print(f"wrote {args.videos} videos x {args.clips_per_video} clips in {time.monotonic() - t0:.1f} s")
        res = {"report": measure([py, "-m", "pipeline.cli", "report", out, "--out", os.path.join(tmp, "rep")])}
        for name in ("rejects_by_reason", "hours_per_identity", "clips_per_state"):
            res[f"query {name}"] = measure([py, "-m", "pipeline.cli", "query", out, name])
        size = os.path.getsize(os.path.join(tmp, "rep", "index.html"))
        print(json.dumps({"videos": args.videos, "clips": args.videos * args.clips_per_video, "report_html_bytes": size,
                          **{k: {kk: v.get(kk) for kk in ("wall_s", "cpu_s", "peak_rss_mb")} for k, v in res.items()}},
                         indent=1))


if __name__ == "__main__":
    main()
