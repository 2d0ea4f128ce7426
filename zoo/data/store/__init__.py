"""A vector store for zoo embeddings: named collections on disk, searched by cosine similarity.

Storage is LanceDB (the ``store`` extra), embedded: a folder on disk, no server. Each
collection is one LanceDB table with the columns

- ``id`` (int64, or string): the row's id. ``add`` numbers rows 0, 1, 2, ... (on from the largest
  id the collection has had: ``delete`` records it first, so deleted ids are not given again)
  unless ``ids=`` are given; given ids may be ints or strings (the first add fixes which), and
  adding a row whose id exists replaces that row (an upsert, one ``merge_insert``);
- ``item`` (string): the path or text the vector was made from;
- one typed column per metadata key (string, int64, float64 or bool; null where a row has no
  value), the set of keys and their types fixed by the collection's first ``add``, so that
  ``search(..., where="year > 2000 AND kind = 'image'")`` can filter with LanceDB's SQL;
  collections made by an older zoo keep a ``metadata`` column of JSON instead and are read as
  before (their filters can use ``id`` and ``item`` only);
- ``vector``: the vector. Float collections keep float32 rows, L2-normalized on ``add``, so that
  the cosine of two rows is their dot product. Quantized collections keep what ``add`` was
  given: int8 codes (uint8 codes are stored shifted to int8, as ``zoo.embeddings.quantize`` relates
  them) or packed sign bits (binary / ubinary, stored as the ubinary bytes);
- ``rescore`` (binary collections added with ``rescore=``): int8 codes or unit float32 rows of
  the same items, used to rescore the candidates of the Hamming search;
- ``checksum`` (int64): CRC-32 of the row's id, vector (and rescore vector), item and metadata,
  checked on every row that exact search loads, on every hit of an ANN search and by
  :meth:`Collection.verify` (collections made before this column existed are read without the
  check). Typed metadata is checked as the row's metadata dict in JSON (sorted keys, nulls left
  out), the same bytes the older JSON column held.

Writers are serialized per collection: a thread lock within the process and, on POSIX, an
``fcntl.flock`` on ``.zoo-locks/<name>.lock`` in the store folder across processes, held while
``add`` / ``delete`` create or open the table, allocate the next ids and commit the rows.
LanceDB commits an append, an upsert (``merge_insert``) and a delete atomically (a new
manifest), so a writer killed at any point leaves either all of a call's changes or none, and
the kernel releases its lock. Damaged files (bytes changed, a file cut short) surface as
:class:`CollectionCorruptError` naming the collection instead of as wrong hits (a CRC-32 per
row: damage that keeps it matching is a 1 in 2^32 chance; damage in an ANN index file can still
lose recall unnoticed); other collections live in their own folders and are not affected.
Durability is LanceDB's: no fsync is forced, so a power cut or OS crash (unlike a killed
process) may lose the last commits.

The table's schema metadata records the embedding space id (and the model and dim that made
the first rows, the stored precision and the layout version). Vectors compare only within one
space: adding rows of another space is refused, and so is a query from another space, unless a
registered stitch (:mod:`zoo.stitching`) maps the query's space into the collection's; the
result then names the stitch it used. A raw numpy query carries no space: the first such search
of a collection warns that nothing was checked, and ``space=`` states the query's space.

Ways to search, chosen per call:

- exact (below :data:`ANN_THRESHOLD` rows, without an index, or ``exact=True``): the
  collection's unit vectors are read once per table version into memory (4 * dim bytes a
  row: 1.5 GB for a million 384-dim rows), with the items and metadata as Arrow columns so
  that hits need no second read, and searched with a blocked matmul and ``argpartition``.
  Scores are numpy's cosine. LanceDB's own flat scan
  (``bypass_vector_index``) passes over the table once per query vector, which a BLAS
  matmul over the whole query batch beats; ``bench/search.py`` measures both.
- approximate (``create_index()`` built and at least ANN_THRESHOLD rows, or ``exact=False``):
  a LanceDB IVF index with cosine distance. The default is IVF-FLAT: k-means partitions
  (sqrt(rows) of them) holding the full vectors, of which a query visits ``nprobes``; its
  scores are exact cosines and only recall is approximate. It trains fastest (a trial on 2
  cores with 100,000 x 384 rows: IVF-FLAT 6 s, IVF-PQ 58 s, IVF-HNSW-SQ over 3 min; IVF-FLAT
  on a million rows about a minute), at the cost of a second full copy of the vectors on
  disk. ``create_index(kind="ivf_pq")`` builds the compressed IVF-PQ instead; its candidates
  are re-ranked on the full vectors (``refine_factor``), without which recall@10 on clustered
  384-dim data was about 0.2. Rows added after the index was built are still found (LanceDB
  scans them flat).
- binary collections, as in sentence-transformers' embedding-quantization guide: the float
  query's sign bits are compared with every row's packed bits by Hamming distance (faiss's
  popcount kernel where faiss is installed, numpy's over 64-bit words otherwise; the rows split
  over threads), and the ``rescore_multiplier * k`` nearest are rescored with the float query
  against the row's rescore vector (``rescore=``: int8 codes or float rows) or, without one,
  against its bits unpacked to +-1. Scores: the cosine of
  the query with the +-1 vector, the query's dot product with the int8 codes (as
  sentence-transformers rescores), or the cosine with the float rescore row. ``exact=True``
  rescores every row instead of the Hamming candidates. Memory: dim / 8 bytes a row for the
  bits (48 MB for a million 384-dim rows), plus the rescore vectors.
- int8 collections: the float query's dot product with every row's codes (exact over the codes).

``where=`` (a LanceDB SQL filter over ``id``, ``item`` and the metadata columns) restricts every
kind of search to the matching rows before the nearest are taken (a prefilter), so ``k`` hits
come back whenever at least ``k`` rows match.

Modules, lowest first; each imports only modules above it (``collection`` names ``VectorStore`` for type
checking only):

- ``results``: :class:`Hit`, :class:`SearchResults` and :class:`CollectionCorruptError`.
- ``_layout``: the reserved column names and schema metadata keys, the ``_Layout`` record read from a table's
  schema and the ``_Snapshot`` of one table version in memory.
- ``kernels``: :func:`exact_topk`, :func:`hamming_topk` (faiss's kernel or numpy's) and the thread pool of
  the Hamming scan; numpy only.
- ``rows`` (on ``_layout``): metadata typing, the rows' checksums, Arrow rows in and out.
- ``checks``: the checks of the vectors, items, ids and filters that ``add``, ``delete`` and ``search`` get.
- ``_table`` (on ``_layout``, ``results``, ``rows``): the table opened and its layout read, the write locks
  (thread locks, ``flock``), LanceDB's errors as :class:`CollectionCorruptError`, rows' metadata decoded.
- ``_adding`` (on ``_layout``, ``checks``, ``rows``): the commit of an add, creating the table or upserting.
- ``_searching`` (on ``_layout``, ``kernels``, ``results``, ``rows``): the snapshot in memory, ``where=``
  masks, the int8 / binary scans, the ANN index's hits.
- ``collection`` (on all of the above): :class:`Collection`, whose public methods are its own and whose
  machinery it mixes in from ``_table``, ``_adding`` and ``_searching``; :data:`ANN_THRESHOLD`, read there.
- ``vectorstore`` (on ``collection``): :class:`VectorStore`.
"""

from __future__ import annotations

from zoo.data.store.collection import ANN_THRESHOLD, Collection
from zoo.data.store.kernels import exact_topk, hamming_topk
from zoo.data.store.results import CollectionCorruptError, Hit, SearchResults
from zoo.data.store.vectorstore import VectorStore

__all__ = ["ANN_THRESHOLD", "Collection", "CollectionCorruptError", "Hit", "SearchResults", "VectorStore",
           "exact_topk", "hamming_topk"]
