"""LR-ASD active speaker detection: our own PyTorch module, a strict and safe checkpoint loader, the
audio (MFCC) and visual (face crop) front ends, and multi-window scoring as the reference demo does it.

The parameter names and shapes are those of the official checkpoints (Junhua-Liao/LR-ASD @ 1b6dcd2,
``weight/pretrain_AVA.model`` and ``weight/finetuning_TalkSet.model``; registry names ``lr-asd-ava`` and
``lr-asd-talkset``): 168 tensors under ``model.`` (the network), ``lossAV.FC`` (audio-visual head) and
``lossV.FC`` (visual-only head). :func:`load_lr_asd` reads them with ``torch.load(weights_only=True)`` and
``load_state_dict(strict=True)``, so every tensor is used and none is missing.

Network (0.837M parameters):

* visual encoder over grayscale 112x112 faces at 25 fps, normalised (x/255 - 0.4161)/0.1688: three
  blocks of split convolutions (spatial 1xKxK twice, then temporal Kx1x1 twice; K = 5 then 3), each
  followed by BN+ReLU; the first spatial conv has stride 2, max-pool (1x3x3, stride 2) after blocks 1
  and 2, spatial global max-pool at the end -> [B, T, 128].
* audio encoder over 13 MFCC at 100 Hz laid out [B, 1, 13, 4T]: three blocks of split 2-D convolutions
  (along the cepstrum Kx1, then along time 1xK), max-pool along time (3, stride 2) after blocks 1 and 2
  (100 Hz -> 25 Hz), mean over the cepstrum -> [B, T, 128].
* fusion: concat(audio, visual) -> 256, gated by sigmoid(BN(conv1x1)) channel attention.
* detector: forward GRU and backward GRU (hidden 64 each) fused the same way -> 128.
* heads: ``lossAV.FC`` 128 -> 2 on the fused features; ``lossV.FC`` 128 -> 2 on visual features alone.
  The reference demo's score is the raw class-1 logit of the audio-visual head (threshold 0).

Front ends, exactly as the checkpoints were trained (the reference demo, Columbia_test.py):

* audio: 16 kHz mono on the int16 scale, ``python_speech_features.mfcc`` with 13 cepstra, 25 ms
  window, 10 ms hop, 26 mel filters, 512-point FFT, pre-emphasis 0.97, lifter 22, c0 replaced by the log
  frame energy (:func:`mfcc`; tests check it against python_speech_features numerically).
* video: the face box (centre cx, cy; half size s = max(w, h)/2) is cut as the square of side
  ``2*s*(1+crop_scale)`` from cy - s to cy + s*(1 + 2*crop_scale), resized to 224, grayscale, and its
  central 112x112 is kept (:func:`crop_faces`; crop_scale 0.40 in the demo).
* scores: for each window length in 1..6 s the clip is cut into consecutive windows, each window is
  scored on its own, and the per-frame logits are averaged over window lengths (:meth:`ASDScorer.score`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from models.registry import ResolvedModel, resolve, resolve_for

CHECKPOINTS = {"pretrain_AVA": "lr-asd-ava", "finetuning_TalkSet": "lr-asd-talkset"}
VIDEO_FPS = 25
MFCC_RATE = 100  # frames per second (10 ms hop); 4 MFCC frames per video frame
FACE_SIZE = 112
PIX_MEAN, PIX_STD = 0.4161, 0.1688
DEMO_WINDOWS_S = (1, 2, 3, 4, 5, 6)  # the demo's {1,1,1,2,2,2,3,3,4,5,6} is a Python set


# ------------------------------------------------------------------------------------------- network
def _bn(kind: str, c: int) -> nn.Module:
    cls = {"1d": nn.BatchNorm1d, "2d": nn.BatchNorm2d, "3d": nn.BatchNorm3d}[kind]
    return cls(c, momentum=0.01, eps=0.001)


class VisualBlock(nn.Module):
    """Spatial 1xKxK (s_1, s_2) then temporal Kx1x1 (t_1, t_2) 3-D convolutions, each BN + ReLU."""

    def __init__(self, cin: int, cout: int, k1: int = 5, k2: int = 3, downsample: bool = False):
        super().__init__()
        mid = cout // 2
        p1, p2 = k1 // 2, k2 // 2
        self.s_1 = nn.Conv3d(cin, mid, (1, k1, k1), stride=(1, 2, 2) if downsample else 1, padding=(0, p1, p1), bias=False)
        self.s_norm_1 = _bn("3d", mid)
        self.s_2 = nn.Conv3d(mid, cout, (1, k2, k2), padding=(0, p2, p2), bias=False)
        self.s_norm_2 = _bn("3d", cout)
        self.t_1 = nn.Conv3d(cout, cout, (k1, 1, 1), padding=(p1, 0, 0), bias=False)
        self.t_norm_1 = _bn("3d", cout)
        self.t_2 = nn.Conv3d(cout, cout, (k2, 1, 1), padding=(p2, 0, 0), bias=False)
        self.t_norm_2 = _bn("3d", cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T, H, W] -> [B, C', T, H', W']: the same arithmetic as the 3-D convolutions, run as 2-D ones
        (spatial over B*T frames, temporal over T with H*W as width): oneDNN's 2-D kernels are about 1.4x
        faster on CPU than its 3-D ones for these shapes (bench/conversation_cost.py)."""
        b, _, t, _, _ = x.shape
        y = x.transpose(1, 2).flatten(0, 1)  # [B*T, C, H, W]
        for conv, norm in ((self.s_1, self.s_norm_1), (self.s_2, self.s_norm_2)):
            y = torch.relu(norm_2d(norm, nn.functional.conv2d(y, conv.weight[:, :, 0], None, conv.stride[1:],
                                                               conv.padding[1:])))
        _, c, h, w = y.shape
        y = y.reshape(b, t, c, h * w).transpose(1, 2)  # [B, C, T, H*W]
        for conv, norm in ((self.t_1, self.t_norm_1), (self.t_2, self.t_norm_2)):
            y = torch.relu(norm_2d(norm, nn.functional.conv2d(y, conv.weight[:, :, :, 0], None, 1, (conv.padding[0], 0))))
        return y.reshape(b, c, t, h, w)


def norm_2d(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A BatchNorm3d's normalisation applied to a 4-D tensor (channels on axis 1), eval or train mode."""
    return nn.functional.batch_norm(x, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                                    norm.training, norm.momentum, norm.eps)


class AudioBlock(nn.Module):
    """Along the cepstrum Kx1 (m_1, m_2) then along time 1xK (t_1, t_2) 2-D convolutions, BN + ReLU."""

    def __init__(self, cin: int, cout: int, k1: int = 5, k2: int = 3):
        super().__init__()
        mid = cout // 2
        p1, p2 = k1 // 2, k2 // 2
        self.m_1 = nn.Conv2d(cin, mid, (k1, 1), padding=(p1, 0), bias=False)
        self.m_norm_1 = _bn("2d", mid)
        self.m_2 = nn.Conv2d(mid, cout, (k2, 1), padding=(p2, 0), bias=False)
        self.m_norm_2 = _bn("2d", cout)
        self.t_1 = nn.Conv2d(cout, cout, (1, k1), padding=(0, p1), bias=False)
        self.t_norm_1 = _bn("2d", cout)
        self.t_2 = nn.Conv2d(cout, cout, (1, k2), padding=(0, p2), bias=False)
        self.t_norm_2 = _bn("2d", cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv, norm in ((self.m_1, self.m_norm_1), (self.m_2, self.m_norm_2), (self.t_1, self.t_norm_1),
                           (self.t_2, self.t_norm_2)):
            x = torch.relu(norm(conv(x)))
        return x


class VisualEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1 = VisualBlock(1, 32, downsample=True)
        self.block2 = VisualBlock(32, 64)
        self.block3 = VisualBlock(64, 128)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    # frames either side of a frame that its embedding depends on: per block a 5- and a 3-tap temporal conv
    TEMPORAL_RADIUS = 3 * (2 + 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, T, H, W] normalised -> [B, T, 128]
        x = self.pool(self.block1(x))
        x = self.pool(self.block2(x))
        x = self.block3(x)
        return x.amax(dim=(3, 4)).transpose(1, 2)


class AudioEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.block1 = AudioBlock(1, 32)
        self.block2 = AudioBlock(32, 64)
        self.block3 = AudioBlock(64, 128)
        self.pool = nn.MaxPool2d((1, 3), stride=(1, 2), padding=(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 1, 13, 4T] -> [B, T, 128]
        x = self.pool(self.block1(x))
        x = self.pool(self.block2(x))
        x = self.block3(x)
        return x.mean(dim=2).transpose(1, 2)


class GatedConcat(nn.Module):
    """concat(a, b) on the feature axis, scaled by sigmoid(BN(1x1 conv)) channel attention."""

    def __init__(self, channels: int):
        super().__init__()
        self.attention = nn.Conv1d(channels, channels, kernel_size=1, bias=False)
        self.bn = _bn("1d", channels)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # [B, T, Ca], [B, T, Cb]
        x = torch.cat((a, b), dim=2).transpose(1, 2)
        gate = torch.sigmoid(self.bn(self.attention(x)))
        return (x * gate).transpose(1, 2)


class BiGRUDetector(nn.Module):
    def __init__(self, channels: int = 256):
        super().__init__()
        hidden = channels // 4
        self.gru_forward = nn.GRU(channels, hidden, num_layers=1, batch_first=True)
        self.gru_backward = nn.GRU(channels, hidden, num_layers=1, batch_first=True)
        self.attention = GatedConcat(channels // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, T, 256] -> [B, T, 128]
        fwd, _ = self.gru_forward(x)
        bwd, _ = self.gru_backward(torch.flip(x, dims=[1]))
        return self.attention(fwd, torch.flip(bwd, dims=[1]))


class OnnxVisualEncoder:
    """The visual encoder of a loaded network run by ONNX Runtime on CPU: the same weights, exported in
    memory from the module (nothing written, nothing downloaded), equal to the PyTorch pass to ~1e-6 and
    about 1.6x faster on CPU for these shapes (bench/conversation_cost.py). Inference only."""

    def __init__(self, encoder: VisualEncoder, threads: int = 1):
        import io
        import warnings

        import onnxruntime as ort

        buf = io.BytesIO()
        x = torch.zeros(1, 1, 2 * VisualEncoder.TEMPORAL_RADIUS + 4, FACE_SIZE, FACE_SIZE)
        was_training = encoder.training
        encoder.eval()
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(encoder, (x,), buf, input_names=["x"], output_names=["emb"], opset_version=17,
                              dynamic_axes={"x": {0: "b", 2: "t"}, "emb": {0: "b", 1: "t"}}, dynamo=False)
        encoder.train(was_training)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = max(1, int(threads))
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(buf.getvalue(), opts, providers=["CPUExecutionProvider"])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """[B, 1, T, 112, 112] normalised -> [B, T, 128]."""
        if x.shape[2] == 0:
            return torch.zeros(x.shape[0], 0, 128)
        return torch.from_numpy(self.session.run(None, {"x": np.ascontiguousarray(x.numpy(), np.float32)})[0])


VISUAL_ENGINES = ("torch", "onnxruntime")
VISUAL_CONTEXTS = ("window", "clip", "tiling", "clip_sync")  # ASDScorer: how the visual embeddings of the windows are made


class ASDNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.visualEncoder = VisualEncoder()
        self.audioEncoder = AudioEncoder()
        self.fusion = GatedConcat(256)
        self.detector = BiGRUDetector(256)
        self.visual_runner: OnnxVisualEncoder | None = None  # set by use_visual_engine("onnxruntime")

    def use_visual_engine(self, engine: str, threads: int = 1) -> None:
        """Run the visual encoder with 'torch' (this module) or 'onnxruntime' (an in-memory export of it;
        inference only: a pass that needs gradients always runs the module)."""
        if engine not in VISUAL_ENGINES:
            raise ValueError(f"visual engine must be one of {VISUAL_ENGINES}, not {engine!r}")
        self.visual_runner = OnnxVisualEncoder(self.visualEncoder, threads) if engine == "onnxruntime" else None

    def embed_visual(self, faces: torch.Tensor) -> torch.Tensor:
        """[B, T, 112, 112] gray 0..255 -> [B, T, 128]."""
        x = (faces.float().unsqueeze(1) / 255.0 - PIX_MEAN) / PIX_STD
        if self.visual_runner is not None and not (torch.is_grad_enabled() and x.requires_grad or self.training):
            return self.visual_runner(x)
        return self.visualEncoder(x)

    def embed_visual_long(self, faces: torch.Tensor, chunk: int = 250) -> torch.Tensor:
        """[T, 112, 112] -> [1, T, 128]: one pass over the whole track, in chunks of ``chunk`` frames with
        enough context either side (TEMPORAL_RADIUS) that the result equals one pass over all T frames
        (memory stays flat in the track length)."""
        t = int(faces.shape[0])
        halo = VisualEncoder.TEMPORAL_RADIUS + 1
        out = []
        for s in range(0, t, chunk):
            e = min(t, s + chunk)
            a, b = max(0, s - halo), min(t, e + halo)
            out.append(self.embed_visual(faces[a:b].unsqueeze(0))[:, s - a:s - a + (e - s)])
        return torch.cat(out, dim=1) if out else torch.zeros(1, 0, 128)

    def embed_audio(self, mfcc_feats: torch.Tensor) -> torch.Tensor:
        """[B, 4T, 13] MFCC -> [B, T, 128]."""
        return self.audioEncoder(mfcc_feats.float().unsqueeze(1).transpose(2, 3))

    def fuse(self, audio_emb: torch.Tensor, visual_emb: torch.Tensor) -> torch.Tensor:
        return self.detector(self.fusion(audio_emb, visual_emb))


class ClassHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.FC = nn.Linear(128, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw logit of class 1 (speaking) per frame."""
        return self.FC(x)[..., 1]


class LRASD(nn.Module):
    """The checkpoint's layout: ``model`` (network), ``lossAV`` (audio-visual head), ``lossV`` (visual head)."""

    def __init__(self):
        super().__init__()
        self.model = ASDNetwork()
        self.lossAV = ClassHead()
        self.lossV = ClassHead()

    @torch.no_grad()
    def forward(self, mfcc_feats: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """[B, 4T, 13], [B, T, 112, 112] -> [B, T] speaking logits."""
        return self.lossAV(self.model.fuse(self.model.embed_audio(mfcc_feats), self.model.embed_visual(faces)))


class CheckpointError(RuntimeError):
    """A checkpoint that does not match the module exactly (missing, unexpected or mis-shaped tensors)."""


def load_lr_asd(path: str | Path) -> LRASD:
    """Build the module and load a checkpoint strictly and safely (weights_only: tensors only, no pickle
    code). Raises CheckpointError when any tensor is missing, unexpected or of another shape."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(state).__name__}")
    state = {k[len("module."):] if k.startswith("module.") else k: v for k, v in state.items()}
    net = LRASD()
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or bad_shape:
        raise CheckpointError(f"{path}: checkpoint does not match LR-ASD: missing {missing[:5]}, unexpected "
                              f"{unexpected[:5]}, shape mismatch {bad_shape[:5]}")
    net.load_state_dict(state, strict=True)
    net.eval()
    return net


def resolve_checkpoint(settings, checkpoint: str) -> ResolvedModel:
    """Registry entry of a checkpoint named as in config (pretrain_AVA / finetuning_TalkSet)."""
    return resolve_for(settings, CHECKPOINTS[checkpoint])


# ------------------------------------------------------------------------------------- audio front end
def _mel(hz):
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def _hz(mel):
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def _mel_filterbank(nfilt: int, nfft: int, sample_rate: int) -> np.ndarray:
    points = _hz(np.linspace(_mel(0.0), _mel(sample_rate / 2.0), nfilt + 2))
    bins = np.floor((nfft + 1) * points / sample_rate).astype(np.int64)
    fb = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        for i in range(lo, mid):
            fb[j, i] = (i - lo) / (mid - lo)
        for i in range(mid, hi):
            fb[j, i] = (hi - i) / (hi - mid)
    return fb


_FB_CACHE: dict[tuple[int, int, int], np.ndarray] = {}


def mfcc(samples: np.ndarray, sample_rate: int = 16000, numcep: int = 13, win_s: float = 0.025, hop_s: float = 0.010,
         nfilt: int = 26, nfft: int = 512, preemph: float = 0.97, ceplifter: int = 22, int16_scale: bool = True) -> np.ndarray:
    """MFCC [N, numcep] float32 at 1/hop_s frames per second, python_speech_features 0.6 semantics.

    ``samples`` is mono float in [-1, 1]; with int16_scale they are multiplied by 32768 first (LR-ASD was
    trained on scipy.io.wavfile int16 samples; the scale only moves c0). N = 1 + ceil((len - win)/hop)."""
    from scipy.fft import dct

    x = np.asarray(samples, dtype=np.float64).reshape(-1)
    if int16_scale:
        x = x * 32768.0
    if x.size == 0:
        return np.zeros((0, numcep), np.float32)
    x = np.append(x[0], x[1:] - preemph * x[:-1])
    win = int(math.floor(win_s * sample_rate + 0.5))
    hop = int(math.floor(hop_s * sample_rate + 0.5))
    n = 1 if x.size <= win else 1 + int(math.ceil((x.size - win) / hop))
    pad = (n - 1) * hop + win
    x = np.concatenate([x, np.zeros(max(0, pad - x.size))])
    idx = np.arange(win)[None, :] + hop * np.arange(n)[:, None]
    frames = x[idx]
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    eps = np.finfo(float).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    key = (nfilt, nfft, sample_rate)
    if key not in _FB_CACHE:
        _FB_CACHE[key] = _mel_filterbank(nfilt, nfft, sample_rate)
    feat = power @ _FB_CACHE[key].T
    feat = np.where(feat == 0, eps, feat)
    cep = dct(np.log(feat), type=2, axis=1, norm="ortho")[:, :numcep]
    if ceplifter > 0:
        cep = cep * (1 + (ceplifter / 2.0) * np.sin(np.pi * np.arange(numcep) / ceplifter))
    cep[:, 0] = np.log(energy)
    return cep.astype(np.float32)


# ------------------------------------------------------------------------------------ visual front end
def crop_faces(frames: np.ndarray, boxes: np.ndarray, crop_scale: float = 0.40, pad_value: int = 110) -> np.ndarray:
    """Face crops as LR-ASD was trained on: [T, 112, 112] uint8 grayscale.

    frames: [T, H, W] gray or [T, H, W, 3] RGB uint8; boxes: [T, 4] face boxes x0, y0, x1, y1 in frame
    pixels (NaN rows: no face, the crop is filled with pad_value). See the module docstring for the
    geometry; outside the frame is filled with pad_value as in the demo."""
    import cv2

    t = len(frames)
    out = np.full((t, FACE_SIZE, FACE_SIZE), pad_value, np.uint8)
    for i in range(t):
        b = boxes[i]
        if not np.all(np.isfinite(b)):
            continue
        img = frames[i]
        if img.ndim == 3:
            img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
        s = max(b[2] - b[0], b[3] - b[1]) / 2.0
        if s < 2:
            continue
        cx, cy = (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0
        # the 224 crop spans [cy - s, cy + s(1+2c)] x [cx - s(1+c), cx + s(1+c)]; keep its central half
        half = s * (1 + crop_scale) / 2.0
        ccx, ccy = cx, cy + s * crop_scale
        x0, y0 = ccx - half, ccy - half
        scale = FACE_SIZE / (2 * half)
        m = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float32)
        out[i] = cv2.warpAffine(img, m, (FACE_SIZE, FACE_SIZE), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=pad_value)
    return out


# ---------------------------------------------------------------------------------------------- scoring
def shift_mfcc(feats: np.ndarray, shift_frames: int) -> np.ndarray:
    """MFCC [4T, 13] moved by shift_frames video frames (positive: the audio is taken that many frames
    later, i.e. the hypothesis "audio is late"); the gap is filled with the clip's quietest MFCC frame."""
    a = np.asarray(feats, np.float32)
    if not shift_frames:
        return a
    k = 4 * abs(int(shift_frames))
    quiet = a[int(np.argmin(a[:, 0]))][None, :] if len(a) else np.zeros((1, a.shape[1] if a.ndim == 2 else 13), np.float32)
    pad = np.repeat(quiet, k, axis=0)
    a = np.concatenate([a[k:], pad]) if shift_frames > 0 else np.concatenate([pad, a[:-k] if k < len(a) else a[:0]])
    return a[: len(feats)]


@dataclass
class VisualCache:
    """Visual embeddings of one face track, per window length (reused when only the audio changes)."""

    n_frames: int
    faces: np.ndarray | None = None  # [T, 112, 112] uint8, kept to re-embed a window cut short by the audio
    clip: torch.Tensor | None = None  # [1, T, 128] one pass over the track ("clip", "clip_sync") or its tiling ("tiling")
    tile: int | None = None  # "tiling", "clip_sync": the window length (s) whose windows are embedded on their own
    windows: dict[int, list[tuple[int, torch.Tensor]]] = field(default_factory=dict)  # d -> [(start, emb[1,t,128])]
    visual_logits: np.ndarray | None = None
    cut: dict[tuple[int, int], torch.Tensor] = field(default_factory=dict)  # windows cut short by the audio


class ASDScorer:
    """Runs an LR-ASD checkpoint over a face track with the demo's multi-window averaging."""

    def __init__(self, net: LRASD, windows_s: Sequence[int] = DEMO_WINDOWS_S, threads: int | None = None,
                 visual_context: str = "window", tile_s: int = 2, engine: str | None = None):
        """visual_context: 'window' embeds every window of every length on its own, as the reference demo
        (six visual passes for windows 1..6 s); 'clip' embeds the track once and slices the windows from it
        (one pass: a frame near a window edge sees its real neighbours instead of zero padding); 'tiling'
        embeds the consecutive windows of length tile_s on their own (exactly as 'window' does for that
        length, so a back end trained on such windows, the sync head, sees what it was trained on) and
        slices the other lengths from that tiling (one pass); 'clip_sync' slices every length from the
        one pass over the track as 'clip' but embeds the windows of length tile_s on their own as 'window'
        (two passes: clip context for the decision scores, the sync head's own windows for the sync
        evidence and offset scan). engine: the visual encoder's runtime (ASDNetwork.use_visual_engine;
        None leaves the network's as it is)."""
        if visual_context not in VISUAL_CONTEXTS:
            raise ValueError(f"visual_context must be one of {VISUAL_CONTEXTS}, not {visual_context!r}")
        self.net = net.eval()
        self.windows_s = tuple(int(w) for w in windows_s)
        self.visual_context = visual_context
        self.tile_s = int(tile_s)
        if self.tile_s < 1:
            raise ValueError(f"tile_s must be >= 1, not {tile_s}")
        if visual_context in ("tiling", "clip_sync") and self.tile_s not in self.windows_s:
            raise ValueError(f"visual_context {visual_context!r}: tile_s {self.tile_s} must be one of the window lengths {self.windows_s}")
        if threads:
            torch.set_num_threads(int(threads))
        if engine is not None:
            self.net.model.use_visual_engine(engine, torch.get_num_threads())

    @classmethod
    def from_settings(cls, settings, checkpoint: str = "pretrain_AVA", **kw) -> tuple["ASDScorer", ResolvedModel]:
        rm = resolve_checkpoint(settings, checkpoint)
        return cls(load_lr_asd(rm.path), **kw), rm

    @classmethod
    def from_dir(cls, model_dir: str | Path | None, checkpoint: str = "pretrain_AVA", verify: bool = True, **kw) -> "ASDScorer":
        return cls(load_lr_asd(resolve(CHECKPOINTS[checkpoint], model_dir, verify=verify).path), **kw)

    @staticmethod
    def aligned_length(n_video: int, n_mfcc: int) -> int:
        """Frames scored: as the demo, min(video frames, MFCC frames rounded down to a multiple of 4 / 4)."""
        return int(max(0, min(n_video, (n_mfcc - n_mfcc % 4) // 4)))

    @torch.no_grad()
    def embed(self, faces: np.ndarray) -> VisualCache:
        """Visual embeddings for every window length. faces: [T, 112, 112] uint8."""
        t = len(faces)
        cache = VisualCache(t, faces=faces)
        v = torch.from_numpy(np.ascontiguousarray(faces))
        if self.visual_context in ("clip", "clip_sync"):
            cache.clip = self.net.model.embed_visual_long(v)
            for d in self.windows_s:
                cache.windows[d] = self._sliced(cache.clip, d)
            if self.visual_context == "clip_sync":
                cache.windows[self.tile_s] = self._own_windows(v, self.tile_s)
                cache.tile = self.tile_s
            return cache
        lengths = (self.tile_s,) if self.visual_context == "tiling" else self.windows_s
        for d in lengths:
            cache.windows[d] = self._own_windows(v, d)
        if self.visual_context == "tiling":
            tiles = cache.windows.pop(self.tile_s)
            cache.clip = torch.cat([emb for _, emb in tiles], dim=1) if tiles else torch.zeros(1, 0, 128)
            cache.tile = self.tile_s
            for d in self.windows_s:
                cache.windows[d] = tiles if d == self.tile_s else self._sliced(cache.clip, d)
        return cache

    @staticmethod
    def _sliced(clip: torch.Tensor, d: int) -> list[tuple[int, torch.Tensor]]:
        """The consecutive windows of d seconds cut from embeddings [1, T, 128] of the whole track."""
        t, n = clip.shape[1], d * VIDEO_FPS
        return [(s, clip[:, s:min(s + n, t)]) for s in range(0, t, n)]

    def _own_windows(self, v: torch.Tensor, d: int) -> list[tuple[int, torch.Tensor]]:
        """The consecutive windows of d seconds of faces v [T, 112, 112], each embedded on its own (the
        full-length ones as one batch), as the reference demo does: [(start, emb [1, t, 128])]."""
        t, n = len(v), d * VIDEO_FPS
        starts = list(range(0, t, n))
        full = [s for s in starts if s + n <= t]
        items: list[tuple[int, torch.Tensor]] = []
        if full:
            emb = self.net.model.embed_visual(torch.stack([v[s:s + n] for s in full]))
            items += [(s, emb[i:i + 1]) for i, s in enumerate(full)]
        for s in starts:
            if s + n > t:
                items.append((s, self.net.model.embed_visual(v[s:t].unsqueeze(0))))
        return sorted(items, key=lambda it: it[0])

    @torch.no_grad()
    def visual_scores(self, cache: VisualCache) -> np.ndarray:
        """Visual-only head (lossV) logits per frame, averaged over window lengths: 'mouth looks like talking'."""
        if cache.visual_logits is None:
            acc = np.zeros(cache.n_frames, np.float64)
            for items in cache.windows.values():
                for s, emb in items:
                    acc[s:s + emb.shape[1]] += self.net.lossV(emb)[0].numpy()
            cache.visual_logits = (acc / max(1, len(cache.windows))).astype(np.float32)
        return cache.visual_logits

    @torch.no_grad()
    def score_cached(self, cache: VisualCache, feats: np.ndarray, shift_frames: int = 0,
                     windows: Sequence[int] | None = None, back_end=None, phases: int = 1) -> np.ndarray:
        """[T] audio-visual logits averaged over window lengths, for MFCC feats [4T', 13].

        back_end: another scorer of (audio emb, visual emb) [B, t, 128] -> [B, t] on the same windows
        (the sync head, models/lr_asd_sync.py); default the checkpoint's audio-visual head.

        shift_frames moves the audio relative to the video (positive: the audio is taken that many video
        frames later, i.e. it tests the hypothesis "audio is late"); missing audio is filled with the
        clip's quietest MFCC frame. windows restricts the average to those window lengths (default: all of the cache).
        phases > 1 also scores tilings of the same window length started 1/phases, 2/phases, ... of a
        window later (visual embeddings sliced from the cached ones, audio and back end run again) and
        averages them: a frame near a window edge then also gets a window with context on both sides.
        Frames beyond the aligned length get NaN."""
        t = cache.n_frames
        a = shift_mfcc(feats, shift_frames)
        n = self.aligned_length(t, len(a))
        out = np.full(t, np.nan, np.float32)
        if n == 0:
            return out
        at = torch.from_numpy(np.ascontiguousarray(a[: 4 * n]))
        acc = np.zeros(n, np.float64)
        used = [d for d in cache.windows if windows is None or d in set(int(w) for w in windows)] or list(cache.windows)
        phases = max(1, int(phases))
        for d in used:
            tilings = [self._tiling(cache, d, n)]
            if phases > 1:
                full = torch.cat([emb for _, emb in tilings[0]], dim=1)
                step = d * VIDEO_FPS
                for p in range(1, phases):
                    off = int(round(p * step / phases))
                    starts = ([0] if off > 0 else []) + list(range(off, n, step))
                    ends = starts[1:] + [n]
                    tilings.append([(s0, full[:, s0:e0]) for s0, e0 in zip(starts, ends) if e0 > s0])
            for members_all in tilings:
                # windows of equal length run as one batch (same result as one by one: no cross-talk in a batch)
                groups: dict[int, list[tuple[int, torch.Tensor]]] = {}
                for s0, emb in members_all:
                    groups.setdefault(emb.shape[1], []).append((s0, emb))
                for length, members in groups.items():
                    ea = self.net.model.embed_audio(torch.stack([at[4 * s0:4 * (s0 + length)] for s0, _ in members]))
                    ev = torch.cat([emb for _, emb in members], dim=0)
                    m = min(ea.shape[1], length)
                    if back_end is not None:
                        logits = back_end(ea[:, :m], ev[:, :m]).numpy()
                    else:
                        logits = self.net.lossAV(self.net.model.fuse(ea[:, :m], ev[:, :m])).numpy()
                    for (s0, _), row in zip(members, logits):
                        acc[s0:s0 + m] += row / len(tilings)
        out[:n] = (acc / len(used)).astype(np.float32)
        return out

    def _tiling(self, cache: VisualCache, d: int, n: int) -> list[tuple[int, torch.Tensor]]:
        """The cached windows of length d cut to the first n frames (a window cut by the audio length is
        re-embedded as the demo would)."""
        items = []
        for s0, emb in cache.windows[d]:
            if s0 >= n:
                continue
            e = min(s0 + emb.shape[1], n)
            if emb.shape[1] != e - s0:
                sliced = cache.clip is not None and d != cache.tile
                emb = cache.clip[:, s0:e] if sliced else self._re_embed(cache, d, s0, e)
            items.append((s0, emb))
        return items

    def _re_embed(self, cache: VisualCache, d: int, s: int, e: int) -> torch.Tensor:
        if (s, e) not in cache.cut:  # computed once per cache: re-scoring with other audio reuses it
            cache.cut[(s, e)] = self.net.model.embed_visual(torch.from_numpy(np.ascontiguousarray(cache.faces[s:e])).unsqueeze(0))
        return cache.cut[(s, e)]

    def score(self, faces: np.ndarray, audio: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
        """[T] speaking logits (demo semantics) for faces [T, 112, 112] uint8 and mono audio aligned to frame 0."""
        return self.score_cached(self.embed(faces), mfcc(audio, sample_rate))
