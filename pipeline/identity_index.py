"""Post-run pass: one global identity index across every video of the output folder.

Within a video the people stage already clustered tracks into ``identity_id`` (docs/PEOPLE.md). This pass
links those per-video identities across videos so that later identity-level train/val splits never put
the same person on both sides:

1. Each per-video identity's embedding is the L2-normalised mean of its clips' ``identity_embedding``.
2. Identities are visited in ``identity_id`` order (deterministic) and each joins the existing global
   identity whose centroid is most similar, if that cosine is >= ``people.identity_threshold`` and the
   global identity has no member from the same video (the people stage already decided those apart);
   otherwise it starts a new global identity. Centroids are running means. Cost is
   O(identities x global identities) matrix products, not all pairs of clips.
3. ``global_identity_id`` = ``g-`` + 16 hex of the sha256 of the smallest member identity_id, so rerunning
   the pass over the same folder gives the same ids (idempotent). Affected clips/ parts are rewritten
   atomically; ``_index/identities.parquet`` lists every global identity with its members, videos,
   clip count and centroid.
"""
from __future__ import annotations

import hashlib
import logging
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.postpass import register_pass

log = logging.getLogger("lpm.identity_index")


def link_identities(items: list[tuple[str, str, np.ndarray]], threshold: float) -> dict[str, str]:
    """items: (identity_id, video_id, embedding). Returns identity_id -> global_identity_id."""
    items = sorted(items, key=lambda x: x[0])
    groups: list[dict] = []  # {"sum": vec, "n": int, "videos": set, "members": list}
    cents = np.zeros((0, 0), np.float32)
    for ident, vid, emb in items:
        e = emb / max(float(np.linalg.norm(emb)), 1e-8)
        best = -1
        if groups:
            sims = cents @ e
            for g in np.argsort(-sims):
                if sims[g] < threshold:
                    break
                if vid not in groups[g]["videos"]:
                    best = int(g)
                    break
        if best < 0:
            groups.append({"sum": e.copy(), "n": 1, "videos": {vid}, "members": [ident]})
            cents = np.vstack([cents, e[None]]) if cents.size else e[None].copy()
        else:
            g = groups[best]
            g["sum"] += e
            g["n"] += 1
            g["videos"].add(vid)
            g["members"].append(ident)
            c = g["sum"] / max(float(np.linalg.norm(g["sum"])), 1e-8)
            cents[best] = c
    out = {}
    for g in groups:
        gid = "g-" + hashlib.sha256(min(g["members"]).encode()).hexdigest()[:16]
        for m in g["members"]:
            out[m] = gid
    return out


@register_pass("identity_index")
def assign_global_identities(store, settings) -> dict:
    cols = ["video_id", "clip_id", "identity_id", "identity_embedding", "global_identity_id"]
    t = store.read_table("clips", columns=cols)
    if t.num_rows == 0:
        return {"identities": 0, "global_identities": 0, "videos_rewritten": 0}
    rows = t.to_pylist()
    acc: dict[str, list] = {}
    vid_of: dict[str, str] = {}
    clips_of: dict[str, int] = defaultdict(int)
    for r in rows:
        ident, emb = r.get("identity_id"), r.get("identity_embedding")
        if not ident:
            continue
        clips_of[ident] += 1
        vid_of[ident] = r["video_id"]
        if emb:
            acc.setdefault(ident, []).append(np.asarray(emb, np.float32))
    items = [(i, vid_of[i], np.mean(v, axis=0)) for i, v in acc.items()]
    mapping = link_identities(items, settings.people.identity_threshold)
    # identities without any embedding stay on their own
    for ident in vid_of:
        mapping.setdefault(ident, "g-" + hashlib.sha256(ident.encode()).hexdigest()[:16])
    changed = sorted({r["video_id"] for r in rows if r.get("identity_id") and r.get("global_identity_id") != mapping[r["identity_id"]]})
    for vid in changed:
        part = store.read_part("clips", vid)
        ids = part.column("identity_id").to_pylist()
        new = pa.array([mapping.get(i) if i else None for i in ids], pa.string())
        idx = part.schema.get_field_index("global_identity_id")
        store.rewrite_part("clips", vid, part.set_column(idx, part.schema.field(idx), new))
    # the index itself
    members: dict[str, list[str]] = defaultdict(list)
    for ident, gid in mapping.items():
        members[gid].append(ident)
    gids = sorted(members)
    emb_of = {i: e for i, _, e in items}
    index = pa.table({
        "global_identity_id": gids,
        "identity_ids": [sorted(members[g]) for g in gids],
        "video_ids": [sorted({vid_of[i] for i in members[g]}) for g in gids],
        "n_clips": [sum(clips_of[i] for i in members[g]) for g in gids],
        "embedding": [_centroid([emb_of[i] for i in members[g] if i in emb_of]) for g in gids],
    })
    store.fs.create_dir(store.path("_index"), recursive=True)
    with store.fs.open_output_stream(store.path("_index", "identities.parquet")) as fh:
        pq.write_table(index, fh)
    report = {"identities": len(mapping), "global_identities": len(gids), "videos_rewritten": len(changed),
              "cross_video_identities": sum(1 for g in gids if len({vid_of[i] for i in members[g]}) > 1)}
    log.info("identity index: %s", report)
    return report


def _centroid(embs: list[np.ndarray]) -> list[float] | None:
    if not embs:
        return None
    m = np.mean(embs, axis=0)
    return (m / max(float(np.linalg.norm(m)), 1e-8)).astype(np.float32).tolist()
