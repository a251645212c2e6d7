"""open_clip image/text embeddings from LOCAL weights (nothing is downloaded).

Two ways to point at weights (config ``captions.clip_weights``):

* a checkpoint file (``.pt``/``.bin``/``.safetensors``): loaded with
  ``open_clip.create_model_and_transforms(captions.clip_model, pretrained=<file>)``. ``clip_model`` is an
  architecture open_clip knows (``ViT-B-32``...) or the path of a model-config JSON (keys embed_dim,
  vision_cfg, text_cfg), registered under its file stem, for architectures open_clip does not ship;
* a directory in open_clip's hub layout (``open_clip_config.json`` + ``open_clip_model.safetensors`` or
  ``open_clip_pytorch_model.bin``): loaded as ``local-dir:<dir>``.

The sha256 of the file (or of every file of the directory) is recorded in provenance.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class ClipEmbedder:
    def __init__(self, arch: str, weights: str, device: str = "cpu", num_threads: int | None = None):
        import open_clip
        import torch

        if num_threads:
            torch.set_num_threads(num_threads)
        self.torch = torch
        wpath = Path(weights).expanduser()
        if not wpath.exists():
            raise FileNotFoundError(f"open_clip weights not found: {wpath}")
        if wpath.is_dir():
            name = f"local-dir:{wpath}"
            model, _, preprocess = open_clip.create_model_and_transforms(name, device=device)
            tok_name = name
        else:
            arch_name = arch
            if arch.endswith(".json"):
                cfg = Path(arch).expanduser()
                if not cfg.is_file():
                    raise FileNotFoundError(f"open_clip model config not found: {cfg}")
                open_clip.add_model_config(cfg)
                arch_name = cfg.stem
            model, _, preprocess = open_clip.create_model_and_transforms(arch_name, pretrained=str(wpath), device=device)
            tok_name = arch_name
        self.model = model.eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(tok_name)
        self.device = device
        self.arch = arch if not wpath.is_dir() else wpath.name

    @property
    def dim(self) -> int:
        return int(getattr(self.model, "embed_dim", 0) or self.text_embed(["x"]).shape[1])

    def image_embed(self, images: list[np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings [N, D] of RGB uint8 images."""
        from PIL import Image

        if not images:
            return np.zeros((0, 0), dtype=np.float32)
        batch = self.torch.stack([self.preprocess(Image.fromarray(im)) for im in images]).to(self.device)
        with self.torch.no_grad():
            feats = self.model.encode_image(batch)
        return _l2(feats.float().cpu().numpy())

    def text_embed(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        tokens = self.tokenizer(texts).to(self.device)
        with self.torch.no_grad():
            feats = self.model.encode_text(tokens)
        return _l2(feats.float().cpu().numpy())


def _l2(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(n, 1e-12)).astype(np.float32)
