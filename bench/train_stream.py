"""Streaming benchmark of the Online LPM: 60 s of speak + listen audio pushed chunk by chunk.

    .venv/bin/python bench/train_stream.py [--model OUT_OF_DISTILL] [--config default.yaml] [--seconds 60]
        [--speak AUDIO] [--listen AUDIO] [--threads 1]

Prints per-chunk latency (median of the first 10 chunks after warm-up, i.e. once the KV cache and the audio
buffers are full, and of the last 10), the stream state bytes (KV cache + audio buffers) and process RSS at
the same points, and the real-time factor. Without --model a randomly initialised student of the config
is used (latency and memory do not depend on the weights).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _audio(path: str | None, seconds: float, sr: int, seed: int) -> np.ndarray:
    n = int(seconds * sr)
    if path:
        from operators.media import decode_audio

        a = decode_audio(path, 120.0, sample_rate=sr)
        return np.tile(a, int(np.ceil(n / max(len(a), 1))))[:n]
    return (np.random.default_rng(seed).standard_normal(n) * 0.05).astype(np.float32)


def main() -> None:
    import psutil
    import torch

    from train.config import load_config
    from train.model import LPMDiT
    from train.online import OnlineLPM
    from train.vae import VideoVAE

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None)
    ap.add_argument("--config", default="default.yaml")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--speak", default=None)
    ap.add_argument("--listen", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.model:
        from train.distill import load_online

        model, vae, cfg = load_online(args.model)
    else:
        cfg = load_config(args.config)
        torch.manual_seed(0)
        model, vae = LPMDiT(cfg).eval(), VideoVAE(cfg).eval()
    here = os.path.dirname(os.path.abspath(__file__))
    media = os.environ.get("LPM_MEDIA_DIR", os.path.join(here, "..", "..", "shared", "media"))
    speak_path = args.speak or os.path.join(media, "audio", "speech_60s.wav")
    listen_path = args.listen or os.path.join(media, "audio", "two_speakers_16k.wav")
    sr = cfg.data.sample_rate
    speak = _audio(speak_path if os.path.exists(speak_path) else None, args.seconds, sr, 1)
    listen = _audio(listen_path if os.path.exists(listen_path) else None, args.seconds, sr, 2)
    first = np.full((cfg.data.size_px, cfg.data.size_px, 3), 128, dtype=np.uint8)
    lpm = OnlineLPM(model, vae, first, caption="a person talks to the camera", seed=0)
    n = int(np.ceil(args.seconds * sr / lpm.chunk_samples))
    proc = psutil.Process()
    state, rss = [], []
    t0 = time.perf_counter()
    for s, li in zip(lpm.chunks_of(speak, n), lpm.chunks_of(listen, n)):
        lpm.push(s, li)
        state.append(lpm.state_bytes())
        rss.append(proc.memory_info().rss)
    wall = time.perf_counter() - t0
    lat = np.array(lpm.timings) * 1000
    d = cfg.distill
    hist_chunks = int(np.ceil(cfg.stream.audio_history_s * cfg.data.fps / d.chunk_frames))
    warm = max(d.sink_chunks + d.window_chunks, hist_chunks) + 1
    first10, last10 = lat[warm:warm + 10], lat[-10:]
    chunk_s = d.chunk_frames / cfg.data.fps
    print(f"stream: {args.seconds:.0f} s of audio, {n} chunks of {chunk_s:.2f} s ({d.chunk_frames} frames at {cfg.data.fps:g} fps), "
          f"{len(d.student_timesteps)} student steps + 1 cache pass per chunk, torch threads {args.threads}")
    print(f"KV cache policy: {d.sink_chunks} sink + {d.window_chunks} window chunks; warm-up = first {warm} chunks")
    print(f"latency ms/chunk: first10 after warm-up median {np.median(first10):.2f} (mean {first10.mean():.2f}), "
          f"last10 median {np.median(last10):.2f} (mean {last10.mean():.2f}), ratio last/first {np.median(last10) / np.median(first10):.3f}")
    print(f"latency ms/chunk over the run: p50 {np.percentile(lat[warm:], 50):.2f} p90 {np.percentile(lat[warm:], 90):.2f} max {lat[warm:].max():.2f}")
    print(f"stream state bytes: chunk {warm} {state[warm]}, last {state[-1]} (max {max(state)})")
    print(f"process RSS MB: chunk {warm} {rss[warm] / 2**20:.1f}, last {rss[-1] / 2**20:.1f}")
    print(f"real-time factor: {wall / args.seconds:.3f} (wall {wall:.2f} s for {args.seconds:.0f} s of audio)")


if __name__ == "__main__":
    main()
