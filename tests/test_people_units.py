"""People stage building blocks without media: tracker, crop geometry, identity clustering, YOLOX
decoding, the global identity index, and the user-model paths (ultralytics .pt, insightface ArcFace)
proved with tiny random models built here."""
from __future__ import annotations

import os

import numpy as np
import pytest

from operators.tracking import Person, Tracker, link_faces_bodies, smooth_boxes


def _face(cx, cy, s=60.0, score=0.9):
    return Person(face=np.array([cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2]), face_score=score,
                  kps=np.zeros((5, 2)))


# ----------------------------------------------------------------------------- tracker
def test_tracker_two_people_gap_fill_and_smoothing():
    tr = Tracker(1280, 720, iou_min=0.3, high=0.5, max_missed=3)
    rng = np.random.default_rng(0)
    for j in range(30):
        dets = [_face(300 + 2 * j + rng.normal(0, 3), 300), _face(900, 320 + rng.normal(0, 3))]
        if j in (10, 11):          # person A missed twice: gap filled, same track
            dets = dets[1:]
        tr.update(j, dets)
    tracks = tr.finish(smooth_frames=5)
    assert len(tracks) == 2
    a = min(tracks, key=lambda t: t.face_boxes[0, 0])
    assert (a.first, a.last) == (0, 29) and 10 not in a.obs and len(a.frames) == 30
    # interpolated box at the gap lies between its neighbours
    assert a.face_boxes[9, 0] < a.face_boxes[10, 0] < a.face_boxes[12, 0]
    raw = np.stack([a.obs[j].face for j in sorted(a.obs)])
    jitter_raw = np.abs(np.diff(raw[:, 0], 2)).mean()
    jitter_smooth = np.abs(np.diff(a.face_boxes[:, 0], 2)).mean()
    assert jitter_smooth < 0.5 * jitter_raw


def test_tracker_ends_track_that_leaves_frame_and_low_scores_do_not_start_tracks():
    tr = Tracker(640, 360, iou_min=0.3, high=0.5, max_missed=5)
    for j in range(12):
        dets = []
        if j < 8:  # walks out to the right edge, then is gone
            x = 450 + 25 * j
            dets.append(Person(face=np.array([x, 100, min(640, x + 60), 160.0]), face_score=0.9, kps=np.zeros((5, 2))))
        if j == 9:  # re-appearing at the same place later is a new track, not a continuation
            dets.append(_face(200, 200))
        dets.append(_face(100, 300, score=0.3))  # a low-score face: never starts a track
        tr.update(j, dets)
    tracks = tr.finish()
    walker = next(t for t in tracks if t.first == 0)
    assert walker.last == 7, "no extrapolation past the last time the person was seen"
    assert not any(abs((t.face_boxes[0, 0] + t.face_boxes[0, 2]) / 2 - 100) < 5 for t in tracks)
    assert any(t.first == 9 for t in tracks)


def test_link_faces_to_bodies():
    faces = [(np.array([180, 60, 240, 130.0]), 0.9, None), (np.array([900, 80, 960, 150.0]), 0.9, None),
             (np.array([20, 20, 40, 45.0]), 0.8, None)]
    bodies = [(np.array([850, 50, 1010, 700.0]), 0.9), (np.array([120, 40, 300, 690.0]), 0.8),
              (np.array([500, 100, 600, 600.0]), 0.7)]
    persons = link_faces_bodies(faces, bodies)
    assert len(persons) == 4  # two linked, one lone face, one lone body
    linked = {tuple(p.face[:2]): tuple(p.body[:2]) for p in persons if p.face is not None and p.body is not None}
    assert linked == {(180, 60): (120, 40), (900, 80): (850, 50)}
    assert sum(p.face is None for p in persons) == 1 and sum(p.body is None for p in persons) == 1


def test_smooth_boxes_keeps_constant_series():
    b = np.tile([10, 20, 50, 80.0], (9, 1))
    assert np.allclose(smooth_boxes(b, 5), b)


# ----------------------------------------------------------------------------- crop geometry
def test_stable_crop_aspect_inside_frame_and_clear_of_neighbours():
    from operators.people import stable_crop

    rng = np.random.default_rng(1)
    boxes = np.array([[320, 130, 500, 370.0]]) + rng.normal(0, 4, (50, 4))
    other = np.array([790, 70, 980, 330.0])
    for aspect in (1.0, 0.75):
        x0, y0, x1, y1 = stable_crop(boxes, 1280, 720, margin=0.6, body=1.0, aspect=aspect, others=[other])
        assert 0 <= x0 < x1 <= 1280 and 0 <= y0 < y1 <= 720
        assert abs((x1 - x0) / (y1 - y0) - aspect) < 1e-6
        assert x1 <= other[0], "the crop must not reach into the other person's head"
        assert x0 <= boxes[:, 0].min() + 10 and x1 >= boxes[:, 2].max() - 10  # head kept
        assert y0 <= boxes[:, 1].min() + 10
    # a small face far from edges gets margins all round, in source pixels
    small = np.tile([600, 300, 640, 350.0], (10, 1))
    x0, y0, x1, y1 = stable_crop(small, 1920, 1080, 0.6, 1.0, 1.0)
    assert y0 == pytest.approx(300 - 0.6 * 50) and y1 == pytest.approx(350 + 1.6 * 50)


# ----------------------------------------------------------------------------- identity
def test_cluster_embeddings_threshold_and_cannot_link():
    from models.identity import cluster_embeddings, l2n

    rng = np.random.default_rng(2)
    a, b = l2n(rng.normal(size=128)), l2n(rng.normal(size=128))
    emb = np.stack([l2n(a + 0.3 * l2n(rng.normal(size=128))) for _ in range(3)] +
                   [l2n(b + 0.3 * l2n(rng.normal(size=128))) for _ in range(2)])
    assert cluster_embeddings(emb, 0.4) == [0, 0, 0, 1, 1]
    # rows 0 and 1 seen at the same time: never one identity
    labels = cluster_embeddings(emb, 0.4, cannot_link={(0, 1)})
    assert labels[0] != labels[1] and labels[3] == labels[4]


def test_link_identities_across_videos():
    from pipeline.identity_index import link_identities

    rng = np.random.default_rng(3)
    p, q = rng.normal(size=64), rng.normal(size=64)
    items = [("v1-p00", "v1", p + 0.2 * rng.normal(size=64)), ("v1-p01", "v1", q),
             ("v2-p00", "v2", p + 0.2 * rng.normal(size=64)), ("v2-p01", "v2", p + 0.25 * rng.normal(size=64)),
             ("v3-p00", "v3", rng.normal(size=64))]
    m = link_identities(items, 0.4)
    assert m["v1-p00"] in (m["v2-p00"], m["v2-p01"])
    assert m["v2-p00"] != m["v2-p01"], "two identities of one video stay apart"
    assert len({m["v1-p01"], m["v1-p00"], m["v3-p00"]}) == 3
    assert link_identities(list(reversed(items)), 0.4)["v3-p00"] == m["v3-p00"]


def test_identity_index_pass_rewrites_clips(tmp_path, settings):
    from pipeline.identity_index import assign_global_identities
    from pipeline.store import OutputStore

    rng = np.random.default_rng(4)
    p, q = rng.normal(size=128), rng.normal(size=128)
    store = OutputStore(str(tmp_path / "out"))
    store.ensure_layout()

    def clip(vid, ident, emb, k):
        return {"clip_id": f"{vid}{k}", "video_id": vid, "shot_index": 0, "track_id": k, "start_frame": 0, "end_frame": 75,
                "start_s": 0.0, "end_s": 3.0, "duration_s": 3.0, "fps": 25.0, "identity_id": ident,
                "identity_embedding": (emb / np.linalg.norm(emb)).astype(np.float32).tolist()}

    store.write_video("va", "h", {"videos": [{"video_id": "va", "uri": "a", "status": "ok"}],
                                  "clips": [clip("va", "va-p00", p, 0), clip("va", "va-p01", q, 1)]}, "ok")
    store.write_video("vb", "h", {"videos": [{"video_id": "vb", "uri": "b", "status": "ok"}],
                                  "clips": [clip("vb", "vb-p00", p + 0.1 * rng.normal(size=128), 0)]}, "ok")
    rep = assign_global_identities(store, settings)
    assert rep["global_identities"] == 2 and rep["cross_video_identities"] == 1
    g = {r["identity_id"]: r["global_identity_id"] for r in store.read_table("clips").to_pylist()}
    assert g["va-p00"] == g["vb-p00"] != g["va-p01"]
    assert store.fs.get_file_info(store.path("_index", "identities.parquet")).size > 0
    assert assign_global_identities(store, settings)["videos_rewritten"] == 0  # idempotent


# ----------------------------------------------------------------------------- detectors' decoding
def test_decode_yolox_maps_grid_outputs_to_boxes():
    from models.persons import decode_yolox

    out = np.zeros((3549, 85), np.float32)
    out[:, 2:4] = -10
    # stride-8 cell (row 10, col 20): a person centred at ((20+0.5)*8, (10+0.5)*8) of size exp(2)*8
    k = 10 * 52 + 20
    out[k, :4] = [0.5, 0.5, 2.0, 3.0]
    out[k, 4], out[k, 5] = 0.9, 0.8
    # stride-32 cell with class 2 (car): ignored
    k2 = 52 * 52 + 26 * 26 + 5
    out[k2, 4], out[k2, 7] = 0.9, 0.9
    det = decode_yolox(out, 416, scale=0.5, score_min=0.4)
    assert len(det) == 1 and det.scores[0] == pytest.approx(0.72)
    cx, cy, w, h = 164 / 0.5, 84 / 0.5, np.exp(2) * 8 / 0.5, np.exp(3) * 8 / 0.5
    assert np.allclose(det.boxes[0], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], atol=1e-3)


def test_ultralytics_local_checkpoint_path(tmp_path, settings):
    os.environ["YOLO_OFFLINE"] = "1"
    from ultralytics import YOLO

    from models.persons import load_person_detector

    ckpt = tmp_path / "tiny_yolo.pt"
    YOLO("yolov8n.yaml").save(str(ckpt))  # random weights, built offline
    settings.people.person_detector = "ultralytics"
    settings.people.ultralytics_weights = str(ckpt)
    det = load_person_detector(settings)
    assert det.model.digest and det.model.path == ckpt
    res = det.detect(np.full((240, 320, 3), 127, np.uint8))
    assert res.boxes.shape[1] == 4 and len(res.boxes) == len(res.scores)
    settings.people.ultralytics_weights = None
    from models.registry import MissingModelError

    with pytest.raises(MissingModelError, match="ultralytics_weights"):
        load_person_detector(settings)


def _random_arcface_onnx(path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    w = numpy_helper.from_array(rng.normal(0, 0.05, (16, 3, 8, 8)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.normal(0, 0.05, (16 * 14 * 14, 512)).astype(np.float32), "fc")
    nodes = [helper.make_node("Conv", ["input.1", "w"], ["c"], strides=[8, 8], name="conv0"),
             helper.make_node("Relu", ["c"], ["r"], name="relu0"),
             helper.make_node("Flatten", ["r"], ["f"], axis=1, name="flat0"),
             helper.make_node("MatMul", ["f", "fc"], ["683"], name="fc0")]
    g = helper.make_graph(nodes, "arcface_tiny", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, 112, 112])],
                          [helper.make_tensor_value_info("683", TensorProto.FLOAT, ["N", 512])], [w, fc])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, str(path))


def test_arcface_through_insightface_model_zoo(tmp_path, settings):
    from models.identity import ArcFace, align_face, load_identity_model

    path = tmp_path / "w600k_tiny.onnx"
    _random_arcface_onnx(path)
    settings.people.identity_model = "arcface"
    settings.people.arcface_weights = str(path)
    model = load_identity_model(settings)
    assert isinstance(model, ArcFace) and model.dim == 512
    frame = np.random.default_rng(6).integers(0, 255, (200, 200, 3), np.uint8)
    kps = np.array([[70, 80], [130, 80], [100, 110], [75, 140], [125, 140]], np.float32)
    face = align_face(frame, kps)
    assert face.shape == (112, 112, 3)
    emb = model.embed([face, face[:, ::-1].copy()])
    assert emb.shape == (2, 512) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    assert not np.allclose(emb[0], emb[1])


# ----------------------------------------------------------------------------- missing weights
def test_missing_models_fallback_and_reject(tmp_path, model_dir, settings):
    """No scrfd file: the stage says so and uses the registry's stated fallback (YuNet). No identity
    model: every video is rejected 'model_missing' with a message naming the file; nothing downloads."""
    import shutil

    from models import registry
    from operators.base import VideoTask, run_operator
    from operators.people import PeopleOperator

    d = tmp_path / "models"
    for name in ("yunet-320", "yolox-nano", "mobilefacenet"):
        f = registry.REGISTRY[name].main
        (d / f.relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_dir / f.relpath, d / f.relpath)
    settings.models.dir = str(d)
    op = PeopleOperator(settings)
    op.setup()
    assert op.model_error is None and op.face_det.name == "yunet-320"
    assert "scrfd" in op.fallbacks[0] and "yunet-320 used" in op.fallbacks[0]

    (d / registry.REGISTRY["mobilefacenet"].main.relpath).unlink()
    op = PeopleOperator(settings)
    task = VideoTask(uri="x.mp4", video_id="v", video={"fps": 25.0, "width": 64, "height": 64})
    task = run_operator(op, task, 60)
    assert task.status == "rejected" and task.rejects[-1]["reason"] == "model_missing"
    assert "face-id/mobilefacenet.onnx" in task.rejects[-1]["message"] and "models pull" in task.rejects[-1]["message"]
    assert not list(d.rglob("*.part")) and not (d / "face-id").exists() or not any((d / "face-id").iterdir())
