"""Conversation stage on composites with known truth and on real media (issue 5, must-show 2).

Composites are built at test time from HELD-OUT people only (see tests/test_asd_media.py): the
thresholds were tuned on talking_face_1/2 and talking_hdtf_aoc.
"""
from __future__ import annotations

import numpy as np
import pytest

import test_asd_media as tm
from operators.base import Deadline

_OP = {}


def operator(model_dir, **overrides):
    from operators.asd import ConversationOperator
    from schemas.settings import Settings

    key = tuple(sorted(overrides.items()))
    if key not in _OP:
        s = Settings()
        s.models.dir = str(model_dir)
        for k, v in overrides.items():
            setattr(s.conversation, k, v)
        op = ConversationOperator(s)
        op.setup()
        _OP[key] = op
    return _OP[key]


def run(op, comp):
    task = tm.make_task(comp)
    return op.process(task, Deadline(None))


def show(capsys, name, res):
    with capsys.disabled():
        print(f"\n[conversation] {name}: " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in res.items()))


def test_turns_speak_listen_idle(tmp_path, media_dir, model_dir, capsys):
    """Two real talking faces side by side, one person's own voice at a time (the other still), then
    silence: speak-vs-not accuracy >= 0.90, listen recall >= 0.85, idle during silence >= 0.90."""
    a = tm.load_face(media_dir, model_dir, "talking_face_3")
    b = tm.load_face(media_dir, model_dir, "talking_face_4")
    comp = tm.turns(tmp_path, model_dir, a, b, turn_s=4.0, silence_s=2.0)
    task = run(operator(model_dir), comp)
    assert len(task.clips) == 2 and not task.rejects
    res = tm.scores(comp, task)
    show(capsys, "turns face_3|face_4", res)
    assert res["speak_acc"] >= 0.90
    assert res["listen_recall"] >= 0.85
    assert res["idle_share"] >= 0.90
    for c in task.clips:  # the row contract
        n = len(c["frame_states"])
        assert len(c["speak_scores"]) == len(c["speech_prob"]) == len(c["mouth_open"]) == n
        assert set(c["frame_states"]) <= {"speak", "listen", "idle", "discard"}
        assert c["clip_class"] in {"speak", "listen", "idle", "mixed"}
        assert abs(sum(c["state_shares"].values()) - 1) < 1e-6
        assert c["segments"][0]["start_s"] == c["start_s"] and abs(c["segments"][-1]["end_s"] - c["end_s"]) < 0.05
    assert "conversation" in task.provenance and task.provenance["conversation"]["weights_sha256"]


@pytest.mark.slow
def test_intercut_quiet_face_listens_to_offscreen_voice(tmp_path, media_dir, model_dir, capsys):
    a = tm.load_face(media_dir, model_dir, "talking_hdtf_hill")
    c = tm.load_face(media_dir, model_dir, "talking_face_5")
    comp = tm.intercut(tmp_path, model_dir, a, c, first_s=3.0)
    task = run(operator(model_dir), comp)
    res = tm.scores(comp, task)
    show(capsys, "intercut hill -> quiet face_5", res)
    assert res["speak_acc"] >= 0.90 and res["listen_recall"] >= 0.85


def _whole_frame_clips(path, video_id, model_dir, boxes_every=5, halves=False, seconds=None):
    """Clip rows over a real video: the whole frame (or its left/right halves) at 25 fps."""
    from operators.clipmedia import read_clip_frames
    from operators.media import ffprobe

    info = ffprobe(str(path), 60, count_frames=False)
    w, h = int(info.video["width"]), int(info.video["height"])
    dur = min(float(info.duration_s), seconds or 1e9)
    parts = [[0, 0, w // 2, h], [w // 2, 0, w, h]] if halves else [[0, 0, w, h]]
    clips = []
    for track, crop in enumerate(parts):
        cw = 384
        ch = int(round(cw * (crop[3] - crop[1]) / (crop[2] - crop[0]) / 2) * 2)
        from operators.clipmedia import encode_crop

        data = encode_crop(str(path), 0.0, dur, crop, cw, ch, 25.0, 120.0)
        row = {"clip_id": f"{video_id}-{track}", "video_id": video_id, "shot_index": 0, "track_id": track,
               "start_frame": 0, "end_frame": int(dur * 25), "start_s": 0.0, "end_s": dur, "duration_s": dur,
               "fps": 25.0, "crop_box": [float(v) for v in crop], "frame_boxes": None, "video_bytes": data,
               "clip_width": cw, "clip_height": ch, "clip_fps": 25.0}
        if halves:  # detector-like boxes from landmarks on the clip, mapped back to source pixels
            fr = read_clip_frames(row)
            b = tm.face_boxes(fr, model_dir, boxes_every)
            s = (crop[2] - crop[0]) / cw
            row["frame_boxes"] = [[float(v) for v in (bb * s + np.array([crop[0], crop[1], crop[0], crop[1]]))] for bb in b]
        clips.append(row)
    comp = tm.Composite(str(path), dur, clips, {}, [{"shot_index": 0, "start_s": 0.0, "end_s": dur, "kept": True}])
    return comp


@pytest.mark.slow
def test_interview_both_people_get_turns(media_dir, model_dir, capsys):
    comp = _whole_frame_clips(media_dir / "video" / "interview_two_people.mp4", "interview", model_dir, halves=True)
    task = run(operator(model_dir), comp)
    shares = [c["state_shares"]["speak"] for c in sorted(task.clips, key=lambda c: c["track_id"])]
    turns = [sum(1 for s in c["segments"] if s["state"] == "speak") for c in task.clips]
    show(capsys, "interview_two_people", {"speak_share_left": shares[0], "speak_share_right": shares[1],
                                          "speak_runs": str(turns)})
    assert all(s >= 0.10 for s in shares) and all(t >= 1 for t in turns)
    both = np.mean([(a == "speak") and (b == "speak") for a, b in zip(task.clips[0]["frame_states"], task.clips[1]["frame_states"])])
    assert both <= 0.10  # one voice at a time


@pytest.mark.slow
@pytest.mark.parametrize("name", ["crowd_no_speech_1080p", "silent_film_music"])
def test_no_speech_videos_have_almost_no_speak(media_dir, model_dir, capsys, name):
    comp = _whole_frame_clips(media_dir / "video" / f"{name}.mp4", name, model_dir, seconds=8.0)
    task = run(operator(model_dir), comp)
    frames = [s for c in task.clips for s in c["frame_states"]]
    share = sum(s == "speak" for s in frames) / max(1, len(frames))
    show(capsys, name, {"speak_share": share, "frames": len(frames)})
    assert frames and share <= 0.02


def test_missing_weights_reject_video_and_clips_without_media_are_left(tmp_path):
    from operators.asd import ConversationOperator
    from operators.base import VideoTask, run_operator
    from schemas.settings import Settings

    s = Settings()
    s.models.dir = str(tmp_path)  # empty: no LR-ASD weights
    op = ConversationOperator(s)
    plain = VideoTask(uri="x.mp4", video_id="v")
    plain.clips = [{"clip_id": "c", "shot_index": 0, "track_id": -1, "start_s": 0.0, "end_s": 3.0}]
    assert run_operator(op, plain, 60).ok and "frame_states" not in plain.clips[0]
    task = VideoTask(uri="x.mp4", video_id="v")
    task.clips = [{"clip_id": "c", "shot_index": 0, "track_id": 0, "start_s": 0.0, "end_s": 3.0, "video_bytes": b"\0" * 10}]
    task = run_operator(op, task, 60)
    assert task.status == "rejected" and task.rejects[-1]["reason"] == "model_missing"
    assert "lr-asd" in task.rejects[-1]["message"]


def test_unreadable_clip_media_is_dropped_with_reason(model_dir):
    from operators.base import VideoTask

    op = operator(model_dir)
    task = VideoTask(uri="x.mp4", video_id="v")
    task.shots = [{"shot_index": 0, "start_s": 0.0, "end_s": 3.0, "kept": True}]
    task.clips = [{"clip_id": "bad", "shot_index": 0, "track_id": 0, "start_s": 0.0, "end_s": 3.0, "duration_s": 3.0,
                   "video_bytes": b"not an mp4" * 50, "clip_width": 64, "clip_height": 64, "clip_fps": 25.0}]
    task = op.process(task, Deadline(60))
    assert task.ok and not task.clips
    assert task.rejects[-1]["level"] == "clip" and task.rejects[-1]["reason"] == "video_decode_error"
