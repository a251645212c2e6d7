"""Near-duplicate clips across a run (issue 6, must-show 3): the same video ingested twice under
different names keeps one copy of each clip and rejects the other with reason 'duplicate'; two moments
of the same static talking head are NOT duplicates."""
from __future__ import annotations

import shutil

import pytest

from issue6_media import build_task, processed_composite


@pytest.fixture(scope="module")
def composite(tmp_path_factory, media_dir, model_dir):
    return processed_composite(str(tmp_path_factory.getbasetemp()), str(media_dir), str(model_dir))


def test_same_video_twice_under_different_names(composite, tmp_path):
    from operators.base import run_operator
    from operators.embeddings import EmbeddingOperator
    from pipeline.dedupe import dedupe_pass
    from pipeline.runner import task_rows
    from pipeline.store import OutputStore

    settings, src, task1 = composite
    copy = tmp_path / "renamed copy.mp4"
    shutil.copyfile(src, copy)
    task2 = run_operator(EmbeddingOperator(settings), build_task(settings, copy), 300)
    assert task2.ok and task2.video_id != task1.video_id
    store = OutputStore(str(tmp_path / "out"))
    store.ensure_layout()
    ch = settings.config_hash()
    for t in (task1, task2):
        store.write_video(t.video_id, ch, task_rows(t), t.status)
    assert store.read_table("clips").num_rows == 8

    report = dedupe_pass(store, settings)
    assert report["duplicates"] == 4 and report["videos_rewritten"] == 1
    clips = store.read_table("clips").to_pylist()
    assert len(clips) == 4
    keep_vid = min(task1.video_id, task2.video_id)
    drop_vid = max(task1.video_id, task2.video_id)
    assert {c["video_id"] for c in clips} == {keep_vid}
    # clips 0 and 2 show the same person in the same framing at different times: both kept
    assert sorted(c["shot_index"] for c in clips) == [0, 1, 2, 3]
    rejects = [r for r in store.read_table("rejects").to_pylist() if r["reason"] == "duplicate"]
    assert len(rejects) == 4 and {r["video_id"] for r in rejects} == {drop_vid}
    kept_ids = {c["clip_id"] for c in clips}
    for r in rejects:
        assert r["stage"] == "dedupe" and r["level"] == "clip" and r["uri"].endswith(".mp4")
        assert any(k in r["message"] for k in kept_ids)
    video = store.read_part("videos", drop_vid).to_pylist()[0]
    assert video["n_clips"] == 0
    # idempotent: a second pass finds nothing new and adds no reject rows
    again = dedupe_pass(store, settings)
    assert again["duplicates"] == 0
    assert len([r for r in store.read_table("rejects").to_pylist() if r["reason"] == "duplicate"]) == 4


def test_compare_rules(composite):
    from pipeline.dedupe import compare

    settings, _, task = composite
    a, b, c = task.clips[0], task.clips[1], task.clips[2]
    assert compare(a["phash"], a["keyframe_thumbs"], a["phash"], a["keyframe_thumbs"], settings)[0]
    # the same person, same framing, different moment: pHash alone cannot tell, the motion check does
    dup, ev = compare(a["phash"], a["keyframe_thumbs"], c["phash"], c["keyframe_thumbs"], settings)
    assert not dup
    assert not compare(a["phash"], a["keyframe_thumbs"], b["phash"], b["keyframe_thumbs"], settings)[0]
    # a copy shifted by one keyframe still aligns
    assert compare(a["phash"][1:], a["keyframe_thumbs"][256:], a["phash"], a["keyframe_thumbs"], settings)[0]


def test_disabled(settings, tmp_path):
    from pipeline.dedupe import dedupe_pass
    from pipeline.store import OutputStore

    s = settings.model_copy(deep=True)
    s.captions.dedupe = False
    store = OutputStore(str(tmp_path))
    assert dedupe_pass(store, s) == {"enabled": False}
