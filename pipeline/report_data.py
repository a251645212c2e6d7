"""Reading a run's output tables for the report: finished videos only, only the columns asked for, and
only the part files of the videos asked for (galleries read media columns of a few sampled videos).

Everything here is vectorised over Arrow columns so that a report over millions of rows reads a few
numeric columns, never the media.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from pipeline.store import OutputStore
from schemas import TABLES


class RunReader:
    """Projected reads of DIR/<table>/part-<video_id>.parquet for finished videos."""

    def __init__(self, store: OutputStore):
        self.store = store
        self.finished = store.finished_ids()
        self._files: dict[str, dict[str, str]] = {}

    def files(self, table: str) -> dict[str, str]:
        """video_id -> part file of the table, finished videos only."""
        if table not in self._files:
            out = {}
            for f in self.store.table_files(table):
                vid = f.rsplit("part-", 1)[1][: -len(".parquet")]
                if vid in self.finished:
                    out[vid] = f
            self._files[table] = out
        return self._files[table]

    def read(self, table: str, columns: list[str], video_ids=None, filter=None) -> pa.Table:
        schema = TABLES[table].schema
        files = self.files(table)
        paths = sorted(files.values()) if video_ids is None else sorted(files[v] for v in set(video_ids) if v in files)
        if not paths:
            return pa.schema([schema.field(c) for c in columns]).empty_table()
        ds = pads.dataset(paths, schema=schema, format="parquet", filesystem=self.store.fs)
        return ds.to_table(columns=columns, filter=filter)


# ------------------------------------------------------------------------------------ column helpers
def finite(values) -> np.ndarray:
    """float64 numpy array of the non-null, finite values of an Arrow/NumPy column."""
    if isinstance(values, (pa.ChunkedArray, pa.Array)):
        values = pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    arr = np.asarray(values, dtype=np.float64)
    return arr[np.isfinite(arr)]


def summary(values: np.ndarray) -> dict[str, Any]:
    """n, min, mean, median, p90, max of finite values (None when there are none)."""
    v = finite(values)
    if not len(v):
        return {"n": 0, "min": None, "mean": None, "median": None, "p90": None, "max": None}
    return {"n": int(len(v)), "min": float(v.min()), "mean": float(v.mean()), "median": float(np.median(v)),
            "p90": float(np.percentile(v, 90)), "max": float(v.max())}


def map_entries(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten a map<string, float> column: (row index, key, value) arrays over every entry."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks else pa.array([], type=col.type)
    if not len(col):
        return np.zeros(0, np.int64), np.zeros(0, object), np.zeros(0, np.float64)
    offs = col.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    lens = np.diff(offs)
    valid = col.is_valid().to_numpy(zero_copy_only=False)
    lens = np.where(valid, lens, 0)
    start, end = int(offs[0]), int(offs[-1])
    keys = col.keys.slice(start, end - start)
    items = col.items.slice(start, end - start)
    keep = np.repeat(valid, np.diff(offs))  # entries of null maps are dropped
    rows = np.repeat(np.arange(len(col)), np.diff(offs))[keep]
    k = np.asarray(keys.to_pylist(), dtype=object)[keep]
    it = items
    if pa.types.is_floating(it.type) or pa.types.is_integer(it.type):
        v = pc.cast(it, pa.float64()).to_numpy(zero_copy_only=False)[keep]
    else:
        v = np.asarray(it.to_pylist(), dtype=object)[keep]
    return rows, k, v


def map_columns(col, max_keys: int | None = None) -> dict[str, np.ndarray]:
    """key -> finite float values of that key over the rows (keys ordered by count, then name)."""
    _, k, v = map_entries(col)
    if not len(k):
        return {}
    out: dict[str, list] = {}
    for key in sorted(set(k.tolist()), key=str):
        vals = v[k == key]
        try:
            vals = vals.astype(np.float64)
        except (TypeError, ValueError):
            continue
        vals = vals[np.isfinite(vals)]
        if len(vals):
            out[str(key)] = vals
    order = sorted(out, key=lambda key: (-len(out[key]), key))
    if max_keys is not None:
        order = order[:max_keys]
    return {key: out[key] for key in order}


def value_counts(col, null_label: str | None = None) -> dict[str, int]:
    """Counts of each value of a string column (nulls under null_label when given), largest first."""
    if isinstance(col, pa.ChunkedArray) and col.num_chunks == 0:
        return {}
    vals = col.to_pylist() if len(col) < 5000 else None
    if vals is None:
        vc = pc.value_counts(col).to_pylist()
        counts = {d["values"]: d["counts"] for d in vc}
    else:
        counts: dict[Any, int] = {}
        for v in vals:
            counts[v] = counts.get(v, 0) + 1
    if None in counts:
        n = counts.pop(None)
        if null_label is not None:
            counts[null_label] = counts.get(null_label, 0) + n
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], str(kv[0]))))


def sum_by(keys: pa.ChunkedArray, values: pa.ChunkedArray, null_label: str) -> dict[str, float]:
    """Sum of finite values per key (nulls of the key under null_label)."""
    t = pa.table({"k": pc.fill_null(keys, null_label), "v": pc.cast(values, pa.float64())})
    g = t.group_by("k").aggregate([("v", "sum")]).to_pylist()
    return {r["k"]: float(r["v_sum"] or 0.0) for r in g}


def hours(x: float | None) -> float:
    return 0.0 if x is None or not math.isfinite(x) else x / 3600.0


def word_counts(col) -> np.ndarray:
    """Words per non-null transcript (whitespace split)."""
    if not len(col):
        return np.zeros(0)
    col = col.drop_null() if hasattr(col, "drop_null") else col
    if not len(col):
        return np.zeros(0)
    n = pc.list_value_length(pc.utf8_split_whitespace(col))
    n = pc.if_else(pc.equal(pc.utf8_trim_whitespace(col), ""), 0, n)
    return pc.cast(n, pa.float64()).to_numpy(zero_copy_only=False)
