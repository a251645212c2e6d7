"""The ordered list of stages. Each entry is an Operator class; pipeline/ turns each into a Ray Data
stage (an actor pool that loads the operator's models once) or runs them in-process for tests.

Work units (operators/units.py): the first stages run on the whole video (scope "video": probe, shots),
then the video is split into one unit per kept shot for the shot-scope stages, and joined again for the
remaining video-scope stages. :func:`phases` returns the three runs of stages.

To add a stage: write an Operator in operators/, then add it here at its place in the order.
"""
from __future__ import annotations

from operators.audio import AudioTracksOperator, SeparationOperator
from operators.asd import ConversationOperator
from operators.base import Operator
from operators.clips import ClipPlanOperator
from operators.people import IdentityOperator, PeopleOperator
from operators.probe import ProbeOperator
from operators.shots import ShotOperator
# faces / references / captions / embeddings (issue 6): always the LAST four stages, in this order
from operators.captions import CaptionOperator
from operators.embeddings import EmbeddingOperator
from operators.faces import FaceAnalysisOperator
from operators.references import ReferenceOperator
import pipeline.dedupe  # noqa: F401,E402  (registers the near-duplicate post-run pass)

STAGES: list[type[Operator]] = [
    ProbeOperator,
    ShotOperator,
    ClipPlanOperator,
    PeopleOperator,
    SeparationOperator,  # audio: vocals per kept shot in task.scratch["vocals"] (before conversation/ASD)
    ConversationOperator,  # conversation/ASD: frame_states etc. (the audio stage cuts speak/listen audio from them)
    AudioTracksOperator,  # audio: speak_audio / listen_audio / transcript / words / sentences per clip
    # --- insert people / separation / conversation / audio ABOVE this line ---
    # issue 6 (keep last, in this order): face analysis -> references -> captions -> embeddings
    FaceAnalysisOperator,
    # --- the stages above run per kept shot (scope "shot"), the ones below on the whole video again ---
    IdentityOperator,  # people of the whole video from every track's face embedding
    ReferenceOperator,
    CaptionOperator,
    EmbeddingOperator,
]


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def build_operators(settings) -> list[Operator]:
    wanted = settings.stages
    known = {s.name: s for s in STAGES}
    if wanted:
        unknown = [w for w in wanted if w not in known]
        if unknown:
            raise ValueError(f"unknown stages {unknown}; known: {list(known)}")
        if wanted[0] != STAGES[0].name:
            raise ValueError(f"the first stage must be {STAGES[0].name!r}")
    classes = [s for s in STAGES if not wanted or s.name in wanted]
    check_order(classes)
    return [cls(settings) for cls in classes]


def phases(operators: list[Operator]) -> tuple[list[int], list[int], list[int]]:
    """Indices of the head (video scope, before the first shot-scope stage), shot and tail stages."""
    scopes = [op.scope for op in operators]
    first = next((i for i, s in enumerate(scopes) if s == "shot"), len(scopes))
    last = max((i for i, s in enumerate(scopes) if s == "shot"), default=first - 1)
    head, shot, tail = list(range(first)), list(range(first, last + 1)), list(range(last + 1, len(scopes)))
    wrong = [operators[i].name for i in shot if scopes[i] != "shot"]
    if wrong:
        raise ValueError(f"stages {wrong} need the whole video but sit between per-shot stages; move them after the last shot-scope stage")
    return head, shot, tail


def check_order(classes: list[type[Operator]]) -> None:
    """Validate the contract before a run: known task parts, and every part a stage reads is written by
    an earlier stage."""
    written: set[str] = set()
    for cls in classes:
        cls.validate_contract()
        missing = [p for p in cls.reads if p not in written]
        if missing:
            raise ValueError(f"stage {cls.name!r} reads {missing}, which no earlier stage writes")
        written.update(cls.writes)
