"""lpm-train: train the latent VAE and the Base LPM on clips/ shards, distill the Online LPM, stream it.

    lpm-train vae     --data DIR --out OUT [--config FILE] [--set key=value ...]
    lpm-train base    --data DIR --out OUT [--config FILE] [--ray [--address A] [--num-workers N]] [--no-resume]
    lpm-train distill --base OUT --data DIR --out OUT2 [--config FILE]
    lpm-train stream  --model OUT2 --speak AUDIO [--listen AUDIO] (--first IMAGE | --data DIR) [--seconds S] [--video OUT.mp4]

DIR is a pipeline output folder (DIR/clips/part-*.parquet). FILE is a YAML file or the name of one in
train/configs (default.yaml, tiny.yaml). Every command prints a JSON summary as its last line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _cfg(args):
    from train.config import load_config, parse_set

    overrides = parse_set(args.set)
    if getattr(args, "steps", None):
        overrides.setdefault("base", {})["steps"] = args.steps
    return load_config(args.config, overrides)


def cmd_vae(args) -> dict:
    from train.base import ensure_vae, load_state

    cfg = _cfg(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ensure_vae(cfg, args.data, out)
    return {"vae": str(out / "vae.pt"), "metrics": load_state(out / "vae.pt").get("metrics")}


def cmd_base(args) -> dict:
    cfg = _cfg(args)
    if args.ray:
        import ray

        from train.base import train_base_ray

        if args.address:
            ray.init(address=args.address)
        else:
            ray.init(num_cpus=args.num_cpus, include_dashboard=False)
        try:
            return train_base_ray(cfg, args.data, args.out, num_workers=args.num_workers, cpus_per_worker=args.cpus_per_worker)
        finally:
            ray.shutdown()
    from train.base import train_base

    return train_base(cfg, args.data, args.out, resume=not args.no_resume)


def cmd_distill(args) -> dict:
    from train.distill import run_distill

    cfg = _cfg(args) if (args.config or args.set) else None
    res = run_distill(args.base, args.data, args.out, cfg=cfg)
    return {k: res[k] for k in ("compare_to_teacher", "timing", "seconds")}


def cmd_stream(args) -> dict:
    import numpy as np

    from operators.media import decode_audio
    from train.distill import load_online
    from train.online import OnlineLPM

    model, vae, cfg = load_online(args.model)
    sr = cfg.data.sample_rate
    speak = decode_audio(args.speak, 300.0, sample_rate=sr)
    listen = decode_audio(args.listen, 300.0, sample_rate=sr) if args.listen else None
    first, caption = _first_frame(args, cfg)
    lpm = OnlineLPM(model, vae, first, caption=caption, seed=args.seed)
    seconds = args.seconds or len(speak) / sr
    n = int(np.ceil(seconds * sr / lpm.chunk_samples))
    frames = []
    for out in lpm.stream(lpm.chunks_of(speak, n), lpm.chunks_of(listen, n) if listen is not None else [None] * n):
        if args.video:
            frames.append(out)
    if args.video:
        _write_video(args.video, np.concatenate(frames), cfg.data.fps)
    t = np.array(lpm.timings) * 1000
    return {"chunks": n, "chunk_s": lpm.chunk / cfg.data.fps, "latency_ms_median": float(np.median(t)),
            "latency_ms_first10": float(np.median(t[1:11])), "latency_ms_last10": float(np.median(t[-10:])),
            "state_bytes": lpm.state_bytes(), "video": args.video}


def _first_frame(args, cfg):
    import numpy as np

    if args.first:
        import cv2

        img = cv2.imread(args.first, cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"cannot read image {args.first}")
        return img[:, :, ::-1], None
    if not args.data:
        raise SystemExit("stream needs --first IMAGE or --data DIR")
    import pyarrow.parquet as pq

    from train.data import clip_files
    from train.features import RowError, decode_video

    for f in clip_files(args.data):
        for row in pq.read_table(f, columns=["video_bytes", "caption"]).to_pylist():
            try:
                frames = decode_video(row["video_bytes"] or b"", cfg.data.size_px, cfg.data.fps, max_frames=1)
            except RowError:
                continue
            return np.asarray(frames[0]), row.get("caption")
    raise SystemExit(f"no decodable clip in {args.data}")


def _write_video(path: str, frames, fps: float) -> None:
    import av

    with av.open(path, mode="w") as c:
        st = c.add_stream("libx264", rate=int(round(fps)))
        st.width, st.height, st.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for f in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="lpm-train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p, data=True):
        p.add_argument("--config", default=None, help="YAML file or a name in train/configs")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. base.steps=50")
        if data:
            p.add_argument("--data", required=True, help="pipeline output folder (DIR/clips/*.parquet)")

    p = sub.add_parser("vae", help="train the latent autoencoder")
    common(p)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_vae)

    p = sub.add_parser("base", help="train the Base LPM (trains the VAE first when OUT/vae.pt is absent)")
    common(p)
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--no-resume", action="store_true")
    p.add_argument("--ray", action="store_true", help="Ray Train TorchTrainer on CPU workers")
    p.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    p.add_argument("--num-workers", type=int, default=2)
    p.add_argument("--cpus-per-worker", type=float, default=0.5)
    p.add_argument("--num-cpus", type=float, default=None, help="CPUs of the local Ray")
    p.set_defaults(fn=cmd_base)

    p = sub.add_parser("distill", help="distill the Base LPM into the causal streaming Online LPM")
    common(p)
    p.add_argument("--base", required=True, help="output folder of `lpm-train base`")
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_distill)

    p = sub.add_parser("stream", help="stream audio through the Online LPM, chunk by chunk")
    p.add_argument("--model", required=True, help="output folder of `lpm-train distill`")
    p.add_argument("--speak", required=True, help="speak audio (any ffmpeg-readable file)")
    p.add_argument("--listen", default=None)
    p.add_argument("--first", default=None, help="first frame image")
    p.add_argument("--data", default=None, help="take the first frame (and caption) of the first clip of DIR")
    p.add_argument("--seconds", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--video", default=None, help="write the generated frames to this MP4")
    p.set_defaults(fn=cmd_stream)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        res = args.fn(args)
    except Exception as exc:  # noqa: BLE001 - a CLI reports, the caller decides
        from train.config import TrainConfigError

        if isinstance(exc, (TrainConfigError, FileNotFoundError)):
            print(f"lpm-train: {exc}", file=sys.stderr)
            return 2
        raise
    print(json.dumps(res, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
