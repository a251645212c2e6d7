"""Job entry point for a Ray cluster:

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python -m jobs.curate --input s3://bucket/raw/ --output s3://bucket/curated/run1 \
        --config jobs/configs/cluster.yaml

Inside a Ray job the driver attaches to the cluster it was submitted to (address "auto").
"""
from __future__ import annotations

import os
import sys

from pipeline.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--address" not in argv and "--no-ray" not in argv and os.environ.get("RAY_ADDRESS"):
        argv += ["--address", "auto"]
    return cli_main(["run", *argv])


if __name__ == "__main__":
    sys.exit(main())
