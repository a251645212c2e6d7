"""Speech recognition with word times: faster-whisper (CTranslate2 Whisper) from a local model directory,
optionally refined by CTC forced alignment (torchaudio.functional.forced_align on a local wav2vec2-style
CTC model), which is what whisperx does, in the main environment.

Model directories (nothing is downloaded; HF_HUB_OFFLINE is set before importing):

* ``audio.whisper_model_dir``: a registered model name (default ``whisper-tiny.en-ct2``, resolved in the
  model directory with its sha256 verified, see models/registry.py) or a CTranslate2 Whisper directory (``model.bin``, ``config.json``,
  ``vocabulary.json`` and ``tokenizer.json``; without tokenizer.json faster-whisper would try the hub, so
  it is required here). Convert a transformers Whisper with
  ``ct2-transformers-converter --model <hf dir> --output_dir <dir> --copy_files tokenizer.json``.
* ``audio.ctc_model_dir`` (optional): a transformers CTC model directory (``Wav2Vec2ForCTC`` or any
  ``AutoModelForCTC`` with a character vocabulary in its tokenizer, ``|`` as word delimiter), e.g.
  facebook/wav2vec2-base-960h saved locally.

Word times are seconds from the start of the audio given to :meth:`WhisperASR.transcribe`.

Language: an English-only model (``.en``: CTranslate2 says it is not multilingual, its name has ``.en``,
or ``audio.asr_english_only``) cannot detect language: it always decodes with ``language='en'`` and the
clip records ``language: en (assumed)``. A multilingual model is a config swap (``audio.whisper_model_dir``
pointing at its directory): ``audio.language`` None lets Whisper detect the language per shot.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models.registry import REGISTRY, MissingModelError, ResolvedModel, resolve_for, user_model
from models.separation import resolve_model_dir

log = logging.getLogger("lpm.asr")

SAMPLE_RATE = 16000
DEFAULT_WHISPER = "whisper-tiny.en-ct2"
ASSUMED_EN = "en (assumed)"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # control characters (decoders of random/broken models emit them)


@dataclass
class Word:
    word: str          # as Whisper spells it, usually with its leading space
    start_s: float
    end_s: float
    prob: float
    aligned: bool = False  # times refined by CTC forced alignment


@dataclass
class Transcript:
    words: list[Word]
    language: str | None
    language_prob: float | None
    segments: list[tuple[float, float]] = field(default_factory=list)  # Whisper segment spans (s)
    language_assumed: bool = False  # English-only model: 'en' was imposed, not detected

    @property
    def language_label(self) -> str | None:
        """What a clip records: 'en (assumed)' for English-only models, else the detected/configured code."""
        return ASSUMED_EN if self.language_assumed else self.language


class WhisperASR:
    """faster-whisper WhisperModel on a local CTranslate2 directory, transcribing with word timestamps."""

    def __init__(self, model_dir: str | os.PathLike, compute_type: str = "int8", cpu_threads: int = 1,
                 beam_size: int = 5, vad_filter: bool = True, language: str | None = None,
                 condition_on_previous_text: bool = False, temperature_fallback: bool = False, seed: int = 0,
                 english_only: bool | None = None, resolved: ResolvedModel | None = None):
        d = Path(model_dir)
        if not (d / "model.bin").is_file():
            raise MissingModelError("whisper", d / "model.bin", "is missing (a CTranslate2 Whisper directory)")
        if not (d / "tokenizer.json").is_file():
            raise MissingModelError("whisper", d / "tokenizer.json",
                                    "is missing (copy it beside model.bin; without it faster-whisper goes to the hub)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import WhisperModel

        self.resolved: ResolvedModel = resolved if resolved is not None else user_model(d, "whisper")
        self.model = WhisperModel(str(d), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads,
                                  local_files_only=True)
        self.beam_size = beam_size
        self.vad_filter = vad_filter
        multilingual = bool(self.model.model.is_multilingual)
        name = f"{self.resolved.name} {d.name}"
        self.english_only = bool(english_only) if english_only is not None else (not multilingual or ".en" in name)
        if self.english_only and language not in (None, "en"):
            log.warning("asr: %s is English-only; audio.language %r ignored, decoding with 'en'", d.name, language)
        self.language = "en" if self.english_only else language
        self.language_assumed = self.english_only
        self.condition_on_previous_text = condition_on_previous_text
        # Whisper's fallback re-decodes failed windows by sampling at rising temperatures. CTranslate2's
        # sampling RNG lives in its worker threads: seeding makes a process's sequence of calls
        # repeatable, not each call, so the fallback is off by default (beam search: same input, same words)
        self.temperatures = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0) if temperature_fallback else (0.0,)
        self.seed = seed
        self.params = {"temperatures": list(self.temperatures), "seed": seed, "compute_type": compute_type, "beam_size": beam_size, "vad_filter": vad_filter,
                       "language": self.language, "english_only": self.english_only,
                       "condition_on_previous_text": condition_on_previous_text, "multilingual": multilingual}

    def transcribe(self, audio: np.ndarray, check: Callable[[], None] | None = None) -> Transcript:
        """Words of 16 kHz mono float32 audio; times are clipped to the audio and kept in order."""
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        dur = len(audio) / SAMPLE_RATE
        if dur <= 0.05:
            return Transcript([], self.language, None, language_assumed=self.language_assumed)
        import ctranslate2

        ctranslate2.set_random_seed(self.seed)
        segments, info = self.model.transcribe(
            audio, language=self.language, beam_size=self.beam_size, word_timestamps=True, temperature=list(self.temperatures),
            vad_filter=self.vad_filter, condition_on_previous_text=self.condition_on_previous_text)
        words: list[Word] = []
        spans: list[tuple[float, float]] = []
        for seg in segments:  # a generator: decoding happens while iterating
            if check is not None:
                check()
            spans.append((float(seg.start), float(seg.end)))
            for w in seg.words or []:
                words.append(Word(str(w.word), float(w.start), float(w.end), float(w.probability)))
        language = self.language or getattr(info, "language", None)
        return Transcript(clean_words(words, dur), language, getattr(info, "language_probability", None), spans,
                          language_assumed=self.language_assumed)


def clean_words(words: list[Word], duration_s: float) -> list[Word]:
    """Drop empty words and words starting past the end, clip times to [0, duration], force order
    (start <= end, starts non-decreasing): decoders may emit timestamps past the audio."""
    out: list[Word] = []
    last = 0.0
    for w in words:
        text = _CONTROL.sub("", w.word)
        if not text.strip() or not np.isfinite(w.start_s) or not np.isfinite(w.end_s):
            continue
        s = min(max(w.start_s, last, 0.0), duration_s)
        if s >= duration_s and duration_s > 0:
            continue
        e = min(max(w.end_s, s), duration_s)
        out.append(Word(text, s, e, w.prob, w.aligned))
        last = s
    return out


# ----------------------------------------------------------------------------- CTC forced alignment
class CTCAligner:
    """A transformers CTC model whose per-frame log-probabilities feed torchaudio's forced_align."""

    def __init__(self, model_dir: str | os.PathLike):
        d = Path(model_dir)
        if not d.is_dir() or not (d / "config.json").is_file():
            raise MissingModelError("ctc-aligner", d, "is missing (a transformers CTC model directory)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModelForCTC, AutoTokenizer

        self.resolved: ResolvedModel = user_model(d, "ctc-aligner")
        self.model = AutoModelForCTC.from_pretrained(str(d), local_files_only=True).eval()
        tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
        self.vocab: dict[str, int] = dict(tok.get_vocab())
        pad = getattr(tok, "pad_token_id", None)
        self.blank = int(pad if pad is not None else 0)
        self.delimiter = getattr(tok, "word_delimiter_token", None) or "|"
        self.normalize = True
        try:
            from transformers import AutoFeatureExtractor

            fe = AutoFeatureExtractor.from_pretrained(str(d), local_files_only=True)
            self.normalize = bool(getattr(fe, "do_normalize", True))
        except (OSError, ValueError):
            pass
        self._torch = torch

    def log_probs(self, audio: np.ndarray) -> np.ndarray:
        """[frames, vocab] log-probabilities of 16 kHz mono audio."""
        torch = self._torch
        x = np.asarray(audio, np.float32)
        if self.normalize:
            x = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        with torch.inference_mode():
            logits = self.model(torch.from_numpy(x)[None]).logits[0]
            return torch.log_softmax(logits.float(), dim=-1).numpy()

    def align(self, audio: np.ndarray, words: list[Word], spans: list[tuple[float, float]] | None = None,
              pad_s: float = 0.3, check: Callable[[], None] | None = None) -> list[Word]:
        """Refine word times: each Whisper segment (or the whole audio) is aligned on its own window."""
        if not words:
            return words
        dur = len(audio) / SAMPLE_RATE
        groups = _group_by_spans(words, spans or [(0.0, dur)])
        out: list[Word] = []
        for (a, b), ws in groups:
            if check is not None:
                check()
            a = max(0.0, a - pad_s)
            b = min(dur, b + pad_s)
            i0, i1 = int(a * SAMPLE_RATE), int(b * SAMPLE_RATE)
            if i1 - i0 < SAMPLE_RATE // 10:
                out.extend(ws)
                continue
            lp = self.log_probs(audio[i0:i1])
            frame_s = (i1 - i0) / SAMPLE_RATE / max(1, lp.shape[0])
            times = ctc_word_times(lp, [w.word for w in ws], self.vocab, self.blank, self.delimiter)
            for w, t in zip(ws, times):
                if t is None:
                    out.append(w)
                else:
                    out.append(Word(w.word, a + t[0] * frame_s, a + t[1] * frame_s, w.prob, True))
        return clean_words(out, dur)


def _group_by_spans(words: list[Word], spans: list[tuple[float, float]]) -> list[tuple[tuple[float, float], list[Word]]]:
    groups: list[tuple[tuple[float, float], list[Word]]] = []
    for w in words:
        mid = 0.5 * (w.start_s + w.end_s)
        k = next((i for i, (a, b) in enumerate(spans) if a - 1e-3 <= mid <= b + 1e-3), None)
        span = spans[k] if k is not None else (w.start_s, w.end_s)
        if groups and groups[-1][0] == span:
            groups[-1][1].append(w)
        else:
            groups.append((span, [w]))
    # words outside every span widen the window of their own group
    return [((min(s[0], ws[0].start_s), max(s[1], ws[-1].end_s)), ws) for s, ws in groups]


def _vocab_case(vocab: dict[str, int]) -> str:
    letters = [t for t in vocab if len(t) == 1 and t.isalpha()]
    upper = sum(t.isupper() for t in letters)
    return "upper" if upper > len(letters) / 2 else "lower"


def word_tokens(word: str, vocab: dict[str, int], case: str) -> list[int]:
    """CTC token ids of one word: its characters in the vocabulary's case, others dropped."""
    w = word.strip()
    w = w.upper() if case == "upper" else w.lower()
    w = re.sub(r"\s+", "", w)
    return [vocab[c] for c in w if c in vocab]


def ctc_word_times(log_probs: np.ndarray, words: list[str], vocab: dict[str, int], blank: int = 0,
                   delimiter: str = "|") -> list[tuple[int, int] | None]:
    """Forced-align words on CTC log-probabilities [frames, vocab]; per word (first frame, end frame)
    or None when the word has no character in the vocabulary or alignment is impossible."""
    import torch
    import torchaudio.functional as F

    case = _vocab_case(vocab)
    toks = [word_tokens(w, vocab, case) for w in words]
    delim = vocab.get(delimiter)
    targets: list[int] = []
    owner: list[int] = []  # word index of each target token (-1: delimiter)
    for i, t in enumerate(toks):
        if not t:
            continue
        if targets and delim is not None:
            targets.append(delim)
            owner.append(-1)
        targets.extend(t)
        owner.extend([i] * len(t))
    result: list[tuple[int, int] | None] = [None] * len(words)
    if not targets:
        return result
    lp = torch.from_numpy(np.ascontiguousarray(log_probs, dtype=np.float32))[None]
    tg = torch.tensor([targets], dtype=torch.int32)
    try:
        labels, scores = F.forced_align(lp, tg, blank=blank)
    except (RuntimeError, ValueError) as exc:  # too few frames for the targets, etc.
        log.debug("forced alignment failed: %s", exc)
        return result
    spans = F.merge_tokens(labels[0], scores[0].exp(), blank=blank)
    if len(spans) != len(targets):
        return result
    for sp, who in zip(spans, owner):
        if who < 0:
            continue
        cur = result[who]
        result[who] = (sp.start, sp.end) if cur is None else (min(cur[0], sp.start), max(cur[1], sp.end))
    return result


def resolve_whisper(settings) -> tuple[Path, ResolvedModel | None]:
    """Directory of the configured Whisper model and, for a registered name (the default
    ``whisper-tiny.en-ct2``), its registry resolution (files present, sha256 verified per models.verify_checksums).
    A path (user model) gives (path, None): its sha256 is computed at load."""
    d = settings.audio.whisper_model_dir
    spec = REGISTRY.get(d) if d else None
    if spec is not None and spec.task.startswith("speech recognition"):
        r = resolve_for(settings, d)
        return r.path.parent, r
    return resolve_model_dir(d, settings), None


def load_asr(settings) -> WhisperASR:
    """The Whisper model of ``settings.audio``; MissingModelError when not configured or absent."""
    cfg = settings.audio
    if cfg.asr != "faster-whisper" or not cfg.whisper_model_dir:
        raise MissingModelError("whisper", Path(cfg.whisper_model_dir or "<audio.whisper_model_dir unset>"),
                                "is not configured (audio.asr / audio.whisper_model_dir)")
    d, resolved = resolve_whisper(settings)
    return WhisperASR(d, compute_type=cfg.asr_compute_type,
                      cpu_threads=cfg.asr_threads, beam_size=cfg.asr_beam_size, vad_filter=cfg.asr_vad_filter,
                      language=cfg.language, temperature_fallback=cfg.asr_temperature_fallback,
                      english_only=cfg.asr_english_only, resolved=resolved)


def load_aligner(settings) -> CTCAligner | None:
    """The optional CTC aligner (None when audio.ctc_model_dir is unset)."""
    d = settings.audio.ctc_model_dir
    if not d:
        return None
    return CTCAligner(resolve_model_dir(d, settings))


def describe(model: Any) -> dict[str, Any]:
    """Provenance fields of a loaded ASR/aligner (model name, sha256)."""
    r = model.resolved
    name = r.name if r.name in REGISTRY else f"{r.name}:{r.path.name}"  # registered: its name; user: kind:dir
    return {"model": name, "weights_sha256": r.digest}
