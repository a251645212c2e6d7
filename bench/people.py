"""People stage benchmarks (prints numbers; no assertions).

    python -m bench.people                 # detection + tracking frames/s on 720p and 1080p samples
    python -m bench.people --identity      # MobileFaceNet same- vs different-person cosine on shared media
    python -m bench.people --face-detector yunet --every 1

Frames/s counts SOURCE frames of video covered per second of wall time (detection runs on every k-th
frame of the 25 fps grid, boxes in between are interpolated), and separately detection frames/s (decoded +
faces + bodies + embeddings + association). Model directory: $LPM_MODEL_DIR or ../shared/models; media:
$LPM_SHARED_DIR/media or ../shared/media.
"""
from __future__ import annotations

import argparse
import itertools
import os
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LPM_SHARED_DIR", REPO.parent / "shared"))
SAME_PERSON = [{"talking_face_3.mp4", "talking_hdtf_aoc.mp4"}]
SAMPLES = [("720p", "interview_two_people.mp4", 1280, 720, 25.0), ("1080p", "crowd_no_speech_1080p.mp4", 1920, 1080, 25.0)]


def bench_tracking(args) -> None:
    from operators.base import Deadline
    from operators.people import PeopleOperator
    from schemas.settings import Settings

    s = Settings()
    s.people.face_detector = args.face_detector
    s.people.detect_every_frames = args.every
    op = PeopleOperator(s)
    t0 = time.perf_counter()
    op.setup()
    print(f"setup (load models): {time.perf_counter() - t0:.2f} s; face={op.face_det.name} person={op.person_det.name} "
          f"identity={op.embedder.name}; detect every {args.every} frame(s) of {s.people.clip_fps:g} fps, "
          f"longer side {s.people.detect_max_side_px} px")
    for label, name, w, h, fps in SAMPLES:
        path = SHARED / "media" / "video" / name
        import av

        with av.open(str(path)) as c:
            dur = float(c.duration / 1e6)
        best = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            st = op.track_shot(str(path), 0.0, dur, w, h, Deadline(None))
            el = time.perf_counter() - t0
            best = el if best is None else min(best, el)
        print(f"{label:>6} {name:<30} {dur:5.1f} s video: {best:6.2f} s wall -> {dur * fps / best:7.1f} source frames/s, "
              f"{st.n_det_frames / best:6.1f} detection frames/s, {len(st.tracks)} tracks")


def bench_identity(args) -> None:
    import cv2

    from models.faces import load_face_detector
    from models.identity import align_face, load_identity_model
    from schemas.settings import Settings

    s = Settings()
    det = load_face_detector(s, "scrfd")
    emb = load_identity_model(s)
    people: dict[str, list[np.ndarray]] = {}
    vids = [f"talking_face_{i}.mp4" for i in range(1, 6)] + ["talking_hdtf_aoc.mp4", "talking_hdtf_hill.mp4"]
    for v in vids + ["interview_two_people.mp4"]:
        cap = cv2.VideoCapture(str(SHARED / "media" / "video" / v))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        for fi in np.linspace(0, n - 1, args.faces, dtype=int):
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(fi))
            ok, frame = cap.read()
            if not ok:
                continue
            f = det.detect(frame)
            keep = np.nonzero(f.scores >= 0.5)[0]
            for k in keep:
                key = v if v != "interview_two_people.mp4" else f"interview_{'left' if f.boxes[k, 0] < 640 else 'right'}"
                people.setdefault(key, []).append(emb.embed([align_face(frame, f.kps[k])])[0])
        cap.release()
    same, diff = [], []
    keys = sorted(people)
    for k in keys:
        e = np.stack(people[k])
        sim = e @ e.T
        same += list(sim[np.triu_indices(len(e), 1)])
    for a, b in itertools.combinations(keys, 2):
        cross = list((np.stack(people[a]) @ np.stack(people[b]).T).ravel())
        # talking_face_3 (video-retalking example) is the same woman as the HDTF clip talking_hdtf_aoc
        # (measured cosine 0.86, far above every pair of different people): a same-person pair across files
        (same if {a, b} in SAME_PERSON else diff).extend(cross)
    same, diff = np.array(same), np.array(diff)
    thr = s.people.identity_threshold
    print(f"{len(keys)} face sources ({len(keys) - len(SAME_PERSON)} people), {sum(len(v) for v in people.values())} faces ({args.faces} frames per video)")
    print(f"same person:      n={len(same):5d} mean {same.mean():.3f} min {same.min():.3f} p5 {np.percentile(same, 5):.3f}")
    print(f"different people: n={len(diff):5d} mean {diff.mean():.3f} max {diff.max():.3f} p95 {np.percentile(diff, 95):.3f}")
    print(f"threshold {thr:.2f}: false reject {np.mean(same < thr):.4f}, false accept {np.mean(diff >= thr):.4f}")
    for a, b in [("talking_face_3.mp4", "talking_hdtf_aoc.mp4"), ("talking_hdtf_aoc.mp4", "talking_hdtf_hill.mp4")]:
        if a in people and b in people:
            print(f"{a} vs {b}: mean {float((np.stack(people[a]) @ np.stack(people[b]).T).mean()):.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--identity", action="store_true", help="identity similarity report instead of speed")
    p.add_argument("--face-detector", default="scrfd", choices=["scrfd", "yunet", "yunet-dynamic"])
    p.add_argument("--every", type=int, default=5, help="people.detect_every_frames")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--faces", type=int, default=12, help="(identity) frames sampled per video")
    args = p.parse_args()
    os.environ.setdefault("LPM_MODEL_DIR", str(SHARED / "models"))
    if args.identity:
        bench_identity(args)
    else:
        bench_tracking(args)


if __name__ == "__main__":
    main()
