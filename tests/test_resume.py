"""Resume after kill -9, skipping finished videos, and determinism of the tables."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.store import OutputStore

REPO = Path(__file__).resolve().parent.parent
# short re-encodes of real clips (name, source, start_s): one person, one person, two people side by side
VIDEOS = [("a.mp4", "talking_face_1.mp4", 0.0), ("b.mp4", "talking_face_2.mp4", 0.0),
          ("c.mp4", "interview_two_people.mp4", 2.0)]
# columns that may legitimately differ between runs: none in the tables (run id and timings live in summary.json)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *args]


def _env(model_dir) -> dict:
    env = dict(os.environ)
    env.update(RAY_USAGE_STATS_ENABLED="0", LPM_MODEL_DIR=str(model_dir), PYTHONPATH=str(REPO))
    return env


def _assert_same(got: dict, want: dict) -> None:
    for name in want:
        assert len(got[name]) == len(want[name]), name
        for g, w in zip(got[name], want[name]):
            diff = sorted(k for k in w if g.get(k) != w.get(k))
            assert not diff, f"{name}: columns differ {diff}: {[(k, g.get(k), w.get(k)) for k in diff][:3]}"


def _tables(out: Path) -> dict[str, list]:
    store = OutputStore(str(out))
    res = {}
    for name in ("videos", "shots", "clips", "rejects"):
        rows = store.read_table(name).to_pylist()
        res[name] = sorted(rows, key=lambda r: repr(sorted((k, repr(v)) for k, v in r.items())))
    return res


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, media_dir):
    from media_factory import make_good

    d = tmp_path_factory.mktemp("resume_in")
    for name, src, start in VIDEOS:
        make_good(media_dir / "video" / src, d / name, seconds=4.5, start_s=start)
    return d


@pytest.fixture(scope="module")
def reference(tmp_path_factory, inputs, model_dir):
    out = tmp_path_factory.mktemp("ref") / "out"
    subprocess.run(_cli("run", "--input", str(inputs), "--output", str(out), "--num-cpus", "2"),
                   check=True, env=_env(model_dir), cwd=REPO, capture_output=True, timeout=900)
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_s", [5.0, 10.0, 16.0])
def test_kill_9_then_rerun_gives_the_same_tables(tmp_path, inputs, reference, model_dir, kill_after_s):
    out = tmp_path / "out"
    proc = subprocess.Popen(_cli("run", "--input", str(inputs), "--output", str(out), "--num-cpus", "2"),
                            env=_env(model_dir), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    time.sleep(kill_after_s)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    time.sleep(1.0)
    subprocess.run(_cli("run", "--input", str(inputs), "--output", str(out), "--num-cpus", "2"),
                   check=True, env=_env(model_dir), cwd=REPO, capture_output=True, timeout=900)
    got, want = _tables(out), _tables(reference)
    _assert_same(got, want)
    clip_ids = [c["clip_id"] for c in got["clips"]]
    assert len(clip_ids) == len(set(clip_ids))
    leftovers = [p for p in out.rglob(".tmp-*")]
    assert not leftovers


def test_rerun_skips_finished_videos(tmp_path, inputs, model_dir):
    from schemas.settings import Settings
    from pipeline.runner import run

    s = Settings()
    s.models.dir = str(model_dir)
    out = tmp_path / "out"
    a, b = str(inputs / VIDEOS[0][0]), str(inputs / VIDEOS[1][0])
    s.stages = ["probe", "shots", "clips"]  # resume bookkeeping does not depend on the later stages
    first = run([a], str(out), s, use_ray=False)
    assert first["processed"] == 1
    marker = out / "_state"
    mtimes = {p.name: p.stat().st_mtime_ns for p in marker.iterdir()}
    second = run([a, b], str(out), s, use_ray=False)
    assert second["skipped_already_done"] == 1 and second["processed"] == 1
    for name, mt in mtimes.items():
        assert (marker / name).stat().st_mtime_ns == mt, "a finished video was processed again"
    # a different config is not 'finished': the video is processed again
    s.shots.min_clip_s = 3.5
    third = run([a], str(out), s, use_ray=False)
    assert third["processed"] == 1


@pytest.mark.slow
def test_same_inputs_same_tables_ray_and_in_process(tmp_path, inputs, reference, model_dir):
    """Determinism: an in-process run gives byte-for-byte the same rows as the Ray run."""
    out = tmp_path / "out"
    subprocess.run(_cli("run", "--input", str(inputs), "--output", str(out), "--no-ray"),
                   check=True, env=_env(model_dir), cwd=REPO, capture_output=True, timeout=900)
    got, want = _tables(out), _tables(reference)
    _assert_same(got, want)
