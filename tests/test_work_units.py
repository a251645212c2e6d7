"""Work units (issue 19): a video is split into one unit per kept shot and joined again.

* split/merge on hand-made tasks: clips and rejects come back in shot order, a failed shot unit drops only
  its shot (a rejects row at level 'shot'), a missing model rejects the video;
* on real footage (three shots cut from two real talking-face videos, the first person twice): the run
  by units gives the same clips, labels, identities and references as the stages run on the whole video.
"""
from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from conftest import ffmpeg
from operators.base import VideoTask, run_operator
from operators.units import HEAD, TimesWindow, merge_units, split_shots


def _task(n_shots: int = 3) -> VideoTask:
    t = VideoTask(uri="/x/v.mp4", video_id="vid")
    t.video = {"video_id": "vid", "uri": "/x/v.mp4", "fps": 25.0, "duration_s": 12.0, "warnings": []}
    t.shots = [{"shot_index": i, "start_frame": 100 * i, "end_frame": 100 * i + 90, "start_s": 4.0 * i,
                "end_s": 4.0 * i + 3.6, "kept": i != 1} for i in range(n_shots)]
    t.shots.append({"shot_index": n_shots, "start_frame": 100 * n_shots, "end_frame": 100 * n_shots + 20,
                    "start_s": 4.0 * n_shots, "end_s": 4.0 * n_shots + 0.8, "kept": False, "reason": "too_short"})
    t.rejects = [{"stage": "shots", "level": "shot", "reason": "too_short", "shot_index": n_shots}]
    t.scratch = {"frame_times": [k / 25.0 for k in range(100 * n_shots + 20)], "work_dir": "/tmp/nowhere"}
    return t


def test_split_gives_a_head_and_one_small_unit_per_kept_shot():
    task = _task()
    units = split_shots(task)
    assert [u.unit_index for u in units] == [HEAD, 0, 2] and all(u.n_units == 3 for u in units)
    head, u0, u2 = units
    assert len(head.shots) == 4 and head.scratch.get("work_dir") == "/tmp/nowhere"
    assert [s["shot_index"] for s in u2.shots] == [2] and "work_dir" not in u2.scratch
    ft = u2.scratch["frame_times"]
    assert isinstance(ft, TimesWindow) and len(ft) == 320 and ft[200] == 8.0 and ft[290] == pytest.approx(11.6)
    assert ft[10] == pytest.approx(0.4)  # outside the window: extrapolated at the nominal rate
    assert len(pickle.dumps(ft)) < 2000 < len(pickle.dumps(task.scratch["frame_times"]))
    assert pickle.loads(pickle.dumps(ft))[250] == pytest.approx(10.0)
    u2.video["fps"] = 99  # units hold copies: changing one does not change the head
    assert head.video["fps"] == 25.0


def test_merge_joins_clips_and_rejects_and_drops_only_the_failed_shot():
    head, u0, u2 = split_shots(_task())
    u0.clips = [{"clip_id": "a", "shot_index": 0}]
    u0.add_reject("people", "track", "track_too_short", shot_index=0, track_id=3)
    u0.warn("timestamps", "odd")
    u0.timings_s = {"people": 2.0}
    u0.scratch["faces"] = {"a": {"n": 1}}
    u0.scratch["audio_counts"] = {"clips": 1}
    u2.clips = [{"clip_id": "b", "shot_index": 2}]
    u2.reject("conversation", "timeout", "time budget of 900 s exceeded")
    merged = merge_units([u2, head, u0, copy.deepcopy(u0)])  # any order; a duplicate (retried unit) is ignored
    assert merged.ok and merged.unit_index is None
    assert [c["clip_id"] for c in merged.clips] == ["a"]
    shot2 = next(s for s in merged.shots if s["shot_index"] == 2)
    assert shot2["kept"] is False and shot2["reason"] == "timeout"
    levels = [(r["level"], r["reason"]) for r in merged.rejects]
    assert levels == [("shot", "too_short"), ("track", "track_too_short"), ("shot", "timeout")]
    assert "timestamps: odd" in merged.video["warnings"] and merged.video.get("status") != "rejected"
    assert merged.scratch["faces"] == {"a": {"n": 1}} and merged.timings_s["people"] == 2.0
    assert merged.scratch["audio_counts"] == {"clips": 1}


def test_a_missing_model_in_a_shot_unit_rejects_the_video():
    head, u0, u2 = split_shots(_task())
    u0.reject("people", "model_missing", "scrfd not found")
    u2.clips = [{"clip_id": "b", "shot_index": 2}]
    merged = merge_units([head, u0, u2])
    assert merged.status == "rejected" and merged.video["reason"] == "model_missing" and not merged.clips


def test_a_rejected_or_shotless_video_is_one_unit():
    t = _task()
    t.reject("probe", "no_audio")
    units = split_shots(t)
    assert len(units) == 1 and units[0].n_units == 1
    assert merge_units(units) is t


# ------------------------------------------------------------------------------------------- real footage
@pytest.fixture(scope="module")
def three_shots(tmp_path_factory, media_dir):
    """Person A (talking_face_1), person B (talking_face_2), person A again: 3 x 4.2 s, hard cuts."""
    d = tmp_path_factory.mktemp("units")
    parts = []
    for i, (name, ss) in enumerate([("talking_face_1.mp4", 0.0), ("talking_face_2.mp4", 0.0), ("talking_face_1.mp4", 0.5)]):
        p = d / f"p{i}.mp4"
        ffmpeg("-ss", str(ss), "-i", str(media_dir / "video" / name), "-t", "4.2", "-vf", "scale=360:360,setsar=1,fps=25",
               "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", "-ar", "16000", "-ac", "1", str(p))
        parts.append(p)
    out = d / "three_shots.mp4"
    inputs = sum([["-i", str(p)] for p in parts], [])
    ffmpeg(*inputs, "-filter_complex", "[0:v][0:a][1:v][1:a][2:v][2:a]concat=n=3:v=1:a=1[v][a]", "-map", "[v]",
           "-map", "[a]", "-c:v", "libx264", "-preset", "veryfast", "-c:a", "aac", str(out))
    return out


def test_units_give_the_same_clips_as_the_whole_video(three_shots, settings, tmp_path):
    from pipeline.runner import process_uri
    from pipeline.stages import build_operators

    settings.run.work_dir = str(tmp_path / "work")
    ops = build_operators(settings)
    by_units = process_uri(str(three_shots), ops, settings)
    whole = VideoTask(uri=str(three_shots))
    for op in ops:
        whole = run_operator(op, whole, settings.run.item_timeout_s)
    assert by_units.ok and whole.ok
    assert [s["kept"] for s in by_units.shots] == [s["kept"] for s in whole.shots]
    assert sum(s["kept"] for s in by_units.shots) == 3, [(r["reason"], r.get("message")) for r in by_units.rejects]
    a = {c["clip_id"]: c for c in by_units.clips}
    b = {c["clip_id"]: c for c in whole.clips}
    assert a.keys() == b.keys() and len(a) >= 3
    for cid in a:
        for col in ("frame_states", "clip_class", "identity_id", "transcript", "start_s", "end_s", "crop_box"):
            assert a[cid].get(col) == b[cid].get(col), (cid, col)
        np.testing.assert_allclose(np.array(a[cid]["speak_scores"], float), np.array(b[cid]["speak_scores"], float),
                                   atol=1e-4, equal_nan=True)
        assert len(a[cid].get("references") or []) == len(b[cid].get("references") or [])
    # identities across shots: person A in shots 0 and 2 is one identity, person B another
    ident = {c["shot_index"]: c["identity_id"] for c in by_units.clips}
    assert ident[0] == ident[2] != ident[1]
    assert sorted(r["reason"] for r in by_units.rejects) == sorted(r["reason"] for r in whole.rejects)
