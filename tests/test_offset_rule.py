"""The offset rule (issue 21): a speaking clip's small confident audio-visual offset is corrected (audio
shifted, labels decided on the shifted audio, av_shift_s), a large one is rejected (av_offset), and a
listening or idle clip is never rejected for offset.

Three levels: the pure rule (operators/states.offset_rule), the shot decision of the conversation
stage on synthetic signals (no models, no media), and the stage on talking faces whose audio is delayed
by construction with ffmpeg at test time (slow ones marked)."""
from __future__ import annotations

import numpy as np
import pytest

from operators import states as st

FPS = 25.0


# ------------------------------------------------------------------------------------- the pure rule
@pytest.mark.parametrize("offset_s,gain,speaks,action,shift", [
    (0.16, 3.0, True, st.OFFSET_CORRECT, 0.16),     # 4 frames, confident, speaking: corrected
    (-0.24, 3.0, True, st.OFFSET_CORRECT, -0.24),   # 6 frames early: still corrected (limit inclusive)
    (0.081, 3.0, True, st.OFFSET_CORRECT, 0.08),    # shift is whole frames
    (0.28, 3.0, True, st.OFFSET_REJECT, 0.0),       # 7 frames: rejected
    (0.5, 3.0, True, st.OFFSET_REJECT, 0.0),
    (0.32, 2.3, False, st.OFFSET_RECORDED, 0.0),    # the real-footage listener: recorded, never rejected
    (0.5, 9.0, False, st.OFFSET_RECORDED, 0.0),
    (0.5, 0.4, True, st.OFFSET_UNKNOWN, 0.0),       # low confidence: unknown, not a reject
    (float("nan"), 0.0, True, st.OFFSET_UNKNOWN, 0.0),
    (None, None, True, st.OFFSET_UNKNOWN, 0.0),
])
def test_offset_rule(offset_s, gain, speaks, action, shift):
    got, sh = st.offset_rule(offset_s, gain, speaks, min_gain=1.0, max_offset_frames=6, fps=FPS)
    assert got == action and abs(sh - shift) < 1e-9


def test_speaks_needs_a_share_of_speak_frames():
    c = np.full(100, st.I_LISTEN)
    assert not st.speaks(c, 0.1)
    c[:5] = st.I_SPEAK
    assert not st.speaks(c, 0.1) and st.speaks(c, 0.05)
    c[:40] = st.I_SPEAK
    assert st.speaks(c, 0.1)
    assert not st.speaks(np.zeros(0, np.int8), 0.0)


def test_settings_limit():
    from schemas.settings import ConversationSettings

    c = ConversationSettings()
    assert c.max_offset_frames == 6 and abs(c.max_offset_s() - 0.24) < 1e-9
    assert ConversationSettings(max_av_offset_s=0.5).max_offset_s() == 0.5


# ------------------------------------------------------------ the shot decision on synthetic signals
def _analysis(op, n: int, talking: bool, offset_frames: int, calls: list):
    from operators.asd import ClipAnalysis

    lags = op.lags()
    curve = np.zeros(len(lags))
    curve[int(np.argmin(np.abs(lags - offset_frames)))] = 3.0  # gain 3 (head units) at the offset
    speak = np.full(n, 2.0 if talking else -2.0)
    motion = np.full(n, 0.08 if talking else 0.0)
    sync = np.full(n, 1.0 if talking else -1.0)

    def rescore(k):
        calls.append(k)
        return speak.copy(), sync.copy()

    r = ClipAnalysis(n, speak, np.zeros(n), sync, np.full(n, 0.1), motion, curve, float(n), rescore=rescore)
    r.speech_at = lambda k: np.ones(n, np.float32)
    return r


def _shot(op, people: list[tuple[bool, int]]):
    from operators.base import VideoTask

    task = VideoTask(uri="x.mp4", video_id="v")
    n = 100
    calls: list = []
    results = []
    for i, (talking, off) in enumerate(people):
        c = {"clip_id": f"c{i}", "video_id": "v", "shot_index": 0, "track_id": i, "start_s": 0.0, "end_s": n / FPS}
        task.clips.append(c)
        results.append((c, _analysis(op, n, talking, off, calls), np.ones(n, np.float32)))
    counts = {"clips": 0, "dropped": 0, "offset_rejected": 0, "offset_corrected": 0}
    op._decide_shot(task, results, counts)
    return task, calls


@pytest.fixture
def decider():
    from operators.asd import ConversationOperator
    from schemas.settings import Settings

    s = Settings()
    s.conversation.sync_signal = "head"  # absolute sync evidence: the synthetic sync 1.0 is in sync
    return ConversationOperator(s)  # no setup: the decision needs no models


def test_decision_listener_with_confident_large_offset_is_kept(decider):
    task, _ = _shot(decider, [(False, 8)])  # still mouth under speech, +0.32 s with gain 3
    (c,) = task.clips
    assert not task.rejects and c["clip_class"] == "listen"
    assert c["av_offset_confident"] and abs(c["av_offset_s"] - 0.32) < 1e-6 and c["av_shift_s"] == 0.0


def test_decision_speaker_small_offset_is_corrected_listener_shifted_with_the_shot(decider):
    task, calls = _shot(decider, [(True, 4), (False, 4)])
    assert not task.rejects and len(task.clips) == 2
    assert 4 in calls  # the decision was made again on the audio shifted by 4 frames
    for c in task.clips:
        assert abs(c["av_shift_s"] - 0.16) < 1e-6
    assert task.clips[0]["clip_class"] == "speak" and task.clips[1]["clip_class"] == "listen"


def test_decision_speaker_large_offset_rejected_listener_kept(decider):
    task, _ = _shot(decider, [(True, 10), (False, 10)])
    assert [r["reason"] for r in task.rejects] == ["av_offset"]
    (c,) = task.clips
    assert c["track_id"] == 1 and c["clip_class"] == "listen" and c["av_shift_s"] == 0.0


def test_decision_low_confidence_is_unknown(decider):
    decider.settings.conversation.offset_min_gain = 5.0  # the synthetic gain 3 is then not significant
    task, calls = _shot(decider, [(True, 10)])
    (c,) = task.clips
    assert not task.rejects and not calls and c["av_shift_s"] == 0.0 and not c["av_offset_confident"]


# ----------------------------------------------------------------- the stage on delayed talking faces
FACE = "talking_face_4"  # held out for the sync head and the conversation thresholds (tests/test_asd_media.py)
DUR_S = 4.0


def _delayed(tmp_path, media_dir, model_dir, delay_s: float, still: bool = False):
    """FACE at 25 fps, 256 px, its own audio delayed by delay_s (ffmpeg adelay: silence first); still:
    the first frame held (a listener) under the delayed voice. One clip, one shot."""
    import test_asd_media as tm
    from conftest import ffmpeg
    from operators.clipmedia import read_clip_frames

    out = str(tmp_path / f"{FACE}_{delay_s:.2f}{'_still' if still else ''}.mp4")
    v = "[0:v]fps=25,scale=256:256" + (",trim=end_frame=1,loop=loop=-1:size=1,setpts=N/25/TB" if still else "") + "[v]"
    ffmpeg("-i", str(media_dir / "video" / f"{FACE}.mp4"), "-filter_complex",
           f"{v};[0:a]adelay={int(round(delay_s * 1000))}:all=1,aresample=16000[a]", "-map", "[v]", "-map", "[a]",
           "-t", f"{DUR_S}", "-c:v", "libx264", "-crf", "18", "-preset", "veryfast", "-c:a", "aac", out)
    frames = read_clip_frames({"video_uri": out}, size=(256, 256), fps=25)
    n = len(frames)
    row = tm.clip_row(out, f"delay{delay_s:.2f}", 0, 0, 0.0, n, [0, 0, 256, 256], tm.face_boxes(frames, model_dir))
    return tm.Composite(out, n / FPS, [row], {}, [{"shot_index": 0, "start_s": 0.0, "end_s": n / FPS, "kept": True}])


def _run(tmp_path, media_dir, model_dir, delay_s, still=False):
    from test_asd_conversation import operator, run

    op = operator(model_dir)
    task = run(op, _delayed(tmp_path, media_dir, model_dir, delay_s, still))
    (c, _, _), = next(iter(op.last_analyses.values()))
    return task, c


def _show(capsys, name, c, task):
    with capsys.disabled():
        print(f"\n[offset rule] {name}: av_offset_s {c.get('av_offset_s')}, gain {c.get('av_offset_gain')}, "
              f"confident {c.get('av_offset_confident')}, av_shift_s {c.get('av_shift_s')}, class {c.get('clip_class')}, "
              f"speak share {c['state_shares']['speak']:.2f}, rejects {[r['reason'] for r in task.rejects]}")


def test_small_offset_speaking_clip_is_corrected(tmp_path, media_dir, model_dir, capsys):
    """Own voice 4 frames late: kept, shifted by the delay (relative to the same face undelayed, whose own
    small native offset the scan also sees, not confidently) within one frame, still speaking."""
    ref_task, ref = _run(tmp_path, media_dir, model_dir, 0.0)
    task, c = _run(tmp_path, media_dir, model_dir, 0.16)
    _show(capsys, f"{FACE} in sync", ref, ref_task)
    _show(capsys, f"{FACE} audio +0.16 s", c, task)
    assert not ref_task.rejects and ref["av_shift_s"] == 0.0 and not ref["av_offset_confident"]
    assert not task.rejects and task.clips
    assert c["av_offset_confident"] and c["av_shift_s"] > 0
    assert abs(c["av_shift_s"] - (0.16 + ref["av_offset_s"])) <= 0.04 + 1e-6
    assert c["clip_class"] == "speak" and c["state_shares"]["speak"] >= ref["state_shares"]["speak"] - 0.05


@pytest.mark.slow
def test_large_offset_speaking_clip_is_rejected(tmp_path, media_dir, model_dir, capsys):
    task, c = _run(tmp_path, media_dir, model_dir, 0.5)
    _show(capsys, f"{FACE} audio +0.5 s", c, task)
    assert not task.clips and [r["reason"] for r in task.rejects] == ["av_offset"]


@pytest.mark.slow
def test_listener_under_a_delayed_voice_is_not_rejected(tmp_path, media_dir, model_dir, capsys):
    """A still face under a voice 0.32 s late (the real-footage listener's offset, beyond the correction
    limit): listen, kept, nothing shifted."""
    task, c = _run(tmp_path, media_dir, model_dir, 0.32, still=True)
    _show(capsys, f"{FACE} still, voice +0.32 s", c, task)
    assert not task.rejects and task.clips
    assert c["clip_class"] in ("listen", "idle") and c["av_shift_s"] == 0.0
