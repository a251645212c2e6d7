"""Faults (issue 19): a worker killed mid-unit, a failing shot, a second run on the same output.

The kill is real: the fault-injection hook of pipeline/runner.py (LPM_FAULT_KILL) sends SIGKILL to the Ray
worker process before it works on the named unit, as the kernel's OOM killer would.
"""
from __future__ import annotations

import pyarrow.compute as pc
import pytest

from media_factory import make_good

STAGES = ["probe", "shots", "clips"]  # no models: the shot-scope clip planner is enough to kill a shot unit


@pytest.fixture(scope="module")
def two_videos(tmp_path_factory, media_dir):
    d = tmp_path_factory.mktemp("faults")
    return [make_good(media_dir / "video" / "talking_face_1.mp4", d / "a_face1.mp4", seconds=4.0),
            make_good(media_dir / "video" / "talking_face_2.mp4", d / "b_face2.mp4", seconds=4.0)]


def _run(videos, out, settings, monkeypatch, times: int, tmp_path):
    from pipeline.runner import run
    from pipeline.store import OutputStore

    counter = tmp_path / f"kills-{times}"
    monkeypatch.setenv("LPM_FAULT_KILL", "b_face2.mp4:0")
    monkeypatch.setenv("LPM_FAULT_KILL_TIMES", str(times))
    monkeypatch.setenv("LPM_FAULT_COUNT", str(counter))
    settings.stages = STAGES
    settings.run.max_retries = 1
    summary = run([str(v) for v in videos], str(out), settings)
    return summary, OutputStore(str(out)), int(counter.read_text() or 0)


@pytest.mark.slow
def test_a_worker_killed_once_is_retried_and_the_video_completes(two_videos, settings, monkeypatch, tmp_path):
    summary, store, kills = _run(two_videos, tmp_path / "out", settings, monkeypatch, times=1, tmp_path=tmp_path)
    assert kills == 1
    videos = store.read_table("videos").to_pylist()
    assert sorted(v["status"] for v in videos) == ["ok", "ok"], videos
    clips = store.read_table("clips")
    assert pc.sum(pc.equal(clips["video_id"], next(v["video_id"] for v in videos if "b_face2" in v["uri"]))).as_py() >= 1
    assert summary["lost_videos"] == 0


@pytest.mark.slow
def test_a_unit_that_kills_every_worker_is_rejected_as_worker_lost(two_videos, settings, monkeypatch, tmp_path):
    summary, store, kills = _run(two_videos, tmp_path / "out", settings, monkeypatch, times=99, tmp_path=tmp_path)
    assert kills == 2, "one try plus run.max_retries=1 retry, then no more"
    videos = {v["uri"].rsplit("/", 1)[-1]: v for v in store.read_table("videos").to_pylist()}
    assert videos["a_face1.mp4"]["status"] == "ok" and videos["a_face1.mp4"]["n_clips"] >= 1
    assert videos["b_face2.mp4"]["status"] == "rejected" and videos["b_face2.mp4"]["reason"] == "worker_lost"
    rej = [r for r in store.read_table("rejects").to_pylist() if r["reason"] == "worker_lost"]
    assert len(rej) == 1 and rej[0]["level"] == "video" and "max_retries" in rej[0]["message"]
    assert summary["lost_videos"] == 1 and summary["rejected_videos"] == 1


def test_a_failing_shot_becomes_a_shot_reject_and_the_video_goes_on(settings, tmp_path, media_dir, monkeypatch):
    """Three shots; the clip planner raises on the middle one: only that shot is dropped (internal_error)."""
    from conftest import ffmpeg
    from operators.clips import ClipPlanOperator
    from pipeline.runner import process_uri
    from pipeline.stages import build_operators

    parts = []
    for i, name in enumerate(["talking_face_1.mp4", "talking_face_2.mp4", "talking_face_3.mp4"]):
        p = tmp_path / f"p{i}.mp4"
        ffmpeg("-i", str(media_dir / "video" / name), "-t", "4.2", "-vf", "scale=320:320,setsar=1,fps=25", "-c:v", "libx264",
               "-preset", "veryfast", "-c:a", "aac", "-ar", "16000", "-ac", "1", str(p))
        parts.append(p)
    video = tmp_path / "three.mp4"
    ffmpeg(*sum([["-i", str(p)] for p in parts], []), "-filter_complex",
           "[0:v][0:a][1:v][1:a][2:v][2:a]concat=n=3:v=1:a=1[v][a]", "-map", "[v]", "-map", "[a]", "-c:v", "libx264",
           "-preset", "veryfast", "-c:a", "aac", str(video))
    real = ClipPlanOperator.process

    def flaky(self, task, deadline):
        if any(s["shot_index"] == 1 for s in task.kept_shots()) and task.unit_index is not None:
            raise RuntimeError("boom in shot 1")
        return real(self, task, deadline)

    monkeypatch.setattr(ClipPlanOperator, "process", flaky)
    settings.stages = STAGES
    settings.run.work_dir = str(tmp_path / "work")
    task = process_uri(str(video), build_operators(settings), settings)
    assert task.ok
    kept = {s["shot_index"]: s["kept"] for s in task.shots}
    assert kept == {0: True, 1: False, 2: True}, task.rejects
    row = next(r for r in task.rejects if r["reason"] == "internal_error")
    assert row["level"] == "shot" and row["shot_index"] == 1 and row["stage"] == "clips" and "boom in shot 1" in row["message"]
    assert sorted({c["shot_index"] for c in task.clips}) == [0, 2]
