"""The operator contract every stage follows, and the unit of work that flows between stages.

A stage is an :class:`Operator`: it declares the parts of a :class:`VideoTask` it reads and writes, the
resources one worker needs, loads its models once in :meth:`Operator.setup`, and transforms one task in
:meth:`Operator.process`. Operators know nothing of Ray: ``pipeline/`` wraps them into Ray Data stages,
and tests call them directly::

    op = ShotOperator(settings); op.setup()
    task = op.process(task, Deadline(60))

Errors are data. An operator drops an item by recording a reject (``task.reject(...)`` for the whole
video, ``task.add_reject(...)`` for a shot/track/clip); it never raises for bad input. Work is bounded
by a :class:`Deadline` the operator checks inside its loops, and every subprocess has a timeout, so no
input can hang a worker. An unexpected exception (a bug) is caught by :func:`run_operator` and recorded
as a reject with reason ``internal_error`` so the rest of the run goes on.
"""
from __future__ import annotations

import abc
import contextlib
import hashlib
import json
import resource
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from schemas.settings import Settings

try:
    from importlib.metadata import version as _pkg_version

    CODE_VERSION = _pkg_version("lpm-curate")
except Exception:  # pragma: no cover - running from a source tree without install
    CODE_VERSION = "0+unknown"

# Parts of a task an operator may declare in `reads` / `writes`.
TASK_PARTS = ("video", "shots", "clips", "identities", "rejects")


class ItemTimeout(Exception):
    """Raised by Deadline.check() when one item has used up its time budget."""


class Deadline:
    """Cooperative time budget for one item in one stage."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.start = time.monotonic()
        self.end = None if seconds is None else self.start + seconds

    def remaining(self) -> float | None:
        return None if self.end is None else max(0.0, self.end - time.monotonic())

    def check(self, what: str = "") -> None:
        if self.end is not None and time.monotonic() > self.end:
            raise ItemTimeout(f"time budget of {self.seconds:.0f} s exceeded{' during ' + what if what else ''}")

    def timeout_for(self, cap_s: float) -> float:
        """Timeout to give a subprocess: the smaller of cap_s and what is left (at least 1 s)."""
        rem = self.remaining()
        return max(1.0, cap_s if rem is None else min(cap_s, rem))


@dataclass
class Resources:
    """What one worker of a stage needs. num_cpus is logical (Ray scheduling), fractional on small boxes."""

    num_cpus: float = 0.5
    num_gpus: float = 0.0
    memory_mb: int = 1024


@dataclass
class VideoTask:
    """Everything known about one input video as it moves through the stages.

    ``video`` becomes the videos/ row, ``shots`` the shots/ rows, ``clips`` the clips/ rows and
    ``rejects`` the rejects/ rows. Rows are plain dicts whose keys are columns of schemas/tables.py.
    ``scratch`` holds small intermediate results that are not written (e.g. per-shot track data that a
    later stage consumes); it must stay small: encoded media or references, never decoded frames.
    """

    uri: str
    video_id: str = ""
    status: str = "ok"  # ok | rejected | skipped (already done in a previous run)
    video: dict[str, Any] = field(default_factory=dict)
    shots: list[dict[str, Any]] = field(default_factory=list)
    clips: list[dict[str, Any]] = field(default_factory=list)
    identities: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    scratch: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)  # process CPU seconds per stage (benchmarks)
    # work unit (operators/units.py): None = the whole video; -1 = the head of a split video; k = kept shot k
    unit_index: int | None = None
    n_units: int = 1
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)

    # ------------------------------------------------------------------ rejects
    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def reject(self, stage: str, reason: str, message: str = "") -> "VideoTask":
        """Drop the whole video: one rejects row at level 'video'; later stages skip this task."""
        self.status = "rejected"
        self.video["status"] = "rejected"
        self.video["reason"] = reason
        dur = self.video.get("duration_s")
        self.add_reject(stage, "video", reason, message, start_s=0.0 if dur is not None else None,
                        end_s=dur, duration_s=dur)
        return self

    def add_reject(self, stage: str, level: str, reason: str, message: str = "", **item: Any) -> None:
        row = {"uri": self.uri, "video_id": self.video_id, "stage": stage, "level": level, "reason": reason,
               "message": message[:2000]}
        row.update({k: v for k, v in item.items() if v is not None})
        self.rejects.append(row)

    def warn(self, code: str, message: str) -> None:
        """Record a warning on the videos row ("code: message"); the video is still processed."""
        text = f"{code}: {message}"[:500]
        warnings = self.video.setdefault("warnings", [])
        if text not in warnings:
            warnings.append(text)

    # ------------------------------------------------------------------ source media
    def source(self) -> "contextlib.AbstractContextManager[str]":
        """Context manager giving a local path of the media every stage reads: the normalised copy made
        at probe time when the input's timestamps had to be regenerated, else the input itself (remote
        inputs staged to a temporary file)."""
        from operators.media import local_path

        prepared = self.scratch.get("source_path")
        if prepared:
            import os

            if os.path.exists(prepared):
                return contextlib.nullcontext(prepared)
        return local_path(self.uri)

    def release_work_files(self) -> None:
        """Remove this video's working files (called once its rows are written)."""
        import os
        import shutil

        folder = self.scratch.pop("work_dir", None)
        self.scratch.pop("source_path", None)
        if folder and os.path.isdir(folder):
            shutil.rmtree(folder, ignore_errors=True)

    def kept_shots(self) -> list[dict[str, Any]]:
        return [s for s in self.shots if s.get("kept")]

    def drop_shot(self, shot: dict[str, Any], stage: str, reason: str, message: str = "") -> None:
        """Mark a shot not kept (first failed check wins) and record its reject row."""
        if not shot.get("kept", True):
            return
        shot["kept"] = False
        shot["reason"] = reason
        self.add_reject(stage, "shot", reason, message, shot_index=shot["shot_index"], start_s=shot["start_s"],
                        end_s=shot["end_s"], duration_s=shot["end_s"] - shot["start_s"])

    def drop_clip(self, clip: dict[str, Any], stage: str, reason: str, message: str = "") -> None:
        """Remove a clip from the output and record its reject row."""
        self.clips = [c for c in self.clips if c is not clip]
        self.add_reject(stage, "clip", reason, message, shot_index=clip.get("shot_index"),
                        track_id=clip.get("track_id"), clip_id=clip.get("clip_id"), start_s=clip.get("start_s"),
                        end_s=clip.get("end_s"), duration_s=clip.get("duration_s"))

    def record_provenance(self, group: str, stage: str, model: str = "", weights_sha256: str = "",
                          params: dict[str, Any] | None = None) -> None:
        self.provenance[group] = provenance_entry(stage, model, weights_sha256, params)


def provenance_entry(stage: str, model: str = "", weights_sha256: str = "", params: dict[str, Any] | None = None) -> dict[str, Any]:
    params_json = json.dumps(params or {}, sort_keys=True, default=str)
    return {
        "stage": stage,
        "model": model,
        "weights_sha256": weights_sha256,
        "params_hash": hashlib.sha256(params_json.encode()).hexdigest()[:16],
        "code_version": CODE_VERSION,
    }


class Operator(abc.ABC):
    """Base of every stage. Subclasses set the class attributes and implement process()."""

    name: ClassVar[str] = "operator"
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    resources: ClassVar[Resources] = Resources()
    # "video": runs on the whole video (probe, shots, and the stages that need every clip of it);
    # "shot": runs on one kept shot at a time (operators/units.py), and on a whole video by looping its shots
    scope: ClassVar[str] = "video"

    def __init__(self, settings: "Settings"):
        self.settings = settings
        self._is_setup = False

    def setup(self) -> None:
        """Load models once per worker. Default: nothing to load."""

    def ensure_setup(self) -> None:
        if not self._is_setup:
            self.setup()
            self._is_setup = True

    @abc.abstractmethod
    def process(self, task: VideoTask, deadline: Deadline) -> VideoTask:
        """Transform one task; record rejects on it rather than raising for bad input."""

    @classmethod
    def validate_contract(cls) -> None:
        if cls.scope not in ("video", "shot"):
            raise TypeError(f"{cls.__name__}: scope must be 'video' or 'shot', not {cls.scope!r}")
        for part in cls.reads + cls.writes:
            if part not in TASK_PARTS:
                raise TypeError(f"{cls.__name__}: unknown task part {part!r} (known: {TASK_PARTS})")


def cpu_seconds() -> float:
    """CPU seconds of this process plus its finished child processes (the ffmpeg decodes and encodes)."""
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def run_operator(op: Operator, task: VideoTask, item_timeout_s: float | None) -> VideoTask:
    """Run one operator on one task with errors turned into data. Used by Ray adapters and local runs."""
    if not task.ok:
        return task
    t0 = time.monotonic()
    c0 = cpu_seconds()
    try:
        op.ensure_setup()
        task = op.process(task, Deadline(item_timeout_s))
    except ItemTimeout as exc:
        task.reject(op.name, "timeout", str(exc))
    except Exception as exc:  # a bug or an unforeseen input: record it, never kill the run
        tb = traceback.format_exc(limit=6)
        task.reject(op.name, "internal_error", f"{type(exc).__name__}: {exc}\n{tb}")
    task.timings_s[op.name] = task.timings_s.get(op.name, 0.0) + (time.monotonic() - t0)
    task.cpu_s[op.name] = task.cpu_s.get(op.name, 0.0) + (cpu_seconds() - c0)
    return task
