"""Benchmark of the audio stages: separation speed and SDR, ASR speed, speak/listen cutting speed.

    python -m bench.audio [--media DIR] [--demucs-dir DIR --demucs-name htdemucs] [--whisper-dir DIR]
                          [--model-dir DIR] [--isolation-only]

Voice isolation (issue 20): per separation choice (none / dtln / gtcrn / demucs with --demucs-dir, else
'skipped: no weights') on three mixes built by construction with known stems: (a) speech_plus_music_snr0.wav
vs its speech stem, (b) jfk_speech.flac + seeded pink noise at 5 dB SNR, (c) two voices in turns
(turns_person1.wav at 0 s and 3.6 s, turns_person2.wav at 1.0 s, overlapping by ~0.8 s and ~0.5 s):
SI-SDR improvement over the input (dB; for (c) against person 1 over the samples where person 1 talks),
the other voice's leak ('leak': mean power of the output where only person 2 talks, relative to person
1's mean power where person 1 talks; 'gated': the output gated by person 1's 25 fps activity with 30 ms
fades, as speak_audio is cut, minus its best fit to person 1, i.e. person 2 in the overlaps plus
distortion, relative to person 1's power: an upper bound of the leak), and the real-time factor (compute seconds / audio seconds). A table goes to stderr; the numbers
are in the JSON under "isolation".

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


def _pink(n: int, seed: int = 0):
    """Seeded pink (1/f power) noise of n samples, unit RMS."""
    import numpy as np

    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    x = np.fft.irfft(spec / np.sqrt(f), n)
    return (x / np.sqrt(np.mean(x ** 2))).astype(np.float32)


def _activity(x, sr: int = 16000, fps: float = 25.0, floor_db: float = -35.0):
    """Per-sample activity of a clean voice: 25 fps frames whose RMS is within floor_db of the loudest."""
    import numpy as np

    hop = int(sr / fps)
    k = -(-len(x) // hop)
    xp = np.pad(x, (0, k * hop - len(x)))
    rms = np.sqrt(np.mean(xp.reshape(k, hop) ** 2, axis=1) + 1e-12)
    on = 20 * np.log10(rms / rms.max()) > floor_db
    return np.repeat(on, hop)[: len(x)]


def _cases(media: Path):
    """(name, mixture, target, other-or-None, target-activity-or-None) built by construction at 16 kHz."""
    import numpy as np

    from operators.media import decode_audio

    a = media / "audio"
    mix = decode_audio(str(a / "speech_plus_music_snr0.wav"), 60)
    sp = decode_audio(str(a / "speech_plus_music_snr0.speech_stem.wav"), 60)
    n = min(len(mix), len(sp))
    yield "speech+music 0 dB", mix[:n], sp[:n], None, None
    jfk = decode_audio(str(a / "jfk_speech.flac"), 60)
    noise = _pink(len(jfk), seed=20)
    noise *= np.sqrt(np.mean(jfk ** 2) / np.mean(noise ** 2)) / 10 ** (5 / 20)
    yield "speech+pink 5 dB", (jfk + noise).astype(np.float32), jfk, None, None
    p1 = decode_audio(str(a / "turns_person1.wav"), 60)
    p2 = decode_audio(str(a / "turns_person2.wav"), 60)
    sr = 16000
    second = int(3.6 * sr)
    total = second + len(p1)
    t1, t2 = np.zeros(total, np.float32), np.zeros(total, np.float32)
    t1[: len(p1)] += p1
    t1[second: second + len(p1)] += p1
    j = int(1.0 * sr)
    t2[j: j + len(p2)] += p2[: total - j]
    yield "two voices (p1 vs p2)", t1 + t2, t1, t2, _activity(t1)


def isolation_bench(media: Path, args) -> dict:
    """SI-SDR gain, other-voice leak and real-time factor per separation choice (see the module doc)."""
    import numpy as np

    from models.registry import MissingModelError
    from models.separation import load_isolator, load_separator, si_sdr_db
    from operators.audio import fade_gain, resample
    from schemas.settings import Settings

    s = Settings()
    if args.model_dir:
        s.models.dir = args.model_dir
    runners: dict = {"none": lambda x: x}
    skipped: dict = {}
    for name in ("dtln", "gtcrn"):
        try:
            runners[name] = load_isolator(s, name).isolate
        except MissingModelError as exc:
            skipped[name] = f"skipped: {exc}"
    if args.demucs_dir:
        s.audio.separation, s.audio.demucs_model_dir, s.audio.demucs_model_name = "demucs", args.demucs_dir, args.demucs_name
        try:
            dm = load_separator(s)

            def demucs_run(x, dm=dm):
                mix = np.repeat(resample(x, 16000, dm.samplerate)[None], dm.audio_channels, axis=0)
                v = dm.vocals(mix)
                v = v.sum(axis=0) / np.sqrt(v.shape[0])
                y = resample(v, dm.samplerate, 16000)
                return y[: len(x)] if len(y) >= len(x) else np.pad(y, (0, len(x) - len(y)))

            runners["demucs"] = demucs_run
        except MissingModelError as exc:
            skipped["demucs"] = f"skipped: {exc}"
    else:
        skipped["demucs"] = "skipped: no weights"
    res: dict = {}
    rows = []
    fade = int(round(s.audio.crossfade_ms * 16))
    for case, mix, target, other, act in _cases(media):
        secs = len(mix) / 16000
        ref = target if act is None else target[act]
        base = si_sdr_db(mix if act is None else mix[act], ref)
        for name, run in runners.items():
            t0 = time.perf_counter()
            y = np.asarray(run(mix), np.float32)
            el = time.perf_counter() - t0
            gain = si_sdr_db(y if act is None else y[act], ref) - base
            r = {"si_sdr_db": round(base + gain, 2), "si_sdr_gain_db": round(gain, 2), "rtf": round(el / secs, 3)}
            if other is not None:
                only2 = (np.abs(other) > 0) & ~act
                p1 = float(np.mean(target[act] ** 2))
                r["leak_db"] = round(10 * np.log10(float(np.mean(y[only2] ** 2)) / p1 + 1e-12), 1)
                g = (y * fade_gain(act, fade)).astype(np.float64)
                tt = target.astype(np.float64)
                resid = g - (np.dot(g, tt) / np.dot(tt, tt)) * tt
                r["leak_gated_db"] = round(10 * np.log10(float(np.mean(resid[act] ** 2)) / p1 + 1e-12), 1)
            res.setdefault(name, {})[case] = r
            rows.append((name, case, r))
    for name, why in skipped.items():
        res[name] = why
    lines = [f"{'separation':<11}{'case':<24}{'SI-SDR dB':>10}{'gain dB':>9}{'leak dB':>9}{'gated':>8}{'RTF':>7}"]
    for name, case, r in rows:
        lines.append(f"{name:<11}{case:<24}{r['si_sdr_db']:>10.2f}{r['si_sdr_gain_db']:>+9.2f}"
                     f"{(str(r['leak_db']) if 'leak_db' in r else '-'):>9}{(str(r['leak_gated_db']) if 'leak_gated_db' in r else '-'):>8}"
                     f"{r['rtf']:>7.3f}")
    lines += [f"{name:<11}{why}" for name, why in skipped.items()]
    print("\n".join(lines), file=sys.stderr)
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", default=os.environ.get("LPM_SHARED_DIR", str(REPO.parent / "shared")) + "/media")
    ap.add_argument("--demucs-dir")
    ap.add_argument("--demucs-name", default="htdemucs")
    ap.add_argument("--whisper-dir")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--model-dir", help="model directory with dtln/ and gtcrn/ (default: models.dir / LPM_MODEL_DIR)")
    ap.add_argument("--isolation-only", action="store_true", help="only the voice-isolation table")
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
    out["isolation"] = isolation_bench(media, args)
    if args.isolation_only:
        print(json.dumps(out, indent=2))
        return

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
