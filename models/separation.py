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


def load_separator(settings) -> Separator:
    """The demucs model of ``settings.audio``. Raises MissingModelError when it is not configured or the
    directory/checkpoint is absent (callers fall back to no separation and record it)."""
    cfg = settings.audio
    if cfg.separation != "demucs" or not cfg.demucs_model_dir:
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
