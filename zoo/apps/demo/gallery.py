"""The gallery folder (:class:`Gallery`), prepared on first run into the app's cache: the skimage sample photos,
the project's speech clips, short videos panning across a few of the photos, generated 3D shapes exported as
``.glb``, code and docstrings from Python's standard library and a few short texts, each with a thumbnail (made by
:mod:`.media`); then read back from its manifest (names relative to the gallery folder), with the files users
added. Also the standard-library sentences of the Spaces tab (:func:`stdlib_sentences`)."""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import textwrap
import threading
from dataclasses import asdict
from pathlib import Path

from zoo.apps.demo.items import Item, Progress, _decode_text, _kind_of_suffix, _no_progress, _safe_name
from zoo.apps.demo.media import _mesh_thumb, _text_thumb, _video_thumb, _waveform_thumb, sample_video
from zoo.apps.demo.settings import MAX_FILE_BYTES

#: Version of what a gallery build holds; a gallery built by an older version is built again (users' files kept).
GALLERY_VERSION = 2  # 2: sample videos
SHAPES_PER_CLASS = 2
SHAPE_SEED = 202
#: Standard-library functions whose source (code items) and docstring (text items) join the gallery.
STDLIB_FUNCTIONS = (
    "json.dumps", "os.path.join", "textwrap.dedent", "shutil.copyfile", "random.shuffle", "statistics.median",
    "fnmatch.fnmatch", "base64.b64encode", "string.capwords", "heapq.nlargest", "glob.glob", "csv.DictReader",
)
#: The photos the sample videos pan across (of the gallery's photos; the names of ``zoo.samples.gallery``).
VIDEO_PHOTOS = ("astronaut", "chelsea", "coffee")
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
        self.version = self.root / "version"
        self.user_dir = self.root / "user"
        self._lock = threading.Lock()

    def items(self, progress: Progress = _no_progress) -> list[Item]:
        with self._lock:
            if not self.manifest.is_file() or not self._current():
                self._build(progress)
            builtin = [self._resolved(d) for d in json.loads(self.manifest.read_text(encoding="utf-8"))]
            return builtin + self._user_items()

    def _current(self) -> bool:
        """Whether the gallery was built by this :data:`GALLERY_VERSION` (an older one lacks the newer kinds)."""
        try:
            return self.version.read_text(encoding="utf-8").strip() == str(GALLERY_VERSION)
        except OSError:
            return False

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
        for sub in ("photos", "speech", "videos", "shapes", "texts"):
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
        items += self._build_videos(tmp / "videos", [p for p in photos if p.name in VIDEO_PHOTOS], progress)
        items += self._build_shapes(tmp / "shapes", progress)
        items += self._build_texts(tmp / "texts", progress)
        final = [self._relative(it, tmp) for it in items]
        (tmp / "manifest.json").write_text(json.dumps(final, indent=1), encoding="utf-8")
        (tmp / "version").write_text(str(GALLERY_VERSION), encoding="utf-8")
        user = self.root / "user"
        if user.is_dir():  # keep what users added across a rebuild
            shutil.move(str(user), str(tmp / "user"))
        shutil.rmtree(self.root, ignore_errors=True)
        tmp.rename(self.root)
        progress(1.0, "gallery ready")

    def _build_videos(self, folder: Path, photos: list, progress: Progress) -> list[Item]:
        """A short video per photo (a slow pan across it, see :func:`~zoo.apps.demo.media.sample_video`)."""
        items = []
        for p in photos:
            progress(0.42, f"making a sample video of {p.name}")
            path, thumb = folder / f"{_safe_name(p.name)}.mp4", folder / f"{_safe_name(p.name)}.png"
            sample_video(p.path, path, thumb)
            items.append(Item(f"video/{p.name}", "video", f"{p.name} (video)", path=str(path), thumb=str(thumb)))
        return items

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
        if kind in ("audio", "video"):
            thumb = str(self.user_dir / f"{digest}.png")
            try:
                if kind == "audio":
                    _waveform_thumb(dest, Path(thumb), src.name)
                else:
                    _video_thumb(dest, Path(thumb))
            except Exception:  # an undecodable sound or video leaves no copy behind
                dest.unlink(missing_ok=True)
                Path(thumb).unlink(missing_ok=True)
                raise
        return Item(item_id, kind, src.name, path=str(dest), thumb=thumb)

    def remember(self, item: Item) -> None:
        with self._lock:
            items = [it for it in self._user_items() if it.id != item.id] + [item]
            (self.user_dir / "manifest.json").write_text(json.dumps([self._relative(it) for it in items], indent=1),
                                                         encoding="utf-8")
