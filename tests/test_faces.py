"""Faces stage: face analysis columns on real media, BlazePose on a real frame, view and expression rules."""
from __future__ import annotations

import math

import numpy as np
import pytest

from issue6_media import processed_composite


@pytest.fixture(scope="module")
def composite(tmp_path_factory, media_dir, model_dir):
    return processed_composite(str(tmp_path_factory.getbasetemp()), str(media_dir), str(model_dir))


def test_face_columns_on_composite(composite):
    from models.registry import REGISTRY, resolve

    settings, _, task = composite
    assert len(task.clips) == 4
    for c in task.clips:
        n = len(c["face_times_s"])
        assert n == len(c["head_pose"]) and n >= 25  # ~12.5 analysed frames per second of a >= 2.2 s clip
        hp = np.array(c["head_pose"], dtype=float)
        assert np.isfinite(hp).all(axis=1).mean() > 0.9  # a face in (almost) every analysed frame
        assert np.abs(hp[:, 0]).max() < 45  # talking to camera: near frontal
        assert len(c["blendshapes_mean"]) == 52
        es, ms = c["expression_stats"], c["motion_stats"]
        shares = [v for k, v in es.items() if k.startswith("share_")]
        assert len(shares) == 8 and math.isclose(sum(shares), 1.0, abs_tol=1e-6)
        assert es["face_detected_share"] > 0.9 and 0 < es["mouth_open_mean"] < 0.5
        assert 0.0 <= ms["motion_intensity"] <= 1.0 and ms["head_angular_speed_deg_s"] > 0
        assert len(c["mouth_open"]) == len(c["frame_boxes"])
    prov = task.provenance
    assert prov["faces"]["model"] == "mediapipe-face-landmarker"
    assert prov["faces"]["weights_sha256"] == REGISTRY["mediapipe-face-landmarker"].main.sha256
    assert prov["body_pose"]["model"] == "blazepose-lite"
    assert prov["body_pose"]["weights_sha256"] == resolve("blazepose-lite", settings.models.dir).digest


def test_speaking_face_has_open_mouth_more_often_than_still_frames(composite):
    _, _, task = composite
    # talking_face_2 (identity B) talks with visibly larger mouth opening than talking_face_1 (A)
    a = [c["expression_stats"]["mouth_open_p90"] for c in task.clips if c["identity_id"].endswith(":A")]
    b = [c["expression_stats"]["mouth_open_p90"] for c in task.clips if c["identity_id"].endswith(":B")]
    assert min(b) > max(a)


def test_blazepose_on_real_frame(composite):
    from models.pose import (LEFT_SHOULDER, NOSE, RIGHT_SHOULDER, BlazePose, body_yaw_deg, camera_body_angle_deg,
                             view_label)
    from operators.references import decode_frame

    settings, src, task = composite
    pose, digest = BlazePose.from_settings(settings)
    frame = decode_frame(str(src), 1.0, 60)
    res = pose(frame)
    assert res is not None and res.score > 0.5
    assert res.visible(LEFT_SHOULDER) and res.visible(RIGHT_SHOULDER) and res.visible(NOSE)
    # person faces the camera: their left shoulder is on the image right, the nose above both shoulders
    assert res.landmarks[LEFT_SHOULDER, 0] > res.landmarks[RIGHT_SHOULDER, 0]
    assert res.landmarks[NOSE, 1] < min(res.landmarks[LEFT_SHOULDER, 1], res.landmarks[RIGHT_SHOULDER, 1])
    yaw = body_yaw_deg(res)
    assert view_label(camera_body_angle_deg(yaw), yaw) == "frontal"
    # an empty image has no person
    assert pose(np.zeros((256, 256, 3), np.uint8)) is None


def test_view_rules():
    from models.pose import camera_body_angle_deg, view_label
    from operators.references import Candidate, view_of

    assert view_label(camera_body_angle_deg(0.0), 0.0) == "frontal"
    assert view_label(camera_body_angle_deg(24.0), 24.0) == "frontal"  # 156 >= 155
    assert view_label(camera_body_angle_deg(-90.0), -90.0) == "left"
    assert view_label(camera_body_angle_deg(90.0), 90.0) == "right"
    assert view_label(camera_body_angle_deg(170.0), 170.0) == "rear"  # angle 10 <= 45
    assert view_label(camera_body_angle_deg(-134.0), -134.0) == "left"  # angle 46: still a profile
    c = Candidate("c", 0, 1.0, 1.0, 0, False, None, float("nan"), float("nan"), 0.0, body_yaw=float("nan"), body_seen=True)
    assert view_of(c, 155, 45)[0] == "rear"  # body seen, face not found
    c2 = Candidate("c", 0, 1.0, 1.0, 0, True, np.zeros(52), -60.0, 0.0, 10.0)
    assert view_of(c2, 155, 45)[:1] == ("left",) and view_of(c2, 155, 45)[2] == "head"
    c3 = Candidate("c", 0, 1.0, 1.0, 0, True, np.zeros(52), -60.0, 0.0, 10.0, body_yaw=5.0, body_seen=True)
    assert view_of(c3, 155, 45)[0] == "frontal"  # the body decides over the head


def test_expression_labels_and_stats():
    from operators.expressions import IDX, LABELS, expression_stats, frame_labels

    bs = np.zeros((6, 52), np.float32)
    bs[1, IDX["mouthSmileLeft"]] = bs[1, IDX["mouthSmileRight"]] = 0.8
    bs[2, IDX["jawOpen"]] = 0.6
    bs[3, IDX["browDownLeft"]] = bs[3, IDX["browDownRight"]] = 0.8
    bs[4, IDX["noseSneerLeft"]] = bs[4, IDX["noseSneerRight"]] = 0.9
    bs[5, IDX["mouthFrownLeft"]] = bs[5, IDX["mouthFrownRight"]] = 0.9
    labels, conf = frame_labels(bs)
    assert labels == ["neutral", "smile", "mouth_open", "angry", "disgust", "sad"]
    assert set(labels) <= set(LABELS) and (conf > 0).all()
    st = expression_stats(bs, np.arange(6) / 10.0, np.ones(6, bool))
    assert math.isclose(st["share_neutral"], 1 / 6) and st["n_expressions"] == 6
    assert st["expression_change_rate_hz"] == pytest.approx(5 / 0.5)
    assert expression_stats(bs, np.arange(6) / 10.0, np.zeros(6, bool)) == {"face_detected_share": 0.0}


def test_clip_without_media_is_left_alone(settings):
    from operators.base import Deadline, VideoTask
    from operators.faces import FaceAnalysisOperator

    op = FaceAnalysisOperator(settings)
    op.ensure_setup()
    task = VideoTask(uri="x.mp4", video_id="v", clips=[{"clip_id": "c", "track_id": -1}])
    out = op.process(task, Deadline(30))
    assert out.ok and out.clips[0].get("head_pose") is None


def test_broken_clip_media_becomes_a_clip_reject(settings):
    from operators.base import Deadline, VideoTask
    from operators.faces import FaceAnalysisOperator

    op = FaceAnalysisOperator(settings)
    op.ensure_setup()
    task = VideoTask(uri="x.mp4", video_id="v", clips=[{"clip_id": "c", "track_id": 0, "video_bytes": b"not an mp4" * 10,
                                                         "clip_width": 64, "clip_height": 64}])
    out = op.process(task, Deadline(30))
    assert out.ok and out.clips == []
    assert out.rejects[0]["level"] == "clip" and out.rejects[0]["reason"] == "video_decode_error"
