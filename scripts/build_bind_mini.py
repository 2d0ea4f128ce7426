"""Build zoo-bind-mini: every modality in all-MiniLM-L6-v2's text space, from real weights that run offline.

Experts (see zoo/cards/zoo-bind-mini.toml):

- text and code: all-minilm-l6-v2 itself;
- images: efficientnet-lite0's ImageNet class probabilities, bound by ConSE to the text
  embeddings of the class names; the number of classes T and the label prompt are chosen on
  the second phrasings of the sample-photo queries (zoo.gallery), never on the test queries;
- speech: the whisper-tiny-en transcript embedded by all-minilm-l6-v2, and the Whisper audio
  vector through projector heads fitted on paired data (espeak-ng clips of standard-library
  docstring sentences -> the sentences' text vectors), weighed by a router fitted on other pairs;
- 3D shapes: pointnet-mini's class probabilities bound by ConSE over its class names or their
  everyday names (zoo.shapes.EVERYDAY_NAMES); labels, T and prompt chosen with second phrasings
  of the queries on generated shapes of seed 101, tested with the queries on seed 202.

Writes zoo/weights/zoo-bind-mini/bind.safetensors and prints the figures for the card.

    python scripts/build_bind_mini.py          # needs Debian's espeak-ng; about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from corpus import stdlib_sentences  # noqa: E402

import zoo  # noqa: E402
from zoo import gallery  # noqa: E402
from zoo.adapters.bind import BindNetwork, BindSpec, conse, label_texts  # noqa: E402

OUT = ROOT / "zoo" / "weights" / "zoo-bind-mini"
IMAGE_TOPS, IMAGE_PROMPTS = (1, 3, 5, 10, 20), ("{label}", "a photo of a {label}", "a {label}")
SHAPE_TOPS, SHAPE_PROMPTS = (1, 2, 3, 5), ("{label}", "a {label}", "a 3D model of a {label}")
DEV_SHAPES_SEED, TEST_SHAPES_SEED, SHAPES_PER_CLASS = 101, 202, 3


def recall_at_1(queries: np.ndarray, gallery_vectors: np.ndarray, hits: np.ndarray) -> float:
    """Share of queries whose most similar gallery item is a hit for it (``hits``: (Q, G) bool)."""
    best = np.argmax(queries @ gallery_vectors.T, axis=1)
    return float(np.mean(hits[np.arange(len(queries)), best]))


def choose_conse(probs: dict, names, queries: dict, hits: dict, tops, prompts, text, label_sets=None) -> dict:
    """Pick ConSE's (labels, T, prompt) by dev recall@1 and report test recall@1 of that choice.

    ``probs``, ``queries`` and ``hits`` map "dev" / "test" to the split's gallery class
    probabilities, query texts and (Q, G) hit matrix. ``label_sets`` maps a name to the label of
    every class (default: the class names). Ties: the first label set, fewer classes, the earlier prompt.
    """
    label_sets = label_sets or {"names": list(names)}
    qv = {k: text.embed(v).vectors for k, v in queries.items()}
    grid = []
    for si, (set_name, labels) in enumerate(label_sets.items()):
        for prompt in prompts:
            vectors = text.embed(label_texts(labels, prompt)).vectors
            for top in tops:
                r = {k: recall_at_1(qv[k], conse(probs[k], vectors, top), hits[k]) for k in ("dev", "test")}
                grid.append({"labels": set_name, "top": top, "prompt": prompt, "dev": r["dev"], "test": r["test"],
                             "order": (-si, -top, -prompts.index(prompt))})
    best = max(grid, key=lambda g: (g["dev"], *g["order"]))
    for g in grid:
        del g["order"]
    return {"labels": best["labels"], "top": best["top"], "prompt": best["prompt"],
            "dev_recall_at_1": best["dev"], "test_recall_at_1": best["test"], "grid": grid}


def image_part(text) -> dict:
    """Queries search the whole photo gallery; each query's one hit is its own photo.

    Dev queries: every photo's second phrasing. Test queries: the "test" photos' own queries.
    """
    photos = gallery.photos()
    eff = zoo.load("efficientnet-lite0")
    probs = eff.class_probabilities([p.path for p in photos])
    eye = np.eye(len(photos), dtype=bool)
    test_rows = [i for i, p in enumerate(photos) if p.split == "test"]
    queries = {"dev": [p.dev_query for p in photos], "test": [photos[i].query for i in test_rows]}
    hits = {"dev": eye, "test": eye[test_rows]}
    out = choose_conse({"dev": probs, "test": probs}, list(eff.class_names), queries, hits, IMAGE_TOPS,
                       IMAGE_PROMPTS, text)
    out.update(n_photos=len(photos), n_dev_queries=len(queries["dev"]), n_test_queries=len(queries["test"]))
    return out


def shape_part(text) -> dict:
    """One query per class; each split's gallery is its own generated shapes, every shape of the class a hit.

    Dev: the second phrasings (gallery.SHAPE_DEV_QUERIES) over shapes of seed 101; test:
    gallery.SHAPE_QUERIES over shapes of seed 202. Labels: the class names, or the everyday
    names of zoo.shapes.EVERYDAY_NAMES.
    """
    from zoo.shapes import EVERYDAY_NAMES, make_dataset

    pn = zoo.load("pointnet-mini")
    names = list(pn.class_names)
    probs, hits = {}, {}
    queries = {"dev": [gallery.SHAPE_DEV_QUERIES[n] for n in names], "test": [gallery.SHAPE_QUERIES[n] for n in names]}
    for split, seed in (("dev", DEV_SHAPES_SEED), ("test", TEST_SHAPES_SEED)):
        data = make_dataset(seed, SHAPES_PER_CLASS, n_points=pn.n_points)
        probs[split] = pn.class_probabilities(list(data.points))
        hits[split] = np.asarray(data.labels)[None, :] == np.arange(len(names))[:, None]
    label_sets = {"names": names, "everyday": [EVERYDAY_NAMES[n] for n in names]}
    out = choose_conse(probs, names, queries, hits, SHAPE_TOPS, SHAPE_PROMPTS, text, label_sets)
    out.update(n_queries=len(names), shapes_per_split=len(names) * SHAPES_PER_CLASS)
    return out


def make_training_speech(n: int, folder: Path) -> list[tuple[Path, str]]:
    """``n`` espeak-ng clips of docstring sentences not used anywhere else in the zoo's evaluations."""
    sentences = [s for s in stdlib_sentences() if len(s.split()) <= 16][:n]
    out = []
    for i, sentence in enumerate(sentences):
        wav = folder / f"s{i:04d}.wav"
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), sentence], check=True)
        out.append((wav, sentence))
    return out


def speech_part(text, n_train: int, heads: int, hidden: int) -> tuple[dict, BindNetwork]:
    from zoo.adapters.bind_fit import fit_projectors, fit_router

    whisper = zoo.load("whisper-tiny-en")
    spec = BindSpec.from_options(bind_options(heads, hidden, top_image=1, prompt_image="{label}", top_shape=1,
                                              prompt_shape="{label}"))
    net = BindNetwork(spec)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        pairs = make_training_speech(n_train, Path(tmp))
        paths, sentences = [str(p) for p, _ in pairs], [s for _, s in pairs]
        audio = whisper.embed(paths, normalize=True).vectors
        transcripts = whisper.transcribe(paths, beam_size=1)
        print(f"speech pairs: {len(pairs)} clips made and run through Whisper in {time.perf_counter() - t0:.0f} s",
              flush=True)
    target = text.embed(sentences).vectors
    heard = text.embed(transcripts).vectors
    cut = int(0.7 * len(pairs))
    fit_projectors(net, "speech-audio", audio[:cut], target[:cut], epochs=80, batch_size=64, seed=0)
    fit_router(net, "audio", {"speech-transcript": heard[cut:], "speech-audio": audio[cut:]}, target[cut:],
               epochs=150, batch_size=32, seed=0)

    import torch

    clips = gallery.speech_clips()
    a = whisper.embed([str(c.path) for c in clips], normalize=True).vectors
    h = text.embed(whisper.transcribe([str(c.path) for c in clips], beam_size=1)).vectors
    with torch.no_grad():
        bound, w = net("audio", {"speech-audio": torch.from_numpy(a), "speech-transcript": torch.from_numpy(h)})
        audio_only = net.project("speech-audio", torch.from_numpy(a)).numpy()
    q = text.embed([c.paraphrase for c in clips]).vectors
    eye = np.eye(len(clips), dtype=bool)
    res = {"n_train_pairs": len(pairs), "projector_pairs": cut, "router_pairs": len(pairs) - cut,
           "recall_at_1": recall_at_1(q, bound.numpy(), eye),
           "transcript_only_recall_at_1": recall_at_1(q, h, eye),
           "audio_projector_only_recall_at_1": recall_at_1(q, audio_only / np.linalg.norm(audio_only, axis=1,
                                                                                           keepdims=True), eye),
           "mean_transcript_weight": float(w[:, 0].mean()), "n_clips": len(clips)}
    return res, net


def bind_options(heads, hidden, *, top_image, prompt_image, top_shape, prompt_shape, shape_labels="names") -> dict:
    from zoo.shapes import EVERYDAY_NAMES

    text = "all-minilm-l6-v2"
    shape_expert = {"id": "shape-conse", "kind": "conse", "classifier": "pointnet-mini", "text_model": text,
                    "modality": "points", "top": top_shape, "label_prompt": prompt_shape, "dim": 384,
                    "projector": False}
    if shape_labels == "everyday":
        shape_expert["label_names"] = dict(EVERYDAY_NAMES)
    return {
        "out_dim": 384, "heads": heads, "hidden": hidden, "router_hidden": 32, "router_width": 128,
        "weights_file": "bind.safetensors",
        "experts": [
            {"id": "minilm", "model": text, "dim": 384, "projector": False},
            {"id": "image-conse", "kind": "conse", "classifier": "efficientnet-lite0", "text_model": text,
             "modality": "image", "top": top_image, "label_prompt": prompt_image, "dim": 384, "projector": False},
            {"id": "speech-transcript", "kind": "transcript", "speech_model": "whisper-tiny-en", "text_model": text,
             "dim": 384, "projector": False},
            {"id": "speech-audio", "model": "whisper-tiny-en", "dim": 384},
            shape_expert,
        ],
        "routes": {
            "text": {"experts": ["minilm"]}, "code": {"experts": ["minilm"]},
            "image": {"experts": ["image-conse"]}, "points": {"experts": ["shape-conse"]},
            "audio": {"experts": ["speech-transcript", "speech-audio"], "router_inputs": ["speech-audio"],
                      "scale": 10.0},
        },
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--speech-pairs", type=int, default=400)
    p.add_argument("--heads", type=int, default=3)
    p.add_argument("--hidden", type=int, default=256)
    args = p.parse_args()
    import torch

    torch.manual_seed(0)
    text = zoo.load("all-minilm-l6-v2")
    t0 = time.perf_counter()
    image = image_part(text)
    print("image:", json.dumps({k: v for k, v in image.items() if k != "grid"}), flush=True)
    shapes = shape_part(text)
    print("shapes:", json.dumps({k: v for k, v in shapes.items() if k != "grid"}), flush=True)
    speech, net = speech_part(text, args.speech_pairs, args.heads, args.hidden)
    print("speech:", json.dumps(speech), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    from zoo.adapters.bind_fit import save_bind_weights
    from zoo.sources import sha256_file

    path = save_bind_weights(net, OUT / "bind.safetensors")
    summary = {"image": image, "shapes": shapes, "speech": speech, "sha256": sha256_file(path),
               "bytes": path.stat().st_size, "seconds": round(time.perf_counter() - t0),
               "options": bind_options(args.heads, args.hidden, top_image=image["top"], prompt_image=image["prompt"],
                                       top_shape=shapes["top"], prompt_shape=shapes["prompt"],
                                       shape_labels=shapes["labels"])}
    (OUT / "build.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in summary.items() if k != "options"}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
