"""The LR-ASD sync head (models/lr_asd_sync.py): storage format, strict loading, scoring contract, and the
training recipe end to end on a tiny budget (models/lr_asd_sync_train.py)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models import registry
from models.lr_asd import CheckpointError, LRASD, VisualCache
from models.lr_asd_sync import BACKEND_PREFIXES, SyncHead, load_head, save_head, sync_scores


def test_bundled_head_holds_only_the_back_end_and_is_pinned():
    spec = registry.REGISTRY["lr-asd-sync"]
    path = registry.BUNDLED_DIR / spec.main.relpath
    assert registry.sha256_file(path) == spec.main.sha256
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    keys = [k for k in state if not k.startswith("meta.")]
    assert keys and all(k.startswith(BACKEND_PREFIXES) for k in keys)  # no official encoder weights in the repo
    assert not any("Encoder" in k for k in state)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["sha256"] == spec.main.sha256 and set(card["train_people"]).isdisjoint(
        {"talking_face_4", "talking_face_5", "talking_hdtf_hill"})


def test_round_trip_and_strict_loading(tmp_path):
    torch.manual_seed(0)
    net = LRASD().eval()
    head = SyncHead(net)
    with torch.no_grad():
        for p in head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    save_head(head, tmp_path / "h.pt", {"steps": 1})
    back = load_head(net, tmp_path / "h.pt")
    ea, ev = torch.randn(2, 30, 128), torch.randn(2, 30, 128)
    head.eval()
    assert torch.allclose(head(ea, ev), back(ea, ev), atol=1e-6)
    assert not any(p.requires_grad for p in back.parameters())
    bad = {k: v for k, v in torch.load(str(tmp_path / "h.pt"), weights_only=True).items() if "detector" not in k}
    torch.save(bad, str(tmp_path / "bad.pt"))
    with pytest.raises(CheckpointError):
        load_head(net, tmp_path / "bad.pt")


def _bundled_head_on_random_faces(seed: int, t: int):
    """A random-weight LR-ASD with the bundled sync head, and visual embeddings [1, t, 128] of random faces."""
    torch.manual_seed(seed)
    net = LRASD().eval()
    head = load_head(net, registry.BUNDLED_DIR / registry.REGISTRY["lr-asd-sync"].main.relpath)
    faces = torch.randint(0, 255, (1, t, 112, 112), dtype=torch.uint8)
    with torch.no_grad():
        emb = net.model.embed_visual(faces)
    return net, head, emb


def test_sync_scores_follow_the_audio_shift_contract():
    t = 60
    net, head, emb = _bundled_head_on_random_faces(1, t)
    cache = VisualCache(t, windows={2: [(0, emb[:, :50]), (50, emb[:, 50:])]})
    feats = np.random.default_rng(0).normal(size=(4 * 50, 13)).astype(np.float32)  # audio for 50 frames only
    s = sync_scores(head, net, cache, feats)
    assert s.shape == (t,) and np.isfinite(s[:50]).all() and np.isnan(s[50:]).all()
    assert not np.allclose(s[:50], sync_scores(head, net, cache, feats, shift_frames=10)[:50])


def test_sync_phases_average_shifted_tilings():
    """phases=2 = the mean of the cached tiling and a tiling started half a window later (embeddings sliced
    from the cache); frames in the middle of a cached window keep context on both sides in both."""
    t = 120
    net, head, emb = _bundled_head_on_random_faces(2, t)
    cache = VisualCache(t, windows={2: [(0, emb[:, :50]), (50, emb[:, 50:100]), (100, emb[:, 100:])]})
    feats = np.random.default_rng(1).normal(size=(4 * t, 13)).astype(np.float32)
    s1 = sync_scores(head, net, cache, feats)
    shifted = VisualCache(t, windows={2: [(0, emb[:, :25]), (25, emb[:, 25:75]), (75, emb[:, 75:])]})
    s_half = sync_scores(head, net, shifted, feats)
    s2 = sync_scores(head, net, cache, feats, phases=2)
    assert np.isfinite(s2).all()
    np.testing.assert_allclose(s2, (s1 + s_half) / 2, atol=1e-5)
    assert not np.allclose(s2, s1, atol=1e-3)
    assert sync_scores(head, net, cache, feats, shift_frames=4, phases=3).shape == (t,)


def test_training_recipe_runs_and_is_seeded(tmp_path, media_dir, model_dir):
    from models.lr_asd_sync_train import train

    media = media_dir
    a = train(media, model_dir, tmp_path / "a.pt", steps=3, augs=1, batch=2, people=("talking_face_2",), log_every=0)
    b = train(media, model_dir, tmp_path / "b.pt", steps=3, augs=1, batch=2, people=("talking_face_2",), log_every=0)
    sa, sb = (torch.load(str(tmp_path / f), weights_only=True) for f in ("a.pt", "b.pt"))
    assert sa.keys() == sb.keys()
    diff = max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)
    assert diff < 1e-4, diff  # same inputs and seed: the same weights (up to float summation order)
    assert a["sha256"] and a["loss_first_100"] == pytest.approx(b["loss_first_100"], abs=1e-4)
    card = json.loads((tmp_path / "a.json").read_text())
    assert card["train_people"] == ["talking_face_2"] and np.isfinite(card["loss_last_100"])
    load_head(LRASD(), tmp_path / "a.pt")
