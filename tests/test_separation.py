"""Separation stage: a tiny random HTDemucs loads through demucs.pretrained.get_model(name, repo=dir) and
runs on the speech+music mix; without a model the stage stores the mixture and says 'none'.

SDR is measured against the exact speech stem (speech_plus_music_snr0.speech_stem.wav). The random model
only proves the path: separation QUALITY needs real weights (e.g. the released htdemucs in a local dir)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures_models import tiny_demucs_dir  # noqa: F401  (session fixture)

SHOT_S = 4.0


def _task(uri: str, shot_s: float = SHOT_S):
    from operators.base import VideoTask

    task = VideoTask(uri=uri, video_id="sep-test")
    task.video = {"has_audio": True, "video_start_s": 0.0, "duration_s": shot_s}
    task.shots = [{"shot_index": 0, "start_frame": 0, "end_frame": int(shot_s * 25), "start_s": 0.0, "end_s": shot_s,
                   "duration_s": shot_s, "kept": True, "reason": ""}]
    task.clips = [{"clip_id": "c0", "video_id": "sep-test", "shot_index": 0, "track_id": 0, "start_s": 0.0,
                   "end_s": shot_s, "duration_s": shot_s}]
    return task


def _run(settings, uri):
    from operators.audio import SeparationOperator
    from operators.base import run_operator

    op = SeparationOperator(settings)
    task = run_operator(op, _task(uri), 600)
    assert task.ok, task.rejects
    return task


def test_tiny_htdemucs_loads_as_model_and_bag(tiny_demucs_dir, settings):  # noqa: F811
    from demucs.apply import BagOfModels

    from models.registry import MissingModelError, user_model
    from models.separation import load_separator

    settings.audio.demucs_model_dir = str(tiny_demucs_dir)
    settings.audio.demucs_model_name = "tiny_htdemucs"
    sep = load_separator(settings)
    assert sep.sources[-1] == "vocals" and sep.samplerate == 44100 and sep.audio_channels == 2
    assert sep.resolved.digest == user_model(tiny_demucs_dir, "demucs").digest
    # the released htdemucs is a bag: <name>.yaml listing checkpoint signatures in the same folder
    (tiny_demucs_dir / "tiny_bag.yaml").write_text("models: ['tiny_htdemucs']\n")
    settings.audio.demucs_model_name = "tiny_bag"
    assert isinstance(load_separator(settings).model, BagOfModels)
    settings.audio.demucs_model_name = "not_there"
    with pytest.raises(MissingModelError):
        load_separator(settings)


def test_separation_stage_with_and_without_model(tiny_demucs_dir, settings, media_dir, artifacts_dir):  # noqa: F811
    from models.separation import sdr_db
    from operators.media import decode_audio, decode_flac

    mix_uri = str(media_dir / "audio" / "speech_plus_music_snr0.wav")
    speech = decode_audio(str(media_dir / "audio" / "speech_plus_music_snr0.speech_stem.wav"), 60, duration_s=SHOT_S)
    mixture = decode_audio(mix_uri, 60, duration_s=SHOT_S)
    n = int(SHOT_S * 16000)

    # demucs asked for but no model configured: the mixture itself, provenance 'none', the stage goes on
    # (the default is now 'dtln', tests/test_isolators.py; here demucs is chosen explicitly)
    settings.audio.separation = "demucs"
    settings.audio.demucs_model_dir = None
    t_none = _run(settings, mix_uri)
    none = decode_flac(t_none.scratch["vocals"][0])
    assert len(none) == n
    assert t_none.provenance["separation"]["model"] == "none"
    sdr_mix = sdr_db(mixture, speech)
    sdr_none = sdr_db(none, speech)
    assert -1.5 < sdr_mix < 1.5, "the test mix is built at 0 dB SNR"
    assert abs(sdr_none - sdr_mix) < 0.05

    # a configured directory that does not exist: same fallback, never a crash
    settings.audio.demucs_model_dir = str(tiny_demucs_dir / "missing")
    t_missing = _run(settings, mix_uri)
    assert t_missing.provenance["separation"]["model"] == "none" and 0 in t_missing.scratch["vocals"]

    # tiny random HTDemucs: the whole path runs (decode 44.1 kHz stereo with context, chunked apply_model,
    # vocals stem, mono, 16 kHz, exact shot length)
    settings.audio.demucs_model_dir = str(tiny_demucs_dir)
    settings.audio.demucs_model_name = "tiny_htdemucs"
    t_tiny = _run(settings, mix_uri)
    prov = t_tiny.provenance["separation"]
    assert prov["model"] == "demucs:tiny_htdemucs" and len(prov["weights_sha256"]) == 64
    tiny = decode_flac(t_tiny.scratch["vocals"][0])
    assert len(tiny) == n and np.isfinite(tiny).all()
    assert np.abs(tiny - none).max() > 1e-3, "the separator's output must replace the mixture"
    sdr_tiny = sdr_db(tiny, speech)
    numbers = {"input": "speech_plus_music_snr0.wav [0, 4 s)", "sdr_db_mixture": round(sdr_mix, 2),
               "sdr_db_separation_none": round(sdr_none, 2), "sdr_db_tiny_random_htdemucs": round(sdr_tiny, 2),
               "note": "random weights prove the path only; quality needs real demucs weights"}
    (artifacts_dir / "audio_separation_sdr.json").write_text(json.dumps(numbers, indent=2))
    print(numbers)


@pytest.mark.parametrize("model_sr", [16000, 44100])
def test_chunked_span_matches_direct_decode(media_dir, model_sr):
    """An identity 'separator' through separate_span (chunks of 2 s with 0.5 s overlap and 0.5 s context,
    decoded by seeking, trimmed, downmixed, resampled) must reproduce the plainly decoded 16 kHz audio."""
    from types import SimpleNamespace

    from models.separation import sdr_db
    from operators.audio import separate_span
    from operators.media import decode_audio

    uri = str(media_dir / "audio" / "jfk_speech.flac")
    start, dur = 1.3, 6.7
    n = int(round(dur * 16000))
    direct = decode_audio(uri, 60, start_s=start, duration_s=dur)[:n]
    sep = SimpleNamespace(samplerate=model_sr, audio_channels=2, chunk_s=2.0, overlap_s=0.5, vocals=lambda mix: mix)
    out = separate_span(uri, start, n, sep, 0.5, 60)
    assert len(out) == n
    assert sdr_db(out, direct) > (60.0 if model_sr == 16000 else 30.0)  # measured: 112 dB and 60 dB
    # a misplaced trim (even 20 ms) fails the bound
    shifted = separate_span(uri, start + 0.02, n, sep, 0.5, 60)
    assert sdr_db(shifted, direct) < 5.0
