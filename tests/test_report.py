"""`lpm-curate report`: renders in headless Chromium, shows the numbers of the tables, survives missing
columns and unreadable sources, samples galleries and reads only the columns it needs."""
from __future__ import annotations

import json
import math
import shutil
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest

from report_fixtures import enriched_run, pipeline_run  # noqa: F401  (session fixtures)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SECTIONS = ["provenance", "funnel", "distributions", "gallery-kept", "gallery-rejected", "references"]


@pytest.fixture(scope="session")
def reports(tmp_path_factory, pipeline_run, enriched_run):  # noqa: F811
    """Both runs' reports, built once (default report settings)."""
    from pipeline.report import build_report

    root = tmp_path_factory.mktemp("reports")
    return {"pipeline": (pipeline_run, build_report(str(pipeline_run), str(root / "pipeline"))),
            "enriched": (enriched_run, build_report(str(enriched_run), str(root / "enriched")))}


# ------------------------------------------------------------------------------------------ chromium
def browse(html_path: str, screenshot: Path) -> dict:
    """Open the report from file:// in headless Debian Chromium; collect errors, images, sections."""
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("chromium is not installed: run scripts/setup.sh (installs Debian's chromium); "
                    "the report test needs a real headless browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the 'playwright' package is missing: pip install -c constraints.txt -e '.[dev]' (scripts/setup.sh does)")
    exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    errors, requests = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(Path(html_path).resolve().as_uri(), wait_until="load")
            info = page.evaluate("""() => {
                const imgs = Array.from(document.images);
                const q = s => document.querySelectorAll(s).length;
                return {
                  images: imgs.length,
                  broken: imgs.filter(i => !i.complete || i.naturalWidth === 0).map(i => i.alt),
                  sections: Array.from(document.querySelectorAll('main > section')).map(s => s.id),
                  funnel_img: q('#funnel [data-chart="funnel"] img'),
                  kept_groups: Array.from(document.querySelectorAll('#gallery-kept .group')).map(g => g.dataset.group),
                  kept_imgs: q('#gallery-kept .thumb img'),
                  rejected_groups: Array.from(document.querySelectorAll('#gallery-rejected .group')).map(g => g.dataset.group),
                  rejected_imgs: q('#gallery-rejected .thumb img'),
                  notes: Array.from(document.querySelectorAll('#gallery-rejected .note')).map(n => n.textContent),
                  ref_imgs: q('#references .ref img'),
                  charts_with_img: Array.from(document.querySelectorAll('figure.chart')).filter(f => f.querySelector('img')).map(f => f.dataset.chart),
                  na: q('.na'),
                };
            }""")
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    info["errors"] = errors
    info["external_requests"] = [u for u in requests if not (u.startswith("file:") or u.startswith("data:"))]
    return info


def test_report_renders_in_chromium(reports, artifacts_dir):
    """The real run: charts and galleries render, no broken image, no script error, no network."""
    _, rep = reports["pipeline"]
    info = browse(rep.html_path, artifacts_dir / "report.png")
    assert info["errors"] == []
    assert info["external_requests"] == []
    assert info["images"] >= 5 and info["broken"] == []
    assert info["sections"][: len(SECTIONS)] == SECTIONS
    assert info["funnel_img"] == 1
    assert "clip_duration_s" in info["charts_with_img"] and "rejects" in info["charts_with_img"]
    # one gallery group per clip_class in the table ('unlabelled' while no stage sets it), with pictures
    out, _ = reports["pipeline"]
    classes = {r[0] for r in _con(out).execute("SELECT coalesce(clip_class, 'unlabelled') FROM clips").fetchall()}
    assert classes, "talking_face_1.mp4 yields at least one clip"
    assert sorted(g.split(":", 1)[1] for g in info["kept_groups"]) == sorted(classes)
    assert info["kept_imgs"] >= len(classes)
    assert "rejected:shots:shot:shot_too_short" in info["rejected_groups"] and info["rejected_imgs"] >= 1
    assert "rejected:probe:video:no_audio_stream" in info["rejected_groups"]
    # the truncated input cannot be decoded: its item is a note, the rest of the report is intact
    assert any("unreadable" in n and "truncated_talking_face_2.mp4" in n for n in info["notes"]), info["notes"]
    assert info["na"] >= 1  # columns of stages not built yet say so
    assert (artifacts_dir / "report.png").stat().st_size > 10_000


def test_enriched_report_renders_every_gallery(reports, artifacts_dir):
    """With every column filled: state galleries from clip media, reference banks, per-key charts."""
    _, rep = reports["enriched"]
    info = browse(rep.html_path, artifacts_dir / "report_enriched.png")
    assert info["errors"] == [] and info["external_requests"] == []
    assert info["broken"] == []
    assert info["kept_groups"] == ["kept:speak", "kept:listen", "kept:idle", "kept:mixed", "kept:unlabelled"]
    assert info["kept_imgs"] == 8  # every clip: 6 from their media, 2 from the source at their span and crop
    assert info["ref_imgs"] >= 8
    for chart in ("quality", "state_shares", "state_share_overall", "clip_class",
                  "expression_stats", "motion_stats", "transcript_words",
                  "identities_per_video", "clips_per_identity", "clip_resolution", "stage_timings"):
        assert chart in info["charts_with_img"], chart
    assert any("gone.mp4" in n for n in info["notes"])


# ------------------------------------------------------------------------------------------- numbers
def _con(out: Path):
    """Independent DuckDB views over the finished videos' part files (not pipeline.query)."""
    done = {p.stem for p in (out / "_state").glob("*.json")}
    con = duckdb.connect()
    for t in ("videos", "shots", "clips", "rejects"):
        files = sorted(str(f) for f in (out / t).glob("part-*.parquet") if f.stem[len("part-"):] in done)
        con.execute(f"CREATE VIEW {t} AS SELECT * FROM read_parquet([{', '.join(repr(f) for f in files)}], union_by_name=true)")
    return con


def _close(a, b, tol=1e-6):
    return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=tol)


@pytest.mark.parametrize("which", ["pipeline", "enriched"])
def test_report_numbers_equal_table_counts(reports, which):
    out, rep = reports[which]
    n = rep.numbers
    con = _con(out)
    one = lambda sql: con.execute(sql).fetchone()  # noqa: E731
    c, h = one("SELECT count(*), sum(duration_s) / 3600 FROM videos")
    assert n["funnel.input.count"] == c and _close(n["funnel.input.hours"], h)
    c, h = one("SELECT count(*), coalesce(sum(duration_s), 0) / 3600 FROM videos WHERE status = 'ok'")
    assert n["funnel.probed_ok.count"] == c and _close(n["funnel.probed_ok.hours"], h)
    c, k = one("SELECT count(*), count(*) FILTER (WHERE kept) FROM shots")
    assert (n["funnel.shots.count"], n["funnel.shots_kept.count"]) == (c, k)
    c, h, mean, mx = one("SELECT count(*), sum(duration_s) / 3600, avg(duration_s), max(duration_s) FROM clips")
    assert n["funnel.clips.count"] == c and _close(n["funnel.clips.hours"], h)
    assert n["dist.clip_duration_s.n"] == c and _close(n["dist.clip_duration_s.mean"], mean) and _close(n["dist.clip_duration_s.max"], mx)
    rows = con.execute("SELECT stage, level, reason, count(*), sum(coalesce(duration_s, 0)) / 3600 FROM rejects GROUP BY ALL").fetchall()
    assert rows, "both runs have rejects"
    assert n["rejects.total"] == sum(r[3] for r in rows)
    for stage, level, reason, cnt, hrs in rows:
        assert n[f"rejects.{stage}.{level}.{reason}.count"] == cnt
        assert _close(n[f"rejects.{stage}.{level}.{reason}.hours"], hrs)
        assert n[f"gallery.rejected.{stage}.{level}.{reason}.total"] == cnt
        assert 1 <= n[f"gallery.rejected.{stage}.{level}.{reason}.shown"] <= min(cnt, 8)
    for cls, cnt, hrs in con.execute("SELECT coalesce(clip_class, 'unlabelled'), count(*), sum(duration_s) / 3600 FROM clips GROUP BY 1").fetchall():
        assert n[f"clips.class.{cls}.count"] == cnt and _close(n[f"clips.class.{cls}.hours"], hrs)
        assert n[f"gallery.kept.{cls}.total"] == cnt
    ids = one("SELECT count(DISTINCT coalesce(global_identity_id, identity_id)) FROM clips")[0]
    assert n["identities.count"] == ids
    words = one("SELECT count(*), avg(len(string_split_regex(trim(transcript), '\\s+'))) FROM clips WHERE transcript IS NOT NULL")
    assert n["dist.transcript_words.n"] == words[0]
    if words[0]:
        assert _close(n["dist.transcript_words.mean"], words[1])
    s = one("SELECT count(*) FROM videos WHERE status = 'ok' AND width IS NOT NULL")[0]
    assert n["dist.source_short_side_px.n"] == s
    if which == "enriched":
        sp = one("SELECT sum(state_shares['speak'] * duration_s) / sum(duration_s) FROM clips WHERE state_shares IS NOT NULL")[0]
        assert _close(n["dist.state_share_overall.speak"], sp)
        e = one("SELECT count(*), avg(expression_stats['dominant_share']) FROM clips WHERE expression_stats IS NOT NULL")
        assert n["dist.expression_stats.dominant_share.n"] == e[0] and _close(n["dist.expression_stats.dominant_share.mean"], e[1])
        q = one("SELECT count(*), max(quality['sharpness']) FROM shots WHERE quality IS NOT NULL")
        assert n["dist.quality.sharpness.n"] == q[0] and _close(n["dist.quality.sharpness.max"], q[1])
        per_id = dict(con.execute("SELECT coalesce(global_identity_id, identity_id), count(*) FROM clips "
                                  "WHERE coalesce(global_identity_id, identity_id) IS NOT NULL GROUP BY 1").fetchall())
        for ident, cnt in per_id.items():
            assert n[f"references.{ident}.clips"] == cnt
        # known by construction (fixture): 8 finished clips (the unfinished part is not counted), 5 identities
        assert n["funnel.clips.count"] == 8 and n["identities.count"] == 5
        assert (n["clips.class.listen.count"], n["clips.class.speak.count"], n["clips.class.unlabelled.count"]) == (3, 2, 1)
        assert n["run.wall_s"] == 12.5 and n["timing.people.total_s"] == 4.5
    else:
        # the real run on known media (SOURCES.md): the stage video has short shots, counter.mp4 has no audio
        assert n["rejects.probe.video.no_audio_stream.count"] == 1
        assert n["rejects.probe.video.probe_failed.count"] == 1
        assert n["rejects.shots.shot.shot_too_short.count"] >= 1


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.cells: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-key" in a and "data-value" in a:
            self.cells[a["data-key"]] = a["data-value"]


@pytest.mark.parametrize("which", ["pipeline", "enriched"])
def test_page_shows_the_numbers_of_report_json(reports, which):
    """Every number cell of the page carries exactly the value in report.json."""
    _, rep = reports[which]
    data = json.loads(Path(rep.json_path).read_text())["numbers"]
    p = _Cells()
    p.feed(Path(rep.html_path).read_text())
    assert len(p.cells) >= 20
    for key, shown in p.cells.items():
        want = data[key]
        if want is None:
            assert shown == ""
        elif isinstance(want, float):
            assert float(shown) == want, key
        else:
            assert shown == str(want), key
    for key in ("funnel.input.count", "funnel.clips.count", "funnel.clips.hours", "rejects.total"):
        assert key in p.cells


# --------------------------------------------------------------------------------- robustness / scale
def test_report_of_an_empty_output_says_not_available(tmp_path):
    from pipeline.report import NA, build_report
    from pipeline.store import OutputStore

    OutputStore(str(tmp_path / "out")).ensure_layout()
    rep = build_report(str(tmp_path / "out"), str(tmp_path / "rep"))
    page = Path(rep.html_path).read_text()
    assert page.count(NA) >= 10
    assert rep.numbers["funnel.input.count"] == 0 and rep.numbers["funnel.clips.count"] == 0
    assert rep.numbers["rejects.total"] == 0


def test_galleries_are_sampled_and_media_read_only_for_sampled_videos(enriched_run, tmp_path, monkeypatch):  # noqa: F811
    from pipeline import report_data
    from pipeline.cli import main

    calls = []
    orig = report_data.RunReader.read

    def spy(self, table, columns, video_ids=None, filter=None):
        calls.append((table, tuple(columns), None if video_ids is None else set(video_ids)))
        return orig(self, table, columns, video_ids, filter)

    monkeypatch.setattr(report_data.RunReader, "read", spy)
    out = tmp_path / "rep"
    assert main(["report", str(enriched_run), "--out", str(out), "--max-items", "1"]) == 0
    numbers = json.loads((out / "report.json").read_text())["numbers"]
    assert numbers["gallery.kept.listen.total"] == 3 and numbers["gallery.kept.listen.shown"] == 1
    assert numbers["gallery.rejected.quality.shot.blurry.total"] == 3 and numbers["gallery.rejected.quality.shot.blurry.shown"] == 1
    heavy = {"video_bytes", "references", "first_frame_jpeg", "speak_audio", "listen_audio", "message"}
    media_reads = [c for c in calls if heavy & set(c[1])]
    assert media_reads, "galleries read media"
    groups = 5  # kept states (speak, listen, idle, mixed, unlabelled); rejects have 4 groups; identities 5
    for table, cols, vids in media_reads:
        assert vids is not None and len(vids) <= groups, (table, cols, vids)
    whole_table = [c for c in calls if c[2] is None]
    for table, cols, _ in whole_table:
        assert not heavy & set(cols), (table, cols)
        assert len(cols) <= 12, (table, cols)
