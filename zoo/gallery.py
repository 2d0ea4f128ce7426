"""Sample media that runs offline: photos, spoken sentences and generated 3D shapes, with queries.

Used by the evaluations on model cards (zoo-bind-mini's recall figures), by the demo's search
gallery and by tests. Every item has a natural-language query a person would type to find it.

- Photos: the sample images that ship inside scikit-image (``skimage.data``; BSD-3-Clause and
  public-domain sources, see its README), each with a query. Queries are split: ``"test"`` ones
  are what cards report, ``"dev"`` ones are the held-out split that settings are chosen on.
- Speech: the project's espeak-ng clips (``zoo/data/speech``, made by scripts/make_speech.py),
  each with its sentence and a paraphrase to query it by meaning.
- Shapes: seeded shapes from :mod:`zoo.shapes`, one query per class ("a donut shape" finds the
  torus).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SPEECH_DIR = Path(__file__).resolve().parent / "data" / "speech"


@dataclass(frozen=True)
class Photo:
    name: str
    path: Path
    query: str
    split: str  # "test" or "dev"


@dataclass(frozen=True)
class SpeechClip:
    name: str
    path: Path
    text: str
    paraphrase: str


# file in skimage's data folder -> (query, split)
_PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut.png": ("an astronaut in a spacesuit", "test"),
    "chelsea.png": ("a cat", "test"),
    "coffee.png": ("a cup of coffee", "test"),
    "rocket.jpg": ("a rocket on the launch pad", "test"),
    "motorcycle_left.png": ("a motorcycle", "test"),
    "horse.png": ("a horse", "test"),
    "camera.png": ("a photographer with a camera", "test"),
    "coins.png": ("a collection of old coins", "test"),
    "moon.png": ("the surface of the moon", "test"),
    "brick.png": ("a brick wall", "test"),
    "grass.png": ("a lawn of grass", "test"),
    "page.png": ("a printed page of a book", "test"),
    "chessboard_RGB.png": ("a chessboard", "test"),
    "hubble_deep_field.jpg": ("galaxies in deep space", "test"),
    "retina.jpg": ("a photo of the retina of an eye", "test"),
    "color.png": ("a colour wheel", "test"),
    "gravel.png": ("a pile of gravel", "dev"),
    "logo.png": ("a logo with a snake", "dev"),
    "text.png": ("a sign with text", "dev"),
    "ihc.png": ("stained tissue under a microscope", "dev"),
    "clock_motion.png": ("a clock", "dev"),
    "cell.png": ("a cell seen through a microscope", "dev"),
    "phantom.png": ("a scan of a head", "dev"),
}

# shape class -> the query that should find it
SHAPE_QUERIES: dict[str, str] = {
    "box": "a box",
    "sphere": "a ball",
    "cylinder": "a cylinder like a can",
    "cone": "a cone",
    "torus": "a donut shape",
    "capsule": "a capsule like a pill",
    "pyramid": "a pyramid",
    "icosahedron": "an icosahedron, a twenty-sided die",
    "ring": "a flat ring like a washer",
    "plane": "a flat sheet",
    "helix": "a spring, a coiled helix",
    "cross": "a cross shape",
    "tetrahedron": "a tetrahedron with four triangular faces",
    "bowl": "a bowl",
    "star": "a star shape",
}


def photos(split: str | None = None) -> list[Photo]:
    """The sample photos (all, or one split), in a fixed order. Needs scikit-image installed."""
    from zoo.errors import require

    data = require("skimage.data", extra="demo", purpose="the sample photos")
    folder = Path(data.data_dir)
    out = [Photo(Path(f).stem, folder / f, q, s) for f, (q, s) in _PHOTOS.items()]
    return [p for p in out if split is None or p.split == split]


def speech_clips() -> list[SpeechClip]:
    """The project's spoken sentences, with their texts and paraphrases."""
    manifest = json.loads((SPEECH_DIR / "manifest.json").read_text(encoding="utf-8"))
    return [SpeechClip(Path(c["file"]).stem, SPEECH_DIR / c["file"], c["text"], c["paraphrase"])
            for c in manifest["clips"]]
