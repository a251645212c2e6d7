"""Sync evidence on held-out people: how well does a per-frame signal separate "this face speaks the heard
audio" from "the face talks but the audio is someone else's / shifted"?

    python -m bench.asd_sync [--head models/weights/lr_asd_sync_head.pt]

For each held-out person P (never used for training or tuning) and each other held-out person Q:
own = P's frames with P's own voice (frames where P speaks); other = P's frames with Q's voice (frames
where Q speaks); shifted = P's frames with P's voice delayed by 0.5 s (frames where the delayed voice
speaks). Prints the ROC AUC of own vs other+shifted and the mean signal per case, for the published
checkpoint's evidence (audio-visual minus visual-only logit) and for the sync head, plus CPU time.

    python -m bench.asd_sync --composites [--head FILE] [--head-only] [--sync-phases N]
    python -m bench.asd_sync --offset-calibration DIR   # DIR: leave-one-out heads of lr_asd_sync_train --calibrate

--composites decides the issue 9 / issue 5 composites (held-out people); --offset-calibration measures the
offset scan's gains on both-talk composites of the TRAINING people (how conversation.offset_min_gain of the
head was chosen; stored in models/weights/lr_asd_sync_calibration.json).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from train.sync_head import evaluate

HELD_OUT = ("talking_face_4", "talking_face_5", "talking_hdtf_hill")


def composites(tmp: Path, head: Path | None = None, signals=("head", "av_minus_visual"),
               sync_phases: int | None = None, sync_min: float | None = None) -> list[dict]:
    """Issue 9 composites (held-out pairs, both talk, and delayed 0.5 s) and the issue 5 cases, decided with
    the sync head (after), the published checkpoint's evidence (before: av_minus_visual) and without sync."""
    import sys

    from models.registry import default_model_dir
    from operators.asd import ConversationOperator
    from operators.base import Deadline
    from schemas.settings import REPO_ROOT, Settings

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    import test_asd_media as tm  # the test-time composite builders (ground truth by construction)

    media, model_dir = REPO_ROOT.parent / "shared" / "media", default_model_dir()
    ops = {}
    for signal in signals:
        s = Settings()
        s.models.dir = str(model_dir)
        s.conversation.sync_signal = signal
        if sync_phases:
            s.conversation.sync_phases = sync_phases
        if signal == "head" and sync_min is not None:  # a candidate head's own calibrated threshold
            s.conversation.sync_min = sync_min
        ops[signal] = ConversationOperator(s)
        ops[signal].setup()
        if head is not None:  # a candidate head file instead of the registry's (the offset scan uses it too)
            from models.lr_asd_sync import load_head

            ops[signal].offset_head = load_head(ops[signal].scorer.net, head)
            if signal == "head":
                ops[signal].sync_head = ops[signal].offset_head
    face = lambda n: tm.load_face(media, model_dir, n)  # noqa: E731
    cases = [(f"both talk {a}|{b}", lambda a=a, b=b: tm.both_talk(tmp, model_dir, face(a), face(b)))
             for i, a in enumerate(HELD_OUT) for b in HELD_OUT[i + 1:]]
    cases += [("both talk face_4|hill, audio +0.5 s", lambda: tm.both_talk(tmp, model_dir, face("talking_face_4"), face("talking_hdtf_hill"), shift_s=0.5)),
              ("issue 5 turns face_3|face_4", lambda: tm.turns(tmp, model_dir, face("talking_face_3"), face("talking_face_4"))),
              ("issue 5 intercut hill -> face_5", lambda: tm.intercut(tmp, model_dir, face("talking_hdtf_hill"), face("talking_face_5")))]
    rows = []
    for name, build in cases:
        comp = build()
        for signal, op in ops.items():
            t0 = time.process_time()
            task = op.process(tm.make_task(comp), Deadline(None))
            cpu = time.process_time() - t0
            res = tm.scores(comp, task)
            res.update(case=name, decision=signal, cpu_s=round(cpu, 1), av_offset_rejects=sum(r["reason"] == "av_offset" for r in task.rejects))
            rows.append(res)
            if signal == "head":  # without sync: the same analyses re-decided with the plain rule
                op.settings.conversation.sync = False
                try:
                    t2 = tm.make_task(comp)
                    by_id = {c["clip_id"]: c for c in t2.clips}
                    for results in op.last_analyses.values():
                        op._decide_shot(t2, [(by_id[c["clip_id"]], r, sp) for c, r, sp in results], {"clips": 0, "dropped": 0, "offset_rejected": 0})
                    plain = tm.scores(comp, t2)
                    plain.update(case=name, decision="no sync", cpu_s=None, av_offset_rejects=sum(r["reason"] == "av_offset" for r in t2.rejects))
                    rows.append(plain)
                finally:
                    op.settings.conversation.sync = True
    return rows


def offset_calibration(tmp: Path, lopo_dir: Path, shifts=(0.0, 0.3, 0.5)) -> dict:
    """Offset-reject threshold of the sync head on TRAINING people only: both-talk composites of each pair
    of the single-talker training people, in sync and with the audio delayed, decided with each of the
    two leave-one-person-out heads (lopo_<person>.pt from `python -m train.sync_head --calibrate
    DIR`) that did not see one of the two. Returns the pooled peak lag and gain per case and the largest
    in-sync / smallest delayed gain (conversation.offset_min_gain goes between them)."""
    import sys

    from models.lr_asd_sync import load_head
    from train.sync_head import TRAIN_PEOPLE, single_talkers
    from models.registry import default_model_dir
    from operators.asd import ConversationOperator
    from operators.base import Deadline
    from schemas.settings import REPO_ROOT, Settings

    sys.path.insert(0, str(REPO_ROOT / "tests"))
    import test_asd_media as tm

    media, model_dir = REPO_ROOT.parent / "shared" / "media", default_model_dir()
    s = Settings()
    s.models.dir = str(model_dir)
    s.conversation.sync_signal = "head"
    s.conversation.max_av_offset_s = 1e9  # measure only: never reject here
    op = ConversationOperator(s)
    op.setup()
    singles = single_talkers(TRAIN_PEOPLE)
    faces = {p: tm.load_face(media, model_dir, p) for p in singles}  # decoded and landmarked once
    rows = {}
    for i, a in enumerate(singles):
        for b in singles[i + 1:]:
            for sh in shifts:
                comp = tm.both_talk(tmp, model_dir, faces[a], faces[b], shift_s=sh)
                for unseen in (a, b):
                    op.sync_head = op.offset_head = load_head(op.scorer.net, lopo_dir / f"lopo_{unseen}.pt")
                    op.process(tm.make_task(comp), Deadline(None))
                    off, gain = op.shot_offset(next(iter(op.last_analyses.values())))
                    rows[f"{a}|{b} delay {sh:.1f}s, head without {unseen}"] = {"peak_s": round(off, 2), "gain": round(gain, 2)}
                    print(f"{a}|{b} delay {sh:.1f}s head without {unseen}: peak {off:+.2f} s gain {gain:.2f}", flush=True)
    in_sync = max(r["gain"] for n, r in rows.items() if " delay 0.0s" in n)
    delayed = min(r["gain"] for n, r in rows.items() if " delay 0.0s" not in n)
    return {"rows": rows, "max_gain_in_sync": in_sync, "min_gain_delayed": delayed}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--head", default=None, help="sync head file (default: the registry's lr-asd-sync)")
    ap.add_argument("--people", nargs="*", default=list(HELD_OUT))
    ap.add_argument("--smooth", type=int, default=1, help="moving average (frames) before scoring, as the decision smooths")
    ap.add_argument("--composites", action="store_true", help="also run the issue 9 / issue 5 composites before/after")
    ap.add_argument("--sync-phases", type=int, default=None, help="with --composites: conversation.sync_phases")
    ap.add_argument("--sync-min", type=float, default=None, help="with --composites and --head: the candidate head's sync_min (its calibration.json)")
    ap.add_argument("--offset-calibration", default=None, metavar="LOPO_DIR",
                    help="only: offset gains of both-talk composites of the training people with the leave-one-out heads in LOPO_DIR")
    ap.add_argument("--no-auc", action="store_true", help="skip the per-frame AUC part")
    ap.add_argument("--head-only", action="store_true", help="with --composites: only the sync head's decisions (and without sync)")
    a = ap.parse_args(argv)
    if a.offset_calibration:
        import json
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(offset_calibration(Path(tmp), Path(a.offset_calibration)), indent=2))
        return 0
    head = Path(a.head) if a.head else None
    if head is None:
        from models.registry import resolve

        head = resolve("lr-asd-sync").path
    res = {} if a.no_auc else evaluate(tuple(a.people), head, smooth=a.smooth)
    for sig, r in res.items():
        print(sig, " ".join(f"{k}={v:.3f}" for k, v in r.items() if k != "values"))
    if a.composites:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            rows = composites(Path(tmp), None if a.head is None else head, ("head",) if a.head_only else ("head", "av_minus_visual"),
                              a.sync_phases, a.sync_min)
        print(f"{'case':40s} {'decision':16s} speak_acc off_sync_kept_off listen_recall idle_share offset_rejects cpu_s")
        fmt = lambda v: "-" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
        for r in rows:
            print(f"{r['case']:40s} {r['decision']:16s} {fmt(r['speak_acc']):9s} {fmt(r['off_sync_kept_off']):17s} "
                  f"{fmt(r['listen_recall']):13s} {fmt(r['idle_share']):10s} {r['av_offset_rejects']:14d} {fmt(r['cpu_s'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
