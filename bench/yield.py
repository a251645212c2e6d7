"""Yield per input variant (issue 18): build the variants of bench/variants.py, run the pipeline once over
them (in-process, no Ray) and print one row per variant.

    .venv/bin/python -m bench.yield [--out DIR] [--only NAME ...] [--config FILE.yaml] [--dedupe] [--json]

Columns: videos.status (reason when rejected), warnings count, timestamps_regenerated, border crop of the
shots (distinct shots.border_crop), shots kept/total, clips, hours of clips kept, reject reasons
(stage:reason x count, all levels). The run's output stays in DIR/out.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.variants import VARIANTS, build_all, variant_of  # noqa: E402

COLUMNS = ("variant", "status", "warn", "ts_regen", "border", "shots", "clips", "hours", "rejects")


def run_pipeline(inputs: list[str], out: str | Path, config: str | None = None, dedupe: bool = False) -> dict:
    """One in-process run (use_ray=False) with default settings (models from ../shared/models or
    $LPM_MODEL_DIR); returns the summary. The near-duplicate pass is off unless dedupe: variants are
    built from the same sources on purpose (upright/rotated_*, the fps and audio variants), so it would
    reject all but one of each family as 'duplicate'."""
    from schemas.settings import Settings
    from pipeline.runner import run

    if config:
        from schemas.settings import load_settings

        settings = load_settings(config)
    else:
        settings = Settings()
    settings.captions.dedupe = dedupe
    return run([str(p) for p in inputs], str(out), settings, use_ray=False)


def yield_rows(out: str | Path) -> list[dict]:
    """One dict per input video of the run in `out` (keys: COLUMNS, plus the raw table rows)."""
    from pipeline.store import OutputStore

    store = OutputStore(str(out))
    videos = store.read_table("videos", columns=["video_id", "uri", "status", "reason", "warnings",
                                                  "timestamps_regenerated", "n_shots", "n_shots_kept",
                                                  "n_clips"]).to_pylist()
    shots = store.read_table("shots", columns=["video_id", "shot_index", "kept", "reason", "border_crop",
                                                "active_box"]).to_pylist()
    clips = store.read_table("clips", columns=["video_id", "duration_s"]).to_pylist()
    rejects = store.read_table("rejects", columns=["uri", "video_id", "stage", "level", "reason"]).to_pylist()
    rows = []
    for v in sorted(videos, key=lambda r: variant_of(r["uri"])):
        vid = v["video_id"]
        vs = [s for s in shots if s["video_id"] == vid]
        vc = [c for c in clips if c["video_id"] == vid]
        rj = Counter(f"{r['stage']}:{r['reason']}" for r in rejects if r["video_id"] == vid or (not r["video_id"] and r["uri"] == v["uri"]))
        borders = sorted({s["border_crop"] or "none" for s in vs if s["kept"]}) or sorted({s["border_crop"] or "none" for s in vs})
        rows.append({
            "variant": variant_of(v["uri"]),
            "status": v["status"] + (f" ({v['reason']})" if v["status"] != "ok" and v["reason"] else ""),
            "warn": len(v["warnings"] or []),
            "ts_regen": bool(v["timestamps_regenerated"]),
            "border": ",".join(borders) or "-",
            "shots": f"{sum(1 for s in vs if s['kept'])}/{len(vs)}",
            "clips": len(vc),
            "hours": round(sum(c["duration_s"] or 0.0 for c in vc) / 3600.0, 5),
            "rejects": ", ".join(f"{k} x{n}" for k, n in sorted(rj.items())) or "-",
            "warnings": list(v["warnings"] or []),
        })
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table of the rows (also readable as plain text)."""
    cells = [[str(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(COLUMNS)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, widths)) + " |"  # noqa: E731
    return "\n".join([line(COLUMNS), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *(line(r) for r in cells)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.yield", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="work folder (variants in DIR/inputs, run in DIR/out); default: a temp folder")
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME", choices=sorted(VARIANTS), help="variants to build (default: all)")
    ap.add_argument("--config", default=None, help="pipeline config YAML (default: built-in defaults)")
    ap.add_argument("--dedupe", action="store_true", help="keep the near-duplicate pass on (it rejects variants of one source as duplicates)")
    ap.add_argument("--json", action="store_true", help="also print the rows as JSON (warnings included)")
    args = ap.parse_args(argv)
    root = Path(args.out or tempfile.mkdtemp(prefix="lpm-yield-"))
    inputs, out = root / "inputs", root / "out"
    t0 = time.time()
    built = build_all(inputs, args.only)
    t1 = time.time()
    summary = run_pipeline(list(built.values()), out, args.config, args.dedupe)
    t2 = time.time()
    rows = yield_rows(out)
    print(f"{len(built)} variants built in {t1 - t0:.0f} s; pipeline (in-process) {t2 - t1:.0f} s; output {out}")
    print(f"summary input_files: {summary.get('input_files')}")
    print(format_table(rows))
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
