"""Training recipe of the LR-ASD sync head (models/lr_asd_sync.py), on CPU, from footage by construction.

    python -m train.sync_head --media ../shared/media --out models/weights/lr_asd_sync_head.pt

Data: clips of the TRAINING people only (``TRAIN_PEOPLE``; the conversation tests measure on other
people): three talking-to-camera clips (talking_face_1, talking_face_2, talking_hdtf_aoc) and the two
people of the split-screen interview. Per person: frames at 25 fps, face boxes from the MediaPipe
landmarker (with the forehead added, as a face detector draws them) and the frames where its own voice
is heard: Silero VAD for a single talker; for the interview, pseudo-labels from the published
checkpoint's cross-person rule (:func:`load_split_screen`).

Samples are 2 s windows (50 frames) of one person's face crops (augmented: box scale/shift/jitter, crop
scale, contrast/brightness, mirror) with one of these audio tracks, and per-frame targets:

* ``own``: its own voice, in sync -> target = the person's speech mask (1 where it speaks);
* ``shifted``: its own voice moved by 0.3-1.6 s either way -> 0 (same voice, same face, wrong timing:
  the head cannot win by matching a voice to a face);
* ``other``: another training person's voice -> 0;
* ``still``: its quiet frame repeated while its own voice plays -> 0 (a listener).

``--own-jitter N`` takes the ``own`` audio up to N frames early or late (tolerance of small native
offsets; default 0). ``--people`` may add a second clip of a training person; list it in
``SAME_PERSON`` so that ``--calibrate`` leaves both clips out together (docs/CONVERSATION.md, "Sync",
measured both options: neither is in the shipped recipe).

Audio is augmented with gain, white noise and music (``audio/music_only.wav``) at random SNR. The
official encoders stay frozen; the back end starts from the official pretrain_AVA weights and is trained
with binary cross-entropy (Adam). Everything is seeded: the same inputs give the same file.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

TRAIN_PEOPLE = ("talking_face_1", "talking_face_2", "talking_hdtf_aoc", "interview_two_people:split")
# clips that show the same person as another clip: a leave-one-person-out run leaves them out together
SAME_PERSON = {"talking_face_3": "talking_hdtf_aoc"}


def single_talkers(people) -> tuple[str, ...]:
    """The people a leave-one-person-out run leaves out and measures: not the split-screen clips (they only
    train: pseudo-labels) and not a second clip of a person (SAME_PERSON: left out with that person)."""
    return tuple(p for p in people if not p.endswith(":split") and p not in SAME_PERSON)

FPS = 25
SR = 16000
SPF = SR // FPS
SIDE = 256
WIN = 50


@dataclass
class Person:
    name: str
    frames: np.ndarray  # [T, SIDE, SIDE, 3]
    audio: np.ndarray   # [T * SPF]
    speech: np.ndarray  # [T] bool
    boxes: np.ndarray   # [T, 4] face boxes (landmarks + forehead), interpolated
    quiet: int


def load_person(path: str | Path, model_dir=None, landmarker=None, vad=None) -> Person:
    from models.landmarks import FaceLandmarker, mouth_openness_frame
    from models.vad import SileroVAD
    from operators import states as st
    from operators.asd import vad_to_frames
    from operators.clipmedia import read_clip_audio, read_clip_frames

    src = {"video_uri": str(path)}
    frames = read_clip_frames(src, size=(SIDE, SIDE), fps=FPS)
    audio = read_clip_audio(src, SR)
    t = min(len(frames), len(audio) // SPF)
    frames, audio = frames[:t], audio[: t * SPF]
    vad = vad or SileroVAD.load(model_dir=model_dir)
    speech = st.speech_presence(vad_to_frames(vad.speech_probabilities(audio), t, FPS), st.StateParams())
    lm = landmarker or FaceLandmarker.from_dir(model_dir, num_faces=1)
    boxes = np.full((t, 4), np.nan)
    mo = np.full(t, np.nan)
    for i in range(0, t, 2):
        f = lm.detect(frames[i])
        if f:
            b = f[0].box.astype(np.float64)
            b[1] -= 0.12 * (b[3] - b[1])
            boxes[i] = b
            mo[i] = mouth_openness_frame(f[0])
    ok = np.all(np.isfinite(boxes), axis=1)
    idx = np.arange(t)
    boxes = np.column_stack([np.interp(idx, idx[ok], boxes[ok, c]) for c in range(4)])
    quiet = int(np.nanargmin(mo))
    return Person(Path(path).stem, frames, audio, speech, boxes, quiet)


def load_split_screen(path: str | Path, model_dir=None) -> list[Person]:
    """The two people of a side-by-side split-screen conversation (one voice at a time), as two Persons.
    Nobody labelled who speaks when, so the 'own' targets are pseudo-labels from the published LR-ASD
    checkpoint's plain cross-person rule (speech present, this person's logit > 0 and above the other's,
    smoothed over 0.4 s); negatives by construction need no labels."""
    from models.landmarks import FaceLandmarker, mouth_openness_frame
    from models.lr_asd import ASDScorer, crop_faces
    from models.vad import SileroVAD
    from operators import states as st
    from operators.asd import vad_to_frames
    from operators.clipmedia import read_clip_audio, read_clip_frames

    src = {"video_uri": str(path)}
    full = read_clip_frames(src, size=(2 * SIDE, SIDE), fps=FPS)
    audio = read_clip_audio(src, SR)
    t = min(len(full), len(audio) // SPF)
    full, audio = full[:t], audio[: t * SPF]
    speech = st.speech_presence(vad_to_frames(SileroVAD.load(model_dir=model_dir).speech_probabilities(audio), t, FPS), st.StateParams())
    lm = FaceLandmarker.from_dir(model_dir, num_faces=1)
    scorer = ASDScorer.from_dir(model_dir)
    halves = []
    for x0 in (0, SIDE):
        frames = np.ascontiguousarray(full[:, :, x0:x0 + SIDE])
        boxes, mo = np.full((t, 4), np.nan), np.full(t, np.nan)
        for i in range(0, t, 2):
            f = lm.detect(frames[i])
            if f:
                b = f[0].box.astype(np.float64)
                b[1] -= 0.12 * (b[3] - b[1])
                boxes[i], mo[i] = b, mouth_openness_frame(f[0])
        ok = np.all(np.isfinite(boxes), axis=1)
        idx = np.arange(t)
        boxes = np.column_stack([np.interp(idx, idx[ok], boxes[ok, c]) for c in range(4)])
        score = st.moving_average(scorer.score(crop_faces(frames, _smooth(boxes), 0.6), audio)[:t], 10)
        halves.append((frames, boxes, int(np.nanargmin(mo)), np.nan_to_num(score, nan=-9.0)))
    people = []
    for k, (frames, boxes, quiet, score) in enumerate(halves):
        other = halves[1 - k][3]
        label = speech & (score > 0) & (score > other)
        people.append(Person(f"{Path(path).stem}_{'left' if k == 0 else 'right'}", frames, audio, label, boxes, quiet))
    return people


def _smooth(b: np.ndarray) -> np.ndarray:
    from operators.asd import median_boxes

    return median_boxes(b.astype(np.float32))


def augmented_faces(p: Person, rng: np.random.Generator, crop_scale: float = 0.6, still: bool = False) -> np.ndarray:
    """[T, 112, 112] uint8 face crops with random geometry and photometry (one draw per sequence)."""
    from models.lr_asd import crop_faces

    b = p.boxes.copy()
    size = (b[:, 2] - b[:, 0]).mean()
    s = rng.uniform(0.88, 1.12)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    hw, hh = (b[:, 2] - b[:, 0]) / 2 * s, (b[:, 3] - b[:, 1]) / 2 * s
    cx = cx + rng.uniform(-0.06, 0.06) * size + rng.normal(0, 0.015 * size, len(b))
    cy = cy + rng.uniform(-0.06, 0.06) * size + rng.normal(0, 0.015 * size, len(b))
    b = np.column_stack([cx - hw, cy - hh, cx + hw, cy + hh])
    frames = p.frames
    if still:
        frames = np.repeat(p.frames[p.quiet][None], len(p.frames), axis=0)
        b = np.repeat(b[p.quiet][None], len(b), axis=0)
    faces = crop_faces(frames, _smooth(b), crop_scale + rng.uniform(-0.1, 0.1)).astype(np.float32)
    faces = (faces - 128.0) * rng.uniform(0.7, 1.3) + 128.0 + rng.uniform(-25, 25)
    if rng.random() < 0.5:
        faces = faces[:, :, ::-1]
    return np.clip(faces, 0, 255).astype(np.uint8)


@torch.no_grad()
def visual_embeddings(net, faces: np.ndarray, phase: int = 0) -> np.ndarray:
    """[T, 128] visual embeddings computed in WIN-frame windows starting at `phase`."""
    t = len(faces)
    v = torch.from_numpy(np.ascontiguousarray(faces))
    out = np.zeros((t, 128), np.float32)
    starts = [0] + list(range(phase, t, WIN)) if phase else list(range(0, t, WIN))
    bounds = sorted(set(starts)) + [t]
    for s, e in zip(bounds[:-1], bounds[1:]):
        if e > s:
            out[s:e] = net.model.embed_visual(v[s:e].unsqueeze(0))[0].numpy()
    return out


def _read_wav(path: Path) -> np.ndarray:
    from operators.media import decode_audio

    return decode_audio(str(path), 120.0, SR)


def mix_audio(x: np.ndarray, rng: np.random.Generator, music: np.ndarray | None) -> np.ndarray:
    y = x * rng.uniform(0.3, 2.0)
    r = rng.random()
    rms = float(np.sqrt(np.mean(y ** 2)) + 1e-6)
    if music is not None and r < 0.3:
        i = rng.integers(0, max(1, len(music) - len(y)))
        m = music[i:i + len(y)]
        m = np.pad(m, (0, len(y) - len(m)))
        snr = rng.uniform(5, 25)
        y = y + m / (np.sqrt(np.mean(m ** 2)) + 1e-6) * rms * 10 ** (-snr / 20)
    elif r < 0.5:
        y = y + rng.normal(0, rms * 10 ** (-rng.uniform(10, 30) / 20), len(y))
    return np.clip(y, -1, 1).astype(np.float32)


def window_audio(audio: np.ndarray, start_frame: int, rng: np.random.Generator) -> np.ndarray:
    a0 = start_frame * SPF
    seg = audio[max(0, a0): a0 + WIN * SPF]
    if a0 < 0:
        seg = np.concatenate([np.zeros(-a0, np.float32), seg])
    return np.pad(seg, (0, WIN * SPF - len(seg)))[: WIN * SPF]


def build_bank(people: list[Person], net, augs: int, seed: int) -> list[tuple[int, bool, np.ndarray]]:
    """(person index, still, [T, 128] embeddings) for `augs` augmented draws per person (+ still draws)."""
    rng = np.random.default_rng(seed)
    bank = []
    for i, p in enumerate(people):
        for k in range(augs):
            bank.append((i, False, visual_embeddings(net, augmented_faces(p, rng), phase=int(rng.integers(0, WIN)))))
        for k in range(max(1, augs // 4)):
            bank.append((i, True, visual_embeddings(net, augmented_faces(p, rng, still=True))))
    return bank


def sample_audio(kind: str, people: list[Person], pi: int, s: int, rng: np.random.Generator,
                 own_jitter: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The audio window and per-frame targets of one sample of `kind` for person `pi`'s frames s..s+WIN."""
    p = people[pi]
    if kind in ("own", "still"):
        # own voice: up to `own_jitter` frames early or late still counts as in sync (the small native
        # offsets of web video); the shifted negatives start at 8 frames
        j = int(rng.integers(-own_jitter, own_jitter + 1)) if own_jitter and kind == "own" else 0
        a = window_audio(p.audio, s + j, rng)
        target = p.speech[s:s + WIN].astype(np.float32) if kind == "own" else np.zeros(WIN, np.float32)
    elif kind == "shifted":
        sh = int(rng.integers(8, 40)) * (1 if rng.random() < 0.5 else -1)
        a = window_audio(p.audio, s + sh, rng)
        target = np.zeros(WIN, np.float32)
    else:
        q = people[(pi + int(rng.integers(1, len(people)))) % len(people)] if len(people) > 1 else p
        a = window_audio(q.audio, int(rng.integers(0, max(1, len(q.frames) - WIN))), rng)
        target = np.zeros(WIN, np.float32)
    return a, target


def make_batch(people, bank, net, rng, music, batch: int, own_jitter: int = 0):
    from models.lr_asd import mfcc

    ev, mf, tg, kinds = [], [], [], []
    moving = [b for b in bank if not b[1]]
    stills = [b for b in bank if b[1]]
    for _ in range(batch):
        r = rng.random()
        kind = "own" if r < 0.4 else "shifted" if r < 0.7 else "other" if r < 0.9 else "still"
        pi, _, emb = (stills if kind == "still" else moving)[int(rng.integers(0, len(stills if kind == "still" else moving)))]
        p = people[pi]
        t = len(p.frames)
        s = int(rng.integers(0, max(1, t - WIN)))
        v = emb[s:s + WIN]
        a, target = sample_audio(kind, people, pi, s, rng, own_jitter)
        f = mfcc(mix_audio(a, rng, music))[: 4 * WIN]
        f = np.pad(f, ((0, 4 * WIN - len(f)), (0, 0)), mode="edge")
        ev.append(np.pad(v, ((0, WIN - len(v)), (0, 0)), mode="edge"))
        mf.append(f)
        tg.append(np.pad(target, (0, WIN - len(target))))
        kinds.append(kind)
    return torch.from_numpy(np.stack(ev)), torch.from_numpy(np.stack(mf)), torch.from_numpy(np.stack(tg)), kinds


def train(media: Path, model_dir, out: Path, steps: int = 1500, augs: int = 12, batch: int = 16, lr: float = 3e-4,
          seed: int = 0, people: tuple[str, ...] = TRAIN_PEOPLE, log_every: int = 100, own_jitter: int = 0) -> dict:
    from models.lr_asd import CHECKPOINTS, load_lr_asd
    from models.lr_asd_sync import SyncHead, save_head
    from models.registry import resolve

    torch.manual_seed(seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    base = resolve(CHECKPOINTS["pretrain_AVA"], model_dir)
    net = load_lr_asd(base.path)
    t0 = time.time()
    ppl = [q for n in people for q in (load_split_screen(media / "video" / f"{n[:-len(':split')]}.mp4", model_dir)
                                        if n.endswith(":split") else [load_person(media / "video" / f"{n}.mp4", model_dir)])]
    bank = build_bank(ppl, net, augs, seed)
    t_data = time.time() - t0
    music_path = media / "audio" / "music_only.wav"
    music = _read_wav(music_path) if music_path.exists() else None
    head = SyncHead(net)
    head.train()
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    rng = np.random.default_rng(seed + 1)
    lossf = torch.nn.BCEWithLogitsLoss()
    hist = []
    for step in range(steps):
        ev, mf, tg, _ = make_batch(ppl, bank, net, rng, music, batch, own_jitter)
        with torch.no_grad():
            ea = net.model.embed_audio(mf)
        logit = head(ea, ev)
        loss = lossf(logit, tg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append(float(loss.detach()))
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"step {step} loss {np.mean(hist[-log_every:]):.4f}", flush=True)
    head.eval()
    meta = {"steps": steps, "augs": augs, "batch": batch, "lr": lr, "seed": seed, "win": WIN, "own_jitter": own_jitter}
    save_head(head, out, meta)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    card = {"file": out.name, "sha256": digest, "base_checkpoint": base.name, "base_sha256": base.digest,
            "train_people": list(people), "negatives": ["own voice shifted 0.32-1.56 s", "another training person's voice",
                                                      "still face under own voice"],
            "augment": "box scale/shift/jitter, crop scale 0.5-0.7, contrast/brightness, mirror; audio gain, noise, music",
            **meta, "loss_first_100": float(np.mean(hist[:100])), "loss_last_100": float(np.mean(hist[-100:])),
            "data_s": round(t_data, 1), "train_s": round(time.time() - t0 - t_data, 1),
            "command": f"python -m train.sync_head --steps {steps} --augs {augs} --batch {batch} --lr {lr} --seed {seed} "
                       f"--own-jitter {own_jitter} --people {' '.join(people)}"}
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def auc(pos: np.ndarray, neg: np.ndarray) -> float:
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    if not len(pos) or not len(neg):
        return float("nan")
    allv = np.concatenate([pos, neg])
    ranks = np.argsort(np.argsort(allv)) + 1.0
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def delayed(audio: np.ndarray, s: float, sr: int = 16000) -> np.ndarray:
    k = int(round(s * sr))
    return np.concatenate([np.zeros(k, np.float32), audio])[: len(audio)]


def evaluate(people: tuple[str, ...], head_path: Path | None, model_dir=None, media=None,
             voices: tuple[str, ...] | None = None, smooth: int = 1) -> dict:
    """Per-frame sync evidence of `people`'s faces with their own voice (frames where they speak), their
    own voice delayed 0.5 s and each of `voices` (frames where that audio has speech); smoothed over
    `smooth` frames as the state decision does. Returns per signal ('base': published checkpoint's
    audio-visual minus visual-only logit; 'head': the sync head) AUCs, means and the values."""
    from models.lr_asd import ASDScorer, crop_faces, mfcc
    from models.lr_asd_sync import load_head, sync_scores
    from models.vad import SileroVAD
    from operators import states as st
    from operators.asd import vad_to_frames

    from models.registry import default_model_dir
    from schemas.settings import REPO_ROOT

    media = Path(media) if media else REPO_ROOT.parent / "shared" / "media"
    model_dir = model_dir or default_model_dir()
    scorer = ASDScorer.from_dir(model_dir)
    head = load_head(scorer.net, head_path) if head_path else None
    vad = SileroVAD.load(model_dir=model_dir)
    voices = tuple(voices or people)
    ppl = {n: load_person(media / "video" / f"{n}.mp4", model_dir, vad=vad) for n in dict.fromkeys(people + voices)}
    caches = {n: scorer.embed(crop_faces(ppl[n].frames, _smooth(ppl[n].boxes), 0.6)) for n in people}

    def speech_of(audio, t):
        return st.speech_presence(vad_to_frames(vad.speech_probabilities(audio), t, 25.0), st.StateParams())

    out = {"base": {"own": [], "other": [], "shifted": []}, "head": {"own": [], "other": [], "shifted": []}}
    cpu = {"base": 0.0, "head": 0.0}
    for n in people:
        p = ppl[n]
        t = len(p.frames)
        cache = caches[n]
        cases = [("own", p.audio, p.speech), ("shifted", delayed(p.audio, 0.5), speech_of(delayed(p.audio, 0.5), t))]
        for q in voices:
            if q != n:
                qa = np.pad(ppl[q].audio, (0, max(0, t * SPF - len(ppl[q].audio))))[: t * SPF]
                cases.append(("other", qa, speech_of(qa, t)))
        for kind, audio, sp in cases:
            feats = mfcc(audio)
            c0 = time.process_time()
            base = st.moving_average(scorer.score_cached(cache, feats)[:t] - scorer.visual_scores(cache)[:t], smooth)
            cpu["base"] += time.process_time() - c0
            out["base"][kind].append(base[sp[: len(base)]])
            if head is not None:
                c0 = time.process_time()
                hs = st.moving_average(sync_scores(head, scorer.net, cache, feats)[:t], smooth)
                cpu["head"] += time.process_time() - c0
                out["head"][kind].append(hs[sp[: len(hs)]])
    res = {}
    for sig, d in out.items():
        if not d["own"]:
            continue
        own, oth, sh = (np.concatenate(d[k]) for k in ("own", "other", "shifted"))
        res[sig] = {"auc_own_vs_other": auc(own, oth), "auc_own_vs_shifted": auc(own, sh),
                    "auc_all": auc(own, np.concatenate([oth, sh])), "mean_own": float(np.nanmean(own)),
                    "mean_other": float(np.nanmean(oth)), "mean_shifted": float(np.nanmean(sh)),
                    "frac_own_pos": float(np.nanmean(own > 0)), "frac_neg_pos": float(np.nanmean(np.concatenate([oth, sh]) > 0)),
                    "cpu_s": round(cpu[sig], 2)}
        res[sig]["values"] = {"own": own, "other": oth, "shifted": sh}
    return res


def balanced_threshold(pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """(threshold, balanced accuracy) that best separates pos (above) from neg (below)."""
    pos, neg = pos[np.isfinite(pos)], neg[np.isfinite(neg)]
    cands = np.unique(np.quantile(np.concatenate([pos, neg]), np.linspace(0.01, 0.99, 197)))
    accs = [((pos > c).mean() + (neg <= c).mean()) / 2 for c in cands]
    i = int(np.argmax(accs))
    return float(cands[i]), float(accs[i])


def calibrate(media: Path, model_dir, workdir: Path, steps: int, augs: int, batch: int, lr: float, seed: int,
              people: tuple[str, ...] = TRAIN_PEOPLE, smooth: int = 5, reuse: bool = False, own_jitter: int = 0) -> dict:
    """Leave-one-person-out over the training people: train on the others with the same recipe, measure
    the left-out face (own voice, own voice delayed 0.5 s, the other training voices). The decision
    thresholds of the conversation stage (sync_min) are chosen here, on faces the head did not see,
    never on the people the tests measure."""
    own, neg, per = [], [], {}
    singles = single_talkers(people)
    for p in singles:
        rest = tuple(q for q in people if q != p and SAME_PERSON.get(q) != p)
        path = workdir / f"lopo_{p}.pt"
        if not (reuse and path.exists()):
            train(media, model_dir, path, steps, augs, batch, lr, seed, rest, log_every=0, own_jitter=own_jitter)
        r = evaluate((p,), path, model_dir, media, voices=singles, smooth=smooth)["head"]
        v = r["values"]
        own.append(v["own"])
        neg.append(np.concatenate([v["other"], v["shifted"]]))
        per[p] = {k: round(float(x), 3) for k, x in r.items() if k != "values"}
        print(f"left out {p}: " + " ".join(f"{k}={x}" for k, x in per[p].items()), flush=True)
    thr, bacc = balanced_threshold(np.concatenate(own), np.concatenate(neg))
    cal = {"smooth_frames": smooth, "per_person": per, "sync_min": round(thr, 2), "balanced_accuracy": round(bacc, 3),
           "offset_scan": lag_calibration(media, model_dir, workdir, singles)}
    (workdir / "calibration.json").write_text(json.dumps(cal, indent=2) + "\n")
    return cal


def lag_curve(head, net, cache, feats, speech: np.ndarray, lags: np.ndarray, windows=(2, 4)) -> np.ndarray:
    """Mean sync log-odds over the speech frames for each audio lag (frames; positive: audio taken later)."""
    from models.lr_asd_sync import sync_scores

    out = []
    for k in lags:
        sc = sync_scores(head, net, cache, feats, int(k), windows=windows)
        m = speech[: len(sc)] & np.isfinite(sc)
        out.append(float(np.mean(sc[m])) if m.any() else float("nan"))
    return np.array(out)


def lag_calibration(media: Path, model_dir, workdir: Path, people: tuple[str, ...] = TRAIN_PEOPLE,
                    delays_s: tuple[float, ...] = (0.0, 0.5), scan_s: float = 0.8) -> dict:
    """With each leave-one-out head (workdir/lopo_<person>.pt) on its left-out face: the offset scan's peak
    lag and its gain over lag 0, for the own voice in sync and delayed. offset_min_gain is chosen between
    the largest in-sync gain and the smallest delayed gain."""
    from models.lr_asd import ASDScorer, crop_faces, mfcc
    from models.lr_asd_sync import load_head

    scorer = ASDScorer.from_dir(model_dir)
    k = int(round(scan_s * FPS))
    lags = np.arange(-k - k % 2, k + 1, 2)
    rows = {}
    for p in people:
        head = load_head(scorer.net, workdir / f"lopo_{p}.pt")
        per = load_person(media / "video" / f"{p}.mp4", model_dir)
        cache = scorer.embed(crop_faces(per.frames, _smooth(per.boxes), 0.6))
        for d in delays_s:
            audio = np.concatenate([np.zeros(int(d * SR), np.float32), per.audio])[: len(per.audio)]
            c = lag_curve(head, scorer.net, cache, mfcc(audio), per.speech, lags)
            i, z = int(np.nanargmax(c)), int(np.where(lags == 0)[0][0])
            rows[f"{p} delay {d:.1f}s"] = {"peak_s": round(float(lags[i]) / FPS, 2), "gain": round(float(c[i] - c[z]), 2)}
    in_sync = max(r["gain"] for n, r in rows.items() if n.endswith("delay 0.0s"))
    delayed = min(r["gain"] for n, r in rows.items() if not n.endswith("delay 0.0s"))
    return {"rows": rows, "max_gain_in_sync": in_sync, "min_gain_delayed": delayed}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--media", default=None, help="media root (default: ../shared/media next to the repo)")
    ap.add_argument("--model-dir", default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--augs", type=int, default=12)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--people", nargs="*", default=list(TRAIN_PEOPLE), help="training people (clip names under video/)")
    ap.add_argument("--calibrate", default=None, metavar="DIR",
                    help="leave-one-person-out calibration of the decision threshold; writes DIR/calibration.json")
    ap.add_argument("--lags-only", action="store_true", help="with --calibrate: only redo the offset-scan part from DIR's heads")
    ap.add_argument("--reuse", action="store_true", help="with --calibrate: reuse DIR's leave-one-out heads when present")
    ap.add_argument("--own-jitter", type=int, default=0, help="own-voice positives taken up to this many frames early or late")
    ap.add_argument("--smooth", type=int, default=5, help="with --calibrate: smoothing (frames) of the evidence, as conversation.sync_smooth_frames")
    a = ap.parse_args(argv)
    from schemas.settings import REPO_ROOT

    media = Path(a.media) if a.media else REPO_ROOT.parent / "shared" / "media"
    out = Path(a.out) if a.out else REPO_ROOT / "models" / "weights" / "lr_asd_sync_head.pt"
    if a.calibrate:
        Path(a.calibrate).mkdir(parents=True, exist_ok=True)
        if a.lags_only:
            cal = json.loads((Path(a.calibrate) / "calibration.json").read_text())
            cal["offset_scan"] = lag_calibration(media, a.model_dir, Path(a.calibrate), single_talkers(a.people))
            (Path(a.calibrate) / "calibration.json").write_text(json.dumps(cal, indent=2) + "\n")
            print(json.dumps(cal, indent=2))
            return 0
        cal = calibrate(media, a.model_dir, Path(a.calibrate), a.steps, a.augs, a.batch, a.lr, a.seed, tuple(a.people),
                        smooth=a.smooth, reuse=a.reuse, own_jitter=a.own_jitter)
        print(json.dumps(cal, indent=2))
        return 0
    card = train(media, a.model_dir, out, a.steps, a.augs, a.batch, a.lr, a.seed, tuple(a.people), own_jitter=a.own_jitter)
    print(json.dumps(card, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
