"""ASR on by default (issue 20, items 1, 2, 5): the registered whisper-tiny.en-ct2 is resolved from the
model directory with no config, transcribes jfk_speech through the audio stage's own path, records
'en (assumed)' and the model's sha256; words are attributed per shot to the clip in 'speak'."""
from __future__ import annotations

import re

import pytest

from test_asr import JFK_S, _jfk_task

JFK_TEXT = "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country."


def wer(ref: str, hyp: str) -> float:
    """Word error rate (Levenshtein over words, lower case, punctuation dropped)."""
    def norm(t: str) -> list[str]:
        return re.sub(r"[^a-z0-9' ]+", " ", t.lower()).split()

    r, h = norm(ref), norm(hyp)
    d = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, hw in enumerate(h, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
    return d[len(h)] / max(1, len(r))


def test_wer_function():
    assert wer("a b c", "a b c") == 0.0 and wer("a b c", "a x c") == pytest.approx(1 / 3)
    assert wer("a b", "a b c") == pytest.approx(0.5) and wer("A, b.", "a b") == 0.0


@pytest.fixture(scope="module")
def default_asr(model_dir):
    from models.asr import load_asr
    from schemas.settings import Settings

    s = Settings()
    s.models.dir = str(model_dir)
    return s, load_asr(s)


def test_default_settings_resolve_registered_whisper(default_asr, model_dir):
    from models.asr import resolve_whisper
    from models.registry import REGISTRY
    from schemas.settings import Settings

    assert Settings().audio.whisper_model_dir == "whisper-tiny.en-ct2" and Settings().audio.asr == "faster-whisper"
    s, asr = default_asr
    d, r = resolve_whisper(s)
    assert r is not None and r.name == "whisper-tiny.en-ct2" and d == model_dir / "whisper-tiny.en-ct2"
    assert r.sha256 == [f.sha256 for f in REGISTRY["whisper-tiny.en-ct2"].files]
    assert asr.english_only and asr.language == "en" and asr.params["multilingual"] is False
    assert asr.temperatures == (0.0,) and asr.params["beam_size"] == 5  # deterministic by default


def test_jfk_wer_through_audio_path(default_asr, media_dir, capsys):
    from operators.media import decode_audio
    from operators.segments import join_words

    _, asr = default_asr
    audio = decode_audio(str(media_dir / "audio" / "jfk_speech.flac"), 60, sample_rate=16000)
    tr = asr.transcribe(audio)
    text = join_words([w.word for w in tr.words])
    e = wer(JFK_TEXT, text)
    with capsys.disabled():
        print(f"\n[asr] jfk_speech whisper-tiny.en-ct2: WER {e:.3f}, {len(tr.words)} words: {text!r}")
    assert e <= 0.05, text
    assert tr.language_label == "en (assumed)"
    assert all(0 <= w.start_s <= w.end_s <= len(audio) / 16000 for w in tr.words)


def test_default_audio_stage_records_language_and_model(default_asr, media_dir):
    from operators.audio import AudioTracksOperator
    from operators.base import run_operator
    from schemas.tables import to_table

    s, _ = default_asr
    task = run_operator(AudioTracksOperator(s), _jfk_task(str(media_dir / "audio" / "jfk_speech.flac")), 600)
    assert task.ok, task.rejects
    sp, li, _un = task.clips
    assert sp["language"] == "en (assumed)" and li["language"] == "en (assumed)"
    assert sp["asr_model"].startswith("whisper-tiny.en-ct2 sha256:") and len(sp["asr_model"].split("sha256:")[1]) == 64
    assert task.provenance["asr"]["model"] == "whisper-tiny.en-ct2"
    assert "fellow americans" in sp["transcript"].lower()
    assert li["words"] == [] and [w["word"] for w in li["heard_words"]] == [w["word"] for w in sp["words"]]
    assert {w["speaker"] for w in li["heard_words"]} == {"speaker"} and sp["heard_words"] == []
    assert all(0 <= w["start_s"] <= w["end_s"] <= JFK_S + 1e-6 for w in sp["words"])
    to_table("clips", task.clips)


def _two_clips():
    fps = 25.0
    # shot 10..18 s; clip A 10..18, clip B 11..18 (starts later: its own time base)
    a = ["speak"] * 50 + ["listen"] * 50 + ["speak"] * 50 + ["idle"] * 50
    b = ["listen"] * 25 + ["speak"] * 50 + ["speak"] * 50 + ["idle"] * 50
    base = {"shot_index": 0, "clip_fps": fps, "end_s": 18.0}
    return [{**base, "clip_id": "A", "track_id": 0, "start_s": 10.0, "frame_states": a},
            {**base, "clip_id": "B", "track_id": 1, "start_s": 11.0, "frame_states": b},
            {**base, "clip_id": "U", "track_id": 2, "start_s": 10.0}]  # no frame_states: not a person here


def test_attribution_each_word_once():
    from operators.audio import attribute_words

    # A speaks 10-12, B 12-14, both 14-16 (overlap), nobody 16-18; one word at 10.5 lies before B's clip
    spec = [("a1", 10.5, "A"), ("a2", 11.5, "A"), ("b1", 12.5, "B"), ("b2", 13.5, "B"), ("o1", 14.5, "overlap"),
            ("o2", 15.5, "overlap"), ("n1", 16.5, "off_screen"), ("n2", 17.5, "off_screen")]
    words = [{"word": w, "start_s": t - 0.2, "end_s": t + 0.2, "prob": 0.9} for w, t, _ in spec]
    clips = _two_clips()
    own, uncovered = attribute_words(words, clips)
    assert set(own) == {"A", "B"} and uncovered == []
    assert [w["word"] for w in own["A"][0]] == ["a1", "a2"]
    assert [w["word"] for w in own["B"][0]] == ["b1", "b2"]
    heard_a = {w["word"]: w["speaker"] for w in own["A"][1]}
    heard_b = {w["word"]: w["speaker"] for w in own["B"][1]}
    assert heard_a == {"b1": "B", "b2": "B", "o1": "overlap", "o2": "overlap", "n1": "off_screen", "n2": "off_screen"}
    assert heard_b == {"a2": "A", "o1": "overlap", "o2": "overlap", "n1": "off_screen", "n2": "off_screen"}
    # each word exactly once: in one clip's own words, or marked off_screen/overlap in the heard lists
    owned = [w["word"] for c in own.values() for w in c[0]]
    marked = {w["word"] for c in own.values() for w in c[1] if w["speaker"] in ("off_screen", "overlap")}
    assert sorted(owned + sorted(marked)) == sorted(w for w, _, _ in spec) and len(owned) == len(set(owned))
    # clip-relative times (each clip's own time base)
    assert own["A"][0][0]["start_s"] == pytest.approx(0.3) and own["B"][0][0]["start_s"] == pytest.approx(1.3)
    assert heard_b and all(0 <= w["start_s"] <= w["end_s"] <= 7.0 for w in own["B"][1])
    # an av shift moves the clip window: B audio 0.5 s late -> b1 (12.5 s) is B frame 25, still speak
    clips[1]["av_shift_s"] = 0.5
    own2, _ = attribute_words(words, clips)
    assert [w["word"] for w in own2["B"][0]] == ["b1", "b2"]
    # a word outside every clip is returned, not lost
    _, unc = attribute_words([{"word": "x", "start_s": 30.0, "end_s": 30.2, "prob": 1.0}], clips)
    assert [w["word"] for w in unc] == ["x"]


def test_caption_quotes_own_words_short():
    from operators.captions import compose_caption, quote_words

    long = " ".join(f"w{i}" for i in range(50))
    q = quote_words(long)
    assert q.endswith("...") and len(q.split()) == 30
    cap = compose_caption({"state": "speak", "transcript": "ask not what your country can do for you"})
    assert '"ask not what your country can do for you"' in cap
    assert "w40" not in compose_caption({"state": "speak", "transcript": long})


@pytest.mark.slow
def test_default_run_talking_face_words(media_dir, model_dir, capsys):
    """Default settings, stages through 'audio', in process: the speak clip has words inside the clip,
    >= 1 word per speaking second."""
    from pipeline.runner import process_uri
    from pipeline.stages import build_operators, stage_names
    from schemas.settings import Settings

    s = Settings()
    s.models.dir = str(model_dir)
    names = stage_names()
    s.stages = names[: names.index("audio") + 1]
    task = process_uri(str(media_dir / "video" / "talking_face_1.mp4"), build_operators(s), s)
    assert task.ok, task.rejects
    speakers = [c for c in task.clips if (c.get("frame_states") or []).count("speak")]
    assert speakers, [c.get("clip_class") for c in task.clips]
    for c in speakers:
        fps = float(c["clip_fps"])
        speak_s = c["frame_states"].count("speak") / fps
        n = len(c["words"] or [])
        with capsys.disabled():
            print(f"\n[asr] talking_face_1 {c['clip_id']}: {n} words in {speak_s:.1f} speaking s "
                  f"({n / max(speak_s, 1e-9):.2f}/s), language {c['language']}: {c['transcript']!r}")
        assert c["words"] and c["language"] == "en (assumed)"
        assert all(0 <= w["start_s"] <= w["end_s"] <= float(c["duration_s"]) + 1e-6 for w in c["words"])
        assert n / speak_s >= 1.0
