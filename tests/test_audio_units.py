"""Unit tests of the audio stage's pure parts: fades, speak/listen masks, sentence splitting, word
cleaning, CTC word times on known emissions, chunked separation stitching and SDR."""
from __future__ import annotations

import numpy as np
import pytest

from operators.audio import SR, fade_gain, overlapping_others, speak_listen_masks, states_at
from operators.segments import ends_sentence, join_words, split_sentences


def test_fade_gain_ramps_inside_runs_only():
    m = np.zeros(1000, bool)
    m[300:700] = True
    g = fade_gain(m, 50)
    assert np.all(g[~m] == 0.0), "nothing outside the kept span may leak in"
    assert g[300] == pytest.approx(1 / 50) and g[349] == pytest.approx(1.0) and g[500] == 1.0
    assert g[699] == pytest.approx(1 / 50)
    assert np.all(np.diff(g[300:350]) > 0)
    # the clip's own edges are not switches: a run touching an edge is not faded there
    m2 = np.zeros(1000, bool)
    m2[:400] = True
    g2 = fade_gain(m2, 50)
    assert g2[0] == 1.0 and g2[399] == pytest.approx(1 / 50)
    assert np.all(fade_gain(np.ones(10, bool), 50) == 1) and np.all(fade_gain(np.zeros(10, bool), 50) == 0)
    assert np.array_equal(fade_gain(m, 0), m.astype(np.float32))


def test_states_at_maps_source_times_to_frames():
    st = ["speak"] * 5 + ["listen"] * 5  # 10 frames at 25 fps from t=2.0
    t = np.array([1.99, 2.0, 2.199, 2.2, 2.399, 2.4])
    assert list(states_at(st, t, 2.0, 25.0)) == ["", "speak", "speak", "listen", "listen", ""]


def _clip(track, start, end, states, shot=0, fps=25.0):
    return {"clip_id": f"c{track}-{start}", "shot_index": shot, "track_id": track, "start_s": start, "end_s": end,
            "duration_s": end - start, "clip_fps": fps, "frame_states": states}


def test_speak_listen_masks_use_own_and_other_labels():
    # A: speak 0-1 s, idle 1-2 s, listen 2-3 s, discard 3-4 s; B (other clip, same shot) speaks 2-4 s
    a = _clip(0, 0.0, 4.0, ["speak"] * 25 + ["idle"] * 25 + ["listen"] * 25 + ["discard"] * 25)
    b = _clip(1, 2.0, 4.0, ["speak"] * 50)
    other_shot = _clip(2, 0.0, 4.0, ["speak"] * 100, shot=1)
    others = overlapping_others(a, [a, b, other_shot])
    assert others == [b]
    n = 4 * SR
    speak, listen, self_speak = speak_listen_masks(a, others, n, "both")
    sec = lambda m, i: m[i * SR:(i + 1) * SR]  # noqa: E731
    assert sec(speak, 0).all() and not sec(listen, 0).any()
    assert sec(speak, 1).all() and sec(listen, 1).all()  # idle keeps both
    assert not sec(speak, 2).any() and sec(listen, 2).all()
    assert not sec(speak, 3).any() and not sec(listen, 3).any()  # discard: silent in both
    assert self_speak.sum() == SR
    speak_n, listen_n, _ = speak_listen_masks(a, others, n, "none")
    assert not sec(speak_n, 1).any() and not sec(listen_n, 1).any()
    # idle while another person speaks: that is listening, not speaking
    a2 = _clip(0, 0.0, 4.0, ["idle"] * 100)
    speak2, listen2, _ = speak_listen_masks(a2, [b], n, "both")
    assert speak2[: 2 * SR].all() and not speak2[2 * SR:].any() and listen2.all()


def test_sentence_splitting():
    w = lambda t, a, b: {"word": t, "start_s": a, "end_s": b}  # noqa: E731
    words = [w(" Hello", 0.0, 0.3), w(" there.", 0.35, 0.6), w(" Mr.", 0.7, 0.9), w(" Smith", 0.95, 1.2),
             w(" is", 1.25, 1.4), w(" here", 1.45, 1.7), w(" and", 3.5, 3.7), w(" well!", 3.75, 4.0), w(" ok", 4.1, 4.3)]
    s = split_sentences(words, max_pause_s=1.0, max_sentence_s=15.0)
    assert [x["text"] for x in s] == ["Hello there.", "Mr. Smith is here", "and well!", "ok"]
    assert s[0]["start_s"] == 0.0 and s[0]["end_s"] == 0.6 and s[2]["start_s"] == 3.5
    assert len(split_sentences(words, max_pause_s=10.0, max_sentence_s=0.5)) > 4
    assert ends_sentence('done."') and ends_sentence("好。") and not ends_sentence("e.g.") and not ends_sentence("word")
    assert join_words(["你", "好"]) == "你好" and join_words(["a", "b"]) == "a b"


def test_clean_words_clips_and_orders():
    from models.asr import Word, clean_words

    ws = [Word(" a", 0.5, 0.4, 0.9), Word(" b", 0.3, 0.8, 0.9), Word(" ", 1.0, 1.1, 0.9), Word(" c", 2.5, 3.5, 0.9),
          Word(" d", 9.0, 9.5, 0.9)]
    out = clean_words(ws, 3.0)
    assert [w.word for w in out] == [" a", " b", " c"]
    assert out[0].end_s == 0.5 and out[1].start_s == 0.5 and out[2].end_s == 3.0


def test_ctc_word_times_on_known_emissions():
    """Emissions built so that 'HI' occupies frames 2-4 and 'YO' frames 8-10; alignment must find them."""
    from models.asr import ctc_word_times

    vocab = {"<pad>": 0, "|": 1, "H": 2, "I": 3, "Y": 4, "O": 5}
    T = 14
    path = [0, 0, 2, 3, 3, 0, 1, 0, 4, 5, 5, 0, 0, 0]
    lp = np.full((T, len(vocab)), np.log(0.02), np.float32)
    for t, k in enumerate(path):
        lp[t, k] = np.log(0.9)
    times = ctc_word_times(lp, [" hi", " yo!", " ..."], vocab, blank=0, delimiter="|")
    assert times[0] == (2, 5) and times[1] == (8, 11) and times[2] is None
    # more targets than frames: no alignment, no crash
    assert ctc_word_times(lp[:2], [" hi", " yo"], vocab) == [None, None]


def test_overlap_add_and_normalisation_are_exact_for_identity():
    """Chunked production with overlap crossfades must give back the signal exactly, and an identity
    'separator' (vocals = input) must survive the normalise/denormalise round trip."""
    from models.separation import overlap_add, sdr_db, separate_source

    rng = np.random.default_rng(0)
    sig = (rng.standard_normal(7300) * 0.3 + 0.05).astype(np.float32)
    calls = []

    def produce(i0, i1):
        calls.append((i0, i1))
        return sig[i0:i1]

    out = overlap_add(len(sig), 2000, 500, produce, check=lambda: None)
    assert np.allclose(out, sig, atol=1e-6)
    assert calls[:2] == [(0, 2000), (1500, 3500)] and calls[-1][1] == 7300 and len(calls) == 5
    assert np.array_equal(overlap_add(10, 4, 0, lambda a, b: np.arange(a, b)), np.arange(10))
    # chunks that disagree are blended, not cut: the crossfade is monotonic between the two values
    blend = overlap_add(3000, 2000, 1000, lambda a, b: np.full(b - a, 1.0 if a == 0 else 3.0))
    assert blend[0] == 1.0 and blend[-1] == 3.0 and np.all(np.diff(blend) >= -1e-6)

    mix = np.stack([sig, sig * 0.5 + 0.1])
    ident = lambda x: np.stack([np.zeros_like(x), x])  # noqa: E731  sources: [other, vocals]
    assert np.allclose(separate_source(mix, ident, 1), mix, atol=1e-5)
    # the other source is all zeros: what comes back is the normalisation offset only
    assert np.allclose(separate_source(mix, ident, 0), mix.mean(axis=0).mean(), atol=1e-5)
    assert sdr_db(out, sig) > 80
    noise = rng.standard_normal(7300).astype(np.float32)
    noise *= np.sqrt(np.sum(sig.astype(np.float64) ** 2) / np.sum(noise.astype(np.float64) ** 2))
    assert abs(sdr_db(sig + noise, sig)) < 0.01  # equal-energy interference: 0 dB
