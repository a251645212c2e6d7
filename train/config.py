"""Typed configuration of train/ (one YAML file, validated; unknown keys are an error).

Sections: data (reader and features), vae (latent autoencoder), model (DiT shape and conditioning),
base (Base LPM training), distill (Online LPM: ODE regression then DMD), stream (streaming API).
Defaults are sized for a 2-core CPU; docs/TRAIN.md says which numbers come from the LPM 1.0 paper.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    fps: float = Field(8.0, gt=0, description="Frame rate clips are resampled to (latent frames per second).")
    num_frames: int = Field(16, ge=2, description="Frames per training window.")
    size_px: int = Field(32, ge=8, description="Square frame size the clip is resized to.")
    sample_rate: int = Field(16000, gt=0, description="Audio sample rate of speak/listen audio.")
    n_mels: int = Field(32, ge=4, description="Mel bands of the audio features.")
    mels_per_frame: int = Field(4, ge=1, description="Mel frames per video frame (hop = sample_rate / fps / mels_per_frame).")
    mel_win: int = Field(1024, ge=64, description="STFT window in samples (causal: a mel frame only sees past samples).")
    text_dim: int = Field(512, ge=8, description="Width of text_embedding (open_clip ViT-B-32: 512); others are cut/padded.")
    max_refs: int = Field(2, ge=0, description="Identity references per sample (the first of the row's list, in order).")
    windows_per_clip: int = Field(4, ge=1, description="Training windows cut from one decoded clip (decode once, use several times).")
    shuffle_buffer: int = Field(64, ge=1, description="Samples in the shuffle buffer of the streaming reader.")
    seed: int = 0
    min_clip_frames: int = Field(4, ge=1, description="Clips with fewer decoded frames (at data.fps) are skipped.")
    ref_from_clip: bool = Field(True, description="When a row has no references, use a frame of the same clip outside the window.")
    caption_hash_text: bool = Field(True, description="When text_embedding is null but caption is set, use a hashed bag-of-words embedding.")


class VAEConfig(Section):
    latent_channels: int = Field(4, ge=1)
    downsample: int = Field(4, description="Spatial factor (2 ** number of stride-2 convolutions).")
    width: int = Field(48, ge=8, description="Channels at the latent resolution (halved per level above it).")
    steps: int = Field(300, ge=0)
    batch_frames: int = Field(64, ge=1, description="Frames per VAE training step.")
    lr: float = Field(2e-3, gt=0)
    kl_weight: float = Field(1e-4, ge=0, description="Weight of the KL term (small: a near-deterministic latent).")

    @model_validator(mode="after")
    def _pow2(self):
        if self.downsample not in (1, 2, 4, 8):
            raise ValueError("vae.downsample must be 1, 2, 4 or 8")
        return self


class ModelConfig(Section):
    width: int = Field(96, ge=16)
    depth: int = Field(4, ge=2, description="Transformer blocks (speak audio on even, listen audio on odd blocks).")
    heads: int = Field(4, ge=1)
    patch: int = Field(2, ge=1)
    mlp_ratio: float = Field(3.0, gt=0)
    text_tokens: int = Field(4, ge=1, description="Tokens the text embedding is projected into.")
    speak_window: int = Field(1, ge=0, description="Speak audio cross-attention: video frame t sees audio frames t-w..t+w (local).")
    listen_window: int = Field(4, ge=0, description="Listen audio cross-attention window (wider).")
    rope_first_frame_offset: float = Field(-2.0, description="RoPE time position of the first-frame tokens.")
    rope_reference_offset: float = Field(-8.0, description="RoPE time position of reference 0; reference r sits at offset - 2r.")
    rope_theta: float = 100.0

    @model_validator(mode="after")
    def _heads(self):
        if self.width % self.heads:
            raise ValueError("model.width must be divisible by model.heads")
        if (self.width // self.heads) % 6:
            raise ValueError("model.width / model.heads must be divisible by 6 (3D RoPE: 3 axes of rotation pairs)")
        return self


class CFGDrop(Section):
    text: float = Field(0.1, ge=0, le=1)
    speak: float = Field(0.1, ge=0, le=1)
    listen: float = Field(0.1, ge=0, le=1)
    refs: float = Field(0.1, ge=0, le=1)
    first_frame: float = Field(0.05, ge=0, le=1)
    all_audio_text: float = Field(0.05, ge=0, le=1, description="Extra probability of dropping text and both audios together (the unconditional branch of CFG).")


class BaseConfig(Section):
    steps: int = Field(300, ge=1)
    batch_size: int = Field(4, ge=1)
    lr: float = Field(1e-3, gt=0)
    warmup_steps: int = Field(20, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    cfg_drop: CFGDrop = Field(default_factory=CFGDrop)
    logit_normal_t: bool = Field(True, description="Timesteps from a logit-normal distribution (SD3); else uniform.")
    ckpt_every: int = Field(100, ge=1)
    log_every: int = Field(10, ge=1)
    loader_workers: int = Field(0, ge=0, description="torch DataLoader workers (0: in the training process).")
    sample_steps: int = Field(32, ge=2, description="Euler steps of the teacher's full sampler.")
    cfg_scale: float = Field(2.0, ge=1.0, description="Guidance on text + speak + listen audio (all dropped = unconditional).")
    seed: int = 0
    torch_threads: int = Field(1, ge=1, description="torch intra-op threads per training process (1: best on small shared machines).")


class DistillConfig(Section):
    chunk_frames: int = Field(4, ge=1, description="Latent frames per streaming chunk (paper: 1 s at 24 fps).")
    sink_chunks: int = Field(1, ge=0, description="First chunks kept in the KV cache forever (paper: 3).")
    window_chunks: int = Field(2, ge=1, description="Most recent chunks kept in the KV cache (paper: 2).")
    student_timesteps: list[float] = Field(default_factory=lambda: [1.0, 0.5],
                                           description="Noise levels of the student's few-step sampler (predict x0, re-noise to the next).")
    ode_pairs: int = Field(64, ge=1, description="Teacher ODE trajectories generated for the regression stage.")
    ode_steps: int = Field(150, ge=0)
    dmd_steps: int = Field(60, ge=0)
    batch_size: int = Field(4, ge=1)
    lr: float = Field(5e-4, gt=0)
    dmd_lr: float = Field(1e-4, gt=0, description="Generator learning rate during DMD.")
    dmd_reg_weight: float = Field(0.25, ge=0, description="Weight of the regression term on teacher pairs during DMD (DMD paper: 0.25).")
    fake_lr: float = Field(5e-4, gt=0)
    fake_updates: int = Field(1, ge=1, description="Fake-score updates per generator update.")
    dmd_t_min: float = Field(0.02, gt=0, lt=1)
    dmd_t_max: float = Field(0.98, gt=0, lt=1)
    eval_samples: int = Field(8, ge=1)
    ckpt_every: int = Field(50, ge=1)
    log_every: int = Field(10, ge=1)
    seed: int = 1


class StreamConfig(Section):
    audio_history_s: float = Field(2.0, ge=0, description="Audio kept before the current chunk (paper: 2 s history + 1 s current).")
    refine_clean_cache: bool = Field(True, description="After a chunk, run the student once at t=0 on it to fill the clean-history KV cache.")


class TrainConfig(Section):
    data: DataConfig = Field(default_factory=DataConfig)
    vae: VAEConfig = Field(default_factory=VAEConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    base: BaseConfig = Field(default_factory=BaseConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    stream: StreamConfig = Field(default_factory=StreamConfig)

    @model_validator(mode="after")
    def _shapes(self):
        if self.data.size_px % self.vae.downsample:
            raise ValueError("data.size_px must be divisible by vae.downsample")
        lat = self.data.size_px // self.vae.downsample
        if lat % self.model.patch:
            raise ValueError("latent size (data.size_px / vae.downsample) must be divisible by model.patch")
        if self.data.num_frames % self.distill.chunk_frames:
            raise ValueError("data.num_frames must be a multiple of distill.chunk_frames")
        d = self.distill
        if self.data.num_frames // d.chunk_frames > d.sink_chunks + d.window_chunks + 1:
            raise ValueError("data.num_frames / distill.chunk_frames must be <= sink_chunks + window_chunks + 1 "
                             "(the student trains on windows its KV cache can hold, so RoPE slots match streaming)")
        return self

    @property
    def latent_size(self) -> int:
        return self.data.size_px // self.vae.downsample

    @property
    def audio_feat_dim(self) -> int:
        return self.data.n_mels * self.data.mels_per_frame


class TrainConfigError(ValueError):
    pass


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(path: str | None = None, overrides: dict | None = None) -> TrainConfig:
    """Read a YAML file (or the defaults) and apply nested overrides ({"base": {"steps": 10}})."""
    data: dict = {}
    if path:
        p = Path(path)
        if not p.exists() and (CONFIG_DIR / path).exists():
            p = CONFIG_DIR / path
        with open(p) as fh:
            data = yaml.safe_load(fh) or {}
        if not isinstance(data, dict):
            raise TrainConfigError(f"{path}: top level must be a mapping")
    if overrides:
        data = _merge(data, overrides)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise TrainConfigError(str(exc)) from exc


def parse_set(items: list[str]) -> dict:
    """--set a.b=1 style overrides into a nested dict (values parsed as YAML scalars)."""
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise TrainConfigError(f"--set wants key=value, got {item!r}")
        key, val = item.split("=", 1)
        cur = out
        parts = key.split(".")
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = yaml.safe_load(val)
    return out
