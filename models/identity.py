"""Face identity embeddings from aligned 112x112 faces.

* ``mobilefacenet`` (default; registry ``mobilefacenet``): 128-d, onnxruntime. Input [N, 3, 112, 112]
  RGB scaled (x - 127.5) / 128. Measured on the shared media (docs/PEOPLE.md): same person mean cosine
  0.84, different people 0.02, threshold 0.40.
* ``arcface``: an insightface ArcFace recogniser ONNX of the user's (``people.arcface_weights``) read
  through ``insightface.model_zoo.get_model``, which routes square >=112 inputs to ``ArcFaceONNX``; its
  own input mean/std are used. Its sha256 is computed for provenance.

Faces are aligned with insightface's ``face_align.norm_crop`` (similarity transform of the 5 landmarks to
the ArcFace template). Embeddings are L2-normalised; compare them by dot product (cosine).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from models.registry import MissingModelError, ResolvedModel, resolve_for, user_model


def align_face(frame_bgr: np.ndarray, kps: np.ndarray, size: int = 112) -> np.ndarray:
    """The face warped to the ArcFace 5-point template: size x size BGR uint8."""
    import warnings

    from insightface.utils import face_align

    with warnings.catch_warnings():  # scikit-image's SimilarityTransform.estimate deprecation, inside insightface
        warnings.simplefilter("ignore", FutureWarning)
        return face_align.norm_crop(frame_bgr, landmark=np.asarray(kps, np.float32).reshape(5, 2), image_size=size)


def l2n(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-8)


class MobileFaceNet:
    name = "mobilefacenet"

    def __init__(self, model: ResolvedModel):
        import onnxruntime as ort

        self.model = model
        from models.faces import ort_options

        self.sess = ort.InferenceSession(str(model.path), sess_options=ort_options(), providers=["CPUExecutionProvider"])
        self.input_name = self.sess.get_inputs()[0].name
        self.dim = int(self.sess.get_outputs()[0].shape[-1])

    def embed(self, aligned_bgr: list[np.ndarray] | np.ndarray) -> np.ndarray:
        """[N, dim] L2-normalised embeddings of aligned 112x112 BGR faces."""
        if len(aligned_bgr) == 0:
            return np.zeros((0, self.dim), np.float32)
        x = np.stack([a[:, :, ::-1] for a in aligned_bgr]).astype(np.float32)
        x = ((x - 127.5) / 128.0).transpose(0, 3, 1, 2)
        return l2n(self.sess.run(None, {self.input_name: np.ascontiguousarray(x)})[0])


class ArcFace:
    name = "arcface"

    def __init__(self, model: ResolvedModel):
        from insightface.model_zoo import model_zoo

        self.model = model
        from models.faces import ort_options

        self.net = model_zoo.get_model(str(model.path), providers=["CPUExecutionProvider"], sess_options=ort_options())
        if self.net is None or getattr(self.net, "taskname", "") != "recognition":
            raise ValueError(f"{model.path} is not an ArcFace recogniser (insightface routed it to {type(self.net).__name__})")
        self.net.prepare(ctx_id=-1)
        self.dim = int(self.net.output_shape[-1])

    def embed(self, aligned_bgr: list[np.ndarray] | np.ndarray) -> np.ndarray:
        if len(aligned_bgr) == 0:
            return np.zeros((0, self.dim), np.float32)
        size = self.net.input_size[0]
        imgs = [a if a.shape[0] == size else __import__("cv2").resize(a, (size, size)) for a in aligned_bgr]
        return l2n(self.net.get_feat(imgs))


def load_identity_model(settings):
    cfg = settings.people
    if cfg.identity_model == "mobilefacenet":
        return MobileFaceNet(resolve_for(settings, "mobilefacenet"))
    if cfg.identity_model == "arcface":
        if not cfg.arcface_weights:
            raise MissingModelError("arcface", Path("<people.arcface_weights>"),
                                    "is not set (identity_model 'arcface' needs a local insightface recogniser .onnx)")
        return ArcFace(user_model(cfg.arcface_weights, "arcface"))
    raise ValueError(f"unknown identity model {cfg.identity_model!r}")


def cluster_embeddings(emb: np.ndarray, threshold: float, cannot_link: set[tuple[int, int]] | None = None) -> list[int]:
    """Average-linkage agglomerative clustering by cosine similarity: clusters merge while their mean
    pairwise similarity is >= threshold and no pair across them is in cannot_link (e.g. two tracks
    visible at the same time). Returns a label per row, numbered in order of first row."""
    n = len(emb)
    if n == 0:
        return []
    e = l2n(emb)
    sim = e @ e.T
    clusters: list[list[int]] = [[i] for i in range(n)]
    cl = cannot_link or set()
    while True:
        best, pair = threshold, None
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                if any((min(i, j), max(i, j)) in cl for i in clusters[a] for j in clusters[b]):
                    continue
                s = float(sim[np.ix_(clusters[a], clusters[b])].mean())
                if s >= best:
                    best, pair = s, (a, b)
        if pair is None:
            break
        a, b = pair
        clusters[a] = sorted(clusters[a] + clusters[b])
        del clusters[b]
    clusters.sort(key=lambda c: c[0])
    labels = [0] * n
    for k, c in enumerate(clusters):
        for i in c:
            labels[i] = k
    return labels
