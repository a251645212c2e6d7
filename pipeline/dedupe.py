"""Post-run pass: near-duplicate clips across the whole run (the same source content ingested twice,
re-encoded, renamed, or repeated inside one video) are rejected with reason ``duplicate``.

1. Candidates: every clip's keyframe pHashes (64-bit, column ``phash``) are split into four 16-bit
   bands; two clips sharing any band value of any keyframe are a candidate pair (LSH, no all-pairs scan).
2. Verification of a pair, over every alignment offset of their keyframe sequences that covers at
   least ``captions.dedupe_min_overlap`` of the shorter clip:
   * median pHash Hamming distance <= ``dedupe_max_hamming``, and
   * median mean-absolute difference of the 16x16 thumbnails (``keyframe_thumbs``) <= ``dedupe_max_mad``,
   * and the *changes* between consecutive keyframes correlate >= ``dedupe_min_motion_corr`` (two
     copies of one moment move the same way; two moments of one static talking head do not), or,
     when neither clip moves (change std < STATIC_MOTION_STD gray levels), MAD <= ``dedupe_static_max_mad``.
   Measured (docs/CAPTIONS.md): a CRF-30 re-encode of the same moment gives pHash median 0-2, MAD
   0-1.1, change correlation 0.95-1.0; two different moments of the most static shared talking head
   (talking_face_1) give pHash 0, MAD 1.35-1.8, change correlation -0.13.
3. Duplicates form groups (union-find); the smallest ``(video_id, clip_id)`` of a group is kept, every
   other clip leaves clips/ and gets a rejects/ row (stage ``dedupe``, level ``clip``, reason
   ``duplicate``, message naming the kept clip). Affected videos' clips/, rejects/ and videos/ parts are
   rewritten atomically through OutputStore. Re-running the pass is idempotent.
"""
from __future__ import annotations

import logging
from collections import defaultdict

import numpy as np
import pyarrow as pa

from pipeline.postpass import register_pass
from schemas import TABLES

log = logging.getLogger("lpm.dedupe")

STAGE = "dedupe"
REASON = "duplicate"
STATIC_MOTION_STD = 1.0  # gray levels (16x16 thumbnails): below, a clip counts as static
THUMB = 16 * 16


def _bits(phash: list[str]) -> np.ndarray:
    return np.array([int(h, 16) for h in phash], dtype=np.uint64)


def _thumbs(blob: bytes | None, n: int) -> np.ndarray | None:
    if not blob or len(blob) < n * THUMB:
        return None
    return np.frombuffer(blob[: n * THUMB], dtype=np.uint8).reshape(n, THUMB).astype(np.float32)


def _popcount64(x: np.ndarray) -> np.ndarray:
    return np.array([int(v).bit_count() for v in x.ravel()], dtype=np.int32).reshape(x.shape)


def compare(a_hash: list[str], a_thumb: bytes | None, b_hash: list[str], b_thumb: bytes | None, settings) -> tuple[bool, dict]:
    """Are two clips (keyframe hashes + thumbnails) copies of the same content? Returns (dup, evidence)."""
    cfg = settings.captions
    ha, hb = _bits(a_hash), _bits(b_hash)
    ta, tb = _thumbs(a_thumb, len(ha)), _thumbs(b_thumb, len(hb))
    m, n = len(ha), len(hb)
    if not m or not n:
        return False, {}
    need = max(1, int(np.ceil(cfg.dedupe_min_overlap * min(m, n))))
    best: dict = {}
    for off in range(-(m - need), n - need + 1):  # a[i] aligned with b[i + off]
        i0, i1 = max(0, -off), min(m, n - off)
        if i1 - i0 < need:
            continue
        ham = float(np.median(_popcount64(ha[i0:i1] ^ hb[i0 + off:i1 + off])))
        if ham > cfg.dedupe_max_hamming:
            continue
        ev = {"offset": off, "keyframes": i1 - i0, "hamming": ham}
        if ta is None or tb is None:  # no thumbnails (older rows): pHash alone decides, strictly
            if ham <= min(2.0, cfg.dedupe_max_hamming):
                return True, ev
            continue
        xa, xb = ta[i0:i1], tb[i0 + off:i1 + off]
        mad = float(np.median(np.abs(xa - xb).mean(axis=1)))
        ev["mad"] = mad
        if mad > cfg.dedupe_max_mad:
            continue
        da, db = np.diff(xa, axis=0), np.diff(xb, axis=0)
        motion = float(min(np.median(da.std(axis=1)), np.median(db.std(axis=1)))) if len(da) else 0.0
        ev["motion_std"] = motion
        if motion < STATIC_MOTION_STD:
            if mad <= cfg.dedupe_static_max_mad:
                return True, ev
            continue
        cors = [np.corrcoef(p, q)[0, 1] for p, q in zip(da, db) if p.std() > 0 and q.std() > 0]
        corr = float(np.median(cors)) if cors else 0.0
        ev["motion_corr"] = corr
        if corr >= cfg.dedupe_min_motion_corr:
            return True, ev
        if not best or mad < best.get("mad", 1e9):
            best = ev
    return False, best


def find_duplicates(rows: list[dict], settings) -> list[tuple[dict, dict, dict]]:
    """rows: dicts with video_id, clip_id, phash, keyframe_thumbs. Returns (dropped, kept, evidence)."""
    rows = [r for r in rows if r.get("phash")]
    bands: dict[tuple[int, int], set[int]] = defaultdict(set)
    for idx, r in enumerate(rows):
        for h in r["phash"]:
            v = int(h, 16)
            for b in range(4):
                bands[(b, (v >> (16 * b)) & 0xFFFF)].add(idx)
    pairs: set[tuple[int, int]] = set()
    for members in bands.values():
        if len(members) < 2 or len(members) > 2000:  # a band value shared by thousands is uninformative
            continue
        ms = sorted(members)
        for i, a in enumerate(ms):
            for b in ms[i + 1:]:
                pairs.add((a, b))
    parent = list(range(len(rows)))

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    evidence: dict[tuple[int, int], dict] = {}
    for a, b in sorted(pairs):
        ra, rb = rows[a], rows[b]
        if ra["video_id"] == rb["video_id"] and ra["clip_id"] == rb["clip_id"]:
            continue
        dup, ev = compare(ra["phash"], ra.get("keyframe_thumbs"), rb["phash"], rb.get("keyframe_thumbs"), settings)
        if dup:
            evidence[(a, b)] = ev
            pa_, pb_ = find(a), find(b)
            if pa_ != pb_:
                parent[max(pa_, pb_)] = min(pa_, pb_)
    groups: dict[int, list[int]] = defaultdict(list)
    for i in range(len(rows)):
        groups[find(i)].append(i)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        keep = min(members, key=lambda i: (rows[i]["video_id"], rows[i]["clip_id"]))
        for i in members:
            if i != keep:
                ev = evidence.get((min(i, keep), max(i, keep))) or next(
                    (v for (x, y), v in evidence.items() if i in (x, y)), {})
                out.append((rows[i], rows[keep], ev))
    return out


@register_pass("dedupe")
def dedupe_pass(store, settings) -> dict:
    if not settings.captions.dedupe:
        return {"enabled": False}
    table = store.read_table("clips", columns=["video_id", "clip_id", "phash", "keyframe_thumbs"])
    rows = table.to_pylist()
    dups = find_duplicates(rows, settings)
    by_video: dict[str, list[tuple[dict, dict, dict]]] = defaultdict(list)
    for dropped, kept, ev in dups:
        by_video[dropped["video_id"]].append((dropped, kept, ev))
    for vid, items in by_video.items():
        drop_ids = {d["clip_id"] for d, _, _ in items}
        clips = store.read_part("clips", vid)
        gone = [r for r in clips.to_pylist() if r["clip_id"] in drop_ids]
        mask = pa.array([cid not in drop_ids for cid in clips.column("clip_id").to_pylist()])
        store.rewrite_part("clips", vid, clips.filter(mask))
        videos = store.read_part("videos", vid)
        vrows = videos.to_pylist()
        uri = vrows[0]["uri"] if vrows else ""
        rejects = store.read_part("rejects", vid).to_pylist()
        have = {(r.get("clip_id"), r["reason"]) for r in rejects}
        kept_of = {d["clip_id"]: (k, ev) for d, k, ev in items}
        for r in gone:
            if (r["clip_id"], REASON) in have:
                continue
            k, ev = kept_of[r["clip_id"]]
            msg = (f"near-duplicate of clip {k['clip_id']} in video {k['video_id']} "
                   f"(keyframes {ev.get('keyframes')}, pHash median {ev.get('hamming')}, thumbnail MAD {ev.get('mad')}, "
                   f"motion corr {ev.get('motion_corr')})")
            rejects.append({"uri": uri, "video_id": vid, "stage": STAGE, "level": "clip", "reason": REASON,
                            "message": msg, "shot_index": r.get("shot_index"), "track_id": r.get("track_id"),
                            "clip_id": r["clip_id"], "start_s": r.get("start_s"), "end_s": r.get("end_s"),
                            "duration_s": r.get("duration_s")})
        from schemas import to_table

        store.rewrite_part("rejects", vid, to_table("rejects", rejects))
        if vrows:
            for v in vrows:
                v["n_clips"] = max(0, int(v.get("n_clips") or 0) - len(gone))
            store.rewrite_part("videos", vid, pa.Table.from_pylist(vrows, schema=TABLES["videos"].schema))
    report = {"clips_checked": len(rows), "duplicates": sum(len(v) for v in by_video.values()),
              "videos_rewritten": len(by_video)}
    log.info("dedupe: %s", report)
    return report
