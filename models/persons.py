"""Person (body) detection backends: boxes and scores of COCO class 0.

* ``yolox`` (default, works offline here): YOLOX-Nano ONNX (registry ``yolox-nano``) in onnxruntime.
  Input [1, 3, 416, 416] BGR 0-255, the frame letterboxed top-left with pad value 114; output
  [1, 3549, 85] raw head outputs over the stride 8/16/32 grids (52x52 + 26x26 + 13x13 cells):
  centre = (xy + cell) * stride, size = exp(wh) * stride, score = objectness * class score (the export
  applies the sigmoids), class 0 = person. Boxes are mapped back by the letterbox scale and NMS'd.
* ``ultralytics``: a user's local ultralytics YOLO checkpoint (``people.ultralytics_weights``, a .pt
  file), loaded with ``YOLO(path)`` offline (YOLO_OFFLINE=1 is set before import); its sha256 is
  computed for provenance. Nothing is downloaded: a missing file is a MissingModelError.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from models.registry import MissingModelError, ResolvedModel, resolve_for, user_model


@dataclass
class PersonDetections:
    boxes: np.ndarray   # [N, 4] float32 x0, y0, x1, y1
    scores: np.ndarray  # [N] float32

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def empty() -> "PersonDetections":
        return PersonDetections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))


class PersonDetector(Protocol):
    model: ResolvedModel
    name: str

    def detect(self, frame_bgr: np.ndarray) -> PersonDetections: ...


def _grids(size: int, strides=(8, 16, 32)) -> tuple[np.ndarray, np.ndarray]:
    cells, strs = [], []
    for s in strides:
        n = size // s
        yv, xv = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        cells.append(np.stack([xv, yv], -1).reshape(-1, 2))
        strs.append(np.full((n * n, 1), s))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strs).astype(np.float32)


def decode_yolox(out: np.ndarray, size: int, scale: float, score_min: float, nms: float = 0.45,
                 class_id: int = 0) -> PersonDetections:
    """Decode a raw YOLOX output [A, 5 + C] of a size x size letterboxed input (scale: input/frame)."""
    cells, strides = _grids(size)
    if out.shape[0] != len(cells):
        raise ValueError(f"YOLOX output has {out.shape[0]} anchors, expected {len(cells)} for {size}x{size}")
    score = out[:, 4] * out[:, 5 + class_id]
    keep = np.nonzero(score >= score_min)[0]
    if not len(keep):
        return PersonDetections.empty()
    o = out[keep]
    xy = (o[:, :2] + cells[keep]) * strides[keep]
    wh = np.exp(np.clip(o[:, 2:4], -10, 10)) * strides[keep]
    boxes = np.column_stack([xy - wh / 2, xy + wh / 2]) / scale
    sc = score[keep]
    xywh = np.column_stack([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]])
    idx = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), sc.tolist(), score_min, nms), np.int64).reshape(-1)
    return PersonDetections(boxes[idx].astype(np.float32), sc[idx].astype(np.float32))


class YoloxDetector:
    name = "yolox-nano"

    def __init__(self, model: ResolvedModel, score_min: float = 0.4):
        import onnxruntime as ort

        self.model = model
        self.score_min = score_min
        from models.faces import ort_options

        self.sess = ort.InferenceSession(str(model.path), sess_options=ort_options(), providers=["CPUExecutionProvider"])
        inp = self.sess.get_inputs()[0]
        self.input_name = inp.name
        self.size = int(inp.shape[2]) if isinstance(inp.shape[2], int) else 416

    def detect(self, frame_bgr: np.ndarray) -> PersonDetections:
        h, w = frame_bgr.shape[:2]
        scale = min(self.size / h, self.size / w)
        nw, nh = max(1, int(w * scale)), max(1, int(h * scale))
        canvas = np.full((self.size, self.size, 3), 114, np.uint8)
        canvas[:nh, :nw] = cv2.resize(frame_bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        out = self.sess.run(None, {self.input_name: blob})[0][0]
        det = decode_yolox(out, self.size, scale, self.score_min)
        det.boxes[:, [0, 2]] = det.boxes[:, [0, 2]].clip(0, w)
        det.boxes[:, [1, 3]] = det.boxes[:, [1, 3]].clip(0, h)
        return det


class UltralyticsDetector:
    """A local ultralytics YOLO checkpoint (person class only)."""

    name = "ultralytics-yolo"

    def __init__(self, model: ResolvedModel, score_min: float = 0.4, imgsz: int = 640):
        os.environ.setdefault("YOLO_OFFLINE", "1")
        from ultralytics import YOLO

        self.model = model
        self.score_min, self.imgsz = score_min, imgsz
        self.net = YOLO(str(model.path))
        names = getattr(self.net, "names", None) or {}
        self.person_class = next((int(k) for k, v in dict(names).items() if str(v) == "person"), 0)

    def detect(self, frame_bgr: np.ndarray) -> PersonDetections:
        res = self.net.predict(frame_bgr, imgsz=self.imgsz, conf=self.score_min, classes=[self.person_class],
                               verbose=False, device="cpu")
        if not res or res[0].boxes is None or len(res[0].boxes) == 0:
            return PersonDetections.empty()
        b = res[0].boxes
        return PersonDetections(b.xyxy.cpu().numpy().astype(np.float32), b.conf.cpu().numpy().astype(np.float32))


def load_person_detector(settings, backend: str | None = None, score_min: float | None = None) -> PersonDetector:
    cfg = settings.people
    backend = backend or cfg.person_detector
    thr = cfg.person_score_min if score_min is None else score_min
    if backend == "yolox":
        return YoloxDetector(resolve_for(settings, "yolox-nano"), thr)
    if backend == "ultralytics":
        if not cfg.ultralytics_weights:
            raise MissingModelError("ultralytics-yolo", Path("<people.ultralytics_weights>"),
                                    "is not set (person_detector 'ultralytics' needs a local .pt checkpoint)")
        return UltralyticsDetector(user_model(cfg.ultralytics_weights, "ultralytics-yolo"), thr)
    raise ValueError(f"unknown person detector {backend!r}")
