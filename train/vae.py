"""A small per-frame convolutional VAE: RGB frames <-> latents (e.g. 32x32x3 -> 8x8x4), trained in-repo.

Latents are normalised by per-channel statistics measured after training (stored in the checkpoint), so
the DiT sees roughly unit-variance inputs, as latent diffusion models do.
"""
from __future__ import annotations

import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from train.config import TrainConfig


def to_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W, 3] -> float [..., 3, H, W] in [-1, 1]."""
    x = frames.float() / 127.5 - 1.0
    return x.movedim(-1, -3).contiguous()


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """float [..., 3, H, W] in [-1, 1] -> uint8 [..., H, W, 3]."""
    return ((x.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).movedim(-3, -1).contiguous()


class VideoVAE(nn.Module):
    def __init__(self, cfg: TrainConfig):
        super().__init__()
        c, w, zc = 3, cfg.vae.width, cfg.vae.latent_channels
        n_down = int(math.log2(cfg.vae.downsample))
        # channels grow as resolution falls: w / 2**(n_down - level) at each level, w at the latent level
        widths = [max(8, w >> (n_down - i)) for i in range(n_down + 1)]
        enc = [nn.Conv2d(c, widths[0], 3, padding=1), nn.SiLU()]
        for i in range(n_down):
            enc += [nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1), nn.SiLU(),
                    nn.Conv2d(widths[i + 1], widths[i + 1], 3, padding=1), nn.SiLU()]
        enc += [nn.Conv2d(widths[-1], 2 * zc, 1)]
        dec = [nn.Conv2d(zc, widths[-1], 3, padding=1), nn.SiLU()]
        for i in reversed(range(n_down)):
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(widths[i + 1], widths[i], 3, padding=1), nn.SiLU(),
                    nn.Conv2d(widths[i], widths[i], 3, padding=1), nn.SiLU()]
        dec += [nn.Conv2d(widths[0], c, 3, padding=1)]
        self.enc, self.dec = nn.Sequential(*enc), nn.Sequential(*dec)
        self.register_buffer("lat_mean", torch.zeros(zc))
        self.register_buffer("lat_std", torch.ones(zc))

    def _flat(self, x):
        lead = x.shape[:-3]
        return x.reshape(-1, *x.shape[-3:]), lead

    def moments(self, x: torch.Tensor):
        x, lead = self._flat(x)
        m, logvar = self.enc(x).chunk(2, dim=1)
        return m.reshape(*lead, *m.shape[1:]), logvar.clamp(-20, 5).reshape(*lead, *m.shape[1:])

    def encode(self, x: torch.Tensor, sample: bool = False) -> torch.Tensor:
        """float frames [..., 3, H, W] -> normalised latents [..., C, h, w] (the posterior mean by default)."""
        m, logvar = self.moments(x)
        z = m + torch.randn_like(m) * (0.5 * logvar).exp() if sample else m
        shape = [1] * (z.dim() - 3) + [-1, 1, 1]
        return (z - self.lat_mean.view(shape)) / self.lat_std.view(shape)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        shape = [1] * (z.dim() - 3) + [-1, 1, 1]
        z = z * self.lat_std.view(shape) + self.lat_mean.view(shape)
        z, lead = self._flat(z)
        x = self.dec(z)
        return x.reshape(*lead, *x.shape[1:])

    def encode_frames(self, frames_u8: torch.Tensor) -> torch.Tensor:
        return self.encode(to_float(frames_u8))

    def loss(self, x: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, dict]:
        m, logvar = self.moments(x)
        z = m + torch.randn_like(m) * (0.5 * logvar).exp()
        rec = self.dec(z)
        l1 = (rec - x).abs().mean()
        mse = F.mse_loss(rec, x)
        kl = 0.5 * (m.pow(2) + logvar.exp() - 1 - logvar).mean()
        return l1 + mse + kl_weight * kl, {"l1": l1.item(), "mse": mse.item(), "kl": kl.item()}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of float images in [-1, 1]."""
    mse = F.mse_loss(a.clamp(-1, 1), b.clamp(-1, 1)).item()
    return float(10 * math.log10(4.0 / max(mse, 1e-12)))


def train_vae(cfg: TrainConfig, batches, log=print) -> tuple[VideoVAE, dict]:
    """Train on frames from an iterator of reader batches; then measure latent statistics."""
    torch.manual_seed(cfg.data.seed)
    vae = VideoVAE(cfg)
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.vae.lr)
    pool: list[torch.Tensor] = []
    t0 = time.monotonic()
    hist = []

    def frames_batch():
        while sum(len(p) for p in pool) < cfg.vae.batch_frames:
            b = next(batches)
            pool.append(b["video"].reshape(-1, *b["video"].shape[-3:]))
            pool.append(b["refs"][b["ref_mask"] > 0].reshape(-1, *b["refs"].shape[-3:]))
        allf = torch.cat(pool)
        pool.clear()
        perm = torch.randperm(len(allf))
        take = allf[perm[: cfg.vae.batch_frames]]
        rest = allf[perm[cfg.vae.batch_frames:]]
        if len(rest):
            pool.append(rest[: 4 * cfg.vae.batch_frames])
        return to_float(take)

    for step in range(cfg.vae.steps):
        x = frames_batch()
        loss, parts = vae.loss(x, cfg.vae.kl_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        hist.append(loss.item())
        if step % 50 == 0 or step == cfg.vae.steps - 1:
            log(f"vae step {step} loss {loss.item():.4f} mse {parts['mse']:.4f}")
    vae.eval()
    with torch.no_grad():
        x = frames_batch()
        m, _ = vae.moments(x)
        vae.lat_mean.copy_(m.mean(dim=(0, 2, 3)))
        vae.lat_std.copy_(m.std(dim=(0, 2, 3)).clamp_min(1e-3))
        rec = vae.decode(vae.encode(x))
        metrics = {"psnr_db": psnr(rec, x), "final_loss": hist[-1] if hist else float("nan"),
                   "seconds": time.monotonic() - t0}
    log(f"vae done: reconstruction PSNR {metrics['psnr_db']:.2f} dB")
    return vae, metrics
