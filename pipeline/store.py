"""The output folder: per-video Parquet parts of each table, written atomically, plus resume markers.

Layout of DIR::

    videos/part-<video_id>.parquet    shots/part-<video_id>.parquet
    clips/part-<video_id>.parquet     rejects/part-<video_id>.parquet
    _state/<video_id>.json            marker: the video is finished (written last)
    summary.json                      run id, config hash, code version, funnel, timings
    _lock.json                        held by the run writing the folder (pid, host, run id, start)

A video's parts are written to temporary names and renamed into place, then its marker is written.
A run killed at any moment leaves at most temporary files (ignored, cleaned on the next run) or parts
without a marker (rewritten under the same names by the rerun): never duplicate rows. All I/O goes
through pyarrow.fs, so DIR may be a local path or an s3:// / gs:// URI.

A write that fails (disk full, quota, lost connection) removes its temporary file and raises
:class:`StoreWriteError`; the video's old marker is removed before its parts are replaced, so a reader
never sees a half-written part as finished, and the next run writes the video again. Only one run may
write a folder at a time: :meth:`OutputStore.lock` (see there) refuses a second with
:class:`OutputLockedError`.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline.inputs import text_uri
from schemas import TABLES, to_table, validate

TABLE_NAMES = ("videos", "shots", "clips", "rejects")
RETRYABLE_REASONS = ("timeout", "internal_error", "model_missing", "worker_lost")
LOCK_NAME = "_lock.json"


class OutputLockedError(RuntimeError):
    """Another run is writing the same output folder."""


class StoreWriteError(OSError):
    """A part, marker or summary could not be written (disk full, permissions, lost connection)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fs_and_path(uri: str) -> tuple[pafs.FileSystem, str]:
    if "://" in uri and not uri.startswith("file://"):
        return pafs.FileSystem.from_uri(uri)
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return pafs.LocalFileSystem(), os.path.abspath(path)


def utf8_safe(value: Any) -> Any:
    """A row value with every string made valid UTF-8 (a non-UTF-8 file name in a uri or a message shows its
    bytes as ``\\xNN``): Parquet cannot hold anything else. Other values are returned as they are."""
    if isinstance(value, str):
        return text_uri(value)
    if isinstance(value, dict):
        return {utf8_safe(k): utf8_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and any(isinstance(v, (str, dict, list, tuple)) for v in value):
        out = [utf8_safe(v) for v in value]
        return tuple(out) if isinstance(value, tuple) else out
    return value


class OutputStore:
    def __init__(self, root: str, compression: str = "zstd", row_group_rows: int = 64):
        self.uri = root
        self.fs, self.root = _fs_and_path(root)
        self.compression = None if compression == "none" else compression
        self.row_group_rows = row_group_rows

    # ------------------------------------------------------------------ paths
    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def ensure_layout(self) -> None:
        for name in (*TABLE_NAMES, "_state"):
            self.fs.create_dir(self.path(name), recursive=True)
        self.clean_temporaries()

    def clean_temporaries(self) -> int:
        n = 0
        for name in (*TABLE_NAMES, "_state"):
            try:
                infos = self.fs.get_file_info(pafs.FileSelector(self.path(name), allow_not_found=True))
            except FileNotFoundError:
                continue
            for info in infos:
                if info.base_name.startswith(".tmp-"):
                    self.fs.delete_file(info.path)
                    n += 1
        return n

    # ------------------------------------------------------------------ lock
    def read_lock(self) -> dict[str, Any] | None:
        try:
            with self.fs.open_input_stream(self.path(LOCK_NAME)) as fh:
                return json.loads(fh.read().decode())
        except (FileNotFoundError, OSError, json.JSONDecodeError):
            return None

    def _lock_is_stale(self, held: dict[str, Any]) -> bool:
        """A lock left by a run that died: same host and its process is gone."""
        try:
            pid = int(held.get("pid", -1))
        except (TypeError, ValueError):
            return False
        return held.get("host") == socket.gethostname() and pid > 0 and not _pid_alive(pid)

    def _locked_message(self, held: dict[str, Any] | None) -> str:
        who = (f"run {held.get('run_id')} (pid {held.get('pid')} on {held.get('host')}, since {held.get('started')})"
               if held else "another run")
        return (f"output {self.uri} is being written by {who}. Wait for it to finish, write to another folder, "
                f"or, if that run is dead on another machine, delete {self.path(LOCK_NAME)}")

    @contextlib.contextmanager
    def lock(self, run_id: str) -> Iterator[dict[str, Any]]:
        """Hold the folder for one run: ``with store.lock(run_id): ...``.

        Local folders use an exclusive create (O_EXCL), so two runs started at the same moment cannot
        both win; a lock whose process is gone (same host) is taken over. On object stores the check is
        best effort (write, then read back our run id). Raises :class:`OutputLockedError` with who holds it."""
        me = {"run_id": run_id, "pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self.fs.create_dir(self.root, recursive=True)
        path = self.path(LOCK_NAME)
        body = json.dumps(me, indent=2).encode()
        for _ in range(2):
            if isinstance(self.fs, pafs.LocalFileSystem):
                try:
                    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    pass
                else:
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(body)
                    break
            elif self.fs.get_file_info(path).type != pafs.FileType.File:
                with self.fs.open_output_stream(path) as fh:
                    fh.write(body)
                if (self.read_lock() or {}).get("run_id") == run_id:
                    break
            held = self.read_lock()
            if held is not None and self._lock_is_stale(held):
                with contextlib.suppress(FileNotFoundError):
                    self.fs.delete_file(path)
                continue
            raise OutputLockedError(self._locked_message(held))
        else:
            raise OutputLockedError(self._locked_message(self.read_lock()))
        try:
            yield me
        finally:
            if (self.read_lock() or {}).get("run_id") == run_id:
                with contextlib.suppress(FileNotFoundError, OSError):
                    self.fs.delete_file(path)

    # ------------------------------------------------------------------ markers
    def marker(self, video_id: str) -> dict[str, Any] | None:
        try:
            with self.fs.open_input_stream(self.path("_state", f"{video_id}.json")) as fh:
                return json.loads(fh.read().decode())
        except (FileNotFoundError, OSError, json.JSONDecodeError):
            return None

    def is_done(self, video_id: str, config_hash: str) -> bool:
        """Finished with the same config. Videos that failed for a transient reason are retried once."""
        m = self.marker(video_id)
        if not m or m.get("config_hash") != config_hash:
            return False
        if m.get("status") == "rejected" and m.get("reason") in RETRYABLE_REASONS and m.get("attempts", 1) < 2:
            return False
        return True

    # ------------------------------------------------------------------ writing
    def _write_atomic(self, table_name: str, video_id: str, table: pa.Table) -> None:
        final = self.path(table_name, f"part-{video_id}.parquet")
        tmp = self.path(table_name, f".tmp-{video_id}-{uuid.uuid4().hex[:8]}.parquet")
        self._write_then_move(tmp, final, lambda fh: pq.write_table(
            table, fh, compression=self.compression, row_group_size=self.row_group_rows, write_statistics=True,
            use_dictionary=True))

    def _write_json_atomic(self, path: str, data: dict) -> None:
        tmp = path.rsplit("/", 1)[0] + f"/.tmp-{uuid.uuid4().hex[:8]}.json"
        body = json.dumps(data, indent=2, sort_keys=True, default=str).encode()
        self._write_then_move(tmp, path, lambda fh: fh.write(body))

    def _write_then_move(self, tmp: str, final: str, write) -> None:
        """Write ``tmp`` and rename it to ``final``; on any failure the temporary file is removed and
        :class:`StoreWriteError` raised (``final`` keeps what it had)."""
        try:
            with self.fs.open_output_stream(tmp) as fh:
                write(fh)
            self.fs.move(tmp, final)
        except Exception as exc:
            with contextlib.suppress(Exception):
                self.fs.delete_file(tmp)
            raise StoreWriteError(f"could not write {final}: {exc}") from exc

    def write_video(self, video_id: str, config_hash: str, rows: dict[str, list[dict]], status: str, reason: str = "",
                    timings_s: dict[str, float] | None = None) -> dict[str, int]:
        """Write one video's rows of every table (validated against schemas/), then its marker."""
        counts = {}
        prev = self.marker(video_id) or {}
        if prev:  # not finished while its parts change: a failure below leaves it unfinished, not mixed
            with contextlib.suppress(FileNotFoundError):
                self.fs.delete_file(self.path("_state", f"{video_id}.json"))
        for name in TABLE_NAMES:
            table = validate(name, to_table(name, [utf8_safe(r) for r in rows.get(name, [])]))
            counts[name] = table.num_rows
            final = self.path(name, f"part-{video_id}.parquet")
            if table.num_rows:
                self._write_atomic(name, video_id, table)
            elif self.fs.get_file_info(final).type == pafs.FileType.File:
                self.fs.delete_file(final)  # a previous attempt wrote rows this one does not have
        attempts = prev.get("attempts", 0) + 1 if prev.get("config_hash") == config_hash else 1
        self._write_json_atomic(self.path("_state", f"{video_id}.json"), {
            "video_id": video_id, "config_hash": config_hash, "status": status, "reason": reason,
            "counts": counts, "attempts": attempts, "timings_s": timings_s or {},
        })
        return counts

    def rewrite_part(self, name: str, video_id: str, table: pa.Table) -> None:
        """Replace one video's part of a table (post-run passes). An empty table removes the part."""
        table = validate(name, table)
        final = self.path(name, f"part-{video_id}.parquet")
        if table.num_rows:
            self._write_atomic(name, video_id, table)
        elif self.fs.get_file_info(final).type == pafs.FileType.File:
            self.fs.delete_file(final)

    def read_part(self, name: str, video_id: str) -> pa.Table:
        final = self.path(name, f"part-{video_id}.parquet")
        if self.fs.get_file_info(final).type != pafs.FileType.File:
            return TABLES[name].schema.empty_table()
        with self.fs.open_input_file(final) as fh:
            return pq.read_table(fh).replace_schema_metadata(TABLES[name].schema.metadata)

    def write_summary(self, summary: dict) -> None:
        self._write_json_atomic(self.path("summary.json"), summary)

    # ------------------------------------------------------------------ reading
    def table_files(self, name: str) -> list[str]:
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path(name), allow_not_found=True))
        except FileNotFoundError:
            return []
        return sorted(i.path for i in infos if i.base_name.startswith("part-") and i.base_name.endswith(".parquet"))

    def read_table(self, name: str, columns: list[str] | None = None, finished_only: bool = True) -> pa.Table:
        """All rows of a table (only from finished videos unless finished_only=False)."""
        files = self.table_files(name)
        if finished_only:
            done = self.finished_ids()
            files = [f for f in files if f.rsplit("part-", 1)[1][: -len(".parquet")] in done]
        schema = TABLES[name].schema
        if columns:
            schema = pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)
        if not files:
            return schema.empty_table()
        ds = pads.dataset(files, schema=TABLES[name].schema, format="parquet", filesystem=self.fs)
        return ds.to_table(columns=columns)

    def finished_ids(self) -> set[str]:
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path("_state"), allow_not_found=True))
        except FileNotFoundError:
            return set()
        return {i.base_name[: -len(".json")] for i in infos
                if i.base_name.endswith(".json") and not i.base_name.startswith((".", "_"))}

    def read_summary(self) -> dict | None:
        try:
            with self.fs.open_input_stream(self.path("summary.json")) as fh:
                return json.loads(fh.read().decode())
        except (FileNotFoundError, OSError):
            return None
