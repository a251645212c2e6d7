"""Model registry: `lpm-curate models list|verify|pull`, checksums, and the missing-model message.

`pull` is tested against a local HTTP server on 127.0.0.1 that serves a temporary COPY of a few files of
../shared/models (never the originals, never the internet)."""
from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading
from pathlib import Path

import pytest

from models import registry
from pipeline.cli import main

SMALL = ["yunet-320", "brisque"]  # three files, ~0.9 MB in all


def _copy_models(model_dir: Path, dest: Path, names: list[str]) -> None:
    for name in names:
        for f in registry.REGISTRY[name].files:
            (dest / f.relpath).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(model_dir / f.relpath, dest / f.relpath)


def _corrupt(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.fixture
def mirror(tmp_path, model_dir):
    """A local HTTP server serving a copy of SMALL under <base>/<relpath>."""
    root = tmp_path / "mirror"
    _copy_models(model_dir, root, SMALL)
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest output clean
        pass


def test_every_spec_is_well_formed():
    for spec in registry.REGISTRY.values():
        assert spec.files, spec.name
        for f in spec.files:
            assert len(f.sha256) == 64 and int(f.sha256, 16) >= 0, (spec.name, f.relpath)
            if spec.bundled:  # our own weights ship with the repository, pinned by sha256
                assert registry.sha256_file(registry.BUNDLED_DIR / f.relpath) == f.sha256, (spec.name, f.relpath)
                continue
            assert f.url.startswith("https://"), (spec.name, f.url)
            assert not Path(f.relpath).is_absolute()


def test_list_names_every_model(capsys, model_dir):
    assert main(["models", "list", "--model-dir", str(model_dir)]) == 0
    out = capsys.readouterr().out
    for name in ("scrfd-500m", "yunet-320", "yolox-nano", "mobilefacenet"):
        assert name in out


def test_verify_shared_models_all_ok(capsys, model_dir):
    assert main(["models", "verify", "--model-dir", str(model_dir)]) == 0
    results = registry.verify_all(model_dir)
    assert results and all(r.status == "ok" for r in results), [r for r in results if r.status != "ok"]


def test_verify_detects_corrupt_and_missing(tmp_path, model_dir, capsys):
    d = tmp_path / "models"
    _copy_models(model_dir, d, SMALL)
    yunet = d / registry.REGISTRY["yunet-320"].main.relpath
    _corrupt(yunet)
    by_file = {r.relpath: r for r in registry.verify_all(d)}
    assert by_file[registry.REGISTRY["yunet-320"].main.relpath].status == "mismatch"
    assert all(by_file[f.relpath].status == "ok" for f in registry.REGISTRY["brisque"].files)
    assert by_file[registry.REGISTRY["scrfd-500m"].main.relpath].status == "missing"
    assert main(["models", "verify", "--model-dir", str(d)]) == 1
    out = capsys.readouterr().out
    assert "mismatch" in out and "yunet_n_320_320.onnx" in out


def test_pull_from_local_server_verifies(tmp_path, mirror, capsys):
    _, base = mirror
    dest = tmp_path / "pulled"
    rc = main(["models", "pull", "--model-dir", str(dest), "--base-url", base, "--name", "yunet-320", "--name", "brisque"])
    out = capsys.readouterr().out
    assert rc == 0, out
    for name in SMALL:
        for f in registry.REGISTRY[name].files:
            p = dest / f.relpath
            assert hashlib.sha256(p.read_bytes()).hexdigest() == f.sha256
    assert "downloaded from http://127.0.0.1" in out
    # a second pull finds them verified and downloads nothing
    again = registry.pull(dest, names=SMALL, base_url=base)
    assert all(r.status == "ok" and r.detail == "already present" for r in again)
    # the pulled directory resolves like the shared one
    assert registry.resolve("yunet-320", dest).path == dest / "yunet/yunet_n_320_320.onnx"


def test_pull_rejects_a_corrupted_download(tmp_path, mirror, capsys):
    root, base = mirror
    _corrupt(root / "yunet/yunet_n_320_320.onnx")
    dest = tmp_path / "pulled"
    rc = main(["models", "pull", "--model-dir", str(dest), "--base-url", base, "--name", "yunet-320"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "mismatch" in out
    assert not (dest / "yunet/yunet_n_320_320.onnx").exists(), "a file that fails verification must not be kept"
    assert not list(dest.rglob("*.part"))


def test_pull_missing_on_server_is_reported(tmp_path, mirror):
    _, base = mirror
    res = registry.pull(tmp_path / "pulled", names=["yolox-nano"], base_url=base, timeout_s=10)
    assert [r.status for r in res] == ["missing"]
    assert "download failed" in res[0].detail and "404" in res[0].detail


def test_missing_model_error_names_file_and_remedy(tmp_path, model_dir):
    with pytest.raises(registry.MissingModelError) as exc:
        registry.resolve("scrfd-500m", tmp_path)
    msg = str(exc.value)
    assert str(tmp_path / "scrfd/scrfd_500m_kps.onnx") in msg
    assert "is missing" in msg and "lpm-curate models pull" in msg and "LPM_MODEL_DIR" in msg
    assert "fallback: yunet-320" in msg
    # a corrupt copy is refused with its checksum named
    _copy_models(model_dir, tmp_path, ["yunet-320"])
    _corrupt(tmp_path / "yunet/yunet_n_320_320.onnx")
    with pytest.raises(registry.MissingModelError, match="sha256"):
        registry.resolve("yunet-320", tmp_path)
    # ... unless verification is switched off (models.verify_checksums: false)
    assert registry.resolve("yunet-320", tmp_path, verify=False).path.is_file()


def test_user_model_hashes_local_file(tmp_path):
    p = tmp_path / "my.pt"
    p.write_bytes(b"abc")
    m = registry.user_model(p, "ultralytics-yolo")
    assert m.digest == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(registry.MissingModelError, match="user-provided"):
        registry.user_model(tmp_path / "nope.pt", "ultralytics-yolo")
