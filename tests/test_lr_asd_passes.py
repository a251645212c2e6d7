"""The LR-ASD speed-ups of issue 19 keep the arithmetic: the 2-D formulation of the visual blocks equals
the checkpoint's 3-D convolutions, and the chunked one-pass track embedding equals one pass over the track."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.lr_asd import LRASD, PIX_MEAN, PIX_STD, ASDScorer, VisualBlock


def _randomised(net: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g))
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
    return net.eval()


def test_visual_block_2d_equals_3d_convolutions():
    blk = _randomised(VisualBlock(8, 16, downsample=True))
    x = torch.randn(2, 8, 11, 20, 20)
    with torch.no_grad():
        ref = x
        for conv, norm in ((blk.s_1, blk.s_norm_1), (blk.s_2, blk.s_norm_2), (blk.t_1, blk.t_norm_1), (blk.t_2, blk.t_norm_2)):
            ref = torch.relu(norm(conv(ref)))
        got = blk(x)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, atol=1e-5, rtol=1e-4)


def test_chunked_track_embedding_equals_one_pass_and_clip_mode_slices_it():
    net = _randomised(LRASD())
    faces = torch.randint(0, 255, (130, 112, 112), dtype=torch.uint8)
    with torch.no_grad():
        whole = net.model.embed_visual(faces.unsqueeze(0))
        chunked = net.model.embed_visual_long(faces, chunk=40)
    assert torch.allclose(whole, chunked, atol=1e-5)
    sc = ASDScorer(net, windows_s=(1, 2), visual_context="clip")
    cache = sc.embed(faces.numpy())
    assert [s for s, _ in cache.windows[2]] == [0, 50, 100]
    assert torch.allclose(cache.windows[2][1][1], whole[:, 50:100], atol=1e-5)
    # window mode differs only near window edges (zero padding there), not in the middle of a window
    win = ASDScorer(net, windows_s=(2,), visual_context="window").embed(faces.numpy())
    assert torch.allclose(win.windows[2][1][1][:, 12:38], whole[:, 62:88], atol=1e-4)
    feats = np.random.default_rng(0).normal(size=(4 * 130, 13)).astype(np.float32)
    assert np.isfinite(sc.score_cached(cache, feats)).all()
    with pytest.raises(ValueError):
        ASDScorer(net, visual_context="frames")


def test_onnxruntime_visual_engine_equals_torch_and_training_uses_the_module():
    net = _randomised(LRASD())
    faces = torch.randint(0, 255, (2, 37, 112, 112), dtype=torch.uint8)
    with torch.no_grad():
        ref = net.model.embed_visual(faces)
    ASDScorer(net, engine="onnxruntime")
    assert net.model.visual_runner is not None
    with torch.no_grad():
        got = net.model.embed_visual(faces)
        short = net.model.embed_visual(faces[:1, :3])  # shorter than the export's example input
        empty = net.model.embed_visual(faces[:1, :0])
    assert got.shape == ref.shape and torch.allclose(got, ref, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        short_ref = net.model.visualEncoder((faces[:1, :3].float().unsqueeze(1) / 255.0 - PIX_MEAN) / PIX_STD)
    assert torch.allclose(short, short_ref, atol=1e-4, rtol=1e-4)
    assert empty.shape == (1, 0, 128)
    # a scorer made later on the same network (the sync head's) keeps the engine; training runs the module
    ASDScorer(net)
    assert net.model.visual_runner is not None
    net.train()
    assert net.model.embed_visual(faces).requires_grad
    net.eval()
    ASDScorer(net, engine="torch")
    assert net.model.visual_runner is None
    with pytest.raises(ValueError):
        ASDScorer(net, engine="tensorrt")


def test_tiling_context_embeds_the_tile_windows_on_their_own_and_slices_the_rest():
    net = _randomised(LRASD())
    faces = torch.randint(0, 255, (130, 112, 112), dtype=torch.uint8).numpy()
    win = ASDScorer(net, windows_s=(2,), visual_context="window").embed(faces)
    til = ASDScorer(net, windows_s=(1, 2, 3), visual_context="tiling", tile_s=2).embed(faces)
    # the 2 s windows are exactly the window mode's: what the sync head was trained on
    assert [s for s, _ in til.windows[2]] == [s for s, _ in win.windows[2]] == [0, 50, 100]
    for (_, a), (_, b) in zip(til.windows[2], win.windows[2]):
        assert torch.equal(a, b)
    # the other lengths are slices of that tiling (no extra visual pass)
    assert [s for s, _ in til.windows[3]] == [0, 75]
    assert torch.equal(til.windows[3][0][1], til.clip[:, 0:75])
    assert torch.equal(til.windows[1][3][1], win.windows[2][1][1][:, 25:50])
    feats = np.random.default_rng(0).normal(size=(4 * 130, 13)).astype(np.float32)
    sc = ASDScorer(net, windows_s=(1, 2, 3), visual_context="tiling")
    assert np.isfinite(sc.score_cached(til, feats)).all()
    assert np.isfinite(sc.score_cached(til, feats[: 4 * 100])[:100]).all()  # audio shorter: windows cut


def test_clip_sync_context_slices_the_clip_pass_and_keeps_the_sync_windows_on_their_own():
    net = _randomised(LRASD())
    faces = torch.randint(0, 255, (130, 112, 112), dtype=torch.uint8).numpy()
    win = ASDScorer(net, windows_s=(2,), visual_context="window").embed(faces)
    clip = ASDScorer(net, windows_s=(1, 2, 3), visual_context="clip").embed(faces)
    cs = ASDScorer(net, windows_s=(1, 2, 3), visual_context="clip_sync", tile_s=2).embed(faces)
    # the sync head's 2 s windows are the window mode's, every other length is the clip mode's
    assert [s for s, _ in cs.windows[2]] == [0, 50, 100]
    for (_, a), (_, b) in zip(cs.windows[2], win.windows[2]):
        assert torch.equal(a, b)
    for d in (1, 3):
        assert [s for s, _ in cs.windows[d]] == [s for s, _ in clip.windows[d]]
        for (_, a), (_, b) in zip(cs.windows[d], clip.windows[d]):
            assert torch.equal(a, b)
    assert not torch.equal(cs.windows[2][1][1], clip.windows[2][1][1])  # own context differs from the clip's
    feats = np.random.default_rng(0).normal(size=(4 * 130, 13)).astype(np.float32)
    sc = ASDScorer(net, windows_s=(1, 2, 3), visual_context="clip_sync")
    assert np.isfinite(sc.score_cached(cs, feats)).all()
    # audio shorter: the cut 2 s window is re-embedded on its own, the others sliced from the clip pass
    short = sc.score_cached(cs, feats[: 4 * 90])
    assert np.isfinite(short[:90]).all() and np.isnan(short[90:]).all()
    assert list(cs.cut) == [(50, 90)]
    with pytest.raises(ValueError, match="tile_s"):
        ASDScorer(net, windows_s=(1, 3), visual_context="clip_sync", tile_s=2)
