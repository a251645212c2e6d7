"""Timestamps: ffmpeg's verdict, not its warnings, decides; broken timelines are regenerated with audio
kept in sync across the parts of a concatenation (clap/flash video built by construction)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import ffmpeg

FPS = 25
PART_S = 3.0
FLASH_FRAMES = (20, 25, 30)          # flash (white frame) and click (1 kHz burst) in each part, same instant
TIMESCALES = (12800, 90000, 1000)    # a different video time base per part: concat -c copy scales them wrongly


def _clap_part(out: Path, flash: int, timescale: int) -> Path:
    t = flash / FPS
    ffmpeg("-f", "lavfi", "-i", f"color=c=black:s=320x240:r={FPS}:d={PART_S},"
           f"drawbox=c=white:t=fill:enable='eq(n,{flash})'",
           "-f", "lavfi", "-i", f"aevalsrc='if(between(t,{t:.3f},{t + 0.02:.3f}),0.8*sin(2*PI*1000*t),0)':s=44100:d={PART_S}",
           "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
           "-video_track_timescale", str(timescale), str(out))
    return out


@pytest.fixture(scope="module")
def clap_concat(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("clap")
    parts = [_clap_part(d / f"part{i}.mp4", f, ts) for i, (f, ts) in enumerate(zip(FLASH_FRAMES, TIMESCALES))]
    (d / "list.txt").write_text("".join(f"file '{p}'\n" for p in parts))
    out = d / "clap_concat.mp4"
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(d / "list.txt"), "-c", "copy", str(out))
    return out


def _events(path: str) -> tuple[list[float], list[float]]:
    from operators.decode import decode_audio_track, open_video

    flashes = []
    with open_video(path, 64) as v:
        for f in v.frames():
            if f.image.mean() > 128:
                flashes.append(f.time_s)
    audio = decode_audio_track(path, 16000)
    clicks: list[float] = []
    for i in np.nonzero(np.abs(audio) > 0.3)[0]:
        if not clicks or i / 16000 - clicks[-1] > 0.5:
            clicks.append(i / 16000)
    return flashes, clicks


def test_no_false_alarm_on_real_media(media_dir):
    """Clean files, variable frame rate (goldeneye drops frames) and an offset audio start included."""
    from operators.media import _fraction, ffprobe
    from operators.timeline import inspect_timeline

    files = sorted((media_dir / "video").glob("*.mp4")) + sorted((media_dir / "shots").glob("*.mp4"))
    assert files
    for f in files:
        info = ffprobe(str(f), 60)
        tl = inspect_timeline(str(f), _fraction(info.video.get("r_frame_rate")) if info.video else None)
        assert not tl.broken, (f.name, tl.why)


def test_concat_of_different_time_bases_is_regenerated_in_sync(clap_concat, settings, tmp_path):
    from operators.base import VideoTask, run_operator
    from operators.probe import ProbeOperator

    raw_flashes, _ = _events(str(clap_concat))
    assert max(raw_flashes) > 3 * PART_S, "the construction should break the video timeline"
    settings.run.work_dir = str(tmp_path / "work")
    task = run_operator(ProbeOperator(settings), VideoTask(uri=str(clap_concat)), 300)
    assert task.ok, task.rejects
    assert task.video["timestamps_regenerated"] is True
    assert any(w.startswith("timestamps_regenerated:") for w in task.video["warnings"]), task.video["warnings"]
    with task.source() as path:
        assert path != str(clap_concat)
        flashes, clicks = _events(path)
    expected = [i * PART_S + f / FPS for i, f in enumerate(FLASH_FRAMES)]
    assert flashes == pytest.approx(expected, abs=0.5 / FPS)
    assert len(clicks) == len(flashes)
    for fl, cl in zip(flashes, clicks):
        assert abs(cl - fl) <= 1.0 / FPS, f"A/V offset {cl - fl:+.3f} s at the part starting {fl:.2f} s"
    task.scratch["work_dir"] = str(tmp_path / "work" / task.video_id)
    task.release_work_files()
    assert not (tmp_path / "work" / task.video_id).exists()


def test_parts_with_one_time_base_need_no_regeneration(tmp_path, settings):
    """A plain concatenation (same encoder settings) has sane timestamps: processed as it is."""
    from operators.base import VideoTask, run_operator
    from operators.probe import ProbeOperator

    parts = [_clap_part(tmp_path / f"p{i}.mp4", f, 12800) for i, f in enumerate(FLASH_FRAMES)]
    (tmp_path / "l.txt").write_text("".join(f"file '{p}'\n" for p in parts))
    out = tmp_path / "same.mp4"
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(tmp_path / "l.txt"), "-c", "copy", str(out))
    settings.run.work_dir = str(tmp_path / "work")
    settings.probe.min_duration_s = 1.0
    task = run_operator(ProbeOperator(settings), VideoTask(uri=str(out)), 300)
    assert task.ok, task.rejects
    assert task.video["timestamps_regenerated"] is False
    assert "source_path" not in task.scratch


def test_audio_warning_is_recorded_not_fatal(tmp_path, settings, media_dir):
    """Messages from the audio decoder are warnings; only a failing or much-too-short decode rejects."""
    from operators.media import condense_messages

    msgs = condense_messages("[mp3 @ 0x55d1] Header missing\n[mp3 @ 0x55d2] Header missing\nLast message repeated 3 times\n"
                             "[null @ 0x1] Application provided invalid, non monotonically increasing dts to muxer in stream 0: 1404 >= 1390\n")
    assert msgs[0] == "[mp3] Header missing (x2)"
    assert "N >= M" in msgs[1]


def test_output_frame_rate_is_one_setting():
    """Labels are on LR-ASD's grid; the config refuses an output rate the conversation stage cannot label."""
    from models.lr_asd import VIDEO_FPS
    from operators.asd import ASD_FPS
    from schemas.settings import Settings

    assert ASD_FPS == VIDEO_FPS == Settings().people.clip_fps
    with pytest.raises(ValueError, match="clip_fps"):
        Settings.model_validate({"people": {"clip_fps": 30.0}})
    assert Settings.model_validate({"people": {"clip_fps": 30.0}, "stages": ["probe", "shots", "clips", "people"]})
