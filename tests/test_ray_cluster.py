"""A real local Ray cluster (`ray start --head`), the job submitted with `ray job submit`, tables checked."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pipeline.store import OutputStore

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_cluster(temp: str, port: int) -> None:
    """Stop only this cluster (`ray stop` would also stop any other Ray on the machine): every process whose
    command line names this cluster's temp dir or GCS port."""
    import psutil

    mine = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info.get("cmdline") or [])
        if p.pid != os.getpid() and (temp in cmd or f":{port}" in cmd):
            mine.append(p)
    for p in mine:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(mine, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass


@pytest.mark.slow
def test_job_submitted_to_a_real_local_cluster(tmp_path, media_dir, model_dir):
    ray = str(BIN / "ray")
    temp = tempfile.mkdtemp(prefix="rayt-", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    port, dash = _free_port(), _free_port()
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token", LPM_MODEL_DIR=str(model_dir))
    inputs = tmp_path / "in"
    inputs.mkdir()
    for v in ("talking_face_2.mp4", "interview_two_people.mp4"):
        shutil.copyfile(media_dir / "video" / v, inputs / v)
    (inputs / "zero.mp4").write_bytes(b"")
    out = tmp_path / "out"
    subprocess.run([ray, "start", "--head", f"--port={port}", f"--dashboard-port={dash}", "--dashboard-host=127.0.0.1",
                    "--num-cpus=2", f"--temp-dir={temp}", "--disable-usage-stats"],
                   check=True, env=env, timeout=180, capture_output=True)
    try:
        runtime_env = json.dumps({"excludes": [".venv", ".git", "artifacts", "out", "*.parquet"],
                                  "env_vars": {"LPM_MODEL_DIR": str(model_dir), "YOLO_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}})
        proc = subprocess.run(
            [ray, "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", str(REPO),
             "--runtime-env-json", runtime_env, "--",
             sys.executable, "-m", "jobs.curate", "--input", str(inputs), "--output", str(out),
             "--config", "jobs/configs/laptop.yaml"],
            env=env, timeout=900, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "succeeded" in (proc.stdout + proc.stderr).lower()
    finally:
        _stop_cluster(temp, port)
        shutil.rmtree(temp, ignore_errors=True)
    store = OutputStore(str(out))
    videos = {Path(v["uri"]).name: v for v in store.read_table("videos").to_pylist()}
    assert set(videos) == {"talking_face_2.mp4", "interview_two_people.mp4", "zero.mp4"}
    assert videos["zero.mp4"]["status"] == "rejected" and videos["zero.mp4"]["reason"] == "empty_file"
    assert videos["talking_face_2.mp4"]["status"] == "ok"
    assert store.read_table("shots").num_rows >= 2
    assert store.read_table("clips").num_rows >= 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["executor"] == "ray" and summary["ray_address"] == "auto"
