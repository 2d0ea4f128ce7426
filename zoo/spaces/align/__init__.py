"""zoo.align: moving between embedding spaces, with numpy only.

Works on plain arrays (one vector per row) from any model, and on zoo ``Embeddings``. It
never imports torch; ``import zoo`` does not import this package.

Anchors - the shared items two spaces are compared through::

    from zoo.spaces.align import AnchorSet
    anchors = AnchorSet(("a dog", "a red car", ...), version="1", name="coco-300")
    anchors.hash                                   # sha256 over the items, in order
    anchors = AnchorSet.select(pool_texts, pool_vectors, 300, strategy="kmeans", seed=0)
    # strategies: "random" (seeded), "kmeans" (medoids of seeded k-means++), "farthest" (max-min)
    anchors.save("anchors.json"); AnchorSet.load("anchors.json")   # JSON, hash re-checked
    AnchorSet.from_files(paths)                    # file anchors: items are the files' sha256

Relative representations (Moschella et al. 2023) - similarities to the anchors::

    from zoo.spaces.align import RelativeProjector, relative_representation
    rel = relative_representation(x, anchor_vectors_a, similarity="cosine")   # (n, n_anchors)
    proj = RelativeProjector(anchor_vectors_a, normalization="standardize", anchor_hash=anchors.hash).fit(ref_a)
    proj.transform(x); proj.save("space_a.relative.safetensors"); RelativeProjector.load(...)
    # similarity: "cosine" | "angular" | "euclidean"; normalization: "none" | "l2" | "layernorm" | "standardize"

Stitching - a fitted map from space A to space B on paired anchors::

    from zoo.spaces.align import fit_stitch, evaluate_stitch, Stitch
    st = fit_stitch(X_a, Y_b, method="procrustes", source="minilm", target="clip-b32",
                    anchors=anchors, test=(X_a_test, Y_b_test))
    st.apply(x_a)  /  st(x_a)                      # -> vectors in space B (Embeddings in, Embeddings out)
    st.quality                                     # recall_at_1/10, mrr, ndcg_at_10, topk_jaccard, mutual_knn, ...
    st.save("stitches/minilm__clip-b32")           # stitch.safetensors + stitch.toml (the stitch card)
    Stitch.load("stitches/minilm__clip-b32", source="minilm", target="clip-b32")
    # methods: "procrustes" (default; dims differ -> dim_policy="pad" (default) or "pca"),
    #          "lstsq", "ridge" (alpha), "affine" (with bias)

Metrics - plain functions on arrays, computed in bounded row blocks (no n x n matrix)::

    from zoo.spaces.align import metrics
    metrics.recall_at_k(queries, gallery, targets, k=10)     # targets[i] = correct gallery index
    metrics.mrr(...), metrics.ndcg_at_10(..., relevance=rel) # or a graded relevance matrix
    metrics.retrieval_metrics(queries, gallery, targets)     # all of them from one pass
    metrics.linear_cka(a, b), metrics.mutual_knn(a, b, k=10), metrics.topk_jaccard(a, b, k=10)
    metrics.modality_gap(image_vectors, text_vectors)

Fitting defaults: ``normalize=True`` (L2 rows before fitting and before mapping), centring only
for "affine", ``dim_policy="pad"`` (zero padding = the semi-orthogonal Procrustes solution;
"pca" reduces the larger space to the smaller dim first). A stitched ``Embeddings`` carries the
target space id, so ``zoo.similarity(stitch(e_a), e_b)`` compares it with space-B vectors.

Errors are zoo.errors: InvalidInputError (bad arrays, with ``index`` of the bad row),
CardError (a stitch card, projector or anchor file that does not validate), IntegrityError
(stitch weights changed after saving), SpaceMismatchError (vectors or cards of another space).

Modules: ``anchors`` (AnchorSet, selection), ``relative`` (relative representations),
``fit`` (fit_stitch, evaluate_stitch), ``stitch`` (the Stitch type and its files),
``stitchcard`` (the card's schema and strict reader), ``metrics``; ``_blocks`` (chunked
similarity) and ``_files`` (safetensors reading, the TOML writer) are internal.
"""

from __future__ import annotations

from zoo.spaces.align import metrics
from zoo.spaces.align.anchors import AnchorSet, farthest_point, kmeans_medoids, random_anchors, select_anchors
from zoo.spaces.align.fit import evaluate_stitch, fit_stitch
from zoo.spaces.align.metrics import (
    linear_cka,
    modality_gap,
    mrr,
    mutual_knn,
    ndcg_at_10,
    recall_at_k,
    retrieval_metrics,
    topk_jaccard,
)
from zoo.spaces.align.relative import RelativeProjector, relative_projection, relative_representation
from zoo.spaces.align.stitch import AnchorRef, FitConfig, SpaceRef, Stitch

__all__ = [
    "AnchorRef",
    "AnchorSet",
    "FitConfig",
    "RelativeProjector",
    "SpaceRef",
    "Stitch",
    "evaluate_stitch",
    "farthest_point",
    "fit_stitch",
    "kmeans_medoids",
    "linear_cka",
    "metrics",
    "modality_gap",
    "mrr",
    "mutual_knn",
    "ndcg_at_10",
    "random_anchors",
    "recall_at_k",
    "relative_projection",
    "relative_representation",
    "retrieval_metrics",
    "select_anchors",
    "topk_jaccard",
]
