"""Every bad input ends as a reject row with its reason; good files in the same run are processed."""
from __future__ import annotations

import os

import pytest

from media_factory import make_bad_inputs, make_good, make_odd_names
from pipeline.runner import run
from pipeline.store import OutputStore


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory, media_dir, model_dir):
    from schemas.settings import Settings

    root = tmp_path_factory.mktemp("bad")
    src = media_dir / "video" / "talking_face_1.mp4"
    inputs = root / "in"
    expected = make_bad_inputs(src, inputs)
    good = make_good(src, inputs / "good.mp4")
    odd = make_odd_names(good, inputs / "odd names")
    missing = str(root / "does_not_exist.mp4")
    s = Settings()
    s.models.dir = str(model_dir)
    s.run.num_cpus = 2
    out = root / "out"
    summary = run([str(inputs), missing], str(out), s, use_ray=True)
    return {"root": root, "out": out, "expected": expected, "good": [good, *odd], "missing": missing,
            "summary": summary, "store": OutputStore(str(out))}


def test_each_bad_input_has_its_reject_reason(bad_run):
    rejects = bad_run["store"].read_table("rejects").to_pylist()
    by_file = {}
    for r in rejects:
        if r["level"] == "video":
            by_file[os.path.basename(r["uri"])] = r
    for name, reason in bad_run["expected"].items():
        assert name in by_file, f"{name} has no video-level reject row"
        assert by_file[name]["reason"] == reason, f"{name}: {by_file[name]['reason']} ({by_file[name]['message']})"
        assert by_file[name]["stage"] == "probe"
        assert by_file[name]["message"], name
    assert by_file[os.path.basename(bad_run["missing"])]["reason"] == "not_found"


def test_good_files_in_the_same_run_are_processed(bad_run):
    videos = {v["uri"]: v for v in bad_run["store"].read_table("videos").to_pylist()}
    for g in bad_run["good"]:
        v = videos[str(g)]
        assert v["status"] == "ok", (g, v["reason"])
        assert v["n_shots"] >= 1
    # every input has exactly one videos row: nothing silently dropped
    assert len(videos) == bad_run["summary"]["inputs"] == len(bad_run["expected"]) + len(bad_run["good"]) + 1


def test_odd_names_are_not_interpreted_by_a_shell(bad_run):
    assert not (bad_run["root"] / "in" / "odd names" / "pwned").exists()
    assert not os.path.exists("pwned")


def test_rejected_videos_have_no_clips(bad_run):
    store = bad_run["store"]
    rejected = {v["video_id"] for v in store.read_table("videos").to_pylist() if v["status"] == "rejected"}
    clip_videos = set(store.read_table("clips", ["video_id"]).column("video_id").to_pylist())
    assert rejected and not (rejected & clip_videos)


def test_stats_command_reports_the_funnel_of_the_run(bad_run, capsys):
    import json

    from pipeline.cli import main

    assert main(["stats", str(bad_run["out"]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    store = bad_run["store"]
    f = data["funnel"]
    assert f["input"]["videos"] == store.read_table("videos").num_rows
    assert f["clips"]["count"] == store.read_table("clips").num_rows
    assert f["rejects_total"] == store.read_table("rejects").num_rows
    probe = next(s for s in f["rejected"] if s["stage"] == "probe")
    assert probe["count"] == sum(1 for r in store.read_table("rejects").to_pylist() if r["stage"] == "probe")
    assert main(["stats", str(bad_run["out"])]) == 0
    text = capsys.readouterr().out
    assert "FUNNEL" in text and "video:empty_file" in text


def test_every_reject_reason_is_documented(bad_run):
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "docs" / "REJECTS.md").read_text()
    reasons = {r["reason"] for r in bad_run["store"].read_table("rejects", ["reason"]).to_pylist()}
    assert reasons
    missing = sorted(r for r in reasons if f"`{r}`" not in doc)
    assert not missing, f"reasons not documented in docs/REJECTS.md: {missing}"
