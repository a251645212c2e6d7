"""Base LPM training: single-process loop and Ray Train (TorchTrainer, CPU workers, DDP over gloo).

Layout of the output folder OUT::

    vae.pt                 the latent autoencoder (trained first when absent)
    ckpt/latest.pt         model + optimiser + step (written atomically every base.ckpt_every steps)
    base.pt                final model (what distill and stream load)
    loss.csv, loss.png     the loss curve (a resumed run truncates rows past its checkpoint, then appends)

Determinism: the noise, timesteps and CFG dropout of step s come from a generator seeded by (seed, s) and
the reader resumes at step s, so an interrupted and resumed run reproduces the uninterrupted one.
"""
from __future__ import annotations

import csv
import os
import tempfile
import time
from pathlib import Path

import torch

from train.config import TrainConfig
from train.data import make_loader
from train.flow import cfg_dropout, flow_loss, prepare_batch
from train.model import LPMDiT
from train.vae import VideoVAE, train_vae


def step_generator(seed: int, step: int, rank: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + step) * 1009 + rank)


def save_atomic(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="tmp-", suffix=".part", dir=str(path.parent))
    os.close(fd)
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_state(path: str | Path) -> dict:
    return torch.load(str(path), map_location="cpu", weights_only=False)


# --------------------------------------------------------------------------------------------- VAE
def load_vae(path: str | Path) -> tuple[VideoVAE, TrainConfig]:
    st = load_state(path)
    cfg = TrainConfig.model_validate(st["config"])
    vae = VideoVAE(cfg)
    vae.load_state_dict(st["vae"])
    vae.eval()
    return vae, cfg


def ensure_vae(cfg: TrainConfig, data_dir: str, out_dir: Path, log=print) -> VideoVAE:
    path = out_dir / "vae.pt"
    if path.exists():
        vae, _ = load_vae(path)
        return vae
    loader = make_loader(data_dir, cfg.data, batch_size=4)
    vae, metrics = train_vae(cfg, iter(loader), log=log)
    save_atomic({"vae": vae.state_dict(), "config": cfg.model_dump(), "metrics": metrics}, path)
    return vae


# ------------------------------------------------------------------------------------------ curves
def read_curve(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path) as fh:
        return [{"step": int(r["step"]), "loss": float(r["loss"]), "lr": float(r["lr"]), "wall_s": float(r["wall_s"])}
                for r in csv.DictReader(fh)]


def write_curve(path: Path, rows: list[dict]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["step", "loss", "lr", "wall_s"])
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def plot_curve(rows: list[dict], path: Path, title: str = "Base LPM flow-matching loss") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    loss = [r["loss"] for r in rows]
    ema, s = [], None
    for v in loss:
        s = v if s is None else 0.95 * s + 0.05 * v
        ema.append(s)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, loss, lw=0.6, alpha=0.5, label="loss")
    ax.plot(steps, ema, lw=1.8, label="EMA 0.95")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------- single process
def lr_at(cfg: TrainConfig, step: int) -> float:
    w = cfg.base.warmup_steps
    return cfg.base.lr * min(1.0, (step + 1) / w) if w else cfg.base.lr


def train_base(cfg: TrainConfig, data_dir: str, out_dir: str, resume: bool = True, stop_at: int | None = None,
               log=print) -> dict:
    """Train the Base LPM for cfg.base.steps steps (continuing from OUT/ckpt/latest.pt when resume).
    stop_at: stop after that many total steps (a checkpoint is written there), as an interruption would."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.base.torch_threads)
    vae = ensure_vae(cfg, data_dir, out, log=log)
    torch.manual_seed(cfg.base.seed)
    model = LPMDiT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.base.lr, betas=(0.9, 0.99), weight_decay=cfg.base.weight_decay)
    start = 0
    latest = out / "ckpt" / "latest.pt"
    if resume and latest.exists():
        st = load_state(latest)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        start = int(st["step"])
        log(f"resumed from {latest} at step {start}")
    curve_path = out / "loss.csv"
    rows = [r for r in read_curve(curve_path) if r["step"] < start] if resume else []
    total = cfg.base.steps if stop_at is None else min(cfg.base.steps, stop_at)
    loader = make_loader(data_dir, cfg.data, cfg.base.batch_size, num_workers=cfg.base.loader_workers, start_step=start)
    it = iter(loader)
    t0 = time.monotonic()
    wall0 = rows[-1]["wall_s"] if rows else 0.0
    model.train()
    for step in range(start, total):
        batch = next(it)
        lr = lr_at(cfg, step)
        for g in opt.param_groups:
            g["lr"] = lr
        gen = step_generator(cfg.base.seed, step)
        x0, cond, weight = prepare_batch(batch, vae)
        cond = cfg_dropout(cond, cfg.base.cfg_drop, gen)
        loss = flow_loss(model, x0, cond, weight, gen, cfg.base.logit_normal_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.base.grad_clip)
        opt.step()
        rows.append({"step": step, "loss": loss.item(), "lr": lr, "wall_s": wall0 + time.monotonic() - t0})
        if step % cfg.base.log_every == 0 or step == total - 1:
            log(f"base step {step} loss {loss.item():.4f} lr {lr:.2e}")
        if (step + 1) % cfg.base.ckpt_every == 0 or step + 1 == total:
            save_atomic({"model": model.state_dict(), "opt": opt.state_dict(), "step": step + 1,
                         "config": cfg.model_dump()}, latest)
            write_curve(curve_path, rows)
    write_curve(curve_path, rows)
    if rows:
        plot_curve(rows, out / "loss.png")
    if total >= cfg.base.steps:
        save_atomic({"model": model.state_dict(), "config": cfg.model_dump(), "steps": total}, out / "base.pt")
    return {"steps": total, "start": start, "curve_csv": str(curve_path), "curve_png": str(out / "loss.png"),
            "final_loss": rows[-1]["loss"] if rows else None, "seconds": time.monotonic() - t0}


def load_base(out_dir: str | Path) -> tuple[LPMDiT, VideoVAE, TrainConfig]:
    out = Path(out_dir)
    st = load_state(out / "base.pt")
    cfg = TrainConfig.model_validate(st["config"])
    model = LPMDiT(cfg)
    model.load_state_dict(st["model"])
    model.eval()
    vae, _ = load_vae(out / "vae.pt")
    return model, vae, cfg


# ------------------------------------------------------------------------------------ Ray Train
def _ray_train_loop(config: dict) -> None:
    import ray.train
    import ray.train.torch

    cfg = TrainConfig.model_validate(config["cfg"])
    torch.set_num_threads(cfg.base.torch_threads)
    rank = ray.train.get_context().get_world_rank()
    vae, _ = load_vae(config["vae"])
    torch.manual_seed(cfg.base.seed)
    model = LPMDiT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.base.lr, betas=(0.9, 0.99), weight_decay=cfg.base.weight_decay)
    start = 0
    ckpt = ray.train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            st = load_state(Path(d) / "state.pt")
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        start = int(st["step"])
    ddp = ray.train.torch.prepare_model(model)
    shard = ray.train.get_dataset_shard("train")
    step = start
    total = cfg.base.steps
    while step < total:
        for batch in shard.iter_torch_batches(batch_size=cfg.base.batch_size, drop_last=True,
                                              local_shuffle_buffer_size=cfg.data.shuffle_buffer):
            lr = lr_at(cfg, step)
            for g in opt.param_groups:
                g["lr"] = lr
            gen = step_generator(cfg.base.seed, step, rank)
            x0, cond, weight = prepare_batch(batch, vae)
            cond = cfg_dropout(cond, cfg.base.cfg_drop, gen)
            loss = flow_loss(ddp, x0, cond, weight, gen, cfg.base.logit_normal_t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ddp.parameters(), cfg.base.grad_clip)
            opt.step()
            step += 1
            metrics = {"step": step, "loss": loss.item(), "lr": lr}
            if step % cfg.base.ckpt_every == 0 or step == total:
                with tempfile.TemporaryDirectory() as d:
                    if rank == 0:
                        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step,
                                    "config": cfg.model_dump()}, Path(d) / "state.pt")
                        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
                    else:
                        ray.train.report(metrics)
            elif step % cfg.base.log_every == 0:
                ray.train.report(metrics)
            if step >= total:
                break


def train_base_ray(cfg: TrainConfig, data_dir: str, out_dir: str, num_workers: int = 2, cpus_per_worker: float = 0.5,
                   log=print) -> dict:
    """Train with ray.train.torch.TorchTrainer on CPU workers (Ray must be initialised or reachable).
    Reading and decoding run as Ray Data tasks; each worker gets a streaming split of the dataset.
    Checkpoints live under OUT/ray/lpm-base; rerunning the same command resumes from the latest one
    (Ray Train restores a run with the same name and storage path; the loop reads get_checkpoint())."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from train.data import ray_clip_dataset

    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    ensure_vae(cfg, data_dir, out, log=log)
    ds = ray_clip_dataset(data_dir, cfg.data)
    storage = out / "ray"
    _, resumed_from = _latest_ray_checkpoint(storage)
    trainer = TorchTrainer(
        _ray_train_loop,
        train_loop_config={"cfg": cfg.model_dump(), "vae": str(out / "vae.pt")},
        torch_config=TorchConfig(backend="gloo"),
        scaling_config=ray.train.ScalingConfig(num_workers=num_workers, use_gpu=False,
                                               resources_per_worker={"CPU": cpus_per_worker}),
        run_config=ray.train.RunConfig(name="lpm-base", storage_path=str(storage),
                                       checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
        datasets={"train": ds},
    )
    t0 = time.monotonic()
    result = trainer.fit()
    final = None
    if result.checkpoint:
        with result.checkpoint.as_directory() as d:
            st = load_state(Path(d) / "state.pt")
        final = int(st["step"])
        if final >= cfg.base.steps:
            save_atomic({"model": st["model"], "config": cfg.model_dump(), "steps": final}, out / "base.pt")
    return {"metrics": dict(result.metrics or {}), "checkpoint_step": final, "resumed_from": resumed_from,
            "seconds": time.monotonic() - t0, "storage": str(storage)}


def _latest_ray_checkpoint(storage: Path) -> tuple[Path | None, int]:
    """The checkpoint directory with the highest step of the run under storage: where Ray Train's
    restoration (same RunConfig name and storage_path) resumes."""
    best, step = None, 0
    for p in storage.glob("lpm-base/**/state.pt") if storage.exists() else []:
        try:
            s = int(load_state(p)["step"])
        except Exception:  # noqa: BLE001 - a half-written checkpoint is skipped
            continue
        if s > step:
            best, step = p.parent, s
    return best, step
