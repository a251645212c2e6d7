"""Tiny randomly initialised audio models, built offline in a test's tmp dir, in the exact on-disk formats
the real loaders read (reusable by any test):

* :func:`build_tiny_htdemucs`: a demucs repo folder (``<name>-<sha8>.th`` saved with
  ``demucs.states.save_with_checksum``) that ``demucs.pretrained.get_model(name, repo=dir)`` loads.
* :func:`build_tiny_whisper`: a CTranslate2 Whisper directory converted with
  ``ctranslate2.converters.TransformersConverter`` from a random transformers Whisper, whose tokenizer is
  a byte-level BPE with the Whisper special tokens and the 1501 timestamp tokens right after
  ``<|notimestamps|>`` (tokenizer.json copied beside model.bin), so ``faster_whisper.WhisperModel(dir)``
  transcribes with word timestamps.
* :func:`build_tiny_ctc`: a transformers ``Wav2Vec2ForCTC`` directory with a character vocabulary
  (``|`` word delimiter), for the forced-alignment path.

Random weights prove the code paths, not quality. Use the session fixtures ``tiny_demucs_dir``,
``tiny_whisper_dir`` and ``tiny_ctc_dir`` (import them into a test module) to build each once.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEMUCS_SOURCES = ["drums", "bass", "other", "vocals"]
TEXT_CORPUS = [
    "And so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.",
    "Hello, how are you today? I am fine, thank you. What a lovely day it is!",
    "We talk and we listen. She speaks, he listens, then they laugh.",
]
WHISPER_SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|translate|>", "<|transcribe|>", "<|startoflm|>",
                    "<|startofprev|>", "<|nocaptions|>", "<|notimestamps|>"]


def build_tiny_htdemucs(out_dir: Path, name: str = "tiny_htdemucs", samplerate: int = 44100, segment: float = 2.0,
                        seed: int = 0) -> Path:
    """Save a tiny random HTDemucs (4 sources incl. vocals, stereo) as ``out_dir/<name>-<sha8>.th``."""
    import torch
    from demucs.htdemucs import HTDemucs
    from demucs.states import get_state, save_with_checksum

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    # depth 4 like the real model keeps the transformer's sequence short; channels are tiny
    model = HTDemucs(sources=DEMUCS_SOURCES, audio_channels=2, channels=4, depth=4, t_layers=1, t_heads=2,
                     dconv_comp=4, samplerate=samplerate, segment=segment)
    args, kwargs = model._init_args_kwargs
    package = {"klass": HTDemucs, "args": args, "kwargs": kwargs, "state": get_state(model, None, half=False),
               "training_args": {}}
    save_with_checksum(package, out_dir / f"{name}.th")
    return out_dir


def _whisper_tokenizer(hf_dir: Path):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=False)
    tok.train_from_iterator(TEXT_CORPUS * 4, trainer)
    specials = WHISPER_SPECIALS + ["<|%.2f|>" % (i * 0.02) for i in range(1501)]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    tok.save(str(hf_dir / "tokenizer.json"))
    return tok


def build_tiny_whisper(out_dir: Path, seed: int = 0) -> Path:
    """A CTranslate2 Whisper directory (model.bin, config.json, vocabulary.json, tokenizer.json)."""
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import GenerationConfig, PreTrainedTokenizerFast, WhisperConfig, WhisperForConditionalGeneration

    out_dir = Path(out_dir)
    hf = out_dir.parent / (out_dir.name + "-hf")
    hf.mkdir(parents=True, exist_ok=True)
    tok = _whisper_tokenizer(hf)
    eot, sot = tok.token_to_id("<|endoftext|>"), tok.token_to_id("<|startoftranscript|>")
    no_ts = tok.token_to_id("<|notimestamps|>")
    assert tok.token_to_id("<|0.00|>") == no_ts + 1 and tok.get_vocab_size() == no_ts + 1502
    PreTrainedTokenizerFast(tokenizer_file=str(hf / "tokenizer.json"), bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                            unk_token="<|endoftext|>", pad_token="<|endoftext|>").save_pretrained(hf)
    cfg = WhisperConfig(vocab_size=tok.get_vocab_size(), num_mel_bins=80, encoder_layers=1, encoder_attention_heads=2,
                        decoder_layers=1, decoder_attention_heads=2, d_model=32, encoder_ffn_dim=64, decoder_ffn_dim=64,
                        max_source_positions=1500, max_target_positions=448, pad_token_id=eot, bos_token_id=eot,
                        eos_token_id=eot, decoder_start_token_id=sot, suppress_tokens=[], begin_suppress_tokens=[eot])
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(cfg).eval()
    model.generation_config = GenerationConfig(decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot,
                                               bos_token_id=eot, suppress_tokens=[], begin_suppress_tokens=[eot],
                                               no_timestamps_token_id=no_ts)
    model.save_pretrained(hf)
    TransformersConverter(str(hf)).convert(str(out_dir), quantization=None, force=True)
    shutil.copy(hf / "tokenizer.json", out_dir / "tokenizer.json")
    shutil.rmtree(hf, ignore_errors=True)
    return out_dir


CTC_VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|"] + list("ETAOINSHRDLUCMFWYPVBGKQJXZ'")


def build_tiny_ctc(out_dir: Path, seed: int = 0) -> Path:
    """A random Wav2Vec2ForCTC with an upper-case character vocabulary (blank = <pad> = 0)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab = {t: i for i, t in enumerate(CTC_VOCAB)}
    (out_dir / "vocab.json").write_text(json.dumps(vocab))
    tok = Wav2Vec2CTCTokenizer(str(out_dir / "vocab.json"), unk_token="<unk>", pad_token="<pad>", word_delimiter_token="|")
    fe = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True,
                                  return_attention_mask=False)
    cfg = Wav2Vec2Config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=2, pad_token_id=0, do_stable_layer_norm=False,
                         feat_extract_norm="group")
    torch.manual_seed(seed)
    Wav2Vec2ForCTC(cfg).eval().save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    fe.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="session")
def tiny_demucs_dir(tmp_path_factory) -> Path:
    return build_tiny_htdemucs(tmp_path_factory.mktemp("demucs"))


@pytest.fixture(scope="session")
def tiny_whisper_dir(tmp_path_factory) -> Path:
    return build_tiny_whisper(tmp_path_factory.mktemp("whisper") / "ct2")


@pytest.fixture(scope="session")
def tiny_ctc_dir(tmp_path_factory) -> Path:
    return build_tiny_ctc(tmp_path_factory.mktemp("ctc"))
