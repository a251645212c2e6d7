"""Face detection backends: boxes, scores and 5 landmarks per face.

Backends (``people.face_detector``):

* ``scrfd``: SCRFD-500M with 5 keypoints (registry ``scrfd-500m``) loaded through
  ``insightface.model_zoo.get_model``; fixed 640x640 input, insightface letterboxes the frame.
* ``yunet``: YuNet (registry ``yunet-320``) in OpenCV's ``cv2.FaceDetectorYN``; the file has a fixed
  320x320 input, so the frame is letterboxed into 320x320 and boxes are mapped back.
* ``yunet-dynamic``: the dynamic-shape YuNet files (``yunet-n-dynamic`` / ``yunet-s-dynamic``), which
  OpenCV 4.14 refuses, run in onnxruntime with the decoding of OpenCV's face_detect.cpp.

Every backend takes a BGR uint8 frame and returns :class:`FaceDetections` in the frame's pixels. The
landmark order is the ArcFace order: eye, eye, nose, mouth corner, mouth corner, image-left first.
Weights come only from the model registry; a missing or corrupt file raises
:class:`models.registry.MissingModelError` naming the file (the people stage turns it into a reject or
uses the registry's stated fallback).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from models.registry import ResolvedModel, resolve_for


@dataclass
class FaceDetections:
    boxes: np.ndarray   # [N, 4] float32 x0, y0, x1, y1
    scores: np.ndarray  # [N] float32
    kps: np.ndarray     # [N, 5, 2] float32

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def empty() -> "FaceDetections":
        return FaceDetections(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def select(self, keep: np.ndarray) -> "FaceDetections":
        return FaceDetections(self.boxes[keep], self.scores[keep], self.kps[keep])

    def scaled(self, s: float) -> "FaceDetections":
        return FaceDetections(self.boxes * s, self.scores, self.kps * s)


def ort_options(threads: int = 1):
    """onnxruntime session options: one intra-op thread (a stage worker owns one logical CPU)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    return opts


def _letterbox(img: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    h, w = img.shape[:2]
    scale = size / max(h, w)
    nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[:nh, :nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    return canvas, scale


def _nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> np.ndarray:
    if not len(boxes):
        return np.zeros((0,), np.int64)
    xywh = np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
    idx = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, thr)
    return np.asarray(idx, np.int64).reshape(-1)


class FaceDetector(Protocol):
    """What every backend offers: detect(frame_bgr) -> FaceDetections, its name and resolved weights."""

    model: ResolvedModel
    name: str

    def detect(self, frame_bgr: np.ndarray) -> FaceDetections: ...


class ScrfdDetector:
    name = "scrfd-500m"

    def __init__(self, model: ResolvedModel, score_min: float = 0.5, input_size: int = 640):
        from insightface.model_zoo import model_zoo

        self.model = model
        self.score_min = score_min
        self.net = model_zoo.get_model(str(model.path), providers=["CPUExecutionProvider"], sess_options=ort_options())
        if self.net is None or getattr(self.net, "taskname", "") != "detection":
            raise ValueError(f"{model.path} is not an SCRFD detector (insightface routed it to {type(self.net).__name__})")
        self.net.prepare(ctx_id=-1, input_size=(input_size, input_size), det_thresh=score_min)

    def detect(self, frame_bgr: np.ndarray) -> FaceDetections:
        det, kps = self.net.detect(frame_bgr, max_num=0, metric="default")
        if det is None or len(det) == 0:
            return FaceDetections.empty()
        kps = np.zeros((len(det), 5, 2), np.float32) if kps is None else kps.astype(np.float32)
        return FaceDetections(det[:, :4].astype(np.float32), det[:, 4].astype(np.float32), kps)


class YunetDetector:
    """YuNet 320x320 in cv2.FaceDetectorYN (letterboxed input)."""

    name = "yunet-320"

    def __init__(self, model: ResolvedModel, score_min: float = 0.5, size: int = 320, nms: float = 0.3):
        self.model = model
        self.size = size
        self.net = cv2.FaceDetectorYN.create(str(model.path), "", (size, size), score_min, nms, 5000)

    def detect(self, frame_bgr: np.ndarray) -> FaceDetections:
        img, scale = _letterbox(frame_bgr, self.size)
        _, faces = self.net.detect(img)
        if faces is None or len(faces) == 0:
            return FaceDetections.empty()
        faces = np.asarray(faces, np.float32)
        boxes = np.column_stack([faces[:, 0], faces[:, 1], faces[:, 0] + faces[:, 2], faces[:, 1] + faces[:, 3]])
        kps = faces[:, 4:14].reshape(-1, 5, 2)
        return FaceDetections(boxes / scale, faces[:, 14].copy(), kps / scale)


class YunetOrtDetector:
    """Dynamic-shape YuNet in onnxruntime; input BGR 0-255, sides padded to a multiple of 32."""

    name = "yunet-dynamic"

    def __init__(self, model: ResolvedModel, score_min: float = 0.5, max_side: int = 640, nms: float = 0.3):
        import onnxruntime as ort

        self.model = model
        self.name = model.name
        self.score_min, self.max_side, self.nms = score_min, max_side, nms
        self.sess = ort.InferenceSession(str(model.path), sess_options=ort_options(), providers=["CPUExecutionProvider"])

    def detect(self, frame_bgr: np.ndarray) -> FaceDetections:
        h, w = frame_bgr.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
        pw, ph = (nw + 31) // 32 * 32, (nh + 31) // 32 * 32
        canvas = np.zeros((ph, pw, 3), np.uint8)
        canvas[:nh, :nw] = cv2.resize(frame_bgr, (nw, nh), interpolation=cv2.INTER_AREA) if scale < 1 else frame_bgr
        blob = canvas.transpose(2, 0, 1)[None].astype(np.float32)
        outs = dict(zip([o.name for o in self.sess.get_outputs()], self.sess.run(None, {"input": blob})))
        boxes, scores, kpss = [], [], []
        for stride in (8, 16, 32):
            cols = pw // stride
            cls = outs[f"cls_{stride}"][0, :, 0]
            obj = outs[f"obj_{stride}"][0, :, 0]
            score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            keep = np.nonzero(score >= self.score_min)[0]
            if not len(keep):
                continue
            r, c = keep // cols, keep % cols
            bb = outs[f"bbox_{stride}"][0, keep]
            cx, cy = (c + bb[:, 0]) * stride, (r + bb[:, 1]) * stride
            bw, bh = np.exp(bb[:, 2]) * stride, np.exp(bb[:, 3]) * stride
            boxes.append(np.column_stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]))
            kp = outs[f"kps_{stride}"][0, keep].reshape(-1, 5, 2)
            kp = np.stack([(c[:, None] + kp[:, :, 0]) * stride, (r[:, None] + kp[:, :, 1]) * stride], axis=-1)
            kpss.append(kp)
            scores.append(score[keep])
        if not boxes:
            return FaceDetections.empty()
        b, s, k = np.concatenate(boxes), np.concatenate(scores), np.concatenate(kpss)
        idx = _nms(b, s, self.nms)
        return FaceDetections(b[idx].astype(np.float32), s[idx].astype(np.float32), k[idx].astype(np.float32)).scaled(1.0 / scale)


def load_face_detector(settings, backend: str | None = None, score_min: float | None = None) -> FaceDetector:
    """The configured face detector (score_min overrides people.face_score_min). A missing or corrupt
    file raises MissingModelError naming it and how to get it; the people stage then uses the
    registry's stated fallback (SCRFD -> YuNet) or rejects with 'model_missing'."""
    cfg = settings.people
    backend = backend or cfg.face_detector
    thr = cfg.face_score_min if score_min is None else score_min
    if backend == "scrfd":
        return ScrfdDetector(resolve_for(settings, "scrfd-500m"), thr)
    if backend == "yunet":
        return YunetDetector(resolve_for(settings, "yunet-320"), thr)
    if backend == "yunet-dynamic":
        return YunetOrtDetector(resolve_for(settings, "yunet-n-dynamic"), thr)
    raise ValueError(f"unknown face detector {backend!r}")
