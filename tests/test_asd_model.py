"""LR-ASD module (models/lr_asd.py): strict safe loading of both official checkpoints, the MFCC front end
against python_speech_features, and sensible scores on real talking faces (own vs swapped audio)."""
from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from models.lr_asd import (CHECKPOINTS, ASDScorer, CheckpointError, LRASD, crop_faces, load_lr_asd, mfcc)
from models.registry import resolve


@pytest.mark.parametrize("checkpoint", sorted(CHECKPOINTS))
def test_official_checkpoints_load_strictly(model_dir, checkpoint):
    path = resolve(CHECKPOINTS[checkpoint], model_dir).path
    net = load_lr_asd(path)
    raw = torch.load(str(path), map_location="cpu", weights_only=True)
    own = net.state_dict()
    assert len(raw) == 168 and set(raw) == set(own)  # every tensor used, none missing
    for k, v in raw.items():
        assert own[k].shape == v.shape and torch.equal(own[k], v), k
    n_params = sum(p.numel() for p in net.parameters())
    assert abs(n_params - 837_000) < 5_000
    x = net(torch.zeros(1, 100, 13), torch.full((1, 25, 112, 112), 110.0))
    assert x.shape == (1, 25) and torch.isfinite(x).all()


def test_loader_refuses_mismatch_and_pickled_code(tmp_path, model_dir):
    raw = torch.load(str(resolve("lr-asd-ava", model_dir).path), map_location="cpu", weights_only=True)
    missing = dict(raw)
    missing.pop("lossV.FC.bias")
    torch.save(missing, tmp_path / "missing.model")
    with pytest.raises(CheckpointError, match="missing"):
        load_lr_asd(tmp_path / "missing.model")
    extra = dict(raw, **{"model.extra.weight": torch.zeros(3)})
    torch.save(extra, tmp_path / "extra.model")
    with pytest.raises(CheckpointError, match="unexpected"):
        load_lr_asd(tmp_path / "extra.model")
    shaped = dict(raw, **{"lossAV.FC.bias": torch.zeros(3)})
    torch.save(shaped, tmp_path / "shape.model")
    with pytest.raises(CheckpointError, match="shape"):
        load_lr_asd(tmp_path / "shape.model")
    # a pickle that would run code is refused by weights_only loading
    buf = io.BytesIO()
    torch.save({"x": _Evil()}, buf)
    (tmp_path / "evil.model").write_bytes(buf.getvalue())
    with pytest.raises(pickle.UnpicklingError):
        load_lr_asd(tmp_path / "evil.model")


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_module_names_match_a_random_state_dict():
    a, b = LRASD(), LRASD()
    b.load_state_dict(a.state_dict(), strict=True)
    assert len(a.state_dict()) == 168


def test_mfcc_matches_python_speech_features(media_dir):
    psf = pytest.importorskip("python_speech_features")
    from operators.media import decode_audio

    audio = decode_audio(str(media_dir / "audio" / "jfk_speech.flac"), 60)[: 16000 * 4]
    scaled = audio.astype(np.float64) * 32768.0
    ref = psf.mfcc(scaled, 16000, winlen=0.025, winstep=0.010, numcep=13)
    got = mfcc(audio)
    assert got.shape == ref.shape == (399, 13)  # 1 + ceil((64000 - 400) / 160)
    assert np.abs(got - ref).max() < 1e-3 * np.abs(ref).max()
    # same on a length that is not a whole number of hops, and the 100 Hz / 4-per-video-frame contract
    ref2 = psf.mfcc(scaled[:12345], 16000, winlen=0.025, winstep=0.010, numcep=13)
    assert np.allclose(mfcc(audio[:12345]), ref2, atol=1e-3)
    assert ASDScorer.aligned_length(100, len(got)) == 99  # (399 - 399 % 4) / 4, as the demo


def test_crop_faces_geometry():
    frames = np.zeros((2, 400, 400), np.uint8)
    frames[:, 200:260, 150:250] = 255  # a bright mouth-region band below the box centre
    boxes = np.array([[100, 100, 300, 300], [np.nan] * 4], np.float32)
    crops = crop_faces(frames, boxes, 0.4)
    assert crops.shape == (2, 112, 112)
    # box centre (200,200), s=100: crop is the square of side 140 centred at (200, 240)
    assert crops[0, 56, 56] == 255 and crops[0, 5, 56] == 0
    assert (crops[1] == 110).all()  # no box: pad value


@pytest.mark.slow
def test_scores_own_audio_above_swapped_audio(media_dir, model_dir, capsys):
    """Must-show 1 of issue 5: on talking_face_1..5 with their own audio the mean speaking score is
    clearly above the same faces with another clip's audio swapped in."""
    from test_asd_media import face_boxes
    from operators.clipmedia import read_clip_audio, read_clip_frames

    data = []
    for k in range(1, 6):
        src = {"video_uri": str(media_dir / "video" / f"talking_face_{k}.mp4")}
        frames = read_clip_frames(src, size=(256, 256), fps=25)
        data.append((crop_faces(frames, face_boxes(frames, model_dir).astype(np.float32), 0.4), read_clip_audio(src)))
    report = {}
    for ck in ("pretrain_AVA", "finetuning_TalkSet"):
        scorer = ASDScorer.from_dir(model_dir, ck)
        own, swapped = [], []
        for i, (faces, audio) in enumerate(data):
            feats = mfcc(audio)
            cache = scorer.embed(faces[: scorer.aligned_length(len(faces), len(feats))])  # common length, as the demo
            own.append(np.nanmean(scorer.score_cached(cache, feats)))
            swapped.append(np.nanmean(scorer.score_cached(cache, mfcc(data[(i + 1) % 5][1]))))
        report[ck] = (float(np.mean(own)), float(np.mean(swapped)), own, swapped)
    with capsys.disabled():
        for ck, (o, s, per_o, per_s) in report.items():
            print(f"\n[LR-ASD {ck}] mean logit own audio {o:.2f}, swapped audio {s:.2f}; per clip own "
                  f"{np.round(per_o, 2).tolist()} swapped {np.round(per_s, 2).tolist()}")
    o, s, per_o, per_s = report["pretrain_AVA"]
    assert o > 0.5 and o - s > 0.4
    assert sum(a > b for a, b in zip(per_o, per_s)) >= 4
