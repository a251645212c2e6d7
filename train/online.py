"""Online LPM inference: the student's few-step chunk-wise sampler over a KV cache, and the streaming API.

Per chunk: start from noise, run len(student_timesteps) steps (predict x0, re-noise to the next level with
the chunk's own noise), then one pass of the clean result at t=0 writes the chunk's keys/values into the
cache (clean history). The cache holds prefix + sink chunks + a sliding window, so per-chunk cost and
memory stay flat however long the stream runs.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np
import torch

from train.config import TrainConfig
from train.features import CausalMel, hashed_text_embedding
from train.model import KVCache, LPMDiT
from train.vae import VideoVAE, to_float, to_uint8


def new_cache(model: LPMDiT, ctok: dict) -> KVCache:
    d = model.cfg.distill
    return KVCache(model.prefix_kv(ctok), ctok["prefix_pos"], ctok["prefix_keep"], d.chunk_frames, d.sink_chunks, d.window_chunks)


@torch.no_grad()
def student_rollout(model: LPMDiT, cond: dict, noise: torch.Tensor, exit_step: int | None = None,
                    clean_cache: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk-wise few-step sampling of noise [B,T,C,h,w] (offline: all audio known up front; the causal
    audio mask still hides audio after each chunk's end). exit_step: stop every chunk after that step
    (0-based) and take its x0 prediction. Returns (x0 [B,T,...], the inputs z of the exit step [B,T,...])."""
    ts = model.cfg.distill.student_timesteps
    s_exit = len(ts) - 1 if exit_step is None else exit_step
    c = model.cfg.distill.chunk_frames
    T = noise.shape[1]
    ctok = model.cond_tokens(cond)
    cache = new_cache(model, ctok)
    audio = {"speak": ctok["speak"], "listen": ctok["listen"]}
    frames = torch.arange(T)
    outs, zin = [], []
    for k in range(T // c):
        eps = noise[:, k * c:(k + 1) * c]
        z = eps
        for i in range(s_exit + 1):
            v, _ = model.chunk_forward(z, ts[i], cache, ctok, k * c, audio, frames)
            x0 = z - ts[i] * v
            if i < s_exit:
                z = (1 - ts[i + 1]) * x0 + ts[i + 1] * eps
        zin.append(z)
        outs.append(x0)
        if clean_cache and k + 1 < T // c:
            _, kv = model.chunk_forward(x0, 0.0, cache, ctok, k * c, audio, frames)
            cache.append(kv)
    return torch.cat(outs, dim=1), torch.cat(zin, dim=1)


class OnlineLPM:
    """Streaming generator: push speak/listen audio one chunk at a time, get video frames back.

        lpm = OnlineLPM(student, vae, first_frame_rgb, references=[...], caption="...")
        for frames in lpm.stream(speak_chunks, listen_chunks): ...   # uint8 [chunk_frames, S, S, 3]

    Audio chunks are float32 mono at data.sample_rate, chunk_frames / fps seconds each (shorter chunks
    are zero-padded; None means that stream is absent: its condition is dropped, as in training)."""

    def __init__(self, model: LPMDiT, vae: VideoVAE, first_frame: np.ndarray, references: list[np.ndarray] | None = None,
                 caption: str | None = None, text_embedding: np.ndarray | None = None, seed: int = 0):
        self.model, self.vae = model.eval(), vae.eval()
        cfg: TrainConfig = model.cfg
        self.cfg = cfg
        self.chunk = cfg.distill.chunk_frames
        self.mel = CausalMel(cfg.data)
        self.chunk_samples = self.chunk * self.mel.samples_per_frame
        self.gen = torch.Generator().manual_seed(seed)
        S, R = cfg.data.size_px, cfg.data.max_refs
        refs = np.zeros((R, S, S, 3), dtype=np.uint8)
        ref_mask = np.zeros(R, dtype=np.float32)
        for r, img in enumerate((references or [])[:R]):
            refs[r] = _fit(img, S)
            ref_mask[r] = 1.0
        text = np.zeros(cfg.data.text_dim, dtype=np.float32)
        text_mask = 0.0
        if text_embedding is not None:
            a = np.asarray(text_embedding, dtype=np.float32)[: cfg.data.text_dim]
            text[: len(a)] = a / max(float(np.linalg.norm(a)), 1e-6)
            text_mask = 1.0
        elif caption:
            text, text_mask = hashed_text_embedding(caption, cfg.data.text_dim), 1.0
        with torch.no_grad():
            self.cond = {
                "first": vae.encode(to_float(torch.from_numpy(_fit(first_frame, S))[None])),
                "first_mask": torch.ones(1),
                "refs": vae.encode(to_float(torch.from_numpy(refs)[None])),
                "ref_mask": torch.from_numpy(ref_mask)[None],
                "text": torch.from_numpy(text)[None],
                "text_mask": torch.tensor([text_mask]),
                "speak": torch.zeros(1, 1, cfg.audio_feat_dim), "speak_mask": torch.ones(1),
                "listen": torch.zeros(1, 1, cfg.audio_feat_dim), "listen_mask": torch.ones(1),
            }
            self.ctok = model.cond_tokens(self.cond)
        self.cache = new_cache(model, self.ctok)
        hist_frames = int(round(cfg.stream.audio_history_s * cfg.data.fps))
        keep = max(hist_frames, cfg.model.listen_window, cfg.model.speak_window) + self.chunk
        self.audio_tok = {k: deque(maxlen=keep) for k in ("speak", "listen")}
        self.audio_hist = {k: np.zeros(0, dtype=np.float32) for k in ("speak", "listen")}
        self.frame0 = 0
        self.timings: list[float] = []

    def _audio_tokens(self, kind: str, samples: np.ndarray | None) -> None:
        n = self.chunk
        if samples is None:
            feats, mask = np.zeros((n, self.mel.dim), dtype=np.float32), 0.0
            self.audio_hist[kind] = np.zeros(0, dtype=np.float32)
        else:
            x = np.zeros(self.chunk_samples, dtype=np.float32)
            s = np.asarray(samples, dtype=np.float32)[: self.chunk_samples]
            x[: len(s)] = s
            feats, mask = self.mel.frames(x, n, history=self.audio_hist[kind]), 1.0
            self.audio_hist[kind] = np.concatenate([self.audio_hist[kind], x])[-self.mel.win:]
        tok = self.model.audio_tokens(torch.from_numpy(feats)[None], torch.tensor([mask]), kind)
        for i in range(n):
            self.audio_tok[kind].append((self.frame0 + i, tok[:, i]))

    @torch.no_grad()
    def push(self, speak: np.ndarray | None, listen: np.ndarray | None) -> np.ndarray:
        """One chunk of audio in, one chunk of video out (uint8 [chunk_frames, S, S, 3])."""
        t0 = time.perf_counter()
        self._audio_tokens("speak", speak)
        self._audio_tokens("listen", listen)
        frames = torch.tensor([f for f, _ in self.audio_tok["speak"]])
        audio = {k: torch.stack([tok for _, tok in self.audio_tok[k]], dim=1) for k in ("speak", "listen")}
        ts = self.cfg.distill.student_timesteps
        lat = self.cfg.latent_size
        eps = torch.randn((1, self.chunk, self.cfg.vae.latent_channels, lat, lat), generator=self.gen)
        z = eps
        for i, t in enumerate(ts):
            v, _ = self.model.chunk_forward(z, t, self.cache, self.ctok, self.frame0, audio, frames)
            x0 = z - t * v
            if i + 1 < len(ts):
                z = (1 - ts[i + 1]) * x0 + ts[i + 1] * eps
        if self.cfg.stream.refine_clean_cache:
            _, kv = self.model.chunk_forward(x0, 0.0, self.cache, self.ctok, self.frame0, audio, frames)
        else:
            _, kv = self.model.chunk_forward(z, ts[-1], self.cache, self.ctok, self.frame0, audio, frames)
        self.cache.append(kv)
        self.frame0 += self.chunk
        out = to_uint8(self.vae.decode(x0[0])).numpy()
        self.timings.append(time.perf_counter() - t0)
        return out

    def stream(self, speak_chunks: Iterable[np.ndarray | None], listen_chunks: Iterable[np.ndarray | None]) -> Iterator[np.ndarray]:
        for s, li in zip(speak_chunks, listen_chunks):
            yield self.push(s, li)

    def chunks_of(self, samples: np.ndarray | None, n_chunks: int) -> list[np.ndarray | None]:
        if samples is None:
            return [None] * n_chunks
        cs = self.chunk_samples
        return [samples[i * cs:(i + 1) * cs] for i in range(n_chunks)]

    def state_bytes(self) -> int:
        """Bytes held by the stream state: KV cache + audio token buffers + audio history."""
        tok = sum(t.numel() * t.element_size() for q in self.audio_tok.values() for _, t in q)
        return self.cache.nbytes() + tok + sum(h.nbytes for h in self.audio_hist.values())


def _fit(img: np.ndarray, size: int) -> np.ndarray:
    import cv2

    img = np.asarray(img, dtype=np.uint8)
    if img.shape[:2] != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[..., :3])
