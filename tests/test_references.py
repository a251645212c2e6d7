"""References stage on a composite where each person appears in two shots (issue 6, must-show 1 and 2)."""
from __future__ import annotations

import copy
import itertools

import cv2
import numpy as np
import pytest

from issue6_media import processed_composite, segment_bounds


@pytest.fixture(scope="module")
def composite(tmp_path_factory, media_dir, model_dir):
    return processed_composite(str(tmp_path_factory.getbasetemp()), str(media_dir), str(model_dir))


def _shot_of(t: float) -> int:
    return next(i for i, (a, b) in enumerate(segment_bounds()) if a <= t < b)


def test_every_clip_has_references_of_its_identity_from_outside_itself(composite):
    settings, _, task = composite
    margin = settings.references.exclusion_margin_s
    for c in task.clips:
        refs = c["references"]
        kinds = {r["kind"] for r in refs}
        assert {"global", "body", "expression"} <= kinds, (c["shot_index"], kinds)
        assert c["video_bytes"] and c["caption"] and c["tags"] and len(c["reference_meta"]) == len(refs)
        for r in refs:
            # never inside the target clip (nor within the exclusion margin)
            assert r["source_time_s"] < c["start_s"] - margin or r["source_time_s"] >= c["end_s"] + margin
            assert r["identity_id"] == c["identity_id"] and r["source_video_id"] == task.video_id
            assert r["label"] and 0.0 <= r["quality"] <= 1.0
            img = cv2.imdecode(np.frombuffer(r["jpeg"], np.uint8), cv2.IMREAD_COLOR)
            assert img is not None and min(img.shape[:2]) >= 32
            # the same person: the reference comes from a shot showing this identity (A: 0 and 2, B: 1 and 3)
            shot = _shot_of(r["source_time_s"])
            assert shot % 2 == c["shot_index"] % 2
            # ... and from the OTHER shot of that person
            assert shot != c["shot_index"]


def test_expression_references_are_distinct_and_labelled(composite):
    from operators.expressions import LABELS

    settings, _, task = composite
    faces = task.scratch["faces"]
    by_time = {}
    for c in task.clips:
        fa = faces[c["clip_id"]]
        for t, bs, ok in zip(fa["t"], fa["bs"], fa["found"]):
            if ok:
                by_time[round(c["start_s"] + float(t), 3)] = np.asarray(bs, np.float32)
    n_checked = 0
    for c in task.clips:
        ex = [r for r in c["references"] if r["kind"] == "expression"]
        assert settings.references.min_expressions <= len(ex) <= settings.references.max_expressions
        assert all(r["label"] in LABELS for r in ex)
        vecs = [by_time[round(r["source_time_s"], 3)] for r in ex]
        for a, b in itertools.combinations(vecs, 2):
            assert np.linalg.norm(a - b) >= settings.references.expression_min_distance - 1e-3
            n_checked += 1
    assert n_checked >= 4


def test_view_references_carry_their_orientation(composite):
    settings, _, task = composite
    cfg = settings.references
    for c in task.clips:
        for r, m in zip(c["references"], c["reference_meta"]):
            if r["kind"] != "body":
                continue
            assert r["label"] in ("frontal", "left", "right", "rear")
            angle = float(m["angle_deg"])
            assert m["orientation_source"] in ("body", "head", "body seen, no face")
            if r["label"] == "frontal":
                assert angle >= cfg.frontal_min_deg
            elif r["label"] == "rear":
                assert angle <= cfg.rear_max_deg
            else:
                assert cfg.rear_max_deg < angle < cfg.frontal_min_deg
        views = [r["label"] for r in c["references"] if r["kind"] == "body"]
        assert len(views) == len(set(views)) and "frontal" in views  # people talking to the camera


def test_identity_seen_once_gets_no_references_and_can_be_dropped(composite):
    from operators.base import Deadline
    from operators.references import ReferenceOperator

    settings, _, task = composite
    t = copy.deepcopy(task)
    t.clips = [c for c in t.clips if c["shot_index"] in (0, 1)]  # each identity now has one clip only
    for c in t.clips:
        c["references"] = None
    out = ReferenceOperator(settings).process(t, Deadline(120))
    assert all(c["references"] == [] for c in out.clips)
    assert all("no footage" in " ".join(out.scratch["references"][c["clip_id"]]["notes"]) for c in out.clips)
    s2 = settings.model_copy(deep=True)
    s2.references.require_references = True
    t2 = copy.deepcopy(t)
    out2 = ReferenceOperator(s2).process(t2, Deadline(120))
    assert out2.clips == [] and {r["reason"] for r in out2.rejects} == {"no_references"}


def test_low_resolution_source_gets_no_expression_references(composite):
    from operators.base import Deadline
    from operators.references import ReferenceOperator

    settings, _, task = composite
    s2 = settings.model_copy(deep=True)
    s2.references.expression_min_source_px = 1080  # the paper's minimum; the composite is 480 px
    out = ReferenceOperator(s2).process(copy.deepcopy(task), Deadline(120))
    for c in out.clips:
        assert not [r for r in c["references"] if r["kind"] == "expression"]
        assert [r for r in c["references"] if r["kind"] == "global"]
        assert any("expression_min_source_px" in n for n in out.scratch["references"][c["clip_id"]]["notes"])
