"""Passes that need every video of a run at once (global identity index, near-duplicate clips).

They run on the driver after all videos are written, read only the columns they need, and rewrite
the affected per-video parts through OutputStore.rewrite_part (atomic). Each pass is a function
``fn(store, settings) -> dict`` (a small report merged into summary.json) registered in POST_PASSES
in the order they run.
"""
from __future__ import annotations

from collections.abc import Callable

POST_PASSES: list[tuple[str, Callable]] = []


def register_pass(name: str):
    def deco(fn):
        POST_PASSES.append((name, fn))
        return fn
    return deco


def run_post_passes(store, settings) -> dict:
    report = {}
    for name, fn in POST_PASSES:
        report[name] = fn(store, settings) or {}
    return report
