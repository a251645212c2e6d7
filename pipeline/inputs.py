"""Expand --input arguments (files, folders searched recursively, text or Parquet manifests of URIs)
into a sorted, de-duplicated list of URIs. Local paths become absolute; other URIs go through fsspec.

In a local folder every media file is taken: files with a listed extension (input.extensions) as they
are, any other file when a fast ffprobe finds an audio or video stream in it (images, which ffprobe reads
as one-frame videos, are not media). What a folder holds but the run does not take is counted per reason
(:func:`collect_inputs`), so every file is accounted for in summary.json. Files named on the command line
are always taken, whatever their extension.
"""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

MANIFEST_TEXT = (".txt", ".list", ".csv", ".tsv")
# still-image codecs: ffprobe reads such a file as a one-frame video stream (ansi: text read by the tty demuxer)
IMAGE_CODECS = frozenset({
    "png", "apng", "mjpeg", "jpegls", "jpeg2000", "bmp", "webp", "tiff", "gif", "pam", "pbm", "pgm", "pgmyuv", "ppm",
    "pcx", "sgi", "targa", "xbm", "xpm", "xwd", "qoi", "dpx", "exr", "hdr", "photocd", "pictor", "sunrast", "svg",
    "jpegxl", "ansi",
})
IMAGE_FORMATS = ("image2", "gif", "apng", "tty")  # ffprobe format names of still images (plus any '*_pipe')
PROBE_TIMEOUT_S = 10.0


def _is_uri(s: str) -> bool:
    return "://" in s and not s.startswith("file://")


def _read_manifest(path: str) -> list[str]:
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        col = next((c for c in ("uri", "path", "url") if c in t.column_names), None)
        if col is None:
            raise ValueError(f"{path}: a Parquet manifest needs a 'uri' (or 'path'/'url') column")
        items = [u for u in t.column(col).to_pylist() if u]
    else:
        with open(path, encoding="utf-8") as fh:
            items = []
            for line in fh:
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                if path.endswith((".csv", ".tsv")):
                    line = line.split("\t" if path.endswith(".tsv") else ",")[0].strip()
                    if line in ("uri", "path", "url"):
                        continue
                items.append(line)
    base = os.path.dirname(os.path.abspath(path))
    return [u if _is_uri(u) or os.path.isabs(u) else os.path.join(base, u) for u in items]


def text_uri(uri: str) -> str:
    """The URI as valid UTF-8 text, for tables and logs.

    A Linux file name may hold bytes that are not UTF-8 (Python keeps them as surrogate escapes); Parquet
    needs UTF-8, so such bytes are written visibly as ``\\xNN``. The pipeline itself keeps the real name
    to open the file."""
    try:
        uri.encode("utf-8")
        return uri
    except UnicodeEncodeError:
        try:
            return uri.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
            return uri.encode("utf-8", "backslashreplace").decode("utf-8")


def real_uri(text: str) -> str:
    """The local file a :func:`text_uri` names (its ``\\xNN`` turned back into bytes), where that file exists."""
    if "\\x" not in text or _is_uri(text) or os.path.exists(text):
        return text
    raw = re.sub(rb"\\x([0-9a-fA-F]{2})", lambda m: bytes([int(m.group(1), 16)]), text.encode("utf-8"))
    path = os.fsdecode(raw)
    return path if os.path.exists(path) else text


def media_kind(path: str, timeout_s: float = PROBE_TIMEOUT_S) -> str:
    """'media' when ffprobe finds an audio or video stream, 'image' for a still image, else 'not_media'.

    A file ffprobe cannot finish on in time counts as media: the probe stage then rejects it with a reason."""
    from operators.media import MediaError, ffprobe_bin, run_tool

    args = [ffprobe_bin(), "-v", "error", "-show_entries", "stream=codec_type,codec_name:format=format_name",
            "-of", "json", path]
    try:
        proc = run_tool(args, timeout_s, reason="probe_failed")
    except MediaError:
        return "media"
    if proc.returncode != 0:
        return "not_media"
    try:
        data = json.loads(proc.stdout.decode("utf-8", "replace") or "{}")
    except json.JSONDecodeError:
        return "not_media"
    streams = data.get("streams") or []
    video = [s.get("codec_name") for s in streams if s.get("codec_type") == "video"]
    if any(s.get("codec_type") == "audio" for s in streams):
        return "media"
    if not video:
        return "not_media"
    fmt = str((data.get("format") or {}).get("format_name") or "")
    if all(c in IMAGE_CODECS for c in video) and (fmt in IMAGE_FORMATS or fmt.endswith("_pipe")):
        return "image"
    return "media"


def _scan_folder(path: str, exts: tuple[str, ...], skipped: Counter, probe_timeout_s: float) -> list[str]:
    taken: list[str] = []
    to_probe: list[str] = []
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for f in sorted(files):
            full = os.path.join(root, f)
            low = f.lower()
            if f.startswith("."):
                skipped["hidden"] += 1
            elif not os.path.isfile(full):
                skipped["not_a_file"] += 1  # a FIFO, socket or broken link: reading it could block
            elif low.endswith(exts):
                taken.append(full)
            elif low.endswith(MANIFEST_TEXT + (".parquet",)):
                skipped["not_media"] += 1
            else:
                to_probe.append(full)
    if to_probe:
        with ThreadPoolExecutor(max_workers=min(8, len(to_probe))) as ex:
            kinds = list(ex.map(lambda p: media_kind(p, probe_timeout_s), to_probe))
        for p, kind in zip(to_probe, kinds):
            if kind == "media":
                taken.append(p)
            else:
                skipped[kind] += 1
    return taken


def collect_inputs(inputs: list[str], extensions: list[str],
                   probe_timeout_s: float = PROBE_TIMEOUT_S) -> tuple[list[str], dict]:
    """The URIs to run and the accounting of the files behind them.

    Returns ``(uris, tally)`` with ``tally = {"files_seen": N, "media": M, "skipped": {reason: count}}``,
    ``N == M + sum(skipped)``. Reasons: ``hidden`` (name starts with a dot), ``not_media`` (ffprobe finds
    no audio or video stream; text and manifest files are not probed), ``image`` (a still image),
    ``not_a_file`` (FIFO, socket, broken link), ``extension_not_listed`` (a remote folder's file without
    a listed extension: remote files are not probed), ``duplicate`` (the same URI given twice)."""
    exts = tuple(e.lower() for e in extensions)
    skipped: Counter = Counter()
    out: list[str] = []
    for item in inputs:
        if _is_uri(item):
            import fsspec

            fs, _, paths = fsspec.get_fs_token_paths(item)
            if fs.isdir(paths[0]):
                proto = item.split("://", 1)[0]
                found = fs.find(paths[0])
                keep = [p for p in found if p.lower().endswith(exts)]
                skipped["extension_not_listed"] += len(found) - len(keep)
                out += [f"{proto}://{p}" for p in keep]
            else:
                out.append(item)
            continue
        path = os.path.abspath(item[len("file://"):] if item.startswith("file://") else item)
        if os.path.isdir(path):
            out += _scan_folder(path, exts, skipped, probe_timeout_s)
        elif path.lower().endswith(MANIFEST_TEXT + (".parquet",)) and os.path.isfile(path):
            out += _read_manifest(path)
        else:
            out.append(path)  # missing files are kept: they become 'not_found' rejects, never silent drops
    uniq = sorted(set(out))
    if len(out) > len(uniq):
        skipped["duplicate"] += len(out) - len(uniq)
    tally = {"files_seen": len(uniq) + sum(skipped.values()), "media": len(uniq), "skipped": dict(sorted(skipped.items()))}
    return uniq, tally


def expand_inputs(inputs: list[str], extensions: list[str]) -> list[str]:
    """The URIs of :func:`collect_inputs`, without the accounting."""
    return collect_inputs(inputs, extensions)[0]
