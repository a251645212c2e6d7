"""train/ models: shapes, attention/audio masks, KV cache = masked training forward, bounded cache,
CFG dropout, resume determinism, and the CLI end to end at tiny scale."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from train.config import TrainConfigError, load_config
from train.flow import cfg_dropout, uncond
from train.model import KVCache, LPMDiT, causal_mask
from train.online import OnlineLPM, new_cache, student_rollout
from train.vae import VideoVAE

from train_fixtures import clips_dir, tiny_cfg  # noqa: F401


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Give zero-initialised layers (adaLN, output) random weights so outputs depend on every input."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 1 and not p.abs().sum():
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)


def _cond(cfg, B=2, T=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = T or cfg.data.num_frames
    C, L, R = cfg.vae.latent_channels, cfg.latent_size, cfg.data.max_refs
    return {"first": torch.randn(B, C, L, L, generator=g), "first_mask": torch.ones(B),
            "refs": torch.randn(B, R, C, L, L, generator=g), "ref_mask": torch.tensor([[1.0, 0.0]] * B),
            "text": torch.randn(B, cfg.data.text_dim, generator=g), "text_mask": torch.ones(B),
            "speak": torch.randn(B, T, cfg.audio_feat_dim, generator=g), "speak_mask": torch.ones(B),
            "listen": torch.randn(B, T, cfg.audio_feat_dim, generator=g), "listen_mask": torch.ones(B)}


@pytest.fixture
def model(tiny_cfg):
    torch.manual_seed(0)
    m = LPMDiT(tiny_cfg).eval()
    _randomise(m)
    return m


def test_vae_and_dit_shapes(tiny_cfg, model):
    cfg = tiny_cfg
    vae = VideoVAE(cfg)
    x = torch.rand(2, 3, 3, cfg.data.size_px, cfg.data.size_px) * 2 - 1
    z = vae.encode(x)
    assert z.shape == (2, 3, cfg.vae.latent_channels, cfg.latent_size, cfg.latent_size)
    assert vae.decode(z).shape == x.shape
    B, T = 2, cfg.data.num_frames
    zt = torch.randn(B, T, cfg.vae.latent_channels, cfg.latent_size, cfg.latent_size)
    t = torch.rand(B, T)
    v = model(zt, t, _cond(cfg))
    assert v.shape == zt.shape and torch.isfinite(v).all()
    assert model(zt, t, _cond(cfg), causal=True, clean=zt).shape == zt.shape
    fresh = LPMDiT(cfg)
    assert not fresh(zt, t, _cond(cfg)).any()  # adaLN-Zero / zero output layer at init


def test_causal_mask_follows_cache_policy():
    T, c, tpf, P = 8, 2, 1, 3  # 4 chunks of 2 frames, one token per frame
    M = causal_mask(T, c, tpf, P, sink=1, window=1)
    clean = lambda j: list(range(P + j * c, P + (j + 1) * c))  # noqa: E731
    noisy = lambda j: list(range(P + T + j * c, P + T + (j + 1) * c))  # noqa: E731
    assert M[:P, :P].all() and not M[:P, P:].any()
    for i in range(4):
        for j in range(4):
            vis = j < i and (j < 1 or j >= i - 1)
            assert bool(M[noisy(i)[0], clean(j)[0]]) == vis, (i, j)
            assert bool(M[clean(i)[0], clean(j)[0]]) == (vis or i == j)
            assert bool(M[noisy(i)[0], noisy(j)[0]]) == (i == j)
            assert not M[clean(i)[0], noisy(j)[0]]
    assert M[noisy(3)[0], clean(0)[0]] and not M[noisy(3)[0], clean(1)[0]]  # sink kept, chunk 1 slid out


def test_audio_windows(tiny_cfg, model):
    frames = torch.arange(8)
    q = frames.float()
    speak = model.audio_mask(q, torch.full_like(q, float("inf")), frames, tiny_cfg.model.speak_window)
    listen = model.audio_mask(q, torch.full_like(q, float("inf")), frames, tiny_cfg.model.listen_window)
    assert speak[:, 0].all()  # register
    assert speak[4, 1:].nonzero().flatten().tolist() == [3, 4, 5]
    assert listen[4, 1:].sum() > speak[4, 1:].sum()
    causal = model.audio_mask(q, (frames // 2 * 2 + 1).float(), frames, tiny_cfg.model.listen_window)
    assert not causal[2, 1 + 4:].any()  # frame 2 (chunk 1 = frames 2-3) never sees audio after frame 3
    # functional: the student's first chunk ignores audio after its end; the teacher does not
    cfg = tiny_cfg
    B, T = 1, cfg.data.num_frames
    z = torch.randn(B, T, cfg.vae.latent_channels, cfg.latent_size, cfg.latent_size)
    t = torch.full((B, T), 0.5)
    c1 = _cond(cfg, B)
    c2 = dict(c1, speak=c1["speak"].clone(), listen=c1["listen"].clone())
    c2["speak"][:, 2:] += 3.0
    c2["listen"][:, 2:] += 3.0
    with torch.no_grad():
        s1 = model(z, t, c1, causal=True, clean=z)
        s2 = model(z, t, c2, causal=True, clean=z)
        assert torch.allclose(s1[:, :2], s2[:, :2], atol=1e-6) and not torch.allclose(s1[:, 2:], s2[:, 2:])
        assert not torch.allclose(model(z, t, c1)[:, :2], model(z, t, c2)[:, :2])


def test_kv_cache_stream_equals_masked_forward(tiny_cfg, model):
    """Chunk-by-chunk with the KV cache gives what the chunk-causal training forward gives."""
    cfg = tiny_cfg
    B, T, c = 2, cfg.data.num_frames, cfg.distill.chunk_frames
    g = torch.Generator().manual_seed(1)
    clean = torch.randn(B, T, cfg.vae.latent_channels, cfg.latent_size, cfg.latent_size, generator=g)
    noisy = torch.randn(clean.shape, generator=g)
    cond = _cond(cfg, B)
    cond["ref_mask"] = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    with torch.no_grad():
        ref = model(noisy, torch.full((B, T), 0.7), cond, causal=True, clean=clean)
        ctok = model.cond_tokens(cond)
        cache = new_cache(model, ctok)
        audio = {"speak": ctok["speak"], "listen": ctok["listen"]}
        for k in range(T // c):
            v, _ = model.chunk_forward(noisy[:, k * c:(k + 1) * c], 0.7, cache, ctok, k * c, audio, torch.arange(T))
            torch.testing.assert_close(v, ref[:, k * c:(k + 1) * c], atol=2e-5, rtol=1e-4)
            _, kv = model.chunk_forward(clean[:, k * c:(k + 1) * c], 0.0, cache, ctok, k * c, audio, torch.arange(T))
            cache.append(kv)
        # the rollout's exit-step inputs reproduce its outputs through the training forward (what DMD uses)
        x, zin = student_rollout(model, cond, noisy, exit_step=1)
        ts = cfg.distill.student_timesteps
        again = zin - ts[1] * model(zin, torch.full((B, T), ts[1]), cond, causal=True, clean=x)
        torch.testing.assert_close(again, x, atol=2e-5, rtol=1e-4)


def test_streaming_cache_and_memory_are_bounded(tiny_cfg, model):
    cfg = tiny_cfg
    vae = VideoVAE(cfg).eval()
    first = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    lpm = OnlineLPM(model, vae, first, caption="a person talks", seed=0)
    rng = np.random.default_rng(1)
    sizes, tokens = [], []
    for _ in range(12):
        out = lpm.push(rng.standard_normal(lpm.chunk_samples).astype(np.float32) * 0.1, None)
        assert out.shape == (cfg.distill.chunk_frames, cfg.data.size_px, cfg.data.size_px, 3) and out.dtype == np.uint8
        sizes.append(lpm.state_bytes())
        tokens.append(lpm.cache.tokens())
    d = cfg.distill
    full = (d.sink_chunks + d.window_chunks) * d.chunk_frames * model.tpf + (1 + cfg.data.max_refs) * model.tpf
    assert max(tokens) == full and tokens[-1] == full
    assert tokens[0] < full  # it grows while warming up ...
    assert sizes[-1] == sizes[-2] == sizes[-3] == max(sizes)  # ... then stays flat (cache and audio buffers full)
    assert isinstance(lpm.cache, KVCache) and lpm.cache.n_chunks == 12


def test_cfg_dropout(tiny_cfg):
    cond = _cond(tiny_cfg, B=64)
    g = torch.Generator().manual_seed(0)
    drop = tiny_cfg.base.cfg_drop
    everything = drop.model_copy(update={"text": 1.0, "speak": 1.0, "listen": 1.0, "refs": 1.0, "first_frame": 1.0})
    out = cfg_dropout(cond, everything, g)
    assert not any(out[k].any() for k in ("text_mask", "speak_mask", "listen_mask", "first_mask", "ref_mask"))
    nothing = drop.model_copy(update={k: 0.0 for k in ("text", "speak", "listen", "refs", "first_frame", "all_audio_text")})
    out = cfg_dropout(cond, nothing, g)
    assert all(torch.equal(out[k], cond[k]) for k in cond)
    out = cfg_dropout(cond, drop, g)
    kept = out["speak_mask"].mean().item()
    assert 0.6 < kept < 1.0
    u = uncond(cond)
    assert not u["text_mask"].any() and torch.equal(u["first_mask"], cond["first_mask"])


def test_config_validation():
    with pytest.raises(TrainConfigError):
        load_config(overrides={"model": {"width": 50}})
    with pytest.raises(TrainConfigError):
        load_config(overrides={"data": {"num_frames": 32}, "distill": {"chunk_frames": 4, "sink_chunks": 1, "window_chunks": 2}})
    with pytest.raises(TrainConfigError):
        load_config(overrides={"base": {"no_such_key": 1}})


def test_base_resume_is_deterministic(clips_dir, tiny_cfg, tmp_path):
    from train.base import ensure_vae, load_state, read_curve, train_base

    cfg = tiny_cfg
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    ensure_vae(cfg, str(clips_dir), a, log=lambda *_: None)
    shutil.copy(a / "vae.pt", b / "vae.pt")
    train_base(cfg, str(clips_dir), str(a), log=lambda *_: None)
    r1 = train_base(cfg, str(clips_dir), str(b), stop_at=3, log=lambda *_: None)
    assert r1["steps"] == 3 and not (b / "base.pt").exists()
    r2 = train_base(cfg, str(clips_dir), str(b), log=lambda *_: None)
    assert r2["start"] == 3
    la = [r["loss"] for r in read_curve(a / "loss.csv")]
    lb = [r["loss"] for r in read_curve(b / "loss.csv")]
    assert [r["step"] for r in read_curve(b / "loss.csv")] == list(range(cfg.base.steps))
    np.testing.assert_allclose(lb, la, rtol=1e-5)
    pa, pb = load_state(a / "base.pt")["model"], load_state(b / "base.pt")["model"]
    assert all(torch.allclose(pa[k], pb[k], atol=1e-6) for k in pa)
    assert (a / "loss.png").stat().st_size > 1000


def test_cli_end_to_end_tiny(clips_dir, tmp_path, media_dir, capsys):
    import json

    from train.cli import main

    out = tmp_path / "run"
    assert main(["base", "--data", str(clips_dir), "--out", str(out), "--config", "tiny.yaml"]) == 0
    assert (out / "base.pt").exists() and (out / "loss.csv").exists()
    assert main(["distill", "--base", str(out), "--data", str(clips_dir), "--out", str(out), "--config", "tiny.yaml"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(res["compare_to_teacher"]) == {"undistilled", "ode", "ode+dmd"}
    assert (out / "online.pt").exists()
    video = tmp_path / "s.mp4"
    assert main(["stream", "--model", str(out), "--speak", str(media_dir / "audio" / "jfk_speech.flac"),
                 "--listen", str(media_dir / "audio" / "turns_person2.wav"), "--data", str(clips_dir),
                 "--seconds", "2", "--video", str(video)]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["chunks"] == 8 and video.stat().st_size > 0
    assert main(["base", "--data", str(tmp_path / "nothing"), "--out", str(out), "--config", "tiny.yaml"]) == 2
