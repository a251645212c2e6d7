"""Work units: a video is probed and cut into shots as one unit, then every kept shot is its own unit.

The stages between shot detection and the per-video stages (people, separation, conversation, audio,
faces: :attr:`operators.base.Operator.scope` ``"shot"``) see one kept shot at a time, so a long video
is spread over every worker of a machine or cluster and a failure costs one shot, not the video.

:func:`split_shots` turns the task that left the per-video head stages into a *head* unit (the video
row, every shot row, the rejects so far; it does no shot work) and one unit per kept shot (a copy of
the video row, that one shot, the source frame times of the shot only). :func:`merge_units` puts
the processed units of a video back together for the per-video tail stages (identities, references,
captions, embeddings), which need every clip of the video:

* clips, rejects, per-clip scratch and provenance of the units are joined in shot order;
* a unit that failed (a shot-scope stage timed out, raised, or lost its worker's media) drops only
  its shot: the shot is marked not kept with the unit's reason and its rejects row says ``level: shot``;
* a unit that failed because a model is missing rejects the video (every shot would fail the same way).

Operators know nothing of units: a shot-scope operator works on any task and loops over its kept
shots, so tests may still run the stages on a whole-video task.
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

from operators.base import VideoTask

HEAD = -1  # VideoTask.unit_index of the head unit
# reasons of a failed shot unit that are not the shot's fault: the whole video is rejected with them
VIDEO_LEVEL_REASONS = ("model_missing",)


class TimesWindow(Sequence[float]):
    """The source frame times of one shot, indexable by absolute frame number like the full list
    (``scratch["frame_times"]``): frames outside the window are extrapolated at the nominal rate. Keeps a
    shot unit small on long videos (the full list has one float per source frame)."""

    def __init__(self, times: Sequence[float], lo: int, hi: int, fps: float):
        self.total = len(times)
        self.lo = max(0, min(lo, self.total))
        self.values = [float(t) for t in times[self.lo:max(self.lo, min(hi, self.total))]]
        self.fps = float(fps) if fps and fps > 0 else 25.0

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self.total))]
        i = int(i)
        if i < 0:
            i += self.total
        if not self.values:
            return i / self.fps
        k = i - self.lo
        if 0 <= k < len(self.values):
            return self.values[k]
        if k < 0:
            return self.values[0] + k / self.fps
        return self.values[-1] + (k - len(self.values) + 1) / self.fps

    def __reduce__(self):
        return (_rebuild_window, (self.values, self.lo, self.total, self.fps))


def _rebuild_window(values: list[float], lo: int, total: int, fps: float) -> TimesWindow:
    w = TimesWindow.__new__(TimesWindow)
    w.values, w.lo, w.total, w.fps = list(values), lo, total, fps
    return w


# scratch entries that stay with the head (per-video working files, the full frame-time list)
_HEAD_ONLY = ("work_dir",)


def split_shots(task: VideoTask) -> list[VideoTask]:
    """[head, unit per kept shot]. A video that is not ok or has no kept shot is one unit: the head
    (``n_units`` 1), which the join passes on as it is."""
    kept = task.kept_shots() if task.ok else []
    task.unit_index = HEAD
    task.n_units = 1 + len(kept)
    if not kept:
        return [task]
    times = task.scratch.get("frame_times")
    fps = float(task.video.get("fps") or 25.0)
    units = [task]
    for shot in kept:
        scratch: dict[str, Any] = {k: v for k, v in task.scratch.items() if k not in _HEAD_ONLY and k != "frame_times"}
        if times:
            scratch["frame_times"] = TimesWindow(times, int(shot["start_frame"]), int(shot["end_frame"]) + 2, fps)
        video = copy.deepcopy(task.video)
        units.append(VideoTask(
            uri=task.uri, video_id=task.video_id, status=task.status, video=video, shots=[copy.deepcopy(shot)],
            clips=[copy.deepcopy(c) for c in task.clips if c.get("shot_index") == shot["shot_index"]],
            scratch=scratch, unit_index=int(shot["shot_index"]), n_units=task.n_units))
    # the head does no shot work: its kept shots are done by the units
    task.clips = [c for c in task.clips if c.get("shot_index") not in {s["shot_index"] for s in kept}]
    return units


def unit_key(task: VideoTask) -> tuple[str, int]:
    return (task.uri, HEAD if task.unit_index is None else int(task.unit_index))


def merge_units(units: list[VideoTask]) -> VideoTask:
    """The video task again from its head and shot units (any order; duplicates of a unit, e.g. from a
    retried worker, are ignored)."""
    by_index: dict[int, VideoTask] = {}
    for u in units:
        by_index.setdefault(HEAD if u.unit_index is None else int(u.unit_index), u)
    head = by_index.pop(HEAD)
    head.unit_index = None
    head.n_units = 1
    if not by_index:
        return head
    shot_pos = {int(s["shot_index"]): i for i, s in enumerate(head.shots)}
    video_fail: tuple[str, str, str] | None = None
    for idx in sorted(by_index):
        u = by_index[idx]
        _merge_video(head, u)
        if u.shots:
            head.shots[shot_pos[idx]] = u.shots[0]
        shot = head.shots[shot_pos[idx]]
        for k, v in u.timings_s.items():
            head.timings_s[k] = head.timings_s.get(k, 0.0) + v
        for k, v in u.cpu_s.items():
            head.cpu_s[k] = head.cpu_s.get(k, 0.0) + v
        head.provenance.update(u.provenance)
        if u.status == "rejected":
            fail = [r for r in u.rejects if r.get("level") == "video"]
            other = [r for r in u.rejects if r.get("level") != "video"]
            reason = str(u.video.get("reason") or (fail[-1]["reason"] if fail else "internal_error"))
            stage = str(fail[-1]["stage"]) if fail else "unknown"
            message = str(fail[-1].get("message", "")) if fail else ""
            head.rejects.extend(other)
            if reason in VIDEO_LEVEL_REASONS:
                video_fail = video_fail or (stage, reason, message)
                continue
            shot["kept"] = True  # drop_shot records the row (first failed check wins; this one is the first)
            head.drop_shot(shot, stage, reason, message)
            continue
        head.rejects.extend(u.rejects)
        head.clips.extend(u.clips)
        _merge_scratch(head.scratch, u.scratch)
    if video_fail is not None:
        head.clips = []
        head.reject(*video_fail)
    return head


def _merge_video(head: VideoTask, unit: VideoTask) -> None:
    for w in unit.video.get("warnings") or []:
        code, _, message = w.partition(": ")
        head.warn(code, message)
    for k, v in unit.video.items():
        if k in ("status", "reason", "warnings"):
            continue
        if head.video.get(k) != v:
            head.video[k] = v


def _merge_scratch(into: dict[str, Any], scratch: dict[str, Any]) -> None:
    for k, v in scratch.items():
        if k in ("frame_times", "vocals", "source_path"):
            continue  # per shot working data: consumed by the shot stages, or the head's own
        have = into.get(k)
        if isinstance(v, dict) and isinstance(have, dict):
            if k.endswith("_counts"):
                for ck, cv in v.items():
                    have[ck] = have.get(ck, 0) + cv if isinstance(cv, (int, float)) else cv
            else:
                have.update(v)
        elif isinstance(v, list) and isinstance(have, list):
            have.extend(v)
        else:
            into[k] = copy.copy(v) if isinstance(v, (dict, list)) else v
