"""Input variants built by construction from ../shared/media (issue 18 yield check).

Each builder writes one short (4-6 s; the concatenation ~10 s) video with speech into ``out_dir`` with
ffmpeg and returns its path. What each variant is, by name:

- ``upright``: a plain re-encode of the interview (two people in split screen), 640x360: the reference.
- ``concat_timebases``: three talking faces (3.5 s each, 512x512) encoded with ``-video_track_timescale``
  12800, 90000 and 1000, joined with the concat demuxer and ``-c copy``: broken video timestamps.
- ``rotated_90`` / ``rotated_270``: the ``upright`` picture stored sideways (360x640, transposed) with a
  display matrix (``rotate`` tag) that turns it upright again.
- ``pillarbox_9x16``: a 9:16 crop of a talking face padded with black to 16:9 (960x540).
- ``pillarbox_1x1``: a square talking face padded with black to 16:9 (960x540).
- ``letterbox``: a 2.35:1 crop of the interview padded with black to 16:9 (960x540).
- ``fps_23.976`` ... ``fps_60``: a 25 fps talking face converted with ``-r``.
- ``vfr``: a talking face with jittered timestamps (``setpts``, ``-fps_mode vfr``): avg != r frame rate.
- ``aac_44k``, ``opus_48k`` (.mkv), ``mp3_44k`` (.mkv), ``pcm_48k`` (.mov): audio codec variants.

    python -m bench.variants OUT_DIR [NAME ...]
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LPM_SHARED_DIR", REPO.parent / "shared")).resolve()
MEDIA = Path(os.environ.get("LPM_MEDIA_DIR", SHARED / "media" / "video")).resolve()

INTERVIEW = "interview_two_people.mp4"
X264 = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"]
AAC = ["-c:a", "aac", "-b:a", "128k"]


def src(name: str) -> str:
    p = MEDIA / name
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found (set LPM_SHARED_DIR or LPM_MEDIA_DIR)")
    return str(p)


def ffmpeg(*args: str, timeout: float = 300) -> None:
    cmd = [shutil.which("ffmpeg") or "ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *args]
    subprocess.run(cmd, check=True, timeout=timeout)


def ffprobe_streams(path: str | Path) -> list[dict]:
    cmd = [shutil.which("ffprobe") or "ffprobe", "-v", "error", "-show_streams", "-of", "json", str(path)]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout)["streams"]


def _out(out_dir: str | Path, name: str, ext: str = ".mp4") -> Path:
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    return d / f"{name}{ext}"


# ------------------------------------------------------------------------------------------ builders
def upright(out_dir) -> Path:
    out = _out(out_dir, "upright")
    ffmpeg("-ss", "0", "-t", "5", "-i", src(INTERVIEW), "-vf", "scale=640:360", *X264, *AAC, str(out))
    return out


def concat_timebases(out_dir) -> Path:
    out = _out(out_dir, "concat_timebases")
    with tempfile.TemporaryDirectory(prefix="lpm-concat-") as tmp:
        parts = []
        for i, (face, scale) in enumerate((("talking_face_2.mp4", 12800), ("talking_face_3.mp4", 90000),
                                           ("talking_face_5.mp4", 1000))):
            p = Path(tmp) / f"part{i}.mp4"
            ffmpeg("-t", "3.5", "-i", src(face), "-vf", "scale=512:512,fps=25", *X264, *AAC, "-ar", "44100", "-ac", "1",
                   "-video_track_timescale", str(scale), str(p))
            parts.append(p)
        lst = Path(tmp) / "list.txt"
        lst.write_text("".join(f"file '{p}'\n" for p in parts))
        ffmpeg("-f", "concat", "-safe", "0", "-i", str(lst), "-c", "copy", str(out))
    return out


def _rotated(out_dir, name: str, transpose: int, rotate: int) -> Path:
    out = _out(out_dir, name)
    with tempfile.TemporaryDirectory(prefix="lpm-rot-") as tmp:
        side = Path(tmp) / "side.mp4"
        ffmpeg("-ss", "0", "-t", "5", "-i", src(INTERVIEW), "-vf", f"scale=640:360,transpose={transpose}", *X264, *AAC,
               str(side))
        ffmpeg("-i", str(side), "-c", "copy", "-metadata:s:v:0", f"rotate={rotate}", str(out))
    return out


# transpose=1 stores the picture turned 90 degrees clockwise and the tag rotate=90 turns it back at
# display (ffprobe: rotation 90; the pipeline: rotation_deg 90 or 270); transpose=2 pairs with rotate=270 (-90).
# Checked: ffmpeg's auto-rotated decode of both correlates ~1.0 with the upright reference's frames.
def rotated_90(out_dir) -> Path:
    return _rotated(out_dir, "rotated_90", transpose=1, rotate=90)


def rotated_270(out_dir) -> Path:
    return _rotated(out_dir, "rotated_270", transpose=2, rotate=270)


def pillarbox_9x16(out_dir) -> Path:
    out = _out(out_dir, "pillarbox_9x16")
    ffmpeg("-t", "5", "-i", src("talking_face_1.mp4"), "-vf",
           "crop=394:700:153:0,scale=304:540,setsar=1,pad=960:540:328:0:black", *X264, *AAC, str(out))
    return out


def pillarbox_1x1(out_dir) -> Path:
    out = _out(out_dir, "pillarbox_1x1")
    ffmpeg("-t", "5", "-i", src("talking_face_3.mp4"), "-vf", "scale=540:540,setsar=1,pad=960:540:210:0:black",
           *X264, *AAC, str(out))
    return out


def letterbox(out_dir) -> Path:
    out = _out(out_dir, "letterbox")
    ffmpeg("-t", "5", "-i", src(INTERVIEW), "-vf", "crop=1280:544:0:88,scale=960:408,setsar=1,pad=960:540:0:66:black",
           *X264, *AAC, str(out))
    return out


def _fps(rate: str, name: str):
    def build(out_dir) -> Path:
        out = _out(out_dir, name)
        ffmpeg("-t", "5", "-i", src("talking_face_2.mp4"), "-vf", "scale=512:512", "-r", rate, *X264, *AAC, str(out))
        return out

    build.__name__ = name.replace(".", "_")
    build.__doc__ = f"talking_face_2 (25 fps) converted to {rate} fps with -r."
    return build


def vfr(out_dir) -> Path:
    """Jittered timestamps and 3 of every 10 frames dropped: r_frame_rate 25, avg_frame_rate ~17.5."""
    out = _out(out_dir, "vfr")
    ffmpeg("-t", "5", "-i", src("talking_face_3.mp4"), "-vf",
           "scale=512:512,setpts='N/25/TB+0.01*sin(N)',select='lt(mod(n\\,10)\\,7)'",
           "-fps_mode", "vfr", *X264, *AAC, str(out))
    return out


def _audio(name: str, ext: str, codec: list[str]):
    def build(out_dir) -> Path:
        out = _out(out_dir, name, ext)
        ffmpeg("-t", "5", "-i", src("talking_face_4.mp4"), "-vf", "scale=512:512", *X264, *codec, str(out))
        return out

    build.__name__ = name
    build.__doc__ = f"talking_face_4 with {' '.join(codec)} audio in {ext}."
    return build


VARIANTS: dict[str, Callable[[str | Path], Path]] = {
    "upright": upright,
    "concat_timebases": concat_timebases,
    "rotated_90": rotated_90,
    "rotated_270": rotated_270,
    "pillarbox_9x16": pillarbox_9x16,
    "pillarbox_1x1": pillarbox_1x1,
    "letterbox": letterbox,
    "fps_23.976": _fps("24000/1001", "fps_23.976"),
    "fps_24": _fps("24", "fps_24"),
    "fps_29.97": _fps("30000/1001", "fps_29.97"),
    "fps_30": _fps("30", "fps_30"),
    "fps_50": _fps("50", "fps_50"),
    "fps_60": _fps("60", "fps_60"),
    "vfr": vfr,
    "aac_44k": _audio("aac_44k", ".mp4", ["-c:a", "aac", "-ar", "44100", "-b:a", "128k"]),
    "opus_48k": _audio("opus_48k", ".mkv", ["-c:a", "libopus", "-ar", "48000", "-b:a", "96k"]),
    "mp3_44k": _audio("mp3_44k", ".mkv", ["-c:a", "libmp3lame", "-ar", "44100", "-b:a", "128k"]),
    "pcm_48k": _audio("pcm_48k", ".mov", ["-c:a", "pcm_s16le", "-ar", "48000"]),
}


def build_all(out_dir: str | Path, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Build the named variants (all by default) into out_dir; returns name -> path."""
    names = list(VARIANTS) if names is None else list(names)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise KeyError(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    return {n: VARIANTS[n](out_dir) for n in names}


def variant_of(uri: str) -> str:
    """The variant name of a built file (its stem)."""
    return Path(uri).stem


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__)
        return 2
    built = build_all(argv[0], argv[1:] or None)
    for name, path in built.items():
        v = next(s for s in ffprobe_streams(path) if s["codec_type"] == "video")
        a = next((s for s in ffprobe_streams(path) if s["codec_type"] == "audio"), {})
        rot = next((sd.get("rotation") for sd in v.get("side_data_list", []) if "rotation" in sd), None)
        print(f"{name:<18} {v['width']}x{v['height']} r={v['r_frame_rate']} avg={v['avg_frame_rate']} rot={rot} "
              f"audio={a.get('codec_name')}@{a.get('sample_rate')} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
