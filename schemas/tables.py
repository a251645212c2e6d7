"""Arrow schemas of every table the pipeline writes, with a version, enforced on write.

Contract: later stages ADD columns to these tables; they never rename or retype existing ones. A column a
stage did not fill is null. Every Parquet file carries ``lpm.schema_version`` and ``lpm.table`` in its
metadata. ``python -m schemas.docgen`` renders docs/SCHEMA.md from the definitions here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1


def col(name: str, type_: pa.DataType, doc: str, nullable: bool = True) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


BOX = pa.list_(pa.float32(), 4)

# --------------------------------------------------------------------------------------------- videos
VIDEOS = [
    col("video_id", pa.string(), "Stable id: sha256 of the URI and the file content, 16 hex chars.", False),
    col("uri", pa.string(), "Input location as given (absolute path or URI).", False),
    col("status", pa.string(), "'ok' (processed), 'rejected' (see rejects/).", False),
    col("reason", pa.string(), "Reject reason code when status is 'rejected'."),
    col("size_bytes", pa.int64(), "File size."),
    col("container", pa.string(), "Container format name from ffprobe."),
    col("duration_s", pa.float64(), "Container duration in seconds."),
    col("fps", pa.float64(), "Average frame rate of the video stream."),
    col("frame_count", pa.int64(), "Number of video frames (counted packets when the header has none)."),
    col("width", pa.int32(), "Coded width in pixels (before rotation)."),
    col("height", pa.int32(), "Coded height in pixels (before rotation)."),
    col("rotation_deg", pa.int32(), "Display rotation from the stream's display matrix (0, 90, 180, 270); applied at decode by every stage."),
    col("display_width", pa.int32(), "Upright display width (sample aspect ratio and rotation applied): the frame every box and size refers to."),
    col("display_height", pa.int32(), "Upright display height (rotation applied)."),
    col("video_codec", pa.string(), "Video codec name."),
    col("pix_fmt", pa.string(), "Pixel format."),
    col("video_start_s", pa.float64(), "Start time of the video stream (audio is aligned to it)."),
    col("variable_frame_rate", pa.bool_(), "True when r_frame_rate and avg_frame_rate disagree."),
    col("has_audio", pa.bool_(), "An audio stream exists."),
    col("audio_codec", pa.string(), "Audio codec name."),
    col("audio_sample_rate", pa.int32(), "Audio sample rate in Hz."),
    col("audio_channels", pa.int32(), "Audio channel count."),
    col("audio_decoded_s", pa.float64(), "Seconds of audio decoded at probe time."),
    col("timestamps_regenerated", pa.bool_(), "The container's timestamps were broken (e.g. a concatenation of parts with different time bases): every stage read a copy with video frame n at n/fps and audio timed by sample count."),
    col("warnings", pa.list_(pa.string()), "Problems that did not stop processing ('code: message'; codes: audio_decode, video_decode, timestamps, timestamps_regenerated, borders)."),
    col("n_shots", pa.int32(), "Shots detected."),
    col("n_shots_kept", pa.int32(), "Shots kept after length and quality decisions."),
    col("n_clips", pa.int32(), "Single-person clips written to clips/."),
    col("code_version", pa.string(), "Version of this package that wrote the row."),
    col("config_hash", pa.string(), "Hash of the result-relevant configuration."),
]

# ---------------------------------------------------------------------------------------------- shots
SHOTS = [
    col("video_id", pa.string(), "Source video.", False),
    col("shot_index", pa.int32(), "0-based index of the shot within the video, in time order.", False),
    col("start_frame", pa.int64(), "First source frame (decode order index, 0-based) of the shot.", False),
    col("end_frame", pa.int64(), "One past the last source frame (exclusive).", False),
    col("start_s", pa.float64(), "Presentation time of start_frame (seconds from the video stream start).", False),
    col("end_s", pa.float64(), "Presentation time of end_frame (end of the last frame).", False),
    col("duration_s", pa.float64(), "end_s - start_s.", False),
    col("cut_in", pa.string(), "Detector that produced the cut opening the shot ('start' for the first shot)."),
    col("kept", pa.bool_(), "The shot passed every decision.", False),
    col("reason", pa.string(), "Reason code of the first failed check ('' when kept)."),
    col("quality", pa.map_(pa.string(), pa.float64()), "Quality scores by name (see docs/QUALITY.md); decisions are made from these."),
    col("n_people", pa.int32(), "Distinct person tracks in the shot (people stage)."),
    col("active_box", BOX, "Active picture [x0, y0, x1, y1] in upright source pixels: the frame minus the letterbox/pillarbox bars that stay through the shot. Detection, crops, clip media and references stay inside it."),
    col("border_crop", pa.string(), "Bars cropped away: 'none', 'letterbox' (top/bottom), 'pillarbox' (left/right) or 'windowbox' (both)."),
]

# ---------------------------------------------------------------------------------------------- clips
CLIPS = [
    col("clip_id", pa.string(), "Deterministic id: hash of video_id, shot_index, track_id, start_frame, end_frame.", False),
    col("video_id", pa.string(), "Source video.", False),
    col("shot_index", pa.int32(), "Shot the clip comes from.", False),
    col("track_id", pa.int32(), "Person track within the shot (-1: whole frame, no person stage).", False),
    col("start_frame", pa.int64(), "First source frame.", False),
    col("end_frame", pa.int64(), "One past the last source frame.", False),
    col("start_s", pa.float64(), "Start time in the source video.", False),
    col("end_s", pa.float64(), "End time in the source video.", False),
    col("duration_s", pa.float64(), "Clip length.", False),
    col("fps", pa.float64(), "Frame rate of the source (and of the clip media unless resampled).", False),
    col("quality", pa.map_(pa.string(), pa.float64()), "Quality scores of the clip's shot/window."),
    # people stage
    col("identity_id", pa.string(), "Identity within the video (video_id + cluster), stable across shots."),
    col("global_identity_id", pa.string(), "Identity across videos (global index)."),
    col("crop_box", BOX, "Stable crop [x0, y0, x1, y1] in source pixels."),
    col("frame_boxes", pa.list_(BOX), "Per clip frame, the tracked head box [x0, y0, x1, y1] in source pixels."),
    col("face_size_px", pa.float32(), "Median face box height in source pixels."),
    col("n_faces_in_shot", pa.int32(), "People tracked in the same shot."),
    col("identity_embedding", pa.list_(pa.float32()), "L2-normalised face embedding of the track."),
    col("video_codec", pa.string(), "Codec of the clip media (h264)."),
    col("video_bytes", pa.binary(), "Encoded single-person clip (MP4, H.264 + AAC) when output.clip_media is 'bytes'."),
    col("video_uri", pa.string(), "Location of the clip media when output.clip_media is 'uri'."),
    col("clip_width", pa.int32(), "Width of the clip media."),
    col("clip_height", pa.int32(), "Height of the clip media."),
    col("clip_fps", pa.float64(), "Frame rate of the clip media."),
    # conversation stage
    col("frame_states", pa.list_(pa.string()), "Per clip frame: speak, listen, idle or discard."),
    col("speak_scores", pa.list_(pa.float32()), "Per clip frame LR-ASD score (raw logit averaged over windows)."),
    col("speech_prob", pa.list_(pa.float32()), "Per clip frame speech presence (Silero VAD)."),
    col("mouth_open", pa.list_(pa.float32()), "Per clip frame mouth opening (landmarks, normalised by face size)."),
    col("segments", pa.list_(pa.struct([("state", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64())])), "State timeline."),
    col("clip_class", pa.string(), "speak, listen, idle or mixed."),
    col("state_shares", pa.map_(pa.string(), pa.float64()), "Share of frames per state."),
    col("sync_score", pa.float32(), "Audio-visual sync confidence of this person's mouth with the heard speech."),
    col("av_offset_s", pa.float32(), "Estimated audio-visual offset of this clip (positive: audio late): the peak of its offset scan."),
    col("av_offset_gain", pa.float32(), "How much the offset scan's peak beats lag zero (units of the offset signal, the sync head's log-odds by default). Below conversation.offset_min_gain (1.0 for the head) av_offset_s is not significant. The offset rule (docs/CONVERSATION.md, Offsets) acts on the pooled scan of all clips of the shot."),
    col("av_offset_confident", pa.bool_(), "This clip's av_offset_gain reaches conversation.offset_min_gain: a non-zero offset is established. False: offset unknown or not significant (never a reject)."),
    col("av_shift_s", pa.float32(), "Audio shift applied to the clip (s; positive: the audio was late and is taken this much later): frame_states were decided, and speak/listen audio and words are cut, on the shifted audio. 0.0 when none."),
    col("speak_audio", pa.binary(), "This person's voice only (16 kHz mono FLAC)."),
    col("listen_audio", pa.binary(), "What this person hears from others while listening (16 kHz mono FLAC)."),
    col("audio_sample_rate", pa.int32(), "Sample rate of speak_audio/listen_audio."),
    col("audio_status", pa.string(), "Audio stage outcome: ok, no_frame_states (conversation stage not run: speak/listen audio and words null), no_audio."),
    col("transcript", pa.string(), "Words spoken in the clip."),
    col("words", pa.list_(pa.struct([("word", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()), ("prob", pa.float32())])), "Word timings."),
    col("sentences", pa.list_(pa.struct([("text", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()), ("caption", pa.string())])), "Sentence-bounded segments with their captions."),
    col("heard_words", pa.list_(pa.struct([("word", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()), ("prob", pa.float32()), ("speaker", pa.string())])), "Words within the clip this person does not say (what they hear), clip-relative times; speaker: the clip_id of the person who said it, off_screen (nobody of the shot in speak) or overlap (two or more in speak)."),
    col("language", pa.string(), "Language of the transcript: the code Whisper detected or was given; 'en (assumed)' with an English-only model (it cannot detect language)."),
    col("asr_model", pa.string(), "ASR model(s) of words/transcript: '<name> sha256:<digest>' (comma-separated when a CTC aligner refined the times)."),
    # faces / captions / embeddings / references
    col("head_pose", pa.list_(pa.list_(pa.float32(), 3)), "Per analysed frame yaw, pitch, roll in degrees."),
    col("blendshapes_mean", pa.list_(pa.float32()), "Mean of the 52 MediaPipe blendshapes."),
    col("expression_stats", pa.map_(pa.string(), pa.float64()), "Expression statistics (dominant expression share, oscillation, ...)."),
    col("motion_stats", pa.map_(pa.string(), pa.float64()), "Head and body motion intensity."),
    col("tags", pa.map_(pa.string(), pa.string()), "Structured caption tags."),
    col("caption", pa.string(), "Caption text of the clip."),
    col("image_embedding", pa.list_(pa.float32()), "open_clip image embedding of the first frame."),
    col("text_embedding", pa.list_(pa.float32()), "open_clip text embedding of the caption."),
    col("phash", pa.list_(pa.string()), "Perceptual hashes of keyframes (hex)."),
    col("keyframe_thumbs", pa.binary(), "16x16 gray thumbnails (uint8, concatenated) of the phash keyframes: near-duplicate verification."),
    col("face_times_s", pa.list_(pa.float32()), "Clip-relative time of each face-analysed frame (head_pose entries)."),
    col("first_frame_jpeg", pa.binary(), "First frame of the clip media (JPEG)."),
    col(
        "references",
        pa.list_(
            pa.struct(
                [
                    ("kind", pa.string()),
                    ("label", pa.string()),
                    ("jpeg", pa.binary()),
                    ("source_video_id", pa.string()),
                    ("source_time_s", pa.float64()),
                    ("identity_id", pa.string()),
                    ("quality", pa.float32()),
                ]
            )
        ),
        "Identity references: kind global|body|expression, label (view or expression), JPEG, source.",
    ),
    col("reference_meta", pa.list_(pa.map_(pa.string(), pa.string())), "Per reference (same order): source clip/shot; body views: angle_deg, yaw_deg, orientation_source; expressions: label_score, min_blendshape_distance, yaw/pitch."),
    col("provenance", pa.map_(pa.string(), pa.string()), "Per column group: JSON of stage, model, weights sha256, params hash, code version."),
]

# -------------------------------------------------------------------------------------------- rejects
REJECTS = [
    col("uri", pa.string(), "Input the rejected item comes from.", False),
    col("video_id", pa.string(), "Source video ('' when the input could not be read at all)."),
    col("stage", pa.string(), "Stage that dropped the item (probe, shots, quality, people, conversation, ...).", False),
    col("level", pa.string(), "What was dropped: video, shot, track or clip.", False),
    col("reason", pa.string(), "Short reason code (see docs/REJECTS.md).", False),
    col("message", pa.string(), "Human-readable detail."),
    col("shot_index", pa.int32(), "Shot, when level is shot/track/clip."),
    col("track_id", pa.int32(), "Track, when level is track/clip."),
    col("clip_id", pa.string(), "Clip, when level is clip."),
    col("start_s", pa.float64(), "Start of the dropped span in the source."),
    col("end_s", pa.float64(), "End of the dropped span in the source."),
    col("duration_s", pa.float64(), "Length of the dropped span (for hours in the funnel)."),
]


@dataclass(frozen=True)
class TableSpec:
    name: str
    schema: pa.Schema
    sort_keys: tuple[str, ...]
    doc: str


def _schema(fields: list[pa.Field], name: str) -> pa.Schema:
    return pa.schema(fields, metadata={"lpm.table": name, "lpm.schema_version": str(SCHEMA_VERSION)})


TABLES: dict[str, TableSpec] = {
    "videos": TableSpec("videos", _schema(VIDEOS, "videos"), ("video_id",), "One row per input."),
    "shots": TableSpec("shots", _schema(SHOTS, "shots"), ("video_id", "shot_index"), "One row per detected shot."),
    "clips": TableSpec("clips", _schema(CLIPS, "clips"), ("video_id", "shot_index", "track_id", "start_frame"), "One row per single-person clip: the training unit."),
    "rejects": TableSpec("rejects", _schema(REJECTS, "rejects"), ("video_id", "stage", "level", "shot_index", "track_id", "start_s", "reason"), "One row per dropped or failed input, shot, track or clip."),
}


class SchemaError(ValueError):
    pass


def to_table(name: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Build a validated table from row dicts: unknown keys are an error, missing nullable columns are null."""
    spec = TABLES[name]
    known = set(spec.schema.names)
    for i, row in enumerate(rows):
        extra = set(row) - known
        if extra:
            raise SchemaError(f"{name}: row {i} has columns not in schema v{SCHEMA_VERSION}: {sorted(extra)}")
    rows = sorted(rows, key=lambda r: tuple(_sort_val(r.get(k)) for k in spec.sort_keys))
    arrays = []
    for field in spec.schema:
        values = [r.get(field.name) for r in rows]
        if not field.nullable and any(v is None for v in values):
            raise SchemaError(f"{name}.{field.name} is required but missing in some rows")
        try:
            arrays.append(pa.array(values, type=field.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise SchemaError(f"{name}.{field.name}: {exc}") from exc
    return pa.Table.from_arrays(arrays, schema=spec.schema)


def validate(name: str, table: pa.Table) -> pa.Table:
    """Check a table against the schema (names, order, types); returns it with the schema's metadata."""
    spec = TABLES[name]
    if table.schema.names != spec.schema.names:
        missing = set(spec.schema.names) - set(table.schema.names)
        extra = set(table.schema.names) - set(spec.schema.names)
        raise SchemaError(f"{name}: columns differ from schema v{SCHEMA_VERSION} (missing {sorted(missing)}, extra {sorted(extra)})")
    for got, want in zip(table.schema, spec.schema):
        if not got.type.equals(want.type):
            raise SchemaError(f"{name}.{want.name}: type {got.type} != {want.type}")
    return table.replace_schema_metadata(spec.schema.metadata)


def _sort_val(v: Any) -> tuple[int, Any]:
    if v is None:
        return (0, "")
    return (1, v)
