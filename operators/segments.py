"""Sentence-bounded segments from timed words.

A sentence ends after a word that ends with terminal punctuation (``. ! ? …`` and their CJK forms, with
closing quotes/brackets allowed after them), at a pause between words longer than ``max_pause_s``, or
when it would grow past ``max_sentence_s``. Times are those of the first and last word. Abbreviations
such as "Mr." or "e.g." do not end a sentence.
"""
from __future__ import annotations

import re
from typing import Any

_TERMINAL = re.compile(r"[.!?…。！？]+[\"'”’)\]}»]*$")
_ABBREV = {"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "vs.", "etc.", "e.g.", "i.e.", "jr.", "sr.", "no.", "u.s."}


def join_words(words: list[str]) -> str:
    """Text of Whisper-style words (which carry their own leading spaces); plain tokens get spaces."""
    spaced = sum(1 for w in words[1:] if w[:1].isspace())
    if spaced >= len(words[1:]) / 2 or not any(re.search(r"[A-Za-z0-9]", w) for w in words):
        text = "".join(words)  # Whisper words (leading spaces), or scripts written without spaces
    else:
        text = " ".join(w.strip() for w in words)
    return re.sub(r"\s+", " ", text).strip()


def ends_sentence(word: str) -> bool:
    w = word.strip()
    if not w or w.lower() in _ABBREV:
        return False
    return bool(_TERMINAL.search(w))


def split_sentences(words: list[dict[str, Any]], max_pause_s: float = 1.0, max_sentence_s: float = 15.0) -> list[dict[str, Any]]:
    """Group words (dicts with word, start_s, end_s) into sentences: dicts with text, start_s, end_s,
    n_words."""
    out: list[dict[str, Any]] = []
    cur: list[dict[str, Any]] = []

    def flush():
        if cur:
            out.append({"text": join_words([w["word"] for w in cur]), "start_s": float(cur[0]["start_s"]),
                        "end_s": float(max(w["end_s"] for w in cur)), "n_words": len(cur)})
            cur.clear()

    for w in words:
        if cur:
            gap = float(w["start_s"]) - float(cur[-1]["end_s"])
            too_long = float(w["end_s"]) - float(cur[0]["start_s"]) > max_sentence_s
            if gap > max_pause_s or too_long:
                flush()
        cur.append(w)
        if ends_sentence(str(w["word"])):
            flush()
    flush()
    return out
