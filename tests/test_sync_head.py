"""The LR-ASD sync head (models/lr_asd_sync.py): storage format, strict loading, scoring contract, and the
training recipe end to end on a tiny budget (train/sync_head.py)."""
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
    from train.sync_head import train

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


def test_training_samples_by_construction():
    """Own voice (optionally jittered by a few frames) keeps the speech targets; shifted, other-voice and
    still samples are negatives, the shifted ones at least 8 frames away (beyond any own-voice jitter)."""
    from train.sync_head import SPF, WIN, Person, sample_audio

    t = 200
    audio = np.repeat(np.arange(t, dtype=np.float32), SPF)  # each frame's samples hold the frame index
    speech = np.zeros(t, bool)
    speech[60:140] = True
    frames = np.zeros((t, 4, 4, 3), np.uint8)
    boxes = np.zeros((t, 4))
    people = [Person("a", frames, audio, speech, boxes, 0), Person("b", frames, audio + 1000, speech, boxes, 0)]
    rng = np.random.default_rng(0)
    s = 70
    lags = set()
    for _ in range(60):
        a, tg = sample_audio("own", people, 0, s, rng, own_jitter=2)
        assert len(a) == WIN * SPF and np.array_equal(tg, speech[s:s + WIN].astype(np.float32))
        lags.add(int(a[0]) - s)
    assert lags == {-2, -1, 0, 1, 2}
    a, _ = sample_audio("own", people, 0, s, rng)
    assert int(a[0]) == s
    for _ in range(30):
        a, tg = sample_audio("shifted", people, 0, s, rng, own_jitter=2)
        lag = int(a[len(a) // 2]) - (s + WIN // 2)
        assert 8 <= abs(lag) < 40 and not tg.any()
        a, tg = sample_audio("other", people, 0, s, rng)
        assert a.max() >= 1000 and not tg.any()
        a, tg = sample_audio("still", people, 0, s, rng, own_jitter=2)
        assert int(a[0]) == s and not tg.any()
