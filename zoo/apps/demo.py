"""The Gradio demo: search a gallery of real media, browse the model cards, compare embedding spaces.

Three tabs, all offline:

- **Search**: a gallery prepared on first run into the app's own cache folder (the skimage sample
  photos, the project's 12 speech clips, generated 3D shapes exported as ``.glb``, code and
  docstrings from Python's standard library, a few short texts), indexed with the chosen model
  (default ``zoo-bind-mini``). Each model's vectors live in a :mod:`zoo.store` collection (with
  the experts that made them) and every embedding goes through the :mod:`zoo.cache` embedding
  cache, both on disk under the cache folder, so a restart re-embeds nothing. A query is a text,
  an image, a sound or a 3D file (several are averaged); results show thumbnails, players, a 3D
  preview, scores and the experts that made the item's vector (``embed(...).info["experts"]`` /
  ``["expert_weights"]`` of binding composites). Users may add their own files. Models whose
  weights are not on this machine are listed with a "(weights not offline)" label, and say so instead of
  failing.
- **Cards**: every registered card, filtered by modality, licence, offline readiness, size and
  width, with free-text search, the rendered card, its sources and a ``zoo.load`` snippet.
- **Spaces**: the compatibility heatmap (:mod:`zoo.compat`) of chosen text models over standard
  library sentences, and a stitch explorer (:func:`zoo.stitch`) with held-out recall@1. Hub-only models carry
  the same label as on the Search tab, and choosing one says why it cannot run.

Every action writes what went wrong into a Markdown status beside it (the search note, the add-files note, the
heatmap status, the stitch result), so the message stays on the page; API callers get the same text in that
output (the event completes, with emptied results). The public API endpoints are named (:data:`API_ENDPOINTS`).

Safety: the app binds 127.0.0.1 unless told otherwise (``launch(host=...)``, ``GRADIO_SERVER_NAME``; any other
address logs a warning: the demo has no authentication) and never shares; uploads are capped (``MAX_FILE_SIZE``),
limited to the media types a tab needs (no SVG or HTML) and decoded by the zoo's safe loaders; there are
no URL inputs, and :class:`RequestGuard` refuses ``file=<URL>`` and ``proxy=`` routes (the server fetches
nothing on anyone's behalf) and type-checks every API input (422 naming the input); gallery media reach the
browser as ``/zoo-media/<token>`` URLs (an opaque token per file, served by :class:`RequestGuard`), never as
server paths, and no folder is served by path; the gallery's manifests hold names relative to the gallery
folder; Gradio's temp folder (uploads) lives under the app's cache; errors reach the user without server paths
and leave the app working; the queue is bounded and each model embeds one request at a time.

:class:`DemoApp` holds the logic (testable without Gradio's server); :func:`build_demo` wires it
into a ``gr.Blocks``; :func:`launch` starts it.
"""

from __future__ import annotations

import hashlib
import inspect
import ipaddress
import json
import logging
import os
import re
import shutil
import textwrap
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.catalog import registry
from zoo.errors import ZooError

log = logging.getLogger(__name__)

DEFAULT_MODEL = "zoo-bind-mini"
DEFAULT_PORT = 7860
HOST = "127.0.0.1"
MAX_FILE_SIZE = "20mb"
MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_TEXT_CHARS = 20_000
QUEUE_SIZE = 64  # pending events beyond this are refused with "queue full"
SEARCH_CONCURRENCY = 4  # searches run at once; each model still embeds one request at a time
TOP_K = 10
SHAPES_PER_CLASS = 2
SHAPE_SEED = 202

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg")
SHAPE_SUFFIXES = (".glb", ".obj", ".stl", ".ply")
TEXT_SUFFIXES = (".txt", ".py", ".md")
KIND_MODALITY = {"image": "image", "audio": "audio", "shape": "points", "code": "code", "text": "text"}
NOT_OFFLINE = " (weights not offline)"  # the label of a model whose weights are not on this machine
#: The public API endpoints of the demo and their inputs (every other event is private).
API_ENDPOINTS = {
    "search": ("model", "text", "image", "audio", "shape"),
    "prepare": ("model",),
    "add_files": ("model", "files"),
    "filter_cards": ("modality", "licence", "offline", "max_params", "dim", "text", "evidence"),
    "show_card": ("name",),
    "heatmap": ("models", "sentences"),
    "stitch": ("model_a", "model_b", "anchors"),
}

#: Standard-library functions whose source (code items) and docstring (text items) join the gallery.
STDLIB_FUNCTIONS = (
    "json.dumps", "os.path.join", "textwrap.dedent", "shutil.copyfile", "random.shuffle", "statistics.median",
    "fnmatch.fnmatch", "base64.b64encode", "string.capwords", "heapq.nlargest", "glob.glob", "csv.DictReader",
)
SHORT_TEXTS = (
    "The cat sleeps on the warm windowsill all afternoon.",
    "A recipe for a strong black coffee in the morning.",
    "The rocket launch was delayed by high winds.",
    "Motorcycles parked in a row along the street.",
    "A jar of old coins found while digging in the garden.",
    "Stars and distant galaxies seen through a telescope.",
)
#: Modules whose docstrings give the Spaces tab its sentences (pure-Python modules: stable text).
SENTENCE_MODULES = (
    "json", "os", "os.path", "re", "shutil", "textwrap", "string", "random", "statistics", "fnmatch", "glob",
    "csv", "heapq", "base64", "pathlib", "tempfile", "calendar", "difflib", "ftplib", "gzip", "locale", "logging",
    "mimetypes", "pprint", "queue", "shlex", "smtplib", "tarfile", "threading", "uuid", "zipfile", "inspect",
)


# ---------------------------------------------------------------------------------------------- items
@dataclass(frozen=True)
class Item:
    """One gallery entry. ``path`` is a file under the gallery folder; text items keep their ``text``."""

    id: str
    kind: str  # image, audio, shape, code, text
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


def default_cache_dir() -> Path:
    from zoo.catalog.sources import zoo_home

    return zoo_home() / "demo"


def _safe_name(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-") or "item"


# ---------------------------------------------------------------------------------------------- thumbnails
def _text_thumb(text: str, path: Path, *, title: str = "") -> None:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (256, 256), (250, 250, 245))
    draw = ImageDraw.Draw(img)
    lines = ([title, ""] if title else []) + [ln[:38] for ln in text.splitlines()[:16]]
    draw.multiline_text((8, 8), "\n".join(lines), fill=(30, 30, 30), spacing=2)
    img.save(path)


def _waveform_thumb(audio_path: Path, path: Path, title: str) -> None:
    import soundfile as sf
    from PIL import Image, ImageDraw

    wave, _ = sf.read(str(audio_path), dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    img = Image.new("RGB", (256, 256), (240, 246, 255))
    draw = ImageDraw.Draw(img)
    cols = np.array_split(np.abs(wave), 240)
    peak = max(float(np.abs(wave).max()), 1e-6)
    for x, col in enumerate(cols):
        h = 100 * float(col.max() if len(col) else 0.0) / peak
        draw.line([(8 + x, 140 - h), (8 + x, 140 + h)], fill=(40, 90, 200))
    draw.text((8, 8), f"speech: {title}", fill=(20, 20, 20))
    img.save(path)


def _mesh_thumb(mesh, path: Path, title: str) -> None:
    """A shaded orthographic view (painter's algorithm): enough to recognise the shape at a glance."""
    from PIL import Image, ImageDraw

    verts = np.asarray(mesh.vertices, dtype=float)
    verts = verts - verts.mean(axis=0)
    a, b = np.radians(35), np.radians(-30)
    rot_x = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rot_z = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    v = verts @ rot_z.T @ rot_x.T
    scale = 100 / max(float(np.abs(v[:, [0, 2]]).max()), 1e-6)
    tri = v[np.asarray(mesh.faces)]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    light = np.abs(normals @ np.array([0.3, -0.8, 0.5]) / np.linalg.norm([0.3, -0.8, 0.5]))
    img = Image.new("RGB", (256, 256), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    for i in np.argsort(tri[:, :, 1].mean(axis=1))[::-1]:  # far faces first (view along +y)
        pts = [(128 + scale * p[0], 138 - scale * p[2]) for p in tri[i]]
        shade = int(60 + 170 * light[i])
        draw.polygon(pts, fill=(shade, int(shade * 0.8), 90))
    draw.text((8, 8), f"3D: {title}", fill=(20, 20, 20))
    img.save(path)


# ---------------------------------------------------------------------------------------------- gallery
def stdlib_sentences(limit: int = 160) -> list[str]:
    """First sentences of public docstrings in pure-Python standard-library modules, deduplicated, sorted."""
    import importlib

    out: set[str] = set()
    for name in SENTENCE_MODULES:
        module = importlib.import_module(name)
        for attr in sorted(dir(module)):
            obj = getattr(module, attr, None)
            if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            doc = (inspect.getdoc(obj) or "").split("\n\n")[0].replace("\n", " ").strip()
            first = doc.split(". ")[0].rstrip(".")
            if 25 <= len(first) <= 160 and not first.startswith(("Return(", attr)):
                out.add(first + ".")
    return sorted(out)[:limit]


def _stdlib_function(dotted: str):
    import importlib

    module, _, attr = dotted.rpartition(".")
    return getattr(importlib.import_module(module), attr)


class Gallery:
    """The media folder of the app: built once (with progress), then read back from its manifest."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.manifest = self.root / "manifest.json"
        self.user_dir = self.root / "user"
        self._lock = threading.Lock()

    def items(self, progress: Progress = _no_progress) -> list[Item]:
        with self._lock:
            if not self.manifest.is_file():
                self._build(progress)
            builtin = [self._resolved(d) for d in json.loads(self.manifest.read_text(encoding="utf-8"))]
            return builtin + self._user_items()

    def _resolved(self, entry: dict) -> Item:
        """An item of a manifest, its file names (relative to the gallery folder) made absolute for the server."""
        return Item(**{k: str(self.root / v) if k in ("path", "thumb") and v else v for k, v in entry.items()})

    def _relative(self, item: Item, base: Path | None = None) -> dict:
        """A manifest entry: file names relative to the gallery folder, so no server path is written or shown."""
        base = base or self.root
        return {k: Path(v).relative_to(base).as_posix() if k in ("path", "thumb") and v and Path(v).is_absolute()
                and Path(v).is_relative_to(base) else v for k, v in asdict(item).items()}

    # -- building
    def _build(self, progress: Progress) -> None:
        from zoo.samples import gallery

        tmp = self.root.with_name(self.root.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        for sub in ("photos", "speech", "shapes", "texts"):
            (tmp / sub).mkdir(parents=True)
        items: list[Item] = []
        photos = gallery.photos()
        for i, p in enumerate(photos):
            progress(0.4 * i / len(photos), f"copying photo {p.name}")
            dest = tmp / "photos" / p.path.name
            shutil.copyfile(p.path, dest)
            items.append(Item(f"photo/{p.name}", "image", p.name, path=str(dest), thumb=str(dest)))
        for clip in gallery.speech_clips():
            progress(0.4, f"copying speech clip {clip.name}")
            dest = tmp / "speech" / clip.path.name
            shutil.copyfile(clip.path, dest)
            thumb = dest.with_suffix(".png")
            _waveform_thumb(dest, thumb, clip.name)
            items.append(Item(f"speech/{clip.name}", "audio", clip.name, path=str(dest), text=clip.text,
                              thumb=str(thumb)))
        items += self._build_shapes(tmp / "shapes", progress)
        items += self._build_texts(tmp / "texts", progress)
        final = [self._relative(it, tmp) for it in items]
        (tmp / "manifest.json").write_text(json.dumps(final, indent=1), encoding="utf-8")
        user = self.root / "user"
        if user.is_dir():  # keep what users added across a rebuild
            shutil.move(str(user), str(tmp / "user"))
        shutil.rmtree(self.root, ignore_errors=True)
        tmp.rename(self.root)
        progress(1.0, "gallery ready")

    def _build_shapes(self, folder: Path, progress: Progress) -> list[Item]:
        from zoo.samples import shapes

        items = []
        for n, name in enumerate(shapes.CLASSES):
            progress(0.45 + 0.35 * n / len(shapes.CLASSES), f"generating 3D shapes: {name}")
            for i in range(SHAPES_PER_CLASS):
                mesh = shapes.make_shape(name, shapes.shape_rng(SHAPE_SEED, name, i), augment=False).mesh
                path, thumb = folder / f"{name}-{i}.glb", folder / f"{name}-{i}.png"
                mesh.export(path)
                _mesh_thumb(mesh, thumb, f"{name} {i}")
                items.append(Item(f"shape/{name}-{i}", "shape", f"{name} {i}", path=str(path), thumb=str(thumb)))
        return items

    def _build_texts(self, folder: Path, progress: Progress) -> list[Item]:
        progress(0.85, "collecting standard-library code and docstrings")
        items = []
        for dotted in STDLIB_FUNCTIONS:
            fn = _stdlib_function(dotted)
            try:
                source = textwrap.dedent(inspect.getsource(fn))
            except (OSError, TypeError):
                continue
            code = "\n".join(source.splitlines()[:60])
            doc = (inspect.getdoc(fn) or "").split("\n\n")[0]
            for kind, text in (("code", code), ("text", doc)):
                if not text:
                    continue
                thumb = folder / f"{kind}-{_safe_name(dotted)}.png"
                _text_thumb(text, thumb, title=f"{kind}: {dotted}")
                items.append(Item(f"{kind}/{dotted}", kind, f"{dotted} ({'source' if kind == 'code' else 'doc'})",
                                  text=text, thumb=str(thumb)))
        for i, text in enumerate(SHORT_TEXTS):
            thumb = folder / f"short-{i}.png"
            _text_thumb(textwrap.fill(text, 36), thumb, title="text")
            items.append(Item(f"text/short-{i}", "text", text[:40], text=text, thumb=str(thumb)))
        return items

    # -- user files
    def _user_items(self) -> list[Item]:
        manifest = self.user_dir / "manifest.json"
        if not manifest.is_file():
            return []
        return [self._resolved(d) for d in json.loads(manifest.read_text(encoding="utf-8"))]

    def add_user_file(self, src: Path) -> Item:
        """Copy an upload into the gallery (content-addressed name). Raises ValueError for wrong types or sizes."""
        suffix = src.suffix.lower()
        kind = _kind_of_suffix(suffix)
        size = src.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ValueError(f"{src.name} is {size} bytes; the limit is {MAX_FILE_BYTES}")
        data = src.read_bytes()
        digest = hashlib.sha256(data).hexdigest()[:16]
        stem = _safe_name(src.stem)[:40]
        self.user_dir.mkdir(parents=True, exist_ok=True)
        dest = self.user_dir / f"{digest}-{stem}{suffix}"
        item_id = f"user/{digest}"
        if kind in ("code", "text"):
            text = _decode_text(data, src.name)
            thumb = self.user_dir / f"{digest}.png"
            _text_thumb(text, thumb, title=f"{kind}: {src.name}")
            return Item(item_id, kind, src.name, text=text, thumb=str(thumb))
        dest.write_bytes(data)
        thumb = str(dest) if kind == "image" else ""
        if kind == "audio":
            thumb = str(self.user_dir / f"{digest}.png")
            try:
                _waveform_thumb(dest, Path(thumb), src.name)
            except Exception:  # an undecodable sound leaves no copy behind
                dest.unlink(missing_ok=True)
                Path(thumb).unlink(missing_ok=True)
                raise
        return Item(item_id, kind, src.name, path=str(dest), thumb=thumb)

    def remember(self, item: Item) -> None:
        with self._lock:
            items = [it for it in self._user_items() if it.id != item.id] + [item]
            (self.user_dir / "manifest.json").write_text(json.dumps([self._relative(it) for it in items], indent=1),
                                                         encoding="utf-8")


def _kind_of_suffix(suffix: str) -> str:
    for kind, suffixes in (("image", IMAGE_SUFFIXES), ("audio", AUDIO_SUFFIXES), ("shape", SHAPE_SUFFIXES)):
        if suffix in suffixes:
            return kind
    if suffix == ".py":
        return "code"
    if suffix in TEXT_SUFFIXES:
        return "text"
    allowed = IMAGE_SUFFIXES + AUDIO_SUFFIXES + SHAPE_SUFFIXES + TEXT_SUFFIXES
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


# ---------------------------------------------------------------------------------------------- vectors
def expert_labels(info: dict, n: int, fallback: str) -> list[str]:
    """One label per vector naming its experts and their weights ("speech-transcript 0.55 + ...")."""
    experts, weights = info.get("experts"), info.get("expert_weights")
    if not experts or weights is None:
        return [fallback] * n
    weights = np.asarray(weights, dtype=np.float64).reshape(n, len(experts))
    return [fallback if np.isnan(row).any()  # a vector from the embedding cache: how it was made is not kept
            else " + ".join(f"{e} {w:.2f}" for e, w in sorted(zip(experts, row, strict=True), key=lambda t: -t[1]))
            if len(experts) > 1 else experts[0] for row in weights]


# ---------------------------------------------------------------------------------------------- the app
class DemoApp:
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
                     audio: str | None = None, shape: str | None = None) -> tuple[np.ndarray, str]:
        """The query's vector (several inputs: their normalized mean) and a label of its experts."""
        parts = []
        if text and text.strip():
            if len(text) > MAX_TEXT_CHARS:
                raise ValueError(f"the text query has {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
            parts.append(("text", text.strip()))
        for modality, path, suffixes in (("image", image, IMAGE_SUFFIXES), ("audio", audio, AUDIO_SUFFIXES),
                                         ("points", shape, SHAPE_SUFFIXES)):
            if path:
                _check_upload(Path(path), suffixes)
                parts.append((modality, str(path)))
        if not parts:
            raise ValueError("type a text, or upload an image, a sound or a 3D file")
        card = registry.card(name)
        vectors, labels = [], []
        for modality, payload in parts:
            if modality not in card.modalities:
                raise ValueError(f"{name} does not embed {modality} (it embeds {', '.join(card.modalities)})")
            e, lab = self.embed(name, [payload], modality)
            vectors.append(e.vectors[0])
            labels.append(f"{modality}: {lab[0]}")
        q = np.mean(vectors, axis=0)
        return q / max(float(np.linalg.norm(q)), 1e-12), "; ".join(labels)

    def search(self, name: str | None = None, *, k: int = TOP_K, **query: str | None) -> tuple[list[Hit], str]:
        """Top-k gallery hits for a query (text=, image=, audio=, shape=), and the query's expert label."""
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
                    raise ValueError(f"{name} does not embed {modality} (it embeds {', '.join(modalities)})")
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

    # -- cards
    @staticmethod
    def card_rows(modality: str = "any", licence: str = "any", offline_only: bool = False,
                  max_params: str = "any", dim: str = "any", text: str = "", evidence: str = "any") -> list[list]:
        """Rows of the cards that pass every filter; ``evidence`` is a kind of check the card's claims rest on
        (``zoo.modelcard.EVIDENCE``), or "not checked"."""
        rows = []
        words = text.lower().split()
        limit = PARAM_BUCKETS.get(max_params)
        for name in registry.list_models(modality=None if modality in ("any", "") else modality):
            c = registry.card(name)
            if licence not in ("any", "") and c.license != licence:
                continue
            if offline_only and not c.offline_ready:
                continue
            if limit is not None and not 0 < c.params <= limit:
                continue
            if dim not in ("any", "") and str(c.dim) != str(dim):
                continue
            if evidence not in ("any", "") and (evidence not in c.evidence if evidence != NOT_CHECKED
                                                 else bool(c.evidence)):
                continue
            haystack = " ".join([c.name, c.description, " ".join(c.tags), c.license, " ".join(c.modalities)]).lower()
            if not all(w in haystack for w in words):
                continue
            rows.append([c.name, ", ".join(c.modalities), c.dim, _fmt_params(c.params), c.license,
                         "yes" if c.offline_ready else "no", ", ".join(c.evidence) or NOT_CHECKED])
        return rows

    @staticmethod
    def card_details(name: str) -> tuple[str, str, str, str]:
        """(rendered card, sources with pinned revisions, parity and evidence text, load snippet). The rendered
        card leaves out its published examples and parity sections: the evidence text shows them (once)."""
        c = registry.card(name)
        sources = "\n".join(f"- {s.describe()}" + (f" (revision `{s.revision}`)" if s.revision else "")
                            for s in c.sources)
        offline = "offline-ready" if c.offline_ready else f"not offline-ready: {c.offline_note or 'hub weights'}"
        body = _without_sections(c.to_markdown(), ("Published examples", "Parity"))
        return (_for_gradio(body), f"{sources}\n\n*{offline}*", _for_gradio(evidence_text(c)),
                f'import zoo\n\nmodel = zoo.load("{c.name}")\n')

    # -- spaces
    def heatmap(self, models: Sequence[str], n_sentences: int = 120) -> tuple[str, list[list]]:
        from zoo.spaces.compat import METRICS, compatibility

        if len(models) < 2:
            raise ValueError("choose at least two models")
        self._require_available(models)
        embedders = [self.model(m) for m in models]
        sentences = stdlib_sentences(n_sentences)
        with _locks_of(self, models):
            result = compatibility(embedders, sentences, test_fraction=0.5, seed=0, modality="text")
        self.plots_dir.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256(json.dumps([list(models), n_sentences]).encode()).hexdigest()[:12]
        png = result.plot(self.plots_dir / f"compat-{digest}.png")
        rows = [[r["model_a"], r["model_b"], *(round(r[m], 3) for m in METRICS)]
                for r in result.rows() if r["model_a"] != r["model_b"]]
        return str(png), rows

    def stitch(self, model_a: str, model_b: str, n_anchors: int = 80) -> dict:
        """Fit a Procrustes stitch A -> B on ``n_anchors`` sentences; quality on the rest (held out)."""
        from zoo.spaces.stitching import stitch

        if model_a == model_b:
            raise ValueError("pick two different models")
        self._require_available([model_a, model_b])
        sentences = stdlib_sentences()
        if not 8 <= n_anchors <= len(sentences) - 8:
            raise ValueError(f"anchors must be between 8 and {len(sentences) - 8}")
        order = np.random.default_rng(0).permutation(len(sentences))
        anchors = [sentences[i] for i in order[:n_anchors]]
        test = [sentences[i] for i in order[n_anchors:]]
        a, b = self.model(model_a), self.model(model_b)
        with _locks_of(self, [model_a, model_b]):
            fitted = stitch(a, b, anchors, test=test, modality="text", register=False)
        return {"anchors": len(anchors), "held_out": len(test), **dict(fitted.quality or {})}

    def _require_available(self, names: Sequence[str]) -> None:
        """Raise ZooError naming every model whose weights are not on this machine, before any model loads."""
        reasons = [r for r in dict.fromkeys(self.unavailable_reason(n) for n in names) if r]
        if reasons:
            raise ZooError(" ".join(reasons))


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


PARAM_BUCKETS = {"any": None, "<= 50M": 50e6, "<= 150M": 150e6, "<= 1B": 1e9, "<= 10B": 10e9}


class _locks_of:
    """Hold the locks of several models, in name order (no deadlock between two requests)."""

    def __init__(self, app: DemoApp, names: Sequence[str]):
        self.locks = [app.model_lock(n) for n in sorted(set(names))]

    def __enter__(self):
        for lock in self.locks:
            lock.acquire()

    def __exit__(self, *exc):
        for lock in reversed(self.locks):
            lock.release()


def _without_sections(markdown: str, titles: Sequence[str]) -> str:
    """``markdown`` without its ``## <title>`` sections (each up to the next ``## `` heading)."""
    out, skipping = [], False
    for line in markdown.splitlines():
        if line.startswith("## "):
            skipping = line[3:].strip() in titles
        if not skipping:
            out.append(line)
    return "\n".join(out).rstrip() + "\n"


def _for_gradio(markdown: str) -> str:
    """The card without its YAML front matter (metadata for the Hub), and with ``~`` escaped (Gradio strikes it)."""
    if markdown.startswith("---\n") and "\n---\n" in markdown[4:]:
        markdown = markdown[4:].split("\n---\n", 1)[1]
    return markdown.replace("~", "\\~")


NOT_CHECKED = "not checked"


def evidence_text(card) -> str:
    """Markdown: what the card's claims rest on, its published examples and its last ``zoo verify``."""
    from zoo.catalog.modelcard import EVIDENCE
    from zoo.catalog.verify import last_report

    lines = ["**Checked by**"]
    lines += [f"- {e}: {EVIDENCE[e]}" for e in card.evidence] or [f"- {NOT_CHECKED}"]
    if card.examples:
        lines += ["", "**Published examples** (`zoo verify " + card.name + "`)"]
        lines += [f"- [{ex.title}]({ex.source}): {ex.printed}" for ex in card.examples]
    report = last_report(card.name)
    if report is not None:
        fresh = "" if report.card_sha256 == card.content_sha256() else " (the card has changed since)"
        lines += ["", f"**Last verification**: {report.status} on {report.when}{fresh}, weights: {report.weights}"]
        lines += [f"- {r.title}: {r.status} ({r.reason})" for r in report.results]
    elif card.examples:
        lines += ["", "**Last verification**: none on this machine"]
    lines += ["", "**Parity**", "", card.parity.strip() or "(no parity text)"]
    return "\n".join(lines)


def _fmt_params(n: int) -> str:
    if not n:
        return "?"
    return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def _check_upload(path: Path, suffixes: tuple[str, ...]) -> None:
    if path.suffix.lower() not in suffixes:
        raise ValueError(f"files of type {path.suffix or '(none)'!r} are not accepted here; use {', '.join(suffixes)}")
    if not path.is_file():
        raise ValueError("the uploaded file is missing; upload it again")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"the upload is over the {MAX_FILE_SIZE} limit")


# ---------------------------------------------------------------------------------------------- the UI
def configure_environment(cache_dir: Path) -> None:
    """Gradio's uploads and cached outputs go under the app's own cache; no analytics calls."""
    (cache_dir / "tmp").mkdir(parents=True, exist_ok=True)
    os.environ["GRADIO_TEMP_DIR"] = str(cache_dir / "tmp")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


_ABS_PATH = re.compile(r"(?<![\w.:/])/(?:[^\s'\"/]+/)+([^\s'\"/]*)")


def _without_paths(message: str) -> str:
    """A message for the browser: absolute server paths shortened to their file names."""
    return _ABS_PATH.sub(lambda m: m.group(1) or "(a folder)", message)


def _user_message(exc: Exception) -> str:
    """The text of a refusal for the browser: no server path, no traceback."""
    if isinstance(exc, OSError) and exc.strerror:  # its str() names the full path
        name = Path(exc.filename).name if exc.filename else ""
        return f"{exc.strerror}: {name}" if name else exc.strerror
    return _without_paths(str(exc)) or type(exc).__name__


def _status(message: str) -> str:
    """A message for an action's Markdown status."""
    return f"**Error:** {message}"


def _guarded(fn: Callable | None = None, *, on_error: Callable[[str], Any] | None = None) -> Callable:
    """Turn the zoo's and the app's refusals into a message without server paths; anything else becomes a short
    generic message (its traceback goes to the server log). With ``on_error`` the handler returns
    ``on_error(message)`` (its outputs, the message in the action's Markdown status, so it stays on the page);
    without, the message is raised as gr.Error."""
    import functools

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            import gradio as gr

            try:
                return fn(*args, **kwargs)
            except gr.Error as exc:
                if on_error is None:
                    raise
                message = _without_paths(str(exc.message))
            except (ZooError, ValueError, OSError) as exc:
                message = _user_message(exc)
            except Exception as exc:  # never leak a traceback to the page; the next request still works
                log.exception("demo: %s failed", fn.__name__)
                message = f"internal error ({type(exc).__name__}); see the server log"
            if on_error is None:
                raise gr.Error(message)
            return on_error(message)

        return wrapper

    return decorate if fn is None else decorate(fn)


def model_choices(names: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(label, name) of each model (default: every registered one); a model whose weights are not on this machine
    (:func:`zoo.sources.availability`, names only: nothing is hashed) is labelled "NAME (weights not offline)"."""
    from zoo.catalog.sources import availability

    out = []
    for name in registry.list_models() if names is None else names:
        c = registry.card(name)
        try:
            here = availability(c).present
        except ZooError:
            here = False
        out.append((name if here else f"{name}{NOT_OFFLINE}", name))
    return out


def _result_outputs(hits: list[Hit], query_experts: str, link: Callable[[str], str]):
    """The search outputs; ``link`` turns a gallery file into the URL the browser fetches it from."""
    gallery = [(link(h.item.thumb), f"{r}. {h.item.title}  {h.score:.3f}  [{h.experts}]")
               for r, h in enumerate(hits, 1) if h.item.thumb]
    table = [[r, h.item.kind, h.item.title, round(h.score, 4), h.experts] for r, h in enumerate(hits, 1)]
    audio = next((link(h.item.path) for h in hits if h.item.kind == "audio"), None)
    shape = next((link(h.item.path) for h in hits if h.item.kind == "shape"), None)
    text = next((h.item.text for h in hits if h.item.kind in ("code", "text")), "")
    note = f"query embedded by **{query_experts}**; best: **{hits[0].item.title}** ({hits[0].score:.3f})"
    return gallery, table, audio, shape, text, note


MEDIA_ROUTE = "/zoo-media/"
_MEDIA_TOKEN = re.compile(r"/zoo-media/([0-9a-f]{24}\.[a-z0-9]{1,5})$")
_HOST = re.compile(r"^[A-Za-z0-9.\-]+(?::\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](?::\d{1,5})?$")


def _root_url(request) -> str:
    """The address the browser reached the app at (behind a proxy: the forwarded host and scheme)."""
    headers = {str(k).lower(): str(v) for k, v in dict(getattr(request, "headers", None) or {}).items()}
    host = headers.get("x-forwarded-host", "").split(",")[0].strip() or headers.get("host", "")
    if not _HOST.match(host):
        host = f"{HOST}:{DEFAULT_PORT}"
    scheme = "https" if headers.get("x-forwarded-proto", "").split(",")[0].strip() == "https" else "http"
    return f"{scheme}://{host}"


def _linker(app: DemoApp, request) -> Callable[[str], str]:
    """Gallery file -> its media URL on the host the request came to (no request: the default local address)."""
    root = _root_url(request)
    return lambda path: f"{root}{MEDIA_ROUTE}{app.media_token(path)}"


def _linked(component):
    """``component`` (a Gradio output) that also takes one of the app's media URLs and sends it as it is. Given a
    path, Gradio copies the file into its cache and shows the browser that copy's server path; given a URL, the
    stock Audio, Model3D and Image outputs would download it on the server. (An instance attribute, not a
    subclass: Gradio writes a ``.pyi`` stub beside the module of every Component subclass.)"""
    from gradio.data_classes import FileData

    stock = component.postprocess

    def postprocess(value):
        if isinstance(value, str) and _MEDIA_TOKEN.search(value) and value.startswith(("http://", "https://")):
            return FileData(path=value, url=value, orig_name=value.rsplit("/", 1)[-1])
        return stock(value)

    component.postprocess = postprocess
    return component


def _no_results(message: str) -> tuple:
    """The search outputs emptied, with ``message`` in the search note (old results do not stay on the page)."""
    return [], [], None, None, "", message


def _unavailable_message(app: DemoApp, names: Sequence[str]) -> str | None:
    """The Spaces tab's status when chosen models have no weights here (None: all are here)."""
    reasons = [r for r in dict.fromkeys(app.unavailable_reason(n) for n in names if n) if r]
    if not reasons:
        return None
    return (" ".join(f"**{r}**" for r in reasons) + f" Choose models without the \u201c{NOT_OFFLINE.strip()}\u201d "
            "label, or fetch the weights first (`zoo fetch NAME`).")


def build_demo(app: DemoApp | None = None):
    """The gr.Blocks of the demo (not launched). Its public API endpoints are :data:`API_ENDPOINTS`."""
    app = app or DemoApp()
    configure_environment(app.cache_dir)
    import gradio as gr

    @_guarded(on_error=lambda m: (_status(m), []))
    def prepare(model, request: gr.Request = None, progress=gr.Progress()):  # noqa: B008 (Gradio's progress protocol)
        reason = app.unavailable_reason(model)
        if reason:
            return f"**{reason}** Pick an offline-ready model to search.", []
        items, _ = app.index(model, lambda f, d: progress(f, desc=d))
        link = _linker(app, request)
        return f"{len(items)} gallery items indexed with **{model}**.", [(link(it.thumb), it.title)
                                                                          for it in items.values() if it.thumb]

    @_guarded(on_error=lambda m: _no_results(_status(m)))
    def search(model, text, image, audio, shape, request: gr.Request = None):
        if not (text and text.strip()) and not (image or audio or shape):
            return _no_results("Type a text, or upload an image, a sound or a 3D file, then press **Search**.")
        hits, query_experts = app.search(model, text=text, image=image, audio=audio, shape=shape)
        return _result_outputs(hits, query_experts, _linker(app, request))

    @_guarded(on_error=_status)
    def add_files(model, files):
        if not files:
            raise ValueError("choose one or more files to add")
        try:
            added = app.add_files(model, [getattr(f, "name", f) for f in files])
        except FilesRefused as exc:
            done = ["added: " + ", ".join(it.title for it in exc.added)] if exc.added else []
            return "\n\n".join([*done, _status(_without_paths(str(exc)))])
        return "added: " + ", ".join(it.title for it in added)

    @_guarded
    def filter_cards(modality, licence, offline, max_params, dim, text, evidence):
        rows = app.card_rows(modality, licence, offline, max_params, dim, text or "", evidence)
        names = [r[0] for r in rows]
        return rows, gr.update(choices=names, value=names[0] if names else None)

    @_guarded(on_error=lambda m: (_status(m), "", "", ""))
    def show_card(name):
        if not name:
            return "", "", "", ""
        return app.card_details(name)

    @_guarded(on_error=lambda m: (None, [], _status(m)))
    def heatmap(models, sentences, request: gr.Request = None):
        models = list(models or [])
        if len(models) >= 2 and (why := _unavailable_message(app, models)):
            return None, [], why
        n = int(sentences or 120)
        png, rows = app.heatmap(models, n)
        return _linker(app, request)(png), rows, f"{len(models)} models over {n} standard-library sentences."

    @_guarded(on_error=_status)
    def stitch(model_a, model_b, anchors):
        if model_a != model_b and (why := _unavailable_message(app, [model_a, model_b])):
            return why
        q = app.stitch(model_a, model_b, int(anchors or 80))
        lines = [f"**{model_a} -> {model_b}**: Procrustes stitch on {q['anchors']} anchor sentences, "
                 f"{q['held_out']} held out.", ""]
        lines += [f"- {k}: {v:.3f}" for k, v in q.items() if isinstance(v, float)]
        return "\n".join(lines)

    for fn in (prepare, search, heatmap):  # the real class: this module's annotations are strings, and gr is local
        fn.__annotations__["request"] = gr.Request

    cards = [registry.card(n) for n in registry.list_models()]
    text_models = [c.name for c in cards if "text" in c.modalities]
    offline_text = [n for n in ("all-minilm-l6-v2", "paraphrase-minilm-l3-v2") if n in text_models]
    text_choices = model_choices(text_models)
    first_card = next(iter(app.card_rows()), [None])[0]
    first_details = app.card_details(first_card) if first_card else ("", "", "", "")
    from zoo.catalog.modelcard import EVIDENCE, MODALITIES

    with gr.Blocks(title="embedding-zoo demo") as demo:
        gr.Markdown("# embedding-zoo\nSearch real media with one embedding space, browse the model cards, "
                    "compare spaces. Everything runs on this machine.")
        with gr.Tab("Search", id="search"):
            status = gr.Markdown("preparing the gallery ...", elem_id="search-status")
            model = gr.Dropdown(model_choices(), value=app.default_model, label="Model", elem_id="search-model")
            with gr.Row():
                q_text = gr.Textbox(label="Text query", placeholder="a cat", elem_id="query-text", max_lines=3)
                q_image = gr.Image(type="filepath", sources=["upload", "clipboard"], label="Image query",
                                   elem_id="query-image")
                q_audio = gr.Audio(type="filepath", sources=["upload", "microphone"], label="Sound query")
                q_shape = gr.File(file_types=list(SHAPE_SUFFIXES), label="3D query (.glb .obj .stl .ply)")
            go = gr.Button("Search", variant="primary", elem_id="search-button")
            note = gr.Markdown(elem_id="search-note")
            results = gr.Gallery(label="Results", columns=5, height=420, elem_id="search-results")
            table = gr.Dataframe(headers=["rank", "kind", "item", "score", "experts"], elem_id="search-table",
                                 interactive=False)
            with gr.Row():
                best_audio = _linked(gr.Audio(label="Best sound hit", interactive=False))
                best_shape = _linked(gr.Model3D(label="Best 3D hit"))
                best_text = gr.Code(label="Best text or code hit", language="python", interactive=False)
            with gr.Accordion("Add your own files to the gallery", open=False):
                uploads = gr.File(file_count="multiple", label="images, sounds, 3D files, .txt/.py/.md",
                                  file_types=list(IMAGE_SUFFIXES + AUDIO_SUFFIXES + SHAPE_SUFFIXES + TEXT_SUFFIXES),
                                  elem_id="add-files")
                add_btn = gr.Button("Add to gallery", elem_id="add-button")
                add_note = gr.Markdown(elem_id="add-status")
            with gr.Accordion("The whole gallery", open=False):
                everything = gr.Gallery(columns=8, height=360, show_label=False)
            outputs = [results, table, best_audio, best_shape, best_text, note]
            gr.on([go.click, q_text.submit], search, [model, q_text, q_image, q_audio, q_shape], outputs,
                  api_name="search", concurrency_limit=SEARCH_CONCURRENCY, concurrency_id="search")
            add_btn.click(add_files, [model, uploads], add_note, api_name="add_files", concurrency_id="search").then(
                prepare, model, [status, everything], api_name="refresh_gallery", api_visibility="private",
                concurrency_id="search")
            gr.on([demo.load, model.change], prepare, model, [status, everything], api_name="prepare",
                  concurrency_id="search")

        with gr.Tab("Cards", id="cards"):
            with gr.Row():
                f_mod = gr.Dropdown(["any", *MODALITIES], value="any", label="Modality", elem_id="cards-modality")
                f_lic = gr.Dropdown(["any", *sorted({c.license for c in cards})], value="any", label="Licence")
                f_par = gr.Dropdown(list(PARAM_BUCKETS), value="any", label="Parameters")
                f_dim = gr.Dropdown(["any", *map(str, sorted({c.dim for c in cards}))], value="any", label="Dims")
                f_off = gr.Checkbox(label="offline-ready only")
            with gr.Row():
                f_txt = gr.Textbox(label="Search the cards", placeholder="speech, multilingual, code ...")
                f_evi = gr.Dropdown(["any", *EVIDENCE, NOT_CHECKED], value="any", label="Checked by",
                                    elem_id="cards-evidence")
            headers = ["name", "modalities", "dim", "params", "licence", "offline", "checked by"]
            card_table = gr.Dataframe(headers=headers, value=app.card_rows(), interactive=False, elem_id="cards-table")
            pick = gr.Dropdown([c.name for c in cards], value=first_card, label="Open a card", elem_id="cards-pick")
            snippet = gr.Code(first_details[3], language="python", label="Load it", buttons=["copy"],
                              elem_id="cards-snippet")
            with gr.Row():
                sources = gr.Markdown(first_details[1], elem_id="cards-sources")
                parity = gr.Markdown(first_details[2], elem_id="cards-parity")
            card_md = gr.Markdown(first_details[0], elem_id="cards-markdown")
            filters = [f_mod, f_lic, f_off, f_par, f_dim, f_txt, f_evi]
            gr.on([f.submit if f is f_txt else f.change for f in filters], filter_cards, filters, [card_table, pick],
                  api_name="filter_cards")
            pick.change(show_card, pick, [card_md, sources, parity, snippet], api_name="show_card")

        with gr.Tab("Spaces", id="spaces"):
            gr.Markdown("Compatibility of text models over standard-library docstring sentences: linear CKA, "
                        "mutual-kNN and stitched recall@1 (half the sentences anchor the stitch, half are held out).")
            with gr.Row():
                chosen = gr.CheckboxGroup(text_choices, value=offline_text, label="Text models",
                                          elem_id="spaces-models")
                n_sent = gr.Slider(40, 160, value=120, step=10, label="Sentences")
            heat_btn = gr.Button("Compute the heatmap", elem_id="heatmap-button")
            heat_note = gr.Markdown(elem_id="heatmap-status")
            heat_img = _linked(gr.Image(label="Compatibility", interactive=False, type="filepath"))
            heat_table = gr.Dataframe(headers=["model_a", "model_b", "linear_cka", "mutual_knn", "recall@1"],
                                      interactive=False)
            heat_btn.click(heatmap, [chosen, n_sent], [heat_img, heat_table, heat_note], api_name="heatmap",
                           concurrency_limit=1)
            gr.Markdown("### Stitch explorer")
            with gr.Row():
                st_a = gr.Dropdown(text_choices, value=offline_text[0] if offline_text else None, label="From (A)",
                                   elem_id="stitch-a")
                st_b = gr.Dropdown(text_choices, value=offline_text[-1] if offline_text else None, label="To (B)",
                                   elem_id="stitch-b")
                st_n = gr.Slider(16, 140, value=80, step=4, label="Anchor sentences")
            st_btn = gr.Button("Fit the stitch", elem_id="stitch-button")
            st_out = gr.Markdown(elem_id="stitch-status")
            st_btn.click(stitch, [st_a, st_b, st_n], st_out, api_name="stitch", concurrency_limit=1)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=2)
    app.blocks = demo  # RequestGuard checks API inputs against these events' components
    return demo


_URL_LIKE = re.compile(r"^\s*(?:[a-z][a-z0-9+.\-]+:|[/\\]{2})", re.IGNORECASE)  # http:, file:, //host ...
_FILE_ROUTE = re.compile(r"/file[=/](.*)$", re.DOTALL)
_API_ROUTE = re.compile(r"/gradio_api/(?:queue/join|(?:call|run|api)/(?:v2/)?([^/]+))/?$")
MAX_API_BODY = 1024 * 1024


def _unquoted(text: str) -> str:
    from urllib.parse import unquote

    for _ in range(4):  # %253A -> %3A -> :
        text, before = unquote(text), text
        if text == before:
            break
    return text


def _upload_folder() -> Path:
    """Where Gradio keeps uploads (``GRADIO_TEMP_DIR``, the app's ``tmp`` folder): API file inputs must be there."""
    from gradio.utils import get_upload_folder

    return Path(get_upload_folder()).resolve()


def _is_file_data(value) -> bool:
    return isinstance(value, dict) and isinstance(value.get("path"), str) and (
        value.get("meta") or {}).get("_type") == "gradio.FileData"


def _input_error(component, value, uploads: Path | None = None) -> str | None:
    """Why ``value`` is not a valid API payload for ``component`` (None: fine). Gradio would otherwise coerce
    (a dict becomes the text "{...}") or fail deep inside with an unclear message."""
    import gradio as gr

    if value is None:
        return None
    multiple = getattr(component, "file_count", "single") != "single" or getattr(component, "multiselect", False)
    if isinstance(component, (gr.Image, gr.Audio, gr.Model3D, gr.File, gr.Video)):
        files = value if multiple and isinstance(value, list) else [value]
        if not all(_is_file_data(f) for f in files):
            return "an uploaded file ({'path': ..., 'meta': {'_type': 'gradio.FileData'}}, from /gradio_api/upload)"
        if any(_URL_LIKE.match(f["path"]) for f in files):
            return "an uploaded file, not a URL (the demo fetches nothing from the network)"
        if uploads is not None and not all(Path(f["path"]).resolve().is_relative_to(uploads)
                                           and Path(f["path"]).is_file() for f in files):
            return "a file uploaded to this app (/gradio_api/upload) that is still there"
        return None
    if isinstance(component, gr.CheckboxGroup) or multiple:
        ok = isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool)
                                             for v in value)
        return None if ok else "a list of choices"
    if isinstance(component, gr.Checkbox):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(component, (gr.Slider, gr.Number)):
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if isinstance(component, (gr.Textbox, gr.Dropdown, gr.Code, gr.Markdown)):
        return None if isinstance(value, str) else "a string"
    return None


class RequestGuard:
    """ASGI middleware in front of Gradio's app.

    - ``/zoo-media/<token>`` serves the gallery file behind a token of :meth:`DemoApp.media_token` (404 otherwise).
    - The file route serves local files only: ``file=http://...`` (which Gradio would fetch on the server's behalf)
      and every ``proxy=`` route are refused with 403, however the URL is encoded.
    - API calls are checked before they reach the queue: each input must have its component's type (a dict is not
      a text query), file inputs must be uploads (no URL), and the number of inputs must match; otherwise 422 with a
      message naming the input.
    """

    def __init__(self, app, demo_app: DemoApp):
        self.app = app
        self.demo_app = demo_app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = _unquoted(scope.get("path", ""))
        media = _MEDIA_TOKEN.search(path)
        if media and scope.get("method") in ("GET", "HEAD"):
            return await self._media(scope, receive, send, media.group(1))
        target = _FILE_ROUTE.search(path)
        if "/proxy=" in path or (target and _URL_LIKE.match(target.group(1))):
            return await self._refuse(scope, receive, send, 403, "URLs are not fetched by this app")
        api = _API_ROUTE.search(path) if scope.get("method") == "POST" else None
        if api is None:
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_API_BODY:
                return await self._refuse(scope, receive, send, 413, "the request is too large")
        problem = self._check(body, api.group(1), "/v2/" in path)
        if problem:
            return await self._refuse(scope, receive, send, 422, problem)
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return await self.app(scope, replay, send)

    def _check(self, body: bytes, api_name: str | None, named: bool) -> str | None:
        try:
            payload = json.loads(body or b"null")
        except ValueError:
            return "the request body is not JSON"
        if not isinstance(payload, dict):
            return "the request body must be a JSON object"
        if named:  # /call/v2: arguments by name; only the URL rule applies
            return self._no_urls(payload)
        data = payload.get("data")
        if not isinstance(data, list):
            return "'data' must be a list with one value per input"
        blocks = getattr(self.demo_app, "blocks", None)
        fn = None
        if blocks is not None:
            fns = list(blocks.fns.values())
            if api_name is not None:
                fn = next((f for f in fns if f.api_name == api_name), None)
            elif isinstance(payload.get("fn_index"), int):
                fn = blocks.fns.get(payload["fn_index"])
        if fn is None:
            return self._no_urls(payload)
        inputs = [c for c in fn.inputs if not getattr(c, "skip_api", False)]
        if len(data) not in (len(fn.inputs), len(inputs)):
            return f"{fn.api_name or 'this event'} takes {len(inputs)} inputs, not {len(data)}"
        for n, (component, value) in enumerate(zip(fn.inputs if len(data) == len(fn.inputs) else inputs, data,
                                                   strict=True)):
            wanted = _input_error(component, value, _upload_folder())
            if wanted:
                label = getattr(component, "label", None) or type(component).__name__
                return f"input {n} ({label}) must be {wanted}, not {type(value).__name__}"
        return self._no_urls(payload)

    @staticmethod
    def _no_urls(payload) -> str | None:
        found = []

        def walk(value):
            if isinstance(value, dict):
                if isinstance(value.get("path"), str) and _URL_LIKE.match(value["path"]):
                    found.append(value["path"])
                for v in value.values():
                    walk(v)
            elif isinstance(value, list):
                for v in value:
                    walk(v)

        walk(payload)
        return "files must be uploads, not URLs (the demo fetches nothing from the network)" if found else None

    async def _media(self, scope, receive, send, token: str):
        import mimetypes

        from starlette.responses import FileResponse

        file = self.demo_app.media_file(token)
        if file is None:
            return await self._refuse(scope, receive, send, 404, "no such media")
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        response = FileResponse(file, media_type=kind, headers={"X-Content-Type-Options": "nosniff",
                                                                "Cache-Control": "private, max-age=3600"})
        await response(scope, receive, send)

    @staticmethod
    async def _refuse(scope, receive, send, status: int, detail: str):
        from starlette.responses import JSONResponse

        await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)


def launch_options(app: DemoApp, host: str = HOST) -> dict:
    """Keyword arguments of ``launch``: bound to ``host`` (default loopback), no share link, capped uploads, no
    folder served by path (gallery media go out as ``/zoo-media/<token>``), URL fetches refused and API inputs
    type-checked (:class:`RequestGuard`)."""
    from starlette.middleware import Middleware

    manifests = [str(app.gallery_dir / "manifest.json"), str(app.gallery_dir / "user" / "manifest.json")]
    return {"server_name": host, "share": False, "max_file_size": MAX_FILE_SIZE,
            "allowed_paths": [], "blocked_paths": [str(app.gallery_dir), *manifests], "ssr_mode": False,
            "show_error": True, "app_kwargs": {"middleware": [Middleware(RequestGuard, demo_app=app)]}}


def server_address(host: str | None = None, port: int | None = None) -> tuple[str, int]:
    """Where :func:`launch` binds: the arguments given, else ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``, else
    127.0.0.1:7860. Raises ZooError for a port that is not a number from 1 to 65535."""
    host = host or os.environ.get("GRADIO_SERVER_NAME", "").strip() or HOST
    if port is None:
        raw = os.environ.get("GRADIO_SERVER_PORT", "").strip()
        if raw and not raw.isdigit():
            raise ZooError(f"GRADIO_SERVER_PORT must be a port number, not {raw!r}")
        port = int(raw) if raw else DEFAULT_PORT
    if not 0 < int(port) < 65536:
        raise ZooError(f"the port must be from 1 to 65535, not {port}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (localhost, 127.x.x.x, ::1)."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def launch(*, port: int | None = None, model: str = DEFAULT_MODEL, host: str | None = None,
           cache_dir: str | Path | None = None, prevent_thread_lock: bool = False):
    """Build and start the demo on ``host``:``port``.

    ``host`` and ``port`` not given (None) come from ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` when set, else
    127.0.0.1 and 7860; given ones win over the environment. Any address other than loopback logs a one-line
    warning: the demo has no authentication, so whoever reaches that address can use it.
    """
    registry.card(model)  # unknown names fail here, with suggestions
    host, port = server_address(host, port)
    if not is_loopback(host):
        log.warning("the demo has no authentication: anyone who can reach %s:%d can use it", host, port)
    app = DemoApp(cache_dir, default_model=model)
    demo = build_demo(app)
    demo.launch(server_port=port, prevent_thread_lock=prevent_thread_lock, **launch_options(app, host))
    return demo
