"""The funnel (what each stage kept and dropped, in counts and hours) and per-column statistics of a run,
computed from the output tables alone."""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.store import OutputStore


def _hours(values) -> float:
    return round(sum(v for v in values if v is not None and math.isfinite(v)) / 3600.0, 6)


def funnel(store: OutputStore) -> dict[str, Any]:
    from pipeline.stages import stage_names

    videos = store.read_table("videos", ["video_id", "status", "duration_s", "warnings"]).to_pylist()
    shots = store.read_table("shots", ["kept", "duration_s"]).to_pylist()
    clips = store.read_table("clips", ["duration_s"]).to_pylist()
    rejects = store.read_table("rejects", ["stage", "level", "reason", "duration_s"]).to_pylist()
    by_stage: dict[str, dict[str, Any]] = {}
    order = stage_names()
    for r in rejects:
        st = by_stage.setdefault(r["stage"], {"stage": r["stage"], "count": 0, "hours": 0.0, "reasons": {}})
        st["count"] += 1
        st["hours"] += (r["duration_s"] or 0.0) / 3600.0
        key = f"{r['level']}:{r['reason']}"
        rr = st["reasons"].setdefault(key, {"level": r["level"], "reason": r["reason"], "count": 0, "hours": 0.0})
        rr["count"] += 1
        rr["hours"] += (r["duration_s"] or 0.0) / 3600.0
    stages = []
    for name in order + sorted(set(by_stage) - set(order)):
        st = by_stage.get(name, {"stage": name, "count": 0, "hours": 0.0, "reasons": {}})
        st["hours"] = round(st["hours"], 6)
        st["reasons"] = sorted(({**v, "hours": round(v["hours"], 6)} for v in st["reasons"].values()),
                               key=lambda v: (-v["count"], v["reason"]))
        stages.append(st)
    ok = [v for v in videos if v["status"] == "ok"]
    return {
        "input": {"videos": len(videos), "hours": _hours(v["duration_s"] for v in videos)},
        "probed_ok": {"videos": len(ok), "hours": _hours(v["duration_s"] for v in ok)},
        "shots": {"count": len(shots), "hours": _hours(s["duration_s"] for s in shots)},
        "shots_kept": {"count": sum(1 for s in shots if s["kept"]), "hours": _hours(s["duration_s"] for s in shots if s["kept"])},
        "clips": {"count": len(clips), "hours": _hours(c["duration_s"] for c in clips)},
        "rejected": stages,
        "rejects_total": len(rejects),
        "warnings": warning_counts(videos),
    }


def warning_counts(videos: list[dict[str, Any]]) -> dict[str, Any]:
    """Videos processed despite a problem: how many carry warnings, and warnings per code."""
    codes: dict[str, int] = {}
    for v in videos:
        for w in v.get("warnings") or []:
            code = w.split(":", 1)[0]
            codes[code] = codes.get(code, 0) + 1
    return {"videos": sum(1 for v in videos if v.get("warnings")), "by_code": dict(sorted(codes.items()))}


def column_stats(store: OutputStore, table: str, max_columns: int = 60) -> list[dict[str, Any]]:
    """Count, nulls, and for numeric columns min / mean / max; map columns are expanded by key."""
    t = store.read_table(table)
    out = []
    for name in t.column_names[:max_columns]:
        col = t.column(name)
        typ = col.type
        row: dict[str, Any] = {"column": name, "type": str(typ), "count": len(col), "nulls": col.null_count}
        if pa.types.is_integer(typ) or pa.types.is_floating(typ):
            if len(col) - col.null_count:
                row.update(min=_num(pc.min(col)), mean=_num(pc.mean(col)), max=_num(pc.max(col)))
        elif pa.types.is_boolean(typ):
            row["true"] = int(pc.sum(pc.cast(col, pa.int64())).as_py() or 0)
        elif pa.types.is_string(typ):
            vc = pc.value_counts(col.drop_null())
            row["distinct"] = len(vc)
            if 0 < len(vc) <= 12:
                row["values"] = {d["values"]: d["counts"] for d in vc.to_pylist()}
        elif pa.types.is_map(typ):
            acc: dict[str, list[float]] = defaultdict(list)
            for m in col.to_pylist():
                for k, v in (m or []):
                    if v is not None and isinstance(v, (int, float)) and math.isfinite(v):
                        acc[k].append(float(v))
            for k, vals in sorted(acc.items()):
                out.append({"column": f"{name}[{k}]", "type": "float64", "count": len(vals), "nulls": 0,
                            "min": min(vals), "mean": sum(vals) / len(vals), "max": max(vals)})
            continue
        out.append(row)
    return out


def _num(s) -> float | None:
    v = s.as_py()
    return None if v is None else round(float(v), 6)


def format_funnel(f: dict[str, Any]) -> str:
    lines = ["FUNNEL                      count        hours   share of input hours"]
    base = f["input"]["hours"] or 0.0

    def line(label, count, hours):
        share = f"{100 * hours / base:6.1f}%" if base else "     -"
        lines.append(f"  {label:<24}{count:>7}  {hours:>11.4f}   {share}")

    line("input videos", f["input"]["videos"], f["input"]["hours"])
    line("probed ok", f["probed_ok"]["videos"], f["probed_ok"]["hours"])
    line("shots", f["shots"]["count"], f["shots"]["hours"])
    line("shots kept", f["shots_kept"]["count"], f["shots_kept"]["hours"])
    line("clips", f["clips"]["count"], f["clips"]["hours"])
    lines.append("")
    lines.append("REJECTED by stage / reason  count        hours")
    for st in f["rejected"]:
        if not st["count"]:
            continue
        lines.append(f"  {st['stage']:<24}{st['count']:>7}  {st['hours']:>11.4f}")
        for r in st["reasons"]:
            lines.append(f"    {r['level'] + ':' + r['reason']:<22}{r['count']:>7}  {r['hours']:>11.4f}")
    w = f.get("warnings") or {}
    if w.get("videos"):
        lines.append("")
        lines.append(f"WARNINGS (processed anyway)  videos with warnings: {w['videos']}")
        for code, n in w["by_code"].items():
            lines.append(f"  {code:<24}{n:>7}")
    return "\n".join(lines)


def format_columns(rows: list[dict[str, Any]], table: str) -> str:
    lines = [f"COLUMNS of {table}/", f"  {'column':<32}{'count':>7}{'nulls':>7}  {'min':>10} {'mean':>10} {'max':>10}  other"]
    for r in rows:
        other = ""
        if "true" in r:
            other = f"true={r['true']}"
        elif "values" in r:
            other = ", ".join(f"{k}={v}" for k, v in list(r["values"].items())[:6])
        elif "distinct" in r:
            other = f"distinct={r['distinct']}"

        def f(x):
            return f"{x:>10.4g}" if isinstance(x, (int, float)) else f"{'':>10}"

        lines.append(f"  {r['column']:<32}{r['count']:>7}{r['nulls']:>7}  {f(r.get('min'))} {f(r.get('mean'))} {f(r.get('max'))}  {other}")
    return "\n".join(lines)
