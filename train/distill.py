"""Online LPM distillation: Base LPM (bidirectional, guided, many steps) -> causal few-step student.

1. Initialise the student (and the fake-score model) from the teacher's weights.
2. ODE trajectory regression: the teacher's guided sampler runs from noise on real conditions; the student,
   under the chunk-causal mask with the teacher's clean result as history, learns to map trajectory points
   at its own noise levels to the teacher's final x0 (CausVid-style initialisation).
3. DMD: the student rolls out chunk by chunk on its own outputs (Self-Forcing style, random exit step);
   the distribution-matching gradient is the difference of the fake-score and the guided teacher x0
   predictions at a random noise level; the fake-score model keeps learning the student's distribution
   with the flow-matching loss. As in the original DMD, a regression term on the teacher's (noise,
   output) pairs (weight distill.dmd_reg_weight) keeps the generator anchored to the teacher.

Evaluation metric (stated): on held-out conditions and fixed noise, the MSE in latent space and the PSNR
of decoded frames between a sampler's output and the teacher's full guided sampler's output from the same
noise. "Undistilled" is the student initialised from the teacher, before any distillation.
"""
from __future__ import annotations

import copy
import json
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from train.base import load_base, save_atomic
from train.config import TrainConfig
from train.data import make_loader
from train.flow import flow_loss, guided_velocity, index_cond, prepare_batch, sample_teacher
from train.online import student_rollout
from train.vae import psnr


def collect_conditions(cfg: TrainConfig, data_dir: str, vae, n: int, seed_offset: int = 0) -> tuple[dict, torch.Tensor]:
    """n samples of real conditions (and their x0 latents) from the reader, with a distinct reader seed."""
    dcfg = cfg.data.model_copy(update={"seed": cfg.data.seed + 7919 * (seed_offset + 1)})
    loader = make_loader(data_dir, dcfg, batch_size=min(n, cfg.distill.batch_size))
    conds, xs = [], []
    got = 0
    for batch in loader:
        x0, cond, _ = prepare_batch(batch, vae)
        conds.append(cond)
        xs.append(x0)
        got += x0.shape[0]
        if got >= n:
            break
    cond = {k: torch.cat([c[k] for c in conds])[:n] for k in conds[0]}
    return cond, torch.cat(xs)[:n]


@torch.no_grad()
def teacher_pairs(teacher, cond: dict, noise: torch.Tensor, cfg: TrainConfig, batch: int = 8) -> dict:
    """Run the teacher's full guided sampler; keep x_t at the student's noise levels and the final x0."""
    ts = tuple(cfg.distill.student_timesteps)
    x0s, trajs = [], {t: [] for t in ts}
    for i in range(0, noise.shape[0], batch):
        sl = slice(i, i + batch)
        x0, traj = sample_teacher(teacher, index_cond(cond, sl), noise[sl], cfg.base.sample_steps, cfg.base.cfg_scale, record=ts)
        x0s.append(x0)
        for t in ts:
            trajs[t].append(traj[t])
    return {"x0": torch.cat(x0s), "traj": {t: torch.cat(v) for t, v in trajs.items()}}


def ode_loss(student, pairs: dict, cond: dict, cfg: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Regression of the teacher's x0 from its trajectory points at the student's noise levels, one
    independent level per chunk (diffusion-forcing style), teacher-forced clean history."""
    d = cfg.distill
    ts = list(d.student_timesteps)
    N, T = pairs["x0"].shape[:2]
    c = d.chunk_frames
    idx = torch.randint(0, N, (min(d.batch_size, N),), generator=gen)
    B = len(idx)
    lvl = torch.randint(0, len(ts), (B, T // c), generator=gen).repeat_interleave(c, dim=1)
    stack = torch.stack([pairs["traj"][t][idx] for t in ts])  # [S, B, T, C, h, w]
    z = stack.gather(0, lvl[None, :, :, None, None, None].expand(1, B, T, *stack.shape[3:]))[0]
    t = torch.tensor(ts)[lvl]
    x0 = pairs["x0"][idx]
    v = student(z, t, index_cond(cond, idx), causal=True, clean=x0)
    return F.mse_loss(z - t[:, :, None, None, None] * v, x0)


def ode_regression(student, pairs: dict, cond: dict, cfg: TrainConfig, log=print) -> list[float]:
    d = cfg.distill
    opt = torch.optim.AdamW(student.parameters(), lr=d.lr, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(d.seed)
    hist = []
    student.train()
    for step in range(d.ode_steps):
        loss = ode_loss(student, pairs, cond, cfg, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt.step()
        hist.append(loss.item())
        if step % d.log_every == 0 or step == d.ode_steps - 1:
            log(f"ode step {step} loss {loss.item():.4f}")
    student.eval()
    return hist


def dmd(student, teacher, fake, cond: dict, cfg: TrainConfig, log=print, pairs: dict | None = None) -> list[dict]:
    """DMD updates of the student; with `pairs`, plus dmd_reg_weight x the ODE regression loss on the
    teacher's (noise, output) pairs, as the original DMD's regression term (keeps the student anchored)."""
    d = cfg.distill
    ts = list(d.student_timesteps)
    opt_g = torch.optim.AdamW(student.parameters(), lr=d.dmd_lr, betas=(0.0, 0.99))
    opt_f = torch.optim.AdamW(fake.parameters(), lr=d.fake_lr, betas=(0.0, 0.99))
    gen = torch.Generator().manual_seed(d.seed + 1)
    N = cond["first"].shape[0]
    T = cfg.data.num_frames
    lat = cfg.latent_size
    hist = []
    for p in teacher.parameters():
        p.requires_grad_(False)
    for step in range(d.dmd_steps):
        idx = torch.randint(0, N, (min(d.batch_size, N),), generator=gen)
        cnd = index_cond(cond, idx)
        B = len(idx)
        noise = torch.randn((B, T, cfg.vae.latent_channels, lat, lat), generator=gen)
        s = int(torch.randint(0, len(ts), (1,), generator=gen))
        student.eval()
        with torch.no_grad():
            x_roll, z_in = student_rollout(student, cnd, noise, exit_step=s)
        student.train()
        tt = torch.full((B, T), ts[s])
        x = z_in - ts[s] * student(z_in, tt, cnd, causal=True, clean=x_roll)
        with torch.no_grad():
            t = (d.dmd_t_min + (d.dmd_t_max - d.dmd_t_min) * torch.rand(B, generator=gen))[:, None].expand(B, T)
            n = torch.randn(x.shape, generator=gen)
            t5 = t[:, :, None, None, None]
            xt = (1 - t5) * x + t5 * n
            x0_real = xt - t5 * guided_velocity(teacher, xt, t, cnd, cfg.base.cfg_scale)
            x0_fake = xt - t5 * fake(xt, t, cnd)
            norm = (x - x0_real).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-4)
            grad = torch.nan_to_num((x0_fake - x0_real) / norm)
        loss_g = 0.5 * F.mse_loss(x, (x - grad).detach())
        total = loss_g
        if pairs is not None and d.dmd_reg_weight > 0:
            total = total + d.dmd_reg_weight * ode_loss(student, pairs, cond, cfg, gen)
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
        opt_g.step()
        fl = 0.0
        for _ in range(d.fake_updates):
            fgen = torch.Generator().manual_seed(d.seed * 7 + step)
            loss_f = flow_loss(fake, x.detach(), cnd, torch.ones(B, T), fgen, True)
            opt_f.zero_grad(set_to_none=True)
            loss_f.backward()
            torch.nn.utils.clip_grad_norm_(fake.parameters(), 1.0)
            opt_f.step()
            fl = loss_f.item()
        hist.append({"step": step, "dmd": loss_g.item(), "fake": fl, "exit_step": s})
        if step % d.log_every == 0 or step == d.dmd_steps - 1:
            log(f"dmd step {step} generator {loss_g.item():.4f} fake {fl:.4f} (exit step {s})")
    student.eval()
    return hist


@torch.no_grad()
def compare_to_teacher(models: dict, teacher_x0: torch.Tensor, cond: dict, noise: torch.Tensor, vae) -> dict:
    """{name: {latent_mse, psnr_db}} of each student's few-step output vs the teacher's, same noise."""
    ref = vae.decode(teacher_x0)
    out = {}
    for name, m in models.items():
        x, _ = student_rollout(m, cond, noise)
        out[name] = {"latent_mse": float(F.mse_loss(x, teacher_x0)), "psnr_db": psnr(vae.decode(x), ref)}
    return out


@torch.no_grad()
def time_samplers(teacher, student, cond: dict, noise: torch.Tensor, cfg: TrainConfig, repeats: int = 3) -> dict:
    """Wall time of the teacher's full guided sampler vs the student's chunk-wise few-step sampler (B=1)."""
    c1, n1 = index_cond(cond, slice(0, 1)), noise[:1]

    def best(fn):
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return min(times)

    tt = best(lambda: sample_teacher(teacher, c1, n1, cfg.base.sample_steps, cfg.base.cfg_scale))
    ts = best(lambda: student_rollout(student, c1, n1))
    return {"teacher_s": tt, "student_s": ts, "speedup": tt / ts, "teacher_steps": cfg.base.sample_steps,
            "teacher_forwards": cfg.base.sample_steps * (2 if cfg.base.cfg_scale != 1.0 else 1),
            "student_steps": len(cfg.distill.student_timesteps)}


def run_distill(base_dir: str, data_dir: str, out_dir: str, cfg: TrainConfig | None = None, log=print) -> dict:
    """The whole curriculum; writes OUT/online.pt (student) and OUT/distill.json (metrics)."""
    teacher, vae, base_cfg = load_base(base_dir)
    cfg = cfg or base_cfg
    d = cfg.distill
    torch.set_num_threads(cfg.base.torch_threads)
    torch.manual_seed(d.seed)
    for p in teacher.parameters():
        p.requires_grad_(False)
    teacher.cfg = cfg  # sampling settings (steps, guidance) from the distill config
    t0 = time.monotonic()
    cond, _ = collect_conditions(cfg, data_dir, vae, d.ode_pairs, seed_offset=0)
    gen = torch.Generator().manual_seed(d.seed + 100)
    lat = cfg.latent_size
    noise = torch.randn((d.ode_pairs, cfg.data.num_frames, cfg.vae.latent_channels, lat, lat), generator=gen)
    pairs = teacher_pairs(teacher, cond, noise, cfg)
    log(f"teacher trajectories: {d.ode_pairs} in {time.monotonic() - t0:.1f} s")
    ev_cond, _ = collect_conditions(cfg, data_dir, vae, d.eval_samples, seed_offset=1)
    ev_noise = torch.randn((d.eval_samples, cfg.data.num_frames, cfg.vae.latent_channels, lat, lat), generator=gen)
    ev_teacher = teacher_pairs(teacher, ev_cond, ev_noise, cfg)["x0"]

    undistilled = copy.deepcopy(teacher).eval()
    student = copy.deepcopy(teacher)
    for p in student.parameters():
        p.requires_grad_(True)
    ode_hist = ode_regression(student, pairs, cond, cfg, log=log)
    after_ode = copy.deepcopy(student).eval()
    fake = copy.deepcopy(teacher)
    for p in fake.parameters():
        p.requires_grad_(True)
    dmd_hist = dmd(student, teacher, fake, cond, cfg, log=log, pairs=pairs)
    metrics = compare_to_teacher({"undistilled": undistilled, "ode": after_ode, "ode+dmd": student}, ev_teacher, ev_cond, ev_noise, vae)
    timing = time_samplers(teacher, student, ev_cond, ev_noise, cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if (Path(base_dir) / "vae.pt").resolve() != (out / "vae.pt").resolve():
        shutil.copyfile(Path(base_dir) / "vae.pt", out / "vae.pt")
    save_atomic({"model": student.state_dict(), "config": cfg.model_dump(), "stage": "ode+dmd"}, out / "online.pt")
    save_atomic({"model": after_ode.state_dict(), "config": cfg.model_dump(), "stage": "ode"}, out / "online_ode.pt")
    result = {"compare_to_teacher": metrics, "timing": timing, "ode_loss_first_last": [ode_hist[0], ode_hist[-1]] if ode_hist else [],
              "dmd": dmd_hist[-5:], "seconds": time.monotonic() - t0}
    (out / "distill.json").write_text(json.dumps(result, indent=2))
    log(json.dumps({"compare_to_teacher": metrics, "timing": timing}, indent=2))
    return result


def load_online(out_dir: str | Path, name: str = "online.pt"):
    from train.base import load_state, load_vae
    from train.model import LPMDiT

    out = Path(out_dir)
    st = load_state(out / name)
    cfg = TrainConfig.model_validate(st["config"])
    model = LPMDiT(cfg)
    model.load_state_dict(st["model"])
    model.eval()
    vae_path = out / "vae.pt"
    if not vae_path.exists():
        vae_path = Path(st.get("vae_path") or vae_path)
    vae, _ = load_vae(vae_path)
    return model, vae, cfg
