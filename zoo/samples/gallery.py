"""Sample media that runs offline: photos, spoken sentences and generated 3D shapes, with queries.

Used by the evaluations on model cards (zoo-bind-mini's recall figures), by the demo's search
gallery and by tests. Every item has a natural-language query a person would type to find it.

- Photos: the sample images that ship inside scikit-image (``skimage.data``; BSD-3-Clause and
  public-domain sources, see its README), each with a query and a second phrasing. Cards report
  the queries of the ``"test"`` photos; settings are chosen on the second phrasings (a held-out
  split of queries).
- Speech: the project's espeak-ng clips (``zoo/samples/speech``, made by scripts/make_speech.py),
  each with its sentence and a paraphrase to query it by meaning.
- Shapes: seeded shapes from :mod:`zoo.shapes`, one query per class ("a donut shape" finds the
  torus).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SPEECH_DIR = Path(__file__).resolve().parent / "speech"


@dataclass(frozen=True)
class Photo:
    name: str
    path: Path
    query: str  # what a person types to find it (the test query of "test" photos)
    dev_query: str  # a second phrasing, for choosing settings without touching the test queries
    split: str  # "test" or "dev"


@dataclass(frozen=True)
class SpeechClip:
    name: str
    path: Path
    text: str
    paraphrase: str


# file in skimage's data folder -> (query, second phrasing, split). Cards report recall@1 of the "test" photos'
# queries; settings (such as ConSE's number of classes) are chosen on the second phrasings ("dev" queries), which
# share no text with the test queries. "dev" photos only ever appear through their second phrasing or as
# distractors in the gallery.
_PHOTOS: dict[str, tuple[str, str, str]] = {
    "astronaut.png": ("an astronaut in a spacesuit", "a woman astronaut posing with a flag", "test"),
    "chelsea.png": ("a cat", "a tabby kitten looking at the camera", "test"),
    "coffee.png": ("a cup of coffee", "an espresso in a white mug on a saucer", "test"),
    "rocket.jpg": ("a rocket on the launch pad", "a space shuttle before take-off", "test"),
    "motorcycle_left.png": ("a motorcycle", "a parked motorbike", "test"),
    "horse.png": ("a horse", "a black silhouette of a horse", "test"),
    "camera.png": ("a photographer with a camera", "a man holding a camera on a tripod", "test"),
    "coins.png": ("a collection of old coins", "a set of ancient coins", "test"),
    "moon.png": ("the surface of the moon", "craters on the moon", "test"),
    "brick.png": ("a brick wall", "a wall made of bricks", "test"),
    "grass.png": ("a lawn of grass", "green grass close up", "test"),
    "page.png": ("a printed page of a book", "a scanned page of old text", "test"),
    "chessboard_RGB.png": ("a chessboard", "a checkerboard pattern", "test"),
    "hubble_deep_field.jpg": ("galaxies in deep space", "a telescope image of stars and galaxies", "test"),
    "retina.jpg": ("a photo of the retina of an eye", "an eye fundus photograph", "test"),
    "color.png": ("a colour wheel", "a circle of rainbow colours", "test"),
    "gravel.png": ("a pile of gravel", "small stones on the ground", "dev"),
    "logo.png": ("a logo with a snake", "the scikit-image logo", "dev"),
    "text.png": ("a sign with text", "letters written on a surface", "dev"),
    "ihc.png": ("stained tissue under a microscope", "a stained microscope slide", "dev"),
    "clock_motion.png": ("a clock", "a blurred photo of a clock", "dev"),
    "cell.png": ("a cell seen through a microscope", "a microscope image of a cell", "dev"),
    "phantom.png": ("a scan of a head", "a medical imaging phantom", "dev"),
}

# shape class -> a second phrasing, for choosing settings without touching SHAPE_QUERIES
SHAPE_DEV_QUERIES: dict[str, str] = {
    "box": "a cardboard carton",
    "sphere": "a round globe",
    "cylinder": "a tin can",
    "cone": "a pointed party hat",
    "torus": "an inflatable swim ring",
    "capsule": "a medicine capsule",
    "pyramid": "an Egyptian pyramid",
    "icosahedron": "a d20 die",
    "ring": "a metal washer",
    "plane": "a thin flat panel",
    "helix": "a coiled wire",
    "cross": "a plus sign",
    "tetrahedron": "a triangular pyramid",
    "bowl": "a soup bowl",
    "star": "a five-pointed star",
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
    out = [Photo(Path(f).stem, folder / f, q, d, s) for f, (q, d, s) in _PHOTOS.items()]
    return [p for p in out if split is None or p.split == split]


def speech_clips() -> list[SpeechClip]:
    """The project's spoken sentences, with their texts and paraphrases."""
    manifest = json.loads((SPEECH_DIR / "manifest.json").read_text(encoding="utf-8"))
    return [SpeechClip(Path(c["file"]).stem, SPEECH_DIR / c["file"], c["text"], c["paraphrase"])
            for c in manifest["clips"]]
