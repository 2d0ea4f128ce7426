"""A model card's sources: where its weight files come from, and the checks on each.

Part of :mod:`zoo.modelcard` (which re-exports :class:`Source`); standard library only.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from zoo.catalog.hubfiles import Listing, listing_from
from zoo.errors import CardError

HEX40 = re.compile(r"^[0-9a-f]{40}$")
HEX64 = re.compile(r"^[0-9a-f]{64}$")

SourceKind = Literal["package", "bundled", "local", "hub"]
SourceRole = Literal["model", "adapter", "code"]


@dataclass(frozen=True)
class Source:
    """One place the weight files can come from.

    ``package`` sources name an installed distribution and the folder inside it; ``bundled``
    sources are files shipped inside the ``zoo`` package itself (``subdir`` is relative to
    it: weights this project trained); ``local`` sources are files a user made, in
    ``$ZOO_HOME/models/<name>`` (a composite saved by ``save_composite``); ``hub`` sources
    name a Hugging Face repo pinned to a 40-hex commit. ``sha256`` maps file names
    (relative to the folder) to their digests; every listed file is verified on load.

    A card may name several hub repositories by ``role``: "model" (the weights the adapter
    loads; exactly one), "adapter" (a LoRA adapter merged into them) and "code" (remote code
    that the model's config names in another repository). ``files`` is what the zoo downloads
    from each; ``listing`` is the repository's own file list, which ``files`` is checked against.
    """

    kind: SourceKind
    package: str = ""
    subdir: str = ""
    repo: str = ""
    revision: str = ""
    files: tuple[str, ...] = ()
    sha256: dict[str, str] = field(default_factory=dict)
    license_file: str = ""
    role: SourceRole = "model"
    listing: Listing | None = None

    def describe(self) -> str:
        if self.kind == "package":
            return f"package {self.package} ({self.subdir or '.'})"
        if self.kind == "bundled":
            return f"bundled with embedding-zoo (zoo/{self.subdir})"
        if self.kind == "local":
            return "local folder $ZOO_HOME/models/<name>"
        role = "" if self.role == "model" else f" ({self.role})"
        return f"hub {self.repo}@{self.revision[:12]}{role}"


_SOURCE_FIELDS = {f.name for f in fields(Source)}


def _fail(where: str, msg: str) -> CardError:
    return CardError(f"card {where}: {msg}")


def source_from(where: str, raw: Any, i: int) -> Source:
    if not isinstance(raw, dict):
        raise _fail(where, f"sources[{i}] must be a table")
    unknown = set(raw) - _SOURCE_FIELDS
    if unknown:
        raise _fail(where, f"sources[{i}] has unknown field(s) {sorted(unknown)}")
    kind = raw.get("kind")
    if kind not in ("package", "bundled", "local", "hub"):
        raise _fail(where, f"sources[{i}].kind must be 'package', 'bundled', 'local' or 'hub', not {kind!r}")
    sha = raw.get("sha256", {})
    if not isinstance(sha, dict) or not all(isinstance(v, str) and HEX64.match(v) for v in sha.values()):
        raise _fail(where, f"sources[{i}].sha256 must map file names to 64-hex digests")
    files = raw.get("files", [])
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise _fail(where, f"sources[{i}].files must be a list of file names")
    if kind == "package":
        if not raw.get("package"):
            raise _fail(where, f"sources[{i}] of kind 'package' needs 'package'")
        if not sha:
            raise _fail(where, f"sources[{i}]: packaged weights must pin the sha256 of their files")
    elif kind == "bundled":
        subdir = raw.get("subdir", "")
        if not subdir or subdir.startswith(("/", "\\")) or ".." in Path(subdir).parts:
            raise _fail(where, f"sources[{i}] of kind 'bundled' needs a 'subdir' inside the zoo package")
        if not sha:
            raise _fail(where, f"sources[{i}]: bundled weights must pin the sha256 of their files")
    elif kind == "local":
        if not sha:
            raise _fail(where, f"sources[{i}]: local weights must pin the sha256 of their files")
    else:
        if not re.match(r"^[\w.-]+/[\w.-]+$", raw.get("repo", "")):
            raise _fail(where, f"sources[{i}].repo must look like 'org/name'")
        if not HEX40.match(raw.get("revision", "")):
            raise _fail(where, f"sources[{i}].revision must be a 40-hex commit, not {raw.get('revision')!r}")
    role = raw.get("role", "model")
    if role not in ("model", "adapter", "code") or (role != "model" and kind != "hub"):
        raise _fail(where, f"sources[{i}].role must be 'model', or 'adapter'/'code' on a hub source, not {role!r}")
    listing = None
    if "listing" in raw:
        if kind != "hub":
            raise _fail(where, f"sources[{i}]: only hub sources carry a listing")
        try:
            listing = listing_from(raw["listing"])
        except ValueError as exc:
            raise _fail(where, f"sources[{i}]: {exc}") from None
        known = [*listing.files, *listing.unseen]
        unlisted = [f for f in files if listing.files and not any(fnmatch.fnmatchcase(p, f) for p in known)]
        if unlisted:
            raise _fail(where, f"sources[{i}].files names what the listing of {raw['repo']} does not show: {unlisted}")
        if listing.unseen and listing.at(raw["revision"]):
            raise _fail(where, f"sources[{i}]: a listing read at the pinned revision has no unseen files")
    return Source(
        kind=kind,
        package=raw.get("package", ""),
        subdir=raw.get("subdir", ""),
        repo=raw.get("repo", ""),
        revision=raw.get("revision", ""),
        files=tuple(files),
        sha256=dict(sha),
        license_file=raw.get("license_file", ""),
        role=role,
        listing=listing,
    )
