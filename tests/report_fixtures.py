"""Runs for the report and query tests (session-scoped; import the fixtures into a test module).

- ``pipeline_run``: the real pipeline (default settings, in-process) on a few files of ../shared/media:
  two talking-head videos, a stage video with cuts (short-shot rejects), a video without audio (a
  video-level reject) and a truncated copy made here (a source no tool can read: its gallery item must
  be a note).
- ``enriched_run``: an output folder written through OutputStore with every column the later stages
  will fill (states, shares, expression/motion statistics, transcripts, identities, references, real
  clip media encoded from the shared videos, provenance), so the galleries, reference banks and
  distributions that today's pipeline cannot fill yet are exercised too.
"""
from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest

VIDEOS = ["talking_face_1.mp4", "talking_face_3.mp4", "stage_performer_audience_music.mp4"]


def _settings(model_dir):
    from schemas.settings import Settings

    s = Settings()
    s.models.dir = str(model_dir)
    return s


# Test modules import these fixtures, so pytest registers them once per module; this cache makes each
# run happen once per session all the same.
_CACHE: dict[tuple[str, str], Path] = {}


def _cached(name: str, tmp_path_factory, make) -> Path:
    key = (name, str(tmp_path_factory.getbasetemp()))
    if key not in _CACHE or not _CACHE[key].exists():
        _CACHE[key] = make()
    return _CACHE[key]


@pytest.fixture(scope="session")
def pipeline_run(tmp_path_factory, media_dir, model_dir) -> Path:
    return _cached("pipeline", tmp_path_factory, lambda: _make_pipeline_run(tmp_path_factory, media_dir, model_dir))


def _make_pipeline_run(tmp_path_factory, media_dir, model_dir) -> Path:
    from pipeline.runner import run

    root = tmp_path_factory.mktemp("report_run")
    inputs = [str(media_dir / "video" / v) for v in VIDEOS] + [str(media_dir / "shots" / "counter.mp4")]
    broken = root / "inputs" / "truncated_talking_face_2.mp4"
    broken.parent.mkdir(parents=True)
    broken.write_bytes((media_dir / "video" / "talking_face_2.mp4").read_bytes()[:40000])
    inputs.append(str(broken))
    out = root / "out"
    run(inputs, str(out), _settings(model_dir), use_ray=False)
    return out


# ------------------------------------------------------------------------------------- enriched run
def _jpeg_at(src: Path, t: float, height: int = 80) -> bytes:
    from pipeline.report_media import source_frames, to_jpeg

    return to_jpeg(source_frames(str(src), t, t + 0.4, 1, height, 60)[0])


def _provenance(stage: str, model: str) -> dict[str, str]:
    from models.registry import REGISTRY
    from operators.base import provenance_entry

    sha = REGISTRY[model].main.sha256 if model in REGISTRY else "0" * 64
    return {stage: json.dumps(provenance_entry(stage, model, sha, {"k": 1}), sort_keys=True)}


def write_enriched(out: Path, media_dir: Path) -> Path:
    from operators.clipmedia import encode_crop
    from operators.clips import clip_id as make_clip_id
    from schemas.settings import Settings
    from pipeline.store import OutputStore

    rng = random.Random(7)
    store = OutputStore(str(out))
    store.ensure_layout()
    ch = Settings().config_hash()
    vdir = media_dir / "video"
    specs = [  # video file, (width, height), clips: (start, dur, class, identity, global, crop, media)
        ("talking_face_1.mp4", (524, 524), [(0.0, 3.0, "speak", "a:0", "G-anna", None, True),
                                            (3.0, 3.0, "listen", "a:0", "G-anna", None, True)]),
        ("talking_face_3.mp4", (512, 512), [(0.0, 3.0, "listen", "b:0", "G-ben", None, True),
                                            (1.5, 3.0, "idle", "b:0", "G-ben", None, True)]),
        ("interview_two_people.mp4", (1280, 720), [(0.0, 4.0, "mixed", "c:0", "G-carl", [0, 0, 640, 720], True),
                                                   (4.0, 4.0, "listen", "c:1", "G-dave", [640, 0, 1280, 720], True),
                                                   (8.0, 4.0, None, "c:1", None, [640, 0, 1280, 720], False),
                                                   (12.0, 4.0, "speak", None, None, None, False)]),
    ]
    expressions = ["neutral", "smile", "surprise", "frown"]
    for vi, (name, (w, h), clips) in enumerate(specs):
        src = vdir / name
        vid = f"enr{vi:013d}"
        fps = 25.0
        rows_c, rows_s, rows_r = [], [], []
        rows_s.append({"video_id": vid, "shot_index": 0, "start_frame": 0, "end_frame": 400, "start_s": 0.0, "end_s": 16.0,
                       "duration_s": 16.0, "cut_in": "start", "kept": True, "reason": "",
                       "quality": {"sharpness": 40.0 + 10 * vi, "brightness": 120.0 + vi}, "n_people": 1 + (vi == 2)})
        rows_s.append({"video_id": vid, "shot_index": 1, "start_frame": 400, "end_frame": 450, "start_s": 16.0, "end_s": 18.0,
                       "duration_s": 2.0, "cut_in": "content", "kept": False, "reason": "blurry",
                       "quality": {"sharpness": 5.0 + vi, "brightness": 100.0}})
        rows_r.append({"uri": str(src), "video_id": vid, "stage": "quality", "level": "shot", "reason": "blurry",
                       "message": f"sharpness {5.0 + vi} < quality.min_sharpness=20", "shot_index": 1, "start_s": 0.5,
                       "end_s": 2.5, "duration_s": 2.0})
        for ci, (start, dur, cls, ident, gid, crop, media) in enumerate(clips):
            a, b = int(start * fps), int((start + dur) * fps)
            cid = make_clip_id(vid, 0, ci, a, b)
            shares = None
            if cls:
                s = [rng.random() for _ in range(3)]
                shares = {k: v / sum(s) for k, v in zip(("speak", "listen", "idle"), s)}
            exp = expressions[(vi + ci) % len(expressions)]
            refs = None
            if ident:
                refs = [{"kind": "global", "label": "frontal", "jpeg": _jpeg_at(src, start + 0.2), "source_video_id": vid,
                         "source_time_s": start + 0.2, "identity_id": ident, "quality": 0.9},
                        {"kind": "expression", "label": exp, "jpeg": _jpeg_at(src, start + 1.0), "source_video_id": vid,
                         "source_time_s": start + 1.0, "identity_id": ident, "quality": 0.7}]
            row = {"clip_id": cid, "video_id": vid, "shot_index": 0, "track_id": ci, "start_frame": a, "end_frame": b,
                   "start_s": start, "end_s": start + dur, "duration_s": dur, "fps": fps,
                   "quality": {"sharpness": 40.0 + ci, "brightness": 120.0}, "identity_id": ident,
                   "global_identity_id": gid, "crop_box": crop, "face_size_px": 100.0 + 10 * ci, "clip_class": cls,
                   "state_shares": shares, "transcript": " ".join(["word"] * (3 + 4 * ci)) if cls != "idle" else None,
                   "expression_stats": {"dominant_share": 0.3 + 0.1 * ci, "oscillation": 0.05 * (vi + 1)},
                   "motion_stats": {"motion_intensity": 0.1 + 0.2 * ci}, "tags": {"expression": exp},
                   "references": refs, "provenance": _provenance("conversation", "lr-asd-ava")}
            if media:
                row.update(video_bytes=encode_crop(str(src), start, dur, crop, 96, 96, 10.0, 120, with_audio=False),
                           video_codec="h264", clip_width=96, clip_height=96, clip_fps=10.0)
            rows_c.append(row)
        rows_r.append({"uri": str(src), "video_id": vid, "stage": "people", "level": "track", "reason": "track_too_short",
                       "message": "1.2 s < people.min_track_s=3", "shot_index": 0, "track_id": 9, "start_s": 1.0,
                       "end_s": 2.2, "duration_s": 1.2})
        video = {"video_id": vid, "uri": str(src), "status": "ok", "reason": "", "duration_s": 18.0, "fps": fps,
                 "width": w, "height": h, "rotation_deg": 0, "has_audio": True, "n_shots": 2, "n_shots_kept": 1,
                 "n_clips": len(rows_c)}
        store.write_video(vid, ch, {"videos": [video], "shots": rows_s, "clips": rows_c, "rejects": rows_r}, "ok", "",
                          {"probe": 0.1 * (vi + 1), "shots": 0.5, "people": 1.5})
    # a video whose source is gone (its shot reject must show a note, not break the report)
    gone = "/nonexistent/lpm-test/gone.mp4"
    store.write_video("enrgone0000000", ch, {
        "videos": [{"video_id": "enrgone0000000", "uri": gone, "status": "ok", "reason": "", "duration_s": 30.0, "fps": 25.0,
                    "width": 640, "height": 360}],
        "shots": [{"video_id": "enrgone0000000", "shot_index": 0, "start_frame": 0, "end_frame": 50, "start_s": 0.0,
                   "end_s": 2.0, "duration_s": 2.0, "kept": False, "reason": "shot_too_short"}],
        "rejects": [{"uri": gone, "video_id": "enrgone0000000", "stage": "shots", "level": "shot", "reason": "shot_too_short",
                     "message": "2.00 s < shots.min_clip_s=3.0", "shot_index": 0, "start_s": 0.0, "end_s": 2.0, "duration_s": 2.0}],
    }, "ok", "", {"probe": 0.05})
    # a video rejected as a whole
    long_src = vdir / "silent_film_music.mp4"
    store.write_video("enrrej00000000", ch, {
        "videos": [{"video_id": "enrrej00000000", "uri": str(long_src), "status": "rejected", "reason": "too_long",
                    "duration_s": 20.0}],
        "rejects": [{"uri": str(long_src), "video_id": "enrrej00000000", "stage": "probe", "level": "video",
                     "reason": "too_long", "message": "longer than run.max_video_s", "start_s": 0.0, "end_s": 20.0,
                     "duration_s": 20.0}],
    }, "rejected", "too_long", {"probe": 0.05})
    # a part without a marker (an unfinished video): must be invisible to report and query
    store._write_atomic("clips", "unfinished0000", store.read_part("clips", "enr0000000000000").slice(0, 1))
    store.write_summary({"run_id": "enriched-test", "code_version": "test", "config_hash": ch, "schema_version": 1,
                         "inputs": 5, "processed": 5, "skipped_already_done": 0, "rejected_videos": 1,
                         "executor": "local", "config": Settings().model_dump(mode="json"),
                         "timings_s": {"wall": 12.5, "stages_sum": {"probe": 0.7, "shots": 1.5, "people": 4.5}}})
    return out


@pytest.fixture(scope="session")
def enriched_run(tmp_path_factory, media_dir) -> Path:
    return _cached("enriched", tmp_path_factory,
                   lambda: write_enriched(tmp_path_factory.mktemp("report_enriched") / "out", media_dir))


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
