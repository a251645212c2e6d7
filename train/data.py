"""Streaming readers of DIR/clips/part-*.parquet.

* :class:`ClipStream` - a torch IterableDataset over pyarrow for single-process (or DDP) training:
  sharded by (rank, DataLoader worker), row groups read lazily, a seeded shuffle buffer, an infinite
  sequence of epochs, and deterministic resume from a training step without decoding what is skipped.
* :func:`ray_clip_dataset` - the same samples as a Ray Dataset (read_parquet -> flat_map decode), for
  ``iter_torch_batches`` and Ray Train's ``get_dataset_shard``.

Order is a pure function of (seed, epoch, shard): the per-epoch plan of (row, window) entries is built
from Parquet metadata only, shuffled on indices, and decoded lazily. A row that fails to decode is
replaced by the next decodable row of the same shard, so every plan entry yields exactly one sample and
"skip N samples" needs no decoding.
"""
from __future__ import annotations

import glob
import hashlib
import os
from collections import Counter, OrderedDict

import numpy as np

from torch.utils.data import IterableDataset

from train.config import DataConfig
from train.features import CausalMel, RowError, decode_row, make_sample

COLUMNS = ["clip_id", "video_bytes", "video_uri", "clip_fps", "fps", "speak_audio", "listen_audio", "caption",
           "text_embedding", "references", "frame_states"]


def clip_files(data_dir: str) -> list[str]:
    """The clip parts of an output folder (DIR or DIR/clips), sorted; temporaries are ignored."""
    d = data_dir.rstrip("/")
    if os.path.isdir(os.path.join(d, "clips")):
        d = os.path.join(d, "clips")
    files = sorted(f for f in glob.glob(os.path.join(d, "*.parquet")) if not os.path.basename(f).startswith(".tmp-"))
    if not files:
        raise FileNotFoundError(f"no clips/*.parquet under {data_dir}")
    return files


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "little")


class RowIndex:
    """(file, row group, row) of every clip, from Parquet footers only."""

    def __init__(self, files: list[str]):
        import pyarrow.parquet as pq

        self.files = files
        self.groups: list[tuple[int, int, int]] = []  # (file, row_group, num_rows)
        self.columns: list[list[str]] = []
        for fi, f in enumerate(files):
            md = pq.ParquetFile(f).metadata
            names = set(md.schema.names)
            self.columns.append([c for c in COLUMNS if c in names])
            for g in range(md.num_row_groups):
                n = md.row_group(g).num_rows
                if n:
                    self.groups.append((fi, g, n))

    @property
    def num_rows(self) -> int:
        return sum(n for _, _, n in self.groups)


class ClipStream(IterableDataset):
    """Iterable of training samples (dicts of numpy arrays); wrap in torch DataLoader(batch_size=B).

    rank/world_size shard across processes; DataLoader workers shard further. `start_step` with the
    same batch_size, world_size and number of workers resumes exactly where step `start_step` began."""

    def __init__(self, data_dir: str, cfg: DataConfig, batch_size: int = 1, rank: int = 0, world_size: int = 1,
                 start_step: int = 0, epochs: int | None = None, files: list[str] | None = None):
        self.cfg = cfg
        self.files = files or clip_files(data_dir)
        self.index = RowIndex(self.files)
        if not self.index.num_rows:
            raise ValueError(f"{data_dir}: the clip tables hold no rows")
        self.batch_size = batch_size
        self.rank, self.world_size = rank, world_size
        self.start_step = start_step
        self.epochs = epochs
        self.stats: Counter = Counter()

    # ------------------------------------------------------------------ plan
    def _worker(self) -> tuple[int, int]:
        import torch.utils.data as tud

        info = tud.get_worker_info()
        return (info.id, info.num_workers) if info else (0, 1)

    def epoch_plan(self, epoch: int, shard: int, nshards: int) -> list[tuple[int, int]]:
        """Rows (global group index, row) of this shard for this epoch, in reading order."""
        rng = np.random.default_rng(_seed(self.cfg.seed, "epoch", epoch))
        groups = list(range(len(self.index.groups)))
        rng.shuffle(groups)
        rows: list[tuple[int, int]] = []
        if len(groups) >= nshards:  # whole row groups per shard: each shard reads only its own groups
            for gi in groups[shard::nshards]:
                perm = rng.permutation(self.index.groups[gi][2])
                rows += [(gi, int(r)) for r in perm]
        else:  # fewer row groups than shards: shard rows instead
            allrows = [(gi, r) for gi in groups for r in range(self.index.groups[gi][2])]
            order = rng.permutation(len(allrows))
            rows = [allrows[i] for i in order][shard::nshards]
        return rows

    def _shuffled(self, epoch: int, shard: int, nshards: int):
        """(row, window k, epoch) entries after the shuffle buffer."""
        rng = np.random.default_rng(_seed(self.cfg.seed, "buffer", epoch, shard, nshards))
        buf: list[tuple[int, int, int, int]] = []
        for gi, r in self.epoch_plan(epoch, shard, nshards):
            for k in range(self.cfg.windows_per_clip):
                buf.append((gi, r, k, epoch))
                if len(buf) >= self.cfg.shuffle_buffer:
                    j = int(rng.integers(len(buf)))
                    buf[j], buf[-1] = buf[-1], buf[j]
                    yield buf.pop()
        while buf:
            j = int(rng.integers(len(buf)))
            buf[j], buf[-1] = buf[-1], buf[j]
            yield buf.pop()

    def _skip_count(self, worker: int, num_workers: int) -> int:
        # DataLoader takes batch i from worker i % num_workers
        s = self.start_step
        batches = max(0, (s - worker + num_workers - 1) // num_workers) if s > worker else 0
        return batches * self.batch_size

    # ------------------------------------------------------------------ reading
    def _read_row(self, gi: int, r: int, cache: OrderedDict) -> dict:
        import pyarrow.parquet as pq

        fi, g, _ = self.index.groups[gi]
        tab = cache.get(gi)
        if tab is None:
            tab = pq.ParquetFile(self.files[fi]).read_row_group(g, columns=self.index.columns[fi])
            cache[gi] = tab
            while len(cache) > 2:
                cache.popitem(last=False)
        else:
            cache.move_to_end(gi)
        return tab.slice(r, 1).to_pylist()[0]

    def __iter__(self):
        worker, nworkers = self._worker()
        # DataLoader always asks worker 0 first; on resume at step s the next batch belongs to logical
        # worker s % nworkers, so physical worker w plays logical worker (w + s) % nworkers
        worker = (worker + self.start_step) % nworkers
        shard, nshards = self.rank * nworkers + worker, self.world_size * nworkers
        skip = self._skip_count(worker, nworkers)
        mel = CausalMel(self.cfg)
        groups_cache: OrderedDict = OrderedDict()
        decoded: dict[tuple[int, int, int], list] = {}  # (gi, r, epoch) -> [clip or RowError, windows left]
        epoch = 0
        while self.epochs is None or epoch < self.epochs:
            entries = list(self._shuffled(epoch, shard, nshards))
            if not entries:
                return
            plan_rows = [(gi, r) for gi, r, _, _ in entries]
            for pos, (gi, r, k, ep) in enumerate(entries):
                if skip > 0:
                    skip -= 1
                    continue
                sample = self._sample(gi, r, k, ep, decoded, groups_cache, mel, plan_rows, pos)
                if sample is not None:
                    yield sample
            decoded.clear()
            epoch += 1

    def _decoded(self, gi, r, ep, decoded, cache):
        key = (gi, r, ep)
        ent = decoded.get(key)
        if ent is None:
            try:
                ent = [decode_row(self._read_row(gi, r, cache), self.cfg), self.cfg.windows_per_clip]
            except RowError as exc:
                self.stats[f"skipped_{exc.reason}"] += 1
                ent = [exc, self.cfg.windows_per_clip]
            decoded[key] = ent
        return ent

    def _release(self, key, decoded):
        ent = decoded.get(key)
        if ent is not None:
            ent[1] -= 1
            if ent[1] <= 0:
                del decoded[key]

    def _sample(self, gi, r, k, ep, decoded, cache, mel, plan_rows, pos):
        ent = self._decoded(gi, r, ep, decoded, cache)
        clip = ent[0]
        self._release((gi, r, ep), decoded)
        if isinstance(clip, RowError):
            # deterministic substitute: the next row in this shard's plan that decodes
            for j in range(1, len(plan_rows)):
                g2, r2 = plan_rows[(pos + j) % len(plan_rows)]
                sub = self._decoded(g2, r2, ep, decoded, cache)[0]  # cached: its own windows reuse it
                if not isinstance(sub, RowError):
                    clip, gi, r = sub, g2, r2
                    break
            else:
                return None
        rng = np.random.default_rng(_seed(self.cfg.seed, "window", gi, r, k, ep))
        s = make_sample(clip, self.cfg, rng, mel)
        s["row"] = np.int64(self._global_row(gi, r))
        self.stats["samples"] += 1
        return s

    def _global_row(self, gi: int, r: int) -> int:
        return sum(n for _, _, n in self.index.groups[:gi]) + r


def make_loader(data_dir: str, cfg: DataConfig, batch_size: int, num_workers: int = 0, start_step: int = 0,
                rank: int = 0, world_size: int = 1):
    import torch

    ds = ClipStream(data_dir, cfg, batch_size=batch_size, rank=rank, world_size=world_size, start_step=start_step)
    kw = {"persistent_workers": False, "prefetch_factor": 4} if num_workers else {}
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=num_workers, drop_last=False, **kw)


# --------------------------------------------------------------------------------------------- Ray
_RAY_CALLS = Counter()


def ray_decode_row(row: dict, cfg_dict: dict) -> list[dict]:
    """Ray Data flat_map function: one clip row -> windows_per_clip samples (a bad row -> no samples)."""
    cfg = DataConfig.model_validate(cfg_dict)
    try:
        clip = decode_row(row, cfg)
    except RowError:
        return []
    mel = CausalMel(cfg)
    key = row.get("clip_id")
    _RAY_CALLS[key] += 1  # a new window draw every time this process sees the row again (next epoch)
    out = []
    for k in range(cfg.windows_per_clip):
        rng = np.random.default_rng(_seed(cfg.seed, "ray-window", key, k, _RAY_CALLS[key]))
        s = make_sample(clip, cfg, rng, mel)
        s.pop("start", None)
        out.append(s)
    return out


def ray_clip_dataset(data_dir: str, cfg: DataConfig, num_cpus: float = 0.25):
    """A Ray Dataset of training samples; use .iter_torch_batches(batch_size=B, local_shuffle_buffer_size=N).

    Read and decode fuse into one task type with fractional CPUs, so training workers holding CPUs
    never starve the reads (on a 2-core Ray: 2 workers x 0.5 CPU + reads at 0.25)."""
    import pyarrow.parquet as pq
    import ray

    files = clip_files(data_dir)
    names = set(pq.ParquetFile(files[0]).schema_arrow.names)
    cols = [c for c in COLUMNS if c in names]
    ds = ray.data.read_parquet(files, num_cpus=num_cpus).select_columns(cols)
    return ds.flat_map(ray_decode_row, fn_kwargs={"cfg_dict": cfg.model_dump()}, num_cpus=num_cpus)
