"""The operator contract: errors become data, deadlines bound an item, order is validated."""
from __future__ import annotations

import time

import pytest

from operators.base import Deadline, Operator, VideoTask, run_operator
from pipeline.stages import STAGES, check_order


class _Slow(Operator):
    name = "slow"
    writes = ("video",)

    def process(self, task, deadline):
        while True:  # a runaway loop that still checks its deadline
            deadline.check("spinning")
            time.sleep(0.01)


class _Buggy(Operator):
    name = "buggy"

    def process(self, task, deadline):
        raise ZeroDivisionError("boom")


def test_deadline_turns_a_runaway_item_into_a_timeout_reject(settings):
    t0 = time.monotonic()
    task = run_operator(_Slow(settings), VideoTask(uri="/x.mp4", video_id="v"), item_timeout_s=0.3)
    assert time.monotonic() - t0 < 5
    assert task.status == "rejected" and task.rejects[-1]["reason"] == "timeout"
    assert task.rejects[-1]["stage"] == "slow"


def test_a_bug_is_recorded_not_raised(settings):
    task = run_operator(_Buggy(settings), VideoTask(uri="/x.mp4", video_id="v"), item_timeout_s=10)
    assert task.status == "rejected"
    r = task.rejects[-1]
    assert r["reason"] == "internal_error" and "ZeroDivisionError" in r["message"]
    # later operators skip a rejected task
    assert run_operator(_Slow(settings), task, 0.1) is task and task.rejects[-1] is r


def test_deadline_remaining_and_subprocess_timeouts():
    d = Deadline(100)
    assert 99 < d.remaining() <= 100
    assert d.timeout_for(30) == 30
    assert Deadline(None).timeout_for(30) == 30


def test_stage_order_is_validated():
    check_order(STAGES)

    class _NeedsClips(Operator):
        name = "needs"
        reads = ("clips",)

    with pytest.raises(ValueError, match="no earlier stage"):
        check_order([STAGES[0], _NeedsClips])

    class _Typo(Operator):
        name = "typo"
        reads = ("clipz",)

    with pytest.raises(TypeError):
        check_order([_Typo])


def test_every_registered_stage_declares_resources():
    for cls in STAGES:
        assert cls.resources.num_cpus > 0, cls
        assert cls.name and cls.name != "operator", cls


def test_stages_fuse_on_small_machines_and_split_on_clusters(settings):
    from pipeline.runner import _stage_cpus, shot_workers, stage_groups
    from pipeline.stages import build_operators, phases

    ops = build_operators(settings)
    head, shot, tail = phases(ops)
    assert [ops[i].name for i in head] == ["probe", "shots"] and ops[shot[0]].name == "clips"
    assert [ops[i].name for i in tail] == ["identities", "references", "captions", "embeddings"]
    small = stage_groups(ops, settings, cluster_cpus=2)
    assert small == [("head", head), ("shot", shot), ("tail", tail)]

    def reserved(groups, cpus):
        return sum(c * (shot_workers(settings, cpus) if phase == "shot" else 1)
                   for (phase, _), c in zip(groups, _stage_cpus(groups, ops, settings, cpus)))

    assert reserved(small, 2) <= 0.95 * 2
    big = stage_groups(ops, settings, cluster_cpus=64)
    assert big == [(ph, [i]) for ph, idx in zip(("head", "shot", "tail"), (head, shot, tail)) for i in idx]
    settings.run.fuse_stages = False
    split = stage_groups(ops, settings, cluster_cpus=2)
    assert len(split) == len(ops) and reserved(split, 2) <= 0.95 * 2


def test_a_stage_that_needs_the_whole_video_cannot_sit_between_shot_stages(settings):
    from pipeline.stages import build_operators, phases

    ops = build_operators(settings)
    ops.insert(4, ops.pop([o.name for o in ops].index("references")))
    with pytest.raises(ValueError, match="references"):
        phases(ops)
