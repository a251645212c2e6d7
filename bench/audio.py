"""Benchmark of the audio stages: separation speed and SDR, ASR speed, speak/listen cutting speed.

    python -m bench.audio [--media DIR] [--demucs-dir DIR --demucs-name htdemucs] [--whisper-dir DIR]

Without --demucs-dir / --whisper-dir, tiny random models are built in a temp dir (tests/fixtures_models.py):
their timings show the overhead of the code path on this machine, not the cost of real models, and
their SDR says nothing about separation quality. Prints one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _task(uri: str, dur: float, states: bool = False, clips_per_shot: int = 1):
    from operators.base import VideoTask

    t = VideoTask(uri=uri, video_id="bench")
    t.video = {"has_audio": True, "video_start_s": 0.0, "duration_s": dur}
    t.shots = [{"shot_index": 0, "start_frame": 0, "end_frame": int(dur * 25), "start_s": 0.0, "end_s": dur,
                "duration_s": dur, "kept": True, "reason": ""}]
    n = int(dur * 25)
    t.clips = []
    for k in range(clips_per_shot):
        row = {"clip_id": f"c{k}", "video_id": "bench", "shot_index": 0, "track_id": k, "start_s": 0.0, "end_s": dur,
               "duration_s": dur, "fps": 25.0, "clip_fps": 25.0}
        if states:
            row["frame_states"] = [("speak" if (j // 50) % clips_per_shot == k else "listen") for j in range(n)]
        t.clips.append(row)
    return t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", default=os.environ.get("LPM_SHARED_DIR", str(REPO.parent / "shared")) + "/media")
    ap.add_argument("--demucs-dir")
    ap.add_argument("--demucs-name", default="htdemucs")
    ap.add_argument("--whisper-dir")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)

    from models.separation import sdr_db
    from operators.audio import AudioTracksOperator, SeparationOperator
    from operators.base import Deadline
    from operators.media import decode_audio, decode_flac
    from schemas.settings import Settings

    media = Path(args.media)
    mix_uri = str(media / "audio" / "speech_plus_music_snr0.wav")
    speech = decode_audio(str(media / "audio" / "speech_plus_music_snr0.speech_stem.wav"), 60)
    dur = len(speech) / 16000
    tmp = Path(tempfile.mkdtemp(prefix="bench-audio-"))
    out: dict = {"machine_cpus": os.cpu_count(), "input": f"speech_plus_music_snr0.wav ({dur:.1f} s)"}

    # ---------------------------------------------------------------- separation
    s = Settings()
    runs = [("none", None, None)]
    if args.demucs_dir:
        runs.append(("demucs:" + args.demucs_name, args.demucs_dir, args.demucs_name))
    else:
        from fixtures_models import build_tiny_htdemucs

        runs.append(("tiny_random_htdemucs", str(build_tiny_htdemucs(tmp / "demucs")), "tiny_htdemucs"))
    for label, d, name in runs:
        s.audio.demucs_model_dir = d
        if name:
            s.audio.demucs_model_name = name
        op = SeparationOperator(s)
        op.ensure_setup()
        best = None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            task = op.process(_task(mix_uri, dur), Deadline(None))
            el = time.perf_counter() - t0
            best = el if best is None else min(best, el)
        voc = decode_flac(task.scratch["vocals"][0])
        out[f"separation[{label}]"] = {"seconds": round(best, 3), "x_realtime": round(dur / best, 2),
                                       "sdr_db_vs_speech_stem": round(sdr_db(voc, speech), 2)}

    # ---------------------------------------------------------------- ASR + speak/listen
    jfk = str(media / "audio" / "jfk_speech.flac")
    jdur = len(decode_audio(jfk, 60)) / 16000
    s = Settings()
    if args.whisper_dir:
        s.audio.whisper_model_dir, label = args.whisper_dir, "whisper"
    else:
        from fixtures_models import build_tiny_whisper

        s.audio.whisper_model_dir, label = str(build_tiny_whisper(tmp / "whisper" / "ct2")), "tiny_random_whisper"
        s.audio.asr_compute_type = "float32"
    for asr_label, wdir in ((label, s.audio.whisper_model_dir), ("no_asr", None)):
        s.audio.whisper_model_dir = wdir
        op = AudioTracksOperator(s)
        op.ensure_setup()
        task = _task(jfk, jdur, states=True, clips_per_shot=2)
        t0 = time.perf_counter()
        task = op.process(task, Deadline(None))
        el = time.perf_counter() - t0
        words = task.clips[0].get("words") or []
        out[f"audio_stage[{asr_label}]"] = {"seconds": round(el, 3), "x_realtime": round(jdur / el, 2),
                                             "clips": len(task.clips), "words_clip0": len(words),
                                             "input": f"jfk_speech.flac ({jdur:.1f} s), 2 clips with frame_states"}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
