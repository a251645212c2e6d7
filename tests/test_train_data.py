"""train/ reader: decoding and degradation per missing column, sharding, shuffle, deterministic resume."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from train.data import ClipStream, clip_files, make_loader
from train.features import STATES, CausalMel, decode_row, hashed_text_embedding, make_sample, text_vector

from train_fixtures import clips_dir, tiny_cfg  # noqa: F401


def _rows(clips_dir):
    rows = []
    for f in clip_files(str(clips_dir)):
        rows += pq.read_table(f, columns=["clip_id", "caption", "speak_audio", "listen_audio", "references", "frame_states",
                                          "video_bytes"]).to_pylist()
    return rows


def test_reader_samples_and_degradation(clips_dir, tiny_cfg):
    cfg = tiny_cfg.data
    ds = ClipStream(str(clips_dir), cfg, epochs=1)
    samples = list(ds)
    rows = _rows(clips_dir)
    assert len(rows) == 8
    # every plan entry yields a sample (the broken row is replaced by a decodable one)
    assert len(samples) == len(rows) * cfg.windows_per_clip
    assert ds.stats["skipped_video_decode_error"] >= 1
    T, S = cfg.num_frames, cfg.size_px
    seen = set()
    for s in samples:
        assert s["video"].shape == (T, S, S, 3) and s["video"].dtype == np.uint8
        assert s["speak"].shape == (T, cfg.n_mels * cfg.mels_per_frame)
        assert s["refs"].shape == (cfg.max_refs, S, S, 3)
        assert s["text"].shape == (cfg.text_dim,)
        assert np.array_equal(s["first"], s["video"][0])
        row = rows[int(s["row"])]
        seen.add(int(s["row"]))
        assert row["video_bytes"] != b"this is not an mp4"
        # missing audio -> silence and the condition dropped; present audio -> real features
        assert s["speak_mask"] == (1.0 if row["speak_audio"] else 0.0)
        assert s["listen_mask"] == (1.0 if row["listen_audio"] else 0.0)
        if not row["listen_audio"]:
            assert not s["listen"].any()
        else:
            assert s["listen"].std() > 0.05
        # no caption and no text_embedding -> text dropped
        assert s["text_mask"] == (1.0 if row["caption"] else 0.0)
        # references from the row, else a frame of the clip outside the window
        assert s["ref_mask"][0] == 1.0
        if row["references"]:
            assert not any(np.array_equal(s["refs"][0], f) for f in s["video"])
        # 'discard' frames carry no loss weight
        assert np.all(s["frame_weight"][s["states"] == STATES["discard"]] == 0)
        assert np.all(s["frame_weight"][s["states"] != STATES["discard"]] == 1)
    assert len(seen) == 7
    # the row with 'discard' frames: a window that covers them has zero weight exactly there
    row = next(r for r in rows if r["frame_states"] and "discard" in r["frame_states"])
    clip = decode_row(row, cfg)
    mel = CausalMel(cfg)
    s = next(x for x in (make_sample(clip, cfg, np.random.default_rng(k), mel) for k in range(200)) if x["start"] <= 3)
    assert (s["states"] == STATES["discard"]).sum() == 3
    assert np.array_equal(s["frame_weight"] == 0, s["states"] == STATES["discard"])


def test_sharding_is_disjoint_and_covering(clips_dir, tiny_cfg):
    cfg = tiny_cfg.data
    per_rank = []
    for rank in range(2):
        it = iter(ClipStream(str(clips_dir), cfg, rank=rank, world_size=2, epochs=1))
        per_rank.append([int(next(it)["row"]) for _ in range(2)])
    plans = [ClipStream(str(clips_dir), cfg, rank=r, world_size=2).epoch_plan(0, r, 2) for r in range(2)]
    a, b = ({(g, r) for g, r in p} for p in plans)
    assert not (a & b) and len(a | b) == 8  # every row exactly once across ranks (row groups are the unit)
    for rank in range(2):  # what a rank yields comes from its own rows
        assert set(per_rank[rank]) <= {g for g, _ in plans[rank]}
    # different epochs shuffle differently, same epoch is reproducible
    ds = ClipStream(str(clips_dir), cfg)
    assert ds.epoch_plan(0, 0, 1) == ds.epoch_plan(0, 0, 1)
    assert ds.epoch_plan(0, 0, 1) != ds.epoch_plan(1, 0, 1)


def _key(batch):
    return [(int(r), int(s), int(v.sum())) for r, s, v in zip(batch["row"], batch["start"], batch["video"].view(batch["video"].shape[0], -1))]


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_from_step_is_exact(clips_dir, tiny_cfg, workers):
    cfg = tiny_cfg.data
    full = []
    for i, b in enumerate(make_loader(str(clips_dir), cfg, batch_size=2, num_workers=workers)):
        full.append(_key(b))
        if i == 4:
            break
    resumed = []
    for i, b in enumerate(make_loader(str(clips_dir), cfg, batch_size=2, num_workers=workers, start_step=3)):
        resumed.append(_key(b))
        if i == 1:
            break
    assert resumed == full[3:5]
    assert len({k for batch in full for k in batch}) > 4


def test_causal_mel_streaming_equals_offline(tiny_cfg):
    cfg = tiny_cfg.data
    mel = CausalMel(cfg)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(mel.samples_per_frame * 12) * 0.1).astype(np.float32)
    full = mel.frames(x, 12)
    parts, hist = [], np.zeros(0, dtype=np.float32)
    for k in range(3):
        seg = x[k * 4 * mel.samples_per_frame:(k + 1) * 4 * mel.samples_per_frame]
        parts.append(mel.frames(seg, 4, history=hist))
        hist = np.concatenate([hist, seg])
    np.testing.assert_allclose(np.concatenate(parts), full, atol=1e-5)
    # causal: changing the future leaves the past unchanged
    y = x.copy()
    y[6 * mel.samples_per_frame:] = 0.5
    np.testing.assert_allclose(mel.frames(y, 12)[:6], full[:6], atol=1e-6)
    assert not np.allclose(mel.frames(y, 12)[6:], full[6:])


def test_text_vector_paths(tiny_cfg):
    cfg = tiny_cfg.data
    emb = np.arange(1, 700, dtype=np.float32)
    v, m = text_vector({"text_embedding": emb.tolist()}, cfg)
    assert m == 1.0 and v.shape == (cfg.text_dim,) and abs(np.linalg.norm(v) - 1) < 1e-5
    v2, m2 = text_vector({"caption": "A man talks"}, cfg)
    assert m2 == 1.0 and np.allclose(v2, hashed_text_embedding("a man talks!", cfg.text_dim))
    assert not np.allclose(v2, text_vector({"caption": "a woman laughs"}, cfg)[0])
    v3, m3 = text_vector({"caption": None, "text_embedding": None}, cfg)
    assert m3 == 0.0 and not v3.any()


def test_loader_collates_to_tensors(clips_dir, tiny_cfg):
    b = next(iter(make_loader(str(clips_dir), tiny_cfg.data, batch_size=3)))
    assert isinstance(b["video"], torch.Tensor) and b["video"].shape[0] == 3
    assert b["speak_mask"].shape == (3,)
