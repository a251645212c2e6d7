"""Shot detection against PySceneDetect's expected cuts, frame/PTS bookkeeping, rotation, planning, refilter."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import ffmpeg

GOLDEN_VIDEOS = ["testvideo.mp4", "goldeneye-vfr-drop3.mp4", "counter.mp4", "fades.mp4"]
DETECTOR_GOLDEN = {"content": "ContentDetector", "adaptive": "AdaptiveDetector", "fade": "ThresholdDetector"}
# Documented misses (docs/SHOTS.md): AdaptiveDetector's 691 on testvideo lies inside the closing fade to black;
# on our decode its adaptive ratio is 2.1, under the threshold 3.0 (PySceneDetect's own decode is just above).
KNOWN_MISSES = {("testvideo.mp4", "adaptive"): {691}}


def decode_and_detect(path: Path, settings):
    from operators.decode import open_video
    from operators.shots import CutDetectors

    vid = open_video(str(path), settings.shots.decode_width_px)
    det = None
    luma = []
    with vid:
        for f in vid.frames():
            if det is None:
                det = CutDetectors(settings.shots, vid.info.fps)
            det.process(f.index, f.image)
            luma.append(float(f.image.mean()))
    return det.finish(np.asarray(luma)), vid


@pytest.fixture(scope="module")
def golden_runs(media_dir):
    """Every golden video decoded once with the three PySceneDetect detectors we use."""
    from schemas.settings import Settings

    s = Settings()
    s.shots.detectors = ["content", "adaptive", "fade"]
    out = {}
    for name in GOLDEN_VIDEOS:
        cuts, vid = decode_and_detect(media_dir / "shots" / name, s)
        import av

        with av.open(str(media_dir / "shots" / name)) as c:
            rate = float(c.streams.video[0].guessed_rate)
        out[name] = (cuts, np.asarray(vid.times), rate)
    return out


@pytest.mark.parametrize("video", GOLDEN_VIDEOS)
@pytest.mark.parametrize("detector", list(DETECTOR_GOLDEN))
def test_goldens(golden_runs, media_dir, video, detector):
    cuts, times, rate = golden_runs[video]
    golden = json.loads((media_dir / "shots" / "goldens" / f"{video}.{DETECTOR_GOLDEN[detector]}.default.json").read_text())["cuts"]
    # goldens count frames at PySceneDetect's nominal rate; map them to source frames by PTS (VFR-safe)
    expected = [int(np.argmin(np.abs(times - g / rate))) for g in golden]
    got = [c.frame for c in cuts if c.detector == detector]
    missed = [e for e in expected if not any(abs(g - e) <= 1 for g in got)]
    extra = [g for g in got if not any(abs(g - e) <= 1 for e in expected)]
    allowed = KNOWN_MISSES.get((video, detector), set())
    assert set(missed) <= allowed, f"{video} {detector}: expected {expected}, got {got}"
    assert not extra, f"{video} {detector}: expected {expected}, got {got}"


def test_vfr_times_come_from_pts(golden_runs):
    _, times, rate = golden_runs["goldeneye-vfr-drop3.mp4"]
    assert len(times) == 160  # frames actually in the file (every third frame of 24000/1001 dropped)
    steps = np.diff(times)
    assert steps.min() > 0
    assert steps.max() / steps.min() > 1.8  # variable frame intervals survive (not frame / fps)
    assert times[-1] == pytest.approx(9.93, abs=0.1)


def test_merge_and_plan():
    from operators.shots import Cut, merge_cuts, plan_shots

    cuts = merge_cuts([Cut(100, "content", 100, 100), Cut(101, "adaptive", 101, 101),
                       Cut(205, "dissolve", 195, 215), Cut(300, "fade", 290, 310)], 15)
    assert [c.frame for c in cuts] == [100, 205, 300]
    assert cuts[0].detector == "content+adaptive"
    shots = plan_shots(cuts, 400, trim_frames=2)
    assert [(s["start_frame"], s["end_frame"]) for s in shots] == [(0, 98), (103, 193), (217, 288), (312, 400)]
    assert [s["cut_in"] for s in shots] == ["start", "content+adaptive", "dissolve", "fade"]
    assert plan_shots([], 50, 2) == [{"start_frame": 0, "end_frame": 50, "cut_in": "start"}]


def test_rotated_video_frames_are_upright(media_dir, tmp_path):
    """A portrait phone-style file (display matrix rotation) decodes upright, like ffmpeg's autorotate."""
    from operators.decode import open_video

    src = media_dir / "video" / "interview_two_people.mp4"
    plain = tmp_path / "plain.mp4"
    ffmpeg("-i", str(src), "-t", "1", "-an", "-c:v", "libx264", "-preset", "veryfast", str(plain))
    rot = tmp_path / "rot.mp4"  # same stream, display matrix added (what phones write)
    ffmpeg("-i", str(plain), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rot))
    ref = tmp_path / "ref.png"
    ffmpeg("-i", str(rot), "-frames:v", "1", "-vf", "scale=144:256", str(ref))  # ffmpeg autorotates
    vid = open_video(str(rot), 144)
    with vid:
        first = next(iter(vid.frames())).image
    assert vid.info.rotation_deg in (90, 270)
    assert first.shape[0] > first.shape[1]  # portrait
    import cv2

    want = cv2.imread(str(ref))
    got = cv2.resize(first, (want.shape[1], want.shape[0]), interpolation=cv2.INTER_AREA)
    assert float(np.abs(got.astype(float) - want.astype(float)).mean()) < 12.0


def test_operator_on_cut_video_sets_frame_times(media_dir, settings):
    from operators.base import VideoTask, run_operator
    from operators.probe import ProbeOperator
    from operators.shots import ShotOperator

    uri = str(media_dir / "video" / "stage_performer_audience_music.mp4")
    task = run_operator(ProbeOperator(settings), VideoTask(uri=uri), 300)
    task = run_operator(ShotOperator(settings), task, 300)
    assert task.ok, task.rejects
    times = task.scratch["frame_times"]
    assert len(times) == 275 and times[0] == 0.0
    assert [s["cut_in"] for s in task.shots][0] == "start"
    starts = [s["start_frame"] for s in task.shots]
    for cut in (20, 82, 211):  # SOURCES.md: cuts near frames 20, 82, 211
        assert any(abs(a - cut - settings.shots.trim_frames) <= 3 for a in starts), starts
    for s in task.shots:
        assert s["start_s"] == pytest.approx(times[s["start_frame"]])
        assert s["duration_s"] == pytest.approx(s["end_s"] - s["start_s"])
        assert "sharpness" in s["quality"] and "speech_share" in s["quality"]
    dropped = [s for s in task.shots if not s["kept"]]
    assert dropped and all(s["reason"] for s in dropped)
    rej = {r["shot_index"]: r["reason"] for r in task.rejects if r["level"] == "shot"}
    assert rej == {s["shot_index"]: s["reason"] for s in dropped}
    assert rej[0] == "shot_too_short"


def test_undecodable_video_is_a_reject(tmp_path, settings):
    from operators.base import VideoTask, run_operator
    from operators.shots import ShotOperator

    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 500)
    task = VideoTask(uri=str(bad), video_id="x", video={"fps": 25.0, "frame_count": 10, "has_audio": False})
    task = run_operator(ShotOperator(settings), task, 60)
    assert task.status == "rejected"
    assert task.rejects[-1]["reason"] in ("decode_failed", "no_video_stream")


def test_refilter_redecides_without_decoding(media_dir, tmp_path, settings, monkeypatch):
    import yaml

    from pipeline.refilter import refilter
    from pipeline.runner import run
    from pipeline.store import OutputStore

    settings.stages = ["probe", "shots", "clips"]
    out = tmp_path / "run"
    run([str(media_dir / "video" / "stage_performer_audience_music.mp4"), str(media_dir / "video" / "talking_face_5.mp4")],
        str(out), settings, use_ray=False)
    store = OutputStore(str(out))
    before = store.read_table("shots").to_pylist()
    assert sum(s["kept"] for s in before) == 2

    # no decoding or model may run during refilter
    import operators.decode as dec

    monkeypatch.setattr(dec, "open_video", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded")))
    cfg = tmp_path / "strict.yaml"
    cfg.write_text(yaml.safe_dump({"quality": {"min_sharpness": 1e6}, "stages": ["probe", "shots", "clips"],
                                   "models": {"dir": settings.models.dir}}))
    from pipeline.cli import main

    assert main(["refilter", str(out), "--config", str(cfg), "--output", str(tmp_path / "strict")]) == 0
    strict = OutputStore(str(tmp_path / "strict"))
    shots = strict.read_table("shots").to_pylist()
    assert not any(s["kept"] for s in shots)
    rej = strict.read_table("rejects").to_pylist()
    assert sum(1 for r in rej if r["reason"] == "blurry") == 2
    assert strict.read_table("clips").num_rows == 0
    assert strict.read_summary()["funnel"]["shots_kept"]["count"] == 0

    # a looser config keeps the short shots as well; they have no clips yet and are reported for a rerun
    loose = Settings_with(settings, shots={"min_clip_s": 0.5, "max_clip_s": 8.0}, quality={"min_brightness": 0.0})
    summary = refilter(str(out), loose, str(tmp_path / "loose"))
    assert summary["needs_rerun"]["shots"] >= 1
    assert OutputStore(str(out)).read_table("shots").to_pylist() == before  # the source folder is untouched


def Settings_with(settings, **sections):
    data = settings.model_dump(mode="json")
    for k, v in sections.items():
        data[k].update(v)
    from schemas.settings import Settings

    return Settings.model_validate(data)
