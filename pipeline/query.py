"""`lpm-curate query DIR "SQL"`: SQL over a run's output tables with DuckDB.

The tables ``videos``, ``shots``, ``clips`` and ``rejects`` are registered as views over
``DIR/<table>/part-*.parquet`` of FINISHED videos only (those with a ``_state`` marker), so a run in
progress or a killed run never shows half-written videos. DuckDB reads only the columns and row groups
a query needs, so queries that leave out the media columns (``video_bytes``, audio, references) stay
fast on large outputs. The result is printed as a table, or written with ``--csv FILE`` /
``--parquet FILE`` (streamed by DuckDB, any size).

Local folders are read by DuckDB's own Parquet reader; remote ones (s3://, gs://) through pyarrow's
filesystem as Arrow datasets, with the same projection pushdown.
"""
from __future__ import annotations

import sys
from typing import Any, TextIO

import pyarrow as pa

from pipeline.store import TABLE_NAMES, OutputStore
from schemas import TABLES

# The example audits of docs/ANALYST.md (the README's examples). Tests run each through the CLI on a
# real run and compare with answers computed independently from the Parquet files.
EXAMPLES: dict[str, tuple[str, str]] = {
    "rejects_by_reason": (
        "What was rejected, where and why: items and hours per stage, level and reason.",
        "SELECT stage, level, reason, count(*) AS items, round(sum(coalesce(duration_s, 0)) / 3600, 4) AS hours "
        "FROM rejects GROUP BY stage, level, reason ORDER BY items DESC, stage, level, reason",
    ),
    "hours_per_identity": (
        "Clips and hours per person (global identity across videos, else the per-video identity).",
        "SELECT coalesce(global_identity_id, identity_id, 'unassigned') AS identity, count(*) AS clips, "
        "round(sum(duration_s) / 3600, 4) AS hours FROM clips GROUP BY 1 ORDER BY hours DESC, identity",
    ),
    "listen_clips_by_expression": (
        "Listen clips per expression (labels of their expression references): how expressive the listeners are.",
        "SELECT r.label AS expression, count(DISTINCT c.clip_id) AS listen_clips "
        "FROM clips AS c, unnest(c.\"references\") AS u(r) "
        "WHERE c.clip_class = 'listen' AND r.kind = 'expression' "
        "GROUP BY 1 ORDER BY listen_clips DESC, expression",
    ),
    "clips_per_state": (
        "Clips and hours per state class (unlabelled: no conversation stage output).",
        "SELECT coalesce(clip_class, 'unlabelled') AS state, count(*) AS clips, round(sum(duration_s) / 3600, 4) AS hours "
        "FROM clips GROUP BY 1 ORDER BY clips DESC, state",
    ),
    "rejected_videos": (
        "Inputs rejected as a whole, with their reason.",
        "SELECT uri, reason FROM videos WHERE status = 'rejected' ORDER BY uri",
    ),
}


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def connect(dir_uri: str, tables: tuple[str, ...] = TABLE_NAMES):
    """A DuckDB connection with one view per output table (finished videos only)."""
    import duckdb
    import pyarrow.dataset as pads

    store = OutputStore(dir_uri)
    done = store.finished_ids()
    con = duckdb.connect(database=":memory:")
    local = not ("://" in dir_uri and not dir_uri.startswith("file://"))
    for name in tables:
        files = [f for f in store.table_files(name) if f.rsplit("part-", 1)[1][: -len(".parquet")] in done]
        schema = TABLES[name].schema
        # The empty table fixes the column set and types of the current schema: parts written before a
        # column was added read it as NULL (UNION ALL BY NAME), and an empty table still has every column.
        con.register(f"_empty_{name}", schema.empty_table())
        if not files:
            con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "_empty_{name}"')
        elif local:
            cols = ", ".join(f'"{c}"' for c in schema.names)
            con.execute(f'CREATE VIEW "{name}" AS SELECT {cols} FROM (SELECT * FROM "_empty_{name}" UNION ALL BY NAME '
                        f'SELECT * FROM read_parquet([{", ".join(_q(f) for f in files)}], union_by_name = true))')
        else:
            con.register(f"_ds_{name}", pads.dataset(files, schema=schema, format="parquet", filesystem=store.fs))
            con.execute(f'CREATE VIEW "{name}" AS SELECT * FROM "_ds_{name}"')
    return con


def query(dir_uri: str, sql: str) -> pa.Table:
    """Run SQL over the run's tables; the result as an Arrow table."""
    con = connect(dir_uri)
    try:
        rel = con.sql(sql)
        if rel is None:  # a statement without a result (e.g. COPY ... TO)
            return pa.table({})
        return _arrow(rel)
    finally:
        con.close()


def _arrow(result) -> pa.Table:
    for name in ("to_arrow_table", "fetch_arrow_table", "arrow"):  # the name changed across DuckDB versions
        fn = getattr(result, name, None)
        if fn is not None:
            t = fn()
            return t.read_all() if isinstance(t, pa.RecordBatchReader) else t
    raise RuntimeError("this DuckDB has no Arrow result API")


def export(dir_uri: str, sql: str, path: str, fmt: str) -> int:
    """Write the result of SQL to a CSV or Parquet file (streamed by DuckDB); returns the row count."""
    con = connect(dir_uri)
    try:
        body = sql.strip().rstrip(";")
        opts = "FORMAT csv, HEADER true" if fmt == "csv" else "FORMAT parquet, COMPRESSION zstd"
        con.execute(f"COPY ({body}) TO {_q(path)} ({opts})")
        return int(con.execute(f"SELECT count(*) FROM ({body})").fetchone()[0])
    finally:
        con.close()


def _cell(v: Any, width: int) -> str:
    if v is None:
        s = "NULL"
    elif isinstance(v, (bytes, bytearray)):
        s = f"<{len(v)} bytes>"
    elif isinstance(v, float):
        s = f"{v:.6g}"
    else:
        s = str(v)
    s = s.replace("\n", " ")
    return s if len(s) <= width else s[: width - 1] + "…"


def format_table(t: pa.Table, max_rows: int = 50, max_width: int = 48) -> str:
    """A plain-text table of the first max_rows rows (binary cells shown as their size)."""
    names = t.column_names
    rows = t.slice(0, max_rows).to_pylist()
    cells = [[_cell(r[n], max_width) for n in names] for r in rows]
    widths = [max([len(n)] + [len(c[i]) for c in cells]) for i, n in enumerate(names)]
    line = "  ".join(n.ljust(w) for n, w in zip(names, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for c in cells:
        out.append("  ".join(v.ljust(w) for v, w in zip(c, widths)))
    more = t.num_rows - len(rows)
    out.append(f"({t.num_rows} row{'s' if t.num_rows != 1 else ''}{f', {more} not shown' if more > 0 else ''})")
    return "\n".join(out)


def run_cli(dir_uri: str, sql: str, csv: str | None = None, parquet: str | None = None, max_rows: int = 50,
            stream: TextIO | None = None) -> int:
    import duckdb

    stream = stream or sys.stdout
    if sql in EXAMPLES:  # `lpm-curate query DIR rejects_by_reason` runs a named example
        sql = EXAMPLES[sql][1]
    try:
        if csv or parquet:
            for path, fmt in ((csv, "csv"), (parquet, "parquet")):
                if path:
                    n = export(dir_uri, sql, path, fmt)
                    print(f"{n} rows -> {path}", file=stream)
            return 0
        print(format_table(query(dir_uri, sql), max_rows=max_rows), file=stream)
    except duckdb.Error as exc:
        print(f"query failed: {exc}", file=sys.stderr)
        return 2
    return 0
