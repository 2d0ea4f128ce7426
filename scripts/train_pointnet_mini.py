"""Train pointnet-mini, the zoo's own small point-cloud encoder, on seeded synthetic shapes (2 CPU cores).

What it does, start to end (about 15 minutes at most on 2 cores; the card reports the time measured):

1. makes the training set with ``zoo.shapes.make_dataset(TRAIN_SEED, ...)`` (upright shapes with
   random proportions, stretch, scale, noise and dropout), every cloud through
   ``zoo.points.normalize_unit_sphere``: the function the adapter applies at inference;
2. trains ``zoo.adapters.pointnet.PointNet`` (shared per-point MLP -> max ++ mean pool ->
   embedding layer -> linear classifier) with AdamW and a one-cycle schedule, label smoothing 0.1
   and dropout before the classifier, giving every cloud a fresh uniformly random
   3-D rotation each epoch so the classifier does not depend on the pose;
3. writes ``zoo/weights/pointnet-mini/model.safetensors`` (class names and architecture in its
   metadata) and prints the timings;
4. evaluates on held-out shapes made from another seed (``EVAL_SEED``), and on the same shapes
   each turned by an extra random 3-D rotation (``zoo.shapes.rotate_each(..., ROTATION_SEED)``):
   classifier accuracy, and nearest-neighbour accuracy of the embeddings (is a cloud's most
   similar other cloud of its class?); prints them with the file's sha256, ready for
   ``zoo/cards/pointnet-mini.toml``.

Run it with ``.venv/bin/python scripts/train_pointnet_mini.py``; ``--evaluate-only`` repeats step 4
on the weights already written (what tests/test_pointnet_mini.py recomputes). The seeds fix the data and the
initialization; torch's CPU kernels can round differently on other CPUs or thread counts, so a
rerun elsewhere gives close but not bit-identical weights (and accuracies within a point or so).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from torch.nn import functional as F
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zoo.adapters.pointnet import PointNet, build_from_metadata  # noqa: E402
from zoo.points import normalize_unit_sphere  # noqa: E402
from zoo.shapes import CLASSES, make_dataset, rotate_each  # noqa: E402

TRAIN_SEED, EVAL_SEED, ROTATION_SEED = 1, 2, 3
ARCH = {"in_dim": 3, "widths": [64, 128, 256], "pooling": ["max", "mean"], "embedding_dim": 256}
OUT = ROOT / "zoo" / "weights" / "pointnet-mini" / "model.safetensors"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--per-class", type=int, default=240, help="training shapes per class")
    p.add_argument("--eval-per-class", type=int, default=40, help="held-out shapes per class")
    p.add_argument("--n-points", type=int, default=512, help="points per cloud (the card's n_points)")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--evaluate-only", action="store_true", help="evaluate the weights in --out; no training")
    return p.parse_args()


def normalized(points: np.ndarray) -> torch.Tensor:
    """(N, P, 3) clouds -> (N, P, 3) tensor, every cloud through zoo.points.normalize_unit_sphere."""
    return torch.from_numpy(np.stack([normalize_unit_sphere(c) for c in points]))


def random_rotations(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 3, 3) uniformly random rotations (QR of Gaussian matrices with the signs fixed, det +1)."""
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator))
    q = q * torch.sign(torch.diagonal(r, dim1=1, dim2=2)).unsqueeze(1)
    flip = torch.linalg.det(q) < 0
    q[flip, :, 0] = -q[flip, :, 0]
    return q


@torch.inference_mode()
def run(model: PointNet, x: torch.Tensor, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (N, D) and predicted classes (N,) of normalized clouds."""
    model.eval()
    feats, preds = [], []
    for i in range(0, len(x), batch):
        f, logits = model(x[i : i + batch])
        feats.append(f.numpy())
        preds.append(logits.argmax(1).numpy())
    return np.concatenate(feats), np.concatenate(preds)


def nearest_neighbour_accuracy(embeddings: np.ndarray, labels: np.ndarray) -> float:
    """Percent of clouds whose nearest other cloud (cosine) has the same class: the embedding as a retriever."""
    e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    sims = e @ e.T
    np.fill_diagonal(sims, -np.inf)
    return 100.0 * float((labels[sims.argmax(axis=1)] == labels).mean())


def train(model: PointNet, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace) -> None:
    gen = torch.Generator().manual_seed(TRAIN_SEED)
    steps = args.epochs * (len(x) // args.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        order = torch.randperm(len(x), generator=gen)
        batches = order[: len(order) // args.batch_size * args.batch_size].view(-1, args.batch_size)
        seen = correct = 0
        loss_sum = 0.0
        bar = tqdm(batches, desc=f"epoch {epoch:2d}/{args.epochs}", unit="batch", leave=False,
                   disable=not sys.stderr.isatty())  # the per-epoch line below is the log
        for idx in bar:
            xb = x[idx] @ random_rotations(len(idx), gen).transpose(1, 2)  # a fresh pose for every cloud
            _, logits = model(xb)
            loss = F.cross_entropy(logits, y[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            seen += len(idx)
            correct += (logits.argmax(1) == y[idx]).sum().item()
            loss_sum += loss.item() * len(idx)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{100 * correct / seen:.1f}")
        print(f"epoch {epoch:2d}/{args.epochs}  loss {loss_sum / seen:.3f}  train acc (rotated) "
              f"{100 * correct / seen:.1f}%  [{time.perf_counter() - t0:.0f} s]", flush=True)


def confusions(y: np.ndarray, pred: np.ndarray, top: int = 6) -> str:
    """The most frequent (true -> predicted) mistakes."""
    pairs: dict[tuple[str, str], int] = {}
    for t, p in zip(y, pred, strict=True):
        if t != p:
            pairs[CLASSES[t], CLASSES[p]] = pairs.get((CLASSES[t], CLASSES[p]), 0) + 1
    worst = sorted(pairs.items(), key=lambda kv: -kv[1])[:top]
    return ", ".join(f"{t}->{p} x{n}" for (t, p), n in worst) or "none"


def canonical_header(path: Path) -> None:
    """Rewrite a safetensors file's JSON header with sorted keys, so equal tensors give equal bytes.

    safetensors writes the header from a hash map whose order changes from run to run; the
    tensor data do not move (their offsets count from the end of the header).
    """
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    header = json.dumps(json.loads(raw[8 : 8 + size]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format pads the header with spaces to 8-byte alignment
    path.write_bytes(len(header).to_bytes(8, "little") + header + raw[8 + size :])


def save(model: PointNet, args: argparse.Namespace, extra: dict[str, str]) -> None:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    metadata = {"format": "pt", "classes": json.dumps(list(CLASSES)), "architecture": json.dumps(ARCH),
                "n_points": str(args.n_points), "normalization": "zoo.points.normalize_unit_sphere", **extra}
    save_file(state, str(args.out), metadata=metadata)
    canonical_header(args.out)
    args.out.chmod(0o644)  # package data: readable by everyone


def load(path: Path) -> tuple[PointNet, dict[str, str]]:
    """The network a weights file written by :func:`save` holds, and its metadata (for ``--evaluate-only``)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        metadata = fh.metadata()
        model, _ = build_from_metadata(metadata)
        model.load_state_dict({key: fh.get_tensor(key) for key in fh.keys()})  # noqa: SIM118
    return model, metadata


def evaluate(model: PointNet, args: argparse.Namespace) -> dict[str, float]:
    """Accuracy and nearest-neighbour accuracy on the held-out shapes, upright and under extra rotation."""
    held_out = make_dataset(EVAL_SEED, args.eval_per_class, n_points=args.n_points)
    labels = held_out.labels
    results = {}
    for key, points, what in [
        ("held_out", held_out.points, f"held-out (seed {EVAL_SEED}, {len(labels)} shapes)"),
        ("rotated", rotate_each(held_out.points, ROTATION_SEED), f"rotated held-out (rotation seed {ROTATION_SEED})"),
    ]:
        emb, pred = run(model, normalized(points))
        results[f"{key}_accuracy"] = 100.0 * float((pred == labels).mean())
        results[f"{key}_nn_accuracy"] = nearest_neighbour_accuracy(emb, labels)
        print(f"{what}: accuracy {results[f'{key}_accuracy']:.2f}%, nearest-neighbour "
              f"{results[f'{key}_nn_accuracy']:.2f}%; mistakes: {confusions(labels, pred)}")
    return results


def train_from_scratch(args: argparse.Namespace) -> PointNet:
    """Make the data, train, save; print the timings. Returns the trained network."""
    start, cpu_start = time.perf_counter(), time.process_time()
    print(f"making {args.per_class} x {len(CLASSES)} training shapes (seed {TRAIN_SEED}, {args.n_points} points)...")
    train_set = make_dataset(TRAIN_SEED, args.per_class, n_points=args.n_points)
    x_train, y_train = normalized(train_set.points), torch.from_numpy(train_set.labels)
    data_s = time.perf_counter() - start
    print(f"data ready in {data_s:.0f} s: {len(x_train)} training shapes")

    model = PointNet(**ARCH, n_classes=len(CLASSES), dropout=args.dropout)
    print(f"PointNet {ARCH}: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"{model.embedding_dim}-d embedding")
    train(model, x_train, y_train, args)
    save(model, args, {"train_seed": str(TRAIN_SEED), "per_class": str(args.per_class), "epochs": str(args.epochs)})
    total_s = time.perf_counter() - start
    print(f"time: data {data_s:.0f} s, training {total_s - data_s:.0f} s, total {total_s:.0f} s wall "
          f"({total_s / 60:.1f} min), {time.process_time() - cpu_start:.0f} s CPU ({args.threads} threads; "
          f"load average at the end {os.getloadavg()[0]:.1f})")
    return model


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(TRAIN_SEED)
    if args.evaluate_only:
        model, metadata = load(args.out)
        args.per_class, args.epochs = int(metadata["per_class"]), int(metadata["epochs"])
        print(f"evaluating {args.out}")
    else:
        model = train_from_scratch(args)
    n_params = sum(p.numel() for p in model.parameters())
    results = evaluate(model, args)
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"\n{args.out} ({args.out.stat().st_size:,} bytes); for the card:")
    print(f'"{args.out.name}" = "{digest}"')
    print(f"params = {n_params}\ndim = {model.embedding_dim}\nn_points = {args.n_points}")
    print(f"train_seed = {TRAIN_SEED}\ntrain_per_class = {args.per_class}\nepochs = {args.epochs}")
    print(f"eval_seed = {EVAL_SEED}\neval_per_class = {args.eval_per_class}\nrotation_seed = {ROTATION_SEED}")
    print("\n".join(f"{key} = {value:.2f}" for key, value in results.items()))


if __name__ == "__main__":
    main()
