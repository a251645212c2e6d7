"""MediaPipe BlazePose (legacy graph) person detector + 33-landmark lite model, run with ai-edge-litert.

The two .tflite files carry no Tasks metadata, so the graph around them is rebuilt here from the
MediaPipe sources (mediapipe/modules/pose_detection, pose_landmark @ a715f1e):

* detector: image letterboxed (centred) to 224x224 RGB in [-1, 1]; 2254 SSD anchors (strides
  8, 16, 32, 32, 32, two fixed-size anchors per cell); each row of the [2254, 12] output holds the box
  (x_centre, y_centre, w, h) and 4 keypoints (hip centre, full-body scale point, shoulder centre,
  upper-body scale point), offsets in 224-pixel units from the anchor centre; score = sigmoid(logit).
* region of interest: centred on the hip keypoint, side 2 x |hip - scale point| x 1.25, rotated so the
  hip->scale vector points up.
* landmarks: the rotated ROI warped to 256x256 RGB in [0, 1]; output [195] = 39 x (x, y, z,
  visibility, presence) in ROI pixels (the first 33 are the BlazePose landmarks), [1] pose presence,
  [117] = 39 x 3 world landmarks in metres (hip centre origin, y down, z away from the camera).

Registry name: ``blazepose-lite`` (models/registry.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

# BlazePose landmark indices used by callers
NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR = 0, 2, 5, 7, 8
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW, LEFT_WRIST, RIGHT_WRIST = 11, 12, 13, 14, 15, 16
LEFT_HIP, RIGHT_HIP = 23, 24
UPPER_BODY = (LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW, LEFT_WRIST, RIGHT_WRIST)

DET_SIZE = 224
LMK_SIZE = 256


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, dtype=np.float64), -100.0, 100.0)))


def _anchors() -> np.ndarray:
    """SsdAnchorsCalculator for pose_detection: [2254, 2] anchor centres (normalised)."""
    strides = [8, 16, 32, 32, 32]
    out = []
    i = 0
    while i < len(strides):
        j = i
        n_per_cell = 0
        while j < len(strides) and strides[j] == strides[i]:
            n_per_cell += 2  # aspect ratio 1.0 + the interpolated scale anchor
            j += 1
        fm = int(math.ceil(DET_SIZE / strides[i]))
        for y in range(fm):
            for x in range(fm):
                for _ in range(n_per_cell):
                    out.append(((x + 0.5) / fm, (y + 0.5) / fm))
        i = j
    return np.asarray(out, dtype=np.float32)


ANCHORS = _anchors()


@dataclass
class PersonDetection:
    score: float
    box: np.ndarray  # [x0, y0, x1, y1] image pixels
    keypoints: np.ndarray  # [4, 2] image pixels


@dataclass
class PoseResult:
    score: float  # pose presence from the landmark model
    landmarks: np.ndarray  # [33, 3] x, y in image pixels, z in the same pixel scale
    visibility: np.ndarray  # [33]
    presence: np.ndarray  # [33]
    world: np.ndarray  # [33, 3] metres
    detection: PersonDetection | None = None
    roi: tuple[float, float, float, float] = field(default=(0.0, 0.0, 0.0, 0.0))  # cx, cy, side, rotation

    def visible(self, idx: int, thr: float = 0.5) -> bool:
        return bool(self.visibility[idx] >= thr and self.presence[idx] >= thr)


def _nms(dets: list[PersonDetection], iou_thr: float = 0.3) -> list[PersonDetection]:
    dets = sorted(dets, key=lambda d: -d.score)
    keep: list[PersonDetection] = []
    for d in dets:
        ok = True
        for k in keep:
            xa, ya = max(d.box[0], k.box[0]), max(d.box[1], k.box[1])
            xb, yb = min(d.box[2], k.box[2]), min(d.box[3], k.box[3])
            inter = max(0.0, xb - xa) * max(0.0, yb - ya)
            union = (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]) + (k.box[2] - k.box[0]) * (k.box[3] - k.box[1]) - inter
            if union > 0 and inter / union > iou_thr:
                ok = False
                break
        if ok:
            keep.append(d)
    return keep


class BlazePose:
    """BlazePose lite on CPU through ai_edge_litert. One instance per worker (not thread-safe)."""

    def __init__(self, detector_path: str, landmark_path: str, num_threads: int = 1, score_min: float = 0.5):
        from ai_edge_litert.interpreter import Interpreter

        self.det = Interpreter(model_path=str(detector_path), num_threads=num_threads)
        self.det.allocate_tensors()
        self.lmk = Interpreter(model_path=str(landmark_path), num_threads=num_threads)
        self.lmk.allocate_tensors()
        self.score_min = score_min
        self._det_in = self.det.get_input_details()[0]["index"]
        outs = {d["name"]: d for d in self.det.get_output_details()}
        shapes = {tuple(d["shape"]): d["index"] for d in outs.values()}
        self._det_boxes = shapes[(1, 2254, 12)]
        self._det_scores = shapes[(1, 2254, 1)]
        self._lmk_in = self.lmk.get_input_details()[0]["index"]
        lshapes = {tuple(d["shape"]): d["index"] for d in self.lmk.get_output_details()}
        self._lmk_pts = lshapes[(1, 195)]
        self._lmk_flag = lshapes[(1, 1)]
        self._lmk_world = lshapes[(1, 117)]

    @classmethod
    def from_settings(cls, settings) -> tuple["BlazePose", str]:
        """Load through the registry; returns the model and its sha256 (for provenance)."""
        from models.registry import resolve_for

        rm = resolve_for(settings, "blazepose-lite")
        return cls(str(rm.paths[0]), str(rm.paths[1])), rm.digest

    # ------------------------------------------------------------------ detector
    def detect(self, rgb: np.ndarray) -> list[PersonDetection]:
        import cv2

        h, w = rgb.shape[:2]
        side = max(h, w)
        pad_x, pad_y = (side - w) / 2.0, (side - h) / 2.0
        canvas = np.zeros((side, side, 3), dtype=np.uint8)
        canvas[int(pad_y): int(pad_y) + h, int(pad_x): int(pad_x) + w] = rgb
        x = cv2.resize(canvas, (DET_SIZE, DET_SIZE), interpolation=cv2.INTER_AREA).astype(np.float32)
        x = x / 127.5 - 1.0
        self.det.set_tensor(self._det_in, x[None])
        self.det.invoke()
        raw = self.det.get_tensor(self._det_boxes)[0]
        scores = _sigmoid(self.det.get_tensor(self._det_scores)[0, :, 0])
        idx = np.nonzero(scores >= self.score_min)[0]
        dets = []
        for i in idx:
            r = raw[i] / DET_SIZE
            ax, ay = ANCHORS[i]
            xc, yc, bw, bh = r[0] + ax, r[1] + ay, r[2], r[3]
            box = np.array([xc - bw / 2, yc - bh / 2, xc + bw / 2, yc + bh / 2], dtype=np.float32) * side
            box -= np.array([pad_x, pad_y, pad_x, pad_y], dtype=np.float32)
            kps = np.stack([r[4::2][:4] + ax, r[5::2][:4] + ay], axis=1) * side - np.array([pad_x, pad_y])
            dets.append(PersonDetection(float(scores[i]), box, kps.astype(np.float32)))
        return _nms(dets)

    # ------------------------------------------------------------------ landmarks
    @staticmethod
    def roi_from_detection(det: PersonDetection) -> tuple[float, float, float, float]:
        (x0, y0), (x1, y1) = det.keypoints[0], det.keypoints[1]
        side = 2.0 * math.hypot(x1 - x0, y1 - y0) * 1.25
        rot = math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0)
        rot = (rot + math.pi) % (2 * math.pi) - math.pi
        return float(x0), float(y0), float(side), float(rot)

    def landmarks(self, rgb: np.ndarray, roi: tuple[float, float, float, float]) -> PoseResult:
        import cv2

        cx, cy, side, rot = roi
        c, s = math.cos(rot), math.sin(rot)

        def to_img(u, v):  # normalised ROI coords -> image pixels
            x, y = u - 0.5, v - 0.5
            return cx + (c * x - s * y) * side, cy + (s * x + c * y) * side

        src = np.float32([to_img(0, 0), to_img(1, 0), to_img(0, 1)])
        dst = np.float32([[0, 0], [LMK_SIZE, 0], [0, LMK_SIZE]])
        m = cv2.getAffineTransform(src, dst)
        crop = cv2.warpAffine(rgb, m, (LMK_SIZE, LMK_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        self.lmk.set_tensor(self._lmk_in, (crop.astype(np.float32) / 255.0)[None])
        self.lmk.invoke()
        pts = self.lmk.get_tensor(self._lmk_pts)[0].reshape(39, 5)[:33]
        flag = float(np.asarray(self.lmk.get_tensor(self._lmk_flag)).reshape(-1)[0])
        world = self.lmk.get_tensor(self._lmk_world)[0].reshape(39, 3)[:33].astype(np.float32)
        u, v = pts[:, 0] / LMK_SIZE, pts[:, 1] / LMK_SIZE
        xs, ys = to_img(u, v)
        z = pts[:, 2] / LMK_SIZE * side
        # world landmarks are rotated with the ROI (WorldLandmarkProjectionCalculator)
        wx = c * world[:, 0] - s * world[:, 1]
        wy = s * world[:, 0] + c * world[:, 1]
        world = np.stack([wx, wy, world[:, 2]], axis=1).astype(np.float32)
        if not (0.0 <= flag <= 1.0):
            flag = float(_sigmoid(flag))
        return PoseResult(flag, np.stack([xs, ys, z], axis=1).astype(np.float32), _sigmoid(pts[:, 3]).astype(np.float32),
                          _sigmoid(pts[:, 4]).astype(np.float32), world, None, roi)

    def __call__(self, rgb: np.ndarray) -> PoseResult | None:
        """The most confident person in an RGB uint8 image, or None."""
        dets = self.detect(rgb)
        if not dets:
            return None
        det = dets[0]
        res = self.landmarks(rgb, self.roi_from_detection(det))
        res.detection = det
        return res


# ---------------------------------------------------------------------------------- body orientation
def body_yaw_deg(pose: PoseResult, min_visibility: float = 0.5) -> float | None:
    """Signed yaw of the torso from the world landmarks (shoulders, and hips when visible).

    0 = facing the camera, +-180 = back to the camera; positive = the person faces image-right (their
    right side turns toward the camera), negative = faces image-left (left side toward the camera).
    None when the shoulders are not both seen.
    """
    if not (pose.visibility[LEFT_SHOULDER] >= min_visibility and pose.visibility[RIGHT_SHOULDER] >= min_visibility):
        return None
    v = pose.world[LEFT_SHOULDER] - pose.world[RIGHT_SHOULDER]
    if pose.visibility[LEFT_HIP] >= min_visibility and pose.visibility[RIGHT_HIP] >= min_visibility:
        v = 0.6 * v + 0.4 * (pose.world[LEFT_HIP] - pose.world[RIGHT_HIP])
    vx, vz = float(v[0]), float(v[2])
    if abs(vx) + abs(vz) < 1e-6:
        return None
    # facing direction f = v x up (up = -y): f = (vz, -vx) in the (x, z) plane; the camera looks along +z
    fx, fz = vz, -vx
    return math.degrees(math.atan2(fx, -fz))


def camera_body_angle_deg(yaw_deg: float) -> float:
    """The paper's angle between the camera and the body facing direction: 180 frontal, 0 rear."""
    return 180.0 - min(180.0, abs(yaw_deg))


def view_label(angle_deg: float, yaw_deg: float, frontal_min_deg: float = 155.0, rear_max_deg: float = 45.0) -> str:
    """frontal | left | right | rear (paper thresholds; left = the person's left side faces the camera)."""
    if angle_deg >= frontal_min_deg:
        return "frontal"
    if angle_deg <= rear_max_deg:
        return "rear"
    return "left" if yaw_deg < 0 else "right"
