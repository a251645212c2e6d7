"""Every media file in an input folder is accounted for (a videos row, or a counted skip), and hostile
file names and title tags stay inert text in the tables and in the HTML report."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import ffmpeg
from media_factory import make_good
from pipeline.inputs import collect_inputs, expand_inputs, real_uri, text_uri
from pipeline.store import OutputStore
from test_report import CHROMIUM, CHROMIUM_ARGS

EXTENSIONS = [".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv"]
TAKEN = ["audio_only.m4a", "good.mp4", "speech.wav", "video_inside.bin"]  # audio-only ones: no_video_stream
AUDIO_ONLY = ["audio_only.m4a", "speech.wav"]
SKIPPED = {"hidden": 1, "image": 2, "not_media": 2}

PWN = "window.__pwned=1;alert(1)"
HOSTILE_NAMES = [
    f'"><img src=x onerror={PWN}>.mp4',
    f"<script>{PWN}<.mp4",  # a file name cannot hold '/', so no closing tag: unescaped it would eat the page
    f"<svg onload='{PWN}'>" + "L" * 200 + ".mp4",  # 200+ characters
]
NON_UTF8_NAME = b"bad_\xff\xfe_<b>bytes<b>.mp4"  # bytes that are no UTF-8
HOSTILE_TITLE = f"</title><script>{PWN}</script><img src=x onerror={PWN}>"


@pytest.fixture(scope="module")
def good_mp4(tmp_path_factory, media_dir) -> Path:
    return make_good(media_dir / "video" / "talking_face_1.mp4", tmp_path_factory.mktemp("src") / "good.mp4")


@pytest.fixture(scope="module")
def talking_mp4(tmp_path_factory, media_dir) -> Path:
    """A short clip that yields a kept clip (so the name shows in the kept gallery too)."""
    return make_good(media_dir / "video" / "talking_face_2.mp4", tmp_path_factory.mktemp("src") / "talking.mp4")


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, good_mp4, media_dir) -> Path:
    """A real video, audio-only files, a video under an odd extension, a text file, images, a hidden file."""
    folder = tmp_path_factory.mktemp("mixed")
    shutil.copyfile(good_mp4, folder / "good.mp4")
    ffmpeg("-i", str(good_mp4), "-vn", "-c:a", "aac", str(folder / "audio_only.m4a"))
    shutil.copyfile(media_dir / "audio" / "turns_person1.wav", folder / "speech.wav")
    shutil.copyfile(good_mp4, folder / "video_inside.bin")
    ffmpeg("-i", str(good_mp4), "-frames:v", "1", str(folder / "frame.png"))
    ffmpeg("-i", str(good_mp4), "-frames:v", "1", str(folder / "photo.jpg"))
    (folder / "notes.txt").write_text("not a manifest of this run, just notes\n")
    (folder / "README.md").write_text("# a text file ffprobe cannot read\n")
    shutil.copyfile(good_mp4, folder / ".hidden.mp4")
    return folder


# -------------------------------------------------------------------------------------------- unit
def test_folder_takes_every_media_file_and_counts_the_rest(mixed_folder):
    uris, tally = collect_inputs([str(mixed_folder)], EXTENSIONS)
    assert [os.path.basename(u) for u in uris] == TAKEN
    assert tally == {"files_seen": 9, "media": 4, "skipped": SKIPPED}
    assert tally["files_seen"] == tally["media"] + sum(tally["skipped"].values())
    assert expand_inputs([str(mixed_folder)], EXTENSIONS) == uris  # the old entry point: same URIs


def test_named_files_are_always_taken_and_duplicates_counted(mixed_folder):
    png = str(mixed_folder / "frame.png")
    uris, tally = collect_inputs([png, str(mixed_folder / "notes.md.missing"), png], EXTENSIONS)
    assert uris == sorted([png, str(mixed_folder / "notes.md.missing")])
    assert tally == {"files_seen": 3, "media": 2, "skipped": {"duplicate": 1}}


def test_non_utf8_names_become_visible_text_and_map_back(tmp_path):
    raw = os.fsencode(str(tmp_path)) + b"/" + NON_UTF8_NAME
    with open(raw, "wb") as fh:
        fh.write(b"x")
    real = os.fsdecode(raw)
    text = text_uri(real)
    text.encode("utf-8")  # valid UTF-8 now
    assert text.endswith("bad_\\xff\\xfe_<b>bytes<b>.mp4") and text != real
    assert real_uri(text) == real
    assert text_uri("ünïcødé 视频.mp4") == "ünïcødé 视频.mp4"


# ------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_run_on_a_mixed_folder_gives_every_media_file_a_row(mixed_folder, tmp_path, model_dir, capsys):
    from pipeline.cli import main

    out = tmp_path / "out"
    assert main(["run", "--input", str(mixed_folder), "--output", str(out), "--no-ray"]) == 0
    said = capsys.readouterr().out
    assert "5 input files skipped" in said and "2 image" in said, said
    store = OutputStore(str(out))
    videos = {os.path.basename(v["uri"]): v for v in store.read_table("videos").to_pylist()}
    assert sorted(videos) == TAKEN
    for name in AUDIO_ONLY:
        assert (videos[name]["status"], videos[name]["reason"]) == ("rejected", "no_video_stream"), name
    for name in ("good.mp4", "video_inside.bin"):
        assert videos[name]["status"] == "ok", (name, videos[name]["reason"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["inputs"] == 4
    assert summary["input_files"] == {"files_seen": 9, "media": 4, "skipped": SKIPPED}


# ------------------------------------------------------------------------------- hostile names
@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory, good_mp4, talking_mp4, model_dir):
    """One good video with a hostile name and title tag (kept clips), hostile-named silent copies (probe
    rejects) and a non-UTF-8 name; the report of the run."""
    from pipeline.cli import main

    root = tmp_path_factory.mktemp("hostile")
    folder = root / "in"
    folder.mkdir()
    ffmpeg("-i", str(talking_mp4), "-c", "copy", "-metadata", f"title={HOSTILE_TITLE}", str(folder / HOSTILE_NAMES[0]))
    silent = root / "silent.mp4"
    ffmpeg("-i", str(good_mp4), "-an", "-c", "copy", "-metadata", f"title={HOSTILE_TITLE}", str(silent))
    for name in HOSTILE_NAMES[1:]:
        shutil.copyfile(silent, folder / name)
    non_utf8 = os.fsencode(str(folder)) + b"/" + NON_UTF8_NAME
    shutil.copyfile(silent, non_utf8)
    out, rep = root / "out", root / "report"
    assert main(["run", "--input", str(folder), "--output", str(out), "--no-ray"]) == 0
    assert main(["report", str(out), "--out", str(rep)]) == 0
    return {"out": out, "report": rep / "index.html", "non_utf8": os.fsdecode(non_utf8)}


@pytest.mark.slow
def test_hostile_names_are_stored_as_text(hostile_run):
    videos = OutputStore(str(hostile_run["out"])).read_table("videos").to_pylist()
    names = {os.path.basename(v["uri"]): v for v in videos}
    non_utf8_text = os.path.basename(text_uri(hostile_run["non_utf8"]))
    assert sorted(names) == sorted(HOSTILE_NAMES + [non_utf8_text])
    assert names[HOSTILE_NAMES[0]]["status"] == "ok" and names[HOSTILE_NAMES[0]]["n_clips"] >= 1
    for name in HOSTILE_NAMES[1:] + [non_utf8_text]:
        assert names[name]["reason"] == "no_audio_stream", name  # the real file was opened and probed
    assert non_utf8_text == "bad_\\xff\\xfe_<b>bytes<b>.mp4"


@pytest.mark.slow
def test_report_with_hostile_names_runs_no_script_in_chromium(hostile_run, artifacts_dir):
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail("chromium is not installed: run scripts/setup.sh")
    from playwright.sync_api import sync_playwright

    exe = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    dialogs, errors = [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(hostile_run["report"].resolve().as_uri(), wait_until="load")
            page.wait_for_timeout(300)  # give an injected onerror/onload handler time to fire
            pwned = page.evaluate("() => window.__pwned === undefined ? null : window.__pwned")
            text = page.evaluate("() => document.body.innerText")
            injected = page.evaluate("() => document.querySelectorAll('main script, main svg, img[src=\"x\"]').length")
            page.screenshot(path=str(artifacts_dir / "report_hostile_names.png"), full_page=True)
        finally:
            browser.close()
    assert dialogs == [] and pwned is None and errors == [], (dialogs, pwned, errors)
    assert injected == 0
    for name in HOSTILE_NAMES:  # shown as the text it is
        assert name in text, name
    assert "bad_\\xff\\xfe_<b>bytes<b>.mp4" in text
    page_html = hostile_run["report"].read_text(encoding="utf-8").lower()
    assert "<script" not in page_html and "<img src=x" not in page_html and "<svg" not in page_html
