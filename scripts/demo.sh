#!/usr/bin/env bash
# Set up (idempotent) and run the main job on the real sample videos with an embedded local Ray.
#   scripts/demo.sh [OUTPUT_DIR]        (default: out/demo)
# Sample media: $LPM_MEDIA_DIR, else ../shared/media/video beside the repository.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bash scripts/setup.sh
media="${LPM_MEDIA_DIR:-$here/../shared/media/video}"
out="${1:-out/demo}"
export RAY_USAGE_STATS_ENABLED=0 YOLO_OFFLINE=1 HF_HUB_OFFLINE=1
.venv/bin/lpm-curate run --input "$media" --output "$out" --config jobs/configs/laptop.yaml
.venv/bin/lpm-curate stats "$out"
