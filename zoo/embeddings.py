"""The result of ``embed``: vectors that know which space they live in.

Also the numeric post-processing every adapter shares: L2 normalization, Matryoshka
truncation, and int8 / binary quantization with the same calibration rule as
sentence-transformers' ``quantize_embeddings``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from zoo.errors import InvalidInputError, SpaceMismatchError

Precision = Literal["float32", "float16", "int8", "uint8", "binary", "ubinary"]
PRECISIONS: tuple[str, ...] = ("float32", "float16", "int8", "uint8", "binary", "ubinary")


@dataclass(frozen=True, eq=False)
class Embeddings:
    """Vectors from one model, row i for input i.

    Attributes:
        vectors: (N, D) float32/float16, (N, D) int8/uint8 codes, or (N, ceil(D/8)) packed bits.
        space: the embedding space id; vectors compare only within one space.
        model: the registry name of the model that made them.
        modality: what was embedded ("text", "image", ...).
        normalized: whether float rows are unit length.
        precision: the numeric format of ``vectors``.
        dim: the logical dimension (D, also for packed bits).
        info: free-form facts about the call (prompt used, truncated items, ...).
    """

    vectors: np.ndarray
    space: str
    model: str
    modality: str
    normalized: bool
    precision: str = "float32"
    dim: int = 0
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        vectors = self.vectors
        if not isinstance(vectors, np.ndarray) or vectors.ndim != 2:
            got = f"shape {vectors.shape}" if isinstance(vectors, np.ndarray) else type(vectors).__name__
            raise InvalidInputError(f"Embeddings.vectors must be a 2-D numpy array (n, dim), not {got}")
        if self.vectors.dtype.kind not in "fiub":
            raise InvalidInputError(f"Embeddings.vectors must hold numbers, not dtype {self.vectors.dtype}")
        for name in ("space", "model", "modality", "precision"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise InvalidInputError(f"Embeddings.{name} must be a string, not {type(value).__name__}")
        if not self.space:
            raise InvalidInputError("Embeddings.space must name the embedding space")
        if not isinstance(self.info, dict):
            raise InvalidInputError(f"Embeddings.info must be a dict, not {type(self.info).__name__}")
        if not self.dim:
            object.__setattr__(self, "dim", int(self.vectors.shape[1]))

    def __len__(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.vectors.shape)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.vectors, dtype=dtype)

    def __repr__(self) -> str:
        return (f"Embeddings(n={len(self)}, dim={self.dim}, space={self.space!r}, modality={self.modality!r}, "
                f"precision={self.precision!r}, normalized={self.normalized})")


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, eps)


def truncate_dim(x: np.ndarray, dim: int, *, renormalize: bool) -> np.ndarray:
    """Matryoshka truncation: keep the first ``dim`` dimensions, then renormalize."""
    out = np.ascontiguousarray(x[:, :dim])
    return l2_normalize(out) if renormalize else out


def quantize(x: np.ndarray, precision: str, *, calibration: np.ndarray | None = None) -> np.ndarray:
    """Quantize float vectors exactly as sentence-transformers' ``quantize_embeddings`` (6.x) does.

    int8/uint8: per-dimension ranges (min, max) from ``calibration`` (or from ``x`` itself,
    which then needs at least two rows), 255 equal steps, ``floor`` then clip to 0..255; int8
    codes are shifted by -128. binary/ubinary: ``x > 0`` packed 8 to a byte (``np.packbits``);
    binary is the packed byte minus 128 as int8.
    """
    if precision == "float32":
        return np.asarray(x, dtype=np.float32)
    if precision == "float16":
        return np.asarray(x, dtype=np.float16)
    if precision in ("int8", "uint8"):
        ref = x if calibration is None else np.asarray(calibration, dtype=np.float32)
        if ref.ndim != 2 or ref.shape[1] != x.shape[1] or len(ref) < 2:
            raise InvalidInputError(
                f"{precision} needs per-dimension ranges from at least 2 vectors: pass calibration= (M, {x.shape[1]}) "
                f"or embed more items at once (got {ref.shape})"
            )
        starts = ref.min(axis=0)
        steps = (ref.max(axis=0) - starts) / 255
        steps = np.where(steps == 0, np.float32(1.0), steps)  # constant dimension: avoid 0/0
        codes = np.clip(np.floor((x - starts) / steps), 0, 255)
        return codes.astype(np.uint8) if precision == "uint8" else (codes - 128).astype(np.int8)
    if precision in ("binary", "ubinary"):
        packed = np.packbits(x > 0, axis=-1)
        return (packed.astype(np.int16) - 128).astype(np.int8) if precision == "binary" else packed
    raise InvalidInputError(f"precision must be one of {PRECISIONS}, not {precision!r}")


def _as_float(e: Embeddings | np.ndarray, side: str) -> np.ndarray:
    """``e`` as an (n, dim) float32 matrix of finite numbers; anything else is an InvalidInputError naming ``side``."""
    if isinstance(e, Embeddings):
        if e.precision not in ("float32", "float16"):
            raise InvalidInputError(f"similarity needs float vectors; {side} has precision {e.precision!r}")
        arr = np.asarray(e.vectors, dtype=np.float32)
    else:
        if e is None or isinstance(e, (str, bytes, bytearray, dict, set, bool, int, float, complex)):
            raise InvalidInputError(f"{side} must be Embeddings or an (n, dim) array of numbers, "
                                    f"not {type(e).__name__}")
        try:
            arr = np.asarray(e)
            if arr.dtype.kind not in "fiub":
                raise TypeError(f"dtype {arr.dtype}")
            arr = arr.astype(np.float32)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidInputError(f"{side} must be Embeddings or an (n, dim) array of numbers ({exc})") from None
        arr = arr[None, :] if arr.ndim == 1 else arr
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise InvalidInputError(f"{side} must be an (n, dim) array of vectors, not shape {arr.shape}")
    if not np.isfinite(arr).all():
        row = int(np.flatnonzero(~np.isfinite(arr).all(axis=1))[0])
        raise InvalidInputError(f"{side} row {row} has a NaN or infinite value")
    return arr


class SimilarityMatrix(np.ndarray):
    """A plain similarity matrix that also says which stitch, if any, joined the two spaces.

    ``stitch`` is None when both sides came from one space, else the registered stitch's name.
    """

    stitch: str | None = None

    def __array_finalize__(self, obj) -> None:
        self.stitch = getattr(obj, "stitch", None)


def _joined(a, b, stitch: bool | str):
    """a and b in one space: as they are, or joined by a registered stitch (name or found by space)."""
    if not (isinstance(a, Embeddings) and isinstance(b, Embeddings)) or a.space == b.space:
        return a, b, None
    if stitch is False:
        raise SpaceMismatchError(
            f"cannot compare vectors from space {a.space!r} (model {a.model}) with space {b.space!r} "
            f"(model {b.model}) with stitch=False: embed both with one model, or join the spaces with a stitch"
        )
    from zoo import stitching

    if isinstance(stitch, str):
        st = stitching.load_stitch(stitch)
        if (st.source.space, st.target.space) == (a.space, b.space):
            return st.apply(a), b, stitch
        if (st.source.space, st.target.space) == (b.space, a.space):
            return a, st.apply(b), stitch
        raise SpaceMismatchError(f"stitch {stitch!r} maps {st.source.space!r} -> {st.target.space!r}; "
                                 f"it does not join {a.space!r} and {b.space!r}")
    return stitching.join(a, b)


def similarity(a: Embeddings | np.ndarray, b: Embeddings | np.ndarray, *, metric: str | None = None,
               stitch: bool | str = True) -> SimilarityMatrix:
    """Pairwise similarity matrix (len(a), len(b)).

    Vectors from two different spaces are not comparable: unless a registered stitch joins
    the spaces (``zoo.stitch``, ``zoo.stitching.register_stitch``), they are refused. With
    ``stitch=True`` (default) such a stitch is found by the spaces; ``stitch="name"`` picks
    one; ``stitch=False`` refuses. The result's ``.stitch`` names the stitch used (or None).
    The metric is cosine unless the model's card says dot product (or ``metric`` is given).
    """
    if metric is not None and (not isinstance(metric, str) or metric not in ("cosine", "dot")):
        raise InvalidInputError(f"metric must be 'cosine' or 'dot', not {metric!r:.80}")
    if not isinstance(stitch, (bool, str)):
        raise InvalidInputError(f"stitch must be True, False or a stitch name, not {type(stitch).__name__}")
    _as_float(a, "a"), _as_float(b, "b")  # refuse bad arguments before looking for a stitch
    metric_of_a = a.info.get("similarity", "cosine") if isinstance(a, Embeddings) else "cosine"
    a, b, used = _joined(a, b, stitch)
    x, y = _as_float(a, "a"), _as_float(b, "b")
    if x.shape[1] != y.shape[1]:
        raise InvalidInputError(f"dimension mismatch: a has dim {x.shape[1]}, b has dim {y.shape[1]}")
    metric = metric or ("cosine" if used else metric_of_a)  # stitched vectors are compared by angle
    if metric == "cosine":
        x, y = l2_normalize(x), l2_normalize(y)
    elif metric != "dot":
        raise InvalidInputError(f"metric must be 'cosine' or 'dot', not {metric!r:.80}")
    out = (x @ y.T).view(SimilarityMatrix)
    out.stitch = used
    return out
