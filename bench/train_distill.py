"""Distillation benchmark: the teacher's full guided sampler vs the Online LPM student's few-step sampler.

    .venv/bin/python bench/train_distill.py --model OUT_OF_DISTILL [--data DIR] [--repeats 3]
    .venv/bin/python bench/train_distill.py --config default.yaml      # timing only, random weights

With --model (an `lpm-train distill` output folder) it prints the stored comparison to the teacher
(distill.json) and re-times both samplers; without it, it times randomly initialised models of the config.
Timing: one 2 s window (batch 1), best of --repeats, single torch thread.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main() -> None:
    import torch

    from train.config import load_config
    from train.distill import time_samplers
    from train.model import LPMDiT

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--config", default="default.yaml")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.model:
        from train.distill import load_online

        student, _, cfg = load_online(args.model)
        res = json.loads((Path(args.model) / "distill.json").read_text())
        print("distance to the teacher's output (same noise, held-out conditions):")
        for name, m in res["compare_to_teacher"].items():
            print(f"  {name:12s} latent MSE {m['latent_mse']:.4f}  decoded PSNR {m['psnr_db']:.2f} dB")
    else:
        cfg = load_config(args.config)
        torch.manual_seed(0)
        student = LPMDiT(cfg).eval()
    torch.manual_seed(1)
    teacher = LPMDiT(cfg).eval()
    if args.model:
        teacher.load_state_dict(student.state_dict())  # same architecture and cost; weights do not change timing
    L, C, T = cfg.latent_size, cfg.vae.latent_channels, cfg.data.num_frames
    cond = {"first": torch.randn(1, C, L, L), "first_mask": torch.ones(1), "refs": torch.randn(1, cfg.data.max_refs, C, L, L),
            "ref_mask": torch.ones(1, cfg.data.max_refs), "text": torch.randn(1, cfg.data.text_dim), "text_mask": torch.ones(1),
            "speak": torch.randn(1, T, cfg.audio_feat_dim), "speak_mask": torch.ones(1),
            "listen": torch.randn(1, T, cfg.audio_feat_dim), "listen_mask": torch.ones(1)}
    noise = torch.randn(1, T, C, L, L)
    t = time_samplers(teacher, student, cond, noise, cfg, repeats=args.repeats)
    print(f"teacher: {t['teacher_steps']} Euler steps x CFG = {t['teacher_forwards']} full-sequence forwards: {t['teacher_s'] * 1000:.1f} ms")
    print(f"student: {t['student_steps']} steps per chunk + 1 cache pass, chunk-wise over the KV cache: {t['student_s'] * 1000:.1f} ms")
    print(f"speedup: {t['speedup']:.1f}x")


if __name__ == "__main__":
    main()
