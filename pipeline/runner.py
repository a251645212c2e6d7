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
from operators.units import HEAD, merge_units, split_shots
from pipeline.progress import Progress
from pipeline.stages import build_operators, phases
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
    """Write one video's rows; returns its receipt (status, counts, timings, seconds of video). A write that
    fails (e.g. a full disk) leaves no part visible to readers and gives status 'write_failed'."""
    if task.status == "skipped":
        task.release_work_files()
        return {"uri": task.uri, "video_id": task.video_id, "status": "skipped", "timings_s": {}}
    t0 = time.monotonic()
    base = {"uri": task.uri, "video_id": task.video_id, "duration_s": float(task.video.get("duration_s") or 0.0),
            "shots": len(task.shots), "shots_kept": len(task.kept_shots()), "timings_s": task.timings_s, "cpu_s": task.cpu_s}
    try:
        counts = store.write_video(task.video_id, config_hash, task_rows(task), task.status,
                                   task.video.get("reason", ""), task.timings_s)
    except Exception as exc:  # noqa: BLE001 - a failed write is reported, the run goes on
        log.error("writing %s failed: %s", task.uri, exc)
        task.release_work_files()
        return {**base, "status": "write_failed", "error": f"{type(exc).__name__}: {exc}"}
    task.timings_s["write"] = time.monotonic() - t0
    task.release_work_files()
    return {**base, "status": task.status, "reason": task.video.get("reason", ""), "counts": counts}


# ----------------------------------------------------------------------------- in-process run
def _run_ops(ops, task: VideoTask, settings: Settings, store: OutputStore | None = None, first: bool = False) -> VideoTask:
    for j, op in enumerate(ops):
        if task.status != "ok":
            break
        task = run_operator(op, task, settings.run.item_timeout_s)
        if first and j == 0 and store is not None and task.ok and settings.run.resume and store.is_done(task.video_id, settings.config_hash()):
            task.status = "skipped"
    return task


def process_uri(uri: str, operators, settings: Settings, store: OutputStore | None = None) -> VideoTask:
    """Run every operator on one input in this process (tests, debugging, `--no-ray`): the head stages on
    the video, the shot-scope stages on each kept shot's unit, the tail stages on the joined video."""
    head_i, shot_i, tail_i = phases(operators)
    task = _run_ops([operators[i] for i in head_i], VideoTask(uri=uri), settings, store, first=True)
    units = split_shots(task)
    shot_ops = [operators[i] for i in shot_i]
    done = [units[0]] + [_run_ops(shot_ops, u, settings) for u in units[1:]]
    task = merge_units(done)
    return _run_ops([operators[i] for i in tail_i], task, settings)


def run_local(uris: list[str], settings: Settings, store: OutputStore, progress: Progress | None = None) -> list[dict]:
    ops = build_operators(settings)
    ch = settings.config_hash()
    receipts = []
    for u in uris:
        r = write_task(store, process_uri(u, ops, settings, store), ch)
        receipts.append(r)
        if progress is not None:
            progress.update(r)
    return receipts


# ----------------------------------------------------------------------------- Ray Data run
# Rows between stages: uri (text), video_id, unit (HEAD for a whole video or the head of a split one, else the
# shot index) and task (the pickled VideoTask of that unit: encoded media and small per-frame arrays only).
def _rows(tasks: list[VideoTask]):
    import pyarrow as pa

    return pa.table({
        "uri": pa.array([text_uri(t.uri) for t in tasks], pa.string()),
        "video_id": pa.array([t.video_id for t in tasks], pa.string()),
        "unit": pa.array([HEAD if t.unit_index is None else int(t.unit_index) for t in tasks], pa.int64()),
        "task": pa.array([pickle.dumps(t, protocol=pickle.HIGHEST_PROTOCOL) for t in tasks], pa.binary()),
    })


def _fault_injection(task: VideoTask) -> None:
    """Test hook (tests/test_faults.py): LPM_FAULT_KILL="<uri substring>:<unit>" kills this worker process
    (SIGKILL, as the OOM killer would) before it works on that unit, at most LPM_FAULT_KILL_TIMES times
    (counted in the file LPM_FAULT_COUNT)."""
    spec = os.environ.get("LPM_FAULT_KILL")
    if not spec:
        return
    where, _, unit = spec.rpartition(":")
    if where not in task.uri or str(task.unit_index) != unit:
        return
    counter = os.environ.get("LPM_FAULT_COUNT", "")
    times = int(os.environ.get("LPM_FAULT_KILL_TIMES", "1"))
    n = int(open(counter).read() or 0) if counter and os.path.exists(counter) else 0
    if n >= times:
        return
    if counter:
        with open(counter, "w") as fh:
            fh.write(str(n + 1))
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


class _StageActor:
    """Ray Data callable class wrapping consecutive operators of one phase (models set up once per actor).
    The head phase splits each video into its units (one output block per unit, so the units of one video
    spread over all workers); the shot phase leaves head units alone."""

    def __init__(self, op_indices: list[int], settings_json: str, out_uri: str, phase: str, first: bool):
        self.settings = settings_from_json(settings_json)
        ops = build_operators(self.settings)
        self.ops = [ops[i] for i in op_indices]
        self.phase = phase
        self.first = first
        self.store = OutputStore(out_uri) if first else None

    def __call__(self, batch):
        for row in batch.to_pylist():
            task = pickle.loads(row["task"]) if row.get("task") else VideoTask(uri=row["uri"])
            if self.phase == "shot" and task.unit_index == HEAD:
                yield _rows([task])
                continue
            _fault_injection(task)
            task = _run_ops(self.ops, task, self.settings, self.store, first=self.first)
            if self.phase == "head":
                for unit in split_shots(task):
                    yield _rows([unit])
            else:
                yield _rows([task])


class _JoinActor:
    """Collects the units of each video and emits the video once all of them arrived (one actor: it sees
    every unit). A unit whose worker was lost never arrives: its video is reported lost by the driver."""

    def __init__(self):
        self.pending: dict[str, dict[int, VideoTask]] = {}

    def __call__(self, batch):
        done = []
        for row in batch.to_pylist():
            task: VideoTask = pickle.loads(row["task"])
            if task.n_units <= 1:
                task.unit_index = None
                done.append(task)
                continue
            got = self.pending.setdefault(task.uri, {})
            got.setdefault(HEAD if task.unit_index is None else int(task.unit_index), task)
            if len(got) == task.n_units:
                done.append(merge_units(list(self.pending.pop(task.uri).values())))
        return _rows(done)


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


def stage_groups(operators, settings: Settings, cluster_cpus: float) -> list[tuple[str, list[int]]]:
    """(phase, operator indices) of each actor pool. Fused (one actor runs all stages of a phase in turn) on
    small machines, where a separate actor pool per stage would spend more on idle actors and worker
    start-up than on work; one pool per stage on clusters, so each stage scales on its own."""
    fuse = settings.run.fuse_stages
    if fuse is None:
        fuse = cluster_cpus < 2 * len(operators)
    out: list[tuple[str, list[int]]] = []
    for phase, idx in zip(("head", "shot", "tail"), phases(operators)):
        if not idx:
            continue
        out.extend([(phase, idx)] if fuse else [(phase, [i]) for i in idx])
    return out


def shot_workers(settings: Settings, cluster_cpus: float) -> int:
    """Actors of each shot-phase pool: run.shot_workers, else one per CPU of the cluster."""
    return int(settings.run.shot_workers or max(1, int(round(cluster_cpus))))


def _stage_cpus(groups, operators, settings: Settings, cluster_cpus: float) -> list[float]:
    """Logical CPUs per actor so that every pool fits the cluster at once (Ray schedules by them; the work
    itself is single-threaded per actor, so the shot pools, which hold most of the work, get most)."""
    if settings.run.stage_cpus:
        return [settings.run.stage_cpus for _ in groups]
    n_shot = shot_workers(settings, cluster_cpus)
    want = [sum(operators[i].resources.num_cpus for i in g) for _, g in groups]
    count = [n_shot if phase == "shot" else settings.run.stage_concurrency for phase, _ in groups]
    budget = 0.95 * cluster_cpus - 0.1  # leave room for the join actor and the writer tasks
    total = sum(w * c for w, c in zip(want, count))
    if total > budget > 0:
        want = [max(0.02, w * budget / total) for w in want]
    return want


def _quiet_ray_logs() -> None:
    """No Ray progress bars, memory-monitor or actor-restart lines in the default output (run.verbose shows
    them): lost work is accounted by the driver and recorded as worker_lost rejects."""
    for name in ("ray", "ray.data", "ray._private.worker", "ray.data._internal.execution.streaming_executor"):
        logging.getLogger(name).setLevel(logging.ERROR)


def run_ray(uris: list[str], settings: Settings, out_uri: str, address: str | None = None,
            progress: Progress | None = None) -> list[dict]:
    import json

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started_here = False
    if not settings.run.verbose:
        _quiet_ray_logs()
        # core-worker notes (e.g. on restartable actors) go to the session logs, not the terminal
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        import warnings

        # actor restart / retry limits are passed as remote args (no named parameter for them yet)
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*is deprecated")
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"log_to_driver": settings.run.verbose, "ignore_reinit_error": True,
                                  "logging_level": logging.INFO if settings.run.verbose else logging.ERROR}
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
        ctx.max_errored_blocks = -1  # a lost unit never stops the run; the driver reports its video
        ctx.target_max_block_size = 1  # every yielded unit is its own block: units spread over the workers
        if not settings.run.verbose:
            _quiet_ray_logs()
            try:  # memory-use advice about our own actors; peak memory is measured in bench/throughput.py
                ctx.issue_detectors_config.detectors = []
            except AttributeError:  # pragma: no cover - older Ray
                pass
        cluster_cpus = float(ray.cluster_resources().get("CPU", 2))
        ops = build_operators(settings)
        groups = stage_groups(ops, settings, cluster_cpus)
        cpus = _stage_cpus(groups, ops, settings, cluster_cpus)
        n_shot = shot_workers(settings, cluster_cpus)
        sjson = settings.to_json()
        retry = {"max_restarts": -1, "max_task_retries": settings.run.max_retries}
        # the real uri travels inside the pickled task; Arrow columns hold UTF-8 text only
        ds = ray.data.from_items([{"uri": text_uri(u), "video_id": "", "unit": HEAD, "task": pickle.dumps(VideoTask(uri=u))}
                                  for u in uris], override_num_blocks=max(1, min(len(uris), 1000)))
        joined = False
        for k, ((phase, group), c) in enumerate(zip(groups, cpus)):
            if phase == "tail" and not joined:
                ds = ds.map_batches(_JoinActor, batch_size=1, batch_format="pyarrow", num_cpus=0.01,
                                    compute=ray.data.ActorPoolStrategy(size=1), max_restarts=-1)
                joined = True
            gpus = max(ops[i].resources.num_gpus for i in group)
            ds = ds.map_batches(
                _StageActor, batch_size=1, batch_format="pyarrow",
                fn_constructor_kwargs={"op_indices": group, "settings_json": sjson, "out_uri": out_uri, "phase": phase,
                                       "first": k == 0},
                compute=ray.data.ActorPoolStrategy(size=n_shot if phase == "shot" else settings.run.stage_concurrency),
                num_cpus=c, num_gpus=gpus or None,
                memory=max(ops[i].resources.memory_mb for i in group) * 1024 * 1024, **retry,
            )
        if not joined:
            ds = ds.map_batches(_JoinActor, batch_size=1, batch_format="pyarrow", num_cpus=0.01,
                                compute=ray.data.ActorPoolStrategy(size=1), max_restarts=-1)
        ds = ds.map_batches(_write_batch, batch_size=1, batch_format="pyarrow", num_cpus=0.05,
                            fn_kwargs={"out_uri": out_uri, "settings_json": sjson})
        receipts = []
        for r in ds.iter_rows():
            receipt = json.loads(r["receipt"])
            receipts.append(receipt)
            if progress is not None:
                progress.update(receipt)
        return receipts
    finally:
        if started_here and not address:
            ray.shutdown()


def record_lost(store: OutputStore, uris: list[str], receipts: list[dict], settings: Settings) -> list[dict]:
    """Rejects rows (reason worker_lost) for inputs that never reached the writer: a worker died on one of
    their units more often than run.max_retries allows (killed, out of memory)."""
    from operators.probe import content_video_id, uri_only_id

    seen = {r["uri"] for r in receipts}
    out = []
    for uri in uris:
        if text_uri(uri) in seen or uri in seen:
            continue
        try:
            vid = content_video_id(uri, uri, settings.input.content_hash_bytes)[0] if os.path.isfile(uri) else uri_only_id(uri)
        except OSError:
            vid = uri_only_id(uri)
        task = VideoTask(uri=uri, video_id=vid)
        task.video = {"video_id": vid, "uri": uri}
        task.reject("pipeline", "worker_lost", f"a worker processing this video died {settings.run.max_retries + 1} times "
                    "(run.max_retries retries): killed or out of memory; rerun to try again")
        try:
            out.append(write_task(store, task, settings.config_hash()))
        except Exception as exc:  # noqa: BLE001 - e.g. the disk is full: say so, do not lose the other results
            log.error("could not record the lost video %s: %s", uri, exc)
            out.append({"uri": text_uri(uri), "video_id": vid, "status": "rejected", "write_error": str(exc)})
    return out


# ----------------------------------------------------------------------------- entry point
def run(inputs: list[str], out_uri: str, settings: Settings, address: str | None = None, use_ray: bool = True,
        progress: Progress | None = None) -> dict:
    """Run the pipeline; returns the summary (also written to DIR/summary.json).

    Raises :class:`pipeline.store.OutputLockedError` when another run is writing ``out_uri``."""
    t0 = time.time()
    cpu0 = time.process_time()
    if settings.models.dir is None:
        settings.models.dir = str(settings.models.resolved_dir())  # workers get an explicit path
    if settings.run.work_dir is None:
        settings.run.work_dir = default_work_dir(out_uri)
    uris, input_files = collect_inputs(inputs, settings.input.extensions)
    store = OutputStore(out_uri, settings.output.compression, settings.output.row_group_rows)
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + uuid.uuid4().hex[:6]
    with store.lock(run_id):  # a second run on the same folder stops here with OutputLockedError
        return _run_locked(store, run_id, uris, input_files, out_uri, settings, address, use_ray, progress, t0, cpu0)


def _run_locked(store: OutputStore, run_id: str, uris: list[str], input_files: dict, out_uri: str, settings: Settings,
                address: str | None, use_ray: bool, progress: Progress | None, t0: float, cpu0: float) -> dict:
    from pipeline.stats import funnel

    store.ensure_layout()
    log.info("run %s: %d inputs -> %s", run_id, len(uris), out_uri)
    if not uris:
        receipts = []
    elif use_ray:
        receipts = run_ray(uris, settings, out_uri, address, progress)
    else:
        receipts = run_local(uris, settings, store, progress)
    lost = record_lost(store, uris, receipts, settings)
    receipts += lost
    if progress is not None:
        for r in lost:
            progress.update(r)
    from pipeline.postpass import run_post_passes

    t_post = time.time()
    post = run_post_passes(store, settings)
    stage_time: dict[str, float] = {"post_passes": time.time() - t_post}
    stage_cpu: dict[str, float] = {}
    for r in receipts:
        for k, v in (r.get("timings_s") or {}).items():
            stage_time[k] = stage_time.get(k, 0.0) + float(v)
        for k, v in (r.get("cpu_s") or {}).items():
            stage_cpu[k] = stage_cpu.get(k, 0.0) + float(v)
    video_s = sum(float(r.get("duration_s") or 0.0) for r in receipts if r["status"] != "skipped")
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
        "lost_videos": len(lost),
        "write_failed": sum(1 for r in receipts if r["status"] == "write_failed"),
        "funnel": funnel(store),
        "post_passes": post,
        "timings_s": {"wall": round(time.time() - t0, 3), "driver_cpu": round(time.process_time() - cpu0, 3),
                      "stages_sum": {k: round(v, 3) for k, v in sorted(stage_time.items())},
                      "stages_cpu": {k: round(v, 3) for k, v in sorted(stage_cpu.items())}},
        "video_s": round(video_s, 3),
        "realtime_factor": round(video_s / max(1e-6, time.time() - t0), 4),
        "config": settings.model_dump(mode="json"),
        "executor": "ray" if use_ray else "local",
        "ray_address": address or ("embedded" if use_ray else None),
    }
    store.write_summary(summary)
    if progress is not None:
        progress.close(summary)
    return summary
