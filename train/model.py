"""The LPM Diffusion Transformer (flow matching over video latents), used as Base LPM (bidirectional
teacher) and as Online LPM (chunk-wise causal student with a KV cache).

Token sequence of self-attention: [first-frame tokens | reference tokens | video tokens]. All are
patchified latents; types are told apart only by a per-type time offset of the 3D RoPE (t, y, x).
Text: cross-attention to `text_tokens` tokens projected from the text embedding, in every block.
Speak audio: cross-attention in even blocks, video frame t sees audio frames |a - t| <= speak_window.
Listen audio: cross-attention in odd blocks, window listen_window. One always-visible register token
per audio stream keeps every attention row non-empty (prefix tokens see only it).
Timesteps are per token (adaLN-Zero), so clean context (t=0) and noisy chunks share one sequence.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from train.config import TrainConfig


# --------------------------------------------------------------------------------------------- RoPE
def rope_cos_sin(pos: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """pos [N, 3] (t, y, x) -> cos, sin [N, head_dim/2]; each axis gets head_dim/6 rotation pairs."""
    pairs = head_dim // 6
    freqs = theta ** (-torch.arange(pairs, dtype=torch.float32) / pairs)
    ang = torch.cat([pos[:, a: a + 1].float() * freqs[None] for a in range(3)], dim=1)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    cos, sin = cs
    h = x.shape[-1] // 2
    x1, x2 = x[..., :h], x[..., h:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def timestep_embedding(t: torch.Tensor, dim: int = 128) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[..., None] * freqs
    return torch.cat([args.cos(), args.sin()], dim=-1)


class RMSNorm(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.w = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.w


# -------------------------------------------------------------------------------------------- block
class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float, audio_kind: str):
        super().__init__()
        self.heads, self.dh, self.audio_kind = heads, dim // heads, audio_kind
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.q_norm, self.k_norm = RMSNorm(self.dh), RMSNorm(self.dh)
        self.proj = nn.Linear(dim, dim)
        self.norm_t = nn.LayerNorm(dim, eps=1e-6)
        self.t_q, self.t_kv, self.t_proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.norm_a = nn.LayerNorm(dim, eps=1e-6)
        self.a_q, self.a_kv, self.a_proj = nn.Linear(dim, dim), nn.Linear(dim, 2 * dim), nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Linear(dim, 6 * dim)
        nn.init.zeros_(self.ada.weight)
        nn.init.zeros_(self.ada.bias)

    def _heads(self, x):
        B, N, _ = x.shape
        return x.view(B, N, self.heads, self.dh).transpose(1, 2)

    def _merge(self, x):
        B, H, N, dh = x.shape
        return x.transpose(1, 2).reshape(B, N, H * dh)

    def _cross(self, x, ctx, mask, norm, q_lin, kv_lin, proj):
        q = self._heads(q_lin(norm(x)))
        k, v = kv_lin(ctx).chunk(2, dim=-1)
        out = F.scaled_dot_product_attention(q, self._heads(k), self._heads(v), attn_mask=mask)
        return proj(self._merge(out))

    def forward(self, x, temb, rope, self_mask, text, audio, audio_mask, ctx_kv=None):
        """x [B,N,D]; temb [B,G,D] per group of N/G consecutive tokens (one latent frame); rope: (cos, sin)
        of x's positions; self_mask bool broadcastable to [B,H,N,Nk] or None; ctx_kv: cached (k, v)
        [B,H,Nc,dh], keys already rotated, that x also attends (before its own keys).
        Returns (x, (k, v)) where k, v are this call's own keys/values (unrotated) for caching."""
        sh1, sc1, g1, sh2, sc2, g2 = (m[:, :, None] for m in self.ada(temb).chunk(6, dim=-1))
        B, N, D = x.shape
        G = temb.shape[1]

        def grp(t):
            return t.view(B, G, N // G, D)

        h = (grp(self.norm1(x)) * (1 + sc1) + sh1).view(B, N, D)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        q, k, v = self.q_norm(self._heads(q)), self.k_norm(self._heads(k)), self._heads(v)
        own = (k, v)
        k = apply_rope(k, rope)
        if ctx_kv is not None:
            k = torch.cat([ctx_kv[0], k], dim=2)
            v = torch.cat([ctx_kv[1], v], dim=2)
        att = F.scaled_dot_product_attention(apply_rope(q, rope), k, v, attn_mask=self_mask)
        x = x + (g1 * grp(self.proj(self._merge(att)))).view(B, N, D)
        x = x + self._cross(x, text, None, self.norm_t, self.t_q, self.t_kv, self.t_proj)
        x = x + self._cross(x, audio, audio_mask, self.norm_a, self.a_q, self.a_kv, self.a_proj)
        x = x + (g2 * grp(self.mlp((grp(self.norm2(x)) * (1 + sc2) + sh2).view(B, N, D)))).view(B, N, D)
        return x, own


# ---------------------------------------------------------------------------------------------- DiT
class LPMDiT(nn.Module):
    def __init__(self, cfg: TrainConfig):
        super().__init__()
        m = cfg.model
        self.cfg = cfg
        D, C, p = m.width, cfg.vae.latent_channels, m.patch
        self.D, self.C, self.p = D, C, p
        self.g = cfg.latent_size // p
        self.tpf = self.g * self.g
        self.dh = D // m.heads
        self.patch_in = nn.Linear(C * p * p, D)
        self.t_mlp = nn.Sequential(nn.Linear(128, D), nn.SiLU(), nn.Linear(D, D))
        self.text_proj = nn.Linear(cfg.data.text_dim, m.text_tokens * D)
        self.text_null = nn.Parameter(torch.randn(m.text_tokens, D) * 0.02)
        F_ = cfg.audio_feat_dim
        self.speak_proj = nn.Sequential(nn.Linear(F_, D), nn.GELU(approximate="tanh"), nn.Linear(D, D))
        self.listen_proj = nn.Sequential(nn.Linear(F_, D), nn.GELU(approximate="tanh"), nn.Linear(D, D))
        self.speak_null = nn.Parameter(torch.randn(D) * 0.02)
        self.listen_null = nn.Parameter(torch.randn(D) * 0.02)
        self.audio_reg = nn.Parameter(torch.randn(2, D) * 0.02)  # [speak register, listen register]
        self.blocks = nn.ModuleList(Block(D, m.heads, m.mlp_ratio, "speak" if i % 2 == 0 else "listen") for i in range(m.depth))
        self.final_norm = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(D, 2 * D)
        self.out = nn.Linear(D, C * p * p)
        for lin in (self.final_ada, self.out):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)
        yy, xx = torch.meshgrid(torch.arange(self.g), torch.arange(self.g), indexing="ij")
        self.register_buffer("grid", torch.stack([yy.flatten(), xx.flatten()], dim=1).float(), persistent=False)

    # ------------------------------------------------------------------ tokens
    def patchify(self, z: torch.Tensor) -> torch.Tensor:
        B, T, C, h, w = z.shape
        g, p = self.g, self.p
        return z.reshape(B, T, C, g, p, g, p).permute(0, 1, 3, 5, 2, 4, 6).reshape(B, T * g * g, C * p * p)

    def unpatchify(self, x: torch.Tensor, T: int) -> torch.Tensor:
        B = x.shape[0]
        g, p, C = self.g, self.p, self.C
        return x.reshape(B, T, g, g, C, p, p).permute(0, 1, 4, 2, 5, 3, 6).reshape(B, T, C, g * p, g * p)

    def frame_pos(self, times: torch.Tensor) -> torch.Tensor:
        """[F] frame time positions -> [F*tpf, 3] (t, y, x) positions."""
        t = times.float().repeat_interleave(self.tpf)[:, None]
        return torch.cat([t, self.grid.repeat(len(times), 1)], dim=1)

    def prefix_times(self, n_refs: int) -> torch.Tensor:
        m = self.cfg.model
        return torch.tensor([m.rope_first_frame_offset] + [m.rope_reference_offset - 2.0 * r for r in range(n_refs)])

    def temb(self, t: torch.Tensor) -> torch.Tensor:
        return self.t_mlp(timestep_embedding(t))

    def cond_tokens(self, cond: dict) -> dict:
        """Prefix tokens + keep mask, text tokens, audio tokens (with registers) from a cond dict."""
        first, refs = cond["first"], cond["refs"]
        B = first.shape[0]
        R = refs.shape[1]
        lat = torch.cat([first[:, None], refs], dim=1)
        prefix = self.patch_in(self.patchify(lat))
        keep = torch.cat([cond["first_mask"][:, None], cond["ref_mask"]], dim=1) > 0
        keep = keep.repeat_interleave(self.tpf, dim=1)
        tm = cond["text_mask"].view(B, 1, 1) > 0
        text = torch.where(tm, self.text_proj(cond["text"]).view(B, -1, self.D), self.text_null[None])
        out = {"prefix": prefix, "prefix_keep": keep, "prefix_pos": self.frame_pos(self.prefix_times(R)), "text": text}
        out["speak"] = self.audio_tokens(cond["speak"], cond["speak_mask"], "speak")
        out["listen"] = self.audio_tokens(cond["listen"], cond["listen_mask"], "listen")
        return out

    def audio_tokens(self, feats: torch.Tensor, mask: torch.Tensor, kind: str) -> torch.Tensor:
        """[B, Ta, F] features -> [B, Ta, D] tokens (null token where the condition is absent/dropped)."""
        proj, null = (self.speak_proj, self.speak_null) if kind == "speak" else (self.listen_proj, self.listen_null)
        m = mask.view(-1, 1, 1) > 0
        return torch.where(m, proj(feats), null.view(1, 1, -1))

    def with_register(self, tokens: torch.Tensor, kind: str) -> torch.Tensor:
        reg = self.audio_reg[0 if kind == "speak" else 1]
        return torch.cat([reg.view(1, 1, -1).expand(tokens.shape[0], 1, -1), tokens], dim=1)

    def audio_mask(self, q_frames: torch.Tensor, q_limit: torch.Tensor, a_frames: torch.Tensor, window: int) -> torch.Tensor:
        """Bool [Nq, 1 + Na]: query token of frame f (nan: prefix) sees audio frame a when |a - f| <= window
        and a <= its limit (chunk end for the causal student); column 0 is the register (always)."""
        f = q_frames[:, None]
        a = a_frames[None, :].float()
        ok = ((a - f).abs() <= window) & (a <= q_limit[:, None]) & ~torch.isnan(f)
        return torch.cat([torch.ones(len(q_frames), 1, dtype=torch.bool), ok], dim=1)

    # ------------------------------------------------------------------ training / teacher forward
    def forward(self, z: torch.Tensor, t: torch.Tensor, cond: dict, causal: bool = False,
                clean: torch.Tensor | None = None, ctok: dict | None = None) -> torch.Tensor:
        """Velocity for noisy latents z [B, T, C, h, w] at per-frame noise levels t [B, T].

        causal=False: bidirectional Base LPM. causal=True: Online LPM training form, the sequence is
        [prefix | clean T frames (t=0) | noisy T frames] under the chunk-causal mask of the KV-cache policy
        (see causal_mask); `clean` holds the clean context latents (teacher-forced history)."""
        B, T = z.shape[:2]
        ctok = ctok or self.cond_tokens(cond)
        P = ctok["prefix"].shape[1]
        frames = torch.arange(T)
        vid_pos = self.frame_pos(frames)
        xv = self.patch_in(self.patchify(z))
        Pf = P // self.tpf  # prefix frames (first frame + references)
        nan_p = torch.full((P,), float("nan"))
        fr_tok = frames.float().repeat_interleave(self.tpf)
        if not causal:
            x = torch.cat([ctok["prefix"], xv], dim=1)
            tt = torch.cat([torch.zeros(B, Pf), t], dim=1)
            pos = torch.cat([ctok["prefix_pos"], vid_pos])
            keep = torch.cat([ctok["prefix_keep"], torch.ones(B, T * self.tpf, dtype=torch.bool)], dim=1)
            self_mask = keep[:, None, None, :]
            q_frames = torch.cat([nan_p, fr_tok])
            q_limit = torch.full_like(q_frames, float("inf"))
        else:
            if clean is None:
                raise ValueError("causal forward needs the clean context latents")
            dc = self.cfg.distill
            xc = self.patch_in(self.patchify(clean))
            x = torch.cat([ctok["prefix"], xc, xv], dim=1)
            tt = torch.cat([torch.zeros(B, Pf + T), t], dim=1)
            pos = torch.cat([ctok["prefix_pos"], vid_pos, vid_pos])
            keep = torch.cat([ctok["prefix_keep"], torch.ones(B, 2 * T * self.tpf, dtype=torch.bool)], dim=1)
            struct = causal_mask(T, dc.chunk_frames, self.tpf, P, dc.sink_chunks, dc.window_chunks)
            self_mask = struct[None, None] & keep[:, None, None, :]
            chunk_end = (frames // dc.chunk_frames + 1) * dc.chunk_frames - 1
            lim = chunk_end.float().repeat_interleave(self.tpf)
            q_frames = torch.cat([nan_p, fr_tok, fr_tok])
            q_limit = torch.cat([torch.full((P,), float("inf")), lim, lim])
        temb = self.temb(tt)
        cs = rope_cos_sin(pos, self.dh, self.cfg.model.rope_theta)
        a_frames = frames
        masks = {k: self.audio_mask(q_frames, q_limit, a_frames, w)[None, None] for k, w in
                 (("speak", self.cfg.model.speak_window), ("listen", self.cfg.model.listen_window))}
        audio = {k: self.with_register(ctok[k], k) for k in ("speak", "listen")}
        for blk in self.blocks:
            k = blk.audio_kind
            x, _ = blk(x, temb, cs, self_mask, ctok["text"], audio[k], masks[k])
        return self.unpatchify(self._final(x[:, -T * self.tpf:], temb[:, -T:]), T)

    def _final(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        G = temb.shape[1]
        sh, sc = (m[:, :, None] for m in self.final_ada(temb).chunk(2, dim=-1))
        h = (self.final_norm(x).view(B, G, N // G, D) * (1 + sc) + sh).view(B, N, D)
        return self.out(h)

    # ------------------------------------------------------------------ streaming (KV cache) forward
    @torch.no_grad()
    def prefix_kv(self, ctok: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Run the prefix tokens alone (as in the causal training mask) and return per-block (k, v)."""
        x = ctok["prefix"]
        B, P = x.shape[:2]
        temb = self.temb(torch.zeros(B, P // self.tpf))
        cs = rope_cos_sin(ctok["prefix_pos"], self.dh, self.cfg.model.rope_theta)
        self_mask = ctok["prefix_keep"][:, None, None, :]
        kvs = []
        amask = torch.zeros(1, 1, P, 1, dtype=torch.bool)
        amask[..., 0] = True
        for blk in self.blocks:
            reg = self.audio_reg[0 if blk.audio_kind == "speak" else 1].view(1, 1, -1).expand(B, 1, -1)
            x, kv = blk(x, temb, cs, self_mask, ctok["text"], reg, amask)
            kvs.append(kv)
        return kvs

    def chunk_forward(self, z: torch.Tensor, t: float, cache: "KVCache", ctok: dict, frame0: int,
                      audio: dict, audio_frames: torch.Tensor):
        """One chunk z [B, c, C, h, w] at noise level t, attending the cache. `audio[kind]` are audio tokens
        [B, Na, D] of absolute frames `audio_frames`; frame0 is the absolute index of the chunk's first frame.
        Returns (v [B, c, C, h, w], per-block (k, v) of this chunk)."""
        B, c = z.shape[:2]
        st = cache.step_state(self, c, frame0, audio_frames)
        x = self.patch_in(self.patchify(z))
        temb = self.temb(torch.full((B, 1), float(t)))
        aud = {k: self.with_register(audio[k], k) for k in ("speak", "listen")}
        own = []
        for i, blk in enumerate(self.blocks):
            k = blk.audio_kind
            x, kv = blk(x, temb, st["rope"], st["self_mask"], ctok["text"], aud[k], st[k], ctx_kv=cache.context_kv(i))
            own.append(kv)
        return self.unpatchify(self._final(x, temb), c), own


def causal_mask(T: int, chunk: int, tpf: int, P: int, sink: int, window: int) -> torch.Tensor:
    """Bool [N, N] for [prefix P | clean T*tpf | noisy T*tpf]: the KV-cache policy as a mask.

    Prefix sees prefix. Clean chunk i sees prefix, the clean chunks the cache would hold when chunk i is
    generated (the first `sink` chunks and the last `window` before i) and itself. Noisy chunk i sees
    prefix, those same clean chunks, and itself."""
    n = T // chunk
    L = chunk * tpf
    N = P + 2 * T * tpf
    M = torch.zeros(N, N, dtype=torch.bool)
    M[:P, :P] = True

    def clean(j):
        return slice(P + j * L, P + (j + 1) * L)

    def noisy(j):
        return slice(P + T * tpf + j * L, P + T * tpf + (j + 1) * L)

    for i in range(n):
        vis = [j for j in range(i) if j < sink or j >= i - window]
        for rows, own in ((clean(i), clean(i)), (noisy(i), noisy(i))):
            M[rows, :P] = True
            for j in vis:
                M[rows, clean(j)] = True
            M[rows, own] = True
    return M


class KVCache:
    """Per block: prefix (k, v) forever, `sink` first chunks forever, the last `window` chunks (FIFO).

    Keys are stored unrotated; RoPE positions are assigned by slot (sinks at 0.., then the window, then
    the current chunk), so positions stay inside what training saw for any stream length. The rotated,
    concatenated context of each block is rebuilt once per append and reused by every step of a chunk."""

    def __init__(self, prefix_kv, prefix_pos: torch.Tensor, prefix_keep: torch.Tensor, chunk: int, sink: int, window: int):
        self.prefix = prefix_kv
        self.prefix_pos, self.prefix_keep = prefix_pos, prefix_keep
        self.chunk, self.sink, self.window = chunk, sink, window
        self.sinks: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        self.recent: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        self.n_chunks = 0
        self._ctx = None
        self._step = None

    def current_slot(self) -> int:
        return len(self.sinks) + len(self.recent)

    def context_positions(self, model: LPMDiT):
        n = len(self.sinks) + len(self.recent)
        times = torch.arange(n * self.chunk).float()
        pos = torch.cat([self.prefix_pos, model.frame_pos(times)]) if n else self.prefix_pos
        B = self.prefix_keep.shape[0]
        keep = torch.cat([self.prefix_keep, torch.ones(B, n * self.chunk * model.tpf, dtype=torch.bool)], dim=1)
        return pos, keep

    def _build(self, model: LPMDiT) -> None:
        pos, keep = self.context_positions(model)
        cs = rope_cos_sin(pos, model.dh, model.cfg.model.rope_theta)
        self._ctx = []
        for layer in range(len(self.prefix)):
            ks = [self.prefix[layer][0]] + [c[layer][0] for c in self.sinks + self.recent]
            vs = [self.prefix[layer][1]] + [c[layer][1] for c in self.sinks + self.recent]
            self._ctx.append((apply_rope(torch.cat(ks, dim=2), cs), torch.cat(vs, dim=2)))
        self._keep = keep

    def step_state(self, model: LPMDiT, c: int, frame0: int, audio_frames: torch.Tensor) -> dict:
        """Rotary tables, self-attention mask and audio masks of the current chunk (shared by its steps)."""
        key = (c, frame0, int(audio_frames[0]), len(audio_frames), self.n_chunks)
        if self._step is not None and self._step[0] == key:
            return self._step[1]
        if self._ctx is None:
            self._build(model)
        B = self.prefix_keep.shape[0]
        times = torch.arange(c) + self.current_slot() * c
        keep = torch.cat([self._keep, torch.ones(B, c * model.tpf, dtype=torch.bool)], dim=1)
        fr = (torch.arange(c) + frame0).float().repeat_interleave(model.tpf)
        lim = torch.full_like(fr, float(frame0 + c - 1))
        st = {"rope": rope_cos_sin(model.frame_pos(times), model.dh, model.cfg.model.rope_theta),
              "self_mask": keep[:, None, None, :]}
        for k, w in (("speak", model.cfg.model.speak_window), ("listen", model.cfg.model.listen_window)):
            st[k] = model.audio_mask(fr, lim, audio_frames, w)[None, None]
        self._step = (key, st)
        return st

    def context_kv(self, layer: int):
        return self._ctx[layer]

    def append(self, chunk_kv) -> None:
        chunk_kv = [(k.detach(), v.detach()) for k, v in chunk_kv]
        if len(self.sinks) < self.sink:
            self.sinks.append(chunk_kv)
        else:
            self.recent.append(chunk_kv)
            if len(self.recent) > self.window:
                self.recent.pop(0)
        self.n_chunks += 1
        self._ctx = None
        self._step = None

    def tokens(self) -> int:
        return sum(k.shape[2] for k, _ in [self.prefix[0]] + [c[0] for c in self.sinks + self.recent])

    def nbytes(self) -> int:
        """Bytes of the cached keys/values (the rotated working copy is rebuilt from these)."""
        total = 0
        for layer in range(len(self.prefix)):
            for k, v in [self.prefix[layer]] + [c[layer] for c in self.sinks + self.recent]:
                total += k.numel() * k.element_size() + v.numel() * v.element_size()
        return total
