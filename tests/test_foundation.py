"""Config, schemas, inputs and the generated references."""
from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas.settings import ConfigError, Settings, load_settings
from pipeline.inputs import expand_inputs
from schemas import SCHEMA_VERSION, SchemaError, to_table, validate

REPO = Path(__file__).resolve().parent.parent


def test_unknown_config_keys_are_errors(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("shots:\n  min_clip_sec: 3\n")
    with pytest.raises(ConfigError, match="shots.min_clip_sec"):
        load_settings(p)
    p.write_text("nonsense:\n  a: 1\n")
    with pytest.raises(ConfigError, match="nonsense"):
        load_settings(p)


def test_config_values_are_validated_and_defaults_follow_the_paper(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("shots:\n  min_clip_s: -1\n")
    with pytest.raises(ConfigError, match="min_clip_s"):
        load_settings(p)
    s = Settings()
    assert s.shots.min_clip_s == 3.0  # paper: clips < 3 s dropped
    assert s.references.frontal_min_deg == 155.0 and s.references.rear_max_deg == 45.0


def test_sync_windows_must_be_window_lengths_when_embedded_on_their_own(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("conversation:\n  windows_s: [1, 3]\n  sync_windows_s: [2]\n")
    with pytest.raises(ConfigError, match="sync_windows_s"):
        load_settings(p)
    p.write_text("conversation:\n  windows_s: [1, 3]\n  sync_windows_s: [2]\n  visual_context: window\n")
    assert load_settings(p).conversation.visual_context == "window"


def test_example_configs_load():
    for p in sorted((REPO / "jobs" / "configs").glob("*.yaml")):
        load_settings(p)


def test_config_hash_ignores_how_a_run_executes():
    a, b = Settings(), Settings()
    b.run.stage_concurrency = 8
    b.models.dir = "/elsewhere"
    assert a.config_hash() == b.config_hash()
    b.shots.min_clip_s = 4.0
    assert a.config_hash() != b.config_hash()


def test_schema_rejects_unknown_columns_and_missing_required():
    with pytest.raises(SchemaError, match="not in schema"):
        to_table("rejects", [{"uri": "a", "stage": "probe", "level": "video", "reason": "x", "surprise": 1}])
    with pytest.raises(SchemaError, match="required"):
        to_table("rejects", [{"uri": "a", "stage": "probe", "level": "video"}])
    t = to_table("rejects", [{"uri": "a", "stage": "probe", "level": "video", "reason": "empty_file"}])
    assert t.schema.metadata[b"lpm.schema_version"] == str(SCHEMA_VERSION).encode()
    bad = t.drop_columns(["message"])
    with pytest.raises(SchemaError):
        validate("rejects", bad)


def test_written_parts_carry_the_schema_version(tmp_path):
    from pipeline.store import OutputStore

    store = OutputStore(str(tmp_path / "o"))
    store.ensure_layout()
    store.write_video("abc", "h", {"rejects": [{"uri": "a", "video_id": "abc", "stage": "probe", "level": "video",
                                                "reason": "empty_file"}]}, "rejected", "empty_file")
    md = pq.read_schema(tmp_path / "o" / "rejects" / "part-abc.parquet").metadata
    assert md[b"lpm.table"] == b"rejects" and md[b"lpm.schema_version"] == str(SCHEMA_VERSION).encode()
    assert store.read_table("rejects").num_rows == 1
    assert store.read_table("clips").num_rows == 0 and isinstance(store.read_table("clips"), pa.Table)


def test_inputs_folder_manifest_and_missing(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "x.mp4").write_bytes(b"1")
    (tmp_path / "a" / "b" / "y.MOV").write_bytes(b"1")
    (tmp_path / "a" / "notes.md").write_text("no")
    manifest = tmp_path / "list.txt"
    manifest.write_text("# comment\na/x.mp4\n/abs/missing.mp4\n\n")
    pq.write_table(pa.table({"uri": [str(tmp_path / "a" / "b" / "y.MOV"), "s3://bucket/k.mp4"]}), tmp_path / "m.parquet")
    exts = Settings().input.extensions
    got = expand_inputs([str(tmp_path / "a"), str(manifest), str(tmp_path / "m.parquet")], exts)
    assert got == sorted({str(tmp_path / "a" / "x.mp4"), str(tmp_path / "a" / "b" / "y.MOV"), "/abs/missing.mp4",
                          "s3://bucket/k.mp4"})


def test_generated_references_are_current():
    from pipeline.configdoc import render as render_config
    from schemas.docgen import render as render_schema

    assert (REPO / "docs" / "SCHEMA.md").read_text() == render_schema(), "run: python -m schemas.docgen > docs/SCHEMA.md"
    assert (REPO / "docs" / "CONFIG.md").read_text() == render_config(), "run: python -m pipeline.configdoc > docs/CONFIG.md"
