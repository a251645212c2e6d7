"""`lpm-curate`: run the curation pipeline and inspect its outputs.

    lpm-curate run --input PATH [PATH ...] --output DIR [--config FILE.yaml] [--address RAY_ADDRESS]
    lpm-curate stats DIR [--json]
    lpm-curate refilter DIR --config NEW.yaml [--output OUT]
    lpm-curate report DIR [--out report/] [--config FILE.yaml]
    lpm-curate query DIR "SQL" [--csv FILE | --parquet FILE]
    lpm-curate models list | verify | pull
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from schemas.settings import ConfigError, load_settings


def _cmd_run(args) -> int:
    from pipeline.inputs import collect_inputs
    from pipeline.progress import Progress
    from pipeline.runner import run
    from pipeline.stats import format_funnel

    settings = load_settings(args.config)
    if args.num_cpus:
        settings.run.num_cpus = args.num_cpus
    if args.verbose:
        settings.run.verbose = True
    n_inputs = len(collect_inputs(args.input, settings.input.extensions)[0])
    progress = Progress(n_inputs, mode="quiet" if args.quiet else "auto", json_log=args.log_json)
    from pipeline.store import OutputLockedError

    try:
        summary = run(args.input, args.output, settings, address=args.address, use_ray=not args.no_ray, progress=progress)
    except OutputLockedError as exc:
        print(f"lpm-curate: {exc}", file=sys.stderr)
        return 3
    if args.quiet:
        return 0
    t = summary["timings_s"]
    print(f"run {summary['run_id']}: {summary['inputs']} inputs, {summary['processed']} processed, "
          f"{summary['skipped_already_done']} already done, {summary['rejected_videos']} rejected "
          f"in {t['wall']:.1f} s ({summary.get('video_s', 0.0) / 60:.1f} min of video, "
          f"{summary.get('realtime_factor', 0.0):.2f}x realtime)")
    if summary.get("lost_videos") or summary.get("write_failed"):
        print(f"{summary.get('lost_videos', 0)} videos lost with their worker (rejects reason worker_lost), "
              f"{summary.get('write_failed', 0)} could not be written")
    skipped = (summary.get("input_files") or {}).get("skipped") or {}
    if skipped:
        print(f"{sum(skipped.values())} input files skipped (not run): "
              + ", ".join(f"{n} {reason}" for reason, n in skipped.items()) + " (summary.json input_files)")
    print(format_funnel(summary["funnel"]))
    print(f"output: {args.output}")
    print(f"report: lpm-curate report {args.output} --out {args.output.rstrip('/')}/report   "
          f"(tables: lpm-curate stats {args.output})")
    return 0


def _cmd_stats(args) -> int:
    from pipeline.stats import column_stats, format_columns, format_funnel, funnel
    from pipeline.store import OutputStore

    store = OutputStore(args.dir)
    f = funnel(store)
    tables = args.table or ["videos", "shots", "clips"]
    cols = {t: column_stats(store, t) for t in tables}
    if args.json:
        print(json.dumps({"funnel": f, "columns": cols, "summary": store.read_summary()}, indent=2, default=str))
        return 0
    print(format_funnel(f))
    for t in tables:
        print()
        print(format_columns(cols[t], t))
    return 0


def _cmd_report(args) -> int:
    from pipeline.report import build_report

    settings = load_settings(args.config)
    if args.max_items:
        settings.report.gallery_items_per_group = args.max_items
    rep = build_report(args.dir, args.out, settings, log=print if args.verbose else None)
    print(f"report -> {rep.html_path} ({len(rep.numbers)} numbers; data in {rep.json_path})")
    for note in rep.notes:
        print(f"  note: {note}")
    return 0


def _cmd_query(args) -> int:
    from pipeline.query import run_cli

    return run_cli(args.dir, args.sql, csv=args.csv, parquet=args.parquet, max_rows=args.max_rows)


def _cmd_refilter(args) -> int:
    from pipeline.refilter import refilter
    from pipeline.stats import format_funnel

    settings = load_settings(args.config)
    summary = refilter(args.dir, settings, args.output)
    print(f"refilter of {args.dir} -> {summary['output']}: {summary['shots_changed']} shots changed decision, "
          f"{summary['needs_rerun']['shots']} newly kept shots need a rerun ({summary['needs_rerun']['hours']:.4f} h)")
    print(format_funnel(summary["funnel"]))
    return 0


def _cmd_models(args) -> int:
    from models import registry

    model_dir = args.model_dir or str(registry.default_model_dir())
    if args.action == "list":
        print(f"model directory: {model_dir}")
        for spec in registry.REGISTRY.values():
            for f in spec.files:
                print(f"  {spec.name:<26} {f.relpath:<52} {spec.task}  [{spec.license}]")
        return 0
    if args.action == "verify":
        results = registry.verify_all(model_dir)
    else:
        results = registry.pull(model_dir, names=args.name or None, base_url=args.base_url, force=args.force)
    bad = 0
    for r in results:
        print(f"  {r.status:<9}{r.name:<26}{r.relpath}  {r.detail}")
        bad += r.status != "ok"
    print(f"{len(results) - bad} ok, {bad} not ok in {model_dir}")
    return 1 if bad else 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lpm-curate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="curate videos into shards")
    r.add_argument("--input", nargs="+", required=True, help="files, folders (recursive) or manifests (.txt/.csv/.parquet)")
    r.add_argument("--output", required=True, help="output folder (local path or s3:// / gs:// URI)")
    r.add_argument("--config", help="YAML config (see jobs/configs/)")
    r.add_argument("--address", help="Ray cluster address (default: an embedded local Ray)")
    r.add_argument("--num-cpus", type=float, help="CPUs of the embedded local Ray")
    r.add_argument("--no-ray", action="store_true", help="run in this process without Ray (debugging)")
    r.add_argument("-q", "--quiet", action="store_true", help="no progress line and no summary (see --log-json)")
    r.add_argument("--log-json", metavar="FILE", help="append one JSON line per finished video and one for the run to FILE")
    r.set_defaults(fn=_cmd_run)

    s = sub.add_parser("stats", help="funnel and per-column statistics of an output folder")
    s.add_argument("dir")
    s.add_argument("--json", action="store_true")
    s.add_argument("--table", action="append", choices=["videos", "shots", "clips", "rejects"])
    s.set_defaults(fn=_cmd_stats)

    rp = sub.add_parser("report", help="self-contained HTML audit report of an output folder")
    rp.add_argument("dir")
    rp.add_argument("--out", default="report", help="folder for index.html and report.json (default: report/)")
    rp.add_argument("--config", help="YAML config (section 'report': gallery sampling)")
    rp.add_argument("--max-items", type=int, help="gallery items per group (overrides report.gallery_items_per_group)")
    rp.set_defaults(fn=_cmd_report)

    q = sub.add_parser("query", help="SQL over the output tables (videos, shots, clips, rejects) with DuckDB")
    q.add_argument("dir")
    q.add_argument("sql", help="SQL text, or the name of an example of docs/ANALYST.md (e.g. rejects_by_reason)")
    q.add_argument("--csv", help="write the result to this CSV file")
    q.add_argument("--parquet", help="write the result to this Parquet file")
    q.add_argument("--max-rows", type=int, default=50, help="rows printed (default 50)")
    q.set_defaults(fn=_cmd_query)

    rf = sub.add_parser("refilter", help="re-decide shots from stored quality scores with a new config (no decoding)")
    rf.add_argument("dir", help="output folder of a run")
    rf.add_argument("--config", required=True, help="YAML config with the new thresholds")
    rf.add_argument("--output", help="where to write the re-decided tables (default: DIR/refilter-<config_hash>)")
    rf.set_defaults(fn=_cmd_refilter)

    m = sub.add_parser("models", help="list, verify or download model weights")
    m.add_argument("action", choices=["list", "verify", "pull"])
    m.add_argument("--model-dir", help="default: $LPM_MODEL_DIR or ../shared/models")
    m.add_argument("--name", action="append", help="(pull) only these models")
    m.add_argument("--base-url", help="(pull) mirror serving <base>/<relpath> instead of the upstream URLs")
    m.add_argument("--force", action="store_true", help="(pull) download even when a verified file is present")
    m.set_defaults(fn=_cmd_models)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.fn(args)
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
