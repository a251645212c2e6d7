"""Output folder faults (issue 19, item 4): two runs on one folder, a disk that fills up while writing.

The lock is exercised across real processes (a holder that sleeps, a holder killed with SIGKILL, several
processes racing for the same folder); the full disk is a real write failure: a child process whose file
size limit (RLIMIT_FSIZE) is below the size of the clips part, so the kernel refuses the write (EFBIG),
as it refuses one on a full disk (ENOSPC).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline.store import LOCK_NAME, OutputLockedError, OutputStore

REPO = Path(__file__).resolve().parent.parent


def _py(code: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _holder(out: Path) -> subprocess.Popen:
    p = _py(f"""
        import sys, time
        from pipeline.store import OutputStore
        with OutputStore({str(out)!r}).lock("holder-run"):
            print("locked", flush=True)
            time.sleep(120)
    """)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "locked", p.stderr.read() if p.stderr else ""
    return p


def test_second_run_on_a_locked_folder_is_refused_with_who_holds_it(tmp_path):
    out = tmp_path / "out"
    holder = _holder(out)
    try:
        held = json.loads((out / LOCK_NAME).read_text())
        assert held["pid"] == holder.pid and held["run_id"] == "holder-run"
        with pytest.raises(OutputLockedError) as err:
            with OutputStore(str(out)).lock("second"):
                pass
        msg = str(err.value)
        assert "holder-run" in msg and str(holder.pid) in msg and LOCK_NAME in msg
        # the CLI says so and exits non-zero, without touching the folder
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        media = tmp_path / "in"
        media.mkdir()
        r = subprocess.run([sys.executable, "-m", "pipeline.cli", "run", "--input", str(media), "--output", str(out),
                            "--no-ray", "-q"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 3, r.stderr
        assert "is being written by run holder-run" in r.stderr
        assert not (out / "summary.json").exists()
        assert json.loads((out / LOCK_NAME).read_text())["run_id"] == "holder-run"
    finally:
        holder.kill()
        holder.wait()


def test_lock_of_a_killed_run_is_taken_over_and_released_after(tmp_path):
    out = tmp_path / "out"
    holder = _holder(out)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (out / LOCK_NAME).exists()  # SIGKILL: no cleanup ran
    store = OutputStore(str(out))
    with store.lock("next") as me:
        assert json.loads((out / LOCK_NAME).read_text())["run_id"] == "next" == me["run_id"]
    assert not (out / LOCK_NAME).exists()
    # a lock file is not a finished video
    store.ensure_layout()
    (out / "_state" / "_lock.json").write_text("{}")
    assert store.finished_ids() == set()


def test_processes_racing_for_one_folder_one_wins(tmp_path):
    out = tmp_path / "out"
    code = f"""
        import time
        from pipeline.store import OutputStore, OutputLockedError
        start = {time.time() + 3.0!r}
        while time.time() < start:
            time.sleep(0.001)
        try:
            with OutputStore({str(out)!r}).lock("racer"):
                print("won", flush=True)
                time.sleep(2.0)
        except OutputLockedError:
            print("refused", flush=True)
    """
    procs = [_py(code) for _ in range(4)]
    outs = [p.communicate(timeout=60)[0].strip() for p in procs]
    assert sorted(outs) == ["refused"] * 3 + ["won"], outs


def _rows(vid: str, clip_bytes: int) -> dict:
    clip = {"clip_id": f"{vid}-s000-p00", "video_id": vid, "shot_index": 0, "track_id": 0, "start_frame": 0, "end_frame": 75, "start_s": 0.0,
            "end_s": 3.0, "duration_s": 3.0, "fps": 25.0, "video_bytes": os.urandom(clip_bytes)}
    return {"videos": [{"video_id": vid, "uri": f"/in/{vid}.mp4", "status": "ok"}], "clips": [clip]}


def test_full_disk_while_writing_leaves_no_visible_half_written_part(tmp_path):
    out = tmp_path / "out"
    store = OutputStore(str(out))
    store.ensure_layout()
    store.write_video("vfull", "h", _rows("vfull", 1000), "ok")  # finished once, small
    store.write_video("vother", "h", _rows("vother", 1000), "ok")
    before = store.read_table("clips").num_rows
    assert before == 2
    # rewrite vfull with a 2 MB clip in a process that may not write files over 256 KiB
    code = f"""
        import os, resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
        sys.path.insert(0, {str(REPO / "tests")!r})
        from test_store_faults import _rows
        from pipeline.store import OutputStore, StoreWriteError
        try:
            OutputStore({str(out)!r}).write_video("vfull", "h", _rows("vfull", 2_000_000), "ok")
        except StoreWriteError as exc:
            print("StoreWriteError", exc)
            sys.exit(0)
        sys.exit("write did not fail")
    """
    p = _py(code)
    o, e = p.communicate(timeout=120)
    assert p.returncode == 0, o + e
    assert "StoreWriteError" in o and "clips" in o
    leftovers = [f for f in out.rglob("*") if f.name.startswith(".tmp-")]
    assert leftovers == []
    # the half-rewritten video is no longer finished: readers see only the other one, whole
    assert store.finished_ids() == {"vother"}
    clips = store.read_table("clips").to_pylist()
    assert [c["video_id"] for c in clips] == ["vother"]
    assert not store.is_done("vfull", "h")
    # with room again, the next write makes it whole
    store.write_video("vfull", "h", _rows("vfull", 2_000_000), "ok")
    assert store.finished_ids() == {"vother", "vfull"}
    assert store.read_table("clips").num_rows == 2


def test_writer_failure_is_recorded_and_the_run_goes_on(tmp_path, monkeypatch):
    """A write error for one video (disk full) does not stop the run: receipt write_failed, others written."""
    from operators.base import VideoTask
    from pipeline import runner
    from pipeline.store import StoreWriteError

    store = OutputStore(str(tmp_path / "out"))
    store.ensure_layout()
    real = OutputStore.write_video

    def flaky(self, video_id, *a, **kw):
        if video_id == "vbad":
            raise StoreWriteError("could not write clips/part-vbad.parquet: [Errno 28] No space left on device")
        return real(self, video_id, *a, **kw)

    monkeypatch.setattr(OutputStore, "write_video", flaky)
    got = []
    for vid in ("vbad", "vgood"):
        t = VideoTask(uri=f"/in/{vid}.mp4", video_id=vid)
        t.video = {"video_id": vid, "uri": t.uri, "status": "ok"}
        got.append(runner.write_task(store, t, "h"))
    assert got[0]["status"] == "write_failed" and "No space left" in got[0]["error"]
    assert got[1]["status"] == "ok"
    assert store.finished_ids() == {"vgood"}
