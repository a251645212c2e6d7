"""BRISQUE no-reference image quality through opencv-contrib's ``cv2.quality`` (registry name ``brisque``).

The model files (``quality/brisque_model_live.yml`` + ``quality/brisque_range_live.yml``) come from the
registry with their sha256 checked. Scores run roughly 0 (pristine) to 100+ (badly degraded); blur,
JPEG blocking and noise all raise it. :meth:`Brisque.score` takes a BGR or gray uint8 image.
"""
from __future__ import annotations

import threading

import numpy as np


class Brisque:
    def __init__(self, model_path: str, range_path: str, sha256: str = ""):
        import cv2

        if not hasattr(cv2, "quality"):
            raise RuntimeError("cv2.quality is missing: install opencv-contrib-python (see STACK.md)")
        self._model_path = str(model_path)
        self._range_path = str(range_path)
        self.sha256 = sha256
        self._local = threading.local()

    @classmethod
    def load(cls, settings) -> "Brisque":
        from models.registry import resolve_for

        r = resolve_for(settings, "brisque")
        return cls(str(r.paths[0]), str(r.paths[1]), r.digest)

    def _model(self):
        m = getattr(self._local, "model", None)
        if m is None:
            import cv2

            m = cv2.quality.QualityBRISQUE_create(self._model_path, self._range_path)
            self._local.model = m
        return m

    def score(self, image: np.ndarray) -> float:
        """BRISQUE score of one image (lower is better); NaN for images too small or flat to score."""
        import cv2

        if image is None or image.size == 0 or min(image.shape[:2]) < 16:
            return float("nan")
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        try:
            val = float(self._model().compute(image)[0])
        except cv2.error:
            return float("nan")
        return val if np.isfinite(val) else float("nan")
