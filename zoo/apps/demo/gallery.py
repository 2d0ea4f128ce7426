"""The gallery folder (:class:`Gallery`), prepared on first run into the app's cache: the skimage sample photos,
the project's speech clips, generated 3D shapes exported as ``.glb``, code and docstrings from Python's standard
library and a few short texts, each with a thumbnail; then read back from its manifest (names relative to the
gallery folder), with the files users added. Also the standard-library sentences of the Spaces tab
(:func:`stdlib_sentences`)."""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
import textwrap
import threading
from dataclasses import asdict
from pathlib import Path

import numpy as np

from zoo.apps.demo.items import Item, Progress, _decode_text, _kind_of_suffix, _no_progress, _safe_name
from zoo.apps.demo.settings import MAX_FILE_BYTES

SHAPES_PER_CLASS = 2
SHAPE_SEED = 202
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
