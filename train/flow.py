"""Flow matching pieces shared by Base LPM training and distillation: batch -> latents + conditions,
classifier-free-guidance dropout, the loss, and the teacher's guided Euler sampler.

Convention (rectified flow): x_t = (1 - t) x0 + t * eps, t in [0, 1]; the model predicts v = eps - x0;
x0 = x_t - t v. Sampling integrates from t = 1 (noise) to t = 0.
"""
from __future__ import annotations

import torch

from train.config import CFGDrop, TrainConfig
from train.vae import VideoVAE, to_float

COND_KEYS = ("first", "first_mask", "refs", "ref_mask", "text", "text_mask", "speak", "speak_mask", "listen", "listen_mask")


@torch.no_grad()
def prepare_batch(batch: dict, vae: VideoVAE) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """Reader batch -> (x0 latents [B,T,C,h,w], cond dict, frame weights [B,T])."""
    x0 = vae.encode(to_float(batch["video"]))
    B = x0.shape[0]
    cond = {
        "first": vae.encode(to_float(batch["first"])),
        "first_mask": torch.ones(B),
        "refs": vae.encode(to_float(batch["refs"])),
        "ref_mask": batch["ref_mask"].float(),
        "text": batch["text"].float(),
        "text_mask": batch["text_mask"].float(),
        "speak": batch["speak"].float(),
        "speak_mask": batch["speak_mask"].float(),
        "listen": batch["listen"].float(),
        "listen_mask": batch["listen_mask"].float(),
    }
    return x0, cond, batch["frame_weight"].float()


def cfg_dropout(cond: dict, drop: CFGDrop, gen: torch.Generator) -> dict:
    """Drop each condition independently per sample (mask -> 0), plus all of text+audio together."""
    out = dict(cond)
    B = cond["first"].shape[0]

    def keep(p):
        return (torch.rand(B, generator=gen) >= p).float()

    allx = keep(drop.all_audio_text)
    out["text_mask"] = cond["text_mask"] * keep(drop.text) * allx
    out["speak_mask"] = cond["speak_mask"] * keep(drop.speak) * allx
    out["listen_mask"] = cond["listen_mask"] * keep(drop.listen) * allx
    out["first_mask"] = cond["first_mask"] * keep(drop.first_frame)
    out["ref_mask"] = cond["ref_mask"] * keep(drop.refs)[:, None]
    return out


def uncond(cond: dict) -> dict:
    """The unconditional branch of CFG: text and both audio streams dropped (identity conditions kept)."""
    out = dict(cond)
    for k in ("text_mask", "speak_mask", "listen_mask"):
        out[k] = torch.zeros_like(cond[k])
    return out


def sample_t(B: int, gen: torch.Generator, logit_normal: bool = True) -> torch.Tensor:
    if logit_normal:
        return torch.sigmoid(torch.randn(B, generator=gen))
    return torch.rand(B, generator=gen)


def weighted_mse(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    per_frame = (pred - target).pow(2).mean(dim=(2, 3, 4))
    return (per_frame * weight).sum() / weight.sum().clamp_min(1.0)


def flow_loss(model, x0: torch.Tensor, cond: dict, weight: torch.Tensor, gen: torch.Generator,
              logit_normal: bool = True) -> torch.Tensor:
    B, T = x0.shape[:2]
    t = sample_t(B, gen, logit_normal)[:, None].expand(B, T)
    eps = torch.randn(x0.shape, generator=gen)
    tt = t[:, :, None, None, None]
    z = (1 - tt) * x0 + tt * eps
    v = model(z, t, cond)
    return weighted_mse(v, eps - x0, weight)


def _cat_cond(a: dict, b: dict) -> dict:
    return {k: torch.cat([a[k], b[k]]) for k in COND_KEYS}


def guided_velocity(model, z: torch.Tensor, t: torch.Tensor, cond: dict, scale: float) -> torch.Tensor:
    """v = v_uncond + scale * (v_cond - v_uncond), both branches in one batched forward."""
    if scale == 1.0:
        return model(z, t, cond)
    v = model(torch.cat([z, z]), torch.cat([t, t]), _cat_cond(cond, uncond(cond)))
    vc, vu = v.chunk(2)
    return vu + scale * (vc - vu)


@torch.no_grad()
def sample_teacher(model, cond: dict, noise: torch.Tensor, steps: int, scale: float,
                   record: tuple[float, ...] = ()) -> tuple[torch.Tensor, dict]:
    """The teacher's full sampler: `steps` Euler steps of the guided ODE from t=1 to 0.
    Returns x0 and {t: x_t} for the grid points nearest to the requested record times."""
    B, T = noise.shape[:2]
    ts = torch.linspace(1.0, 0.0, steps + 1)
    want = {float(ts[int(torch.argmin((ts - r).abs()))]): r for r in record}
    traj = {}
    z = noise
    for i in range(steps):
        t = float(ts[i])
        if t in want:
            traj[want[t]] = z.clone()
        v = guided_velocity(model, z, torch.full((B, T), t), cond, scale)
        z = z + (float(ts[i + 1]) - t) * v
    return z, traj


def index_cond(cond: dict, idx) -> dict:
    return {k: v[idx] for k, v in cond.items()}


def config_dict(cfg: TrainConfig) -> dict:
    return cfg.model_dump()
