"""The demo's logic, testable without Gradio's server: :class:`DemoApp` holds the models, the gallery, its
indexes (a :mod:`zoo.store` collection per model, fed through the :mod:`zoo.cache` embedding cache, both on disk
under the cache folder, so a restart re-embeds nothing), search, uploads, the cards and the spaces."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from zoo.apps.demo.card_text import card_details, card_rows
from zoo.apps.demo.comparisons import Comparisons
from zoo.apps.demo.gallery import Gallery
from zoo.apps.demo.items import (
    FilesRefused,
    Hit,
    Item,
    Progress,
    _check_upload,
    _file_reason,
    _kind_of_suffix,
    _no_progress,
    _safe_name,
    expert_labels,
)
from zoo.apps.demo.settings import (
    AUDIO_SUFFIXES,
    DEFAULT_MODEL,
    IMAGE_SUFFIXES,
    KIND_MODALITY,
    MAX_TEXT_CHARS,
    SHAPE_SUFFIXES,
    TOP_K,
    VIDEO_SUFFIXES,
    default_cache_dir,
)
from zoo.catalog import registry
from zoo.errors import ZooError


class DemoApp(Comparisons):
    """Models, gallery and indexes of one demo. Thread-safe; one lock per model serializes its embedding."""

    def __init__(self, cache_dir: str | Path | None = None, default_model: str = DEFAULT_MODEL):
        self.cache_dir = Path(cache_dir or default_cache_dir()).resolve()
        self.gallery_dir = self.cache_dir / "gallery"
        self.temp_dir = self.cache_dir / "tmp"
        self.plots_dir = self.gallery_dir / "plots"
        self.default_model = default_model
        self.gallery = Gallery(self.gallery_dir)
        self._models: dict[str, Any] = {}
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()
        self._indexes: dict[str, tuple[dict[str, Item], Any]] = {}
        self._cache = self._store = None
        self._media: dict[str, Path] = {}  # token -> file under the cache folder (see media_token)
        self._media_key = os.urandom(16)
        self.blocks = None  # the gr.Blocks built on this app, once built

    @property
    def cache(self):
        """The gallery's embedding cache (``cache/embeddings.sqlite``): content + space fingerprint -> vector."""
        with self._guard:
            if self._cache is None:
                from zoo.data.cache import EmbeddingCache

                self._cache = EmbeddingCache(self.cache_dir / "embeddings.sqlite")
            return self._cache

    @property
    def store(self):
        """The vector store (``cache/store``) holding one collection per model and card version."""
        with self._guard:
            if self._store is None:
                from zoo.data.store import VectorStore

                self._store = VectorStore(self.cache_dir / "store")
            return self._store

    # -- media the browser may fetch
    def media_token(self, path: str | Path) -> str:
        """An opaque name under which :class:`RequestGuard` serves ``path`` at ``/zoo-media/<token>``: the browser
        sees this token, never the server path. Only files under the app's cache folder get one."""
        path = Path(path).resolve()
        if not path.is_relative_to(self.cache_dir):
            raise ValueError(f"{path.name} is not a file of this demo")
        digest = hashlib.blake2b(str(path).encode(), key=self._media_key, digest_size=12).hexdigest()
        token = digest + path.suffix.lower()
        with self._guard:
            self._media[token] = path
        return token

    def media_file(self, token: str) -> Path | None:
        """The file behind a token from :meth:`media_token` (None: unknown token or the file is gone)."""
        with self._guard:
            path = self._media.get(token)
        return path if path is not None and path.is_file() else None

    # -- models
    def model_lock(self, name: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(name, threading.RLock())

    def unavailable_reason(self, name: str) -> str | None:
        """None when the model's weights are on this machine, else why not (the card's offline note)."""
        card = registry.card(name)
        if card.offline_ready:
            return None
        from zoo.catalog.sources import resolve

        try:
            resolve(card, download=False)
        except ZooError:
            note = card.offline_note or "its weights come from the Hugging Face Hub and are not in the local cache"
            return f"{name}: weights not available offline. {note}"
        return None

    def model(self, name: str):
        with self.model_lock(name):
            if name not in self._models:
                if reason := self.unavailable_reason(name):
                    raise ZooError(reason)
                from zoo.catalog.loader import load

                self._models[name] = load(name)
            return self._models[name]

    def embed(self, name: str, payloads: Sequence, modality: str, *, cached: bool = False):
        """Embeddings of the payloads and one expert label per row; ``cached`` goes through :attr:`cache`."""
        model = self.model(name)
        with self.model_lock(name):
            e = model.embed(list(payloads), modality=modality, cache=self.cache if cached else None)
        return e, expert_labels(e.info, len(e), name)

    # -- index
    def collection(self, name: str):
        """The model's gallery collection. Named by the card's content too, so a changed card (weights,
        prompts, labels) starts a new collection instead of mixing old vectors with new ones."""
        return self.store.collection(f"gallery-{_safe_name(name)}-{registry.card(name).content_sha256()[:12]}")

    def index(self, name: str, progress: Progress = _no_progress) -> tuple[dict[str, Item], Any]:
        """The gallery items the model can embed (by content key) and the collection holding their vectors.

        Items already in the collection are not embedded again (a restart embeds nothing); the others
        go through the embedding cache and are added with their expert labels.
        """
        with self.model_lock(name):
            if name in self._indexes:
                return self._indexes[name]
            modalities = set(registry.card(name).modalities)
            items = {it.content_key(): it for it in self.gallery.items(progress) if it.modality in modalities}
            coll = self.collection(name)
            stored = {meta.get("key") for _, _, meta in coll.rows()}
            missing = [(k, it) for k, it in items.items() if k not in stored]
            for n, modality in enumerate(sorted({it.modality for _, it in missing})):
                group = [(k, it) for k, it in missing if it.modality == modality]
                progress(n / max(len(missing), 1), f"embedding {len(group)} {modality} items with {name}")
                self._add_rows(name, coll, group)
            self._indexes[name] = (items, coll)
            progress(1.0, f"{len(items)} items indexed with {name}")
            return self._indexes[name]

    def _add_rows(self, name: str, coll, group: list[tuple[str, Item]]) -> None:
        e, labels = self.embed(name, [it.payload for _, it in group], group[0][1].modality, cached=True)
        coll.add(e, [it.payload for _, it in group],
                 [{"key": k, "experts": lab} for (k, _), lab in zip(group, labels, strict=True)])

    # -- search
    def query_vector(self, name: str, *, text: str | None = None, image: str | None = None,
                     audio: str | None = None, shape: str | None = None,
                     video: str | None = None) -> tuple[np.ndarray, str]:
        """The query's vector (several inputs: their normalized mean) and a label of its experts."""
        parts = []
        if text and text.strip():
            if len(text) > MAX_TEXT_CHARS:
                raise ValueError(f"the text query has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
            parts.append(("text", text.strip()))
        for modality, path, suffixes in (("image", image, IMAGE_SUFFIXES), ("audio", audio, AUDIO_SUFFIXES),
                                         ("points", shape, SHAPE_SUFFIXES), ("video", video, VIDEO_SUFFIXES)):
            if path:
                _check_upload(Path(path), suffixes)
                parts.append((modality, str(path)))
        if not parts:
            raise ValueError("type a text, or upload an image, a sound, a 3D file or a video")
        for modality, _ in parts:  # every input's modality before any is embedded
            if modality not in registry.card(name).modalities:
                raise ValueError(self.not_embedded(name, modality))
        vectors, labels = [], []
        for modality, payload in parts:
            e, lab = self.embed(name, [payload], modality)
            vectors.append(e.vectors[0])
            labels.append(f"{modality}: {lab[0]}")
        q = np.mean(vectors, axis=0)
        return q / max(float(np.linalg.norm(q)), 1e-12), "; ".join(labels)

    def models_taking(self, modality: str) -> tuple[list[str], list[str]]:
        """The registered models that embed ``modality``: those with weights on this machine, and the others."""
        names = [n for n in registry.list_models() if modality in registry.card(n).modalities]
        here = [n for n in names if self.unavailable_reason(n) is None]
        return here, [n for n in names if n not in here]

    def not_embedded(self, name: str, modality: str) -> str:
        """Why model ``name`` refuses ``modality``. For a video, also which models here take video (or that none
        does, and which would with their weights from the hub)."""
        if modality != "video":
            return f"{name} does not embed {modality} (it embeds {', '.join(registry.card(name).modalities)})"
        here, elsewhere = self.models_taking(modality)
        if here:
            return f"{name} does not embed video. Models with weights on this machine that take it: {', '.join(here)}."
        if not elsewhere:
            return f"{name} does not embed video, and no registered model does."
        need = "needs its" if len(elsewhere) == 1 else "need their"
        hub = all(registry.card(n).hub_sources for n in elsewhere)
        return (f"{name} does not embed video. No model with weights on this machine takes video: "
                f"{', '.join(elsewhere)} {need} weights {'from the Hugging Face hub' if hub else 'fetched'} "
                f"(zoo fetch NAME).")

    def search(self, name: str | None = None, *, k: int = TOP_K, **query: str | None) -> tuple[list[Hit], str]:
        """Top-k gallery hits for a query (text=, image=, audio=, shape=, video=), and the query's expert label."""
        name = name or self.default_model
        q, query_experts = self.query_vector(name, **query)
        items, coll = self.index(name)
        # every row (exact, best first), then the gallery's; the query is the mean of the model's own vectors
        hits = coll.search(q, k=max(len(coll), 1), space=self.model(name).space)[0]
        found = [Hit(items[h.metadata["key"]], h.score, h.metadata["experts"]) for h in hits
                 if h.metadata.get("key") in items]
        return found[:k], query_experts

    def add_files(self, name: str, paths: Sequence[str]) -> list[Item]:
        """Add uploads to the gallery after embedding them (so undecodable files are refused, not stored).

        Not all-or-nothing: each file is added or refused on its own. The good files are added even when others
        are refused; then :class:`FilesRefused` is raised, naming each refused file by its upload name (the file
        name of ``path``) with the reason, and holding the added items (``.added``). A model whose weights are
        not here refuses the whole call before any file is copied.
        """
        if reason := self.unavailable_reason(name):
            raise ZooError(reason)
        modalities = registry.card(name).modalities
        items, coll = self.index(name)
        stored = set(items)  # a copy: other requests may be reading the index's dict
        added: list[Item] = []
        refused: list[tuple[str, str]] = []
        for path in map(Path, paths):
            item = None
            try:
                modality = KIND_MODALITY[_kind_of_suffix(path.suffix.lower())]
                if modality not in modalities:
                    raise ValueError(self.not_embedded(name, modality))
                item = self.gallery.add_user_file(path)
                with self.model_lock(name):
                    if item.content_key() not in stored:  # the same file added twice is stored once
                        self._add_rows(name, coll, [(item.content_key(), item)])
                        stored.add(item.content_key())
            except Exception as exc:  # a file that cannot be read is refused, whatever its decoder raised
                if item is not None:
                    self._forget_file(item)
                refused.append((path.name, _file_reason(exc, path, item)))
                continue
            self.gallery.remember(item)
            added.append(item)
        with self._guard:
            self._indexes.clear()  # every model re-reads the gallery; the store and the cache keep it fast
        if refused:
            raise FilesRefused(added, refused)
        return added

    def _forget_file(self, item: Item) -> None:
        """Remove the gallery copy of a refused upload (unless an item already in the gallery uses the same file)."""
        kept = {f for it in self.gallery.items() for f in (it.path, it.thumb) if f}
        for file in {item.path, item.thumb} - {""} - kept:
            Path(file).unlink(missing_ok=True)

    # the Cards tab's table and chosen card (they need no state: :mod:`.card_text`)
    card_rows = staticmethod(card_rows)
    card_details = staticmethod(card_details)
