"""A gallery entry (:class:`Item`), a search hit (:class:`Hit`) and the label of the experts behind a vector;
the checks on files users give (type by suffix, text decoding, query uploads) and the refusal of uploads
(:class:`FilesRefused`, a reason per file in words about that file)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.apps.demo.messages import _without_paths
from zoo.apps.demo.settings import (
    AUDIO_SUFFIXES,
    IMAGE_SUFFIXES,
    KIND_MODALITY,
    MAX_FILE_BYTES,
    MAX_FILE_SIZE,
    MAX_TEXT_CHARS,
    SHAPE_SUFFIXES,
    TEXT_SUFFIXES,
    VIDEO_SUFFIXES,
)
from zoo.errors import ZooError


@dataclass(frozen=True)
class Item:
    """One gallery entry. ``path`` is a file under the gallery folder; text items keep their ``text``."""

    id: str
    kind: str  # image, audio, shape, code, text, video
    title: str
    path: str = ""
    text: str = ""
    thumb: str = ""

    @property
    def modality(self) -> str:
        return KIND_MODALITY[self.kind]

    @property
    def payload(self) -> str:
        return self.text if self.kind in ("code", "text") else self.path

    def content_key(self) -> str:
        """``id`` plus a digest of the content: cached vectors are reused only for the same bytes."""
        data = self.text.encode() if self.kind in ("code", "text") else Path(self.path).read_bytes()
        return f"{self.id}:{hashlib.sha256(data).hexdigest()[:16]}"


@dataclass(frozen=True)
class Hit:
    item: Item
    score: float
    experts: str  # which experts made the item's vector, with their weights


Progress = Callable[[float, str], Any]


def _no_progress(_fraction: float, _desc: str) -> None:
    return None


def _safe_name(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-") or "item"


def expert_labels(info: dict, n: int, fallback: str) -> list[str]:
    """One label per vector naming its experts and their weights ("speech-transcript 0.55 + ...")."""
    experts, weights = info.get("experts"), info.get("expert_weights")
    if not experts or weights is None:
        return [fallback] * n
    weights = np.asarray(weights, dtype=np.float64).reshape(n, len(experts))
    return [fallback if np.isnan(row).any()  # a vector from the embedding cache: how it was made is not kept
            else " + ".join(f"{e} {w:.2f}" for e, w in sorted(zip(experts, row, strict=True), key=lambda t: -t[1]))
            if len(experts) > 1 else experts[0] for row in weights]


def _kind_of_suffix(suffix: str) -> str:
    for kind, suffixes in (("image", IMAGE_SUFFIXES), ("audio", AUDIO_SUFFIXES), ("shape", SHAPE_SUFFIXES),
                           ("video", VIDEO_SUFFIXES)):
        if suffix in suffixes:
            return kind
    if suffix == ".py":
        return "code"
    if suffix in TEXT_SUFFIXES:
        return "text"
    allowed = IMAGE_SUFFIXES + AUDIO_SUFFIXES + SHAPE_SUFFIXES + VIDEO_SUFFIXES + TEXT_SUFFIXES
    raise ValueError(f"files of type {suffix or '(none)'!r} are not accepted; use one of {', '.join(allowed)}")


def _decode_text(data: bytes, name: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{name} is not UTF-8 text") from exc
    if len(text) > MAX_TEXT_CHARS:
        raise ValueError(f"{name} has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    if not text.strip():
        raise ValueError(f"{name} is empty")
    return text


def _check_upload(path: Path, suffixes: tuple[str, ...]) -> None:
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"files of type {path.suffix or '(none)'!r} are not accepted here; use {', '.join(suffixes)}")
    if not path.is_file():
        raise ValueError("the uploaded file is missing; upload it again")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"the upload is over the {MAX_FILE_SIZE} limit")


class FilesRefused(ValueError):
    """Some uploads of :meth:`DemoApp.add_files` were refused (the others were added: ``added``). ``refused``
    holds (upload name, reason) pairs; the message names each refused file."""

    def __init__(self, added: list[Item], refused: list[tuple[str, str]]):
        self.added, self.refused = added, refused
        super().__init__("not added: " + "; ".join(f"{n} ({why})" for n, why in refused))


def _file_reason(exc: Exception, path: Path, item: Item | None) -> str:
    """Why an upload was refused, in words about that file: no server path, no ``input[0]`` (the file was the
    only input of its embed call), its gallery copy called by the upload's name."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
    copies = [str(path)] + ([item.path, Path(item.path).name] if item is not None and item.path else [])
    for copy in copies:  # the gallery copy's path and name (a digest and the stem) read as the upload's name
        text = text.replace(copy, path.name)
    text = re.sub(r"^(?:\S+: )?input\[0\]: ", "", text)
    if not isinstance(exc, (ZooError, ValueError, OSError)):
        text = f"cannot read it: {text}" if text != type(exc).__name__ else f"cannot read it ({text})"
    return _without_paths(text)
