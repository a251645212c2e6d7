"""Per-row decoding and features: clip video at a fixed size/fps, causal log-mel audio, text, references.

Everything here works on one clip row (a dict keyed by CLIPS column names) and returns numpy arrays, so
the same code serves the torch IterableDataset, Ray Data and the streaming API.
"""
from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass

import numpy as np

from train.config import DataConfig

STATES = {"speak": 0, "listen": 1, "idle": 2, "discard": 3}
UNKNOWN_STATE = 4


class RowError(Exception):
    """A row cannot become a training sample; `reason` is a short code counted by the reader."""

    def __init__(self, reason: str, message: str = ""):
        super().__init__(message or reason)
        self.reason = reason


# ------------------------------------------------------------------------------------------- video
def _read_media_bytes(row: dict) -> bytes:
    data = row.get("video_bytes")
    if data:
        return data
    uri = row.get("video_uri")
    if not uri:
        raise RowError("no_media", "row has neither video_bytes nor video_uri")
    try:
        import fsspec

        with fsspec.open(uri, "rb") as fh:
            return fh.read()
    except (OSError, ValueError) as exc:
        raise RowError("media_unreadable", str(exc)) from exc


def decode_video(data: bytes, size_px: int, fps: float, max_frames: int | None = None) -> np.ndarray:
    """Decode MP4 bytes in-process (PyAV): uint8 [T, S, S, 3] RGB, resampled to fps by nearest earlier frame."""
    import av

    frames: list[np.ndarray] = []
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            stream = container.streams.video[0]
            stream.thread_type = "SLICE"
            t0 = None
            next_k = 0
            for frame in container.decode(stream):
                t = frame.time if frame.time is not None else (frame.pts or 0) * float(stream.time_base or 0)
                if t0 is None:
                    t0 = t
                rel = t - t0
                # emit this frame for every output slot whose time it has reached (duplicates on low source fps)
                img = None
                while rel + 0.5 / max(fps, 1e-6) >= next_k / fps:
                    if img is None:
                        img = _frame_rgb(frame, size_px)
                    frames.append(img)
                    next_k += 1
                    if max_frames and next_k >= max_frames:
                        return np.stack(frames)
    except (av.error.FFmpegError, IndexError, ValueError) as exc:
        raise RowError("video_decode_error", str(exc)[:300]) from exc
    if not frames:
        raise RowError("video_decode_error", "no frames decoded")
    return np.stack(frames)


def _frame_rgb(frame, size_px: int) -> np.ndarray:
    """A decoded frame as uint8 RGB [S, S, 3]. yuv420p goes through OpenCV (3x cheaper than a swscale
    context per frame); other pixel formats through PyAV."""
    import cv2

    if frame.format.name == "yuv420p" and frame.width % 2 == 0 and frame.height % 2 == 0:
        rgb = cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2RGB_I420)
        return cv2.resize(rgb, (size_px, size_px), interpolation=cv2.INTER_AREA)
    return frame.to_ndarray(width=size_px, height=size_px, format="rgb24")


def decode_image(jpeg: bytes, size_px: int) -> np.ndarray | None:
    import cv2

    if not jpeg:
        return None
    img = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        return None
    img = cv2.resize(img, (size_px, size_px), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[:, :, ::-1])


# ------------------------------------------------------------------------------------------- audio
def decode_audio_bytes(data: bytes | None, sample_rate: int) -> np.ndarray | None:
    """FLAC (or any audio container) bytes to mono float32 at sample_rate, in-process with PyAV (an ffmpeg
    subprocess as fallback); None when absent or undecodable. (libsndfile cannot be used: FLAC written
    to a pipe has no total-samples field and soundfile then fails.)"""
    if not data:
        return None
    try:
        import av

        out = []
        with av.open(io.BytesIO(data), mode="r") as container:
            rs = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            for frame in container.decode(audio=0):
                out += [o.to_ndarray().reshape(-1) for o in rs.resample(frame)]
            out += [o.to_ndarray().reshape(-1) for o in rs.resample(None)]
        if out:
            return np.concatenate(out).astype(np.float32)
    except Exception:  # noqa: BLE001 - any PyAV failure falls back to the ffmpeg binary
        pass
    try:
        from operators.media import MediaError, decode_flac

        return decode_flac(data, sample_rate=sample_rate)
    except (MediaError, OSError):
        return None


class CausalMel:
    """Log-mel features, one vector per video frame (mels_per_frame mel frames stacked).

    Mel frame j covers samples [(j+1)*hop - win, (j+1)*hop): only the past, so features of a stream fed
    chunk by chunk are identical to features of the whole signal (what the streaming API relies on)."""

    def __init__(self, cfg: DataConfig):
        self.sr = cfg.sample_rate
        self.mpf = cfg.mels_per_frame
        hop = cfg.sample_rate / (cfg.fps * cfg.mels_per_frame)
        if abs(hop - round(hop)) > 1e-6:
            raise ValueError("sample_rate / (fps * mels_per_frame) must be an integer hop")
        self.hop = int(round(hop))
        self.win = cfg.mel_win
        self.n_mels = cfg.n_mels
        self.samples_per_frame = self.hop * self.mpf
        n_fft = 1 << (self.win - 1).bit_length()
        self.n_fft = n_fft
        self.window = np.hanning(self.win).astype(np.float32)
        self.fb = _mel_filterbank(self.sr, n_fft, self.n_mels)  # [n_fft//2+1, n_mels]

    @property
    def dim(self) -> int:
        return self.n_mels * self.mpf

    def frames(self, samples: np.ndarray, n_frames: int, history: np.ndarray | None = None) -> np.ndarray:
        """Features of video frames 0..n_frames-1 of `samples` (zero-padded/cut to length), given the
        `history` samples that precede them (zeros when None): float32 [n_frames, n_mels*mpf]."""
        need = n_frames * self.samples_per_frame
        x = np.zeros(need, dtype=np.float32)
        if samples is not None and len(samples):
            k = min(need, len(samples))
            x[:k] = samples[:k]
        h = np.zeros(self.win, dtype=np.float32)
        if history is not None and len(history):
            k = min(self.win, len(history))
            h[self.win - k:] = history[-k:]
        full = np.concatenate([h, x])
        n_mel = n_frames * self.mpf
        # full = [win samples of history | x]: segment j ends at (j+1)*hop in x, i.e. at (j+1)*hop + win in full
        idx = (np.arange(n_mel)[:, None] + 1) * self.hop + np.arange(self.win)[None, :]
        segs = full[idx] * self.window
        spec = np.abs(np.fft.rfft(segs, n=self.n_fft, axis=1)) ** 2
        mel = np.log10(spec @ self.fb + 1e-6)
        mel = (mel + 4.0) / 4.0  # fixed affine: roughly zero-mean unit-scale for speech at -20..-30 dBFS
        return mel.reshape(n_frames, self.mpf * self.n_mels).astype(np.float32)


def _mel_filterbank(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    def hz2mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def mel2hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    mels = np.linspace(hz2mel(40.0), hz2mel(sr / 2 * 0.95), n_mels + 2)
    hz = mel2hz(mels)
    fb = np.zeros((len(freqs), n_mels), dtype=np.float32)
    for m in range(n_mels):
        lo, c, hi = hz[m], hz[m + 1], hz[m + 2]
        up = (freqs - lo) / max(c - lo, 1e-6)
        down = (hi - freqs) / max(hi - c, 1e-6)
        fb[:, m] = np.maximum(0.0, np.minimum(up, down))
    fb /= np.maximum(fb.sum(axis=0, keepdims=True), 1e-6)
    return fb


# -------------------------------------------------------------------------------------------- text
def hashed_text_embedding(text: str, dim: int) -> np.ndarray:
    """Deterministic bag-of-words embedding (signed feature hashing of lowercase words and bigrams)."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    grams = words + [a + " " + b for a, b in zip(words, words[1:])]
    v = np.zeros(dim, dtype=np.float32)
    for g in grams:
        h = hashlib.blake2b(g.encode(), digest_size=8).digest()
        i = int.from_bytes(h[:4], "little") % dim
        v[i] += 1.0 if h[4] & 1 else -1.0
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def text_vector(row: dict, cfg: DataConfig) -> tuple[np.ndarray, float]:
    emb = row.get("text_embedding")
    if emb is not None and len(emb):
        v = np.zeros(cfg.text_dim, dtype=np.float32)
        a = np.asarray(emb, dtype=np.float32)[: cfg.text_dim]
        v[: len(a)] = a
        n = float(np.linalg.norm(v))
        if np.isfinite(n) and n > 0:
            return v / n, 1.0
    cap = row.get("caption")
    if cfg.caption_hash_text and cap:
        return hashed_text_embedding(cap, cfg.text_dim), 1.0
    return np.zeros(cfg.text_dim, dtype=np.float32), 0.0


# -------------------------------------------------------------------------------------- the sample
@dataclass
class DecodedClip:
    frames: np.ndarray  # uint8 [N, S, S, 3] at cfg.fps
    speak: np.ndarray | None  # float32 samples
    listen: np.ndarray | None
    states: np.ndarray  # int8 [N]
    text: np.ndarray
    text_mask: float
    refs: list[np.ndarray]
    feats: dict | None = None  # causal mel of the whole clip per stream, computed once on first use


def decode_row(row: dict, cfg: DataConfig) -> DecodedClip:
    """Decode everything a row offers. Missing columns degrade (see docs/TRAIN.md), bad media raise RowError."""
    frames = decode_video(_read_media_bytes(row), cfg.size_px, cfg.fps)
    if len(frames) < cfg.min_clip_frames:
        raise RowError("too_short", f"{len(frames)} frames at {cfg.fps} fps")
    n = len(frames)
    speak = decode_audio_bytes(row.get("speak_audio"), cfg.sample_rate)
    listen = decode_audio_bytes(row.get("listen_audio"), cfg.sample_rate)
    states = np.full(n, UNKNOWN_STATE, dtype=np.int8)
    fs = row.get("frame_states")
    clip_fps = float(row.get("clip_fps") or row.get("fps") or 25.0)
    if fs:
        for k in range(n):
            src = min(len(fs) - 1, int(round(k / cfg.fps * clip_fps)))
            states[k] = STATES.get(fs[src], UNKNOWN_STATE)
    text, text_mask = text_vector(row, cfg)
    refs = []
    for ref in row.get("references") or []:
        if len(refs) >= cfg.max_refs:
            break
        img = decode_image((ref or {}).get("jpeg"), cfg.size_px)
        if img is not None:
            refs.append(img)
    return DecodedClip(frames, speak, listen, states, text, text_mask, refs)


def make_sample(clip: DecodedClip, cfg: DataConfig, rng: np.random.Generator, mel: CausalMel) -> dict:
    """Cut one training window of cfg.num_frames frames (random start) and build the model inputs."""
    T, n = cfg.num_frames, len(clip.frames)
    start = int(rng.integers(0, n - T + 1)) if n >= T else 0
    idx = np.arange(start, start + T)
    valid = idx < n
    idx_c = np.minimum(idx, n - 1)
    video = clip.frames[idx_c]
    weight = valid.astype(np.float32)
    states = clip.states[idx_c]
    weight[states == STATES["discard"]] = 0.0
    if clip.feats is None:
        # causal features: those of frames start..start+T-1 of the whole clip equal a window computed with
        # the preceding audio as history, so one pass per clip serves every window cut from it
        clip.feats = {name: (mel.frames(audio, n + T) if audio is not None else None)
                      for name, audio in (("speak", clip.speak), ("listen", clip.listen))}
    feats, masks = {}, {}
    for name in ("speak", "listen"):
        full = clip.feats[name]
        if full is None:
            feats[name] = np.zeros((T, mel.dim), dtype=np.float32)
            masks[name] = 0.0
            continue
        f = full[start: start + T].copy()
        f[~valid] = 0.0
        feats[name] = f
        masks[name] = 1.0
    S = cfg.size_px
    refs = np.zeros((cfg.max_refs, S, S, 3), dtype=np.uint8)
    ref_mask = np.zeros(cfg.max_refs, dtype=np.float32)
    pool = list(clip.refs)
    if not pool and cfg.ref_from_clip and cfg.max_refs:
        outside = [k for k in range(n) if k < start or k >= start + T]
        if outside:
            # the frame farthest from the window: the paper's "outside the training clip" rule, within the clip
            far = max(outside, key=lambda k: min(abs(k - start), abs(k - (start + T - 1))))
            pool = [clip.frames[far]]
    for r, img in enumerate(pool[: cfg.max_refs]):
        refs[r] = img
        ref_mask[r] = 1.0
    return {
        "video": np.ascontiguousarray(video),
        "frame_weight": weight,
        "states": states.astype(np.int64),
        "first": np.ascontiguousarray(video[0]),
        "refs": refs,
        "ref_mask": ref_mask,
        "text": clip.text,
        "text_mask": np.float32(clip.text_mask),
        "speak": feats["speak"],
        "speak_mask": np.float32(masks["speak"]),
        "listen": feats["listen"],
        "listen_mask": np.float32(masks["listen"]),
        "start": np.int64(start),
    }
