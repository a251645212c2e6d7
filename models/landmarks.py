"""MediaPipe Tasks FaceLandmarker: 478 face landmarks, 52 blendshapes and a 4x4 head pose per frame.

Registry name: ``mediapipe-face-landmarker`` (models/registry.py). Weights are the ``.task`` bundle
``face_landmarker_v2_with_blendshapes.task``; nothing is downloaded.

Usage::

    lm = FaceLandmarker.from_settings(settings)          # or FaceLandmarker(path)
    faces = lm.detect(rgb)                               # one image: list[FaceFrame], largest face first
    track = lm.track(frames_rgb, fps=25.0)               # a clip: list[FaceFrame | None], one per frame
    openness = mouth_openness(track)                     # [T] float32, NaN where no face
    yaw, pitch, roll = head_pose_angles(track[0].matrix)
    lm.close()

Conventions (stable API: other stages build on these):

* Images are RGB uint8 ``[H, W, 3]`` (convert BGR from OpenCV first).
* :attr:`FaceFrame.landmarks` is ``[478, 3]`` float32 in the analysed image's pixels: x right, y down,
  z = MediaPipe's relative depth multiplied by the image width (so it has the scale of x; smaller is
  nearer the camera). Indices follow the MediaPipe canonical face mesh (e.g. 13/14 inner lips,
  33/263 outer eye corners, 1 nose tip, 152 chin).
* :attr:`FaceFrame.blendshapes` is ``[52]`` float32 in [0, 1] in the order of :data:`BLENDSHAPE_NAMES`
  (index 0 is ``_neutral``).
* :attr:`FaceFrame.matrix` is the ``[4, 4]`` facial transformation matrix (canonical face model to
  camera space); :func:`head_pose_angles` turns it into yaw/pitch/roll in degrees.
* ``track()`` runs MediaPipe's VIDEO mode (landmarks tracked from frame to frame, the face detector runs
  only when tracking is lost), picks per frame the face nearest a given target box (or the largest
  face), and returns ``None`` for frames without a face. ``detect()`` runs IMAGE mode (independent
  frames). One instance keeps one MediaPipe graph per mode, so reuse it across clips.
"""
from __future__ import annotations

import atexit
import math
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from models.registry import ResolvedModel, resolve, resolve_for

REGISTRY_NAME = "mediapipe-face-landmarker"

BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff",
    "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft", "eyeLookDownRight",
    "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft", "jawOpen", "jawRight",
    "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight", "mouthFunnel",
    "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker",
    "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthSmileLeft",
    "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft", "mouthUpperUpRight",
    "noseSneerLeft", "noseSneerRight",
)
BLENDSHAPE_INDEX = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}

# Canonical face-mesh indices used here and by callers.
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
UPPER_OUTER_LIP, LOWER_OUTER_LIP = 0, 17
MOUTH_LEFT, MOUTH_RIGHT = 61, 291
EYE_OUTER_A, EYE_OUTER_B = 33, 263
NOSE_TIP, CHIN, FOREHEAD = 1, 152, 10
N_LANDMARKS = 478


@dataclass
class FaceFrame:
    """One face in one image."""

    landmarks: np.ndarray    # [478, 3] float32, image pixels (z scaled like x)
    blendshapes: np.ndarray  # [52] float32
    matrix: np.ndarray       # [4, 4] float32 facial transformation matrix

    @property
    def box(self) -> np.ndarray:
        """Tight box [x0, y0, x1, y1] of the landmarks (image pixels)."""
        xy = self.landmarks[:, :2]
        return np.array([xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max()], np.float32)

    @property
    def size(self) -> float:
        """Face size in pixels: the larger side of the landmark box."""
        b = self.box
        return float(max(b[2] - b[0], b[3] - b[1]))

    def blendshape(self, name: str) -> float:
        return float(self.blendshapes[BLENDSHAPE_INDEX[name]])


def _to_face(result, i: int, w: int, h: int) -> FaceFrame:
    pts = result.face_landmarks[i]
    lm = np.array([(p.x * w, p.y * h, p.z * w) for p in pts], dtype=np.float32)
    if result.face_blendshapes and len(result.face_blendshapes) > i:
        bs = np.array([c.score for c in result.face_blendshapes[i]], dtype=np.float32)
    else:
        bs = np.full(len(BLENDSHAPE_NAMES), np.nan, np.float32)
    if result.facial_transformation_matrixes and len(result.facial_transformation_matrixes) > i:
        mat = np.asarray(result.facial_transformation_matrixes[i], dtype=np.float32).reshape(4, 4)
    else:
        mat = np.full((4, 4), np.nan, np.float32)
    return FaceFrame(lm, bs, mat)


def _pick(faces: list[FaceFrame], target_box: Sequence[float] | None) -> FaceFrame | None:
    if not faces:
        return None
    if target_box is None:
        return max(faces, key=lambda f: f.size)
    tb = np.asarray(target_box, np.float32)
    tc = np.array([(tb[0] + tb[2]) / 2, (tb[1] + tb[3]) / 2])
    scale = max(1.0, float(max(tb[2] - tb[0], tb[3] - tb[1])))

    def cost(f: FaceFrame) -> float:
        b = f.box
        c = np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])
        return float(np.linalg.norm(c - tc) / scale)

    best = min(faces, key=cost)
    return best if cost(best) < 0.75 else None


class FaceLandmarker:
    """Thin wrapper over ``mediapipe.tasks.python.vision.FaceLandmarker`` (see the module docstring)."""

    def __init__(self, model: ResolvedModel | str | Path, num_faces: int = 2, min_detection_confidence: float = 0.5,
                 min_presence_confidence: float = 0.5, min_tracking_confidence: float = 0.5):
        self.model = model if isinstance(model, ResolvedModel) else ResolvedModel(REGISTRY_NAME, [Path(model)], [""])
        self.num_faces = int(num_faces)
        self._conf = (float(min_detection_confidence), float(min_presence_confidence), float(min_tracking_confidence))
        self._graphs: dict[str, object] = {}
        self._ts_ms = 0  # VIDEO mode needs increasing timestamps across every call of this instance
        self._lock = threading.Lock()
        # close the MediaPipe graphs before interpreter teardown (their __del__ fails once modules are gone)
        ref = weakref.ref(self)
        atexit.register(lambda: (ref() and ref().close()))

    @classmethod
    def from_settings(cls, settings, **kw) -> "FaceLandmarker":
        return cls(resolve_for(settings, REGISTRY_NAME), **kw)

    @classmethod
    def from_dir(cls, model_dir: str | Path | None = None, verify: bool = True, **kw) -> "FaceLandmarker":
        return cls(resolve(REGISTRY_NAME, model_dir, verify=verify), **kw)

    @property
    def digest(self) -> str:
        return self.model.digest

    def _graph(self, mode: str):
        g = self._graphs.get(mode)
        if g is None:
            from mediapipe.tasks.python import BaseOptions, vision

            det, pres, trk = self._conf
            opts = vision.FaceLandmarkerOptions(
                base_options=BaseOptions(model_asset_path=str(self.model.path)),
                running_mode=vision.RunningMode.VIDEO if mode == "video" else vision.RunningMode.IMAGE,
                num_faces=self.num_faces, min_face_detection_confidence=det, min_face_presence_confidence=pres,
                min_tracking_confidence=trk, output_face_blendshapes=True, output_facial_transformation_matrixes=True)
            g = vision.FaceLandmarker.create_from_options(opts)
            self._graphs[mode] = g
        return g

    @staticmethod
    def _image(rgb: np.ndarray):
        import mediapipe as mp

        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 image [H, W, 3], got {rgb.dtype} {rgb.shape}")
        return mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))

    def detect(self, rgb: np.ndarray) -> list[FaceFrame]:
        """All faces (up to num_faces) in one image, largest first."""
        h, w = rgb.shape[:2]
        with self._lock:
            res = self._graph("image").detect(self._image(rgb))
        faces = [_to_face(res, i, w, h) for i in range(len(res.face_landmarks))]
        return sorted(faces, key=lambda f: -f.size)

    def track(self, frames: Sequence[np.ndarray] | np.ndarray, fps: float = 25.0,
              target_boxes: Sequence[Sequence[float] | None] | None = None, every: int = 1) -> list[FaceFrame | None]:
        """Landmarks of one person through a clip: one entry per frame (None where no face / not analysed).

        target_boxes (per frame, image pixels) selects the face nearest that box when several are visible;
        without it the largest face is taken. every=N analyses every N-th frame only (others None)."""
        out: list[FaceFrame | None] = []
        step_ms = max(1, int(round(1000.0 / max(fps, 1e-3))))
        with self._lock:
            g = self._graph("video")
            for i, rgb in enumerate(frames):
                if every > 1 and i % every:
                    out.append(None)
                    continue
                h, w = rgb.shape[:2]
                self._ts_ms += step_ms * (every if every > 1 else 1)
                res = g.detect_for_video(self._image(rgb), self._ts_ms)
                faces = [_to_face(res, k, w, h) for k in range(len(res.face_landmarks))]
                tb = target_boxes[i] if target_boxes is not None and i < len(target_boxes) else None
                out.append(_pick(faces, tb))
            # a gap between clips makes MediaPipe restart tracking instead of carrying a face over
            self._ts_ms += 1000
        return out

    def close(self) -> None:
        with self._lock:
            for g in self._graphs.values():
                try:
                    g.close()
                except Exception:  # pragma: no cover - MediaPipe teardown at interpreter exit
                    pass
            self._graphs.clear()

    def __enter__(self) -> "FaceLandmarker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------- measures
def _dist(lm: np.ndarray, a: int, b: int) -> float:
    return float(np.linalg.norm(lm[a] - lm[b]))


def mouth_openness_frame(face: FaceFrame | None) -> float:
    """Inner-lip gap (landmarks 13-14) divided by the outer eye-corner distance (33-263), both in 3-D so a
    turned head does not shrink the reference. About 0 closed, 0.1-0.2 speaking, 0.3+ wide open. NaN when
    face is None."""
    if face is None:
        return float("nan")
    lm = face.landmarks
    ref = _dist(lm, EYE_OUTER_A, EYE_OUTER_B)
    if not ref > 1e-6:
        return float("nan")
    return _dist(lm, UPPER_INNER_LIP, LOWER_INNER_LIP) / ref


def mouth_openness(track: Sequence[FaceFrame | None]) -> np.ndarray:
    """[T] float32 mouth openness per frame (see mouth_openness_frame), NaN where there is no face."""
    return np.array([mouth_openness_frame(f) for f in track], dtype=np.float32)


def head_pose_angles(matrix: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from a facial transformation matrix.

    The rotation R (upper 3x3, scale removed) is decomposed as R = Ry(yaw) @ Rx(pitch) @ Rz(roll) in
    MediaPipe's camera frame (x right, y up, z towards the viewer). A frontal face is (0, 0, 0); yaw
    changes sign when the image is mirrored, pitch does not; roll changes sign when mirrored."""
    m = np.asarray(matrix, dtype=np.float64)[:3, :3]
    if not np.all(np.isfinite(m)):
        return float("nan"), float("nan"), float("nan")
    scale = np.linalg.norm(m, axis=0)
    r = m / np.where(scale > 1e-9, scale, 1.0)
    pitch = math.asin(max(-1.0, min(1.0, -r[1, 2])))
    yaw = math.atan2(r[0, 2], r[2, 2])
    roll = math.atan2(r[1, 0], r[1, 1])
    return math.degrees(yaw), math.degrees(pitch), math.degrees(roll)
