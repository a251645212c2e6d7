"""`lpm-curate query`: the README / docs/ANALYST.md example audits answer correctly (checked against
answers computed with pyarrow from the Parquet parts), finished videos only, CSV/Parquet output."""
from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from pipeline.cli import main
from pipeline.query import EXAMPLES
from pipeline.store import OutputStore
from report_fixtures import enriched_run, pipeline_run  # noqa: F401  (session fixtures)

REPO = Path(__file__).resolve().parent.parent


def _rows(store: OutputStore, table: str, cols: list[str]) -> list[dict]:
    return store.read_table(table, cols).to_pylist()  # pyarrow, finished videos only: independent of DuckDB


def expected(name: str, store: OutputStore) -> list[tuple]:
    if name == "rejects_by_reason":
        acc = defaultdict(lambda: [0, 0.0])
        for r in _rows(store, "rejects", ["stage", "level", "reason", "duration_s"]):
            a = acc[(r["stage"], r["level"], r["reason"])]
            a[0] += 1
            a[1] += r["duration_s"] or 0.0
        rows = [(*k, n, round(h / 3600, 4)) for k, (n, h) in acc.items()]
        return sorted(rows, key=lambda r: (-r[3], r[0], r[1], r[2]))
    if name == "hours_per_identity":
        acc = defaultdict(lambda: [0, 0.0])
        for r in _rows(store, "clips", ["identity_id", "global_identity_id", "duration_s"]):
            a = acc[r["global_identity_id"] or r["identity_id"] or "unassigned"]
            a[0] += 1
            a[1] += r["duration_s"]
        return sorted(((k, n, round(h / 3600, 4)) for k, (n, h) in acc.items()), key=lambda r: (-r[2], r[0]))
    if name == "listen_clips_by_expression":
        acc = defaultdict(set)
        for r in _rows(store, "clips", ["clip_id", "clip_class", "references"]):
            if r["clip_class"] == "listen":
                for ref in r["references"] or []:
                    if ref["kind"] == "expression":
                        acc[ref["label"]].add(r["clip_id"])
        return sorted(((k, len(v)) for k, v in acc.items()), key=lambda r: (-r[1], r[0]))
    if name == "clips_per_state":
        acc = defaultdict(lambda: [0, 0.0])
        for r in _rows(store, "clips", ["clip_class", "duration_s"]):
            a = acc[r["clip_class"] or "unlabelled"]
            a[0] += 1
            a[1] += r["duration_s"]
        return sorted(((k, n, round(h / 3600, 4)) for k, (n, h) in acc.items()), key=lambda r: (-r[1], r[0]))
    if name == "rejected_videos":
        return sorted((r["uri"], r["reason"]) for r in _rows(store, "videos", ["uri", "status", "reason"]) if r["status"] == "rejected")
    raise KeyError(name)


def test_examples_are_in_the_analyst_doc():
    doc = (REPO / "docs" / "ANALYST.md").read_text()
    for name, (_, sql) in EXAMPLES.items():
        assert sql in doc, f"docs/ANALYST.md must show the example {name!r} verbatim"


@pytest.mark.parametrize("run", ["pipeline_run", "enriched_run"])
@pytest.mark.parametrize("name", list(EXAMPLES))
def test_example_audits_answer_correctly(request, run, name, tmp_path):
    out = request.getfixturevalue(run)
    csv = tmp_path / "answer.csv"
    assert main(["query", str(out), EXAMPLES[name][1], "--csv", str(csv)]) == 0
    got = [tuple(r.values()) for r in pacsv.read_csv(csv).to_pylist()] if csv.stat().st_size else []
    want = expected(name, OutputStore(str(out)))
    assert [tuple(_norm(v) for v in r) for r in got] == [tuple(_norm(v) for v in r) for r in want]


def _norm(v):
    return round(v, 4) if isinstance(v, float) else v


def test_example_answers_known_by_construction(enriched_run, pipeline_run, capsys):  # noqa: F811
    # enriched fixture: listen clips carry expression references smile (two clips) and frown (one)
    assert main(["query", str(enriched_run), "listen_clips_by_expression"]) == 0
    text = capsys.readouterr().out
    assert "smile       2" in text and "frown       1" in text and "(2 rows)" in text
    # the real run: counter.mp4 has no audio stream, the truncated copy cannot be probed
    assert main(["query", str(pipeline_run), "rejected_videos"]) == 0
    text = capsys.readouterr().out
    assert "counter.mp4" in text and "no_audio_stream" in text and "probe_failed" in text


def test_only_finished_videos_are_visible(enriched_run, tmp_path, capsys):  # noqa: F811
    # the fixture left a clips part without a _state marker (a video still being written)
    assert (enriched_run / "clips" / "part-unfinished0000.parquet").exists()
    assert main(["query", str(enriched_run), "SELECT count(*) AS n, count(DISTINCT video_id) AS v FROM clips"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split() == ["8", "3"]
    # removing a marker hides that video's rows from every table
    copy = tmp_path / "out"
    shutil.copytree(enriched_run, copy)
    (copy / "_state" / "enr0000000000000.json").unlink()
    assert main(["query", str(copy), "SELECT (SELECT count(*) FROM clips), (SELECT count(*) FROM videos), (SELECT count(*) FROM rejects)"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split() == ["6", "4", "6"]


def test_parquet_export_and_binary_columns(enriched_run, tmp_path, capsys):  # noqa: F811
    pqf = tmp_path / "listen.parquet"
    sql = "SELECT clip_id, video_bytes, duration_s FROM clips WHERE clip_class = 'listen' ORDER BY clip_id"
    assert main(["query", str(enriched_run), sql, "--parquet", str(pqf)]) == 0
    t = pq.read_table(pqf)
    assert t.num_rows == 3 and t.column_names == ["clip_id", "video_bytes", "duration_s"]
    assert all(b[:12].find(b"ftyp") >= 0 for b in t.column("video_bytes").to_pylist())  # MP4 media, intact
    capsys.readouterr()
    assert main(["query", str(enriched_run), sql]) == 0
    out = capsys.readouterr().out
    assert " bytes>" in out and "(3 rows)" in out


def test_parts_written_before_a_column_existed_read_it_as_null(enriched_run, tmp_path, capsys):  # noqa: F811
    copy = tmp_path / "out"
    shutil.copytree(enriched_run, copy)
    part = copy / "clips" / "part-enr0000000000002.parquet"
    old = pq.read_table(part)
    assert old.column("provenance").null_count == 0
    pq.write_table(old.drop_columns(["provenance", "tags"]), part)  # as an older schema wrote it
    sql = ("SELECT count(*) AS n, count(provenance) AS with_prov, count(tags) FILTER (WHERE video_id = 'enr0000000000002') AS t "
           "FROM clips")
    assert main(["query", str(copy), sql]) == 0
    assert capsys.readouterr().out.splitlines()[2].split() == ["8", str(8 - old.num_rows), "0"]


def test_bad_sql_is_an_error_not_a_traceback(pipeline_run, capsys):  # noqa: F811
    assert main(["query", str(pipeline_run), "SELECT nope FROM clips"]) == 2
    assert "query failed" in capsys.readouterr().err
