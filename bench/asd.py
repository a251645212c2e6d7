"""Benchmark of the conversation stage: LR-ASD frames per second per core, the cost of each part, and the
stage's cost per minute of video (per person track); the added cost of the sync parts (issue 9).

    python -m bench.asd [--media DIR] [--models DIR] [--threads 1] [--seconds 8]

Runs on one real talking face (talking_hdtf_hill.mp4, 25 fps) with torch limited to --threads cores.
Prints one JSON object: per part seconds per frame and frames/s, and seconds of CPU per minute of video.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--media", default=os.environ.get("LPM_SHARED_DIR", str(REPO.parent / "shared")) + "/media")
    ap.add_argument("--models", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--video", default="video/talking_hdtf_hill.mp4")
    ap.add_argument("--sync-signal", default=None, choices=["head", "av_minus_visual"])
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from models.landmarks import FaceLandmarker
    from models.lr_asd import ASDScorer, crop_faces, mfcc
    from models.vad import SileroVAD
    from operators.asd import ConversationOperator, median_boxes
    from operators.clipmedia import read_clip_audio, read_clip_frames
    from schemas.settings import Settings

    s = Settings()
    if args.models:
        s.models.dir = args.models
    cfg = s.conversation
    if args.sync_signal:
        cfg.sync_signal = args.sync_signal
    src = {"video_uri": str(Path(args.media) / args.video)}
    t0 = time.process_time()
    frames = read_clip_frames(src, size=(384, 384), fps=25)[: int(args.seconds * 25)]
    audio = read_clip_audio(src)[: len(frames) * 640]
    n = len(frames)
    out: dict = {"frames": n, "threads": args.threads, "decode_cpu_s": time.process_time() - t0}

    def timed(name, fn):
        c0, w0 = time.process_time(), time.perf_counter()
        r = fn()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        out[name] = {"cpu_s": round(cpu, 3), "wall_s": round(wall, 3), "frames_per_s_per_core": round(n / max(cpu, 1e-9), 1)}
        return r

    lm = FaceLandmarker.from_settings(s, num_faces=2)
    track = timed("landmarks", lambda: lm.track(frames, 25.0))
    boxes = np.array([f.box if f is not None else [np.nan] * 4 for f in track], np.float32)
    boxes[:, 1] -= 0.12 * (boxes[:, 3] - boxes[:, 1])
    faces = timed("face_crops", lambda: crop_faces(frames, median_boxes(boxes), cfg.crop_scale))
    scorer, rm = ASDScorer.from_settings(s, cfg.asd_checkpoint, windows_s=cfg.windows_s)
    feats = timed("mfcc", lambda: mfcc(audio))
    m = scorer.aligned_length(n, len(feats))  # video and audio cut to their common length, as the stage does
    cache = timed("asd_visual_6windows", lambda: scorer.embed(faces[:m]))
    timed("asd_audio_backend_6windows", lambda: scorer.score_cached(cache, feats))
    op = ConversationOperator(s)
    lags = op.lags()
    head = None
    if cfg.sync_signal == "head" or cfg.offset_signal_name() == "head":
        from models.lr_asd_sync import load_head, sync_scores
        from models.registry import resolve_for

        head = load_head(scorer.net, resolve_for(s, "lr-asd-sync").path)
    if cfg.sync_signal == "head":  # the fine-tuned sync head over the same embeddings
        timed("sync_head", lambda: sync_scores(head, scorer.net, cache, feats, windows=cfg.sync_windows_s, phases=cfg.sync_phases))
        sync_parts = ["sync_head"]
    else:
        timed("asd_visual_only_head", lambda: scorer.visual_scores(cache))
        sync_parts = ["asd_visual_only_head"]
    if cfg.offset_signal_name() == "head":  # the offset scan: the head re-scored at every lag
        timed("sync_offset_scan", lambda: [sync_scores(head, scorer.net, cache, feats, int(k), windows=cfg.sync_windows_s) for k in lags])
    else:
        timed("sync_offset_scan", lambda: [scorer.score_cached(cache, feats, int(k), windows=cfg.offset_windows_s) for k in lags])
    sync_parts.append("sync_offset_scan")
    vad = SileroVAD.load(s)
    timed("vad", lambda: vad.speech_probabilities(audio))
    asd = out["asd_visual_6windows"]["cpu_s"] + out["asd_audio_backend_6windows"]["cpu_s"] + out["mfcc"]["cpu_s"] + out["face_crops"]["cpu_s"]
    sync = sum(out[k]["cpu_s"] for k in sync_parts)
    total = asd + sync + out["landmarks"]["cpu_s"] + out["vad"]["cpu_s"]
    per_min = 60.0 * 25.0 / n
    out["asd_frames_per_s_per_core"] = round(n / max(asd, 1e-9), 1)
    out["cpu_s_per_min_video_per_track"] = {
        "asd": round(asd * per_min, 1), "landmarks": round(out["landmarks"]["cpu_s"] * per_min, 1),
        "vad": round(out["vad"]["cpu_s"] * per_min, 1), "sync_added": round(sync * per_min, 1),
        "total": round(total * per_min, 1)}
    out["offset_lags"] = len(lags)
    out["sync_signal"] = cfg.sync_signal
    out["offset_signal"] = cfg.offset_signal_name()
    lm.close()
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
