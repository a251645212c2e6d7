"""Embeddings stage: perceptual hashes of keyframes (always), the first frame as JPEG (always), and
open_clip image/text embeddings when local weights are configured.

* ``phash``: one 64-bit DCT perceptual hash (hex) per keyframe, keyframes taken at
  ``captions.phash_fps`` from the clip start (so two copies of the same clip hash the same keyframes);
  pipeline/dedupe.py compares them across the whole run to find near-duplicate clips, and verifies each
  candidate pair with ``keyframe_thumbs`` (16x16 gray thumbnails of the same keyframes).
* ``first_frame_jpeg``: frame 0 of the clip media (the model's first-frame condition).
* ``image_embedding`` / ``text_embedding``: open_clip embeddings (L2-normalised) of the first frame and of
  the caption, from ``captions.clip_weights`` (models/clip_embed.py). Without weights both stay null and
  provenance says ``skipped: no clip_weights configured``.
"""
from __future__ import annotations

import logging

import numpy as np

from operators.base import Deadline, Operator, Resources, VideoTask
from operators.clipmedia import read_clip_frames
from operators.media import MediaError

STAGE = "embeddings"
log = logging.getLogger("lpm.embeddings")


def phash64(image: np.ndarray) -> str:
    """64-bit DCT perceptual hash of an image (RGB or gray uint8) as 16 hex chars.

    Gray, area-resized to 32x32, 2-D DCT, the 8x8 lowest frequencies compared with their median
    (the classic pHash; the same bits as imagehash.phash)."""
    import cv2

    g = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(g, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    d = cv2.dct(small)[:8, :8]
    bits = (d > np.median(d)).flatten()
    value = 0
    for b in bits:
        value = (value << 1) | int(b)
    return f"{value:016x}"


def thumb16(image: np.ndarray) -> bytes:
    """16x16 gray thumbnail (uint8 bytes) used to verify near-duplicates found by pHash."""
    import cv2

    g = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return cv2.resize(g, (16, 16), interpolation=cv2.INTER_AREA).astype(np.uint8).tobytes()


def hamming_hex(a: str, b: str) -> int:
    return int(int(a, 16) ^ int(b, 16)).bit_count()


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise MediaError("encode_failed", "JPEG encoding failed")
    return buf.tobytes()


class EmbeddingOperator(Operator):
    name = STAGE
    reads = ("clips",)
    writes = ("clips",)
    resources = Resources(num_cpus=0.5, memory_mb=1536)

    def setup(self) -> None:
        cfg = self.settings.captions
        self.embedder = None
        self.clip_digest = ""
        self.clip_error = ""
        if cfg.clip_weights:
            from models.clip_embed import ClipEmbedder
            from models.registry import user_model

            try:
                rm = user_model(cfg.clip_weights, "open_clip")
                self.embedder = ClipEmbedder(cfg.clip_model, str(rm.path), num_threads=1)
                self.clip_digest = rm.digest
            except Exception as exc:  # a missing/corrupt checkpoint: clips still get hashes, provenance says why
                self.clip_error = f"{type(exc).__name__}: {exc}"[:300]
                log.warning("open_clip weights unusable (%s); embeddings skipped", self.clip_error)

    def process(self, task: VideoTask, deadline: Deadline) -> VideoTask:
        cfg = self.settings.captions
        timeout = deadline.timeout_for(self.settings.run.subprocess_timeout_s)
        for clip in list(task.clips):
            deadline.check("embeddings")
            if not (clip.get("video_bytes") or clip.get("video_uri")):
                continue  # whole-frame clips without media (no people stage)
            try:
                frames = read_clip_frames(clip, fps=cfg.phash_fps, timeout_s=timeout)
            except MediaError as exc:
                task.drop_clip(clip, STAGE, exc.reason, str(exc))
                continue
            if len(frames) == 0:
                task.drop_clip(clip, STAGE, "video_decode_error", "clip media decoded to no frames")
                continue
            clip["phash"] = [phash64(f) for f in frames]
            clip["keyframe_thumbs"] = b"".join(thumb16(f) for f in frames)
            clip["first_frame_jpeg"] = encode_jpeg(frames[0], self.settings.references.jpeg_quality)
            if self.embedder is not None:
                clip["image_embedding"] = self.embedder.image_embed([frames[0]])[0].tolist()
                if clip.get("caption"):
                    clip["text_embedding"] = self.embedder.text_embed([clip["caption"]])[0].tolist()
        task.record_provenance("phash", STAGE, "dct-phash-64", "", {"phash_fps": cfg.phash_fps})
        if self.embedder is not None:
            task.record_provenance("clip_embeddings", STAGE, f"open_clip:{cfg.clip_model}", self.clip_digest,
                                   {"clip_model": cfg.clip_model, "input": "first frame / caption"})
        else:
            reason = self.clip_error or "no clip_weights configured"
            task.record_provenance("clip_embeddings", STAGE, "none", "", {"skipped": reason})
        return task
