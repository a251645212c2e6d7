"""Vocal separation: demucs (HTDemucs or a bag of models) loaded from a local directory, run on the CPU in
bounded chunks, returning the vocals stem.

The model directory is a demucs "repo" folder, exactly what ``demucs.pretrained.get_model(name,
repo=dir)`` reads: ``<sig>-<sha8>.th`` checkpoints (saved with ``demucs.states.save_with_checksum``) and,
for bags such as the released ``htdemucs``, a ``<name>.yaml`` listing their signatures. Nothing is
downloaded. demucs checkpoints are pickles (``torch.load(weights_only=False)`` inside demucs): only point
the config at model directories you trust.

Without a model (``audio.separation: none``, no ``demucs_model_dir``, or the directory missing) callers
use the mixture itself and record ``separation: none`` in provenance (see operators/audio.py).

Long shots are processed in chunks of ``chunk_s`` seconds (each decoded on its own, with context on both
sides) joined by :func:`overlap_add` with ``overlap_s`` of linear crossfade, so the model's input memory
is bounded by the chunk length whatever the shot length; inside a chunk demucs' own
``apply_model(split=True)`` splits into the model's training segments. Each chunk is normalised by its
own mean/std and rescaled after (as ``demucs.separate`` does for a whole track).
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.registry import MissingModelError, ResolvedModel, user_model

VOCALS = "vocals"


def resolve_model_dir(path: str, settings=None) -> Path:
    """A configured model directory: absolute, relative to the working directory, or relative to the
    model directory (``models.dir`` / ``$LPM_MODEL_DIR``)."""
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists() or settings is None:
        return p
    return settings.models.resolved_dir() / p


@dataclass
class Separator:
    """A loaded separation model and what provenance needs to know about it."""

    model: Any
    name: str
    resolved: ResolvedModel
    samplerate: int
    audio_channels: int
    sources: list[str]
    chunk_s: float = 30.0
    overlap_s: float = 1.0
    segment_overlap: float = 0.25
    params: dict[str, Any] = field(default_factory=dict)

    def separate_chunk(self, x: np.ndarray) -> np.ndarray:
        """[channels, n] float32 (normalised) -> [sources, channels, n] with demucs.apply.apply_model."""
        import torch
        from demucs.apply import apply_model

        with torch.inference_mode():
            out = apply_model(self.model, torch.from_numpy(np.ascontiguousarray(x))[None], shifts=0, split=True,
                              overlap=self.segment_overlap, progress=False, device="cpu")
        return out[0].numpy()

    def vocals(self, mix: np.ndarray) -> np.ndarray:
        """Vocals of one [channels, n] chunk at the model's rate, as [channels, n] float32."""
        return separate_source(mix, self.separate_chunk, self.sources.index(VOCALS))


def separate_source(mix: np.ndarray, separate_chunk: Callable[[np.ndarray], np.ndarray], source_index: int) -> np.ndarray:
    """One source of a [channels, n] mixture. The input is normalised by the mean/std of its mono mix
    and the output rescaled, as ``demucs.separate`` does."""
    mix = np.asarray(mix, dtype=np.float32)
    if mix.ndim != 2:
        raise ValueError(f"mix must be [channels, samples], got shape {mix.shape}")
    if mix.shape[1] == 0:
        return np.zeros_like(mix)
    ref = mix.mean(axis=0)
    mean, std = float(ref.mean()), float(ref.std())
    std = std if std > 1e-8 else 1.0
    est = np.asarray(separate_chunk((mix - mean) / std), dtype=np.float32)[source_index]
    n = mix.shape[1]
    if est.shape[-1] != n:  # models that trim or pad: align to the input
        est = est[:, :n] if est.shape[-1] > n else np.pad(est, ((0, 0), (0, n - est.shape[-1])))
    return est * std + mean


def overlap_add(n: int, chunk: int, overlap: int, produce: Callable[[int, int], np.ndarray],
                check: Callable[[], None] | None = None) -> np.ndarray:
    """Build a 1-D signal of n samples from chunks [i0, i1) of at most ``chunk`` samples that overlap by
    ``overlap`` samples; ``produce(i0, i1)`` returns the chunk's i1 - i0 samples. Overlaps are crossfaded
    linearly. ``check`` runs before each chunk (a Deadline.check). Memory: the output plus one chunk."""
    out = np.zeros(n, dtype=np.float32)
    if n <= 0:
        return out
    chunk = max(1, int(chunk))
    ov = max(0, min(int(overlap), chunk // 2))
    weight = np.zeros(n, dtype=np.float32)
    i0 = 0
    while True:
        if check is not None:
            check()
        i1 = min(n, i0 + chunk)
        y = np.asarray(produce(i0, i1), dtype=np.float32)
        if len(y) != i1 - i0:
            y = y[: i1 - i0] if len(y) > i1 - i0 else np.pad(y, (0, i1 - i0 - len(y)))
        w = np.ones(i1 - i0, dtype=np.float32)
        if i0 > 0 and ov > 0:  # fade in over the overlap with the previous chunk
            k = min(ov, i1 - i0)
            w[:k] = (np.arange(k, dtype=np.float32) + 0.5) / ov
        if i1 < n and ov > 0:  # fade out over the overlap with the next chunk
            w[-ov:] = np.minimum(w[-ov:], (ov - np.arange(ov, dtype=np.float32) - 0.5) / ov)
        out[i0:i1] += y * w
        weight[i0:i1] += w
        if i1 >= n:
            break
        i0 += chunk - ov
    return out / np.maximum(weight, 1e-6)


def separation_choice(cfg) -> str:
    """The separation asked for by an AudioSettings: ``separation``, except that the default ('dtln') left
    unset while ``demucs_model_dir`` is configured means demucs (the user supplied its weights)."""
    if cfg.separation == "dtln" and cfg.demucs_model_dir and "separation" not in cfg.model_fields_set:
        return "demucs"
    return cfg.separation


def load_separator(settings) -> Separator:
    """The demucs model of ``settings.audio``. Raises MissingModelError when it is not configured or the
    directory/checkpoint is absent (callers fall back to no separation and record it)."""
    cfg = settings.audio
    if separation_choice(cfg) != "demucs" or not cfg.demucs_model_dir:
        raise MissingModelError("demucs", Path(cfg.demucs_model_dir or "<audio.demucs_model_dir unset>"),
                                "is not configured (audio.separation / audio.demucs_model_dir)")
    root = resolve_model_dir(cfg.demucs_model_dir, settings)
    if not root.is_dir():
        raise MissingModelError("demucs", root, "is missing (a demucs repo folder with .th checkpoints)")
    resolved = user_model(root, "demucs")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from demucs.pretrained import get_model
    from demucs.repo import ModelLoadingError

    try:
        model = get_model(cfg.demucs_model_name, repo=root)
    except (ModelLoadingError, FileNotFoundError, KeyError) as exc:
        raise MissingModelError("demucs", root / cfg.demucs_model_name, f"could not be loaded ({exc})") from exc
    except SystemExit as exc:  # demucs.utils.fatal() exits on a bad repo folder
        raise MissingModelError("demucs", root, f"could not be loaded ({exc})") from exc
    model.eval()
    if cfg.torch_threads:
        torch.set_num_threads(int(cfg.torch_threads))
    sources = list(model.sources)
    if VOCALS not in sources:
        raise MissingModelError("demucs", root / cfg.demucs_model_name, f"has no '{VOCALS}' source (sources: {sources})")
    return Separator(model=model, name=f"demucs:{cfg.demucs_model_name}", resolved=resolved,
                     samplerate=int(model.samplerate), audio_channels=int(model.audio_channels), sources=sources,
                     chunk_s=cfg.separation_chunk_s, overlap_s=cfg.separation_overlap_s,
                     params={"model_class": type(model).__name__, "samplerate": int(model.samplerate),
                             "audio_channels": int(model.audio_channels), "sources": sources,
                             "chunk_s": cfg.separation_chunk_s, "overlap_s": cfg.separation_overlap_s,
                             "segment_overlap": 0.25, "shifts": 0})


def sdr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Signal-to-distortion ratio in dB (plain SDR: 10 log10 |s|^2 / |s - s_hat|^2) over the common length."""
    n = min(len(estimate), len(reference))
    s = np.asarray(reference[:n], np.float64)
    e = np.asarray(estimate[:n], np.float64)
    num = float(np.sum(s * s))
    den = float(np.sum((s - e) ** 2))
    if den <= 0:
        return float("inf")
    return 10.0 * np.log10(max(num, 1e-20) / den)


# ----------------------------------------------------------------------------- ONNX voice isolators
# DTLN (breizhn/DTLN) and GTCRN (Xiaobin-Rong/gtcrn) are 16 kHz mono speech enhancers: they keep the voice
# and suppress noise/music (they are not music separators: the voice of a second person is kept too).
# They are streaming models run frame by frame in onnxruntime with their recurrent state carried across
# frames; each chunk handed to them starts from zero state (the separation stage gives every chunk
# ``separation_context_s`` of lead-in, which covers the state's warm-up).
ISOLATORS = ("dtln", "gtcrn")


def _onnx_session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def _zeros_for(inp) -> np.ndarray:
    """Zero state for an onnxruntime input (symbolic dims, if any, taken as 1)."""
    return np.zeros([d if isinstance(d, int) and d > 0 else 1 for d in inp.shape], dtype=np.float32)


class DtlnRunner:
    """DTLN, exactly as breizhn/DTLN real_time_processing_onnx.py: blocks of 512 samples every 128; stage 1
    maps the block's magnitude spectrum (+ its LSTM state) to a mask, the masked spectrum (with the
    input's phase) goes back to the time domain, stage 2 maps that block (+ its state) to an output block,
    and output blocks are overlap-added. The algorithmic delay (block - shift = 384 samples) is removed,
    so output sample i lines up with input sample i."""

    block = 512
    shift = 128
    samplerate = 16000

    def __init__(self, path_1: Path, path_2: Path, threads: int = 1):
        self.s1 = _onnx_session(path_1, threads)
        self.s2 = _onnx_session(path_2, threads)
        self.in1 = [i.name for i in self.s1.get_inputs()]  # [magnitude, state]
        self.in2 = [i.name for i in self.s2.get_inputs()]  # [time block, state]
        self.out1 = [o.name for o in self.s1.get_outputs()]  # [mask, state]
        self.out2 = [o.name for o in self.s2.get_outputs()]  # [block, state]
        self.state1_zero = _zeros_for(self.s1.get_inputs()[1])
        self.state2_zero = _zeros_for(self.s2.get_inputs()[1])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        n = len(x)
        if n == 0:
            return np.zeros(0, np.float32)
        B, S = self.block, self.shift
        delay = B - S
        blocks = -(-(n + delay) // S)
        audio = np.zeros(blocks * S, np.float32)
        audio[:n] = x
        out = np.zeros(blocks * S, np.float32)
        in_buf = np.zeros(B, np.float32)
        out_buf = np.zeros(B, np.float32)
        st1, st2 = self.state1_zero.copy(), self.state2_zero.copy()
        r1, r2 = self.s1.run, self.s2.run
        for k in range(blocks):
            in_buf[:-S] = in_buf[S:]
            in_buf[-S:] = audio[k * S:(k + 1) * S]
            spec = np.fft.rfft(in_buf)
            mag = np.abs(spec).astype(np.float32).reshape(1, 1, -1)
            mask, st1 = r1(self.out1, {self.in1[0]: mag, self.in1[1]: st1})
            est = np.fft.irfft(spec * mask.reshape(-1)).astype(np.float32).reshape(1, 1, -1)
            blk, st2 = r2(self.out2, {self.in2[0]: est, self.in2[1]: st2})
            out_buf[:-S] = out_buf[S:]
            out_buf[-S:] = 0.0
            out_buf += blk.reshape(-1)
            out[k * S:(k + 1) * S] = out_buf[:S]
        return out[delay:delay + n].astype(np.float32)


class GtcrnRunner:
    """GTCRN streaming model (Xiaobin-Rong/gtcrn stream/): STFT 512 / hop 256 with a sqrt-Hann window
    (centred, reflect padding, as torch.stft), one frame [1, 257, 1, 2] (real, imag) per call with its
    conv / temporal-attention / inter-band caches carried across frames; the enhanced frames go back by
    inverse STFT (the squared window sums to 1 at hop 256). Same length as the input."""

    n_fft = 512
    hop = 256
    samplerate = 16000

    def __init__(self, path: Path, threads: int = 1):
        self.sess = _onnx_session(path, threads)
        ins = self.sess.get_inputs()
        self.mix_name = ins[0].name
        self.cache_names = [i.name for i in ins[1:]]
        self.cache_zero = [_zeros_for(i) for i in ins[1:]]
        self.out_names = [o.name for o in self.sess.get_outputs()]  # [enh, caches...] in the inputs' order
        self.window = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.n_fft) / self.n_fft)).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32).reshape(-1)
        n = len(x)
        if n == 0:
            return np.zeros(0, np.float32)
        N, H, w = self.n_fft, self.hop, self.window
        half = N // 2
        xp = np.pad(x, (half, half), mode="reflect" if n > half else "constant")
        frames = 1 + (len(xp) - N) // H
        if (len(xp) - N) % H:
            frames += 1
        xp = np.pad(xp, (0, (frames - 1) * H + N - len(xp)))
        caches = [c.copy() for c in self.cache_zero]
        y = np.zeros(len(xp), np.float64)
        wsum = np.zeros(len(xp), np.float64)
        run = self.sess.run
        for t in range(frames):
            seg = xp[t * H:t * H + N] * w
            spec = np.fft.rfft(seg)
            frame = np.stack([spec.real, spec.imag], axis=-1).astype(np.float32).reshape(1, -1, 1, 2)
            outs = run(self.out_names, {self.mix_name: frame, **dict(zip(self.cache_names, caches))})
            enh, caches = outs[0].reshape(-1, 2), list(outs[1:])
            y[t * H:t * H + N] += np.fft.irfft(enh[:, 0] + 1j * enh[:, 1], N) * w
            wsum[t * H:t * H + N] += w.astype(np.float64) ** 2
        y = y / np.maximum(wsum, 1e-8)
        return y[half:half + n].astype(np.float32)


@dataclass
class OnnxIsolator:
    """An ONNX voice isolator with the interface separate_span() uses (samplerate, audio_channels, chunk_s,
    overlap_s, vocals) and what provenance records (name, resolved, params)."""

    runner: Any
    name: str
    resolved: ResolvedModel
    samplerate: int = 16000
    audio_channels: int = 1
    chunk_s: float = 30.0
    overlap_s: float = 1.0
    params: dict[str, Any] = field(default_factory=dict)

    def isolate(self, x: np.ndarray) -> np.ndarray:
        """Mono 16 kHz float32 -> the isolated voice, same length."""
        return self.runner(np.asarray(x, dtype=np.float32).reshape(-1))

    def vocals(self, mix: np.ndarray) -> np.ndarray:
        """[channels, n] at 16 kHz -> [1, n] (channels downmixed by their mean first)."""
        mix = np.asarray(mix, dtype=np.float32)
        mono = mix.mean(axis=0) if mix.ndim == 2 else mix.reshape(-1)
        return self.isolate(mono)[None]


def load_isolator(settings, name: str | None = None) -> OnnxIsolator:
    """A registered ONNX voice isolator ('dtln' or 'gtcrn'), resolved (and sha256-checked) through the
    registry in the model directory. Raises MissingModelError when its files are absent or corrupt."""
    from models.registry import resolve_for

    cfg = settings.audio
    name = name or cfg.separation
    if name not in ISOLATORS:
        raise ValueError(f"not an ONNX isolator: {name!r} (one of {ISOLATORS})")
    resolved = resolve_for(settings, name)
    threads = int(getattr(cfg, "isolator_threads", 1) or 1)
    try:
        if name == "dtln":
            runner = DtlnRunner(resolved.paths[0], resolved.paths[1], threads)
            params = {"samplerate": 16000, "block": DtlnRunner.block, "shift": DtlnRunner.shift,
                      "delay_compensated_samples": DtlnRunner.block - DtlnRunner.shift}
        else:
            runner = GtcrnRunner(resolved.paths[0], threads)
            params = {"samplerate": 16000, "n_fft": GtcrnRunner.n_fft, "hop": GtcrnRunner.hop, "window": "sqrt-hann"}
    except Exception as exc:  # onnxruntime cannot read the file
        raise MissingModelError(name, resolved.path, f"could not be loaded ({exc})") from exc
    params.update({"separation": name, "chunk_s": cfg.separation_chunk_s, "overlap_s": cfg.separation_overlap_s,
                   "threads": threads, "runtime": "onnxruntime"})
    return OnnxIsolator(runner=runner, name=name, resolved=resolved, chunk_s=cfg.separation_chunk_s,
                        overlap_s=cfg.separation_overlap_s, params=params)


def si_sdr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR in dB over the common length (both made zero-mean)."""
    n = min(len(estimate), len(reference))
    s = np.asarray(reference[:n], np.float64)
    e = np.asarray(estimate[:n], np.float64)
    s, e = s - s.mean(), e - e.mean()
    ss = float(np.dot(s, s))
    if ss <= 0:
        return float("nan")
    target = (float(np.dot(e, s)) / ss) * s
    noise = e - target
    return 10.0 * np.log10(max(float(np.dot(target, target)), 1e-20) / max(float(np.dot(noise, noise)), 1e-20))
