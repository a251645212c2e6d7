"""train/ end to end at a few hundred steps: the Base LPM loss curve (with an interruption and resume),
and Ray Train's TorchTrainer with 2 CPU workers on a local Ray reading through Ray Data."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from train.config import load_config

from train_fixtures import clips_dir, tiny_cfg  # noqa: F401

pytestmark = pytest.mark.slow


def curve_cfg():
    return load_config(overrides={
        "data": {"num_frames": 8, "windows_per_clip": 4, "shuffle_buffer": 16},
        "vae": {"steps": 100, "batch_frames": 32},
        "model": {"width": 48, "depth": 4, "heads": 2},
        "base": {"steps": 300, "batch_size": 4, "ckpt_every": 50, "log_every": 50, "warmup_steps": 20, "lr": 2e-3},
        "distill": {"chunk_frames": 2},
    })


def test_base_loss_falls_and_resume_continues(clips_dir, tmp_path, artifacts_dir):
    from train.base import read_curve, train_base

    cfg = curve_cfg()
    out = tmp_path / "base"
    r1 = train_base(cfg, str(clips_dir), str(out), stop_at=150)  # an interruption at step 150 ...
    assert r1["steps"] == 150 and not (out / "base.pt").exists()
    r2 = train_base(cfg, str(clips_dir), str(out))  # ... and the resume from its checkpoint
    assert r2["start"] == 150 and (out / "base.pt").exists()
    rows = read_curve(out / "loss.csv")
    assert [r["step"] for r in rows] == list(range(300))
    loss = np.array([r["loss"] for r in rows])
    first, last = loss[20:50].mean(), loss[-30:].mean()
    before, after = loss[120:150].mean(), loss[150:180].mean()
    shutil.copy(out / "loss.csv", artifacts_dir / "train_base_loss.csv")
    shutil.copy(out / "loss.png", artifacts_dir / "train_base_loss.png")
    print(f"\nloss curve: {artifacts_dir / 'train_base_loss.csv'} {artifacts_dir / 'train_base_loss.png'}")
    print(f"mean loss steps 20-49 {first:.4f}, 120-149 {before:.4f}, 150-179 (after resume) {after:.4f}, 270-299 {last:.4f}")
    assert last < 0.8 * first
    # the resumed run continues the curve instead of starting over
    assert after < 1.15 * before and after < 0.9 * first


def test_ray_train_two_cpu_workers(clips_dir, tiny_cfg, tmp_path):
    import ray

    from train.base import load_state, train_base_ray
    from train.data import ray_clip_dataset

    cfg = tiny_cfg.model_copy(update={"base": tiny_cfg.base.model_copy(update={"steps": 4, "ckpt_every": 2})})
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        batch = next(iter(ray_clip_dataset(str(clips_dir), cfg.data).iter_torch_batches(batch_size=3)))
        assert batch["video"].shape == (3, cfg.data.num_frames, cfg.data.size_px, cfg.data.size_px, 3)
        assert set(batch["speak_mask"].tolist()) <= {0.0, 1.0}
        res = train_base_ray(cfg, str(clips_dir), str(tmp_path / "ray"), num_workers=2, cpus_per_worker=0.5)
        assert res["checkpoint_step"] == 4
        assert np.isfinite(res["metrics"]["loss"])
        assert "model" in load_state(tmp_path / "ray" / "base.pt")
        # a second fit with more steps resumes from the last checkpoint instead of starting over
        cfg6 = cfg.model_copy(update={"base": cfg.base.model_copy(update={"steps": 6})})
        res2 = train_base_ray(cfg6, str(clips_dir), str(tmp_path / "ray"), num_workers=2, cpus_per_worker=0.5)
        assert res2["checkpoint_step"] == 6 and res2["resumed_from"] == 4
    finally:
        ray.shutdown()
