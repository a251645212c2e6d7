"""Shared fixtures: where ../shared lives, settings for fast runs, composites built at test time."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LPM_SHARED_DIR", REPO.parent / "shared")).resolve()
MEDIA = SHARED / "media"
MODELS = SHARED / "models"
ARTIFACTS = REPO / "artifacts"  # test artefacts (screenshots, curves); git-ignored

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("LPM_MODEL_DIR", str(MODELS))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared not found at {SHARED} (set LPM_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def media_dir(shared_dir) -> Path:
    return shared_dir / "media"


@pytest.fixture(scope="session")
def model_dir(shared_dir) -> Path:
    return shared_dir / "models"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture
def settings(model_dir):
    """Default settings pointing at the shared model directory."""
    from schemas.settings import Settings

    s = Settings()
    s.models.dir = str(model_dir)
    return s


def ffmpeg(*args: str, timeout: float = 120) -> None:
    """Run ffmpeg with an argument list (tests build composites with it)."""
    cmd = [shutil.which("ffmpeg") or "ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", *args]
    subprocess.run(cmd, check=True, timeout=timeout)
