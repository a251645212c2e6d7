"""Vision-language captioner loaded with transformers from a LOCAL model directory (no hub access).

Any directory saved with ``save_pretrained`` whose model loads with ``AutoModelForImageTextToText`` and
whose processor loads with ``AutoProcessor`` works: chat VLMs (a processor with a chat template: the
prompt and tags go in a user turn with the image) and plain image captioners such as BLIP (no chat
template: the image alone is captioned, the tags are not shown to the model). The sha256 of every file
in the directory is recorded in provenance by the caller (models.registry.user_model).
"""
from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class VlmCaptioner:
    def __init__(self, model_dir: str, max_new_tokens: int = 48, num_threads: int | None = None):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if num_threads:
            torch.set_num_threads(num_threads)
        self.torch = torch
        self.processor = AutoProcessor.from_pretrained(model_dir, local_files_only=True)
        self.model = AutoModelForImageTextToText.from_pretrained(model_dir, local_files_only=True).eval()
        self.max_new_tokens = max_new_tokens
        self.chat = bool(getattr(self.processor, "chat_template", None))
        self.name = getattr(self.model.config, "_name_or_path", "") or os.path.basename(os.path.normpath(model_dir))
        self.model_type = getattr(self.model.config, "model_type", "")

    def caption(self, image: np.ndarray, prompt: str) -> str:
        """One caption of an RGB uint8 image. Deterministic (greedy decoding)."""
        from PIL import Image

        img = Image.fromarray(image)
        if self.chat:
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            text = self.processor.apply_chat_template(messages, add_generation_prompt=True)
            inputs = self.processor(images=[img], text=text, return_tensors="pt")
        else:
            inputs = self.processor(images=img, return_tensors="pt")
        with self.torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        if self.chat and "input_ids" in inputs:
            out = out[:, inputs["input_ids"].shape[1]:]
        text = self.processor.batch_decode(out, skip_special_tokens=True)[0]
        return " ".join(text.split())
