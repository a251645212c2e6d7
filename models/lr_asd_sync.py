"""LR-ASD sync head: "does this mouth follow the audio that is heard?" per frame.

The published LR-ASD checkpoints mostly answer "do the lips move while someone speaks" (docs/
CONVERSATION.md, "Sync"). The sync head is a copy of LR-ASD's audio-visual back end (gated fusion, the
two GRUs, the audio-visual class head) fine-tuned on negatives mined by construction: the same face with
its own voice shifted in time, with another person's voice, and a still face under speech. The audio and
visual encoders stay frozen and are the official checkpoint's, so the head reuses the visual embeddings
the conversation stage already computes (operators/asd.py) and only the back end runs again.

File format (``models/weights/lr_asd_sync_head.pt``, registry ``lr-asd-sync``): a weights-only state
dict of the back end tensors (``model.fusion.*``, ``model.detector.*``, ``lossAV.FC.*``, names as in the
official checkpoint) plus ``meta.*`` tensors: none of the official encoder weights are stored. The
training recipe (people, negatives, steps, seed) is ``train/sync_head.py``; it writes the file
and a JSON recipe card next to it, and the registry pins its sha256.

The output is a log-odds (class 1 minus class 0 of the fine-tuned head): > 0 means "in sync and speaking".
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models.lr_asd import LRASD, ASDScorer, VisualCache

BACKEND_PREFIXES = ("model.fusion.", "model.detector.", "lossAV.")


class SyncHead(nn.Module):
    """LR-ASD's back end (fusion + BiGRU + class head) as a trainable module on frozen embeddings."""

    def __init__(self, net: LRASD):
        super().__init__()
        self.fusion = copy.deepcopy(net.model.fusion)
        self.detector = copy.deepcopy(net.model.detector)
        self.fc = copy.deepcopy(net.lossAV.FC)

    def forward(self, audio_emb: torch.Tensor, visual_emb: torch.Tensor) -> torch.Tensor:
        """[B, T, 128] x 2 -> [B, T] log-odds of 'speaking in sync'."""
        out = self.fc(self.detector(self.fusion(audio_emb, visual_emb)))
        return out[..., 1] - out[..., 0]

    # ---------------------------------------------------------------------------------------- storage
    def backend_state(self) -> dict[str, torch.Tensor]:
        sd = {}
        for k, v in self.fusion.state_dict().items():
            sd["model.fusion." + k] = v.detach().clone()
        for k, v in self.detector.state_dict().items():
            sd["model.detector." + k] = v.detach().clone()
        for k, v in self.fc.state_dict().items():
            sd["lossAV.FC." + k] = v.detach().clone()
        return sd

    def load_backend(self, state: dict[str, torch.Tensor]) -> None:
        own = self.backend_state()
        missing = sorted(set(own) - set(state))
        bad = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
        if missing or bad:
            from models.lr_asd import CheckpointError

            raise CheckpointError(f"sync head: missing {missing[:5]}, shape mismatch {bad[:5]}")
        self.fusion.load_state_dict({k[len("model.fusion."):]: v for k, v in state.items() if k.startswith("model.fusion.")})
        self.detector.load_state_dict({k[len("model.detector."):]: v for k, v in state.items() if k.startswith("model.detector.")})
        self.fc.load_state_dict({k[len("lossAV.FC."):]: v for k, v in state.items() if k.startswith("lossAV.FC.")})


def save_head(head: SyncHead, path: str | Path, meta: dict[str, float]) -> None:
    sd = head.backend_state()
    for k, v in meta.items():
        sd["meta." + k] = torch.tensor(float(v))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, str(path))


def load_head(net: LRASD, path: str | Path) -> SyncHead:
    """The sync head on top of a loaded LR-ASD network (weights_only, strict about the back end)."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        from models.lr_asd import CheckpointError

        raise CheckpointError(f"{path}: expected a state dict")
    head = SyncHead(net)
    head.load_backend({k: v for k, v in state.items() if not k.startswith("meta.")})
    head.eval()
    for p in head.parameters():
        p.requires_grad_(False)
    return head


@torch.no_grad()
def sync_scores(head: SyncHead, net: LRASD, cache: VisualCache, feats: np.ndarray, shift_frames: int = 0,
                windows: tuple[int, ...] | None = None, phases: int = 1) -> np.ndarray:
    """[T] sync log-odds for the visual embeddings in `cache` (per window length, averaged) and MFCC feats
    [4T', 13]; shift_frames, windows and phases as ASDScorer.score_cached (positive: audio taken later).
    NaN beyond the audio."""
    return ASDScorer(net).score_cached(cache, feats, shift_frames, windows, back_end=head, phases=phases)
