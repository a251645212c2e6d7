"""Assembly of the operators into a run: on Ray Data (embedded local Ray or a cluster), or in-process.

Each row of the Ray dataset is one input video: ``uri``, ``video_id`` and ``task`` (the serialized
:class:`operators.base.VideoTask`, which carries encoded media and small per-frame arrays, never decoded
frames). Every operator becomes one ``map_batches`` stage backed by an actor pool, so models load once
per actor; the last stage writes the video's rows to the output folder and returns a small receipt.
"""
from __future__ import annotations

import logging
import os
import pickle
import time
import uuid
from typing import Any

from operators.base import CODE_VERSION, VideoTask, run_operator
from schemas.settings import Settings, settings_from_json
from pipeline.inputs import collect_inputs, text_uri
from pipeline.stages import build_operators
from pipeline.store import OutputStore
import pipeline.identity_index  # noqa: F401,E402  (registers the global identity index post-run pass)

log = logging.getLogger("lpm.pipeline")


# ----------------------------------------------------------------------------- task -> table rows
def task_rows(task: VideoTask) -> dict[str, list[dict]]:
    video = dict(task.video)
    video.setdefault("video_id", task.video_id)
    video.setdefault("uri", task.uri)
    video["status"] = "rejected" if task.status == "rejected" else "ok"
    video.setdefault("reason", "")
    video["n_shots"] = len(task.shots)
    video["n_shots_kept"] = len(task.kept_shots())
    video["n_clips"] = len(task.clips)
    clips = []
    if task.status == "ok":
        for c in task.clips:
            c = dict(c)
            if task.provenance and "provenance" not in c:
                import json

                c["provenance"] = {k: json.dumps(v, sort_keys=True) for k, v in sorted(task.provenance.items())}
            clips.append(c)
    return {"videos": [video], "shots": list(task.shots), "clips": clips, "rejects": list(task.rejects)}


def default_work_dir(out_uri: str) -> str:
    """<output>/_work for a local output folder, else a folder under the system temp dir."""
    import tempfile

    if "://" in out_uri and not out_uri.startswith("file://"):
        return os.path.join(tempfile.gettempdir(), "lpm-work")
    return os.path.join(os.path.abspath(out_uri.removeprefix("file://")), "_work")


def write_task(store: OutputStore, task: VideoTask, config_hash: str) -> dict[str, Any]:
    if task.status == "skipped":
        task.release_work_files()
        return {"uri": task.uri, "video_id": task.video_id, "status": "skipped", "timings_s": {}}
    t0 = time.monotonic()
    counts = store.write_video(task.video_id, config_hash, task_rows(task), task.status,
                               task.video.get("reason", ""), task.timings_s)
    task.timings_s["write"] = time.monotonic() - t0
    task.release_work_files()
    return {"uri": task.uri, "video_id": task.video_id, "status": task.status, "counts": counts,
            "timings_s": task.timings_s}


# ----------------------------------------------------------------------------- in-process run
def process_uri(uri: str, operators, settings: Settings, store: OutputStore | None = None) -> VideoTask:
    """Run every operator on one input in this process (tests, debugging, `--no-ray`)."""
    task = VideoTask(uri=uri)
    for i, op in enumerate(operators):
        task = run_operator(op, task, settings.run.item_timeout_s)
        if i == 0 and store is not None and task.ok and settings.run.resume and store.is_done(task.video_id, settings.config_hash()):
            task.status = "skipped"
    return task


def run_local(uris: list[str], settings: Settings, store: OutputStore) -> list[dict]:
    ops = build_operators(settings)
    ch = settings.config_hash()
    return [write_task(store, process_uri(u, ops, settings, store), ch) for u in uris]


# ----------------------------------------------------------------------------- Ray Data run
class _StageActor:
    """Ray Data callable class wrapping one group of consecutive operators (models set up once per actor)."""

    def __init__(self, op_indices: list[int], settings_json: str, out_uri: str, first: bool):
        self.settings = settings_from_json(settings_json)
        ops = build_operators(self.settings)
        self.ops = [ops[i] for i in op_indices]
        self.first = first
        self.store = OutputStore(out_uri) if first else None
        self.config_hash = self.settings.config_hash()

    def __call__(self, batch):
        import pyarrow as pa

        rows = batch.to_pylist()
        out_tasks = []
        for row in rows:
            task = pickle.loads(row["task"]) if row.get("task") else VideoTask(uri=row["uri"])
            for j, op in enumerate(self.ops):
                if task.status != "ok":
                    break
                task = run_operator(op, task, self.settings.run.item_timeout_s)
                if self.first and j == 0 and task.ok and self.settings.run.resume and self.store.is_done(task.video_id, self.config_hash):
                    task.status = "skipped"
            out_tasks.append(task)
        return pa.table({
            "uri": [text_uri(t.uri) for t in out_tasks],
            "video_id": [t.video_id for t in out_tasks],
            "task": [pickle.dumps(t, protocol=pickle.HIGHEST_PROTOCOL) for t in out_tasks],
        })


def _write_batch(batch, out_uri: str, settings_json: str):
    import json

    import pyarrow as pa

    settings = settings_from_json(settings_json)
    store = OutputStore(out_uri, settings.output.compression, settings.output.row_group_rows)
    receipts = []
    for row in batch.to_pylist():
        task = pickle.loads(row["task"])
        receipts.append(json.dumps(write_task(store, task, settings.config_hash()), default=str))
    return pa.table({"receipt": receipts})


def stage_groups(operators, settings: Settings, cluster_cpus: float) -> list[list[int]]:
    """Which operators share an actor. Fused (one actor runs every stage in turn) on small machines, where a
    separate actor pool per stage would spend more on idle actors and worker start-up than on work; one
    pool per stage on clusters, so each stage scales on its own."""
    fuse = settings.run.fuse_stages
    if fuse is None:
        fuse = cluster_cpus < 2 * len(operators)
    if fuse:
        return [list(range(len(operators)))]
    return [[i] for i in range(len(operators))]


def _stage_cpus(groups, operators, settings: Settings, cluster_cpus: float) -> list[float]:
    if settings.run.stage_cpus:
        return [settings.run.stage_cpus for _ in groups]
    want = [sum(operators[i].resources.num_cpus for i in g) for g in groups]
    budget = 0.8 * cluster_cpus / settings.run.stage_concurrency - 0.1  # leave room for the writer task
    total = sum(want)
    if total > budget > 0:
        want = [max(0.05, w * budget / total) for w in want]
    return want


def run_ray(uris: list[str], settings: Settings, out_uri: str, address: str | None = None) -> list[dict]:
    import json

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started_here = False
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"log_to_driver": settings.run.verbose, "ignore_reinit_error": True}
        if address:
            kwargs["address"] = address
        else:
            kwargs["num_cpus"] = settings.run.num_cpus or os.cpu_count() or 2
            kwargs["include_dashboard"] = False
        ray.init(**kwargs)
        started_here = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = settings.run.verbose
        ctx.verbose_stats_logs = False
        cluster_cpus = float(ray.cluster_resources().get("CPU", 2))
        ops = build_operators(settings)
        groups = stage_groups(ops, settings, cluster_cpus)
        cpus = _stage_cpus(groups, ops, settings, cluster_cpus)
        sjson = settings.to_json()
        # the real uri travels inside the pickled task; Arrow columns hold UTF-8 text only
        ds = ray.data.from_items([{"uri": text_uri(u), "video_id": "", "task": pickle.dumps(VideoTask(uri=u))} for u in uris],
                                 override_num_blocks=max(1, min(len(uris), 1000)))
        for k, (group, c) in enumerate(zip(groups, cpus)):
            gpus = max(ops[i].resources.num_gpus for i in group)
            ds = ds.map_batches(
                _StageActor, batch_size=1, batch_format="pyarrow",
                fn_constructor_kwargs={"op_indices": group, "settings_json": sjson, "out_uri": out_uri, "first": k == 0},
                compute=ray.data.ActorPoolStrategy(size=settings.run.stage_concurrency), num_cpus=c, num_gpus=gpus or None,
                memory=max(ops[i].resources.memory_mb for i in group) * 1024 * 1024,
            )
        ds = ds.map_batches(_write_batch, batch_size=1, batch_format="pyarrow", num_cpus=0.05,
                            fn_kwargs={"out_uri": out_uri, "settings_json": sjson})
        return [json.loads(r["receipt"]) for r in ds.iter_rows()]
    finally:
        if started_here and not address:
            ray.shutdown()


# ----------------------------------------------------------------------------- entry point
def run(inputs: list[str], out_uri: str, settings: Settings, address: str | None = None, use_ray: bool = True) -> dict:
    """Run the pipeline; returns the summary (also written to DIR/summary.json)."""
    from pipeline.stats import funnel

    t0 = time.time()
    cpu0 = time.process_time()
    if settings.models.dir is None:
        settings.models.dir = str(settings.models.resolved_dir())  # workers get an explicit path
    if settings.run.work_dir is None:
        settings.run.work_dir = default_work_dir(out_uri)
    uris, input_files = collect_inputs(inputs, settings.input.extensions)
    store = OutputStore(out_uri, settings.output.compression, settings.output.row_group_rows)
    store.ensure_layout()
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    log.info("run %s: %d inputs -> %s", run_id, len(uris), out_uri)
    if not uris:
        receipts = []
    elif use_ray:
        receipts = run_ray(uris, settings, out_uri, address)
    else:
        receipts = run_local(uris, settings, store)
    from pipeline.postpass import run_post_passes

    t_post = time.time()
    post = run_post_passes(store, settings)
    stage_time: dict[str, float] = {"post_passes": time.time() - t_post}
    for r in receipts:
        for k, v in (r.get("timings_s") or {}).items():
            stage_time[k] = stage_time.get(k, 0.0) + float(v)
    summary = {
        "run_id": run_id,
        "config_hash": settings.config_hash(),
        "code_version": CODE_VERSION,
        "schema_version": __import__("schemas").SCHEMA_VERSION,
        "inputs": len(uris),
        "input_files": input_files,
        "processed": sum(1 for r in receipts if r["status"] != "skipped"),
        "skipped_already_done": sum(1 for r in receipts if r["status"] == "skipped"),
        "rejected_videos": sum(1 for r in receipts if r["status"] == "rejected"),
        "funnel": funnel(store),
        "post_passes": post,
        "timings_s": {"wall": round(time.time() - t0, 3), "driver_cpu": round(time.process_time() - cpu0, 3),
                      "stages_sum": {k: round(v, 3) for k, v in sorted(stage_time.items())}},
        "config": settings.model_dump(mode="json"),
        "executor": "ray" if use_ray else "local",
        "ray_address": address or ("embedded" if use_ray else None),
    }
    store.write_summary(summary)
    return summary
