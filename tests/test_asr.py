"""ASR path: a tiny random Whisper converted offline to CTranslate2 runs in faster-whisper with word
timestamps, optionally refined by torchaudio forced alignment on a tiny random wav2vec2 CTC model; the
audio stage turns the words into per-clip words/transcript/sentences. Random weights give random text:
these tests check the plumbing (times, attribution, schema), not recognition quality."""
from __future__ import annotations

import numpy as np
import pytest

from fixtures_models import tiny_ctc_dir, tiny_whisper_dir  # noqa: F401  (session fixtures)

JFK_S = 11.0


def test_tiny_whisper_transcribes_with_word_times(tiny_whisper_dir, media_dir):  # noqa: F811
    from models.asr import WhisperASR
    from models.registry import MissingModelError
    from operators.media import decode_audio

    audio = decode_audio(str(media_dir / "audio" / "jfk_speech.flac"), 60)
    asr = WhisperASR(tiny_whisper_dir, compute_type="float32", beam_size=5, vad_filter=True)
    assert asr.params["multilingual"] is False
    tr = asr.transcribe(audio)
    dur = len(audio) / 16000
    assert tr.words, "the tiny model emits words on this input (deterministic: float32, fixed seed, no sampling)"
    again = asr.transcribe(audio)
    assert [(w.word, w.start_s, w.end_s) for w in again.words] == [(w.word, w.start_s, w.end_s) for w in tr.words]
    starts = [w.start_s for w in tr.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start_s <= w.end_s <= dur for w in tr.words)
    assert all(w.word.strip() and not any(ord(ch) < 32 for ch in w.word.strip()) for w in tr.words)
    # a directory without tokenizer.json would make faster-whisper go to the hub: refused up front
    broken = tiny_whisper_dir.parent / "no-tokenizer"
    broken.mkdir(exist_ok=True)
    (broken / "model.bin").write_bytes((tiny_whisper_dir / "model.bin").read_bytes())
    with pytest.raises(MissingModelError, match="tokenizer.json"):
        WhisperASR(broken)


def test_ctc_aligner_refines_times(tiny_ctc_dir, media_dir):  # noqa: F811
    from models.asr import CTCAligner, Word
    from operators.media import decode_audio

    audio = decode_audio(str(media_dir / "audio" / "jfk_speech.flac"), 60, duration_s=4.0)
    al = CTCAligner(tiny_ctc_dir)
    assert al.blank == 0 and al.delimiter == "|"
    lp = al.log_probs(audio)
    assert lp.shape[1] == len(al.vocab) and 150 < lp.shape[0] < 250  # ~20 ms frames
    words = [Word(" And", 0.3, 0.6, 0.9), Word(" so", 0.6, 0.9, 0.9), Word(" 123", 1.0, 1.2, 0.9), Word(" my", 1.3, 1.6, 0.9)]
    out = al.align(audio, words, [(0.0, 2.0)])
    assert [w.word for w in out] == [w.word for w in words]
    assert [w.aligned for w in out] == [True, True, False, True]
    assert all(0 <= w.start_s <= w.end_s <= 4.0 for w in out)
    assert out[0].end_s <= out[1].start_s + 1e-6 and out[1].end_s <= out[3].start_s + 1e-6


def _jfk_task(uri: str):
    from operators.base import VideoTask

    t = VideoTask(uri=uri, video_id="asr-test")
    t.video = {"has_audio": True, "video_start_s": 0.0, "duration_s": JFK_S}
    t.shots = [{"shot_index": 0, "start_frame": 0, "end_frame": 275, "start_s": 0.0, "end_s": JFK_S, "duration_s": JFK_S,
                "kept": True, "reason": ""}]
    n = int(JFK_S * 25)
    base = {"video_id": "asr-test", "shot_index": 0, "start_frame": 0, "end_frame": n, "start_s": 0.0, "end_s": JFK_S,
            "duration_s": JFK_S, "fps": 25.0, "clip_fps": 25.0}
    t.clips = [
        {**base, "clip_id": "speaker", "track_id": 0, "frame_states": ["speak"] * n},
        {**base, "clip_id": "listener", "track_id": 1, "frame_states": ["listen"] * n},
        {**base, "clip_id": "unlabelled", "track_id": 2},
    ]
    return t


def test_audio_stage_words_sentences_and_attribution(tiny_whisper_dir, tiny_ctc_dir, settings, media_dir):  # noqa: F811
    from operators.audio import AudioTracksOperator
    from operators.base import run_operator
    from operators.media import decode_flac
    from schemas.tables import to_table

    settings.audio.whisper_model_dir = str(tiny_whisper_dir)
    settings.audio.ctc_model_dir = str(tiny_ctc_dir)
    settings.audio.asr_compute_type = "float32"
    task = run_operator(AudioTracksOperator(settings), _jfk_task(str(media_dir / "audio" / "jfk_speech.flac")), 600)
    assert task.ok, task.rejects
    sp, li, un = task.clips
    assert sp["audio_status"] == "ok" and li["audio_status"] == "ok" and un["audio_status"] == "no_frame_states"
    # the speaker owns every word; the listener says nothing; the unlabelled clip gets no person-level fields
    assert sp["words"] and sp["transcript"]
    assert li["words"] == [] and li["transcript"] == ""
    assert un.get("speak_audio") is None and un.get("words") is None and un.get("transcript") is None
    assert all(0 <= w["start_s"] <= w["end_s"] <= JFK_S + 1e-6 for w in sp["words"])
    assert sp["sentences"] and sp["sentences"] == li["sentences"] == un["sentences"], "sentences cover all speech"
    assert all(s["start_s"] <= s["end_s"] and s["caption"] is None for s in sp["sentences"])
    speak, listen = decode_flac(sp["speak_audio"]), decode_flac(sp["listen_audio"])
    assert len(speak) == int(JFK_S * 16000) and np.abs(listen).max() == 0.0
    assert np.abs(decode_flac(li["speak_audio"])).max() == 0.0
    assert np.allclose(decode_flac(li["listen_audio"]), speak, atol=1e-4)
    prov = task.provenance
    assert prov["asr"]["model"].startswith("whisper:") and "ctc-aligner" in prov["asr"]["model"]
    assert prov["separation"]["model"] == "none"  # separation stage not run: recorded
    to_table("clips", task.clips)  # every column written exists in schemas/tables.py with its type


def test_audio_stage_without_asr_model(settings, media_dir):
    from operators.audio import AudioTracksOperator
    from operators.base import run_operator

    settings.audio.whisper_model_dir = None
    task = run_operator(AudioTracksOperator(settings), _jfk_task(str(media_dir / "audio" / "jfk_speech.flac")), 600)
    assert task.ok
    sp = task.clips[0]
    assert sp["speak_audio"] and sp.get("transcript") is None and sp.get("words") is None and sp.get("sentences") is None
    assert task.provenance["asr"]["model"] == "none"
