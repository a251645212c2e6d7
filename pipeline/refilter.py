"""`lpm-curate refilter DIR --config NEW.yaml [--output OUT]`: re-decide kept/reason of every shot from the
quality scores stored in DIR/shots with the thresholds of a new config, without decoding or running models.

Writes a new output folder OUT (default ``DIR/refilter-<config_hash>``) holding videos/, shots/ (new
kept/reason), rejects/ (the shot-decision rows replaced by the new decisions; later-stage rows of shots
that are now dropped removed) and clips/ (only clips of shots still kept), plus summary.json with the new
funnel. DIR itself is never modified. Shots that the new config keeps but the original run dropped have
no clips (later stages never saw them): their count and hours are reported as ``needs_rerun``.
"""
from __future__ import annotations

from typing import Any

from schemas.settings import Settings
from pipeline.store import OutputStore

SHOT_DECISION_STAGES = ("shots", "quality", "people")


def refilter(src_dir: str, settings: Settings, out_dir: str | None = None) -> dict[str, Any]:
    from operators.quality import decide_shot, explain, reason_stage
    from pipeline.stats import funnel

    src = OutputStore(src_dir)
    out_dir = out_dir or src.path(f"refilter-{settings.config_hash()}")
    dst = OutputStore(out_dir, settings.output.compression, settings.output.row_group_rows)
    dst.ensure_layout()
    done = src.finished_ids()
    changed = newly_dropped = newly_kept = 0
    rerun_hours = 0.0
    for vid in sorted(done):
        videos = src.read_part("videos", vid).to_pylist()
        shots = src.read_part("shots", vid).to_pylist()
        rejects = src.read_part("rejects", vid).to_pylist()
        clips = src.read_part("clips", vid).to_pylist()
        dropped: set[int] = set()
        new_rejects = []
        for s in shots:
            q = {k: v for k, v in (s.get("quality") or [])} if isinstance(s.get("quality"), list) else dict(s.get("quality") or {})
            n_people = s.get("n_people")
            reason = decide_shot(q, n_people, settings)
            was_kept = bool(s["kept"])
            s["kept"] = reason == ""
            s["reason"] = reason
            if was_kept != s["kept"]:
                changed += 1
                if s["kept"]:
                    newly_kept += 1
                    rerun_hours += (s["duration_s"] or 0.0) / 3600.0
                else:
                    newly_dropped += 1
            if reason:
                dropped.add(s["shot_index"])
                new_rejects.append({"uri": videos[0]["uri"] if videos else "", "video_id": vid, "stage": reason_stage(reason),
                                    "level": "shot", "reason": reason, "message": explain(reason, q, n_people, settings),
                                    "shot_index": s["shot_index"], "start_s": s["start_s"], "end_s": s["end_s"],
                                    "duration_s": s["duration_s"]})
        kept_rejects = []
        for r in rejects:
            if r["level"] == "shot" and r["stage"] in SHOT_DECISION_STAGES:
                continue  # replaced by the new decisions
            if r["level"] != "video" and r.get("shot_index") in dropped:
                continue  # later stages would never have seen this shot
            kept_rejects.append(r)
        clips = [c for c in clips if c["shot_index"] not in dropped]
        for v in videos:
            v["n_shots_kept"] = sum(1 for s in shots if s["kept"])
            v["n_clips"] = len(clips)
        status = videos[0]["status"] if videos else "ok"
        dst.write_video(vid, settings.config_hash(), {"videos": videos, "shots": shots, "clips": clips,
                                                      "rejects": kept_rejects + new_rejects},
                        status, videos[0].get("reason", "") if videos else "")
    summary = {
        "refilter_of": src_dir,
        "config_hash": settings.config_hash(),
        "videos": len(done),
        "shots_changed": changed,
        "shots_newly_dropped": newly_dropped,
        "needs_rerun": {"shots": newly_kept, "hours": round(rerun_hours, 6)},
        "funnel": funnel(dst),
        "config": settings.model_dump(mode="json"),
    }
    dst.write_summary(summary)
    summary["output"] = out_dir
    return summary
