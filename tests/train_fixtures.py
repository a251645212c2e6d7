"""Fixtures of the train/ tests: a clips/ output folder built by the pipeline's own code from real media.

Each talking-face video becomes one clip row: media by operators.clipmedia.encode_crop (whole frame,
64 px, 25 fps), speak_audio = its own audio (operators.media.decode_audio + encode_flac), listen_audio =
the next video's audio, a "global" reference JPEG taken outside the clip window, frame_states. Some rows
miss columns on purpose (null listen/speak audio, null caption, no references) and one row carries
broken media, so the reader's degradation paths run on every test session. Written with
pipeline.store.OutputStore (DIR/clips/part-<video_id>.parquet), exactly as the pipeline writes them.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(1)  # the training code's default (base.torch_threads); 2 threads thrash on shared cores

TRAIN_VIDEOS = ["talking_face_1.mp4", "talking_face_2.mp4", "talking_face_3.mp4", "talking_face_4.mp4",
                "talking_face_5.mp4", "talking_hdtf_aoc.mp4", "talking_hdtf_hill.mp4"]
CAPTIONS = ["a man with short hair talks calmly to the camera", "a woman explains something and smiles",
            None, "a bearded man speaks with strong gestures", "a person talks in a bright room",
            "a woman with long hair talks to the camera", "a woman in a dark jacket gives a speech"]
SIZE = 64
FPS = 25.0


def build_clips_dir(out_dir: Path, media_dir: Path, videos: list[str] = TRAIN_VIDEOS, broken_row: bool = True) -> Path:
    import cv2

    from operators.clipmedia import encode_crop, read_clip_frames
    from operators.clips import clip_id
    from operators.media import decode_audio, encode_flac, ffprobe
    from pipeline.store import OutputStore

    store = OutputStore(str(out_dir))
    store.ensure_layout()
    srcs = [str(media_dir / "video" / v) for v in videos]
    audios = [decode_audio(s, 120.0, sample_rate=16000) for s in srcs]
    for i, src in enumerate(srcs):
        info = ffprobe(src, 60.0)
        dur = float(info.duration_s)
        clip_s = min(6.0, dur - 1.0)
        vid = hashlib.sha256(os.path.basename(src).encode()).hexdigest()[:16]
        n_frames = int(round(clip_s * FPS))
        end_frame = int(round(clip_s * info.fps))
        media = encode_crop(src, 0.0, clip_s, None, SIZE, SIZE, FPS, 120.0)
        n_s = int(clip_s * 16000)
        speak = audios[i][:n_s]
        other = audios[(i + 1) % len(srcs)]
        listen = np.zeros(n_s, dtype=np.float32)
        listen[: min(n_s, len(other))] = other[:n_s]
        states = ["speak"] * n_frames
        if i == 1:
            states[10:20] = ["discard"] * 10
        refs = []
        if i % 2 == 0:
            frames = read_clip_frames({"video_uri": src}, size=(SIZE * 2, SIZE * 2))
            k = min(len(frames) - 1, int((dur - 0.5) * info.fps))
            ok, jpeg = cv2.imencode(".jpg", frames[k][:, :, ::-1])
            assert ok
            refs.append({"kind": "global", "label": "global", "jpeg": jpeg.tobytes(), "source_video_id": vid,
                         "source_time_s": (dur - 0.5), "identity_id": f"{vid}-0", "quality": 1.0})
        row = {
            "clip_id": clip_id(vid, 0, 0, 0, end_frame), "video_id": vid, "shot_index": 0, "track_id": 0,
            "start_frame": 0, "end_frame": end_frame, "start_s": 0.0, "end_s": clip_s, "duration_s": clip_s,
            "fps": float(info.fps), "identity_id": f"{vid}-0", "video_codec": "h264", "video_bytes": media,
            "clip_width": SIZE, "clip_height": SIZE, "clip_fps": FPS, "frame_states": states,
            "speak_audio": None if i == 3 else encode_flac(speak, 16000),
            "listen_audio": None if i == 2 else encode_flac(listen, 16000),
            "audio_sample_rate": 16000, "caption": CAPTIONS[i % len(CAPTIONS)], "references": refs,
            "clip_class": "speak",
        }
        store.write_video(vid, "train-fixture", {"clips": [row]}, status="ok")
    if broken_row:
        vid = "ffffffffffffffff"
        row = {"clip_id": clip_id(vid, 0, 0, 0, 100), "video_id": vid, "shot_index": 0, "track_id": 0, "start_frame": 0,
               "end_frame": 100, "start_s": 0.0, "end_s": 4.0, "duration_s": 4.0, "fps": 25.0,
               "video_bytes": b"this is not an mp4", "clip_fps": 25.0}
        store.write_video(vid, "train-fixture", {"clips": [row]}, status="ok")
    return out_dir


@pytest.fixture(scope="session")
def clips_dir(tmp_path_factory, media_dir) -> Path:
    """An output folder with clips/ built once per session (7 real clips + 1 broken row)."""
    return build_clips_dir(tmp_path_factory.mktemp("train-clips"), media_dir)


@pytest.fixture(scope="session")
def tiny_cfg():
    """A config small enough for a few seconds of CPU per test."""
    from train.config import load_config

    return load_config(overrides={
        "data": {"num_frames": 8, "size_px": 32, "windows_per_clip": 2, "shuffle_buffer": 8},
        "vae": {"steps": 10, "batch_frames": 32},
        "model": {"width": 48, "depth": 2, "heads": 2},
        "base": {"steps": 6, "batch_size": 2, "ckpt_every": 3, "log_every": 1, "sample_steps": 4},
        "distill": {"chunk_frames": 2, "sink_chunks": 1, "window_chunks": 2, "ode_pairs": 4, "ode_steps": 3,
                    "dmd_steps": 2, "batch_size": 2, "eval_samples": 2},
    })
