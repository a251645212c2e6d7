"""Captions: tags from every stage's columns, composed captions, per-sentence captions, the VLM backend."""
from __future__ import annotations

import copy

import pytest

from issue6_media import processed_composite


@pytest.fixture(scope="module")
def composite(tmp_path_factory, media_dir, model_dir):
    return processed_composite(str(tmp_path_factory.getbasetemp()), str(media_dir), str(model_dir))


def test_tags_and_caption_on_composite(composite):
    _, _, task = composite
    for c in task.clips:
        tags = c["tags"]
        for key in ("state", "expression", "motion_intensity", "head_motion", "shot_type", "speaking_rate", "transcript",
                    "references", "captioner", "missing"):
            assert key in tags
        assert tags["shot_type"] == "close-up"  # a face ~40% of the frame height
        assert tags["motion_intensity"].split(" ")[0] in ("low", "medium", "high")
        # no conversation / audio stage ran: said so, not invented
        assert tags["state"] == "unknown" and "frame_states" in tags["missing"] and "transcript" in tags["missing"]
        assert tags["expression"] != "unknown" and tags["expression"].split(" ")[0] in c["caption"]
        assert c["caption"].startswith("A person")


def _talk_clip():
    fps = 25.0
    states = ["listen"] * 50 + ["speak"] * 100 + ["idle"] * 50
    words = [{"word": w, "start_s": 2.0 + 0.4 * i, "end_s": 2.3 + 0.4 * i, "prob": 0.9}
             for i, w in enumerate("so my fellow americans ask not what your country can".split())]
    return {
        "clip_id": "c", "clip_fps": fps, "duration_s": 8.0, "start_s": 100.0, "end_s": 108.0, "frame_states": states,
        "clip_class": "mixed", "transcript": "so my fellow americans ask not what your country can", "words": words,
        "sentences": [{"text": "so my fellow americans", "start_s": 102.0, "end_s": 103.6, "caption": None},
                      {"text": "ask not what", "start_s": 103.6, "end_s": 104.8, "caption": None}],
        "expression_stats": {"share_neutral": 0.5, "share_smile": 0.5, "expression_change_rate_hz": 1.0},
        "motion_stats": {"motion_intensity": 0.7, "head_yaw_std": 1.0, "head_pitch_std": 6.0, "head_roll_std": 1.0,
                         "body_motion": 0.3},
        "face_size_px": 100.0,
    }


def test_tags_from_conversation_and_audio_columns(settings):
    from operators.captions import build_tags, compose_caption, sentences_relative

    clip = _talk_clip()
    tags = build_tags(clip, {"width": 1280, "height": 720}, {"global": 1, "views": ["frontal"], "expressions": ["smile"],
                                                               "notes": []}, settings.captions)
    assert tags["state"] == "mixed" and "speak 0.50" in tags["state_shares"]
    assert tags["motion_intensity"].startswith("high") and tags["head_motion"] == "nodding"
    assert tags["shot_type"] == "medium shot"  # 100 / 720
    assert tags["speaking_rate"].startswith("normal")  # 10 words in 4 s of speaking
    assert tags["missing"] == "" and tags["references"].startswith("global 1")
    cap = compose_caption(tags)
    assert "talking and listening" in cap and "fellow americans" in cap
    # listeners: no transcript in the caption (time-invariant content only)
    assert "fellow" not in compose_caption(dict(tags, state="listen"), listener_only=True)
    rel = sentences_relative(clip)  # source times -> clip-relative
    assert rel[0][1] == pytest.approx(2.0) and rel[1][2] == pytest.approx(4.8)


def test_per_sentence_captions(settings, composite):
    from operators.base import Deadline
    from operators.captions import CaptionOperator

    _, _, task = composite
    t = copy.deepcopy(task)
    c = t.clips[1]
    n = len(c["frame_boxes"])
    c["frame_states"] = ["speak"] * (n // 2) + ["listen"] * (n - n // 2)
    c["transcript"] = "hello there. how are you"
    c["sentences"] = [{"text": "hello there.", "start_s": 0.0, "end_s": 0.8, "caption": None},
                      {"text": "how are you", "start_s": 1.6, "end_s": 2.2, "caption": None}]
    op = CaptionOperator(settings)
    op.ensure_setup()
    out = op.process(t, Deadline(60))
    s = out.clips[1]["sentences"]
    assert 'They say: "hello there."' in s[0]["caption"] and "speaking" in s[0]["caption"]
    assert "listening" in s[1]["caption"] and "how are you" not in s[1]["caption"]
    assert out.clips[1]["tags"]["state"] == "mixed"


def make_tiny_blip(path):
    """A randomly initialised BLIP captioner saved with save_pretrained (proves the local-dir path)."""
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    torch.manual_seed(0)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "person", "is", "talking", "smiling", "to", "the", "camera"]
    tok = BertTokenizer(vocab={w: i for i, w in enumerate(words)})
    proc = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok)
    cfg = BlipConfig(text_config=dict(vocab_size=len(words), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                      num_attention_heads=2, max_position_embeddings=64, bos_token_id=2, sep_token_id=3,
                                      pad_token_id=0),
                     vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                        image_size=32, patch_size=8), projection_dim=16)
    model = BlipForConditionalGeneration(cfg)
    with torch.no_grad():  # make the random decoder emit real words (never [UNK]/[PAD])
        model.text_decoder.cls.predictions.decoder.bias[:5] = -100.0
    model.save_pretrained(path)
    proc.save_pretrained(path)
    return path


def test_vlm_backend_from_local_dir(settings, composite, tmp_path):
    from models.registry import user_model
    from operators.base import Deadline
    from operators.captions import CaptionOperator

    _, _, task = composite
    d = make_tiny_blip(tmp_path / "tiny-blip")
    s = settings.model_copy(deep=True)
    s.captions.captioner = "vlm"
    s.captions.vlm_model_dir = str(d)
    s.captions.vlm_max_new_tokens = 6
    op = CaptionOperator(s)
    op.ensure_setup()
    t = copy.deepcopy(task)
    t.clips = t.clips[:1]
    out = op.process(t, Deadline(120))
    c = out.clips[0]
    assert c["tags"]["captioner"] == "vlm:blip"
    words = c["caption"].split()
    assert words and set(words) <= {"a", "person", "is", "talking", "smiling", "to", "the", "camera"}
    prov = out.provenance["captions"]
    assert prov["model"] == "vlm:blip" and prov["weights_sha256"] == user_model(d, "vlm").digest


def test_vlm_without_model_dir_rejects_with_model_missing(settings, tmp_path):
    from operators.base import VideoTask, run_operator
    from operators.captions import CaptionOperator

    s = settings.model_copy(deep=True)
    s.captions.captioner = "vlm"
    s.captions.vlm_model_dir = str(tmp_path / "nope")
    out = run_operator(CaptionOperator(s), VideoTask(uri="x", video_id="v", clips=[{"clip_id": "c"}]), 30)
    assert out.status == "rejected" and out.rejects[-1]["reason"] == "model_missing"
