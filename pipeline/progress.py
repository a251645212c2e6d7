"""What a user sees while a run goes: one progress line (videos and shots done, hours of video, realtime
factor, ETA, rejects so far), and a JSON-lines log for jobs.

Ray's own progress bars and logs stay off unless ``run.verbose``; the runner feeds each video's receipt
to :meth:`Progress.update` as the writer finishes it.
"""
from __future__ import annotations

import json
import sys
import time
from typing import IO, Any


class Progress:
    """Terminal progress for a run of ``total`` inputs. ``mode``: "auto" (a redrawn line on a terminal,
    a line per video elsewhere), "line", "tty" or "quiet". ``json_log``: file that gets one JSON object
    per finished video and a final ``run_done`` record."""

    def __init__(self, total: int, mode: str = "auto", stream: IO[str] | None = None, json_log: str | None = None,
                 min_interval_s: float = 0.5):
        self.total = total
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "tty" if getattr(self.stream, "isatty", lambda: False)() else "line"
        self.mode = mode
        self.json = open(json_log, "a", encoding="utf-8") if json_log else None
        self.t0 = time.time()
        self.done = self.skipped = self.rejected = self.failed = 0
        self.shots = self.shots_kept = self.clips = self.rejects = 0
        self.video_s = 0.0
        self.min_interval_s = min_interval_s
        self._last = 0.0
        self._width = 0

    def update(self, receipt: dict[str, Any]) -> None:
        self.done += 1
        status = receipt.get("status")
        if status == "skipped":
            self.skipped += 1
        elif status == "rejected":
            self.rejected += 1
        elif status == "write_failed":
            self.failed += 1
        counts = receipt.get("counts") or {}
        self.shots += int(receipt.get("shots") or 0)
        self.shots_kept += int(receipt.get("shots_kept") or 0)
        self.clips += int(counts.get("clips") or 0)
        self.rejects += int(counts.get("rejects") or 0)
        if status != "skipped":
            self.video_s += float(receipt.get("duration_s") or 0.0)
        if self.json is not None:
            rec = {"event": "video_done", "time": time.time(), **{k: receipt.get(k) for k in
                   ("uri", "video_id", "status", "reason", "duration_s", "shots", "shots_kept", "counts", "error")}}
            self.json.write(json.dumps(rec, default=str) + "\n")
            self.json.flush()
        self._draw(force=self.mode == "line")

    def line(self) -> str:
        wall = max(1e-6, time.time() - self.t0)
        rt = self.video_s / wall
        processed = self.done - self.skipped
        left = self.total - self.done
        eta = ""
        if processed and left:
            eta = f" | ETA {_dur(wall / max(1, self.done) * left)}"
        extra = f", {self.skipped} already done" if self.skipped else ""
        extra += f", {self.failed} write failed" if self.failed else ""
        return (f"videos {self.done}/{self.total}{extra} | shots {self.shots_kept} kept of {self.shots} | "
                f"clips {self.clips} | rejects {self.rejects} ({self.rejected} videos) | "
                f"{self.video_s / 3600:.2f} h video, {rt:.2f}x realtime | {_dur(wall)}{eta}")

    def _draw(self, force: bool = False) -> None:
        if self.mode == "quiet":
            return
        now = time.time()
        if not force and now - self._last < self.min_interval_s and self.done < self.total:
            return
        self._last = now
        text = self.line()
        if self.mode == "tty":
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self, summary: dict[str, Any] | None = None) -> None:
        if self.mode == "tty" and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0
        if self.json is not None:
            if summary is not None:
                rec = {"event": "run_done", "time": time.time(), **{k: summary.get(k) for k in
                       ("run_id", "inputs", "processed", "skipped_already_done", "rejected_videos", "funnel", "timings_s")}}
                self.json.write(json.dumps(rec, default=str) + "\n")
            self.json.close()
            self.json = None


def _dur(s: float) -> str:
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"
