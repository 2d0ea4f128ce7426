"""The result of ``embed``: vectors that know which space they live in.

Also the numeric post-processing every adapter shares: L2 normalization, Matryoshka
truncation, and int8 / binary quantization with the same calibration rule as
sentence-transformers' ``quantize_embeddings``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from zoo.errors import InvalidInputError, SpaceMismatchError

Precision = Literal["float32", "float16", "int8", "uint8", "binary", "ubinary"]
PRECISIONS: tuple[str, ...] = ("float32", "float16", "int8", "uint8", "binary", "ubinary")
FLOAT_PRECISIONS: tuple[str, ...] = ("float32", "float16")
#: The numpy dtype of each precision's ``vectors``.
PRECISION_DTYPES: dict[str, str] = {"float32": "float32", "float16": "float16", "int8": "int8", "uint8": "uint8",
                                    "binary": "int8", "ubinary": "uint8"}
#: The ``format`` entry of a saved Embeddings file's metadata.
FILE_FORMAT = "zoo.embeddings/1"


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

    # -- rows ------------------------------------------------------------------------------------
    def __getitem__(self, key: Any) -> Embeddings:
        """Rows as Embeddings of the same space: ``e[0]`` (one row), ``e[1:3]``, ``e[[0, 2]]``, ``e[mask]``.

        Every key gives Embeddings, an integer too (a 1-row Embeddings, not a bare vector), so a
        row stays tied to its space and precision: ``zoo.similarity(e[0], e)`` is a (1, N)
        matrix. ``e.vectors[i]`` is row i as a plain 1-D array. The rows are a copy. Per-row
        arrays in ``info`` (``expert_weights``...) follow the rows; counts about the call that made
        them (``truncated``, ``cache_hits``...) are dropped; other facts are kept.
        """
        n = len(self)
        if isinstance(key, (bool, str, bytes, float, dict, set)) or key is None:
            raise InvalidInputError(f"Embeddings rows are picked by an int, a slice, a list of ints or a boolean "
                                    f"mask, not {type(key).__name__}")
        if isinstance(key, (int, np.integer)) and not -n <= int(key) < n:
            raise IndexError(f"row {int(key)} out of range for {n} embeddings")
        try:
            rows = np.arange(n)[key]
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"cannot pick Embeddings rows with {type(key).__name__} ({exc})") from None
        rows = np.atleast_1d(rows)
        if rows.ndim != 1:
            raise InvalidInputError(f"Embeddings rows are picked by a 1-D index, not shape {rows.shape}")
        return self._take(rows)

    def _take(self, rows: np.ndarray) -> Embeddings:
        n, info = len(self), {}
        for k, v in self.info.items():
            if isinstance(v, np.ndarray) and v.ndim and len(v) == n:
                info[k] = v[rows]
            elif not isinstance(v, (int, float)) or isinstance(v, bool):
                info[k] = v
        return Embeddings(vectors=self.vectors[rows], space=self.space, model=self.model, modality=self.modality,
                          normalized=self.normalized, precision=self.precision, dim=self.dim, info=info)

    def __iter__(self) -> Iterator[Embeddings]:
        """One 1-row Embeddings per row, in order (as ``e[i]``)."""
        for i in range(len(self)):
            yield self._take(np.array([i]))

    def __add__(self, other: Any) -> Embeddings:
        """``e1 + e2``: the rows of both, in order (see :meth:`concat`)."""
        if not isinstance(other, Embeddings):
            return NotImplemented
        return Embeddings.concat([self, other])

    @classmethod
    def concat(cls, parts: Sequence[Embeddings]) -> Embeddings:
        """The rows of every part, in order, as one Embeddings.

        Every part must come from one space (else ``SpaceMismatchError``: vectors of two spaces do
        not belong in one matrix; join them with a stitch first) and have one precision and one
        dim (else ``InvalidInputError``). ``model`` and ``modality`` are the parts' own when they
        agree, else their names joined by "+" and "mixed". ``normalized`` holds when it holds for
        every part. Per-row arrays in ``info`` are concatenated where every part has them, facts
        shared by every part are kept, the rest is dropped.
        """
        if isinstance(parts, Embeddings) or not isinstance(parts, (list, tuple)):
            raise InvalidInputError(f"Embeddings.concat takes a list of Embeddings, not {type(parts).__name__}")
        parts = list(parts)
        if not parts:
            raise InvalidInputError("Embeddings.concat needs at least one Embeddings (the space comes from them)")
        for i, p in enumerate(parts):
            if not isinstance(p, Embeddings):
                raise InvalidInputError(f"Embeddings.concat: item {i} is {type(p).__name__}, not Embeddings")
        first = parts[0]
        for i, p in enumerate(parts[1:], start=1):
            if p.space != first.space:
                raise SpaceMismatchError(f"cannot concatenate Embeddings of space {first.space!r} (model "
                                         f"{first.model}) with space {p.space!r} (model {p.model}, item {i}): one "
                                         "matrix holds one space; join the spaces with a stitch first")
            if p.precision != first.precision:
                raise InvalidInputError(f"cannot concatenate precision {first.precision!r} with {p.precision!r} "
                                        f"(item {i}): embed both at one precision")
            if p.dim != first.dim or p.vectors.shape[1] != first.vectors.shape[1]:
                raise InvalidInputError(f"cannot concatenate dim {first.dim} with dim {p.dim} (item {i})")
        models = list(dict.fromkeys(p.model for p in parts))
        modalities = set(p.modality for p in parts)
        info: dict[str, Any] = {}
        for key, value in first.info.items():
            values = [p.info.get(key, _MISSING) for p in parts]
            if all(isinstance(v, np.ndarray) and v.ndim and len(v) == len(p) for v, p in zip(values, parts,
                                                                                           strict=True)):
                if len({v.shape[1:] for v in values}) == 1:
                    info[key] = np.concatenate(values)
            elif not isinstance(value, np.ndarray) and not isinstance(value, (int, float)) \
                    and all(_same_fact(v, value) for v in values):
                info[key] = value
        return cls(vectors=np.concatenate([p.vectors for p in parts]), space=first.space, model="+".join(models),
                   modality=first.modality if len(modalities) == 1 else "mixed",
                   normalized=all(p.normalized for p in parts), precision=first.precision, dim=first.dim, info=info)

    # -- conversions -----------------------------------------------------------------------------
    def to_torch(self):
        """The vectors as a torch tensor (a copy; dtype as ``vectors``: float32, float16, int8 or uint8)."""
        import torch

        return torch.tensor(np.ascontiguousarray(self.vectors))

    def save(self, path: str | os.PathLike) -> None:
        """Write the vectors and what they are (space, model, modality, precision, dim) to a safetensors file.

        ``info`` goes along where it can: per-row arrays as tensors, JSON-able facts in the
        metadata; anything else is left out. :meth:`load` reads the file back.
        """
        from safetensors.numpy import save_file

        tensors = {"vectors": np.ascontiguousarray(self.vectors)}
        facts: dict[str, Any] = {}
        for key, value in self.info.items():
            if isinstance(value, np.ndarray):
                if value.dtype.kind in "fiub" and value.ndim:
                    tensors[f"info.{key}"] = np.ascontiguousarray(value)
                continue
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                continue
            facts[str(key)] = value
        metadata = {"format": FILE_FORMAT, "space": self.space, "model": self.model, "modality": self.modality,
                    "normalized": json.dumps(bool(self.normalized)), "precision": self.precision,
                    "dim": str(int(self.dim)), "info": json.dumps(facts)}
        save_file(tensors, os.fspath(path), metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Embeddings:
        """Read Embeddings written by :meth:`save`. A file that is not one is an ``InvalidInputError`` naming it."""
        from safetensors import SafetensorError, safe_open

        where = os.fspath(path)
        try:
            with safe_open(where, framework="np") as f:
                meta = f.metadata() or {}
                if meta.get("format") != FILE_FORMAT:
                    raise InvalidInputError(f"{where} is not a saved Embeddings file (no {FILE_FORMAT!r} format "
                                            "entry in its metadata)")
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
        except FileNotFoundError:
            raise
        except (SafetensorError, OSError, ValueError) as exc:
            if isinstance(exc, InvalidInputError):
                raise
            raise InvalidInputError(f"{where} is not a readable safetensors file ({exc})") from None
        try:
            precision, dim = meta["precision"], int(meta["dim"])
            normalized, facts = json.loads(meta["normalized"]), json.loads(meta["info"])
            space, model, modality = meta["space"], meta["model"], meta["modality"]
        except (KeyError, ValueError, TypeError) as exc:
            raise InvalidInputError(f"{where}: damaged Embeddings metadata ({type(exc).__name__}: {exc})") from None
        vectors = tensors.pop("vectors", None)
        if precision not in PRECISIONS or not isinstance(normalized, bool) or not isinstance(facts, dict):
            raise InvalidInputError(f"{where}: damaged Embeddings metadata (precision {precision!r})")
        if vectors is None or vectors.ndim != 2 or vectors.dtype != np.dtype(PRECISION_DTYPES[precision]):
            got = "none" if vectors is None else f"{vectors.dtype} {vectors.shape}"
            raise InvalidInputError(f"{where}: the vectors ({got}) do not fit precision {precision!r}")
        width = (dim + 7) // 8 if precision in ("binary", "ubinary") else dim
        if dim < 1 or vectors.shape[1] != width:
            raise InvalidInputError(f"{where}: the vectors have {vectors.shape[1]} columns; dim {dim} at precision "
                                    f"{precision!r} needs {width}")
        info = dict(facts)
        info.update({k.removeprefix("info."): v for k, v in tensors.items() if k.startswith("info.")})
        return cls(vectors=vectors, space=space, model=model, modality=modality, normalized=normalized,
                   precision=precision, dim=dim, info=info)


_MISSING = object()


def _same_fact(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - an object whose == is not a plain truth value
        return False


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
    from zoo.spaces import stitching

    if isinstance(stitch, str):
        st = stitching.load_stitch(stitch)
        if (st.source.space, st.target.space) == (a.space, b.space):
            return st.apply(a), b, stitch
        if (st.source.space, st.target.space) == (b.space, a.space):
            return a, st.apply(b), stitch
        raise SpaceMismatchError(f"stitch {stitch!r} maps {st.source.space!r} -> {st.target.space!r}; "
                                 f"it does not join {a.space!r} and {b.space!r}")
    return stitching.join(a, b)


def _precision(e: Any) -> str:
    """The precision of ``e``'s vectors: an Embeddings says it; a plain array counts as float vectors."""
    return e.precision if isinstance(e, Embeddings) else "float32"


def _check_codes(e: Embeddings, side: str) -> None:
    want = np.dtype(PRECISION_DTYPES.get(e.precision, "float32"))
    width = (e.dim + 7) // 8 if e.precision in ("binary", "ubinary") else e.dim
    if e.vectors.dtype != want or e.vectors.shape[1] != width:
        raise InvalidInputError(f"{side}: {e.precision} Embeddings of dim {e.dim} hold {want} codes of width {width}, "
                                f"not {e.vectors.dtype} of width {e.vectors.shape[1]}")


def _sign_bits(e: Embeddings) -> np.ndarray:
    """Packed binary/ubinary codes as (n, dim) float32 of -1/+1 (the sign of each original value)."""
    packed = e.vectors if e.precision == "ubinary" else (e.vectors.astype(np.int16) + 128).astype(np.uint8)
    bits = np.unpackbits(packed, axis=1)[:, : e.dim]
    return bits.astype(np.float32) * 2 - 1


def _quantized_similarity(a: Any, b: Any, metric: str | None) -> SimilarityMatrix:
    """Similarity of two quantized Embeddings of one space and one precision (see :func:`similarity`)."""
    pa, pb = _precision(a), _precision(b)
    for side, e, other in (("a", a, pb), ("b", b, pa)):
        if not isinstance(e, Embeddings):
            raise InvalidInputError(f"cannot compare {other} Embeddings with a plain array ({side}): a plain array "
                                    "counts as float vectors; pass both sides as Embeddings of one precision")
    if pa != pb:
        raise InvalidInputError(f"cannot compare precision {pa!r} (a) with precision {pb!r} (b): quantized codes "
                                "compare only with codes of the same precision; embed both sides at one precision")
    if a.space != b.space:
        raise SpaceMismatchError(f"cannot compare {pa} vectors from space {a.space!r} (model {a.model}) with space "
                                 f"{b.space!r} (model {b.model}): quantized vectors compare only within one space (a "
                                 "stitch maps float vectors); embed both with one model")
    _check_codes(a, "a"), _check_codes(b, "b")
    if a.dim != b.dim:
        raise InvalidInputError(f"dimension mismatch: a has dim {a.dim}, b has dim {b.dim}")
    if pa in ("binary", "ubinary"):
        if metric not in (None, "hamming"):
            raise InvalidInputError(f"{pa} codes are compared by Hamming similarity; pass metric=None or 'hamming', "
                                    f"not {metric!r}")
        x, y = _sign_bits(a), _sign_bits(b)
        out = (x @ y.T) / np.float32(a.dim)  # = 1 - 2 * hamming / dim
    else:
        if metric == "hamming":
            raise InvalidInputError(f"metric 'hamming' is for binary/ubinary codes, not {pa}")
        x, y = a.vectors.astype(np.float32), b.vectors.astype(np.float32)
        if (metric or a.info.get("similarity", "cosine")) == "cosine":
            x, y = l2_normalize(x), l2_normalize(y)
        out = x @ y.T
    out = np.asarray(out, dtype=np.float32).view(SimilarityMatrix)
    out.stitch = None
    return out


def similarity(a: Embeddings | np.ndarray, b: Embeddings | np.ndarray, *, metric: str | None = None,
               stitch: bool | str = True) -> SimilarityMatrix:
    """Pairwise similarity matrix (len(a), len(b)).

    Vectors from two different spaces are not comparable: unless a registered stitch joins
    the spaces (``zoo.stitch``, ``zoo.stitching.register_stitch``), they are refused. With
    ``stitch=True`` (default) such a stitch is found by the spaces; ``stitch="name"`` picks
    one; ``stitch=False`` refuses. The result's ``.stitch`` names the stitch used (or None).
    The metric is cosine unless the model's card says dot product (or ``metric`` is given).

    Quantized Embeddings (``precision`` int8, uint8, binary or ubinary) compare with Embeddings
    of the same precision and the same space (no stitch):

    - int8/uint8: the integer codes, converted to float, by the card's metric (cosine or dot);
      codes are comparable only when both sides were quantized with the same ranges (pass one
      ``calibration=`` to every ``embed``);
    - binary/ubinary: Hamming similarity ``1 - 2 * hamming / dim``, in [-1, 1]: the cosine of
      the +1/-1 sign vectors the bits stand for (1: every sign agrees, 0: half do); ``metric``
      may only be None or "hamming".

    Comparing float with quantized vectors (a plain array counts as float), or two different
    quantized precisions, is an ``InvalidInputError``.
    """
    if metric is not None and (not isinstance(metric, str) or metric not in ("cosine", "dot", "hamming")):
        raise InvalidInputError(f"metric must be 'cosine', 'dot' or 'hamming', not {metric!r:.80}")
    if not isinstance(stitch, (bool, str)):
        raise InvalidInputError(f"stitch must be True, False or a stitch name, not {type(stitch).__name__}")
    if _precision(a) not in FLOAT_PRECISIONS or _precision(b) not in FLOAT_PRECISIONS:
        return _quantized_similarity(a, b, metric)
    if metric == "hamming":
        raise InvalidInputError("metric 'hamming' is for binary/ubinary Embeddings; these are float vectors")
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
