"""zoo.store metadata: typed columns fixed by the first add, SQL filters (exact and ANN, before k is taken),
bad keys / types / filters refused by name, the checksum covering typed metadata, and collections made by an
older zoo (one JSON metadata column) still read, searched, added to and verified."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("lancedb")
pa = pytest.importorskip("pyarrow")

from zoo.embeddings import Embeddings  # noqa: E402
from zoo.errors import InvalidInputError  # noqa: E402
from zoo.store import CollectionCorruptError, VectorStore  # noqa: E402
from zoo.store.rows import _checksums  # noqa: E402

DIM = 16
KINDS = ("image", "text", "audio")


def _emb(vectors: np.ndarray) -> Embeddings:
    return Embeddings(np.asarray(vectors, dtype=np.float32), space="space-a", model="model-a", modality="text",
                      normalized=False)


def _data(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((8, DIM))[rng.integers(0, 8, n)] + 0.7 * rng.standard_normal((n, DIM))


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _meta(i: int) -> dict:
    return {"year": 1980 + i % 45, "kind": KINDS[i % 3], "weight": 0.25 * i, "flag": i % 4 == 0}


def _expected(q: np.ndarray, x: np.ndarray, ids: np.ndarray, k: int) -> list[list[int]]:
    """Numpy's top-k ids among the rows ``ids`` (ties by id)."""
    scores = _unit(q) @ _unit(x[ids]).T
    return [ids[np.lexsort((ids, -row))][:k].tolist() for row in scores]


@pytest.fixture
def filled(tmp_path):
    x = _data(300)
    coll = VectorStore(tmp_path).collection("docs")
    coll.add(_emb(x), [f"doc {i}" for i in range(300)], [_meta(i) for i in range(300)])
    return coll, x


def test_metadata_keys_become_typed_columns_and_come_back_in_hits(tmp_path):
    coll = VectorStore(tmp_path).collection("typed")
    x = _data(4)
    metadata = [{"year": 2001, "kind": "image", "weight": 1, "flag": True},  # an int in a float key: a float
                {"year": None, "kind": "text", "weight": 0.5},  # None and a missing key: no value
                {},
                {"year": np.int64(1999), "weight": np.float32(2.0), "flag": np.bool_(False)}]  # numpy scalars
    assert coll.add(_emb(x), list("abcd"), metadata) == [0, 1, 2, 3]
    assert coll.metadata_types == {"flag": "bool", "kind": "str", "weight": "float", "year": "int"}
    schema = coll._tbl().schema
    assert [schema.field(k).type for k in ("year", "kind", "weight", "flag")] == [
        pa.int64(), pa.string(), pa.float64(), pa.bool_()]
    want = [{"year": 2001, "kind": "image", "weight": 1.0, "flag": True}, {"kind": "text", "weight": 0.5}, {},
            {"year": 1999, "weight": 2.0, "flag": False}]
    assert [r[2] for r in coll.rows()] == want
    assert type(coll.rows()[0][2]["weight"]) is float and type(coll.rows()[3][2]["year"]) is int
    hits = coll.search(_emb(x), k=1)
    assert [h[0].metadata for h in hits] == want
    assert VectorStore(tmp_path).collection("typed").search(_emb(x[:1]), k=1)[0][0].metadata == want[0]


def test_a_new_key_or_a_wrong_type_in_a_later_add_is_refused_naming_the_key(filled):
    coll, x = filled
    cases = [
        ([{"color": "red"}], "'color'"),  # the first add fixed the keys
        ([{"year": "2001"}], "'year'"),
        ([{"year": 2001.5}], "'year'"),
        ([{"year": True}], "'year'"),  # a bool is not an int here
        ([{"flag": 1}], "'flag'"),
        ([{"kind": 3}], "'kind'"),
        ([{"weight": float("nan")}], "'weight'"),
        ([{"year": 1 << 70}], "'year'"),
        ([{"kind": ["a", "list"]}], "'kind'"),
    ]
    for metadata, key in cases:
        with pytest.raises(InvalidInputError, match=key) as info:
            coll.add(_emb(x[:1]), ["new"], metadata)
        assert info.value.index == 0, metadata
    assert len(coll) == 300  # nothing was written
    assert coll.add(_emb(x[:1]), ["fine"], [{"year": 2030, "weight": 3}]) == [300]  # an int into a float key


def test_the_first_add_fixes_one_type_per_key_and_plain_key_names(tmp_path):
    store = VectorStore(tmp_path)
    x = _data(2)
    cases = [
        ([{"n": 1}, {"n": "one"}], "'n'"),
        ([{"n": True}, {"n": 1}], "'n'"),
        ([{"n": None}, {}], "'n'"),  # no value to take a type from
        ([{"my-key": 1}, {}], "'my-key'"),  # not an identifier a filter could name
        ([{"_rowid": 1}, {}], "'_rowid'"),
        ([{"vector": 1}, {}], "'vector'"),  # the store's own columns
        ([{"ID": 1}, {}], "'ID'"),
        ([{"Year": 1}, {"year": 2}], "differ only in case"),
        ([{"n": {"nested": 1}}, {}], "'n'"),
    ]
    for metadata, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            store.collection("first").add(_emb(x), ["a", "b"], metadata)
        assert store.collections() == []  # nothing was created
    assert store.collection("first").add(_emb(x), ["a", "b"], [{"n": 1}, {"n": 2.5}]) == [0, 1]
    assert store.collection("first").metadata_types == {"n": "float"}


def test_where_filters_the_exact_search_before_k_is_taken(filled):
    coll, x = filled
    q = _data(4, seed=5)
    metas = [_meta(i) for i in range(300)]
    cases = {
        "year > 2000 AND kind = 'image'": lambda m: m["year"] > 2000 and m["kind"] == "image",
        "flag": lambda m: m["flag"],
        "weight BETWEEN 10 AND 12.5 OR kind = 'audio' AND year < 1983": lambda m: (
            10 <= m["weight"] <= 12.5 or (m["kind"] == "audio" and m["year"] < 1983)),
        "id IN (3, 7, 11, 250)": None,
        "item LIKE 'doc 1_'": None,
    }
    for where, keep in cases.items():
        if where.startswith("id IN"):
            ids = np.array([3, 7, 11, 250])
        elif where.startswith("item"):
            ids = np.arange(10, 20)
        else:
            ids = np.array([i for i in range(300) if keep(metas[i])])
        result = coll.search(_emb(q), k=10, where=where)
        assert [[h.id for h in hits] for hits in result] == _expected(q, x, ids, 10), where
        assert all(len(hits) == min(10, len(ids)) for hits in result)  # k hits whenever k rows match
        for qrow, hits in zip(_unit(q), result, strict=True):
            np.testing.assert_allclose([h.score for h in hits], _unit(x[[h.id for h in hits]]) @ qrow, atol=2e-6)
            assert all(h.metadata == metas[h.id] for h in hits)
    assert coll.search(_emb(q), k=5, where="year > 3000") == [[], [], [], []]
    assert len(coll.search(_emb(q), k=5)[0]) == 5  # no filter: as before


def test_where_with_the_ann_index_prefilters(tmp_path):
    x = _data(1200, seed=2)
    coll = VectorStore(tmp_path).collection("ann")
    coll.add(_emb(x), [str(i) for i in range(1200)], [_meta(i) for i in range(1200)])
    coll.create_index("ivf_flat", num_partitions=4)
    coll.nprobes = 4  # every partition: the index answers exactly
    q = _data(5, seed=3)
    where = "kind = 'text' AND year >= 2015"  # about 1 row in 9 matches
    ids = np.array([i for i in range(1200) if _meta(i)["kind"] == "text" and _meta(i)["year"] >= 2015])
    ann = coll.search(_emb(q), k=10, exact=False, where=where)
    assert not ann.exact
    assert [[h.id for h in hits] for hits in ann] == _expected(q, x, ids, 10)
    assert all(h.metadata == _meta(h.id) for hits in ann for h in hits)
    assert coll.search(_emb(q), k=10, exact=False, where="id = 17")[0][0].id == 17


def test_a_bad_filter_is_an_invalid_input_error_not_damage(filled):
    coll, x = filled
    for where in ("nosuch > 1", "year >", "kind = 5", "year > 2000 AND", ""):
        with pytest.raises(InvalidInputError, match="where") as info:
            coll.search(_emb(x[:1]), where=where)
        assert not isinstance(info.value, CollectionCorruptError)
    with pytest.raises(InvalidInputError, match="where"):
        coll.search(_emb(x[:1]), where=3)
    with pytest.raises(InvalidInputError, match="nosuch"):
        coll.delete(where="nosuch = 1")
    assert coll.verify() == 300


def test_the_checksum_covers_typed_metadata(tmp_path):
    coll = VectorStore(tmp_path).collection("meta")
    coll.add(_emb(_data(40)), [f"item {i}" for i in range(40)], [{"tag": f"tag-{i:03d}"} for i in range(40)])
    files = list((tmp_path / "meta.lance" / "data").glob("*.lance"))
    data = files[0].read_bytes()
    assert data.count(b"tag-007") == 1
    files[0].write_bytes(data.replace(b"tag-007", b"tag-008"))
    with pytest.raises(CollectionCorruptError, match="'meta'") as info:
        VectorStore(tmp_path).collection("meta").search(_emb(_data(1)), k=1)
    assert info.value.ids == [7]
    with pytest.raises(CollectionCorruptError):
        VectorStore(tmp_path).collection("meta").verify()


def _old_collection(path: Path, x: np.ndarray, metas: list[dict]) -> None:
    """A collection as zoo wrote it before typed metadata: int ids, one JSON metadata column, a checksum."""
    import lancedb

    n = len(x)
    unit = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    ids, items = np.arange(n, dtype=np.int64), [f"old {i}" for i in range(n)]
    meta_json = [json.dumps(m, sort_keys=True) for m in metas]
    table = pa.table({"id": pa.array(ids), "item": pa.array(items), "metadata": pa.array(meta_json),
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(unit.ravel()), x.shape[1]),
                      "checksum": pa.array(_checksums(ids, items, meta_json, unit))})
    schema = table.schema.with_metadata({b"zoo.space": b"space-a", b"zoo.model": b"model-a",
                                         b"zoo.dim": str(x.shape[1]).encode()})
    lancedb.connect(str(path)).create_table("old", table.cast(schema), schema=schema)


def test_collections_made_by_an_older_zoo_keep_working(tmp_path):
    x = _data(50)
    metas = [{"n": i, "tags": ["a", "b"][: i % 3], "nested": {"k": i}} if i % 2 else {} for i in range(50)]
    _old_collection(tmp_path, x, metas)
    coll = VectorStore(tmp_path).collection("old")
    assert coll.verify() == 50 and coll.precision == "float32"
    assert [r[2] for r in coll.rows()] == metas
    hits = coll.search(_emb(x[:3]), k=2)
    assert [h[0].id for h in hits] == [0, 1, 2] and hits[1][0].metadata == metas[1]
    assert coll.add(_emb(x[:2]), ["new 0", "new 1"], [{"free": [1, 2]}, {}]) == [50, 51]  # JSON as before
    assert coll.add(_emb(-x[:1]), ["replaced"], [{"n": -1}], ids=[5]) == [5]
    assert len(coll) == 52 and coll.rows()[5] == (5, "replaced", {"n": -1})
    assert [h.id for h in coll.search(_emb(x[:1]), k=3, where="item LIKE 'new%'")[0]] == [50, 51]
    with pytest.raises(InvalidInputError, match="older zoo"):
        coll.search(_emb(x[:1]), where="n > 3")
    assert coll.delete([50]) == 1 and coll.verify() == 51
