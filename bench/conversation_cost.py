"""Cost of the conversation stage (issue 19, item 2): CPU seconds per minute of clip video per person, with
a per-part breakdown, on real clips made by the stages before it; and an output-equivalence check.

    python -m bench.conversation_cost prepare [--videos a.mp4 b.mp4 ...] [--cache DIR]
    python -m bench.conversation_cost time [--cache DIR] [--dump OUT.pkl] [--threads 1]
    python -m bench.conversation_cost compare BEFORE.pkl AFTER.pkl

``prepare`` runs probe, shots, clips, people and separation on each video (in this process, default
settings) and pickles what the conversation stage reads (clips with their encoded media, shots, the
vocals of each shot) under --cache, so that every later timing and comparison sees the same clips.
``time`` runs ConversationOperator.process on every prepared video (models loaded once, one warm-up
video not counted) with its part timers on (``ConversationOperator.part_times``: decode, vad, landmarks,
crops, mfcc, embed, scores, sync, offset_scan, decision; CPU includes finished ffmpeg children) and
prints CPU-s per minute of clip per person: every clip is one person over its own duration, so the
denominator is the clips' summed duration. --dump writes each clip's outputs for ``compare``.
``compare`` prints per-clip frame_states agreement, clip_class, offsets and scores of two dumps.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SHARED = Path(os.environ.get("LPM_SHARED_DIR", REPO.parent / "shared"))
DEFAULT_VIDEOS = ["interview_two_people.mp4", "talking_face_1.mp4", "talking_face_2.mp4", "talking_face_3.mp4",
                  "talking_face_4.mp4", "talking_face_5.mp4", "talking_hdtf_aoc.mp4", "talking_hdtf_hill.mp4",
                  "stage_performer_audience_music.mp4"]
DEFAULT_CACHE = "/tmp/lpm-conversation-cost"
OUT_KEYS = ("frame_states", "speak_scores", "sync_score", "av_offset_s", "av_offset_gain", "av_shift_s", "clip_class",
            "speech_prob", "mouth_open")


def prepare(args) -> None:
    from operators.audio import SeparationOperator
    from operators.base import VideoTask, run_operator
    from operators.clips import ClipPlanOperator
    from operators.people import PeopleOperator
    from operators.probe import ProbeOperator
    from operators.shots import ShotOperator
    from schemas.settings import Settings

    s = Settings()
    ops = [c(s) for c in (ProbeOperator, ShotOperator, ClipPlanOperator, PeopleOperator, SeparationOperator)]
    out = Path(args.cache)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.videos:
        path = Path(name) if os.path.isabs(name) else SHARED / "media" / "video" / name
        t0 = time.perf_counter()
        task = VideoTask(uri=str(path))
        for op in ops:
            task = run_operator(op, task, s.run.item_timeout_s)
        keep = {"uri": task.uri, "video_id": task.video_id, "status": task.status, "video": task.video, "shots": task.shots,
                "clips": task.clips, "scratch": {"vocals": task.scratch.get("vocals") or {}}}
        with open(out / f"{path.stem}.pkl", "wb") as fh:
            pickle.dump(keep, fh)
        dur = sum(float(c.get("duration_s") or 0) for c in task.clips)
        print(f"{path.name}: {task.status} {task.video.get('reason', '')} {len(task.clips)} clips, {dur:.1f} s of clips, "
              f"{time.perf_counter() - t0:.1f} s", flush=True)


def _load(cache: str) -> list[dict]:
    items = []
    for p in sorted(Path(cache).glob("*.pkl")):
        with open(p, "rb") as fh:
            d = pickle.load(fh)
        if d["status"] == "ok" and any(c.get("video_bytes") for c in d["clips"]):
            d["name"] = p.stem
            items.append(d)
    return items


def _task(d: dict):
    from operators.base import VideoTask

    return VideoTask(uri=d["uri"], video_id=d["video_id"], video=copy.deepcopy(d["video"]), shots=copy.deepcopy(d["shots"]),
                     clips=copy.deepcopy(d["clips"]), scratch=copy.deepcopy(d["scratch"]))


def timing(args) -> dict:
    import torch

    from operators.asd import ConversationOperator
    from operators.base import Deadline, cpu_seconds
    from schemas.settings import Settings

    s = Settings()
    s.conversation.torch_threads = args.threads
    for kv in args.set or []:
        k, v = kv.split("=", 1)
        setattr(s.conversation, k, json.loads(v))
    op = ConversationOperator(s)
    op.setup()
    torch.set_num_threads(args.threads)
    items = _load(args.cache)
    if args.only:
        items = [d for d in items if d["name"] in set(args.only)]
    if args.warmup and items:  # MediaPipe graph, torch kernels: first-call costs not counted
        op.process(_task(items[0]), Deadline(None))
    parts: dict[str, list[float]] = {}
    total_cpu = total_wall = 0.0
    minutes = 0.0
    n_clips = 0
    dump: dict[str, dict] = {}
    per_video = {}
    for d in items:
        task = _task(d)
        op.part_times = {}
        c0, w0 = cpu_seconds(), time.perf_counter()
        task = op.process(task, Deadline(None))
        cpu, wall = cpu_seconds() - c0, time.perf_counter() - w0
        for k, (pc, pw) in op.part_times.items():
            acc = parts.setdefault(k, [0.0, 0.0])
            acc[0] += pc
            acc[1] += pw
        op.part_times = None
        mins = sum(float(c["duration_s"]) for c in d["clips"] if c.get("video_bytes")) / 60.0
        total_cpu += cpu
        total_wall += wall
        minutes += mins
        n_clips += sum(1 for c in d["clips"] if c.get("video_bytes"))
        per_video[d["name"]] = {"clips": len(d["clips"]), "minutes": round(mins, 3), "cpu_s": round(cpu, 2),
                                "cpu_s_per_min_person": round(cpu / max(mins, 1e-9), 1)}
        kept = {c["clip_id"]: c for c in task.clips}
        for c in d["clips"]:
            cid = c["clip_id"]
            r = kept.get(cid)
            dump[f"{d['name']}/{cid}"] = {k: (r.get(k) if r is not None else None) for k in OUT_KEYS} | {
                "dropped": r is None, "rejects": [x.get("reason") for x in task.rejects if x.get("clip_id") == cid]}
        print(f"{d['name']}: {per_video[d['name']]}", flush=True)
    order = ["decode", "vad", "landmarks", "crops", "mfcc", "embed", "scores", "sync", "offset_scan", "decision"]
    keys = [k for k in order if k in parts] + sorted(k for k in parts if k not in order)
    other = total_cpu - sum(parts[k][0] for k in keys)
    per_min = {k: round(parts[k][0] / max(minutes, 1e-9), 2) for k in keys}
    per_min["other"] = round(other / max(minutes, 1e-9), 2)
    res = {"videos": [d["name"] for d in items], "clips": n_clips, "clip_minutes": round(minutes, 3),
           "threads": args.threads, "cpu_s": round(total_cpu, 2), "wall_s": round(total_wall, 2),
           "cpu_s_per_min_per_person": round(total_cpu / max(minutes, 1e-9), 1),
           "wall_s_per_min_per_person": round(total_wall / max(minutes, 1e-9), 1),
           "parts_cpu_s_per_min_per_person": per_min, "per_video": per_video}
    print(json.dumps(res, indent=1))
    if args.dump:
        with open(args.dump, "wb") as fh:
            pickle.dump(dump, fh)
    return res


def _num(x) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in (x or [])], np.float64)


def compare(args) -> dict:
    with open(args.before, "rb") as fh:
        a = pickle.load(fh)
    with open(args.after, "rb") as fh:
        b = pickle.load(fh)
    rows = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        if x is None or y is None or x["dropped"] or y["dropped"]:
            rows.append({"clip": key, "missing_or_dropped": [x is None or x["dropped"], y is None or y["dropped"]],
                         "rejects": [x and x["rejects"], y and y["rejects"]]})
            continue
        fa, fb = x["frame_states"], y["frame_states"]
        agree = float(np.mean([p == q for p, q in zip(fa, fb)])) if fa and len(fa) == len(fb) else 0.0
        sa, sb = _num(x["speak_scores"]), _num(y["speak_scores"])
        both = np.isfinite(sa) & np.isfinite(sb)
        d_off = None
        if x["av_offset_s"] is not None and y["av_offset_s"] is not None:
            d_off = abs(x["av_offset_s"] - y["av_offset_s"])
        rows.append({
            "clip": key, "n": len(fa), "states_agree": round(agree, 4), "class": [x["clip_class"], y["clip_class"]],
            "offset_s": [x["av_offset_s"], y["av_offset_s"]], "d_offset_s": d_off,
            "gain": [None if v is None else round(v, 3) for v in (x["av_offset_gain"], y["av_offset_gain"])],
            "shift_s": [x["av_shift_s"], y["av_shift_s"]],
            "sync": [None if v is None else round(v, 4) for v in (x["sync_score"], y["sync_score"])],
            "speak_max_abs_diff": float(np.max(np.abs(sa[both] - sb[both]))) if both.any() else 0.0,
            "nan_mismatch": int(np.sum(np.isfinite(sa) != np.isfinite(sb))),
        })
    for r in rows:
        print(json.dumps(r))
    ok = [r for r in rows if "states_agree" in r]
    offs = [r["d_offset_s"] for r in ok if r["d_offset_s"] is not None]
    summary = {
        "clips": len(rows), "compared": len(ok),
        "min_states_agree": min((r["states_agree"] for r in ok), default=None),
        "mean_states_agree": float(np.mean([r["states_agree"] for r in ok])) if ok else None,
        "clips_below_0.995": sum(r["states_agree"] < 0.995 for r in ok),
        "same_class": sum(r["class"][0] == r["class"][1] for r in ok),
        "max_d_offset_s": max(offs, default=0.0),
        "offset_presence_mismatch": sum((r["offset_s"][0] is None) != (r["offset_s"][1] is None) for r in ok),
        "same_shift": sum(r["shift_s"][0] == r["shift_s"][1] for r in ok),
        "max_speak_abs_diff": max((r["speak_max_abs_diff"] for r in ok), default=0.0),
        "max_gain_abs_diff": max((abs(r["gain"][0] - r["gain"][1]) for r in ok if None not in r["gain"]), default=0.0),
        "max_sync_abs_diff": max((abs(r["sync"][0] - r["sync"][1]) for r in ok if None not in r["sync"]), default=0.0),
    }
    print(json.dumps(summary, indent=1))
    return summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--videos", nargs="+", default=DEFAULT_VIDEOS)
    p.add_argument("--cache", default=DEFAULT_CACHE)
    t = sub.add_parser("time")
    t.add_argument("--cache", default=DEFAULT_CACHE)
    t.add_argument("--only", nargs="+", default=None, help="prepared video names (file stems) to time")
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--warmup", type=int, default=1)
    t.add_argument("--dump", default=None)
    t.add_argument("--set", nargs="*", help="conversation settings as key=JSON, e.g. offset_step_frames=1")
    c = sub.add_parser("compare")
    c.add_argument("before")
    c.add_argument("after")
    args = ap.parse_args(argv)
    {"prepare": prepare, "time": timing, "compare": compare}[args.cmd](args)


if __name__ == "__main__":
    main()
