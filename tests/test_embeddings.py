"""Embeddings stage: pHash of keyframes (always), first frame JPEG, open_clip embeddings from local weights."""
from __future__ import annotations

import copy
import json

import cv2
import numpy as np
import pytest

from issue6_media import processed_composite

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 64, "layers": 1, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1},
}


@pytest.fixture(scope="module")
def composite(tmp_path_factory, media_dir, model_dir):
    return processed_composite(str(tmp_path_factory.getbasetemp()), str(media_dir), str(model_dir))


def test_phash_and_first_frame(composite):
    from operators.embeddings import hamming_hex, phash64

    settings, _, task = composite
    for c in task.clips:
        assert len(c["phash"]) == pytest.approx(c["duration_s"] * settings.captions.phash_fps, abs=2)
        assert all(len(h) == 16 for h in c["phash"])
        assert len(c["keyframe_thumbs"]) == 256 * len(c["phash"])
        img = cv2.imdecode(np.frombuffer(c["first_frame_jpeg"], np.uint8), cv2.IMREAD_COLOR)
        assert img.shape[:2] == (c["clip_height"], c["clip_width"])
        assert c.get("image_embedding") is None and c.get("text_embedding") is None  # no weights configured
    a, b = task.clips[0], task.clips[1]  # two different people
    assert hamming_hex(a["phash"][0], b["phash"][0]) > 10
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    assert phash64(img) == phash64(img.copy()) and hamming_hex(phash64(img), phash64(255 - img)) > 40
    assert task.provenance["clip_embeddings"]["model"] == "none"
    assert "no clip_weights" in json.dumps(task.provenance["clip_embeddings"]) or task.provenance["clip_embeddings"]["params_hash"]


def _tiny_clip_file(tmp_path):
    import open_clip
    import torch

    cfg = tmp_path / "lpm-tiny-clip.json"
    cfg.write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    model = open_clip.create_model("lpm-tiny-clip", pretrained=None)
    weights = tmp_path / "tiny_clip.pt"
    torch.save(model.state_dict(), weights)
    return cfg, weights, model


def test_open_clip_embeddings_from_local_checkpoint(settings, composite, tmp_path):
    from models.registry import sha256_file
    from operators.base import Deadline
    from operators.embeddings import EmbeddingOperator

    cfg, weights, _ = _tiny_clip_file(tmp_path)
    s = settings.model_copy(deep=True)
    s.captions.clip_model = str(cfg)
    s.captions.clip_weights = str(weights)
    op = EmbeddingOperator(s)
    op.ensure_setup()
    assert op.embedder is not None, op.clip_error
    t = copy.deepcopy(composite[2])
    t.clips = t.clips[:2]
    out = op.process(t, Deadline(120))
    for c in out.clips:
        ie, te = np.array(c["image_embedding"]), np.array(c["text_embedding"])
        assert ie.shape == (32,) and te.shape == (32,)
        assert abs(np.linalg.norm(ie) - 1) < 1e-4 and abs(np.linalg.norm(te) - 1) < 1e-4
    assert not np.allclose(out.clips[0]["image_embedding"], out.clips[1]["image_embedding"])
    prov = out.provenance["clip_embeddings"]
    assert prov["model"] == f"open_clip:{cfg}" and prov["weights_sha256"] == sha256_file(weights)


def test_open_clip_hub_layout_directory(tmp_path):
    import torch

    from models.clip_embed import ClipEmbedder

    _, _, model = _tiny_clip_file(tmp_path)
    d = tmp_path / "hub"
    d.mkdir()
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}))
    torch.save(model.state_dict(), d / "open_clip_pytorch_model.bin")
    emb = ClipEmbedder("ignored", str(d))
    img = np.full((80, 80, 3), 128, np.uint8)
    a = emb.image_embed([img, 255 - img])
    assert a.shape == (2, 32)
    assert np.allclose(emb.text_embed(["a person talking"]), emb.text_embed(["a person talking"]))


def test_missing_clip_weights_are_recorded_not_fatal(settings, composite, tmp_path):
    from operators.base import Deadline
    from operators.embeddings import EmbeddingOperator

    s = settings.model_copy(deep=True)
    s.captions.clip_weights = str(tmp_path / "missing.pt")
    op = EmbeddingOperator(s)
    op.ensure_setup()
    t = copy.deepcopy(composite[2])
    t.clips = t.clips[:1]
    out = op.process(t, Deadline(60))
    assert out.ok and out.clips[0]["phash"] and out.clips[0].get("image_embedding") is None
    assert out.provenance["clip_embeddings"]["model"] == "none"
