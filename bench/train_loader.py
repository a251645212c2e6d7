"""Is the loader the bottleneck? Samples/s of the clip reader alone vs of the Base LPM training step.

    .venv/bin/python bench/train_loader.py --data DIR [--config default.yaml] [--workers 0 1] [--samples 64] [--steps 10]

DIR is a pipeline output folder; without --data a temporary one is built from the talking-face videos
(tests/train_fixtures.py). Reader: ClipStream through a torch DataLoader (decode + features + collate).
Training: forward + backward + optimiser step of the Base LPM on a batch already in memory (VAE encoding
included), at the config's batch size.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main() -> None:
    import torch

    from train.base import step_generator
    from train.config import load_config
    from train.data import make_loader
    from train.flow import cfg_dropout, flow_loss, prepare_batch
    from train.model import LPMDiT
    from train.vae import VideoVAE

    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=None)
    ap.add_argument("--config", default="default.yaml")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    data = args.data
    if not data:
        sys.path.insert(0, os.path.join(REPO, "tests"))
        from train_fixtures import build_clips_dir

        media = Path(os.environ.get("LPM_MEDIA_DIR", os.path.join(REPO, "..", "shared", "media")))
        data = str(build_clips_dir(Path(tempfile.mkdtemp(prefix="lpm-bench-train-")), media))
    B = cfg.base.batch_size
    print(f"data {data}; batch {B}; {cfg.data.num_frames} frames {cfg.data.size_px}px at {cfg.data.fps:g} fps; "
          f"windows_per_clip {cfg.data.windows_per_clip}")
    for w in args.workers:
        loader = make_loader(data, cfg.data, batch_size=B, num_workers=w)
        it = iter(loader)
        next(it)  # start-up (worker spawn, first decode) excluded
        n, t0 = 0, time.perf_counter()
        while n < args.samples:
            n += next(it)["video"].shape[0]
        dt = time.perf_counter() - t0
        print(f"reader alone, DataLoader workers={w}: {n / dt:.1f} samples/s ({n} samples in {dt:.2f} s)")
        del it, loader
    batch = next(iter(make_loader(data, cfg.data, batch_size=B)))
    torch.manual_seed(0)
    vae, model = VideoVAE(cfg).eval(), LPMDiT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step(i):
        gen = step_generator(0, i)
        x0, cond, w = prepare_batch(batch, vae)
        loss = flow_loss(model, x0, cfg_dropout(cond, cfg.base.cfg_drop, gen), w, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step(0)
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(i + 1)
    dt = (time.perf_counter() - t0) / args.steps
    print(f"training step alone (batch {B}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params): "
          f"{dt * 1000:.1f} ms/step = {B / dt:.1f} samples/s")


if __name__ == "__main__":
    main()
