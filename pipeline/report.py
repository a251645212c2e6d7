"""`lpm-curate report DIR [--out report/]`: one self-contained static HTML audit report of a run.

The report (``<out>/index.html``) opens from disk with no server and no network: charts are matplotlib
PNGs and gallery thumbnails JPEGs, both embedded as base64 data URIs; there is no JavaScript. Beside it,
``<out>/report.json`` holds every number the page shows (the same values, keyed like the page's
``data-key`` attributes), for programs and tests.

Sections: run provenance (config, code version, models and weight hashes, timings per stage), the
funnel (hours and counts kept per step, rejects per reason, as charts and tables), distributions (clip
duration, resolution, quality scores, speak/listen/idle shares, expression and motion statistics,
transcript length, identities per video, clips per identity), galleries (contact sheets of sampled kept
clips per state and of rejected items per reason, each with its numbers) and reference banks per
identity. Every number comes from the output tables (finished videos only). A column that no stage has
filled yet renders as "not available in this run".

It scales with the run: distributions read only the few columns they plot (Parquet column
projection), galleries sample at most ``report.gallery_items_per_group`` items per group and read
media columns only from the part files of the sampled videos.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
import random
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline import report_plots as plots
from schemas.settings import Settings
from pipeline.inputs import real_uri
from pipeline.report_data import RunReader, finite, hours, map_columns, map_entries, summary, value_counts, word_counts
from pipeline.store import OutputStore

NA = "not available in this run"
STATES = ("speak", "listen", "idle", "mixed")
UNLABELLED = "unlabelled"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2327;background:#fafafa}
header{background:#264653;color:#fff;padding:14px 24px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;font-size:13px;opacity:.85}
nav{position:sticky;top:0;background:#e9f1f2;padding:6px 24px;border-bottom:1px solid #cfd8dc;z-index:2}
nav a{margin-right:16px;color:#264653;font-size:14px;text-decoration:none}
main{padding:8px 24px 40px}section{margin-top:22px}h2{border-bottom:2px solid #2a9d8f;padding-bottom:4px}
h3{margin:18px 0 6px;font-size:16px}table{border-collapse:collapse;font-size:13px;margin:6px 0}
td,th{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
code{word-break:break-all;font-size:11px}th{background:#eef2f4}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.charts{display:flex;flex-wrap:wrap;gap:14px}.chart{margin:0;background:#fff;border:1px solid #e1e4e8;padding:6px}
.chart figcaption{font-size:12px;color:#444;max-width:520px}.chart.wide figcaption{max-width:none}.chart img{display:block;max-width:100%}
.na{color:#8a6d3b;background:#fcf8e3;border:1px solid #faebcc;padding:6px 10px;display:inline-block;font-size:13px}
.group{margin-bottom:10px}.items{display:flex;flex-wrap:wrap;gap:10px}
.thumb{margin:0;background:#fff;border:1px solid #e1e4e8;padding:5px;max-width:460px}
.thumb img{display:block;max-width:100%}.thumb figcaption{font-size:11px;color:#333;margin-top:3px;word-break:break-all}
.note{font-size:12px;color:#a94442;background:#f2dede;padding:4px 6px;margin:2px 0}
.info{font-size:11px;color:#555;padding:2px 0}
pre{background:#fff;border:1px solid #e1e4e8;padding:8px;font-size:12px;max-height:420px;overflow:auto}
.ref{margin:0;text-align:center;font-size:11px}.ref img{display:block;height:96px}
"""


@dataclass
class Report:
    html_path: str
    json_path: str
    numbers: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ helpers
def _e(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v == int(v) and abs(v) < 1e12:
            return f"{v:.1f}" if abs(v) < 1000 else str(int(v))
        return f"{v:.4g}"
    return str(v)


def _img(data: bytes, mime: str, alt: str, cls: str = "") -> str:
    b64 = base64.b64encode(data).decode("ascii")
    c = f' class="{cls}"' if cls else ""
    return f'<img{c} alt="{_e(alt)}" src="data:{mime};base64,{b64}">'


def _na(what: str = "") -> str:
    return f'<div class="na" data-na="{_e(what)}">{_e(what + ": " if what else "")}{NA}</div>'


def _short(text: Any, n: int = 160) -> str:
    s = "" if text is None else str(text)
    return s if len(s) <= n else s[: n - 1] + "…"


def _sec(t: float | None) -> str:
    return "-" if t is None or not math.isfinite(t) else f"{t:.2f}"


class _Numbers:
    """Every number the page shows, by key; rendered as <td data-key data-value> cells."""

    def __init__(self):
        self.values: dict[str, Any] = {}

    def put(self, key: str, value: Any) -> Any:
        if isinstance(value, (np.integer,)):
            value = int(value)
        elif isinstance(value, (np.floating,)):
            value = float(value)
        self.values[key] = value
        return value

    def td(self, key: str, value: Any) -> str:
        value = self.put(key, value)
        dv = "" if value is None else (repr(value) if isinstance(value, float) else str(value))
        return f'<td class="n" data-key="{_e(key)}" data-value="{_e(dv)}">{_e(_fmt(value))}</td>'


# --------------------------------------------------------------------------------------------- builder
class ReportBuilder:
    def __init__(self, dir_uri: str, settings: Settings | None = None, log: Callable[[str], None] | None = None):
        self.store = OutputStore(dir_uri)
        self.reader = RunReader(self.store)
        self.dir_uri = dir_uri
        self.settings = settings or Settings()
        self.cfg = self.settings.report
        self.run_summary = self.store.read_summary() or {}
        self.run_config = self.run_summary.get("config") or self.settings.model_dump(mode="json")
        self.num = _Numbers()
        self.notes: list[str] = []
        self.rng = random.Random(self.cfg.seed)
        self.timings: dict[str, float] = {}
        self.log = log or (lambda msg: None)
        self.thumb_timeout = min(self.cfg.thumb_timeout_s, self.settings.run.subprocess_timeout_s)

    # ------------------------------------------------------------------ public
    def build(self, out_dir: str) -> Report:
        os.makedirs(out_dir, exist_ok=True)
        sections = []
        for name, fn in (("provenance", self.section_provenance), ("funnel", self.section_funnel),
                         ("distributions", self.section_distributions), ("gallery-kept", self.section_kept),
                         ("gallery-rejected", self.section_rejected), ("references", self.section_references)):
            t0 = time.monotonic()
            sections.append(fn())
            self.timings[name] = round(time.monotonic() - t0, 3)
            self.log(f"report: {name} in {self.timings[name]:.2f} s")
        page = self._page(sections)
        html_path = os.path.join(out_dir, "index.html")
        json_path = os.path.join(out_dir, "report.json")
        with open(html_path + ".tmp", "w", encoding="utf-8", errors="backslashreplace") as fh:
            fh.write(page)
        os.replace(html_path + ".tmp", html_path)
        with open(json_path, "w", encoding="utf-8") as fh:
            json.dump({"dir": self.dir_uri, "numbers": self.num.values, "notes": self.notes,
                       "timings_s": self.timings}, fh, indent=1, sort_keys=True, default=str)
        return Report(html_path, json_path, self.num.values, self.notes, self.timings)

    def _page(self, sections: list[str]) -> str:
        s = self.run_summary
        title = f"lpm-curate report: {os.path.basename(self.store.root.rstrip('/')) or self.dir_uri}"
        sub = (f"{_e(self.dir_uri)} · run {_e(s.get('run_id', '?'))} · code {_e(s.get('code_version', '?'))} · "
               f"config {_e(s.get('config_hash', '?'))} · {len(self.reader.finished)} finished videos · "
               f"generated {_e(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))}")
        nav = "".join(f'<a href="#{i}">{t}</a>' for i, t in (
            ("provenance", "Provenance"), ("funnel", "Funnel"), ("distributions", "Distributions"),
            ("gallery-kept", "Kept clips"), ("gallery-rejected", "Rejected"), ("references", "Reference banks")))
        notes = ""
        if self.notes:
            notes = "<section id=\"notes\"><h2>Notes</h2><ul>" + "".join(f"<li>{_e(n)}</li>" for n in self.notes) + "</ul></section>"
        return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(title)}</title>"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{CSS}</style></head>"
                f"<body><header><h1>{_e(title)}</h1><p>{sub}</p></header><nav>{nav}</nav><main>"
                + "".join(sections) + notes + "</main></body></html>")

    # ------------------------------------------------------------------ provenance
    def section_provenance(self) -> str:
        s = self.run_summary
        out = ['<section id="provenance"><h2>Run provenance</h2>']
        if not s:
            out.append(_na("summary.json (the run has not finished or was written by another tool)"))
        else:
            rows = [("run id", s.get("run_id")), ("code version", s.get("code_version")), ("config hash", s.get("config_hash")),
                    ("schema version", s.get("schema_version")), ("executor", s.get("executor")),
                    ("ray address", s.get("ray_address"))]
            out.append("<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in rows))
            for k in ("inputs", "processed", "skipped_already_done", "rejected_videos"):
                out.append(f"<tr><th>{_e(k.replace('_', ' '))}</th>{self.num.td('run.' + k, s.get(k))}</tr>")
            for reason, n in ((s.get("input_files") or {}).get("skipped") or {}).items():
                out.append(f"<tr><th>input files skipped: {_e(reason)}</th>{self.num.td('run.input_files.skipped.' + reason, n)}</tr>")
            t = s.get("timings_s") or {}
            out.append(f"<tr><th>wall seconds</th>{self.num.td('run.wall_s', t.get('wall'))}</tr></table>")
        # timings per stage: summary (sum over videos) + per-video distribution from the markers
        stage_sum = ((s.get("timings_s") or {}).get("stages_sum") or {}) if s else {}
        per_video = self._marker_timings()
        if stage_sum or per_video:
            out.append("<h3>Timings per stage</h3><table><tr><th>stage</th><th>total s (summary)</th>"
                       "<th>videos</th><th>median s/video</th><th>p90 s/video</th><th>max s/video</th></tr>")
            for st in list(dict.fromkeys(list(stage_sum) + list(per_video))):
                v = per_video.get(st, np.zeros(0))
                sm = summary(v)
                out.append(f"<tr><td>{_e(st)}</td>{self.num.td(f'timing.{st}.total_s', stage_sum.get(st))}"
                           f"<td class=\"n\">{sm['n']}</td><td class=\"n\">{_sec(sm['median'])}</td>"
                           f"<td class=\"n\">{_sec(sm['p90'])}</td><td class=\"n\">{_sec(sm['max'])}</td></tr>")
            out.append("</table>")
            if stage_sum:
                keys = [k for k in stage_sum if isinstance(stage_sum[k], (int, float))]
                out.append('<div class="charts">' + self._chart("stage_timings", plots.bars(
                    {k: float(stage_sum[k]) for k in keys}, "Seconds per stage (sum over videos)", "seconds"),
                    "Time spent per stage, summed over the run's videos (summary.json).") + "</div>")
        else:
            out.append(_na("timings"))
        out.append(self._models_table())
        cfg_json = json.dumps(self.run_config, indent=2, sort_keys=True, default=str)
        out.append(f"<details><summary>Configuration of the run{' (from summary.json)' if s else ' (defaults: no summary.json)'}"
                   f"</summary><pre>{_e(cfg_json)}</pre></details></section>")
        return "".join(out)

    def _marker_timings(self) -> dict[str, np.ndarray]:
        ids = sorted(self.reader.finished)
        if len(ids) > self.cfg.max_marker_reads:
            self.notes.append(f"per-video timings from a sample of {self.cfg.max_marker_reads} of {len(ids)} videos")
            ids = sorted(random.Random(self.cfg.seed).sample(ids, self.cfg.max_marker_reads))
        acc: dict[str, list[float]] = defaultdict(list)
        for vid in ids:
            m = self.store.marker(vid) or {}
            for k, v in (m.get("timings_s") or {}).items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    acc[k].append(float(v))
        return {k: np.asarray(v) for k, v in acc.items()}

    def _models_table(self) -> str:
        t = self.reader.read("clips", ["provenance"])
        rows, keys, vals = map_entries(t.column("provenance"))
        if not len(keys):
            return "<h3>Models and weights</h3>" + _na("clips.provenance (no stage recorded a model)")
        counts: dict[tuple[str, str], int] = defaultdict(int)
        for k, v in zip(keys.tolist(), vals.tolist()):
            counts[(k, v)] += 1
        try:
            from models.registry import REGISTRY

            by_sha = {f.sha256: f"{spec.name} ({f.relpath})" for spec in REGISTRY.values() for f in spec.files}
        except Exception:  # the registry is optional for a report
            by_sha = {}
        out = ["<h3>Models and weights</h3><table><tr><th>column group</th><th>stage</th><th>model</th>"
               "<th>weights sha256</th><th>registry file</th><th>params hash</th><th>code</th><th>clips</th></tr>"]
        for (group, js), n in sorted(counts.items()):
            try:
                p = json.loads(js) if js else {}
            except (TypeError, ValueError):
                p = {"model": js}
            # a stage with several models records comma-separated names and hashes in the same order
            names = [m for m in str(p.get("model") or "").split(",")]
            shas = [h for h in str(p.get("weights_sha256") or "").split(",")]
            shas += [""] * (len(names) - len(shas))
            names += [""] * (len(shas) - len(names))
            reg = [by_sha.get(h, "not in registry (user model)") if h else "-" for h in shas]
            out.append(f"<tr><td>{_e(group)}</td><td>{_e(p.get('stage'))}</td><td>{'<br>'.join(_e(m) for m in names)}</td>"
                       f"<td>{'<br>'.join('<code>' + _e(h) + '</code>' for h in shas)}</td><td>{'<br>'.join(_e(r) for r in reg)}</td>"
                       f"<td><code>{_e(p.get('params_hash'))}</code></td><td>{_e(p.get('code_version'))}</td>"
                       f"{self.num.td('provenance.' + group + '.' + (p.get('model') or '-') + '.clips', n)}</tr>")
        out.append("</table>")
        return "".join(out)

    # ------------------------------------------------------------------ funnel
    def section_funnel(self) -> str:
        from pipeline.stats import funnel

        f = funnel(self.store)
        out = ['<section id="funnel"><h2>Funnel</h2>']
        steps = [("input videos", "input", "videos"), ("probed ok", "probed_ok", "videos"), ("shots", "shots", "count"),
                 ("shots kept", "shots_kept", "count"), ("clips", "clips", "count")]
        bars = []
        out.append("<table><tr><th>step</th><th>count</th><th>hours</th><th>share of input hours</th></tr>")
        base = f["input"]["hours"]
        for label, key, cnt in steps:
            c, h = f[key][cnt], f[key]["hours"]
            bars.append((label, c, h))
            share = f"{100 * h / base:.1f}%" if base else "-"
            out.append(f"<tr><td>{_e(label)}</td>{self.num.td(f'funnel.{key}.count', c)}"
                       f"{self.num.td(f'funnel.{key}.hours', h)}<td class=\"n\">{share}</td></tr>")
        out.append("</table>")
        charts = [self._chart("funnel", plots.funnel_chart(bars), "Hours (bars) and counts kept after each step of the pipeline.")]
        # rejects per stage / reason
        rej_rows = []
        rtab = ["<h3>Rejected per stage and reason</h3><table><tr><th>stage</th><th>level:reason</th><th>count</th><th>hours</th></tr>"]
        for st in f["rejected"]:
            for r in st["reasons"]:
                key = f"rejects.{st['stage']}.{r['level']}.{r['reason']}"
                rtab.append(f"<tr><td>{_e(st['stage'])}</td><td>{_e(r['level'] + ':' + r['reason'])}</td>"
                            f"{self.num.td(key + '.count', r['count'])}{self.num.td(key + '.hours', r['hours'])}</tr>")
                rej_rows.append((f"{st['stage']} · {r['level']}:{r['reason']}", r["count"], r["hours"]))
        rtab.append(f"<tr><th colspan=\"2\">total</th>{self.num.td('rejects.total', f['rejects_total'])}<td></td></tr></table>")
        if rej_rows:
            charts.append(self._chart("rejects", plots.rejects_chart(rej_rows), "Hours and items rejected per stage and reason."))
        out.append('<div class="charts">' + "".join(charts) + "</div>")
        out.append("".join(rtab) if rej_rows else "<h3>Rejected per stage and reason</h3><p>No rejects in this run.</p>"
                   + f"<table><tr><th>total</th>{self.num.td('rejects.total', f['rejects_total'])}</tr></table>")
        warn = f.get("warnings") or {}
        wtab = ["<h3>Warnings (videos processed despite a problem)</h3><table><tr><th>code</th><th>count</th></tr>"]
        for code, n in (warn.get("by_code") or {}).items():
            wtab.append(f"<tr><td>{_e(code)}</td>{self.num.td(f'warnings.{code}', n)}</tr>")
        wtab.append(f"<tr><th>videos with warnings</th>{self.num.td('warnings.videos', warn.get('videos', 0))}</tr></table>")
        out.append("".join(wtab))
        # clips per state class (what the conversation stage kept)
        t = self.reader.read("clips", ["clip_class", "duration_s"])
        counts = value_counts(t.column("clip_class"), null_label=UNLABELLED)
        hrs_by = defaultdict(float)
        for c, d in zip(t.column("clip_class").to_pylist(), t.column("duration_s").to_pylist()):
            hrs_by[c or UNLABELLED] += hours(d)
        out.append("<h3>Clips kept per state</h3><table><tr><th>clip_class</th><th>clips</th><th>hours</th></tr>")
        for c, n in counts.items():
            out.append(f"<tr><td>{_e(c)}</td>{self.num.td(f'clips.class.{c}.count', n)}{self.num.td(f'clips.class.{c}.hours', hrs_by[c])}</tr>")
        out.append("</table></section>")
        return "".join(out)

    # ------------------------------------------------------------------ distributions
    def _chart(self, name: str, png: bytes, caption: str, stats: dict | None = None) -> str:
        tab = ""
        if stats:
            cells = "".join(f"<th>{k}</th>" for k in ("n", "min", "mean", "median", "p90", "max"))
            vals = "".join(self.num.td(f"dist.{name}.{k}", stats[k]) for k in ("n", "min", "mean", "median", "p90", "max"))
            tab = f"<table><tr>{cells}</tr><tr>{vals}</tr></table>"
        return (f'<figure class="chart" data-chart="{_e(name)}">{_img(png, "image/png", name)}'
                f"<figcaption>{_e(caption)}{tab}</figcaption></figure>")

    def _multiples(self, name: str, panels: list[dict], title: str, caption: str) -> str:
        """One small-multiples chart of a map column's keys and one table of their statistics."""
        png = plots.small_multiples(panels, title)
        head = "".join(f"<th>{k}</th>" for k in ("key", "n", "min", "mean", "median", "p90", "max"))
        rows = []
        for p in panels:
            st = summary(p["values"])
            cells = "".join(self.num.td(f"dist.{name}.{p['key']}.{k}", st[k]) for k in ("n", "min", "mean", "median", "p90", "max"))
            rows.append(f"<tr><td>{_e(p['key'])}</td>{cells}</tr>")
        return (f'<div class="charts"><figure class="chart wide" data-chart="{_e(name)}">{_img(png, "image/png", name)}'
                f"<figcaption>{_e(caption)}<table><tr>{head}</tr>{''.join(rows)}</table></figcaption></figure></div>")

    def _dist(self, name: str, values: np.ndarray, title: str, xlabel: str, caption: str, **kw) -> str:
        v = finite(values)
        if not len(v):
            self.num.put(f"dist.{name}.n", 0)
            return f'<figure class="chart" data-chart="{_e(name)}">{_na(title)}</figure>'
        return self._chart(name, plots.histogram(v, title, xlabel, **kw), caption, summary(v))

    def _threshold_lines(self, section: str, key: str) -> dict[str, float]:
        cfg = self.run_config.get(section) or {}
        out = {}
        for pre in ("min_", "max_"):
            val = cfg.get(pre + key)
            if isinstance(val, (int, float)) and not isinstance(val, bool):
                out[pre + key] = float(val)
        return out

    def section_distributions(self) -> str:
        out = ['<section id="distributions"><h2>Distributions</h2>']
        clips = self.reader.read("clips", ["video_id", "duration_s", "clip_width", "clip_height", "clip_class",
                                           "state_shares", "identity_id", "global_identity_id", "transcript",
                                           "face_size_px"])
        videos = self.reader.read("videos", ["status", "width", "height", "rotation_deg"])
        shots_cfg = self.run_config.get("shots") or {}
        lines = {k: float(shots_cfg[k]) for k in ("min_clip_s", "max_clip_s") if isinstance(shots_cfg.get(k), (int, float))}

        # clips and resolution
        out.append("<h3>Clips and resolution</h3><div class=\"charts\">")
        out.append(self._dist("clip_duration_s", clips.column("duration_s"), "Clip duration", "seconds",
                              "Length of every kept clip; dashed lines are shots.min_clip_s / max_clip_s.", lines=lines))
        ok = videos.filter(pc.equal(videos.column("status"), "ok")) if videos.num_rows else videos
        w = finite(ok.column("width")) if ok.num_rows else np.zeros(0)
        h = finite(ok.column("height")) if ok.num_rows else np.zeros(0)
        if len(w) and len(w) == len(h):
            q = self.run_config.get("quality") or {}
            rl = {"min_resolution_px": float(q["min_resolution_px"])} if isinstance(q.get("min_resolution_px"), (int, float)) else None
            out.append(self._dist("source_short_side_px", np.minimum(w, h), "Source resolution (shorter side)", "pixels",
                                  "Shorter side of each probed source video.", lines=rl))
            out.append(self._chart("source_resolution", plots.scatter(w, h, "Source width x height", "width px", "height px"),
                                   "Coded width and height of each probed source video."))
        else:
            out.append(f'<figure class="chart" data-chart="source_resolution">{_na("source resolution")}</figure>')
        cw, ch = clips.column("clip_width").to_pylist(), clips.column("clip_height").to_pylist()
        res = defaultdict(int)
        for a, b in zip(cw, ch):
            if a and b:
                res[f"{a}x{b}"] += 1
        if res:
            for k, n in res.items():
                self.num.put(f"dist.clip_resolution.{k}", n)
            out.append(self._chart("clip_resolution", plots.bars(dict(sorted(res.items(), key=lambda kv: -kv[1])),
                                   "Clip media resolution", "clips"), "Width x height of the encoded single-person clips."))
        else:
            out.append(f'<figure class="chart" data-chart="clip_resolution">{_na("clip media resolution")}</figure>')
        out.append(self._dist("face_size_px", clips.column("face_size_px"), "Face size", "median face box height (px)",
                              "Median face height in source pixels per clip (people stage)."))
        out.append("</div>")

        # quality scores of shots, kept vs dropped, with the config thresholds
        out.append("<h3>Quality scores (shots)</h3>")
        shots = self.reader.read("shots", ["kept", "quality"])
        qcols = map_columns(shots.column("quality"), None)
        if not qcols:
            out.append(_na("shots.quality"))
        else:
            rows, keys, vals = map_entries(shots.column("quality"))
            kept = np.asarray(shots.column("kept").to_pylist(), dtype=bool)
            panels = []
            # keys that have a threshold in the config first: those are the ones a person checks by eye
            ordered = sorted(qcols, key=lambda k: (not self._threshold_lines("quality", k), list(qcols).index(k)))
            for key in ordered[: self.cfg.max_map_keys]:
                sel = keys == key
                v = vals[sel].astype(np.float64)
                kk = kept[rows[sel]]
                fin = np.isfinite(v)
                panels.append({"key": key, "title": key, "values": v[fin], "overlay": {"kept": v[fin & kk], "dropped": v[fin & ~kk]},
                               "lines": self._threshold_lines("quality", key)})
            out.append(self._multiples("quality", panels, "Shot quality scores: kept vs dropped shots",
                                       "Per quality key (shots.quality): kept vs dropped shots; dashed lines are the thresholds "
                                       "of config section quality (min_<key> / max_<key>)."))
            if len(qcols) > self.cfg.max_map_keys:
                self.notes.append(f"{len(qcols) - self.cfg.max_map_keys} more quality keys not plotted (report.max_map_keys)")

        # states
        out.append("<h3>Speak / listen / idle</h3><div class=\"charts\">")
        cls_counts = value_counts(clips.column("clip_class"), null_label=UNLABELLED)
        if any(k != UNLABELLED for k in cls_counts):
            out.append(self._chart("clip_class", plots.bars(cls_counts, "Clips per state class", "clips", colours=True),
                                   "clip_class of each kept clip (unlabelled: no conversation stage output)."))
        else:
            out.append(f'<figure class="chart" data-chart="clip_class">{_na("clip_class")}</figure>')
        rows, keys, vals = map_entries(clips.column("state_shares"))
        if len(keys):
            vals = vals.astype(np.float64)
            dur = pc.cast(clips.column("duration_s"), pa.float64()).to_numpy(zero_copy_only=False)
            per_state = {s: vals[keys == s] for s in sorted(set(keys.tolist()), key=lambda s: (STATES.index(s) if s in STATES else 99, s))}
            out.append(self._chart("state_shares", plots.histogram(np.concatenate(list(per_state.values())),
                                   "Share of frames per state, per clip", "share", bins=20, overlay=per_state),
                                   "Per clip: share of its frames in each state (clips.state_shares)."))
            overall = {}
            labelled_rows = np.unique(rows)
            total = float(np.nansum(dur[labelled_rows]))
            for s in per_state:
                sel = keys == s
                overall[s] = float(np.nansum(vals[sel] * dur[rows[sel]]) / total) if total > 0 else 0.0
                self.num.put(f"dist.state_share_overall.{s}", overall[s])
            out.append(self._chart("state_share_overall", plots.bars(overall, "Overall share of time per state", "share", colours=True),
                                   "Duration-weighted share of each state over all labelled clips."))
        else:
            out.append(f'<figure class="chart" data-chart="state_shares">{_na("clips.state_shares")}</figure>')
        out.append("</div>")

        # expression and motion
        for col, title in (("expression_stats", "Expression statistics"), ("motion_stats", "Motion intensity statistics")):
            out.append(f"<h3>{title}</h3>")
            m = map_columns(self.reader.read("clips", [col]).column(col), self.cfg.max_map_keys)
            if not m:
                out.append(_na(f"clips.{col}"))
                continue
            panels = [{"key": key, "title": key, "values": v} for key, v in m.items()]
            out.append(self._multiples(col, panels, f"clips.{col}", f"clips.{col}[key] over kept clips, one panel per key."))

        # transcripts and identities
        out.append("<h3>Transcripts and identities</h3><div class=\"charts\">")
        out.append(self._dist("transcript_words", word_counts(clips.column("transcript")), "Transcript length",
                              "words per clip", "Words in clips.transcript (clips with a transcript).", integer=True))
        vid = clips.column("video_id").to_pylist()
        ident = clips.column("identity_id").to_pylist()
        gid = clips.column("global_identity_id").to_pylist()
        per_video: dict[str, set] = defaultdict(set)
        per_ident: dict[str, int] = defaultdict(int)
        for v, i, g in zip(vid, ident, gid):
            if i:
                per_video[v].add(i)
            key = g or i
            if key:
                per_ident[key] += 1
        self.num.put("identities.count", len(per_ident))
        self.num.put("identities.videos_with_identities", len(per_video))
        out.append(self._dist("identities_per_video", np.asarray([len(s) for s in per_video.values()], float),
                              "Identities per video", "identities", "Distinct clips.identity_id per video (videos with clips).",
                              integer=True))
        out.append(self._dist("clips_per_identity", np.asarray(list(per_ident.values()), float), "Clips per identity",
                              "clips", "Clips per identity (global_identity_id, else identity_id).", integer=True))
        out.append("</div></section>")
        return "".join(out)

    # ------------------------------------------------------------------ galleries
    def _sample(self, idx: list[int]) -> list[int]:
        k = self.cfg.gallery_items_per_group
        return sorted(idx) if len(idx) <= k else sorted(self.rng.sample(idx, k))

    def _videos_info(self, video_ids) -> dict[str, dict]:
        t = self.reader.read("videos", ["video_id", "uri", "width", "height", "rotation_deg", "duration_s", "has_audio"],
                             video_ids=video_ids)
        return {r["video_id"]: r for r in t.to_pylist()}

    def _run_jobs(self, jobs: list[Callable[[], tuple[bytes | None, str]]]) -> list[tuple[bytes | None, str]]:
        def safe(job):
            try:
                return job()
            except Exception as exc:  # a thumbnail must never break the report
                return None, f"{type(exc).__name__}: {_short(exc, 200)}"

        with ThreadPoolExecutor(max_workers=self.cfg.workers) as ex:
            return list(ex.map(safe, jobs))

    def _source_job(self, uri: str | None, start, end, crop_box=None, video: dict | None = None):
        from pipeline.report_media import source_frames, strip, to_jpeg

        def job():
            if not uri:
                return None, "no source uri"
            try:
                frames = source_frames(real_uri(uri), start, end, self.cfg.gallery_frames, self.cfg.thumb_height_px,
                                       self.thumb_timeout, crop_box=crop_box,
                                       src_wh=(video.get("width"), video.get("height")) if video else None,
                                       rotation_deg=(video or {}).get("rotation_deg") or 0)
            except Exception as exc:
                return None, f"source unreadable ({os.path.basename(str(uri))}): {_short(exc, 200)}"
            return to_jpeg(strip(frames, self.cfg.thumb_height_px)), ""
        return job

    def _item(self, img: bytes | None, note: str, caption: str, attrs: str = "") -> str:
        body = _img(img, "image/jpeg", "contact sheet") if img else ""
        cls = "info" if img else "note"  # with a picture the note only says where it came from
        n = f'<div class="{cls}">{_e(note)}</div>' if note else ""
        return f'<figure class="thumb"{attrs}>{body}{n}<figcaption>{caption}</figcaption></figure>'

    def section_kept(self) -> str:
        out = ['<section id="gallery-kept"><h2>Kept clips per state</h2>',
               f"<p>Contact sheets of up to {self.cfg.gallery_items_per_group} sampled clips per state, "
               f"{self.cfg.gallery_frames} frames each, decoded from the clip media (or, for clips without media yet, "
               "from the source video at the clip's span and crop).</p>"]
        base = self.reader.read("clips", ["clip_id", "video_id", "clip_class"])
        if not base.num_rows:
            out.append(_na("kept clips") + "</section>")
            return "".join(out)
        groups: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(base.column("clip_class").to_pylist()):
            groups[c or UNLABELLED].append(i)
        order = [s for s in STATES if s in groups] + sorted(g for g in groups if g not in STATES)
        picks = {g: self._sample(groups[g]) for g in order}
        ids = {base.column("clip_id")[i].as_py() for g in order for i in picks[g]}
        vids = {base.column("video_id")[i].as_py() for g in order for i in picks[g]}
        cols = ["clip_id", "video_id", "shot_index", "track_id", "start_s", "end_s", "duration_s", "clip_class",
                "state_shares", "identity_id", "face_size_px", "sync_score", "transcript", "caption", "quality",
                "crop_box", "clip_width", "clip_height", "video_bytes", "video_uri", "first_frame_jpeg"]
        detail = self.reader.read("clips", cols, video_ids=vids, filter=pc.field("clip_id").isin(sorted(ids)))
        by_id = {r["clip_id"]: r for r in detail.to_pylist()}
        info = self._videos_info(vids)
        jobs, metas = [], []
        for g in order:
            for i in picks[g]:
                cid = base.column("clip_id")[i].as_py()
                row = by_id.get(cid)
                if row is None:
                    continue
                jobs.append(self._clip_job(row, info.get(row["video_id"])))
                metas.append((g, row))
        results = self._run_jobs(jobs)
        by_group: dict[str, list[str]] = defaultdict(list)
        for (g, row), (img, note) in zip(metas, results):
            by_group[g].append(self._item(img, note, self._clip_caption(row, info.get(row["video_id"])),
                                          f' data-clip-id="{_e(row["clip_id"])}"'))
        for g in order:
            self.num.put(f"gallery.kept.{g}.total", len(groups[g]))
            self.num.put(f"gallery.kept.{g}.shown", len(by_group[g]))
            out.append(f'<div class="group" data-group="kept:{_e(g)}"><h3>{_e(g)}: '
                       f'<span data-key="gallery.kept.{_e(g)}.total">{len(groups[g])}</span> clips, showing {len(by_group[g])}</h3>'
                       f'<div class="items">{"".join(by_group[g])}</div></div>')
        out.append("</section>")
        return "".join(out)

    def _clip_job(self, row: dict, video: dict | None):
        from pipeline.report_media import clip_frames, first_frame, strip, to_jpeg

        if row.get("video_bytes") or row.get("video_uri"):
            def job():
                try:
                    frames = clip_frames(row, self.cfg.gallery_frames, self.cfg.thumb_height_px, self.thumb_timeout)
                except Exception as exc:
                    return None, f"clip media unreadable: {_short(exc, 200)}"
                return to_jpeg(strip(frames, self.cfg.thumb_height_px)), ""
            return job
        if row.get("first_frame_jpeg"):
            return lambda: (to_jpeg(strip(first_frame(row["first_frame_jpeg"]), self.cfg.thumb_height_px)),
                            "first frame only (no clip media)")
        inner = self._source_job((video or {}).get("uri"), row.get("start_s"), row.get("end_s"), row.get("crop_box"), video)

        def job():
            img, note = inner()
            return img, note or "from the source video (no clip media in this run)"
        return job

    def _clip_caption(self, row: dict, video: dict | None) -> str:
        parts = [f"<b>{_e(row.get('clip_class') or UNLABELLED)}</b> clip <code>{_e(row['clip_id'])}</code>",
                 f"{_e(os.path.basename(str((video or {}).get('uri') or row['video_id'])))} shot {row.get('shot_index')} "
                 f"track {row.get('track_id')} · {row['start_s']:.2f}-{row['end_s']:.2f} s ({row['duration_s']:.2f} s)"]
        shares = row.get("state_shares")
        if shares:
            parts.append("states " + ", ".join(f"{k} {v:.2f}" for k, v in shares))
        extra = []
        for k in ("face_size_px", "sync_score"):
            if row.get(k) is not None:
                extra.append(f"{k} {_fmt(float(row[k]))}")
        if row.get("identity_id"):
            extra.append(f"identity {row['identity_id']}")
        if extra:
            parts.append(" · ".join(_e(x) for x in extra))
        if row.get("quality"):
            parts.append(_e(self._quality_text(row["quality"])))
        if row.get("transcript"):
            parts.append("“" + _e(_short(row["transcript"], 120)) + "”")
        return "<br>".join(parts)

    def _quality_text(self, q, limit: int = 8) -> str:
        items = []
        for k, v in list(q)[:limit]:
            th = self._threshold_lines("quality", k)
            t = "".join(f" ({n.split('_', 1)[0]} {val:g})" for n, val in th.items())
            items.append(f"{k} {_fmt(v)}{t}")
        return "quality: " + ", ".join(items)

    def section_rejected(self) -> str:
        out = ['<section id="gallery-rejected"><h2>Rejected items per reason</h2>',
               f"<p>Contact sheets of up to {self.cfg.gallery_items_per_group} sampled rejected items per stage and reason, "
               "decoded from the source video at the rejected span, with the numbers that decided.</p>"]
        key_cols = ["video_id", "uri", "stage", "level", "reason", "shot_index", "track_id", "clip_id", "start_s", "end_s"]
        base = self.reader.read("rejects", key_cols)
        if not base.num_rows:
            out.append("<p>No rejects in this run.</p></section>")
            return "".join(out)
        rows = base.to_pylist()
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(rows):
            groups[(r["stage"], r["level"], r["reason"])].append(i)
        from pipeline.stages import stage_names

        stage_order = {s: i for i, s in enumerate(stage_names())}
        order = sorted(groups, key=lambda g: (stage_order.get(g[0], 99), g[0], -len(groups[g]), g[1], g[2]))
        picks = {g: self._sample(groups[g]) for g in order}
        vids = {rows[i]["video_id"] for g in order for i in picks[g] if rows[i]["video_id"]}
        info = self._videos_info(vids)
        full = self.reader.read("rejects", key_cols + ["message", "duration_s"], video_ids=vids).to_pylist()
        full_by = {tuple(r[c] for c in key_cols): r for r in full}
        shots_q = {}
        if any(rows[i]["level"] != "video" for g in order for i in picks[g]):
            for r in self.reader.read("shots", ["video_id", "shot_index", "quality", "duration_s"], video_ids=vids).to_pylist():
                shots_q[(r["video_id"], r["shot_index"])] = r
        jobs, metas = [], []
        for g in order:
            for i in picks[g]:
                r = full_by.get(tuple(rows[i][c] for c in key_cols), rows[i])
                v = info.get(r["video_id"])
                jobs.append(self._source_job(r.get("uri") or (v or {}).get("uri"), r.get("start_s"), r.get("end_s"), None, v))
                metas.append((g, r, v))
        results = self._run_jobs(jobs)
        by_group: dict[tuple, list[str]] = defaultdict(list)
        for (g, r, v), (img, note) in zip(metas, results):
            by_group[g].append(self._item(img, note, self._reject_caption(r, v, shots_q.get((r["video_id"], r.get("shot_index"))))))
        for g in order:
            st, lvl, rs = g
            k = f"gallery.rejected.{st}.{lvl}.{rs}"
            self.num.put(k + ".total", len(groups[g]))
            self.num.put(k + ".shown", len(by_group[g]))
            out.append(f'<div class="group" data-group="rejected:{_e(st)}:{_e(lvl)}:{_e(rs)}"><h3>{_e(st)} · {_e(lvl)}:{_e(rs)}: '
                       f'<span data-key="{_e(k)}.total">{len(groups[g])}</span> items, showing {len(by_group[g])}</h3>'
                       f'<div class="items">{"".join(by_group[g])}</div></div>')
        out.append("</section>")
        return "".join(out)

    def _reject_caption(self, r: dict, video: dict | None, shot: dict | None) -> str:
        span = ""
        if r.get("start_s") is not None and r.get("end_s") is not None:
            span = f" · {r['start_s']:.2f}-{r['end_s']:.2f} s ({r['end_s'] - r['start_s']:.2f} s)"
        where = f"shot {r['shot_index']}" if r.get("shot_index") is not None else ""
        if r.get("track_id") is not None:
            where += f" track {r['track_id']}"
        if r.get("clip_id"):
            where += f" clip {r['clip_id']}"
        parts = [f"<b>{_e(r['stage'])} · {_e(r['level'])}:{_e(r['reason'])}</b>",
                 f"{_e(os.path.basename(str(r.get('uri') or '')))} {_e(where)}{span}"]
        if r.get("message"):
            parts.append(_e(_short(r["message"], 220)))
        if shot and shot.get("quality"):
            parts.append(_e(self._quality_text(shot["quality"])))
        if r["level"] == "video" and video:
            facts = []
            if video.get("width") and video.get("height"):
                facts.append(f"{video['width']}x{video['height']}")
            if video.get("duration_s") is not None:
                facts.append(f"{_fmt(video['duration_s'])} s")
            if video.get("has_audio") is not None:
                facts.append("audio" if video["has_audio"] else "no audio")
            if facts:
                parts.append(_e(", ".join(facts)))
        return "<br>".join(parts)

    # ------------------------------------------------------------------ reference banks
    def section_references(self) -> str:
        from pipeline.report_media import jpeg_thumb

        out = ['<section id="references"><h2>Reference banks per identity</h2>']
        base = self.reader.read("clips", ["clip_id", "video_id", "identity_id", "global_identity_id"])
        per: dict[str, list[int]] = defaultdict(list)
        for i, (a, b) in enumerate(zip(base.column("identity_id").to_pylist(), base.column("global_identity_id").to_pylist())):
            if b or a:
                per[b or a].append(i)
        if not per or self.cfg.max_identities == 0:
            out.append(_na("identities (clips.identity_id)") + "</section>")
            return "".join(out)
        top = sorted(per, key=lambda k: (-len(per[k]), k))[: self.cfg.max_identities]
        if len(per) > len(top):
            self.notes.append(f"reference banks: {len(top)} of {len(per)} identities shown (report.max_identities)")
        picks = {k: self._sample(per[k]) for k in top}
        ids = {base.column("clip_id")[i].as_py() for k in top for i in picks[k]}
        vids = {base.column("video_id")[i].as_py() for k in top for i in picks[k]}
        refs = self.reader.read("clips", ["clip_id", "references"], video_ids=vids, filter=pc.field("clip_id").isin(sorted(ids)))
        refs_by = {r["clip_id"]: r["references"] or [] for r in refs.to_pylist()}
        any_refs = False
        blocks = []
        for k in top:
            seen, items = set(), []
            for i in picks[k]:
                for ref in refs_by.get(base.column("clip_id")[i].as_py(), []):
                    if not ref or not ref.get("jpeg"):
                        continue
                    key = (ref.get("kind"), ref.get("label"), ref.get("source_video_id"), ref.get("source_time_s"))
                    if key in seen or len(items) >= self.cfg.refs_per_identity:
                        continue
                    seen.add(key)
                    try:
                        img = _img(jpeg_thumb(ref["jpeg"], self.cfg.thumb_height_px), "image/jpeg", f"{ref.get('kind')} {ref.get('label')}")
                    except Exception as exc:
                        items.append(f'<figure class="ref"><div class="note">unreadable JPEG: {_e(_short(exc, 80))}</div></figure>')
                        continue
                    q = ref.get("quality")
                    t = ref.get("source_time_s")
                    items.append(f'<figure class="ref">{img}<figcaption>{_e(ref.get("kind"))}: {_e(ref.get("label"))}<br>'
                                 f'q {_e(_fmt(q))} · t {_e(_fmt(t))} s</figcaption></figure>')
            any_refs = any_refs or bool(items)
            self.num.put(f"references.{k}.clips", len(per[k]))
            self.num.put(f"references.{k}.shown", len(items))
            body = "".join(items) if items else _na("references of this identity")
            blocks.append(f'<div class="group" data-group="identity:{_e(k)}"><h3>{_e(k)}: '
                          f'<span data-key="references.{_e(k)}.clips">{len(per[k])}</span> clips</h3>'
                          f'<div class="items">{body}</div></div>')
        if not any_refs:
            out.append(_na("clips.references"))
        out.extend(blocks)
        out.append("</section>")
        return "".join(out)


def build_report(dir_uri: str, out_dir: str = "report", settings: Settings | None = None,
                 log: Callable[[str], None] | None = None) -> Report:
    """Write <out_dir>/index.html and <out_dir>/report.json for the run in dir_uri."""
    return ReportBuilder(dir_uri, settings, log).build(out_dir)
