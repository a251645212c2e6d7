"""Pure state logic of the conversation stage (operators/states.py): no models, no media."""
from __future__ import annotations

import numpy as np

from operators import states as st


def test_hysteresis_enters_high_leaves_low():
    x = np.array([0, 0.6, 0.4, 0.3, 0.1, 0.4, 0.6, np.nan, 0.9])
    got = st.hysteresis(x, 0.5, 0.2)
    assert got.tolist() == [False, True, True, True, False, False, True, False, True]


def test_suppress_short_runs_removes_spikes_keeps_long_edges():
    lab = np.array([0] * 10 + [2] * 2 + [0] * 10 + [2] * 12 + [1] * 3 + [2] * 10)
    out = st.suppress_short_runs(lab, 5)
    assert out[10:12].tolist() == [0, 0]          # 2-frame spike gone
    assert out[22:34].tolist() == [2] * 12         # long run kept with its edges
    assert out[34:37].tolist() == [2, 2, 2]        # short gap inside a speak run filled
    assert st.suppress_short_runs(np.array([3, 3]), 5).tolist() == [3, 3]


def test_fill_short_gaps_only_between_runs():
    m = np.array([0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1], bool)
    assert st.fill_short_gaps(m, 2).astype(int).tolist() == [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1]


def test_mouth_motion_still_vs_moving():
    t = np.arange(100)
    still = np.full(100, 0.05) + 0.001 * np.sin(t)
    talk = 0.1 + 0.08 * np.sin(t * 2 * np.pi / 6)
    assert np.nanmax(st.mouth_motion(still)) < 0.005
    assert np.nanmedian(st.mouth_motion(talk)) > 0.04
    m = st.mouth_motion(np.r_[talk[:50], [np.nan] * 50])
    assert np.isnan(m[60]) and np.isfinite(m[10])


def _person(speak, motion, sync=None):
    return st.PersonSignals(np.asarray(speak, float), np.asarray(motion, float), None if sync is None else np.asarray(sync, float))


def test_state_table_single_person():
    """speech+speaking -> speak; speech+still -> listen; silence+still -> idle; silence+moving -> discard."""
    n = 50
    speech = np.r_[np.ones(2 * n), np.zeros(2 * n)]
    speak = np.r_[np.full(n, 2.0), np.full(n, -3.0), np.full(n, -3.0), np.full(n, -3.0)]
    motion = np.r_[np.full(n, 0.05), np.zeros(n), np.zeros(n), np.full(n, 0.05)]
    p = st.StateParams(use_sync=False)
    (codes,) = st.decide_states([_person(speak, motion)], speech, p)
    assert st.to_labels(codes[5:n - 5]) == ["speak"] * (n - 10)
    assert set(st.to_labels(codes[n + 5:2 * n - 5])) == {"listen"}
    assert set(st.to_labels(codes[2 * n + 5:3 * n - 5])) == {"idle"}
    assert set(st.to_labels(codes[3 * n + 5:])) == {"discard"}


def test_speech_with_moving_mouth_but_low_score_is_discard():
    n = 60
    (codes,) = st.decide_states([_person(np.full(n, -2.0), np.full(n, 0.05))], np.ones(n), st.StateParams(use_sync=False))
    assert set(st.to_labels(codes)) == {"discard"}


def test_missing_face_is_discard():
    n = 60
    speak = np.r_[np.full(30, 2.0), np.full(30, np.nan)]
    (codes,) = st.decide_states([_person(speak, np.full(n, 0.05))], np.ones(n), st.StateParams(use_sync=False))
    assert st.to_labels(codes[40:]) == ["discard"] * 20


def test_cross_person_only_best_speaks_and_sync_gates():
    """Both mouths move during speech all the time, both LR-ASD scores high (the composite of issue 9):
    the person whose relative sync evidence stands out speaks, the other is discard; without sync only
    the higher raw score wins; an absolute sync below sync_min can never speak."""
    n = 200
    speech = np.ones(n)
    hi_lo = np.r_[np.full(n // 2, 1.2), np.full(n // 2, 0.4)]
    a = _person(np.full(n, 1.5), np.full(n, 0.05), hi_lo)
    b = _person(np.full(n, 2.0), np.full(n, 0.05), hi_lo[::-1].copy())
    ca, cb = st.decide_states([a, b], speech, st.StateParams(use_sync=True))
    assert st.to_labels(ca[10:90]) == ["speak"] * 80 and st.to_labels(cb[10:90]) == ["discard"] * 80
    assert st.to_labels(ca[110:190]) == ["discard"] * 80 and st.to_labels(cb[110:190]) == ["speak"] * 80
    ca, cb = st.decide_states([a, b], speech, st.StateParams(use_sync=False, cross_margin=0.3))
    assert set(st.to_labels(ca)) == {"discard"} and set(st.to_labels(cb)) == {"speak"}
    low = _person(np.full(n, 2.0), np.full(n, 0.05), np.full(n, -1.0))
    (cl,) = st.decide_states([low], speech, st.StateParams(use_sync=True))
    assert set(st.to_labels(cl)) == {"discard"}
    # both in sync at the same time (overlapping speech): both speak
    c = _person(np.full(n, 1.9), np.full(n, 0.05), hi_lo)
    ca, cc = st.decide_states([a, c], speech, st.StateParams(use_sync=True))
    assert st.to_labels(ca[10:90]) == ["speak"] * 80 and st.to_labels(cc[10:90]) == ["speak"] * 80


def test_outputs_segments_shares_class():
    codes = np.array([st.I_SPEAK] * 50 + [st.I_LISTEN] * 25 + [st.I_IDLE] * 25, np.int8)
    segs = st.segments(codes, 25.0, 10.0)
    assert [s["state"] for s in segs] == ["speak", "listen", "idle"]
    assert segs[0]["start_s"] == 10.0 and abs(segs[0]["end_s"] - 12.0) < 1e-9 and abs(segs[-1]["end_s"] - 14.0) < 1e-9
    sh = st.state_shares(codes)
    assert abs(sh["speak"] - 0.5) < 1e-9 and abs(sum(sh.values()) - 1) < 1e-9
    assert st.clip_class(codes) == "mixed"
    assert st.clip_class(np.full(100, st.I_LISTEN, np.int8)) == "listen"
    assert st.clip_class(np.r_[np.full(90, st.I_IDLE), np.full(10, st.I_DISCARD)].astype(np.int8)) == "idle"
    assert st.clip_class(np.full(10, st.I_DISCARD, np.int8)) == "mixed"
