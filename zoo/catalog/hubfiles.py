"""What a hub repository holds, and which of its files a loader needs.

A hub source on a card records the repository's own file list (``[sources.listing]``: every
path with its size as the hub's "Files and versions" page shows it, the page's address and
the commit it showed). From that list this module answers two questions without touching
the network:

- which files the zoo's loader for the card reads when the repository has them
  (:func:`needed_files`), so a card whose download list (``files``) misses one fails a test
  instead of giving its first user a tokenizer without a vocabulary;
- whether a finished download matches the listing (:func:`check_download`): every listed
  file present, sizes within the page's rounding where the listing is at the pinned
  revision, sha256 where the page showed it.

Standard library only.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from zoo.errors import IntegrityError

_SIZE = re.compile(r"^(\d+(?:\.\d+)?) (Bytes|kB|MB|GB|TB)$")
_UNITS = {"Bytes": 1, "kB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
#: The hub prints sizes to three significant digits; 1% covers that rounding, and hides no truncated file.
SIZE_TOLERANCE = 0.01

# File families, by the loader that reads them when the repository has them.
CONFIG = ("config.json",)
GENERATION = ("generation_config.json",)
TOKENIZER = (
    "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "vocab.txt", "spiece.model",
    "sentencepiece.bpe.model", "tokenizer.model", "special_tokens_map.json", "added_tokens.json",
)
PROCESSOR = ("preprocessor_config.json", "processor_config.json", "video_preprocessor_config.json")
CHAT_TEMPLATE = ("chat_template.json", "chat_template.jinja")
OPEN_CLIP = ("open_clip_config.json",)
SAFETENSORS = ("*.safetensors", "*.safetensors.index.json")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model-*.bin", "pytorch_model.bin.index.json")
LORA = ("adapter_config.json",)
REMOTE_CODE = ("*.py",)

#: adapter key -> the file families its loader reads from a card's main hub repository.
#: An adapter that is not listed here (a plug-in) gets no completeness check.
READS: dict[str, tuple[str, ...]] = {
    "text": (*CONFIG, *TOKENIZER),
    "vlm": (*CONFIG, *TOKENIZER, *PROCESSOR, *CHAT_TEMPLATE),
    "hf_clip": (*CONFIG, *TOKENIZER, *PROCESSOR),
    "clap": (*CONFIG, *TOKENIZER, *PROCESSOR),
    "whisper": (*CONFIG, *GENERATION, *TOKENIZER, *PROCESSOR),
    "open_clip": OPEN_CLIP,
    "image": CONFIG,
    "openshape": (),
}


@dataclass(frozen=True)
class Listing:
    """A hub repository's file list as its "Files and versions" page showed it.

    Attributes:
        url: the page the list was read from ("" when none was found).
        seen: the commit the page showed (short hex), "" when it named none.
        note: what the reader must know: a listing newer than the pin, a folder not opened,
            or why there is no listing at all.
        files: every path on the page -> its size as printed ("4.42 GB", "596 Bytes"; "" where
            the page cut off before the size).
        sha256: digests of large files whose own page showed them (at the pinned file version).
        unseen: files the card downloads that a page of another commit did not show (added
            at the pinned revision, as the note explains); only for listings not at the pin.
    """

    url: str = ""
    seen: str = ""
    note: str = ""
    files: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    unseen: tuple[str, ...] = ()

    def at(self, revision: str) -> bool:
        """Whether the page showed the pinned ``revision`` itself."""
        return len(self.seen) >= 7 and revision.startswith(self.seen)


def parse_size(text: str) -> int:
    """Bytes in a size as the hub prints it ("1.52 kB" -> 1520). Raises ValueError on other forms."""
    m = _SIZE.match(text.strip())
    if not m:
        raise ValueError(f"size {text!r} is not of the hub's form ('596 Bytes', '1.52 kB', '4.42 GB')")
    return round(float(m.group(1)) * _UNITS[m.group(2)])


def size_matches(actual: int, shown: str) -> bool:
    """Whether ``actual`` bytes print as ``shown`` on the hub: exact for Bytes, within rounding above, "" unknown."""
    if not shown:
        return True
    expected = parse_size(shown)
    if shown.endswith("Bytes"):
        return actual == expected
    return abs(actual - expected) <= SIZE_TOLERANCE * expected


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def listing_from(raw: object) -> Listing:
    """Validate a card's ``[sources.listing]`` table. Raises ValueError saying what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError("listing must be a table")
    unknown = set(raw) - {"url", "seen", "note", "files", "sha256", "unseen"}
    if unknown:
        raise ValueError(f"listing has unknown field(s) {sorted(unknown)}")
    files, sha = raw.get("files", {}), raw.get("sha256", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise ValueError("listing.files must map paths to sizes as the hub prints them")
    for path, size in files.items():
        if size:
            parse_size(size)
        if path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"listing.files has a path outside the repository: {path!r}")
    if not isinstance(sha, dict) or not all(isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v)
                                            for v in sha.values()):
        raise ValueError("listing.sha256 must map paths to 64-hex digests")
    if set(sha) - set(files):
        raise ValueError(f"listing.sha256 names files the listing lacks: {sorted(set(sha) - set(files))}")
    seen = raw.get("seen", "")
    if not isinstance(seen, str) or (seen and not re.fullmatch(r"[0-9a-f]{7,40}", seen)):
        raise ValueError("listing.seen must be the commit the page showed (7 to 40 hex digits)")
    url, note = raw.get("url", ""), raw.get("note", "")
    if not isinstance(url, str) or not isinstance(note, str):
        raise ValueError("listing.url and listing.note must be strings")
    if not files and not note:
        raise ValueError("a listing without files must say in listing.note why none was found")
    if files and not url.startswith("https://"):
        raise ValueError("listing.url must be the https address the file list was read from")
    unseen = raw.get("unseen", [])
    if not isinstance(unseen, list) or not all(isinstance(u, str) and u not in files for u in unseen):
        raise ValueError("listing.unseen must list files the page did not show")
    if unseen and not note:
        raise ValueError("listing.unseen needs a note saying why those files are expected at the pin")
    return Listing(url=url, seen=seen, note=note, files=dict(files), sha256=dict(sha), unseen=tuple(unseen))


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(path, p) for p in patterns)


def needed_files(listing: Listing, *, role: str, adapter: str, weights_format: str, remote_code: bool) -> list[str]:
    """The listed top-level files that the zoo's loader reads for a source of this ``role``.

    ``role`` is "model" (the card's main repository), "adapter" (a LoRA adapter) or "code"
    (remote code kept in another repository). Weights follow the card's format: every
    safetensors shard and its index, or the pickle files for ``torch-weights-only`` cards.
    """
    top = [p for p in (*listing.files, *listing.unseen) if "/" not in p]
    if role == "code":
        return [p for p in top if _matches(p, REMOTE_CODE)]
    if role == "adapter":
        weights = ("adapter_model.safetensors",) if "adapter_model.safetensors" in top else ("adapter_model.bin",)
        return [p for p in top if _matches(p, LORA + weights)]
    families = READS.get(adapter)
    if families is None:
        return []
    wanted = list(families) + (list(REMOTE_CODE) if remote_code else [])
    if weights_format == "safetensors" and adapter in ("text", "vlm", "hf_clip", "clap", "whisper", "image"):
        wanted += SAFETENSORS if adapter != "image" else ("model.safetensors",)
    elif weights_format == "torch-weights-only" and adapter in ("clap", "text", "hf_clip", "vlm"):
        wanted += PICKLE_WEIGHTS
    if adapter == "open_clip":
        safetensors = [p for p in top if p.startswith("open_clip_") and p.endswith(".safetensors")]
        wanted += safetensors[:1] or ["open_clip_pytorch_model.bin"]
    if adapter == "openshape":
        wanted += ["model.pt"]
    return [p for p in top if _matches(p, tuple(wanted))]


def model_folder_files(card) -> list[str]:
    """The files that make a folder a model folder for ``card`` (its configs), for checking a caller's ``path=``."""
    hub = card.hub_source
    names = list(hub.files) if hub else [f for s in card.sources for f in s.sha256]
    return [f for f in names if f in ("config.json", "open_clip_config.json", "adapter_config.json")]


def missing_from(files: tuple[str, ...], needed: list[str]) -> list[str]:
    """The ``needed`` paths that no entry of a download list (names or patterns) covers."""
    return [p for p in needed if not any(fnmatch.fnmatchcase(p, f) for f in files)]


def check_download(folder: Path, files: tuple[str, ...], listing: Listing | None, revision: str, *, what: str) -> None:
    """Raise IntegrityError unless ``folder`` holds every file of ``files`` as the listing describes it.

    Names are always checked. Sizes are checked against the listing when it was read at the
    pinned revision (a newer page may show files that changed since); sha256 wherever the
    listing has one. The bad file is named, with what was expected.
    """
    for pattern in files:
        if not any(p.is_file() for p in folder.glob(pattern)):
            raise IntegrityError(f"{what}: the download has no {pattern!r}, which the card lists", path=pattern)
    if listing is None:
        return
    for rel in sorted({str(p.relative_to(folder)) for f in files for p in folder.glob(f) if p.is_file()}):
        file = folder / rel
        shown = listing.files.get(rel)
        if shown is not None and listing.at(revision) and not size_matches(file.stat().st_size, shown):
            raise IntegrityError(
                f"{what}: {rel} is {file.stat().st_size:,} bytes; the repository lists it as {shown} at "
                f"{revision[:12]}: the download is incomplete or not the pinned file", path=rel,
            )
        digest = listing.sha256.get(rel)
        if digest is not None and _sha256(file) != digest:
            raise IntegrityError(f"{what}: {rel} has another sha256 than the repository's page shows "
                                 f"({digest[:16]}...)", path=rel)
